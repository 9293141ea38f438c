package raftstore

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// hexID returns a valid 32-digit id ending in n.
func hexID(n string) string { return strings.Repeat("0", 32-len(n)) + n }

// shellSpec is a Shell template whose inline script echoes its arguments
// and exits with $CODE.
func shellSpec(name string) TemplateSpec {
	return TemplateSpec{
		Name: name, Type: "Shell", Command: "sh -c {main} sh {args}", Main: `echo "$@"; exit "${CODE:-0}"`,
		Defaults: JobDefaults{Retry: 1, Timeout: 60, Priority: 5, Affinity: "linux", Env: map[string]string{"A": "1", "CODE": "0"}},
		Labels:   map[string]string{"owner": "me"}, Doc: []byte(`{"x":1}`),
	}
}

func (h *harness) template(id string) Template {
	h.t.Helper()
	x, ok := h.st().Template(id)
	if !ok {
		h.t.Fatalf("template %s missing", id)
	}
	return x
}

func (h *harness) execution(id string) ExecutionStatus {
	h.t.Helper()
	e, ok := h.st().Execution(id)
	if !ok {
		h.t.Fatalf("execution %s missing", id)
	}
	return e
}

func TestTemplateCreateAndUniqueNames(t *testing.T) {
	h := newHarness(t)
	h.ok(&ProjectCreate{Now: h.now, Name: "b"})
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("hello")})
	x := h.template(hexID("1"))
	if x.Project != DefaultProject || x.Spec.Name != "hello" || x.Spec.Type != "Shell" || x.Created != h.now || x.Updated != h.now ||
		x.Spec.Defaults.Env["A"] != "1" || x.Spec.Labels["owner"] != "me" || string(x.Spec.Doc) != `{"x":1}` {
		t.Fatalf("template %+v", x)
	}
	// A name is unique in its project, not across projects.
	h.fails(&TemplateCreate{Now: h.now, ID: hexID("2"), Project: DefaultProject, Spec: shellSpec("hello")}, ErrInvalid)
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("2"), Project: "b", Spec: shellSpec("hello")})
	if y, ok := h.st().TemplateByName("b", "hello"); !ok || y.ID != hexID("2") {
		t.Fatalf("by name: %+v %v", y, ok)
	}
	// Ids are the leader's 32 hex digits, once each.
	h.fails(&TemplateCreate{Now: h.now, ID: hexID("2"), Project: DefaultProject, Spec: shellSpec("other")}, ErrInvalid)
	h.fails(&TemplateCreate{Now: h.now, ID: "ABC", Project: DefaultProject, Spec: shellSpec("other")}, ErrInvalid)
	h.fails(&TemplateCreate{Now: h.now, ID: hexID("3"), Project: "nope", Spec: shellSpec("other")}, ErrNotFound)
	// A template need not have a command; a bad one is refused.
	noCmd := shellSpec("spark")
	noCmd.Type, noCmd.Command = "Spark", ""
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("3"), Project: DefaultProject, Spec: noCmd})
	for _, bad := range []func(*TemplateSpec){
		func(s *TemplateSpec) { s.Command = "run {file}" },
		func(s *TemplateSpec) { s.Command = "run {main" },
		func(s *TemplateSpec) { s.Name = " " },
		func(s *TemplateSpec) { s.Name = "a\nb" },
		func(s *TemplateSpec) { s.Type = "two words" },
		func(s *TemplateSpec) { s.Type = "" },
		func(s *TemplateSpec) { s.Defaults.Retry = -1 },
		func(s *TemplateSpec) { s.Defaults.Env = map[string]string{"A=B": "1"} },
		func(s *TemplateSpec) { s.Labels = map[string]string{"a b": "x"} },
		func(s *TemplateSpec) { s.Main = "a\x00b" },
	} {
		sp := shellSpec("bad")
		bad(&sp)
		h.fails(&TemplateCreate{Now: h.now, ID: hexID("4"), Project: DefaultProject, Spec: sp}, ErrInvalid)
	}
	// A project with templates is not deleted.
	h.fails(&ProjectDelete{Now: h.now, Name: "b"}, ErrInvalid)
	h.ok(&TemplateDelete{Now: h.now, ID: hexID("2")})
	h.ok(&ProjectDelete{Now: h.now, Name: "b"})
}

