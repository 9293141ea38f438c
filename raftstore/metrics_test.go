package raftstore

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

type recorder struct {
	mu       sync.Mutex
	waits    []int64
	outcomes []string
}

func (r *recorder) Dispatched(wait int64) {
	r.mu.Lock()
	r.waits = append(r.waits, wait)
	r.mu.Unlock()
}

func (r *recorder) RunEnded(outcome string) {
	r.mu.Lock()
	r.outcomes = append(r.outcomes, outcome)
	r.mu.Unlock()
}

// The observer hears each dispatch with the time the job waited and
// each run's outcome; the job counts follow the states.
func TestObserverAndJobCounts(t *testing.T) {
	h := newHarness(t)
	rec := &recorder{}
	h.fsm.SetObserver(rec)
	h.create(JobSpec{Title: "a", Command: "x"}, JobSpec{Title: "b", Command: "x"}, JobSpec{Title: "c", Command: "x"})
	h.tick(3)
	a := h.pick("w1")
	h.finish(a, "w1", 0)
	h.tick(2)
	b := h.pick("w1") // waited 5 s
	h.finish(b, "w1", 1)
	c := h.pick("w2") // b again: it failed and has retries left
	h.ok(&WorkerLost{Now: h.now, Names: []string{"w2"}})
	c = h.pick("w2")
	h.ok(&JobAction{Now: h.now, Action: ActionCancel, IDs: []int64{c.JobID}})

	if want := []int64{3e9, 5e9, 0, 0}; !slices.Equal(rec.waits, want) {
		t.Fatalf("waits %v, want %v", rec.waits, want)
	}
	if want := []string{OutcomeFinished, OutcomeFailed, OutcomeLost, OutcomeCanceled}; !slices.Equal(rec.outcomes, want) {
		t.Fatalf("outcomes %v, want %v", rec.outcomes, want)
	}
	got := h.st().JobCounts()
	want := []JobCount{{DefaultProject, StateCanceled, 1}, {DefaultProject, StateFinished, 1}, {DefaultProject, StateWaiting, 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
	if wc := h.st().WorkerCounts(); wc[WorkerStateIdle] != 2 {
		t.Fatalf("worker counts %v", wc)
	}
}

// Enabling a worker wakes its waiting pull (WorkFor's channel): a
// re-enabled worker took a waiting job only when its long poll ended, 26 s
// later (issue 12).
func TestEnablingAWorkerWakesItsPull(t *testing.T) {
	h := newHarness(t)
	h.pick("w1") // registers it, idle
	h.ok(&WorkerAction{Now: h.now, Action: ActionWorkerStop, Names: []string{"w1"}})
	h.create(JobSpec{Title: "a", Command: "x"})
	work, changed := h.st().WorkFor("w1")
	if work {
		t.Fatal("a disabled worker has work")
	}
	h.ok(&WorkerAction{Now: h.now, Action: ActionWorkerStart, Names: []string{"w1"}})
	select {
	case <-changed:
	default:
		t.Fatal("enabling the worker did not wake its pull")
	}
	if work, _ := h.st().WorkFor("w1"); !work {
		t.Fatal("the enabled worker has no work")
	}
}

// A waiting job says why it waits (issue 12: a job whose affinity no
// worker had waited forever with no hint).
func TestWaitingReason(t *testing.T) {
	h := newHarness(t)
	ids := h.create(JobSpec{Title: "gpu", Command: "x", Affinity: "gpu"}, JobSpec{Title: "plain", Command: "x"})
	gpu, plain := ids[0], ids[1]
	dep := h.create(JobSpec{Title: "after", Command: "x", Dependencies: []int64{plain}})[0]
	paused := h.create(JobSpec{Title: "p", Command: "x", Paused: true})[0]
	want := func(id int64, sub string) {
		t.Helper()
		if got := h.st().WaitingReason(id); !strings.Contains(got, sub) || (sub == "" && got != "") {
			t.Fatalf("job %d: waiting reason %q, want %q", id, got, sub)
		}
	}
	want(gpu, "no worker has affinity gpu")
	want(plain, "no worker")
	want(dep, fmt.Sprintf("blocked by dependencies not finished yet: %d (waiting)", plain))
	want(paused, "paused")
	h.ok(&WorkerRegister{Now: h.now, Name: "g1", SetAffinity: true, Affinity: "gpu"})
	want(gpu, "idle workers can run it")
	h.ok(&WorkerAction{Now: h.now, Action: ActionWorkerStop, Names: []string{"g1"}})
	want(gpu, "disabled or lost")
	h.ok(&WorkerAction{Now: h.now, Action: ActionWorkerStart, Names: []string{"g1"}})
	a := h.pick("g1")
	if a.JobID != gpu {
		t.Fatalf("g1 took %d", a.JobID)
	}
	want(gpu, "")                                         // running
	want(plain, "all 1 workers that can run it are busy") // g1 serves affinity-less jobs too
	want(404, "")
}
