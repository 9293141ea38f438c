package raftstore

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// run returns the record of attempt id.
func (h *harness) run(id int64) Run {
	h.t.Helper()
	r, ok := h.st().RunByID(id)
	if !ok {
		h.t.Fatalf("run %d missing", id)
	}
	return r
}

// log returns a job's log.
func (h *harness) log(id int64) string {
	h.t.Helper()
	l, _ := h.st().Log(id)
	return l
}

// wantRun checks how a run ended.
func (h *harness) wantRun(id int64, try int, state, reason string, exit, signal int) Run {
	h.t.Helper()
	r := h.run(id)
	if r.Try != try || r.State != state || r.Reason != reason || r.ExitCode != exit || r.Signal != signal || r.End != h.now || r.Duration != r.End-r.Start {
		h.t.Fatalf("run %d = %+v; want try %d, state %s, reason %q, exit %d, signal %d, end %d", id, r, try, state, reason, exit, signal, h.now)
	}
	return r
}

func TestRunsCountTriesAndKeepExitCodes(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Title: "frame", Command: "render", Retry: 3, Project: DefaultProject})[0]
	p := 0.4

	a := h.pick("w1")
	if a.Try != 1 || a.Project != DefaultProject {
		t.Fatalf("first assignment %+v", a)
	}
	if r := h.run(a.AttemptID); r.Try != 1 || r.End != 0 || r.ExitCode != 0 || r.State != StateRunning {
		t.Fatalf("running run %+v", r)
	}
	h.ok(&Report{Now: h.now, Worker: "w1", AttemptID: a.AttemptID, Log: []byte("one\n"), Progress: &p})
	h.tick(3)
	h.finish(a, "w1", 3)
	if r := h.wantRun(a.AttemptID, 1, StateFailed, ReasonExit, 3, 0); r.Progress != 0.4 {
		t.Fatalf("a failed run keeps its last progress: %+v", r)
	}
	if j := h.job(id); j.ExitCode != 3 || j.Signal != 0 || j.Reason.String() != ReasonExit || j.Tries != 1 {
		t.Fatalf("job after exit 3: %+v", j)
	}

	b := h.pick("w2")
	if b.Try != 2 {
		t.Fatalf("second assignment %+v", b)
	}
	h.tick(1)
	h.ok(&Report{Now: h.now, Worker: "w2", AttemptID: b.AttemptID, Log: []byte("two"), Done: true, ExitCode: 137, Signal: 9})
	h.wantRun(b.AttemptID, 2, StateFailed, ReasonExit, 137, 9)
	if j := h.job(id); j.ExitCode != 137 || j.Signal != 9 {
		t.Fatalf("job after signal 9: %+v", j)
	}

	c := h.pick("w1")
	h.tick(1)
	h.ok(&Report{Now: h.now, Worker: "w1", AttemptID: c.AttemptID, Log: []byte("three\n"), Progress: &p, Done: true})
	if r := h.wantRun(c.AttemptID, 3, StateFinished, ReasonExit, 0, 0); r.Progress != 1 {
		t.Fatalf("a run that exited 0 ends at progress 1: %+v", r)
	}
	if j := h.job(id); j.State != StateFinished || j.Progress != 0.4 || j.ExitCode != 0 || j.Signal != 0 {
		t.Fatalf("finished job %+v (Progress stays what was reported: Coalition shows it)", j)
	}
	want := "one\n[croft] exit code 3\n[croft] try 2 of 3 on w2 started\ntwo\n[croft] killed by signal 9\n[croft] try 3 of 3 on w1 started\nthree\n"
	if got := h.log(id); got != want {
		t.Fatalf("log\n%q\nwant\n%q", got, want)
	}

	// A reset does not restart the count: try numbers never repeat.
	h.ok(&JobAction{Now: h.now, Action: ActionReset, IDs: []int64{id}})
	if d := h.pick("w1"); d.Try != 4 || !strings.HasSuffix(h.log(id), "[croft] try 4 of 4 on w1 started\n") {
		t.Fatalf("after reset: %+v, log %q", d, h.log(id))
	}
}

func TestFirstCleanTryLeavesTheLogAlone(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "echo hi", Retry: 1})[0]
	a := h.pick("w")
	h.ok(&Report{Now: h.now, Worker: "w", AttemptID: a.AttemptID, Log: []byte("hi\n"), Done: true})
	if got := h.log(id); got != "hi\n" {
		t.Fatalf("log %q", got)
	}
	// Retry 1 never reruns a job: a try has no "of".
	h.ok(&JobAction{Now: h.now, Action: ActionReset, IDs: []int64{id}})
	h.pick("w")
	if got := h.log(id); got != "hi\n[croft] try 2 on w started\n" {
		t.Fatalf("log %q", got)
	}
}