func TestTemplateBounds(t *testing.T) {
	h := newHarness(t)
	for _, big := range []func(*TemplateSpec){
		func(s *TemplateSpec) { s.Main = strings.Repeat("x", MaxMainBytes+1) },
		func(s *TemplateSpec) { s.Command = "sh " + strings.Repeat("x", 16<<10) },
		func(s *TemplateSpec) { s.Doc = make([]byte, MaxDocBytes+1) },
		func(s *TemplateSpec) { s.Name = strings.Repeat("n", MaxNameBytes+1) },
		func(s *TemplateSpec) {
			s.Labels = map[string]string{}
			for i := range MaxLabels + 1 {
				s.Labels[hexID(string(rune('a'+i%26)))+strings.Repeat("k", i/26)] = "v"
			}
		},
		func(s *TemplateSpec) { s.Labels = map[string]string{"k": strings.Repeat("v", MaxLabelValueBytes+1)} },
		func(s *TemplateSpec) {
			s.Defaults.Env = map[string]string{"K": strings.Repeat("v", MaxEnvironmentBytes)}
		},
	} {
		sp := shellSpec("big")
		big(&sp)
		h.fails(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: sp}, ErrTooLarge)
	}
	// The per-project count: filling 10,000 templates through Raft is
	// slow, so the counter is set to the limit directly (it is derived
	// state, not in the digest).
	h.st().tpl.perProject[DefaultProject] = MaxProjectTemplates
	h.fails(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("one-too-many")}, ErrTooLarge)
	h.st().tpl.perProject[DefaultProject] = MaxProjectTemplates - 1
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("fits")})
}

func TestTemplateUpdateAndProtection(t *testing.T) {
	h := newHarness(t)
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("one")})
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("2"), Project: DefaultProject, Spec: shellSpec("two")})
	h.tick(5)
	name, cmd, yes, no := "uno", "bash -c {main} {args}", true, false
	labels := map[string]string{}
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("1"), Patch: TemplatePatch{Name: &name, Command: &cmd, Protected: &yes, Labels: &labels}})
	x := h.template(hexID("1"))
	if x.Spec.Name != "uno" || x.Spec.Command != cmd || !x.Spec.Protected || len(x.Spec.Labels) != 0 || x.Spec.Main != shellSpec("").Main ||
		x.Updated != h.now || x.Created == h.now {
		t.Fatalf("updated template %+v", x)
	}
	if _, ok := h.st().TemplateByName(DefaultProject, "one"); ok {
		t.Fatal("the old name still finds it")
	}
	// A taken name, a bad command: refused.
	taken := "uno"
	h.fails(&TemplateUpdate{Now: h.now, ID: hexID("2"), Patch: TemplatePatch{Name: &taken, Command: &cmd}}, ErrInvalid)
	bad := "{nope}"
	h.fails(&TemplateUpdate{Now: h.now, ID: hexID("2"), Patch: TemplatePatch{Command: &bad}}, ErrInvalid)
	h.fails(&TemplateUpdate{Now: h.now, ID: hexID("9"), Patch: TemplatePatch{Command: &cmd}}, ErrNotFound)
	// Protected: neither changed nor deleted, until an update clears it.
	h.fails(&TemplateUpdate{Now: h.now, ID: hexID("1"), Patch: TemplatePatch{Name: &taken}}, ErrProtected)
	h.fails(&TemplateUpdate{Now: h.now, ID: hexID("1"), Patch: TemplatePatch{Protected: &yes}}, ErrProtected)
	h.fails(&TemplateDelete{Now: h.now, ID: hexID("1")}, ErrProtected)
	again := "one"
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("1"), Patch: TemplatePatch{Name: &again, Protected: &no}})
	h.ok(&TemplateDelete{Now: h.now, ID: hexID("1")})
	h.fails(&TemplateDelete{Now: h.now, ID: hexID("1")}, ErrNotFound)
}

