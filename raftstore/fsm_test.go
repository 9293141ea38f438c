package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"unsafe"

	"github.com/hashicorp/raft"
)

// harness applies commands through the real encode -> Apply path.
type harness struct {
	t     *testing.T
	fsm   *FSM
	index uint64
	now   int64
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, fsm: testFSM(t), now: 1_700_000_000 * 1e9}
}

// testFSM returns an FSM whose job log store lives in a test directory,
// with this release's apply rules in force (as a leader's SetRelease
// would put them).
func testFSM(tb testing.TB) *FSM {
	tb.Helper()
	f := releaseZeroFSM(tb)
	f.State().apply(0, &SetRelease{Release: Release})
	return f
}

// releaseZeroFSM returns an FSM as a replica starts: release 0's rules
// until a SetRelease entry.
func releaseZeroFSM(tb testing.TB) *FSM {
	tb.Helper()
	f, err := NewFSM(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

func (h *harness) st() *State { return h.fsm.State() }

// tick advances the leader clock by seconds.
func (h *harness) tick(sec int64) { h.now += sec * 1e9 }

func (h *harness) apply(cmd Command) any {
	h.t.Helper()
	buf, err := Encode(cmd)
	if err != nil {
		h.t.Fatalf("encode: %v", err)
	}
	h.index++
	return h.fsm.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: buf})
}

func (h *harness) ok(cmd Command) any {
	h.t.Helper()
	res := h.apply(cmd)
	if err, isErr := res.(error); isErr {
		h.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

func (h *harness) fails(cmd Command, want error) {
	h.t.Helper()
	before := h.st().Digest()
	res := h.apply(cmd)
	err, isErr := res.(error)
	if !isErr || !errors.Is(err, want) {
		h.t.Fatalf("%T: got %v, want %v", cmd, res, want)
	}
	if after := h.st().Digest(); after != before {
		h.t.Fatalf("%T failed but changed the state", cmd)
	}
}

func (h *harness) create(specs ...JobSpec) []int64 {
	h.t.Helper()
	for i := range specs {
		if specs[i].Retry == 0 {
			specs[i].Retry = 10
		}
	}
	return h.ok(&JobCreate{Now: h.now, Jobs: specs}).([]int64)
}

func (h *harness) job(id int64) Job {
	h.t.Helper()
	j, ok := h.st().Job(id)
	if !ok {
		h.t.Fatalf("job %d missing", id)
	}
	return j
}

func (h *harness) pick(worker string) *Assignment {
	h.t.Helper()
	return h.ok(&Pick{Now: h.now, Worker: worker}).(*Assignment)
}

func (h *harness) finish(a *Assignment, worker string, code int) {
	h.t.Helper()
	h.ok(&Report{Now: h.now, Worker: worker, JobID: a.JobID, AttemptID: a.AttemptID, Done: true, ExitCode: code})
}

func (h *harness) wantState(id int64, want string) {
	h.t.Helper()
	if j := h.job(id); j.Reported() != want {
		got := j.Reported()
		h.t.Fatalf("job %d state %s, want %s", id, got, want)
	}
}

func TestEncodeDecodeEveryCommand(t *testing.T) {
	p := 0.5
	s := "x"
	cmds := []Command{
		&NodeMeta{ID: "n1", RaftAddr: "a", HTTPAddr: "b"},
		&NodeRemove{ID: "n1"},
		&JobCreate{Now: 1, Jobs: []JobSpec{{Title: "t", Dependencies: []int64{1}}}},
		&JobEdit{Now: 1, Edits: []JobEditItem{{ID: 1, Patch: JobPatch{Title: &s}}}},
		&JobDelete{Now: 1, IDs: []int64{1}},
		&JobAction{Now: 1, Action: ActionPause, IDs: []int64{1}},
		&JobSetDeps{Now: 1, ID: 1, Deps: []int64{2}},
		&AffinitySet{Names: map[int]string{1: "linux"}},
		&WorkerRegister{Now: 1, Name: "w", SetAffinity: true, Affinity: "linux"},
		&WorkerEdit{Now: 1, Edits: []WorkerEditItem{{Name: "w", Patch: WorkerPatch{Affinity: &s}}}},
		&WorkerDelete{Now: 1, Names: []string{"w"}},
		&WorkerAction{Now: 1, Action: ActionWorkerStop, Names: []string{"w"}},
		&Pick{Now: 1, Worker: "w"},
		&Report{Now: 1, Worker: "w", JobID: 1, AttemptID: 2, Log: []byte{0xff, 0}, Progress: &p, Done: true, ExitCode: 3, Lost: true, Signal: 9},
		&JobTimeout{Now: 1, Attempts: []int64{1}},
		&WorkerLost{Now: 1, Names: []string{"w"}},
		&ReportPick{Report: Report{Now: 1, Worker: "w", JobID: 1, AttemptID: 2, LogOffset: 5, Done: true, ExitCode: 1}, IP: "10.0.0.1"},
	}
	for _, c := range cmds {
		buf, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		if MessageType(buf[0]) != c.Type() {
			t.Fatalf("%T: type byte %d", c, buf[0])
		}
		got, err := Decode(buf)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("%T: round trip\n got %#v\nwant %#v", c, got, c)
		}
	}
	if _, err := Decode([]byte{200, 1}); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("unknown type: %v", err)
	}
	if _, err := Decode(nil); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("empty entry: %v", err)
	}
}

