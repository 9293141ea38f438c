package raftstore

import (
	"bytes"
	"errors"
	"io"
	"math"
	"testing"
)

func ptr[T any](v T) *T { return &v }

// edit builds a JobEdit from (id, patch) pairs, in the order given.
func (h *harness) edit(items ...JobEditItem) *JobEdit {
	return &JobEdit{Now: h.now, Edits: items}
}

// mustHold fails the test if the state breaks an invariant.
func (h *harness) mustHold() {
	h.t.Helper()
	if err := checkInvariants(h.st()); err != nil {
		h.t.Fatal(err)
	}
}

// TestPoisonParentCycle is the entry that took the farm down for good:
// POST /api/jobs {"1":{"parent":2},"2":{"parent":1}}. Each move alone was
// fine against the state before the batch; together they made a cycle, and
// applying it overflowed the stack on every replica, at every replay.
func TestPoisonParentCycle(t *testing.T) {
	h := newHarness(t)
	g := h.create(JobSpec{Title: "g1"}, JobSpec{Title: "g2"})
	if g[0] != 1 || g[1] != 2 {
		t.Fatalf("ids %v", g)
	}
	h.fails(h.edit(
		JobEditItem{ID: 1, Patch: JobPatch{Parent: ptr[int64](2)}},
		JobEditItem{ID: 2, Patch: JobPatch{Parent: ptr[int64](1)}},
	), ErrInvalid)
	h.mustHold()
	// The same, longer: 1 under 2 under 3 under 1.
	h.create(JobSpec{Title: "g3"})
	h.fails(h.edit(
		JobEditItem{ID: 1, Patch: JobPatch{Parent: ptr[int64](2)}},
		JobEditItem{ID: 2, Patch: JobPatch{Parent: ptr[int64](3)}},
		JobEditItem{ID: 3, Patch: JobPatch{Parent: ptr[int64](1)}},
	), ErrInvalid)
	h.mustHold()
}

// TestPoisonDependencyCycle: {"6":{"dependencies":[7]},"7":{"dependencies":[6]}}
// made both jobs PENDING forever.
func TestPoisonDependencyCycle(t *testing.T) {
	h := newHarness(t)
	for range 7 {
		h.create(JobSpec{Command: "x"})
	}
	h.fails(h.edit(
		JobEditItem{ID: 6, Patch: JobPatch{Dependencies: &[]int64{7}}},
		JobEditItem{ID: 7, Patch: JobPatch{Dependencies: &[]int64{6}}},
	), ErrInvalid)
	h.mustHold()
	h.fails(h.edit(
		JobEditItem{ID: 5, Patch: JobPatch{Dependencies: &[]int64{6}}},
		JobEditItem{ID: 6, Patch: JobPatch{Dependencies: &[]int64{7}}},
		JobEditItem{ID: 7, Patch: JobPatch{Dependencies: &[]int64{5}}},
	), ErrInvalid)
	h.mustHold()
}

// fixture builds:
//
//	g1 ── a (x)
//	g2 ── g3 ── b (x)
//	c (x)
//	e (empty group)
type fixture struct{ g1, a, g2, g3, b, c, e int64 }

func newFixture(h *harness) fixture {
	ids := h.create(
		JobSpec{Title: "g1"},
		JobSpec{ParentRef: 1, Command: "x"},
		JobSpec{Title: "g2"},
		JobSpec{ParentRef: 3, Title: "g3"},
		JobSpec{ParentRef: 4, Command: "x"},
		JobSpec{Command: "x"},
		JobSpec{Title: "e"},
	)
	return fixture{ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6]}
}