func TestExecuteCreatesItsJob(t *testing.T) {
	h := newHarness(t)
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("echo")})
	h.tick(1)
	id := h.ok(&Execute{Now: h.now, ID: hexID("e1"), Template: hexID("1"), Pool: "gpu", Args: []string{"a b", "it's"},
		Params: map[string]string{"CODE": "3", "B": "2"}, Doc: []byte("d"), User: "alice"}).(int64)
	j := h.job(id)
	want := `sh -c 'echo "$@"; exit "${CODE:-0}"' sh 'a b' 'it'\''s'`
	if j.Command != want {
		t.Fatalf("command\n got %s\nwant %s", j.Command, want)
	}
	if !maps.Equal(j.Env, map[string]string{"A": "1", "B": "2", "CODE": "3"}) || j.Retry != 1 || j.Timeout != 60 || j.Priority != 5 ||
		j.Affinity != "linux,gpu" || j.Title != "echo" || j.User != "alice" || j.Project != DefaultProject || j.Created != h.now {
		t.Fatalf("job %+v", j)
	}
	e := h.execution(hexID("e1"))
	if e.JobID != id || e.Template != hexID("1") || e.Pool != "gpu" || !slices.Equal(e.Args, []string{"a b", "it's"}) ||
		e.Params["CODE"] != "3" || string(e.Doc) != "d" || e.Created != h.now || e.State != StateWaiting || e.Ended || e.ExitCode != NoExitCode {
		t.Fatalf("execution %+v", e)
	}
	if eid, ok := h.st().ExecutionOfJob(id); !ok || eid != hexID("e1") || h.st().TemplateUses(hexID("1")) != 1 {
		t.Fatalf("indexes: %q %v, uses %d", eid, ok, h.st().TemplateUses(hexID("1")))
	}
	// The job runs as any other, in the pool: a worker without gpu does
	// not take it.
	h.ok(&WorkerRegister{Now: h.now, Name: "cpu", SetAffinity: true, Affinity: "linux"})
	if a := h.pick("cpu"); a != nil {
		t.Fatalf("a worker outside the pool picked %+v", a)
	}
	h.ok(&WorkerRegister{Now: h.now, Name: "w", SetAffinity: true, Affinity: "linux,gpu"})
	a := h.pick("w")
	if a == nil || a.JobID != id {
		t.Fatalf("pick %+v", a)
	}
	if e := h.execution(hexID("e1")); e.State != StateRunning || e.Worker != "w" || e.Tries != 1 || e.ExitCode != NoExitCode {
		t.Fatalf("running execution %+v", e)
	}
	h.tick(2)
	h.finish(a, "w", 3)
	// Retry 1: one run, failed with its code.
	if e := h.execution(hexID("e1")); e.State != StateFailed || !e.Ended || e.ExitCode != 3 || e.Reason != "" {
		t.Fatalf("failed execution %+v", e)
	}
	// No args: {args} is nothing; the second one finishes with 0.
	id2 := h.ok(&Execute{Now: h.now, ID: hexID("e2"), Template: hexID("1")}).(int64)
	if j := h.job(id2); j.Command != `sh -c 'echo "$@"; exit "${CODE:-0}"' sh ` || j.Affinity != "linux" {
		t.Fatalf("job without args %+v", j)
	}
	h.finish(h.pick("w"), "w", 0)
	if e := h.execution(hexID("e2")); e.State != StateFinished || e.ExitCode != 0 || !e.Ended {
		t.Fatalf("finished execution %+v", e)
	}
	page, _, more := h.st().ExecutionsAfter("", 10, hexID("1"))
	if len(page) != 2 || more || page[0].ID != hexID("e1") {
		t.Fatalf("executions %+v %v", page, more)
	}
	if page, _, _ := h.st().ExecutionsAfter("", 10, hexID("2")); len(page) != 0 {
		t.Fatalf("another template's executions %+v", page)
	}
	if page, next, more := h.st().ExecutionsAfter("", 1, ""); len(page) != 1 || !more || next != hexID("e1") {
		t.Fatalf("first page %+v %s %v", page, next, more)
	}
}