func TestBatchAppliesEachCommand(t *testing.T) {
	h := newHarness(t)
	var entries [][]byte
	for _, c := range []Command{
		&JobCreate{Now: 1, Jobs: []JobSpec{{Title: "a", Command: "true"}}},
		&JobDelete{Now: 1, IDs: []int64{99}},
		&JobCreate{Now: 1, Jobs: []JobSpec{{Title: "b", Command: "true"}}},
	} {
		b, _ := Encode(c)
		entries = append(entries, b)
	}
	res := h.ok(&Batch{Entries: entries}).([]any)
	if got := res[0].([]int64)[0]; got != 1 {
		t.Fatalf("first create id %d", got)
	}
	if err, _ := res[1].(error); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second result %v", res[1])
	}
	if got := res[2].([]int64)[0]; got != 2 {
		t.Fatalf("third create id %d", got)
	}
}

func TestCreateDefaultsAndValidation(t *testing.T) {
	h := newHarness(t)
	ids := h.create(JobSpec{Title: "paused", Command: "echo", Paused: true, Priority: 129, Affinity: "linux"})
	j := h.job(ids[0])
	if j.Reported() != StatePaused || j.Affinity != "linux" || j.Priority != 129 {
		t.Fatalf("job %+v", j)
	}
	// Priorities are plain integers; an entry past the limits (the edge
	// refuses them) is clamped.
	big := h.create(JobSpec{Title: "big", Command: "echo", Priority: 1000}, JobSpec{Title: "huge", Command: "echo", Priority: 5 * MaxPriority})
	if p := h.job(big[0]).Priority; p != 1000 {
		t.Fatalf("priority 1000 stored as %d", p)
	}
	if p := h.job(big[1]).Priority; p != MaxPriority {
		t.Fatalf("priority clamped to %d", p)
	}
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Parent: ids[0]}}}, ErrInvalid) // parent has a command
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Parent: 404}}}, ErrNotFound)
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Command: "x"}, {Dependencies: []int64{404}}}}, ErrNotFound)
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Affinity: "#64"}}}, ErrInvalid)
	if n := h.st().JobCount(); n != 3 {
		t.Fatalf("%d jobs after refused creates", n)
	}
}

func TestPickPriorityOrder(t *testing.T) {
	h := newHarness(t)
	ids := h.create(
		JobSpec{Title: "low", Command: "x", Priority: 128},
		JobSpec{Title: "high", Command: "x", Priority: 129},
		JobSpec{Title: "high2", Command: "x", Priority: 129},
	)
	for _, want := range []int64{ids[1], ids[2], ids[0]} {
		a := h.pick("w")
		if a == nil || a.JobID != want {
			t.Fatalf("picked %+v, want job %d", a, want)
		}
		h.finish(a, "w", 0)
	}
	if a := h.pick("w"); a != nil {
		t.Fatalf("picked %+v from an empty queue", a)
	}
}

func TestPickHierarchicalPriority(t *testing.T) {
	// A child of the parent with priority 11 beats a child of the parent
	// with priority 10, whatever the children's own priorities.
	h := newHarness(t)
	g := h.create(JobSpec{Title: "p10", Priority: 10}, JobSpec{Title: "p11", Priority: 11})
	kids := h.create(
		JobSpec{Parent: g[0], Command: "x", Priority: 255},
		JobSpec{Parent: g[1], Command: "x", Priority: 0},
	)
	if a := h.pick("w"); a.JobID != kids[1] {
		t.Fatalf("picked %d, want %d", a.JobID, kids[1])
	}
	if d := h.job(kids[1]).HDepth; d != 2 {
		t.Fatalf("h_depth %d", d)
	}
}

