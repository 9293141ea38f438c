// Package liveness keeps the leader's in-memory record of worker heartbeats.
// Heartbeats never reach the Raft log: only the decision that a worker is
// lost does. A new leader starts with an empty record and gives every worker
// a full TTL from the moment it took over, so a failover never expires a farm.
package liveness

import (
	"sort"
	"sync"
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
	mu    sync.Mutex
	pings map[string]Ping
}

// New returns an empty tracker.
func New() *Tracker { return &Tracker{pings: make(map[string]Ping)} }

// Seen records a ping. Empty resource figures keep the previous ones, so a
// report that carries no measurements does not blank the worker's row.
func (t *Tracker) Seen(worker string, p Ping) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.pings[worker]
	if p.CPU == "" {
		p.CPU = old.CPU
	}
	if p.TotalMemory == 0 {
		p.FreeMemory, p.TotalMemory = old.FreeMemory, old.TotalMemory
	}
	t.pings[worker] = p
}

// Touch records a sign of life without measurements.
func (t *Tracker) Touch(worker string, now int64) {
	t.Seen(worker, Ping{Time: now})
}

// Get returns a worker's last ping.
func (t *Tracker) Get(worker string) (Ping, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pings[worker]
	return p, ok
}

// Forget drops a worker (deleted from the state).
func (t *Tracker) Forget(worker string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pings, worker)
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
		if p, ok := t.pings[w]; ok && p.Time > last {
			last = p.Time
		}
		if now-last > ttl {
			out = append(out, w)
		}
	}
	sort.Strings(out)
	return out
}
