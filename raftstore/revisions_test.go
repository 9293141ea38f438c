package raftstore

import "testing"

func TestRevisionsCountChanges(t *testing.T) {
	h := docsFarm(t)
	rev := func(n int) int64 { return h.session(n).Revision }
	if rev(1) != 1 || h.template(hexID("1")).Revision != 1 {
		t.Fatalf("revisions after open and create: %d, %d", rev(1), h.template(hexID("1")).Revision)
	}
	name, doc := "n", []byte("d")
	// Each command that changes the record counts once.
	h.tick(1)
	h.ok(&SessionUpdate{Now: h.now, ID: sid(1), Name: &name, Doc: &doc})
	id := h.submit(1, "echo")
	h.ok(&SessionStart{Now: h.now, ID: sid(1)})
	if rev(1) != 4 {
		t.Fatalf("revision %d after update, submit, start", rev(1))
	}
	// Activity alone does not: a touch, a job that runs and ends.
	h.ok(&SessionUpdate{Now: h.now, ID: sid(1)})
	a := h.pick("w")
	h.finish(a, "w", 0)
	if x := h.session(1); x.Revision != 4 || x.LastActivity != h.now {
		t.Fatalf("after a touch and a job's end: %+v", x)
	}
	h.ok(&JobDelete{Now: h.now, IDs: []int64{id}})
	h.ok(&SessionClose{Now: h.now, ID: sid(1)})
	h.ok(&SessionClose{Now: h.now, ID: sid(1)}) // closed already: nothing changes
	if rev(1) != 6 {
		t.Fatalf("revision %d after a job deleted and a close", rev(1))
	}
	h.ok(&SessionUpdate{Now: h.now, ID: sid(2), InactiveTimeout: ptr[int64](1)})
	h.tick(5)
	h.ok(&SessionExpire{Now: h.now, IDs: []string{sid(2)}})
	if x := h.session(2); x.State != SessionStateClosed || x.Revision != 3 {
		t.Fatalf("expired session %+v", x)
	}
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("1"), Patch: TemplatePatch{Name: &name}})
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("1")})
	if x := h.template(hexID("1")); x.Revision != 3 || x.Updated != h.now {
		t.Fatalf("template after two updates: %+v", x)
	}
}

func TestUpdatesCompareAndSet(t *testing.T) {
	h := docsFarm(t)
	doc := []byte("mine")
	h.ok(&SessionUpdate{Now: h.now, ID: sid(1), IfRevision: 1, Doc: &doc})
	// Another writer read revision 1 too: its write is refused, and
	// changes nothing.
	other := []byte("theirs")
	h.fails(&SessionUpdate{Now: h.now, ID: sid(1), IfRevision: 1, Doc: &other}, ErrConflict)
	if x := h.session(1); string(x.Doc) != "mine" || x.Revision != 2 {
		t.Fatalf("session %+v", x)
	}
	name := "c"
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("1"), IfRevision: 1, Patch: TemplatePatch{Name: &name}})
	h.fails(&TemplateUpdate{Now: h.now, ID: hexID("1"), IfRevision: 1, Patch: TemplatePatch{Doc: &doc}}, ErrConflict)
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("1"), IfRevision: 2, Patch: TemplatePatch{Doc: &doc}})
	if x := h.template(hexID("1")); x.Spec.Name != "c" || string(x.Spec.Doc) != "mine" || x.Revision != 3 {
		t.Fatalf("template %+v", x)
	}
	// A protected template's update is refused as before, whatever the
	// revision; the conflict is said first.
	yes := true
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("2"), Patch: TemplatePatch{Protected: &yes}})
	h.fails(&TemplateUpdate{Now: h.now, ID: hexID("2"), IfRevision: 1, Patch: TemplatePatch{Doc: &doc}}, ErrConflict)
	h.fails(&TemplateUpdate{Now: h.now, ID: hexID("2"), IfRevision: 2, Patch: TemplatePatch{Doc: &doc}}, ErrProtected)
}