func TestAffinityMatching(t *testing.T) {
	h := newHarness(t)
	h.ok(&AffinitySet{Names: map[int]string{1: "linux", 2: "win", 4: "gpu"}})
	ids := h.create(
		JobSpec{Title: "plain", Command: "x", Priority: 1},
		JobSpec{Title: "linux", Command: "x", Affinity: "linux", Priority: 1},
		JobSpec{Title: "linux+gpu", Command: "x", Affinity: "linux,gpu", Priority: 1},
		JobSpec{Title: "win", Command: "x", Affinity: "win", Priority: 200},
	)
	// A worker without affinities only takes affinity-less jobs.
	if a := h.pick("bare"); a.JobID != ids[0] {
		t.Fatalf("bare worker got %d", a.JobID)
	}
	// Lines in priority order: the gpu line first, then plain linux.
	h.ok(&WorkerRegister{Now: h.now, Name: "lin", SetAffinity: true, Affinity: "linux,gpu\nlinux"})
	// The linux,gpu line covers both linux jobs (J & W == J): id order decides.
	if a := h.pick("lin"); a.JobID != ids[1] {
		t.Fatalf("linux worker got %d, want %d", a.JobID, ids[1])
	} else {
		h.finish(a, "lin", 0)
	}
	if a := h.pick("lin"); a.JobID != ids[2] {
		t.Fatalf("linux worker second pick %d", a.JobID)
	} else {
		h.finish(a, "lin", 0)
	}
	// Nothing left this worker may run: the win job never goes to it.
	if a := h.pick("lin"); a != nil {
		t.Fatalf("linux worker got %d (win job?)", a.JobID)
	}
	h.ok(&WorkerRegister{Now: h.now, Name: "w", SetAffinity: true, Affinity: "win"})
	if a := h.pick("w"); a.JobID != ids[3] {
		t.Fatalf("win worker got %+v", a)
	}
	// Unknown names get the lowest free ids.
	h.create(JobSpec{Command: "x", Affinity: "mac"})
	if got := h.st().Affinities()[3]; got != "mac" {
		t.Fatalf("affinity 3 = %q", got)
	}
}

func TestWorkerLinePriorityOrder(t *testing.T) {
	h := newHarness(t)
	ids := h.create(
		JobSpec{Title: "a", Command: "x", Affinity: "a", Priority: 255},
		JobSpec{Title: "b", Command: "x", Affinity: "b", Priority: 1},
	)
	// Line order wins over job priority.
	h.ok(&WorkerRegister{Now: h.now, Name: "w", SetAffinity: true, Affinity: "b\na"})
	if a := h.pick("w"); a.JobID != ids[1] {
		t.Fatalf("got %d, want the line-1 job %d", a.JobID, ids[1])
	}
}

func TestDependenciesAndGroupCounters(t *testing.T) {
	h := newHarness(t)
	g := h.create(JobSpec{Title: "group"})[0]
	kids := h.create(
		JobSpec{Parent: g, Command: "a", Paused: true},
		JobSpec{Parent: g, Command: "b", Paused: true},
	)
	dep := h.create(JobSpec{Title: "dep", Command: "c", Paused: true})[0]
	h.ok(&JobSetDeps{Now: h.now, ID: dep, Deps: kids})
	st := "WAITING"
	h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: dep, Patch: JobPatch{State: &st}}}})
	h.wantState(dep, StateBlocked)
	gj := h.job(g)
	if gj.Total != 2 || gj.TotalFinished != 0 {
		t.Fatalf("group counters %+v", gj)
	}
	if a := h.pick("w"); a != nil {
		t.Fatalf("picked %d while everything is paused or pending", a.JobID)
	}
	h.ok(&JobAction{Now: h.now, Action: ActionStart, IDs: kids})
	for i := 0; i < 2; i++ {
		a := h.pick("w")
		if a.JobID == dep {
			t.Fatal("dependent ran before its dependencies")
		}
		if gj := h.job(g); gj.State != StateRunning || gj.Working != 1 || gj.TotalWorking != 1 {
			t.Fatalf("group while a child works: %+v", gj)
		}
		h.tick(3)
		h.finish(a, "w", 0)
	}
	gj = h.job(g)
	if gj.State != StateFinished || gj.Finished != 2 || gj.TotalFinished != 2 || gj.Working != 0 || gj.Errors != 0 || gj.RunDone != 0 {
		t.Fatalf("finished group %+v", gj)
	}
	if gj.Progress != 1 || gj.Duration != 6e9 {
		t.Fatalf("group progress %v duration %v", gj.Progress, gj.Duration)
	}
	h.wantState(dep, StateWaiting)
	a := h.pick("w")
	if a.JobID != dep {
		t.Fatalf("dependent not picked: %+v", a)
	}
	h.finish(a, "w", 0)
	h.wantState(dep, StateFinished)
}