func TestEditBatchRefusals(t *testing.T) {
	parent := func(id, p int64) JobEditItem { return JobEditItem{ID: id, Patch: JobPatch{Parent: &p}} }
	deps := func(id int64, d ...int64) JobEditItem { return JobEditItem{ID: id, Patch: JobPatch{Dependencies: &d}} }
	command := func(id int64, c string) JobEditItem { return JobEditItem{ID: id, Patch: JobPatch{Command: &c}} }
	for _, tc := range []struct {
		name  string
		edits func(f fixture) []JobEditItem
		want  error
	}{
		{"under itself", func(f fixture) []JobEditItem { return []JobEditItem{parent(f.g2, f.g2)} }, ErrInvalid},
		{"under its descendant", func(f fixture) []JobEditItem { return []JobEditItem{parent(f.g2, f.g3)} }, ErrInvalid},
		{"cycle across three edits", func(f fixture) []JobEditItem {
			return []JobEditItem{parent(f.g1, f.g3), parent(f.g2, f.g1), parent(f.e, f.g2), parent(f.g3, f.e)}
		}, ErrInvalid},
		{"under a job with a command", func(f fixture) []JobEditItem { return []JobEditItem{parent(f.c, f.a)} }, ErrInvalid},
		{"under a group that gets a command", func(f fixture) []JobEditItem {
			return []JobEditItem{command(f.e, "x"), parent(f.c, f.e)}
		}, ErrInvalid},
		{"command on a group that keeps a child", func(f fixture) []JobEditItem { return []JobEditItem{command(f.g1, "x")} }, ErrInvalid},
		{"command on a group that gains a child", func(f fixture) []JobEditItem {
			return []JobEditItem{parent(f.c, f.g1), parent(f.a, 0), command(f.g1, "x")}
		}, ErrInvalid},
		{"missing parent", func(f fixture) []JobEditItem { return []JobEditItem{parent(f.c, 404)} }, ErrNotFound},
		{"negative parent", func(f fixture) []JobEditItem { return []JobEditItem{parent(f.c, -1)} }, ErrNotFound},
		{"missing job", func(f fixture) []JobEditItem { return []JobEditItem{parent(f.c, f.e), parent(404, 0)} }, ErrNotFound},
		{"missing dependency", func(f fixture) []JobEditItem { return []JobEditItem{deps(f.c, f.a, 404)} }, ErrNotFound},
		{"edited twice", func(f fixture) []JobEditItem { return []JobEditItem{parent(f.c, f.e), parent(f.c, 0)} }, ErrInvalid},
		{"self dependency", func(f fixture) []JobEditItem { return []JobEditItem{deps(f.c, f.c)} }, ErrInvalid},
		{"depends on its final ancestor", func(f fixture) []JobEditItem {
			return []JobEditItem{parent(f.c, f.g3), deps(f.c, f.g2)}
		}, ErrInvalid},
		{"moves under a job it depends on", func(f fixture) []JobEditItem {
			return []JobEditItem{deps(f.a, f.e), parent(f.g1, f.e)}
		}, ErrInvalid},
		{"a new ancestor depends on it", func(f fixture) []JobEditItem {
			return []JobEditItem{deps(f.g2, f.c), parent(f.c, f.g3)}
		}, ErrInvalid},
		{"depends on its final descendant", func(f fixture) []JobEditItem {
			return []JobEditItem{deps(f.g2, f.a), parent(f.g1, f.g3)}
		}, ErrInvalid},
		{"dependency cycle across three edits", func(f fixture) []JobEditItem {
			return []JobEditItem{deps(f.a, f.b), deps(f.b, f.c), deps(f.c, f.a)}
		}, ErrInvalid},
		{"dependency cycle through an old edge", func(f fixture) []JobEditItem {
			return []JobEditItem{deps(f.c, f.b), deps(f.b, f.a)} // a -> c is set below
		}, ErrInvalid},
		{"finished state on a job that becomes a group", func(f fixture) []JobEditItem {
			st := StateFinished
			return []JobEditItem{{ID: f.c, Patch: JobPatch{Command: ptr(""), State: &st}}}
		}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			f := newFixture(h)
			h.ok(&JobSetDeps{Now: h.now, ID: f.a, Deps: []int64{f.c}})
			h.fails(h.edit(tc.edits(f)...), tc.want)
			h.mustHold()
		})
	}
}

