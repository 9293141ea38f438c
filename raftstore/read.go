package raftstore

import (
	"sort"
	"strings"

	"github.com/croftfarm/croft/joblog"
)

// Reads return copies, so callers may keep them after the lock is released.
// Slices inside a Job are never modified in place by the FSM (it replaces
// them), so a shallow copy is safe to share.

func copyJob(j *Job) Job {
	c := *j
	c.ready = readyKey{hprio: j.ready.hprio} // only the path (PriorityPath) is for readers
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

// ScanLimit is the most records a paged read looks at under one hold of
// the read lock: a read of a million jobs never stalls Apply for long,
// and never holds more than a page in memory.
const ScanLimit = 1024

// Jobs returns every job that keep accepts, in id order. It copies them
// all: for tests and small farms; requests use JobsAfter.
func (s *State) Jobs(keep func(*Job) bool) []Job {
	var out []Job
	for after, more := int64(0), true; more; {
		var page []Job
		page, after, more = s.JobsAfter(after, ScanLimit, keep)
		out = append(out, page...)
	}
	return out
}

// JobsAfter returns, in id order, up to n jobs with an id above after that
// keep (nil: all) accepts, looking at no more than ScanLimit jobs. next is
// the id to continue after; more is false once the last job was seen.
// keep runs under the read lock: it must be cheap.
func (s *State) JobsAfter(after int64, n int, keep func(*Job) bool) (page []Job, next int64, more bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	next, seen := after, 0
	more = false
	s.jobOrder.AscendGreaterOrEqual(after+1, func(id int64) bool {
		if len(page) >= n || seen >= ScanLimit {
			more = true
			return false
		}
		seen++
		next = id
		if j := s.jobs[id]; keep == nil || keep(j) {
			page = append(page, copyJob(j))
		}
		return true
	})
	return page, next, more
}

// ChildrenAfter returns, in id order, up to n children of job id (0: the
// root jobs) with an id above after that keep (nil: all) accepts, looking
// at no more than ScanLimit of them; ok is false if the job does not
// exist. next and more are as for JobsAfter.
func (s *State) ChildrenAfter(id, after int64, n int, keep func(*Job) bool) (page []Job, next int64, more, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.node(id)
	if p == nil {
		return nil, after, false, false
	}
	kids := p.Children
	i := sort.Search(len(kids), func(i int) bool { return kids[i] > after })
	next = after
	for seen := 0; i < len(kids); i++ {
		if len(page) >= n || seen >= ScanLimit {
			return page, next, true, true
		}
		seen++
		next = kids[i]
		if j := s.jobs[kids[i]]; j != nil && (keep == nil || keep(j)) {
			page = append(page, copyJob(j))
		}
	}
	return page, next, false, true
}

// JobCount returns the number of jobs.
func (s *State) JobCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.jobs)
}

// Log returns a job's whole log as one string, or false if the job does
// not exist. It holds the log in memory (up to the job's cap): servers
// stream pages of LogLines instead.
func (s *State) Log(id int64) (string, bool) {
	if _, _, ok := s.LogInfo(id); !ok {
		return "", false
	}
	var b strings.Builder
	for from := int64(1); ; {
		page, next, err := s.LogLines(id, joblog.Page{From: from, MaxLines: 4096, MaxBytes: 1 << 20})
		if err != nil || len(page) == 0 {
			return b.String(), true
		}
		for _, l := range page {
			b.Write(l.Text)
		}
		from = next.Line
	}
}

// LogInfo describes a job's log as the replicated state knows it.
type LogInfo struct {
	Bytes     int64 // the log's size
	Lines     int64 // its lines, the open last one included
	Truncated bool  // cut at its cap: it takes no more output
	Open      bool  // the last line has not ended yet
	// Running is true while an attempt runs: more output may come.
	Running bool
	Project string
}

// LogInfo returns a job's log tail, and a channel closed when a log grows
// or a job's attempt ends or a job goes away (take it before deciding to
// wait, so that no change is missed); false if the job does not exist.
func (s *State) LogInfo(id int64) (LogInfo, <-chan struct{}, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.logWatched.Store(true)
	j := s.jobs[id]
	if j == nil {
		return LogInfo{}, s.logNotify, false
	}
	return LogInfo{Bytes: int64(j.LogBytes), Lines: int64(j.LogLines), Truncated: j.LogTruncated, Open: j.LogOpen > 0, Running: j.State == StateRunning, Project: j.Project}, s.logNotify, true
}

// Changed returns a channel closed after the next batch of entries is
// applied (or the state is replaced by a snapshot): a reader waiting for
// a change of what it read (a long poll) reads the state again then, and
// waits again if its answer is the same. Taking it costs the next apply
// one channel; nobody watching costs nothing.
func (s *State) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.changeWatched.Store(true)
	return s.changeNotify
}

