package raftstore

import (
	"errors"
	"testing"
)

func TestCancelStopsARunningAttempt(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "x"})[0]
	dep := h.create(JobSpec{Command: "after x", Dependencies: []int64{id}})[0]
	a := h.pick("w")
	h.ok(&JobAction{Now: h.now, Action: ActionCancel, IDs: []int64{id}})
	h.wantState(id, StateCanceled)
	h.wantState(dep, StateBlocked) // a canceled dependency is not finished
	if w, _ := h.st().Worker("w"); w.State != WorkerStateIdle || w.CurrentEvent != 0 || w.Error != 0 {
		t.Fatalf("worker after the cancel: %+v", w)
	}
	if e, _ := h.st().RunByID(a.AttemptID); e.State != StateCanceled {
		t.Fatalf("attempt record %+v", e)
	}
	// The agent's next report is refused: it kills the process.
	res := h.apply(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, LogOffset: 0, Log: []byte("x")})
	if err, _ := res.(error); !errors.Is(err, ErrStaleAttempt) {
		t.Fatalf("report after the cancel: %v", res)
	}
	if a := h.pick("w"); a != nil {
		t.Fatalf("picked canceled job %d", a.JobID)
	}
	if j := h.job(id); j.RunDone != 0 {
		t.Fatalf("a canceled attempt counted as a run: run_done %d", j.RunDone)
	}
	h.ok(&JobAction{Now: h.now, Action: ActionReset, IDs: []int64{id}})
	h.wantState(id, StateWaiting)
	if a := h.pick("w"); a == nil || a.JobID != id {
		t.Fatalf("reset job not picked again: %+v", a)
	}
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
}

func TestCancelAGroup(t *testing.T) {
	h := newHarness(t)
	g := h.create(JobSpec{Title: "g"})[0]
	kids := h.create(
		JobSpec{Parent: g, Command: "done", Priority: 9},
		JobSpec{Parent: g, Command: "running", Priority: 8},
		JobSpec{Parent: g, Command: "waiting"},
		JobSpec{Parent: g, Command: "paused", Paused: true},
	)
	h.finish(h.pick("w1"), "w1", 0)
	h.pick("w2")
	h.fails(&JobAction{Now: h.now, Action: ActionCancel, IDs: []int64{g, 404}}, ErrNotFound)
	h.ok(&JobAction{Now: h.now, Action: ActionCancel, IDs: []int64{g}})
	h.wantState(kids[0], StateFinished)
	for _, id := range kids[1:3] {
		h.wantState(id, StateCanceled)
	}
	if j := h.job(kids[3]); j.State != StateCanceled || !j.Paused {
		t.Fatalf("paused child after the cancel: %s paused %v", j.State, j.Paused)
	}
	gj := h.job(g)
	if gj.Total != 4 || gj.TotalFinished != 1 || gj.TotalErrors != 3 || gj.TotalCanceled != 3 || gj.TotalWorking != 0 || gj.Errors != 3 {
		t.Fatalf("group counters %+v", gj)
	}
	h.wantState(g, StateCanceled)
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
	// start makes canceled jobs waiting again (paused ones stay paused);
	// a failure among cancels makes the group failed.
	h.ok(&JobAction{Now: h.now, Action: ActionStart, IDs: []int64{kids[1]}})
	h.wantState(kids[1], StateWaiting)
	h.wantState(g, StateCanceled)
	h.finish(h.pick("w1"), "w1", 1)
	h.wantState(g, StateFailed)
	h.ok(&JobAction{Now: h.now, Action: ActionStart, IDs: []int64{g}})
	h.wantState(kids[2], StateWaiting)
	h.wantState(kids[3], StatePaused)
	h.ok(&JobAction{Now: h.now, Action: ActionCancel, IDs: []int64{g}})
	h.wantState(kids[1], StateCanceled) // failed, not finished: canceled
	// reseterror resets canceled jobs too: they are errors in the counters.
	h.ok(&JobAction{Now: h.now, Action: ActionResetError, IDs: []int64{g}})
	for _, id := range kids[1:3] {
		h.wantState(id, StateWaiting)
	}
	h.wantState(kids[0], StateFinished)
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
}

func TestCancelByStateEdit(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "x"})[0]
	st := StateCanceled
	h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: id, Patch: JobPatch{State: &st}}}})
	h.wantState(id, StateCanceled)
	st = StateWaiting
	h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: id, Patch: JobPatch{State: &st}}}})
	h.wantState(id, StateWaiting)
}