func TestEditBatchAcceptsWhatIsFineAtTheEnd(t *testing.T) {
	h := newHarness(t)
	f := newFixture(h)
	// Swap a group and its child group: moved one by one in command
	// order, g2 would first go under g3, its own child.
	h.ok(h.edit(
		JobEditItem{ID: f.g2, Patch: JobPatch{Parent: &f.g3}},
		JobEditItem{ID: f.g3, Patch: JobPatch{Parent: ptr[int64](0)}},
	))
	h.mustHold()
	if g3, g2 := h.job(f.g3), h.job(f.g2); g3.Parent != 0 || g2.Parent != f.g3 || len(g3.Children) != 2 || len(g2.Children) != 0 || g2.HDepth != 2 {
		t.Fatalf("after the swap: g3 %+v\ng2 %+v", g3, g2)
	}
	// A group gets a command as its only child moves out; an empty group
	// takes a job; a leaf becomes a group and takes a child, all at once.
	h.ok(h.edit(
		JobEditItem{ID: f.g1, Patch: JobPatch{Command: ptr("render")}},
		JobEditItem{ID: f.a, Patch: JobPatch{Parent: &f.c}},
		JobEditItem{ID: f.c, Patch: JobPatch{Command: ptr("")}},
	))
	h.mustHold()
	if g1, c := h.job(f.g1), h.job(f.c); g1.IsGroup() || len(g1.Children) != 0 || !c.IsGroup() || c.Total != 1 {
		t.Fatalf("g1 %+v\nc %+v", g1, c)
	}
	// A dependency cycle that is undone in the same edit is no cycle.
	h.ok(&JobSetDeps{Now: h.now, ID: f.b, Deps: []int64{f.g1}})
	h.ok(h.edit(
		JobEditItem{ID: f.g1, Patch: JobPatch{Dependencies: &[]int64{f.b}}},
		JobEditItem{ID: f.b, Patch: JobPatch{Dependencies: &[]int64{}}},
	))
	h.mustHold()
	h.wantState(f.g1, StateBlocked)
	h.wantState(f.b, StateWaiting)
	// A job may leave the line of the job it depends on in the same edit
	// that makes the dependency.
	h.ok(h.edit(
		JobEditItem{ID: f.b, Patch: JobPatch{Parent: ptr[int64](0)}},
		JobEditItem{ID: f.g3, Patch: JobPatch{Dependencies: &[]int64{f.b}}},
	))
	h.mustHold()
}

func TestEditClearingTheCommandOfARunningJob(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "render"})[0]
	a := h.pick("w")
	h.ok(h.edit(JobEditItem{ID: id, Patch: JobPatch{Command: ptr("")}}))
	h.mustHold()
	if h.st().AttemptLive(a.AttemptID) {
		t.Fatal("a group still runs an attempt")
	}
	if w, _ := h.st().Worker("w"); w.CurrentEvent != 0 {
		t.Fatalf("worker still busy: %+v", w)
	}
	h.fails(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, Done: true}, ErrStaleAttempt)
}

func TestFinishedJobBecomesGroup(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "render"})[0]
	a := h.pick("w")
	h.tick(5)
	h.finish(a, "w", 0)
	h.ok(h.edit(JobEditItem{ID: id, Patch: JobPatch{Command: ptr("")}}))
	h.create(JobSpec{Parent: id, Command: "x"})
	h.mustHold() // the group's duration is its child's, not the 5 s it ran
	if d := h.job(id).Duration; d != 0 {
		t.Fatalf("group duration %d", d)
	}
}

// chain creates n nested groups under parent in one command and returns
// their ids, outermost first.
func (h *harness) chain(parent int64, n int) []int64 {
	h.t.Helper()
	specs := []JobSpec{{Parent: parent, Title: "level"}}
	for i := 1; i < n; i++ {
		specs = append(specs, JobSpec{ParentRef: i, Title: "level"})
	}
	return h.create(specs...)
}