// LogLines reads a page of a job's log lines from this coordinator's
// store, and returns the position of the next line to read. The store may
// hold lines that the state read a moment ago did not count yet.
func (s *State) LogLines(id int64, p joblog.Page) ([]joblog.Line, joblog.Pos, error) {
	return s.lines.Lines(id, p)
}

// LogLineAt returns the number of a job's line that holds byte offset
// off; lines+1 when off is at or past the end.
func (s *State) LogLineAt(id, off, lines int64) (int64, error) {
	return s.lines.LineAt(id, off, lines)
}

// LogStoreBytes returns the size of this coordinator's job log store file.
func (s *State) LogStoreBytes() int64 { return s.lines.Size() }

// LogErr returns joblog.ErrLost once this coordinator's job log store
// missed a write (its disk failed): reads are then incomplete until the
// next start rebuilds it.
func (s *State) LogErr() error { return s.lines.Err() }

// LogSize returns how many bytes a job's log holds and whether it was cut
// at its cap (then it takes no more output); false if the job does not
// exist.
func (s *State) LogSize(id int64) (n int64, truncated, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil {
		return 0, false, false
	}
	return int64(j.LogBytes), j.LogTruncated, true
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

// Workers returns all workers in name order. It copies them all: for
// tests and small farms; requests use WorkersAfter.
func (s *State) Workers() []Worker {
	var out []Worker
	for after, more := "", true; more; {
		var page []Worker
		page, after, more = s.WorkersAfter(after, ScanLimit)
		out = append(out, page...)
	}
	return out
}

// WorkersAfter returns up to n workers whose names sort after after, in
// name order; next and more are as for JobsAfter.
func (s *State) WorkersAfter(after string, n int) (page []Worker, next string, more bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	next = after
	n = min(n, ScanLimit)
	s.workerOrder.AscendGreaterOrEqual(after, func(name string) bool {
		if name == after && after != "" {
			return true
		}
		if len(page) >= n {
			more = true
			return false
		}
		c := *s.workers[name]
		c.lines = nil
		page = append(page, c)
		next = name
		return true
	})
	return page, next, more
}

// WorkerCount returns the number of workers.
func (s *State) WorkerCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.workers)
}

// WatchedWorkers returns the names of the workers not marked lost
// (TIMEOUT), in no particular order: the ones the leader's sweeper checks
// for silence. Cheaper than Workers at every sweep of a large farm.
func (s *State) WatchedWorkers() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.workers))
	for name, w := range s.workers {
		if w.State != WorkerStateLost {
			out = append(out, name)
		}
	}
	return out
}

// Runs returns the runs that keep accepts, in id order. It copies
// them all: for tests; requests use RunsAfter.
func (s *State) Runs(keep func(*Run) bool) []Run {
	var out []Run
	for after, more := int64(0), true; more; {
		var page []Run
		page, after, more = s.RunsAfter(after, ScanLimit, keep)
		out = append(out, page...)
	}
	return out
}

// RunsAfter returns, in id order, up to n runs with an id above after
// that keep (nil: all) accepts, looking at no more than ScanLimit; next and
// more are as for JobsAfter. keep runs under the read lock.
func (s *State) RunsAfter(after int64, n int, keep func(*Run) bool) (page []Run, next int64, more bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	next, seen := after, 0
	s.runOrder.AscendGreaterOrEqual(after+1, func(id int64) bool {
		if len(page) >= n || seen >= ScanLimit {
			more = true
			return false
		}
		seen++
		next = id
		if e := s.runByID[id]; keep == nil || keep(e) {
			page = append(page, *e)
		}
		return true
	})
	return page, next, more
}

// JobRunsAfter returns, in try order, up to n of a job's runs with an id
// above after; next is the last id returned and more says whether later
// runs exist. A job's runs are kept with it (retention may drop the oldest).
func (s *State) JobRunsAfter(job, after int64, n int) (page []Run, next int64, more bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := s.jobRuns[job] // ascending: ids grow with each start
	i := sort.Search(len(ids), func(i int) bool { return ids[i] > after })
	next = after
	for ; i < len(ids) && len(page) < n; i++ {
		if r := s.runByID[ids[i]]; r != nil {
			page = append(page, *r)
		}
		next = ids[i]
	}
	return page, next, i < len(ids)
}

// OldestRunStart returns the start time of the oldest run kept.
func (s *State) OldestRunStart() (int64, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	id, ok := s.runOrder.Min()
	if !ok {
		return 0, false
	}
	return s.runByID[id].Start, true
}

// RunCount returns the number of runs kept.
func (s *State) RunCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.runByID)
}

// RunByID returns a run (attempt) by its id.
func (s *State) RunByID(id int64) (Run, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.runByID[id]
	if e == nil {
		return Run{}, false
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
	case w == nil, w.CurrentEvent != 0, w.State == WorkerStateLost:
		return true, ch
	case !w.Active:
		return false, ch
	}
	return s.pickFor(w) != nil, ch
}

// ReadyCount returns the number of runnable jobs.
func (s *State) ReadyCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ready.len()
}