func TestGroupDependencyBlocksChildren(t *testing.T) {
	h := newHarness(t)
	first := h.create(JobSpec{Command: "first", Paused: true})[0]
	g := h.create(JobSpec{Title: "group", Dependencies: []int64{first}})[0]
	kid := h.create(JobSpec{Parent: g, Command: "kid"})[0]
	h.wantState(g, StateBlocked)
	if !h.job(kid).HPaused {
		t.Fatal("child of a PENDING group is not h_paused")
	}
	h.ok(&JobAction{Now: h.now, Action: ActionStart, IDs: []int64{first}})
	a := h.pick("w")
	if a.JobID != first {
		t.Fatalf("picked %d", a.JobID)
	}
	h.finish(a, "w", 0)
	if h.job(kid).HPaused {
		t.Fatal("child still blocked after the group's dependency finished")
	}
	if a := h.pick("w"); a.JobID != kid {
		t.Fatalf("picked %+v", a)
	}
}

func TestDependencyRules(t *testing.T) {
	h := newHarness(t)
	g := h.create(JobSpec{Title: "g"})[0]
	kid := h.create(JobSpec{Parent: g, Command: "x"})[0]
	a := h.create(JobSpec{Command: "a"})[0]
	b := h.create(JobSpec{Command: "b", Dependencies: []int64{a}})[0]
	h.fails(&JobSetDeps{Now: h.now, ID: a, Deps: []int64{b}}, ErrInvalid) // cycle
	h.fails(&JobSetDeps{Now: h.now, ID: a, Deps: []int64{a}}, ErrInvalid)
	h.fails(&JobSetDeps{Now: h.now, ID: kid, Deps: []int64{g}}, ErrInvalid)
	h.fails(&JobSetDeps{Now: h.now, ID: g, Deps: []int64{kid}}, ErrInvalid)
	h.fails(&JobSetDeps{Now: h.now, ID: a, Deps: []int64{404}}, ErrNotFound)
	// Deleting a dependency releases its dependents.
	h.wantState(b, StateBlocked)
	h.ok(&JobDelete{Now: h.now, IDs: []int64{a}})
	h.wantState(b, StateWaiting)
}

func TestRetryAndErrors(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "false", Retry: 2})[0]
	for run := 1; run <= 2; run++ {
		a := h.pick("w")
		if a == nil || a.JobID != id {
			t.Fatalf("run %d: picked %+v", run, a)
		}
		h.finish(a, "w", 1)
		j := h.job(id)
		if j.State != StateFailed || j.RunDone != run {
			t.Fatalf("run %d: %+v", run, j)
		}
	}
	if a := h.pick("w"); a != nil {
		t.Fatalf("picked beyond retry: %+v", a)
	}
	w, _ := h.st().Worker("w")
	if w.Error != 2 || w.Finished != 0 {
		t.Fatalf("worker counters %+v", w)
	}
	// reseterror puts it back; run_done is kept, so the retry budget is spent.
	h.ok(&JobAction{Now: h.now, Action: ActionResetError, IDs: []int64{id}})
	h.wantState(id, StateWaiting)
	if h.job(id).RunDone != 2 {
		t.Fatal("run_done reset")
	}
	if a := h.pick("w"); a == nil {
		t.Fatal("WAITING job not picked after reseterror")
	}
}

