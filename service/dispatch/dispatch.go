// Package dispatch hands new jobs to agents that wait in a long poll
// without a second Raft round. A pull that finds no work registers as a
// waiter; when a create is proposed on the leader, waiters are claimed and
// a Pick for each goes into the create's own entry, right after it. The
// claimed pulls get their assignment when that entry is applied: submit to
// dispatch costs one commit instead of two (the create's, then the pick's
// once the create was seen).
//
// A claim is a prediction: a pick that finds nothing for its worker (an
// affinity that does not match, a paused parent) hands back no job and the
// pull waits on as before. Claims are bounded by the jobs the create can
// start at once, so a create never costs more picks than it has jobs.
//
// It is part of the service layer: state the leader keeps in memory beside
// the replicated state, used by the API packages and the coordinator.
package dispatch

import (
	"container/list"
	"sync"

	"github.com/croftfarm/croft/raftstore"
)

// Result is what a claimed waiter gets: its pick's assignment (nil when the
// pick found nothing for it), or why the entry failed.
type Result struct {
	Assignment *raftstore.Assignment
	Err        error
}

// Waiter is a pull waiting for work.
type Waiter struct {
	// Worker and IP are the pull's, for its Pick.
	Worker, IP string
	result     chan Result   // buffered: Deliver never blocks
	claimed    bool          // under Offers.mu
	elem       *list.Element // in Offers.waiting; nil once out of it
}

// C delivers the waiter's result once it was claimed.
func (w *Waiter) C() <-chan Result { return w.result }

// Deliver hands a claimed waiter its result.
func (w *Waiter) Deliver(r Result) { w.result <- r }

// Offers is the leader's registry of waiting pulls, oldest first. It is
// safe for concurrent use.
type Offers struct {
	mu      sync.Mutex
	waiting list.List // of *Waiter; a pull re-registers at every state change, so O(1) both ways
}

// Wait registers a pull of worker (from ip) as waiting.
func (o *Offers) Wait(worker, ip string) *Waiter {
	w := &Waiter{Worker: worker, IP: ip, result: make(chan Result, 1)}
	o.mu.Lock()
	w.elem = o.waiting.PushBack(w)
	o.mu.Unlock()
	return w
}

// Cancel withdraws w. It returns false if w was claimed already: its
// result is coming on C, and the pull must wait for it (its pick may have
// given the worker a job).
func (o *Offers) Cancel(w *Waiter) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if w.claimed {
		return false
	}
	if w.elem != nil {
		o.waiting.Remove(w.elem)
		w.elem = nil
	}
	return true
}

// Claim takes up to n waiters, oldest first, one per worker. Each must be
// handed a Result with Deliver.
func (o *Offers) Claim(n int) []*Waiter { return o.ClaimWhere(n, nil) }

// ClaimWhere is Claim of the waiters whose worker keep accepts (nil: all),
// e.g. the slots of the host a job is pinned to. keep runs under the
// registry's lock: it must not call Offers.
func (o *Offers) ClaimWhere(n int, keep func(worker string) bool) []*Waiter {
	if n <= 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*Waiter
	seen := map[string]bool{}
	for e := o.waiting.Front(); e != nil && len(out) < n; {
		next := e.Next()
		if w := e.Value.(*Waiter); !seen[w.Worker] && (keep == nil || keep(w.Worker)) {
			seen[w.Worker] = true
			w.claimed = true
			o.waiting.Remove(e)
			w.elem = nil
			out = append(out, w)
		}
		e = next
	}
	return out
}

// Len returns the number of waiting pulls.
func (o *Offers) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.waiting.Len()
}

// MaxClaim bounds the picks added to one create's entry.
const MaxClaim = 256

// Startable counts the jobs of a create that may run as soon as it is
// applied: those with a command, not paused, without dependencies, whose
// parent in the same create (if any) is not paused. Other parents' state
// is not looked at: a miss only costs an empty pick.
func Startable(c *raftstore.JobCreate) int {
	n := 0
	for _, spec := range c.Jobs {
		if spec.Command == "" || spec.Paused || len(spec.Dependencies) > 0 {
			continue
		}
		if spec.ParentRef > 0 && spec.ParentRef <= len(c.Jobs) && c.Jobs[spec.ParentRef-1].Paused {
			continue
		}
		n++
	}
	return n
}
