package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// sid returns the n-th test session id (32 hex digits).
func sid(n int) string { return fmt.Sprintf("%032x", n) }

func (h *harness) open(n int, kind, interp string) SessionView {
	h.t.Helper()
	h.ok(&SessionOpen{Now: h.now, ID: sid(n), Kind: kind, Interpreter: interp, Name: "s"})
	return h.session(n)
}

func (h *harness) session(n int) SessionView {
	h.t.Helper()
	x, ok := h.st().Session(sid(n))
	if !ok {
		h.t.Fatalf("session %d missing", n)
	}
	return x
}

func (h *harness) submit(n int, code string) int64 {
	h.t.Helper()
	return h.ok(&SessionSubmit{Now: h.now, ID: sid(n), Code: code}).(int64)
}

func TestSessionOpenChoosesAHostThatOffersTheInterpreter(t *testing.T) {
	h := newHarness(t)
	h.fails(&SessionOpen{Now: h.now, ID: sid(1), Kind: SessionContext, Interpreter: "sh"}, ErrInvalid)
	h.ok(&ProjectCreate{Now: h.now, Name: "other"})
	h.slot("a", "a", []string{"other"}, sh) // does not serve the default project
	h.slot("b", "b", nil, sh)
	h.slot("c", "c", nil, sh)
	h.slot("p", "p", nil, HostInterpreter{Name: "python3", Path: "/usr/bin/python3"})
	// Fewest open sessions, ties by name: b, c, b.
	for i, want := range []string{"b", "c", "b"} {
		if x := h.open(i+1, SessionContext, "sh"); x.Host != want || x.Interpreter != "sh" || x.State != SessionStateOpen || x.Project != DefaultProject {
			t.Fatalf("session %d: %+v, want host %s", i+1, x, want)
		}
	}
	// A configured interpreter is offered by the hosts that offer the
	// one it uses.
	h.ok(&InterpreterSet{Now: h.now, Name: "py", Template: "{interpreter} -u {file}", Uses: "python3"})
	if x := h.open(4, SessionContext, "py"); x.Host != "p" {
		t.Fatalf("py session on %q", x.Host)
	}
	h.fails(&SessionOpen{Now: h.now, ID: sid(5), Kind: SessionContext, Interpreter: "ruby"}, ErrInvalid)
	// A group session has no host.
	if x := h.open(6, SessionGroup, ""); x.Host != "" || x.Kind != SessionGroup {
		t.Fatalf("group session %+v", x)
	}
	// A closed session frees its place on the host.
	h.ok(&SessionClose{Now: h.now, ID: sid(1)})
	h.ok(&SessionClose{Now: h.now, ID: sid(3)})
	if x := h.open(7, SessionContext, "sh"); x.Host != "b" {
		t.Fatalf("after closing b's sessions: %q", x.Host)
	}
}