func TestExecuteRefusals(t *testing.T) {
	h := newHarness(t)
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("echo")})
	noCmd := shellSpec("pig")
	noCmd.Type, noCmd.Command = "Pig", ""
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("2"), Project: DefaultProject, Spec: noCmd})
	ex := func(f func(*Execute)) *Execute {
		c := &Execute{Now: h.now, ID: hexID("e1"), Template: hexID("1")}
		f(c)
		return c
	}
	h.fails(ex(func(c *Execute) { c.Template = hexID("2") }), ErrNoCommand)
	if res := h.apply(ex(func(c *Execute) { c.Template = hexID("2") })); !errors.Is(res.(error), ErrInvalid) {
		t.Fatalf("no command is not also invalid: %v", res)
	}
	h.fails(ex(func(c *Execute) { c.Template = hexID("9") }), ErrNotFound)
	h.fails(ex(func(c *Execute) { c.ID = "e1" }), ErrInvalid)
	h.fails(ex(func(c *Execute) { c.Pool = "a,b" }), ErrInvalid)
	h.fails(ex(func(c *Execute) { c.Pool = strings.Repeat("p", MaxAffinityName+1) }), ErrTooLarge)
	h.fails(ex(func(c *Execute) { c.Args = make([]string, MaxArgs+1) }), ErrTooLarge)
	h.fails(ex(func(c *Execute) { c.Args = []string{strings.Repeat("a", MaxArgsBytes+1)} }), ErrTooLarge)
	h.fails(ex(func(c *Execute) { c.Args = []string{"a\x00"} }), ErrInvalid)
	h.fails(ex(func(c *Execute) { c.Params = map[string]string{"A B ": "1"} }), ErrInvalid)
	h.fails(ex(func(c *Execute) { c.Params = map[string]string{"A": "x\ny"} }), ErrInvalid)
	h.fails(ex(func(c *Execute) {
		c.Params = map[string]string{}
		for i := range MaxParams + 1 {
			c.Params[hexID(strings.Repeat("a", 1+i%31))+string(rune('A'+i/31))] = "1"
		}
	}), ErrTooLarge)
	h.fails(ex(func(c *Execute) { c.Doc = make([]byte, MaxDocBytes+1) }), ErrTooLarge)
	// Within every bound, but the expanded command is past a job's.
	h.fails(ex(func(c *Execute) {
		for range 3 {
			c.Args = append(c.Args, strings.Repeat("'", 10_000))
		}
	}), ErrTooLarge)
	// A quota stamped by the leader holds.
	h.create(JobSpec{Title: "other"})
	pr, _ := h.st().Project(DefaultProject)
	h.fails(ex(func(c *Execute) { c.MaxProjectJobs = pr.Jobs }), ErrTooLarge)
	h.ok(ex(func(c *Execute) {}))
	h.fails(ex(func(c *Execute) {}), ErrInvalid) // the id is taken
}

func TestExecutionCancelDeleteAndTemplateInUse(t *testing.T) {
	h := newHarness(t)
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("echo")})
	id := h.ok(&Execute{Now: h.now, ID: hexID("e1"), Template: hexID("1")}).(int64)
	h.fails(&TemplateDelete{Now: h.now, ID: hexID("1")}, ErrTemplateInUse)
	h.ok(&WorkerRegister{Now: h.now, Name: "w", SetAffinity: true, Affinity: "linux"})
	a := h.pick("w")
	// A running execution is not deleted; cancel ends its attempt.
	h.fails(&ExecutionDelete{Now: h.now, ID: hexID("e1")}, ErrExecutionActive)
	h.ok(&ExecutionCancel{Now: h.now, ID: hexID("e1")})
	if e := h.execution(hexID("e1")); e.State != StateCanceled || !e.Ended || e.Reason != ReasonCanceled || e.ExitCode != NoExitCode {
		t.Fatalf("canceled execution %+v", e)
	}
	if res := h.apply(&Report{Now: h.now, Worker: "w", JobID: a.JobID, AttemptID: a.AttemptID, Done: true}); !errors.Is(res.(error), ErrStaleAttempt) {
		t.Fatalf("the canceled attempt's report: %v", res)
	}
	h.fails(&ExecutionCancel{Now: h.now, ID: hexID("e9")}, ErrNotFound)
	h.ok(&ExecutionDelete{Now: h.now, ID: hexID("e1")})
	if _, ok := h.st().Job(id); ok {
		t.Fatal("the deleted execution's job is still there")
	}
	if _, ok := h.st().Execution(hexID("e1")); ok {
		t.Fatal("the execution is still there")
	}
	h.fails(&ExecutionDelete{Now: h.now, ID: hexID("e1")}, ErrNotFound)
	// An execution goes with its job, however the job goes.
	id = h.ok(&Execute{Now: h.now, ID: hexID("e2"), Template: hexID("1")}).(int64)
	h.ok(&JobDelete{Now: h.now, IDs: []int64{id}})
	if _, ok := h.st().Execution(hexID("e2")); ok || h.st().TemplateUses(hexID("1")) != 0 {
		t.Fatal("the execution outlived its job")
	}
	h.ok(&TemplateDelete{Now: h.now, ID: hexID("1")})
}

func TestTemplatesSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t)
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("echo")})
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("2"), Project: DefaultProject, Spec: shellSpec("two")})
	h.ok(&Execute{Now: h.now, ID: hexID("e1"), Template: hexID("1"), Args: []string{"x"}, Params: map[string]string{"P": "1"}})
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
	if e := h.execution(hexID("e1")); e.Params["P"] != "1" || !slices.Equal(e.Args, []string{"x"}) {
		t.Fatalf("restored execution %+v", e)
	}
	// The derived indexes came back: names, uses, the job's link.
	h.fails(&TemplateCreate{Now: h.now, ID: hexID("3"), Project: DefaultProject, Spec: shellSpec("echo")}, ErrInvalid)
	h.fails(&TemplateDelete{Now: h.now, ID: hexID("1")}, ErrTemplateInUse)
	h.ok(&JobDelete{Now: h.now, IDs: []int64{h.execution(hexID("e1")).JobID}})
	h.ok(&TemplateDelete{Now: h.now, ID: hexID("1")})
	if page, _, _ := h.st().TemplatesAfter("", 10); len(page) != 1 || page[0].ID != hexID("2") {
		t.Fatalf("templates after the restore %+v", page)
	}
}

func TestOlderSnapshotsHaveNoTemplates(t *testing.T) {
	old := oldSnapshotData{Version: 2, Applied: 3, Projects: []*Project{{Name: DefaultProject}}}
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(&old); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	if err := h.fsm.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if page, _, _ := h.st().TemplatesAfter("", 10); len(page) != 0 {
		t.Fatalf("templates from an older snapshot: %+v", page)
	}
	if page, _, _ := h.st().ExecutionsAfter("", 10, ""); len(page) != 0 {
		t.Fatalf("executions from an older snapshot: %+v", page)
	}
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("echo")})
}

func TestEncodeDecodeTemplateCommands(t *testing.T) {
	name, yes := "n", true
	doc, labels := []byte("d"), map[string]string{"k": "v"}
	for _, c := range []Command{
		&TemplateCreate{Now: 1, ID: hexID("1"), Project: "p", Spec: shellSpec("x")},
		&TemplateUpdate{Now: 1, ID: hexID("1"), Patch: TemplatePatch{Name: &name, Public: &yes, Doc: &doc, Labels: &labels, Defaults: &JobDefaults{Retry: 2}}, IfRevision: 2},
		&TemplateDelete{Now: 1, ID: hexID("1")},
		&Execute{Now: 1, ID: hexID("2"), Template: hexID("1"), Pool: "p", Args: []string{"a"}, Params: map[string]string{"A": "1"}, Doc: doc, User: "u", MaxProjectJobs: 3},
		&ExecutionCancel{Now: 1, ID: hexID("2")},
		&ExecutionDelete{Now: 1, ID: hexID("2")},
		&DocsWrite{Now: 1, Sessions: []DocWrite{{ID: sid(1), IfRevision: 3, Doc: doc, Name: &name}},
			Templates: []DocWrite{{ID: hexID("1"), Doc: doc}, {ID: hexID("2"), IfRevision: 1}}},
	} {
		buf, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(buf)
		if err != nil {
			t.Fatalf("%T: %v", c, err)
		}
		if MessageType(buf[0]) != c.Type() {
			t.Fatalf("%T: type byte %d", c, buf[0])
		}
		b2, _ := Encode(got)
		if !bytes.Equal(buf, b2) {
			t.Fatalf("%T: round trip changed it: %+v", c, got)
		}
	}
}