func TestPauseDuringRunStopsTheAttempt(t *testing.T) {
	h := newHarness(t)
	g := h.create(JobSpec{Title: "g"})[0]
	id := h.create(JobSpec{Parent: g, Command: "sleep 100"})[0]
	a := h.pick("w")
	h.ok(&JobAction{Now: h.now, Action: ActionPause, IDs: []int64{g}})
	j := h.job(id)
	if j.State == StateRunning || !j.HPaused {
		t.Fatalf("job after pausing its group: %+v", j)
	}
	if h.st().AttemptLive(a.AttemptID) {
		t.Fatal("attempt still live after pause")
	}
	h.fails(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, LogOffset: 0, Log: []byte("x")}, ErrStaleAttempt)
	h.fails(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, Done: true}, ErrStaleAttempt)
	w, _ := h.st().Worker("w")
	if w.State != WorkerStateIdle || w.CurrentEvent != 0 {
		t.Fatalf("worker after pause %+v", w)
	}
	ev, _ := h.st().RunByID(a.AttemptID)
	if ev.State != StatePaused {
		t.Fatalf("event state %s", ev.State)
	}
	h.ok(&JobAction{Now: h.now, Action: ActionStart, IDs: []int64{g}})
	if b := h.pick("w"); b == nil || b.JobID != id || b.AttemptID == a.AttemptID {
		t.Fatalf("after start: %+v", b)
	}
}

func TestReportsAreIdempotentAndFenced(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "echo", ProgressPattern: "%percent%"})[0]
	a := h.pick("w")
	rep := func(off int64, text string) any {
		return h.apply(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, LogOffset: off, Log: []byte(text)})
	}
	rep(0, "hello ")
	rep(0, "hello ")   // retried: ignored
	rep(3, "lo world") // overlapping: only the new tail
	rep(6, "world")    // retried again
	if res, _ := rep(99, "gap").(error); !errors.Is(res, ErrInvalid) {
		t.Fatalf("gap accepted: %v", res)
	}
	if log, _ := h.st().Log(id); log != "hello world" {
		t.Fatalf("log %q", log)
	}
	p := 0.25
	h.ok(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, LogOffset: 11, Progress: &p})
	if h.job(id).Progress != 0.25 {
		t.Fatal("progress not applied")
	}
	h.finish(a, "w", 0)
	// The final report retried after it was applied: acknowledged, no change.
	before := h.st().Digest()
	res := h.ok(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, Done: true}).(ReportResult)
	if !res.Duplicate || h.st().Digest() != before {
		t.Fatalf("duplicate final report: %+v", res)
	}
	// A report naming another worker or job is refused.
	h.fails(&Report{Now: h.now, Worker: "other", JobID: id, AttemptID: a.AttemptID, Done: true}, ErrStaleAttempt)
	h.fails(&Report{Now: h.now, Worker: "w", JobID: id + 1, AttemptID: a.AttemptID, Done: true}, ErrStaleAttempt)
	h.fails(&Report{Now: h.now, Worker: "w", AttemptID: 12345, Done: true}, ErrStaleAttempt)
}

func TestReportPickTakesTheNextJob(t *testing.T) {
	h := newHarness(t)
	ids := h.create(JobSpec{Command: "a", Priority: 2}, JobSpec{Command: "b", Priority: 1})
	a := h.pick("w")
	if a.JobID != ids[0] {
		t.Fatalf("picked %d, want %d", a.JobID, ids[0])
	}
	rp := func(at *Assignment, code int) any {
		return h.apply(&ReportPick{Report: Report{Now: h.now, Worker: "w", JobID: at.JobID, AttemptID: at.AttemptID, Done: true, ExitCode: code}, IP: "10.0.0.9"})
	}
	res, ok := rp(a, 0).(ReportPickResult)
	if !ok || !res.Report.Done || res.Next == nil || res.Next.JobID != ids[1] {
		t.Fatalf("report and pick: %+v, next %+v", res, res.Next)
	}
	h.wantState(ids[0], StateFinished)
	h.wantState(ids[1], StateRunning)
	if w, _ := h.st().Worker("w"); w.CurrentEvent != res.Next.AttemptID || w.IP != "10.0.0.9" {
		t.Fatalf("worker %+v after the pick", w)
	}
	// The same, retried (the reply was lost): the result is acknowledged
	// again, and the attempt handed out first, never started, is requeued
	// for a new one.
	again := rp(a, 0).(ReportPickResult)
	if !again.Report.Duplicate || again.Next == nil || again.Next.JobID != ids[1] || again.Next.AttemptID == res.Next.AttemptID {
		t.Fatalf("retried report and pick: %+v, next %+v", again, again.Next)
	}
	if j := h.job(ids[1]); j.RunDone != 0 || j.Attempt != again.Next.AttemptID {
		t.Fatalf("the unstarted attempt counted: %+v", j)
	}
	// Nothing left: the result is applied, nothing is picked.
	last := rp(again.Next, 0).(ReportPickResult)
	if !last.Report.Done || last.Next != nil {
		t.Fatalf("report with an empty queue: %+v", last)
	}
	h.wantState(ids[1], StateFinished)
	// A stale report picks nothing and changes nothing.
	h.create(JobSpec{Command: "c"})
	h.fails(&ReportPick{Report: Report{Now: h.now, Worker: "w", JobID: ids[0], AttemptID: 999, Done: true}}, ErrStaleAttempt)
	// Only a final report may pick.
	h.fails(&ReportPick{Report: Report{Now: h.now, Worker: "w", JobID: ids[0], AttemptID: a.AttemptID}}, ErrInvalid)
}