func TestContextSessionRunsInOrderOnItsHost(t *testing.T) {
	h := newHarness(t)
	h.slot("r1", "r1", nil, sh)
	h.slot("r1/2", "r1", nil, sh)
	h.slot("other", "other", nil) // no sh: never the session's host
	h.open(1, SessionContext, "sh")
	first, second := h.submit(1, "echo one"), h.submit(1, "exit 3")
	plain := h.create(JobSpec{Title: "plain", Command: "true"})[0]
	if x := h.session(1); !slices.Equal(x.Jobs, []int64{first, second}) || x.Busy {
		t.Fatalf("session %+v", x)
	}
	// A slot of another host never gets a session job.
	if a := h.pick("other"); a == nil || a.JobID != plain {
		t.Fatalf("other host picked %+v, want the plain job", a)
	}
	a := h.pick("r1")
	if a == nil || a.JobID != first || !strings.Contains(a.Command, "'/bin/sh'") || !strings.Contains(a.Command, "mktemp") {
		t.Fatalf("r1 picked %+v", a)
	}
	if !h.session(1).Busy {
		t.Fatal("a session with a running job is not busy")
	}
	// The second job waits for the first, even with a slot free.
	if b := h.pick("r1/2"); b != nil {
		t.Fatalf("r1/2 picked %+v while the first job runs", b)
	}
	if work, _ := h.st().WorkFor("r1/2"); work {
		t.Fatal("WorkFor says there is work for r1/2")
	}
	h.tick(1)
	h.finish(a, "r1", 0)
	if x := h.session(1); x.Busy || x.LastActivity != h.now {
		t.Fatalf("after the first job: %+v", x)
	}
	if work, _ := h.st().WorkFor("r1/2"); !work {
		t.Fatal("WorkFor sees no work for r1/2")
	}
	b := h.pick("r1/2")
	if b == nil || b.JobID != second {
		t.Fatalf("r1/2 picked %+v", b)
	}
	h.finish(b, "r1/2", 3)
	if j := h.job(second); j.State != StateFailed || j.ExitCode != 3 || j.Session != sid(1) {
		t.Fatalf("second job %+v", j)
	}
	// A failed job ends its turn: the next runs.
	third := h.submit(1, "echo three")
	if c := h.pick("r1"); c == nil || c.JobID != third {
		t.Fatalf("third %+v", c)
	}
	// Resetting an earlier job puts it first again: it runs before any
	// later job that has not started.
	fourth := h.submit(1, "echo four")
	h.ok(&JobAction{Now: h.now, Action: ActionReset, IDs: []int64{second}})
	h.ok(&Report{Now: h.now, Worker: "r1", JobID: third, AttemptID: h.job(third).Attempt, Done: true})
	if d := h.pick("r1/2"); d == nil || d.JobID != second {
		t.Fatalf("after a reset: %+v, want %d (not %d)", d, second, fourth)
	}
}

func TestSessionCommandRunsTheCode(t *testing.T) {
	h := newHarness(t)
	h.slot("r1", "r1", nil, sh)
	h.open(1, SessionContext, "sh")
	h.submit(1, "echo 'one'; echo \"$0\" >/dev/null; exit 3")
	a := h.pick("r1")
	out, err := exec.Command("/bin/sh", "-c", a.Command).Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || string(out) != "one\n" {
		t.Fatalf("ran %q: %q, %v", a.Command, out, err)
	}
	h.finish(a, "r1", 3)
	// A template without {file} writes no file.
	h.ok(&InterpreterSet{Now: h.now, Name: "sh-c", Template: "{interpreter} -c {code}", Uses: "sh"})
	h.open(2, SessionContext, "sh-c")
	h.submit(2, "echo two")
	b := h.pick("r1")
	if b == nil || b.Command != "'/bin/sh' -c 'echo two'" {
		t.Fatalf("sh-c command %+v", b)
	}
}

func TestCloseCancelsAndDeleteForgets(t *testing.T) {
	h := newHarness(t)
	h.slot("r1", "r1", nil, sh)
	h.open(1, SessionContext, "sh")
	first, second := h.submit(1, "sleep 100"), h.submit(1, "echo two")
	a := h.pick("r1")
	h.fails(&SessionDelete{Now: h.now, ID: sid(1)}, ErrInvalid) // open
	h.ok(&SessionClose{Now: h.now, ID: sid(1)})
	h.wantState(first, StateCanceled)
	h.wantState(second, StateCanceled)
	if r, _ := h.st().RunByID(a.AttemptID); r.Reason != ReasonCanceled {
		t.Fatalf("run %+v", r)
	}
	h.fails(&Report{Now: h.now, Worker: "r1", JobID: first, AttemptID: a.AttemptID, Log: []byte("x")}, ErrStaleAttempt)
	if x := h.session(1); x.State != SessionStateClosed || x.Reason != SessionClosedByUser || x.Busy {
		t.Fatalf("closed session %+v", x)
	}
	h.fails(&SessionSubmit{Now: h.now, ID: sid(1), Code: "true"}, ErrInvalid)
	h.ok(&SessionClose{Now: h.now, ID: sid(1)}) // twice is once
	h.ok(&SessionDelete{Now: h.now, ID: sid(1)})
	if _, ok := h.st().Session(sid(1)); ok || h.st().JobCount() != 0 {
		t.Fatalf("after delete: %d jobs", h.st().JobCount())
	}
	h.fails(&SessionClose{Now: h.now, ID: sid(1)}, ErrNotFound)
}

