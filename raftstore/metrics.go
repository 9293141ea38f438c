package raftstore

import (
	"sort"
	"sync/atomic"
)

// Run outcomes, as Observer.RunEnded reports them (the label values of the
// coordinator's croft_runs_total).
const (
	OutcomeFinished = "finished"
	OutcomeFailed   = "failed"
	OutcomeCanceled = "canceled"
	OutcomeTimeout  = "timeout"
	OutcomeLost     = "lost"
)

// Observer is told of events as entries are applied, for metrics. It is
// called under the state's write lock, on every replica, and also while a
// restarted node replays its log: it must be quick, must not block and
// must not read the state. It changes nothing replicated, so it cannot
// make replicas differ.
type Observer interface {
	// Dispatched is called when a worker picks a job: wait is how long
	// (nanoseconds of the leader's stamped times) the job had been runnable, measured
	// from the latest of its creation, its previous run's end and its
	// dependencies' ends (time spent paused is included).
	Dispatched(wait int64)
	// RunEnded is called when a run ends, with one of the Outcome*.
	RunEnded(outcome string)
}

// observerBox holds an FSM's observer; states built by a restore share
// their FSM's box.
type observerBox struct {
	o atomic.Pointer[Observer]
}

func (b *observerBox) get() Observer {
	if b == nil {
		return nil
	}
	if p := b.o.Load(); p != nil {
		return *p
	}
	return nil
}

// SetObserver installs o (nil: none). Set it before Raft starts to see
// the replay too.
func (f *FSM) SetObserver(o Observer) {
	if o == nil {
		f.obs.o.Store(nil)
		return
	}
	f.obs.o.Store(&o)
}

// JobCount is how many jobs of one project are in one state, groups
// included (a group's state is derived from its children's).
type JobCount struct {
	Project string
	State   string
	Jobs    int
}

// jobCountKey indexes State.jobCounts.
type jobCountKey struct{ project, state string }

// countMove moves one job of project from state from to state to in the
// derived per-project, per-state counts ("" is no state: a job created
// or dropped).
func (s *State) countMove(project, from, to string) {
	if from == to {
		return
	}
	if from != "" {
		k := jobCountKey{project, from}
		if n := s.jobCounts[k] - 1; n > 0 {
			s.jobCounts[k] = n
		} else {
			delete(s.jobCounts, k)
		}
	}
	if to != "" {
		s.jobCounts[jobCountKey{project, to}]++
	}
}

// JobCounts returns the number of jobs by project and state, sorted by
// project then state. It costs the number of (project, state) pairs in
// use, not the number of jobs: the counts are kept as jobs change.
func (s *State) JobCounts() []JobCount {
	s.mu.RLock()
	out := make([]JobCount, 0, len(s.jobCounts))
	for k, n := range s.jobCounts {
		out = append(out, JobCount{Project: k.project, State: k.state, Jobs: n})
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Project != out[j].Project {
			return out[i].Project < out[j].Project
		}
		return out[i].State < out[j].State
	})
	return out
}

// WorkerCounts returns the number of workers in each worker state. It
// walks the workers (a farm has thousands at most, not millions).
func (s *State) WorkerCounts() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int, 4)
	for _, w := range s.workers {
		out[w.State]++
	}
	return out
}

// runOutcome names how a run ended, for Observer.RunEnded.
func runOutcome(st string, e ending) string {
	switch e.reason {
	case ReasonTimeout:
		return OutcomeTimeout
	case ReasonLost, ReasonFenced:
		return OutcomeLost
	case ReasonCanceled, ReasonDeleted:
		return OutcomeCanceled
	}
	switch st {
	case StateFinished:
		return OutcomeFinished
	case StateCanceled:
		return OutcomeCanceled
	}
	return OutcomeFailed
}

// runnableSince is when j last became runnable, as well as the state
// knows: the latest of its creation, its last run's end and its
// dependencies' ends.
func (s *State) runnableSince(j *Job) int64 {
	since := j.Created
	if ids := s.jobRuns[j.ID]; len(ids) > 0 {
		if r := s.runByID[ids[len(ids)-1]]; r != nil {
			since = max(since, r.Start+r.Duration)
		}
	}
	for _, d := range j.Dependencies {
		if dj := s.jobs[d]; dj != nil {
			since = max(since, dj.EndTime)
		}
	}
	return since
}
