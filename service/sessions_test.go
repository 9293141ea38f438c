package service

import (
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/croftfarm/croft/raftstore"
)

// slot registers worker as a slot of host, offering sh.
func (f *testFarm) slot(worker, host string) {
	f.t.Helper()
	err := f.svc.RegisterWorker(f.ctx(), Registration{Name: worker, IP: "10.0.0.1",
		Host: &raftstore.HostInfo{Name: host, Slots: 2, Interpreters: []raftstore.HostInterpreter{{Name: "sh", Path: "/bin/sh"}}}})
	if err != nil {
		f.t.Fatal(err)
	}
}

func TestSessionOperations(t *testing.T) {
	f := newFarm(t, 0)
	if _, err := f.svc.OpenSession(f.ctx(), SessionSpec{Kind: raftstore.SessionContext, Interpreter: "sh"}); !errors.Is(err, raftstore.ErrInvalid) {
		t.Fatalf("open without a host: %v", err)
	}
	f.slot("r1", "r1")
	f.slot("r1/2", "r1")
	x, err := f.svc.OpenSession(f.ctx(), SessionSpec{Kind: raftstore.SessionContext, Interpreter: "sh", Name: "k", InactiveTimeout: 60})
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(x.ID) || x.Host != "r1" || x.Created != f.clock.now().UnixNano() {
		t.Fatalf("opened %+v", x)
	}
	if y, _ := f.svc.OpenSession(f.ctx(), SessionSpec{Kind: raftstore.SessionGroup}); y.ID == x.ID {
		t.Fatal("two sessions got the same id")
	}
	first, err := f.svc.SubmitCode(f.ctx(), x.ID, "one", "echo one")
	if err != nil {
		t.Fatal(err)
	}
	second, _ := f.svc.SubmitCode(f.ctx(), x.ID, "", "exit 3")
	a := f.pick("r1")
	if a.JobID != first || a.Title != "one" {
		t.Fatalf("first pick %+v", a)
	}
	if b, err := f.svc.Pull(f.ctx(), Pull{Worker: "r1/2"}); b != nil || err != nil {
		t.Fatalf("the second job ran beside the first: %+v %v", b, err)
	}
	if _, err := f.svc.Report(f.ctx(), Report{Worker: "r1", JobID: a.JobID, AttemptID: a.AttemptID, LogOffset: 0, Log: []byte("one\n"), Done: true}); err != nil {
		t.Fatal(err)
	}
	if b := f.pick("r1/2"); b.JobID != second {
		t.Fatalf("second pick %+v", b)
	}
	name := "renamed"
	if err := f.svc.UpdateSession(f.ctx(), x.ID, SessionPatch{Name: &name}); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.CloseSession(f.ctx(), x.ID); err != nil {
		t.Fatal(err)
	}
	if j := f.job(second); j.State != raftstore.StateCanceled {
		t.Fatalf("close left the running job %s", j.State)
	}
	if err := f.svc.DeleteSession(f.ctx(), x.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.svc.State().Job(first); ok {
		t.Fatal("delete kept the session's jobs")
	}
	if err := f.svc.StartSession(f.ctx(), x.ID); !errors.Is(err, raftstore.ErrNotFound) {
		t.Fatalf("start a deleted session: %v", err)
	}
}

func TestSubmitWakesAWaitingPull(t *testing.T) {
	f := newFarm(t, 0)
	f.slot("r1", "r1")
	x, err := f.svc.OpenSession(f.ctx(), SessionSpec{Kind: raftstore.SessionContext, Interpreter: "sh"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *raftstore.Assignment, 1)
	go func() {
		a, _ := f.svc.Pull(f.ctx(), Pull{Worker: "r1", Wait: time.Hour})
		got <- a
	}()
	id, err := f.svc.SubmitCode(f.ctx(), x.ID, "", "true")
	if err != nil {
		t.Fatal(err)
	}
	if a := <-got; a == nil || a.JobID != id {
		t.Fatalf("the waiting pull got %+v", a)
	}
}

func TestSweepExpiresInactiveSessions(t *testing.T) {
	f := newFarm(t, 0)
	x, err := f.svc.OpenSession(f.ctx(), SessionSpec{Kind: raftstore.SessionGroup, InactiveTimeout: 60})
	if err != nil {
		t.Fatal(err)
	}
	term := &Term{Since: f.clock.now()}
	f.clock.set(f.clock.now().Add(30 * time.Second))
	if sw, err := f.svc.Sweep(f.ctx(), term, time.Hour); err != nil || len(sw.ExpiredSessions) != 0 {
		t.Fatalf("early sweep %+v %v", sw, err)
	}
	f.clock.set(f.clock.now().Add(31 * time.Second))
	sw, err := f.svc.Sweep(f.ctx(), term, time.Hour)
	if err != nil || len(sw.ExpiredSessions) != 1 || sw.ExpiredSessions[0] != x.ID {
		t.Fatalf("sweep %+v %v", sw, err)
	}
	if y, _ := f.svc.State().Session(x.ID); y.State != raftstore.SessionStateClosed || y.Reason != raftstore.SessionExpired {
		t.Fatalf("after the sweep %+v", y)
	}
}