func TestGroupSessionStartsItsJobsTogether(t *testing.T) {
	h := newHarness(t)
	h.open(1, SessionGroup, "")
	one, two := h.submit(1, "echo one"), h.submit(1, "echo two")
	h.wantState(one, StatePaused)
	if a := h.pick("w1"); a != nil {
		t.Fatalf("picked %+v before the start", a)
	}
	h.ok(&SessionStart{Now: h.now, ID: sid(1)})
	a, b := h.pick("w1"), h.pick("w2")
	if a == nil || b == nil || a.JobID != one || b.JobID != two || a.Command != "echo one" {
		t.Fatalf("group jobs run together anywhere: %+v %+v", a, b)
	}
	if !h.session(1).Busy {
		t.Fatal("not busy")
	}
	h.slot("r1", "r1", nil, sh)
	h.open(2, SessionContext, "sh")
	h.fails(&SessionStart{Now: h.now, ID: sid(2)}, ErrInvalid)
}

func TestSessionExpiresWhenInactive(t *testing.T) {
	h := newHarness(t)
	h.slot("r1", "r1", nil, sh)
	h.ok(&SessionOpen{Now: h.now, ID: sid(1), Kind: SessionContext, Interpreter: "sh", InactiveTimeout: 60})
	h.tick(30)
	if got := h.st().ExpiredSessions(h.now, 10); len(got) != 0 {
		t.Fatalf("expired early: %v", got)
	}
	h.submit(1, "sleep 100") // touches it
	a := h.pick("r1")
	h.tick(100)
	// Busy: not expired, whatever the leader thought.
	h.ok(&SessionExpire{Now: h.now, IDs: []string{sid(1)}})
	if x := h.session(1); x.State != SessionStateOpen {
		t.Fatalf("a busy session expired: %+v", x)
	}
	h.finish(a, "r1", 0)
	h.tick(30)
	h.ok(&SessionUpdate{Now: h.now, ID: sid(1)}) // touches it
	h.tick(59)
	h.ok(&SessionExpire{Now: h.now, IDs: []string{sid(1)}})
	if x := h.session(1); x.State != SessionStateOpen {
		t.Fatalf("expired before its timeout: %+v", x)
	}
	h.tick(2)
	if got := h.st().ExpiredSessions(h.now, 10); !slices.Equal(got, []string{sid(1)}) {
		t.Fatalf("ExpiredSessions %v", got)
	}
	h.ok(&SessionExpire{Now: h.now, IDs: []string{sid(1), sid(9)}})
	if x := h.session(1); x.State != SessionStateClosed || x.Reason != SessionExpired || x.Closed != h.now {
		t.Fatalf("not expired: %+v", x)
	}
}