func TestLostAttemptIsRequeued(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "render"})[0]
	a := h.pick("w")
	h.ok(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, Done: true, Lost: true})
	j := h.job(id)
	if j.State != StateWaiting || j.RunDone != 0 {
		t.Fatalf("lost attempt: %+v", j)
	}
	if b := h.pick("w"); b == nil || b.AttemptID == a.AttemptID {
		t.Fatalf("requeued job not picked again: %+v", b)
	}
}

func TestTimeoutsAndLostWorkers(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "sleep", Timeout: 10})[0]
	a := h.pick("w")
	h.tick(5)
	h.ok(&JobTimeout{Now: h.now, Attempts: []int64{a.AttemptID}}) // not late yet: no-op
	h.wantState(id, StateRunning)
	h.tick(6)
	h.ok(&JobTimeout{Now: h.now, Attempts: []int64{a.AttemptID}})
	j := h.job(id)
	if j.State != StateFailed || j.RunDone != 1 {
		t.Fatalf("timed out job %+v", j)
	}
	if w, _ := h.st().Worker("w"); w.State != WorkerStateLost || w.Error != 1 {
		t.Fatalf("worker after job timeout %+v", w)
	}
	if log, _ := h.st().Log(id); !bytes.Contains([]byte(log), []byte("timed out")) {
		t.Fatalf("log lacks the timeout note: %q", log)
	}
	// A lost worker's job goes back to WAITING without counting an error.
	b := h.pick("w2")
	h.ok(&WorkerLost{Now: h.now, Names: []string{"w2"}})
	jb := h.job(b.JobID)
	if jb.State != StateWaiting && jb.State != StateFailed {
		t.Fatalf("job of lost worker %+v", jb)
	}
	if jb.RunDone != 1 {
		t.Fatalf("lost worker counted a run: %+v", jb)
	}
	if w, _ := h.st().Worker("w2"); w.State != WorkerStateLost {
		t.Fatalf("lost worker %+v", w)
	}
	h.fails(&Report{Now: h.now, Worker: "w2", JobID: b.JobID, AttemptID: b.AttemptID, Done: true}, ErrStaleAttempt)
	// Both are lost now: the sweeper watches only the others.
	h.ok(&WorkerRegister{Now: h.now, Name: "w3"})
	if got := h.st().WatchedWorkers(); len(got) != 1 || got[0] != "w3" {
		t.Fatalf("watched workers %q, want [w3]", got)
	}
}

func TestWorkerStopDeleteAndRestart(t *testing.T) {
	h := newHarness(t)
	ids := h.create(JobSpec{Command: "a"}, JobSpec{Command: "b"})
	a := h.pick("w")
	h.ok(&WorkerAction{Now: h.now, Action: ActionWorkerStop, Names: []string{"w"}})
	h.wantState(a.JobID, StateWaiting)
	if b := h.pick("w"); b != nil {
		t.Fatal("a stopped worker got work")
	}
	h.ok(&WorkerAction{Now: h.now, Action: ActionWorkerStart, Names: []string{"w"}})
	b := h.pick("w")
	// Picking again while busy means the worker restarted: requeue, no error.
	c := h.pick("w")
	if c == nil || h.job(b.JobID).RunDone != 0 {
		t.Fatalf("restart pick %+v", c)
	}
	h.fails(&WorkerAction{Now: h.now, Action: ActionWorkerStop, Names: []string{"nope"}}, ErrNotFound)
	h.ok(&WorkerDelete{Now: h.now, Names: []string{"w"}})
	if _, ok := h.st().Worker("w"); ok {
		t.Fatal("worker not deleted")
	}
	for _, id := range ids {
		if s := h.job(id).State; s != StateWaiting {
			t.Fatalf("job %d %s after its worker was deleted", id, s)
		}
	}
}

