package service

import (
	"errors"
	"testing"
	"time"

	"github.com/croftfarm/croft/raftstore"
)

// shellTemplate is a Shell template whose inline script echoes its
// arguments and exits with $CODE.
func shellTemplate(name string) raftstore.TemplateSpec {
	return raftstore.TemplateSpec{Name: name, Type: "Shell", Command: "sh -c {main} sh {args}",
		Main: `echo "$@"; exit "${CODE:-0}"`, Defaults: raftstore.JobDefaults{Retry: 1}}
}

// newReleasedFarm is a farm with this release's apply rules in force, as
// a leader's SetRelease puts them: runs keep their exit codes.
func newReleasedFarm(t *testing.T) *testFarm {
	f := newFarm(t, 0)
	if _, err := f.store.Apply(f.ctx(), &raftstore.SetRelease{Release: raftstore.Release}); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestTemplateLifecycle(t *testing.T) {
	f := newReleasedFarm(t)
	x, err := f.svc.CreateTemplate(f.ctx(), raftstore.DefaultProject, shellTemplate("echo"))
	if err != nil {
		t.Fatal(err)
	}
	if len(x.ID) != 32 || x.Project != raftstore.DefaultProject || x.Created != f.clock.now().UnixNano() || x.Spec.Name != "echo" {
		t.Fatalf("created %+v", x)
	}
	if y, err := f.svc.CreateTemplate(f.ctx(), raftstore.DefaultProject, shellTemplate("other")); err != nil || y.ID == x.ID {
		t.Fatalf("a second template %+v %v: ids are drawn anew", y, err)
	}
	if _, err := f.svc.CreateTemplate(f.ctx(), raftstore.DefaultProject, shellTemplate("echo")); !errors.Is(err, raftstore.ErrInvalid) {
		t.Fatalf("a taken name: %v", err)
	}
	f.clock.set(f.clock.now().Add(time.Minute))
	// Clearing the labels and the doc with nil values reaches the FSM
	// as clearing, not as "unchanged".
	var labels map[string]string
	var doc []byte
	main := "echo hi"
	if _, err := f.svc.UpdateTemplate(f.ctx(), x.ID, raftstore.TemplatePatch{Labels: &map[string]string{"k": "v"}, Doc: &[]byte{1}}); err != nil {
		t.Fatal(err)
	}
	y, err := f.svc.UpdateTemplate(f.ctx(), x.ID, raftstore.TemplatePatch{Main: &main, Labels: &labels, Doc: &doc})
	if err != nil || y.Spec.Main != main || len(y.Spec.Labels) != 0 || len(y.Spec.Doc) != 0 || y.Updated != f.clock.now().UnixNano() || y.Created != x.Created {
		t.Fatalf("updated %+v %v", y, err)
	}
	if err := f.svc.DeleteTemplate(f.ctx(), x.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteTemplate(f.ctx(), x.ID); !errors.Is(err, raftstore.ErrNotFound) {
		t.Fatalf("deleted twice: %v", err)
	}
}

func TestExecuteRunsAndEnds(t *testing.T) {
	f := newReleasedFarm(t)
	x, err := f.svc.CreateTemplate(f.ctx(), raftstore.DefaultProject, shellTemplate("echo"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := f.svc.Execute(f.ctx(), ExecuteRequest{Template: x.ID, Args: []string{"a", "b c"}, Params: map[string]string{"CODE": "4"}, User: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.ID) != 32 || e.Template != x.ID || e.State != raftstore.StateWaiting || e.ExitCode != raftstore.NoExitCode {
		t.Fatalf("execution %+v", e)
	}
	j := f.job(e.JobID)
	if j.Command != `sh -c 'echo "$@"; exit "${CODE:-0}"' sh 'a' 'b c'` || j.Env["CODE"] != "4" || j.User != "me" {
		t.Fatalf("job %+v", j)
	}
	f.register("w1")
	a := f.pick("w1")
	if _, err := f.svc.Report(f.ctx(), Report{Worker: "w1", JobID: a.JobID, AttemptID: a.AttemptID, Done: true, ExitCode: 4}); err != nil {
		t.Fatal(err)
	}
	if e, _ := f.store.fsm.State().Execution(e.ID); e.State != raftstore.StateFailed || e.ExitCode != 4 || !e.Ended {
		t.Fatalf("ended execution %+v", e)
	}
	if err := f.svc.DeleteTemplate(f.ctx(), x.ID); !errors.Is(err, raftstore.ErrTemplateInUse) {
		t.Fatalf("delete of a template in use: %v", err)
	}
	if err := f.svc.DeleteExecution(f.ctx(), e.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteTemplate(f.ctx(), x.ID); err != nil {
		t.Fatal(err)
	}
	// A template without a command cannot run.
	sp := shellTemplate("spark")
	sp.Type, sp.Command = "Spark", ""
	x, err = f.svc.CreateTemplate(f.ctx(), raftstore.DefaultProject, sp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Execute(f.ctx(), ExecuteRequest{Template: x.ID}); !errors.Is(err, raftstore.ErrNoCommand) {
		t.Fatalf("executing a template without a command: %v", err)
	}
}

func TestExecuteClaimsAWaitingPullAndCancel(t *testing.T) {
	f := newReleasedFarm(t)
	x, err := f.svc.CreateTemplate(f.ctx(), raftstore.DefaultProject, shellTemplate("echo"))
	if err != nil {
		t.Fatal(err)
	}
	f.register("w1")
	type pulled struct {
		a   *raftstore.Assignment
		err error
	}
	done := make(chan pulled, 1)
	go func() {
		a, err := f.svc.Pull(f.ctx(), Pull{Worker: "w1", IP: "10.0.0.1", Wait: time.Minute})
		done <- pulled{a, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for f.offers.Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pull never waited")
		}
		time.Sleep(time.Millisecond)
	}
	entries := f.store.count()
	e, err := f.svc.Execute(f.ctx(), ExecuteRequest{Template: x.ID})
	if err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil || got.a == nil || got.a.JobID != e.JobID {
		t.Fatalf("the waiting pull got %+v, %v", got.a, got.err)
	}
	if f.store.count() != entries+1 {
		t.Fatalf("%d entries for the execute and its pick, want 1", f.store.count()-entries)
	}
	if err := f.svc.DeleteExecution(f.ctx(), e.ID); !errors.Is(err, raftstore.ErrExecutionActive) {
		t.Fatalf("delete of a running execution: %v", err)
	}
	if err := f.svc.CancelExecution(f.ctx(), e.ID); err != nil {
		t.Fatal(err)
	}
	if e, _ := f.store.fsm.State().Execution(e.ID); e.State != raftstore.StateCanceled || !e.Ended {
		t.Fatalf("canceled execution %+v", e)
	}
	if err := f.svc.DeleteExecution(f.ctx(), e.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.store.fsm.State().Job(e.JobID); ok {
		t.Fatal("the execution's job outlived it")
	}
}