func TestDepthLimit(t *testing.T) {
	h := newHarness(t)
	line := h.chain(0, MaxDepth)
	deepest := line[MaxDepth-1]
	if d := h.job(deepest).HDepth; d != MaxDepth {
		t.Fatalf("depth %d", d)
	}
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Parent: deepest, Command: "x"}}}, ErrInvalid)
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Parent: line[MaxDepth-2]}, {ParentRef: 1, Command: "x"}}}, ErrInvalid)
	h.create(JobSpec{Parent: line[MaxDepth-2], Command: "x"}) // depth 64: fine
	// A subtree two levels high fits under depth 62, not under 63.
	sub := h.chain(0, 2)
	h.fails(h.edit(JobEditItem{ID: sub[0], Patch: JobPatch{Parent: &line[MaxDepth-2]}}), ErrInvalid)
	h.ok(h.edit(JobEditItem{ID: sub[0], Patch: JobPatch{Parent: &line[MaxDepth-3]}}))
	h.mustHold()
	// Lifting the line by two levels and a move that deepens the subtree,
	// in one edit: the depth counts in the final tree.
	h.ok(h.edit(
		JobEditItem{ID: line[2], Patch: JobPatch{Parent: ptr[int64](0)}},
		JobEditItem{ID: sub[0], Patch: JobPatch{Parent: &line[MaxDepth-1]}},
	))
	h.mustHold()
	if d := h.job(sub[1]).HDepth; d != MaxDepth {
		t.Fatalf("depth %d", d)
	}
}

// TestLegacyDeepTree: a tree deeper than MaxDepth from before the limit
// still works, but does not grow deeper.
func TestLegacyDeepTree(t *testing.T) {
	h := newHarness(t)
	top := h.chain(0, MaxDepth)
	more := h.chain(0, 10)
	side := h.chain(0, 3)
	leaf := h.create(JobSpec{Parent: more[9], Command: "x"})[0]
	other := h.create(JobSpec{Command: "x", Paused: true})[0]
	// Splice past the checks, as an old version could, and restore it
	// from a snapshot.
	s := h.st()
	s.mu.Lock()
	s.move(s.jobs[more[0]], top[MaxDepth-1], h.now)
	s.move(s.jobs[side[0]], top[MaxDepth-1], h.now)
	s.mu.Unlock()
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	if err := h.fsm.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	h.mustHold()
	if d := h.job(leaf).HDepth; d != MaxDepth+11 {
		t.Fatalf("legacy depth %d", d)
	}
	a := h.pick("w")
	if a == nil || a.JobID != leaf {
		t.Fatalf("picked %+v", a)
	}
	h.finish(a, "w", 0)
	h.ok(&JobAction{Now: h.now, Action: ActionReset, IDs: []int64{top[0]}})
	h.ok(&JobAction{Now: h.now, Action: ActionPause, IDs: []int64{top[3]}})
	h.ok(&JobAction{Now: h.now, Action: ActionStart, IDs: []int64{top[3]}})
	h.ok(&JobSetDeps{Now: h.now, ID: leaf, Deps: []int64{other}})
	h.wantState(leaf, StateBlocked)
	h.mustHold()
	// No new job down there, no move that deepens it...
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Parent: more[9]}}}, ErrInvalid)
	h.fails(h.edit(JobEditItem{ID: side[0], Patch: JobPatch{Parent: &more[9]}}), ErrInvalid)
	// ...but moves that keep or lower its depth are fine.
	h.ok(h.edit(JobEditItem{ID: more[5], Patch: JobPatch{Parent: &more[3]}}))
	h.ok(h.edit(JobEditItem{ID: side[0], Patch: JobPatch{Parent: &top[MaxDepth-2]}}))
	h.ok(h.edit(JobEditItem{ID: more[0], Patch: JobPatch{Parent: &top[10]}}))
	h.mustHold()
	h.ok(&JobDelete{Now: h.now, IDs: []int64{top[0], other}})
	h.mustHold()
	if n := h.st().JobCount(); n != 0 {
		t.Fatalf("%d jobs left", n)
	}
}