func TestEditMoveResetDelete(t *testing.T) {
	h := newHarness(t)
	g1 := h.create(JobSpec{Title: "g1"})[0]
	g2 := h.create(JobSpec{Title: "g2"})[0]
	kid := h.create(JobSpec{Parent: g1, Command: "x"})[0]
	title, prio, aff := "renamed", 300, "linux"
	h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: kid, Patch: JobPatch{Title: &title, Priority: &prio, Affinity: &aff, Parent: &g2}}}})
	j := h.job(kid)
	if j.Title != "renamed" || j.Priority != 300 || j.Parent != g2 || j.AffinityBits == 0 {
		t.Fatalf("edited job %+v", j)
	}
	if h.job(g1).Total != 0 || h.job(g2).Total != 1 {
		t.Fatalf("counters after move: g1 %d g2 %d", h.job(g1).Total, h.job(g2).Total)
	}
	h.fails(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: g2, Patch: JobPatch{Parent: &kid}}}}, ErrInvalid)
	h.fails(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: kid, Patch: JobPatch{Title: &title}}, {ID: 404, Patch: JobPatch{Title: &title}}}}, ErrNotFound)
	bad := "WORKING"
	h.fails(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: kid, Patch: JobPatch{State: &bad}}}}, ErrInvalid)
	h.ok(&WorkerRegister{Now: h.now, Name: "w", SetAffinity: true, Affinity: "linux"})
	a := h.pick("w")
	h.finish(a, "w", 0)
	h.wantState(g2, StateFinished)
	h.ok(&JobAction{Now: h.now, Action: ActionReset, IDs: []int64{g2}})
	h.wantState(kid, StateWaiting)
	h.wantState(g2, StateWaiting)
	if h.job(kid).RunDone != 1 {
		t.Fatal("reset cleared run_done")
	}
	fin := StateFinished
	h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: kid, Patch: JobPatch{State: &fin}}}})
	h.wantState(g2, StateFinished)
	h.ok(&JobDelete{Now: h.now, IDs: []int64{g2}})
	if _, ok := h.st().Job(kid); ok {
		t.Fatal("child survived its group's delete")
	}
	if _, ok := h.st().Log(kid); ok {
		t.Fatal("log survived")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.ok(&NodeMeta{ID: "n1", RaftAddr: "r", HTTPAddr: "h"})
	h.ok(&AffinitySet{Names: map[int]string{1: "linux"}})
	g := h.create(JobSpec{Title: "g"})[0]
	ids := h.create(JobSpec{Parent: g, Command: "a", Affinity: "linux"}, JobSpec{Parent: g, Command: "b"})
	h.create(JobSpec{Command: "c", Dependencies: ids})
	h.ok(&WorkerRegister{Now: h.now, Name: "w", SetAffinity: true, Affinity: "linux"})
	a := h.pick("w")
	h.ok(&Report{Now: h.now, Worker: "w", JobID: a.JobID, AttemptID: a.AttemptID, LogOffset: 0, Log: []byte("out\n")})

	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	restored := testFSM(t)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got, want := restored.State().Digest(), h.st().Digest(); got != want {
		t.Fatalf("digest after restore %s, want %s", got, want)
	}
	// The rebuilt indexes behave like the originals: the same next steps
	// give the same state on both.
	h2 := &harness{t: t, fsm: restored, index: h.index, now: h.now}
	for _, hh := range []*harness{h, h2} {
		hh.finish(a, "w", 0)
		hh.pick("w")
		hh.pick("w2")
	}
	if h.st().Digest() != h2.st().Digest() {
		t.Fatal("restored state diverged after further commands")
	}
	if err := testFSM(t).Restore(io.NopCloser(bytes.NewReader([]byte("garbage")))); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("garbage snapshot: %v", err)
	}
}

type memSink struct{ bytes.Buffer }

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { return nil }

func TestMoveRespectsDependencies(t *testing.T) {
	h := newHarness(t)
	g := h.create(JobSpec{Title: "g"})[0]
	x := h.create(JobSpec{Command: "x"})[0]
	h.ok(&JobSetDeps{Now: h.now, ID: g, Deps: []int64{x}})
	// Moving x under g would make g wait for its own child forever.
	h.fails(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: x, Patch: JobPatch{Parent: &g}}}}, ErrInvalid)
	// Deleting a dependency inside a deleted subtree never panics.
	g2 := h.create(JobSpec{Title: "g2"})[0]
	a := h.create(JobSpec{Parent: g2, Command: "a"})[0]
	h.create(JobSpec{Parent: g2, Command: "b", Dependencies: []int64{a}})
	h.ok(&JobDelete{Now: h.now, IDs: []int64{g2}})
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
}

