package raftstore

import "sort"

// Reads return copies, so callers may keep them after the lock is released.
// Slices inside a Job are never modified in place by the FSM (it replaces
// them), so a shallow copy is safe to share.

func copyJob(j *Job) Job {
	c := *j
	c.ready = readyKey{}
	return c
}

// Job returns a job by id.
func (s *State) Job(id int64) (Job, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return Job{}, false
	}
	return copyJob(j), true
}

// Children returns the children of job id (0 = the root jobs), or false if
// the job does not exist.
func (s *State) Children(id int64) ([]Job, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.node(id)
	if p == nil {
		return nil, false
	}
	out := make([]Job, 0, len(p.Children))
	for _, c := range p.Children {
		out = append(out, copyJob(s.jobs[c]))
	}
	return out, true
}

// Dependencies returns the jobs job id depends on, or false if it does not exist.
func (s *State) Dependencies(id int64) ([]Job, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return nil, false
	}
	out := make([]Job, 0, len(j.Dependencies))
	for _, d := range j.Dependencies {
		if dj := s.jobs[d]; dj != nil {
			out = append(out, copyJob(dj))
		}
	}
	return out, true
}

// Jobs returns every job that keep accepts, in id order.
func (s *State) Jobs(keep func(*Job) bool) []Job {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Job
	for _, id := range sortedJobIDs(s.jobs) {
		if j := s.jobs[id]; keep == nil || keep(j) {
			out = append(out, copyJob(j))
		}
	}
	return out
}

// JobCount returns the number of jobs.
func (s *State) JobCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.jobs)
}

// Log returns a job's log, or false if the job does not exist.
func (s *State) Log(id int64) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.jobs[id] == nil {
		return "", false
	}
	return string(s.logs[id]), true
}

// Worker returns a worker by name.
func (s *State) Worker(name string) (Worker, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w := s.workers[name]
	if w == nil {
		return Worker{}, false
	}
	c := *w
	c.lines = nil
	return c, true
}

// Workers returns all workers in name order.
func (s *State) Workers() []Worker {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Worker, 0, len(s.workers))
	for _, n := range sortedKeys(keysOf(s.workers)) {
		c := *s.workers[n]
		c.lines = nil
		out = append(out, c)
	}
	return out
}

// WatchedWorkers returns the names of the workers not marked lost
// (TIMEOUT), in no particular order: the ones the leader's sweeper checks
// for silence. Cheaper than Workers at every sweep of a large farm.
func (s *State) WatchedWorkers() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.workers))
	for name, w := range s.workers {
		if w.State != WorkerTimeout {
			out = append(out, name)
		}
	}
	return out
}

// Events returns the events that keep accepts, in id order.
func (s *State) Events(keep func(*Event) bool) []Event {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Event
	for _, e := range s.events {
		if keep(e) {
			out = append(out, *e)
		}
	}
	return out
}

// Event returns an event (attempt) by id.
func (s *State) Event(id int64) (Event, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.eventByID[id]
	if e == nil {
		return Event{}, false
	}
	return *e, true
}

// AttemptLive reports whether attempt id is still its job's running attempt.
func (s *State) AttemptLive(id int64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.jobOfAttempt(id) != nil
}

// RunningAttempt is a WORKING job's attempt, for the leader's timeout sweep.
type RunningAttempt struct {
	AttemptID int64
	JobID     int64
	Worker    string
	StartTime int64
	Timeout   int64
}

// Running returns every running attempt, in attempt order.
func (s *State) Running() []RunningAttempt {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []RunningAttempt
	for _, w := range s.workers {
		if w.CurrentEvent == 0 {
			continue
		}
		if j := s.jobOfAttempt(w.CurrentEvent); j != nil {
			out = append(out, RunningAttempt{AttemptID: j.Attempt, JobID: j.ID, Worker: w.Name, StartTime: j.StartTime, Timeout: j.Timeout})
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].AttemptID < out[k].AttemptID })
	return out
}

// Affinities returns the affinity names by id, 1..63 ("" when unused).
func (s *State) Affinities() map[int]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[int]string, MaxAffinityID)
	for id := 1; id <= MaxAffinityID; id++ {
		out[id] = s.affinities[id]
	}
	return out
}

// Nodes returns the coordinators' metadata in id order.
func (s *State) Nodes() []NodeMeta {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]NodeMeta, 0, len(s.nodes))
	for _, id := range sortedKeys(keysOf(s.nodes)) {
		out = append(out, s.nodes[id])
	}
	return out
}

// Node returns one coordinator's metadata.
func (s *State) Node(id string) (NodeMeta, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n, ok := s.nodes[id]
	return n, ok
}

// AppliedIndex returns the index of the last entry applied.
func (s *State) AppliedIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

// WorkFor reports whether proposing a Pick for this worker would change
// anything: a job is waiting for it, or the worker is unknown (the Pick
// creates it), believed busy (it restarted: the Pick requeues that attempt)
// or marked lost (the Pick brings it back). Callers propose a Pick only
// then, so idle polling writes nothing to the Raft log. It also returns a
// channel closed when new runnable work may have appeared; take it before
// deciding to wait, so no wake-up is missed.
func (s *State) WorkFor(worker string) (bool, <-chan struct{}) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ch := s.notify
	w := s.workers[worker]
	switch {
	case w == nil, w.CurrentEvent != 0, w.State == WorkerTimeout:
		return true, ch
	case !w.Active:
		return false, ch
	}
	_, ok := s.ready.pick(w.lines)
	return ok, ch
}

// ReadyCount returns the number of runnable jobs.
func (s *State) ReadyCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ready.len()
}