func TestRunEndings(t *testing.T) {
	for _, tc := range []struct {
		name   string
		end    func(h *harness, a *Assignment) // ends a's run (worker "w", job timeout 60 s)
		state  string                          // the run's
		reason string
		exit   int
		signal int
		line   string // the log's end
	}{
		{"timed out by the coordinator", func(h *harness, a *Assignment) {
			h.tick(61)
			h.ok(&JobTimeout{Now: h.now, Attempts: []int64{a.AttemptID}})
		}, StateFailed, ReasonTimeout, NoExitCode, 0, "timed out after 60 s"},
		{"timed out by the agent", func(h *harness, a *Assignment) {
			h.tick(61)
			h.ok(&Report{Now: h.now, Worker: "w", AttemptID: a.AttemptID, Done: true, TimedOut: true, ExitCode: 137, Signal: 9})
		}, StateFailed, ReasonTimeout, 137, 9, "timed out after 60 s, killed by the agent"},
		{"worker silent", func(h *harness, a *Assignment) {
			h.ok(&WorkerLost{Now: h.now, Names: []string{"w"}})
		}, StateWaiting, ReasonLost, NoExitCode, 0, "lost: no heartbeat from worker w; requeued"},
		{"agent lost the process", func(h *harness, a *Assignment) {
			h.ok(&Report{Now: h.now, Worker: "w", AttemptID: a.AttemptID, Done: true, Lost: true, ExitCode: 125})
		}, StateWaiting, ReasonLost, NoExitCode, 0, "lost: the agent lost the process; requeued"},
		{"worker asked for new work", func(h *harness, a *Assignment) {
			h.ok(&Pick{Now: h.now, Worker: "w"})
		}, StateWaiting, ReasonFenced, NoExitCode, 0, "fenced: worker w asked for new work; requeued\n[croft] try 2 of 11 on w started"}, // a try without a result does not spend the retries,
		{"reset", func(h *harness, a *Assignment) {
			h.ok(&JobAction{Now: h.now, Action: ActionReset, IDs: []int64{a.JobID}})
		}, StateWaiting, ReasonCanceled, NoExitCode, 0, "canceled: job reset"},
		{"paused", func(h *harness, a *Assignment) {
			h.ok(&JobAction{Now: h.now, Action: ActionPause, IDs: []int64{a.JobID}})
		}, StatePaused, ReasonCanceled, NoExitCode, 0, "canceled: job paused"},
		{"state forced", func(h *harness, a *Assignment) {
			st := StateFailed
			h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: a.JobID, Patch: JobPatch{State: &st}}}})
		}, StateFailed, ReasonCanceled, NoExitCode, 0, "canceled: state set to failed by a user"},
		{"worker stopped", func(h *harness, a *Assignment) {
			h.ok(&WorkerAction{Now: h.now, Action: ActionWorkerStop, Names: []string{"w"}})
		}, StateWaiting, ReasonCanceled, NoExitCode, 0, "canceled: worker w stopped; requeued"},
		{"worker deleted", func(h *harness, a *Assignment) {
			h.ok(&WorkerDelete{Now: h.now, Names: []string{"w"}})
		}, StateWaiting, ReasonDeleted, NoExitCode, 0, "deleted: worker w deleted; requeued"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			id := h.create(JobSpec{Command: "render", Timeout: 60})[0]
			a := h.pick("w")
			h.ok(&Report{Now: h.now, Worker: "w", AttemptID: a.AttemptID, Log: []byte("out")})
			h.tick(2)
			tc.end(h, a)
			h.wantRun(a.AttemptID, 1, tc.state, tc.reason, tc.exit, tc.signal)
			if j := h.job(id); int(j.ExitCode) != tc.exit || int(j.Signal) != tc.signal || j.Reason.String() != tc.reason {
				t.Fatalf("job keeps %d/%d/%q, want %d/%d/%q", j.ExitCode, j.Signal, j.Reason, tc.exit, tc.signal, tc.reason)
			}
			if got := h.log(id); got != "out\n[croft] "+tc.line+"\n" {
				t.Fatalf("log %q, want out, then %q", got, tc.line)
			}
			if tc.reason == ReasonFenced {
				return // the worker runs the next try
			}
			if w, ok := h.st().Worker("w"); ok && w.CurrentEvent != 0 {
				t.Fatalf("worker still runs %d", w.CurrentEvent)
			}
			// Whatever ended it, the next start is the next try.
			h.ok(&JobAction{Now: h.now, Action: ActionReset, IDs: []int64{id}})
			h.ok(&JobAction{Now: h.now, Action: ActionStart, IDs: []int64{id}})
			if b := h.pick("w2"); b == nil || b.Try != 2 || h.run(b.AttemptID).Try != 2 {
				t.Fatalf("next try %+v", b)
			}
		})
	}
}