func TestCreateWithParentRefs(t *testing.T) {
	h := newHarness(t)
	ids := h.create(
		JobSpec{Title: "group"},
		JobSpec{ParentRef: 1, Command: "a"},
		JobSpec{ParentRef: 1, Title: "sub"},
		JobSpec{ParentRef: 3, Command: "b"},
	)
	if g := h.job(ids[0]); g.Total != 2 || len(g.Children) != 2 {
		t.Fatalf("group %+v", g)
	}
	if b := h.job(ids[3]); b.Parent != ids[2] || b.HDepth != 3 {
		t.Fatalf("grandchild %+v", b)
	}
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{ParentRef: 1}}}, ErrInvalid)                 // not earlier
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Command: "x"}, {ParentRef: 1}}}, ErrInvalid) // not a group
	// New affinity names are counted across the whole request.
	var specs []JobSpec
	for i := 0; i < MaxAffinityID+1; i++ {
		specs = append(specs, JobSpec{Command: "x", Affinity: fmt.Sprint("aff", i)})
	}
	h.fails(&JobCreate{Now: h.now, Jobs: specs}, ErrInvalid)
}

func TestWorkForSaysWhenAPickChangesSomething(t *testing.T) {
	h := newHarness(t)
	work := func(w string) bool { ok, _ := h.st().WorkFor(w); return ok }
	if !work("new") {
		t.Fatal("an unknown worker must be picked for (the Pick creates it)")
	}
	h.pick("new")
	if work("new") {
		t.Fatal("an idle known worker with nothing queued")
	}
	h.create(JobSpec{Command: "x"})
	if !work("new") {
		t.Fatal("a job is waiting")
	}
	h.pick("new")
	if !work("new") {
		t.Fatal("a busy worker asking again restarted: the Pick requeues its attempt")
	}
	h.ok(&WorkerLost{Now: h.now, Names: []string{"new"}})
	if !work("new") {
		t.Fatal("a worker marked lost is brought back by its next Pick")
	}
	h.pick("new")
	h.ok(&WorkerAction{Now: h.now, Action: ActionWorkerStop, Names: []string{"new"}})
	if work("new") {
		t.Fatal("a stopped worker gets nothing")
	}
}

// A state holds one Job per job, a million of them on a large farm: its
// size is the coordinator's memory per job, and 512 bytes is a threshold
// twice over: an object with pointers past it carries an 8-byte malloc
// header (so the next class, 576, takes at most 568 bytes), and the
// collector scans objects up to it span by span, several times faster
// than one by one (a 100,000-job create took 10-30 % longer with Job at
// 568 bytes). The counters that fit are 32-bit, the reason a byte. A
// field that pushes Job past 512 bytes must say why here.
func TestJobFitsItsSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(Job{}); n > 512 {
		t.Fatalf("Job is %d bytes, past 512 (the span-scanned size classes)", n)
	}
}

// TestWorkerDrain: a drained worker finishes what it runs (the attempt
// stays current, its report counts) and takes no new job; under release
// 0's rules, which had no drain, the action is refused as it was.
func TestWorkerDrain(t *testing.T) {
	h := newHarness(t)
	ids := h.create(JobSpec{Command: "a"}, JobSpec{Command: "b"})
	a := h.pick("w")
	h.ok(&WorkerAction{Now: h.now, Action: ActionWorkerDrain, Names: []string{"w"}})
	h.wantState(a.JobID, StateRunning)
	h.finish(a, "w", 0)
	h.wantState(a.JobID, StateFinished)
	if b := h.pick("w"); b != nil {
		t.Fatalf("a drained worker got job %d", b.JobID)
	}
	h.wantState(ids[1], StateWaiting)
	h.ok(&WorkerAction{Now: h.now, Action: ActionWorkerStart, Names: []string{"w"}})
	if b := h.pick("w"); b == nil || b.JobID != ids[1] {
		t.Fatalf("re-enabled: %+v", b)
	}

	old := &harness{t: t, fsm: releaseZeroFSM(t), now: h.now}
	old.fails(&WorkerAction{Now: old.now, Action: ActionWorkerDrain, Names: []string{"w"}}, ErrInvalid)
}