func TestCreateStructureRules(t *testing.T) {
	h := newHarness(t)
	g := h.create(JobSpec{Title: "g"})[0]
	sub := h.create(JobSpec{Parent: g, Title: "sub"})[0]
	other := h.create(JobSpec{Command: "x"})[0]
	// A new job waiting for its own ancestor would wait forever.
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Parent: sub, Command: "x", Dependencies: []int64{g}}}}, ErrInvalid)
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Parent: sub, Title: "n"}, {ParentRef: 1, Command: "x", Dependencies: []int64{sub}}}}, ErrInvalid)
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{ParentRef: -1}}}, ErrInvalid)
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{ParentRef: math.MaxInt}}}, ErrInvalid)
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Parent: -3}}}, ErrNotFound)
	// A sibling or an unrelated job is fine.
	h.create(JobSpec{Parent: sub, Title: "n", Dependencies: []int64{other}}, JobSpec{ParentRef: 1, Command: "y", Dependencies: []int64{other}})
	h.mustHold()
}

func TestSetDepsStructureRules(t *testing.T) {
	h := newHarness(t)
	f := newFixture(h)
	h.fails(&JobSetDeps{Now: h.now, ID: f.b, Deps: []int64{f.g2}}, ErrInvalid)
	h.fails(&JobSetDeps{Now: h.now, ID: f.g2, Deps: []int64{f.b}}, ErrInvalid)
	h.fails(&JobSetDeps{Now: h.now, ID: 404, Deps: nil}, ErrNotFound)
	h.ok(&JobSetDeps{Now: h.now, ID: f.b, Deps: []int64{f.a, f.a}})
	h.fails(&JobSetDeps{Now: h.now, ID: f.a, Deps: []int64{f.b}}, ErrInvalid) // b -> a -> b
	h.mustHold()
}

func TestTimeoutArithmeticCannotOverflow(t *testing.T) {
	h := newHarness(t)
	for _, timeout := range []int64{math.MaxInt64, math.MaxInt64 / int64(1e9), 1 << 40} {
		id := h.create(JobSpec{Command: "x", Timeout: timeout})[0]
		a := h.pick("w")
		for _, now := range []int64{math.MaxInt64, math.MinInt64, h.now + 1e9} {
			h.ok(&JobTimeout{Now: now, Attempts: []int64{a.AttemptID}})
			h.wantState(id, StateRunning)
		}
		h.finish(a, "w", 0)
	}
	if !overdue(10e9+1, 0, 10) || overdue(10e9, 0, 10) || overdue(math.MaxInt64, math.MinInt64, math.MaxInt64) {
		t.Fatal("overdue")
	}
	if !overdue(math.MaxInt64, math.MinInt64, 1) {
		t.Fatal("the widest span is overdue for a one-second timeout")
	}
}

func TestReportOffsetsCannotOverflow(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "x"})[0]
	a := h.pick("w")
	h.ok(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, LogOffset: 0, Log: []byte("abc")})
	h.fails(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, LogOffset: math.MaxInt64, Log: []byte("d")}, ErrInvalid)
	// Any negative offset means "append", not only -1.
	h.ok(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, LogOffset: math.MinInt64, Log: []byte("d")})
	if log, _ := h.st().Log(id); log != "abcd" {
		t.Fatalf("log %q", log)
	}
	h.mustHold()
}

func TestErrorsAreWrappedSentinels(t *testing.T) {
	h := newHarness(t)
	f := newFixture(h)
	res := h.apply(h.edit(
		JobEditItem{ID: 1, Patch: JobPatch{Parent: &f.g2}},
		JobEditItem{ID: f.g2, Patch: JobPatch{Parent: &f.g1}},
	))
	err, _ := res.(error)
	if !errors.Is(err, ErrInvalid) || err.Error() == ErrInvalid.Error() {
		t.Fatalf("want ErrInvalid with a reason, got %v", res)
	}
}