func TestDeletedJobFreesItsWorkerAndRuns(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "render"})[0]
	a := h.pick("w")
	h.ok(&JobDelete{Now: h.now, IDs: []int64{id}})
	if _, ok := h.st().RunByID(a.AttemptID); ok {
		t.Fatal("the run outlived its job")
	}
	if w, _ := h.st().Worker("w"); w.CurrentEvent != 0 || w.State != WorkerStateIdle {
		t.Fatalf("worker %+v", w)
	}
}

func TestReportSignalIsBounded(t *testing.T) {
	h := newHarness(t)
	h.create(JobSpec{Command: "render"})
	a := h.pick("w")
	for _, sig := range []int{-1, MaxSignal + 1} {
		h.fails(&Report{Now: h.now, Worker: "w", AttemptID: a.AttemptID, Done: true, ExitCode: 1, Signal: sig}, ErrInvalid)
	}
}

func TestJobRunsAfterPagesInTryOrder(t *testing.T) {
	h := newHarness(t)
	ids := h.create(JobSpec{Command: "a"}, JobSpec{Command: "b"})
	var mine []int64
	for i := 0; i < 5; i++ {
		// Interleave the two jobs' runs: each job's pages hold only its own.
		for _, w := range []string{"w1", "w2"} {
			a := h.pick(w)
			if a.JobID == ids[0] {
				mine = append(mine, a.AttemptID)
			}
			h.ok(&Report{Now: h.now, Worker: w, AttemptID: a.AttemptID, Done: true, Lost: true})
		}
	}
	var got []Run
	after, more := int64(0), true
	for pages := 0; more; pages++ {
		if pages > len(mine) {
			t.Fatal("paging does not end")
		}
		var page []Run
		page, after, more = h.st().JobRunsAfter(ids[0], after, 2)
		got = append(got, page...)
	}
	if len(got) != len(mine) {
		t.Fatalf("%d runs, want %d", len(got), len(mine))
	}
	for i, r := range got {
		if r.ID != mine[i] || r.Try != i+1 || r.JobID != ids[0] {
			t.Fatalf("run %d = %+v, want id %d try %d", i, r, mine[i], i+1)
		}
	}
	if page, _, more := h.st().JobRunsAfter(999, 0, 10); len(page) != 0 || more {
		t.Fatal("runs of an unknown job")
	}
}

// TestOldRunRecordsDecode checks that a run written before try numbers
// (eight array fields) decodes with the new fields zero.
func TestOldRunRecordsDecode(t *testing.T) {
	var buf bytes.Buffer
	old := []any{int64(5), "w", int64(7), "frame", StateFinished, int64(100), int64(20), "p"}
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(old); err != nil {
		t.Fatal(err)
	}
	var r Run
	if err := codec.NewDecoderBytes(buf.Bytes(), msgpackHandle).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.ID != 5 || r.Project != "p" || r.Duration != 20 || r.Try != 0 || r.End != 0 || r.Reason != "" {
		t.Fatalf("old run decoded as %+v", r)
	}
}

// TestGroupDoesNotReviveItsLastAttempt: a leaf whose run ended and that
// then became a group keeps its last attempt id; while a child runs the
// group is WORKING, and a late report of that old attempt is still stale.
func TestGroupDoesNotReviveItsLastAttempt(t *testing.T) {
	h := newHarness(t)
	ids := h.create(JobSpec{Command: "render", Timeout: 10}, JobSpec{Command: "child"})
	a := h.pick("w")
	if a.JobID != ids[0] {
		t.Fatalf("picked %+v", a)
	}
	h.tick(11)
	h.ok(&JobTimeout{Now: h.now, Attempts: []int64{a.AttemptID}})
	empty, parent := "", ids[0]
	h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{
		{ID: ids[0], Patch: JobPatch{Command: &empty}},
		{ID: ids[1], Patch: JobPatch{Parent: &parent}},
	}})
	if b := h.pick("w2"); b == nil || b.JobID != ids[1] {
		t.Fatalf("child not picked: %+v", b)
	}
	h.wantState(ids[0], StateRunning)
	if h.st().AttemptLive(a.AttemptID) {
		t.Fatal("the group's old attempt is live again")
	}
	// Like any late final report of an ended run: acknowledged, no change.
	before := h.st().Digest()
	for _, rep := range []*Report{
		{Now: h.now, Worker: "w", AttemptID: a.AttemptID, Log: []byte("x")},
		{Now: h.now, Worker: "w", AttemptID: a.AttemptID, Done: true},
	} {
		if r := h.ok(rep).(ReportResult); !r.Duplicate {
			t.Fatalf("late report %+v", r)
		}
	}
	if h.st().Digest() != before {
		t.Fatal("a late report of the group's old attempt changed the state")
	}
	h.wantState(ids[0], StateRunning)
}
