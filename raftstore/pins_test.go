package raftstore

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// pinFarm has template 1 ("run", no affinity) of the default project.
func pinFarm(t *testing.T) *harness {
	h := newHarness(t)
	sp := shellSpec("run")
	sp.Defaults.Affinity = ""
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: sp})
	return h
}

// executeOn runs template 1 as execution n pinned to host ("": none) and
// returns its job's id.
func (h *harness) executeOn(n int, host string) int64 {
	h.t.Helper()
	return h.ok(&Execute{Now: h.now, ID: hexID(fmt.Sprintf("e%d", n)), Template: hexID("1"), Host: host}).(int64)
}

func (h *harness) workFor(worker string) bool {
	h.t.Helper()
	ok, _ := h.st().WorkFor(worker)
	return ok
}

func TestPinnedExecutionRunsOnlyOnItsHost(t *testing.T) {
	h := pinFarm(t)
	// The host need not exist: the job waits for one of its agents.
	id := h.executeOn(1, "render-7")
	if e := h.execution(hexID("e1")); e.Host != "render-7" || e.State != StateWaiting {
		t.Fatalf("execution %+v", e)
	}
	if h.st().ReadyCount() != 0 {
		t.Fatal("a pinned job is in the shared index")
	}
	h.ok(&WorkerRegister{Now: h.now, Name: "plain"}) // no host
	h.slot("other/1", "other", nil)
	for _, w := range []string{"plain", "other/1"} {
		if h.workFor(w) {
			t.Fatalf("%s has work", w)
		}
		if a := h.pick(w); a != nil {
			t.Fatalf("%s picked %+v", w, a)
		}
	}
	h.slot("render-7/2", "render-7", nil)
	if !h.workFor("render-7/2") {
		t.Fatal("the host's slot has no work")
	}
	a := h.pick("render-7/2")
	if a == nil || a.JobID != id {
		t.Fatalf("the host's slot picked %+v", a)
	}
	// A failure with a retry left puts it back, for its host only.
	h.finish(a, "render-7/2", 1)
	h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: id, Patch: JobPatch{Retry: ptr(3)}}}})
	if h.pick("other/1") != nil || h.pick("plain") != nil {
		t.Fatal("a retry went elsewhere")
	}
	if a := h.pick("render-7/2"); a == nil || a.JobID != id {
		t.Fatalf("retry: %+v", a)
	}
	h.mustHold()
}

func TestPinnedPickOrder(t *testing.T) {
	h := pinFarm(t)
	h.slot("a/1", "a", nil, sh)
	shared := h.create(JobSpec{Command: "shared", Priority: 100})[0]
	p1 := h.executeOn(1, "a")
	p2 := h.executeOn(2, "a")
	// Context session jobs come first, then the pinned ones, oldest
	// first, then the shared index.
	h.open(1, SessionContext, "sh")
	c := h.submit(1, "echo")
	// A paused pinned job waits.
	h.ok(&JobAction{Now: h.now, Action: ActionPause, IDs: []int64{p1}})
	for _, want := range []int64{c, p2} {
		a := h.pick("a/1")
		if a == nil || a.JobID != want {
			t.Fatalf("picked %+v, want job %d", a, want)
		}
		h.finish(a, "a/1", 0)
	}
	h.ok(&JobAction{Now: h.now, Action: ActionStart, IDs: []int64{p1}})
	for _, want := range []int64{p1, shared} {
		a := h.pick("a/1")
		if a == nil || a.JobID != want {
			t.Fatalf("picked %+v, want job %d", a, want)
		}
		h.finish(a, "a/1", 0)
	}
	h.mustHold()
}

// A slot takes a pinned job only of a project it serves, and where its
// affinity lines let it, as anywhere.
func TestPinnedPickProjectsAndAffinity(t *testing.T) {
	h := pinFarm(t)
	h.ok(&ProjectCreate{Now: h.now, Name: "b"})
	h.slot("h/b", "h", []string{"b"})
	h.slot("h/all", "h", nil)
	id := h.executeOn(1, "h")
	if h.workFor("h/b") || h.pick("h/b") != nil {
		t.Fatal("a slot of project b took a default-project job")
	}
	if a := h.pick("h/all"); a == nil || a.JobID != id {
		t.Fatalf("picked %+v", a)
	}
	gpu := "gpu"
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("1"), Patch: TemplatePatch{Defaults: &JobDefaults{Retry: 1, Affinity: gpu}}})
	g := h.executeOn(2, "h")
	h.slot("h/cpu", "h", nil)
	if h.pick("h/cpu") != nil {
		t.Fatal("a slot without gpu took a gpu job")
	}
	h.ok(&WorkerRegister{Now: h.now, Name: "h/gpu", SetAffinity: true, Affinity: "gpu",
		Host: &HostInfo{Name: "h", Slots: 4}})
	if a := h.pick("h/gpu"); a == nil || a.JobID != g {
		t.Fatalf("the gpu slot picked %+v", a)
	}
	h.mustHold()
}

// Deleting the job, by any route, forgets the pin; the count frees.
func TestPinGoesWithTheJob(t *testing.T) {
	h := pinFarm(t)
	a := h.executeOn(1, "h")
	b := h.executeOn(2, "h")
	h.ok(&ExecutionCancel{Now: h.now, ID: hexID("e1")})
	h.ok(&ExecutionDelete{Now: h.now, ID: hexID("e1")})
	h.ok(&JobDelete{Now: h.now, IDs: []int64{b}})
	st := h.st()
	if len(st.pins) != 0 || len(st.pinCount) != 0 || len(st.hostPinned) != 0 {
		t.Fatalf("pins %v, counts %v, indexes %v after the jobs %d, %d went", st.pins, st.pinCount, st.hostPinned, a, b)
	}
	h.mustHold()
}

func TestPinChecks(t *testing.T) {
	h := pinFarm(t)
	e := func(host string) *Execute {
		return &Execute{Now: h.now, ID: hexID("e1"), Template: hexID("1"), Host: host}
	}
	h.fails(e(" "), ErrInvalid)
	h.fails(e("a\nb"), ErrInvalid)
	h.fails(e(strings.Repeat("h", MaxNameBytes+1)), ErrTooLarge)
	// A host holds at most MaxHostPinned (counted from the state: set
	// here rather than made one by one).
	h.st().pinCount["full"] = MaxHostPinned
	h.fails(e("full"), ErrTooLarge)
	delete(h.st().pinCount, "full")
	h.ok(e("full"))
}

// A restored state has the same pins and indexes: a pinned job stays
// out of the shared index and still goes to its host.
func TestPinsSurviveRestore(t *testing.T) {
	h := pinFarm(t)
	h.slot("h/1", "h", nil)
	id := h.executeOn(1, "h")
	h.executeOn(2, "")
	var buf bytes.Buffer
	if err := h.st().WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	before := h.st().Digest()
	if err := h.fsm.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if h.st().Digest() != before || h.st().ReadyCount() != 1 {
		t.Fatalf("restored: digest changed or %d shared runnable jobs", h.st().ReadyCount())
	}
	h.mustHold()
	if a := h.pick("h/1"); a == nil || a.JobID != id {
		t.Fatalf("picked %+v after the restore", a)
	}
	if e := h.execution(hexID("e1")); e.Host != "h" {
		t.Fatalf("execution %+v", e)
	}
}
