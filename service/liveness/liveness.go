// Package liveness keeps the leader's in-memory record of worker heartbeats.
// Heartbeats never reach the Raft log: only the decision that a worker is
// lost does. A new leader starts with an empty record and gives every worker
// a full TTL from the moment it took over, so a failover never expires a farm.
//
// Each worker seen has a TTL timer, reset by every ping (as Nomad's
// heartbeat timers): the leader's sweeper learns which workers went silent
// from the timers that fired, instead of scanning the whole farm every
// tick. A full scan still runs once the failover grace is over, for the
// workers of the state that never pinged this leader.
//
// It is part of the service layer: state the leader keeps in memory beside
// the replicated state, used by the API packages and the coordinator.
package liveness

import (
	"sort"
	"sync"
	"time"
)

// Ping is the last sign of life of a worker and what it measured.
type Ping struct {
	Time        int64  // unix nanoseconds
	CPU         string // Coalition's load string, e.g. "[12, 3]"
	FreeMemory  int64  // MiB
	TotalMemory int64  // MiB
}

// Tracker records pings. It is safe for concurrent use.
type Tracker struct {
	ttl time.Duration

	mu    sync.Mutex
	pings map[string]*entry
	due   map[string]bool // workers whose timer fired since TakeDue
	wake  chan struct{}   // signalled when a timer fires
	seen  uint64          // pings recorded (Seen calls), for metrics
}

type entry struct {
	ping  Ping
	timer *time.Timer
}

// New returns an empty tracker whose timers fire ttl after a worker's last
// ping.
func New(ttl time.Duration) *Tracker {
	return &Tracker{ttl: ttl, pings: make(map[string]*entry), due: make(map[string]bool), wake: make(chan struct{}, 1)}
}

// Seen records a ping and restarts the worker's timer. Empty resource
// figures keep the previous ones, so a report that carries no
// measurements does not blank the worker's row.
func (t *Tracker) Seen(worker string, p Ping) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen++
	e := t.pings[worker]
	if e == nil {
		e = &entry{}
		e.timer = time.AfterFunc(t.ttl, func() { t.fire(worker) })
		t.pings[worker] = e
	} else {
		e.timer.Reset(t.ttl)
	}
	if p.CPU == "" {
		p.CPU = e.ping.CPU
	}
	if p.TotalMemory == 0 {
		p.FreeMemory, p.TotalMemory = e.ping.FreeMemory, e.ping.TotalMemory
	}
	e.ping = p
}

// Count returns how many pings were recorded since the tracker was made
// (every sign of life: heartbeats, pulls, reports).
func (t *Tracker) Count() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen
}

func (t *Tracker) fire(worker string) {
	t.mu.Lock()
	if _, ok := t.pings[worker]; ok {
		t.due[worker] = true
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Touch records a sign of life without measurements.
func (t *Tracker) Touch(worker string, now int64) {
	t.Seen(worker, Ping{Time: now})
}

// Get returns a worker's last ping.
func (t *Tracker) Get(worker string) (Ping, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.pings[worker]; e != nil {
		return e.ping, true
	}
	return Ping{}, false
}

// Forget drops a worker (deleted from the state).
func (t *Tracker) Forget(worker string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.pings[worker]; e != nil {
		e.timer.Stop()
		delete(t.pings, worker)
		delete(t.due, worker)
	}
}

// Due is signalled when a worker's timer fires.
func (t *Tracker) Due() <-chan struct{} { return t.wake }

// TakeDue returns, in name order, the workers whose timer fired since the
// last call: candidates for Expired (a ping may have come since).
func (t *Tracker) TakeDue() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.due) == 0 {
		return nil
	}
	out := make([]string, 0, len(t.due))
	for w := range t.due {
		out = append(out, w)
	}
	clear(t.due)
	sort.Strings(out)
	return out
}

// Expired returns, in name order, the workers among candidates whose last
// sign of life is older than ttl at now. A worker never seen counts as seen
// at since (when this node became leader): that is the failover grace.
func (t *Tracker) Expired(candidates []string, now, since, ttl int64) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, w := range candidates {
		last := since
		if e := t.pings[w]; e != nil && e.ping.Time > last {
			last = e.ping.Time
		}
		if now-last > ttl {
			out = append(out, w)
		}
	}
	sort.Strings(out)
	return out
}