func TestSessionBounds(t *testing.T) {
	h := newHarness(t)
	h.slot("r1", "r1", nil, sh)
	big := make([]byte, MaxSessionDoc+1)
	labels := map[string]string{}
	for i := 0; i <= MaxSessionLabels; i++ {
		labels[fmt.Sprint(i)] = "v"
	}
	for _, c := range []struct {
		cmd  *SessionOpen
		want error
	}{
		{&SessionOpen{ID: "nothex", Kind: SessionGroup}, ErrInvalid},
		{&SessionOpen{ID: strings.ToUpper(sid(10)), Kind: SessionGroup}, ErrInvalid},
		{&SessionOpen{ID: sid(1), Kind: "kernel"}, ErrInvalid},
		{&SessionOpen{ID: sid(1), Kind: SessionGroup, Interpreter: "sh"}, ErrInvalid},
		{&SessionOpen{ID: sid(1), Kind: SessionContext, Interpreter: "s h"}, ErrInvalid},
		{&SessionOpen{ID: sid(1), Kind: SessionGroup, Doc: big}, ErrTooLarge},
		{&SessionOpen{ID: sid(1), Kind: SessionGroup, Labels: labels}, ErrTooLarge},
		{&SessionOpen{ID: sid(1), Kind: SessionGroup, Labels: map[string]string{"k": strings.Repeat("v", MaxLabelValue+1)}}, ErrTooLarge},
		{&SessionOpen{ID: sid(1), Kind: SessionGroup, Labels: map[string]string{"": "v"}}, ErrInvalid},
		{&SessionOpen{ID: sid(1), Kind: SessionGroup, Name: "a\nb"}, ErrInvalid},
		{&SessionOpen{ID: sid(1), Kind: SessionGroup, InactiveTimeout: -1}, ErrInvalid},
		{&SessionOpen{ID: sid(1), Kind: SessionGroup, Project: "nope"}, ErrNotFound},
	} {
		c.cmd.Now = h.now
		h.fails(c.cmd, c.want)
	}
	h.open(1, SessionContext, "sh")
	h.fails(&SessionOpen{Now: h.now, ID: sid(1), Kind: SessionGroup}, ErrInvalid) // exists
	h.fails(&SessionSubmit{Now: h.now, ID: sid(1), Code: strings.Repeat("x", MaxCodeBytes+1)}, ErrTooLarge)
	h.fails(&SessionSubmit{Now: h.now, ID: sid(1), Code: strings.Repeat("'", MaxCodeBytes)}, ErrTooLarge) // its quoted command
	h.fails(&SessionSubmit{Now: h.now, ID: sid(1), Code: "a\x00b"}, ErrInvalid)
	h.fails(&SessionSubmit{Now: h.now, ID: sid(1), Code: " "}, ErrInvalid)
	h.fails(&SessionSubmit{Now: h.now, ID: sid(2), Code: "true"}, ErrNotFound)
	h.fails(&SessionUpdate{Now: h.now, ID: sid(1), Doc: &big}, ErrTooLarge)
	// One host holds at most MaxHostSessions open context sessions.
	for i := 2; i <= MaxHostSessions; i++ {
		h.open(i, SessionContext, "sh")
	}
	h.fails(&SessionOpen{Now: h.now, ID: sid(1000), Kind: SessionContext, Interpreter: "sh"}, ErrTooLarge)
	// A project with sessions cannot be deleted.
	h.ok(&ProjectCreate{Now: h.now, Name: "p"})
	h.ok(&SessionOpen{Now: h.now, ID: sid(2000), Kind: SessionGroup, Project: "p"})
	h.fails(&ProjectDelete{Now: h.now, Name: "p"}, ErrInvalid)
}

func TestSessionUpdateAndLabels(t *testing.T) {
	h := newHarness(t)
	h.ok(&SessionOpen{Now: h.now, ID: sid(1), Kind: SessionGroup, Name: "a", Labels: map[string]string{"k": "v"}, Doc: []byte(`{"x":1}`)})
	h.tick(5)
	name, doc, timeout := "b", []byte("d"), int64(9)
	h.ok(&SessionUpdate{Now: h.now, ID: sid(1), Name: &name, Doc: &doc, InactiveTimeout: &timeout})
	x := h.session(1)
	if x.Name != "b" || string(x.Doc) != "d" || x.InactiveTimeout != 9 || x.Labels["k"] != "v" || x.LastActivity != h.now {
		t.Fatalf("updated %+v", x)
	}
	empty := map[string]string{}
	h.ok(&SessionUpdate{Now: h.now, ID: sid(1), Labels: &empty})
	if x := h.session(1); len(x.Labels) != 0 {
		t.Fatalf("labels not cleared: %+v", x.Labels)
	}
}

func TestSessionsSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.slot("r1", "r1", nil, sh)
	h.slot("r1/2", "r1", nil, sh)
	h.open(1, SessionContext, "sh")
	h.ok(&SessionOpen{Now: h.now, ID: sid(2), Kind: SessionGroup, Labels: map[string]string{"a": "b"}, Doc: []byte("doc")})
	first, second := h.submit(1, "echo one"), h.submit(1, "echo two")
	h.submit(2, "echo g")
	a := h.pick("r1")
	var buf bytes.Buffer
	if err := h.st().WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	before := h.st().Digest()
	if err := h.fsm.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if h.st().Digest() != before {
		t.Fatal("the round trip changed the state")
	}
	// The derived parts came back: busy, the order, the host binding,
	// and the session jobs stay out of the shared index.
	if x := h.session(1); !x.Busy || x.Host != "r1" || !slices.Equal(x.Jobs, []int64{first, second}) {
		t.Fatalf("restored %+v", x)
	}
	if x := h.session(2); string(x.Doc) != "doc" || x.Labels["a"] != "b" {
		t.Fatalf("restored %+v", x)
	}
	if b := h.pick("r1/2"); b != nil {
		t.Fatalf("picked %+v while the first job runs", b)
	}
	h.finish(a, "r1", 0)
	if b := h.pick("r1/2"); b == nil || b.JobID != second {
		t.Fatalf("after restore %+v", b)
	}
	if h.st().ReadyCount() != 0 {
		t.Fatalf("%d ready: the session jobs are in the shared index", h.st().ReadyCount())
	}
}

func TestOlderSnapshotsHaveNoSessions(t *testing.T) {
	old := oldSnapshotData{Version: 2, Applied: 3, Jobs: []*Job{{ID: 1, Title: "j", Command: "true", State: StateWaiting}},
		LastJobID: 1, Projects: []*Project{{Name: DefaultProject}}}
	var buf bytes.Buffer
	if err := newEncoder(&buf).Encode(&old); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	if err := h.fsm.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if page, _, _ := h.st().SessionsAfter("", 10, nil); len(page) != 0 {
		t.Fatalf("sessions from an older snapshot: %+v", page)
	}
	if j := h.job(1); j.Session != "" {
		t.Fatalf("job %+v", j)
	}
	if a := h.pick("w"); a == nil || a.JobID != 1 {
		t.Fatalf("the older job does not run: %+v", a)
	}
}

func newEncoder(w io.Writer) interface{ Encode(any) error } {
	return codec.NewEncoder(w, msgpackHandle)
}

// TestSessionInterpreterChange: a context session rebound to another
// interpreter (Jupyter's kernel change) has its unended jobs canceled and
// moves to a host that offers the new one; a refused change changes
// nothing.
func TestSessionInterpreterChange(t *testing.T) {
	h := newHarness(t)
	py := HostInterpreter{Name: "python3", Path: "/usr/bin/python3"}
	h.slot("s", "s", nil, sh)
	h.slot("p", "p", nil, py)
	x := h.open(1, SessionContext, "sh")
	job := h.submit(1, "sleep 100")
	if a := h.pick("s"); a.JobID != job {
		t.Fatalf("s picked %+v", a)
	}
	rev := h.session(1).Revision
	digest := h.st().Digest()
	h.fails(&SessionUpdate{Now: h.now, ID: sid(1), Interpreter: ptr("ruby")}, ErrInvalid)
	h.fails(&SessionUpdate{Now: h.now, ID: sid(1), Interpreter: ptr("python3"), IfRevision: rev + 5}, ErrConflict)
	if d := h.st().Digest(); d != digest {
		t.Fatal("a refused change changed the state")
	}
	h.ok(&SessionUpdate{Now: h.now, ID: sid(1), Interpreter: ptr("python3")})
	y := h.session(1)
	if y.Host != "p" || y.Interpreter != "python3" || y.Revision <= rev || y.Busy {
		t.Fatalf("after the change: %+v (was %+v)", y, x)
	}
	if j := h.job(job); j.State != StateCanceled {
		t.Fatalf("the old kernel's job is %s", j.State)
	}
	// The new code runs on p, with python3.
	next := h.submit(1, "print(1)")
	if a := h.pick("p"); a.JobID != next || !strings.Contains(a.Command, "/usr/bin/python3") {
		t.Fatalf("p picked %+v", a)
	}
	// A group session, and a closed one, have no interpreter to change.
	h.open(2, SessionGroup, "")
	h.fails(&SessionUpdate{Now: h.now, ID: sid(2), Interpreter: ptr("sh")}, ErrInvalid)
	h.ok(&SessionClose{Now: h.now, ID: sid(1)})
	h.fails(&SessionUpdate{Now: h.now, ID: sid(1), Interpreter: ptr("sh")}, ErrInvalid)
}
