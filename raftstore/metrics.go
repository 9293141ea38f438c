package raftstore

import (
	"fmt"
	"sort"
	"strings"
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

// WaitingReason says why a job that waits does not run, computed now
// from the state: every reason that holds, "; " between them: paused, a
// paused or blocked parent, its unfinished dependencies, its session, no
// worker with its affinity and project, all such workers disabled, lost
// or busy (or, when nothing else holds, that it is queued). It is "" for a
// job that does not wait (running, ended, a group) or does not exist. It
// walks the job's ancestors and the workers (thousands at most), not the
// jobs.
func (s *State) WaitingReason(id int64) string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	j := s.jobs[id]
	if j == nil || j.IsGroup() {
		return ""
	}
	waits := j.State == StateWaiting || j.State == StateBlocked || j.State == StateFailed && j.RunDone < j.Retry
	var reasons []string
	switch {
	case j.Paused && !waits:
		return "paused"
	case j.Paused:
		reasons = append(reasons, "paused")
	case !waits:
		return ""
	}
	if j.State == StateBlocked {
		var open []string
		for _, d := range j.Dependencies {
			if dj := s.jobs[d]; dj != nil && dj.State != StateFinished {
				if len(open) == 10 {
					open = append(open, "...")
					break
				}
				open = append(open, fmt.Sprintf("%d (%s)", d, dj.Reported()))
			}
		}
		reasons = append(reasons, "blocked by dependencies not finished yet: "+strings.Join(open, ", "))
	}
	if j.HPaused && !j.Paused {
		reasons = append(reasons, s.parentReason(j))
	}
	if j.Session != "" {
		reasons = append(reasons, "waits for its session: its host runs the session's jobs in order")
	}
	if r := s.workersReason(j); r != "" && (len(reasons) == 0 || !strings.HasPrefix(r, "queued")) {
		reasons = append(reasons, r)
	}
	return strings.Join(reasons, "; ")
}

// parentReason names the paused or blocked group above j.
func (s *State) parentReason(j *Job) string {
	for p, steps := s.jobs[j.Parent], 0; p != nil && steps <= len(s.jobs); p, steps = s.jobs[p.Parent], steps+1 {
		if p.Paused {
			return fmt.Sprintf("its parent group %d is paused", p.ID)
		}
		if p.State == StateBlocked {
			return fmt.Sprintf("its parent group %d is blocked by its dependencies", p.ID)
		}
	}
	return "a parent group is paused"
}

// workersReason says what the workers that could run j do: none has its
// affinity and project, all are disabled or lost, all are busy, or some
// idle one will take it (queued). A session's job is its host's: "".
func (s *State) workersReason(j *Job) string {
	if j.Session != "" {
		return ""
	}
	matching, usable, idle := 0, 0, 0
	for _, w := range s.workers {
		if !serves(w.Projects, j.Project) || !coversMask(w.lines, j.HAffinity) {
			continue
		}
		matching++
		if !w.Active || w.State == WorkerStateLost {
			continue
		}
		usable++
		if w.CurrentEvent == 0 {
			idle++
		}
	}
	what := "no worker"
	if j.HAffinity != 0 {
		what = "no worker has affinity " + s.maskNames(j.HAffinity)
		if j.Project != DefaultProject {
			what += " and serves project " + j.Project
		}
	} else if j.Project != DefaultProject {
		what = "no worker serves project " + j.Project
	}
	switch {
	case matching == 0:
		return what
	case usable == 0:
		return fmt.Sprintf("the %d workers that could run it are disabled or lost", matching)
	case idle == 0:
		return fmt.Sprintf("all %d workers that can run it are busy", usable)
	}
	return fmt.Sprintf("queued: %d idle workers can run it, and take the best job first (priority, then id)", idle)
}

// coversMask reports whether a worker with these affinity lines serves a
// job with affinity mask (0: every worker does).
func coversMask(lines []uint64, mask uint64) bool {
	if mask == 0 {
		return true
	}
	for _, l := range lines {
		if mask&l == mask {
			return true
		}
	}
	return false
}

// maskNames names the affinities of mask, comma-separated.
func (s *State) maskNames(mask uint64) string {
	var names []string
	for id := 1; id <= MaxAffinityID; id++ {
		if mask&(1<<uint(id-1)) != 0 {
			if n := s.affinities[id]; n != "" {
				names = append(names, n)
			} else {
				names = append(names, fmt.Sprintf("#%d", id))
			}
		}
	}
	return strings.Join(names, ",")
}
