package service

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/croftfarm/croft/internal/testwait"
	"github.com/croftfarm/croft/raftstore"
)

func TestWriteDocsAndCompareAndSet(t *testing.T) {
	f := newReleasedFarm(t)
	x, err := f.svc.OpenSession(f.ctx(), SessionSpec{Kind: raftstore.SessionGroup, Name: "s"})
	if err != nil {
		t.Fatal(err)
	}
	tp, err := f.svc.CreateTemplate(f.ctx(), raftstore.DefaultProject, shellTemplate("job"))
	if err != nil {
		t.Fatal(err)
	}
	if x.Revision != 1 || tp.Revision != 1 {
		t.Fatalf("revisions %d, %d", x.Revision, tp.Revision)
	}
	entries := f.store.count()
	if err := f.svc.WriteDocs(f.ctx(), nil, nil); err != nil || f.store.count() != entries {
		t.Fatalf("an empty write: %v, %d entries", err, f.store.count()-entries)
	}
	f.clock.set(f.clock.now().Add(time.Minute))
	name := "renamed"
	err = f.svc.WriteDocs(f.ctx(), []raftstore.DocWrite{{ID: x.ID, IfRevision: 1, Doc: []byte(`{"s":1}`)}},
		[]raftstore.DocWrite{{ID: tp.ID, IfRevision: 1, Doc: []byte(`{"t":1}`), Name: &name}})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := f.store.last().(*raftstore.DocsWrite); !ok || c.Now != f.clock.now().UnixNano() {
		t.Fatalf("the entry %#v", f.store.last())
	}
	st := f.store.fsm.State()
	if y, _ := st.Session(x.ID); string(y.Doc) != `{"s":1}` || y.Revision != 2 {
		t.Fatalf("session %+v", y)
	}
	if y, _ := st.Template(tp.ID); string(y.Spec.Doc) != `{"t":1}` || y.Spec.Name != "renamed" || y.Revision != 2 {
		t.Fatalf("template %+v", y)
	}
	// A writer that read the first revisions is refused, all or none.
	err = f.svc.WriteDocs(f.ctx(), []raftstore.DocWrite{{ID: x.ID, IfRevision: 2, Doc: []byte("x")}},
		[]raftstore.DocWrite{{ID: tp.ID, IfRevision: 1, Doc: []byte("x")}})
	if !errors.Is(err, raftstore.ErrConflict) {
		t.Fatalf("a stale write: %v", err)
	}
	if y, _ := st.Session(x.ID); string(y.Doc) != `{"s":1}` {
		t.Fatalf("half of a refused write applied: %+v", y)
	}
	// The updates take a revision too.
	doc := []byte("u")
	if err := f.svc.UpdateSession(f.ctx(), x.ID, SessionPatch{Doc: &doc, IfRevision: 1}); !errors.Is(err, raftstore.ErrConflict) {
		t.Fatalf("a stale session update: %v", err)
	}
	if err := f.svc.UpdateSession(f.ctx(), x.ID, SessionPatch{Doc: &doc, IfRevision: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.UpdateTemplateIf(f.ctx(), tp.ID, 1, raftstore.TemplatePatch{Doc: &doc}); !errors.Is(err, raftstore.ErrConflict) {
		t.Fatalf("a stale template update: %v", err)
	}
	if y, err := f.svc.UpdateTemplateIf(f.ctx(), tp.ID, 2, raftstore.TemplatePatch{Doc: &doc}); err != nil || y.Revision != 3 {
		t.Fatalf("template update: %+v %v", y, err)
	}
}

// A pinned execution claims a waiting pull of its host's slots, not the
// oldest pull: another worker's pick would find nothing of it.
func TestExecutePinnedClaimsItsHostsPull(t *testing.T) {
	f := newReleasedFarm(t)
	x, err := f.svc.CreateTemplate(f.ctx(), raftstore.DefaultProject, shellTemplate("echo"))
	if err != nil {
		t.Fatal(err)
	}
	f.slot("other", "other")
	f.slot("r1/1", "r1")
	type pulled struct {
		a   *raftstore.Assignment
		err error
	}
	ctx, cancel := context.WithCancel(f.ctx())
	defer cancel()
	pull := func(worker string) chan pulled {
		done := make(chan pulled, 1)
		go func() {
			a, err := f.svc.Pull(ctx, Pull{Worker: worker, IP: "10.0.0.1", Wait: time.Minute})
			done <- pulled{a, err}
		}()
		return done
	}
	waitFor := func(n int) {
		testwait.Until(t, 10*time.Second, "waiting pulls", func() (bool, string) {
			return f.offers.Len() >= n, fmt.Sprintf("%d pulls wait, want %d", f.offers.Len(), n)
		})
	}
	otherDone := pull("other")
	waitFor(1)
	r1Done := pull("r1/1")
	waitFor(2)
	entries := f.store.count()
	e, err := f.svc.Execute(f.ctx(), ExecuteRequest{Template: x.ID, Host: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if e.Host != "r1" {
		t.Fatalf("execution %+v", e)
	}
	got := <-r1Done
	if got.err != nil || got.a == nil || got.a.JobID != e.JobID {
		t.Fatalf("the host's pull got %+v, %v", got.a, got.err)
	}
	if f.store.count() != entries+1 {
		t.Fatalf("%d entries for the execute and its pick, want 1", f.store.count()-entries)
	}
	cancel()
	if got := <-otherDone; got.a != nil {
		t.Fatalf("the other host's pull got %+v", got.a)
	}
	// Pinned to a host no agent has: no pull is claimed, the job waits.
	if e, err := f.svc.Execute(f.ctx(), ExecuteRequest{Template: x.ID, Host: "r9"}); err != nil || e.State != raftstore.StateWaiting {
		t.Fatalf("pinned to r9: %+v %v", e, err)
	}
	if _, err := f.svc.Execute(f.ctx(), ExecuteRequest{Template: x.ID, Host: "two\nlines"}); !errors.Is(err, raftstore.ErrInvalid) {
		t.Fatalf("a bad host: %v", err)
	}
}
