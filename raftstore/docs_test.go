package raftstore

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// docsFarm is a state with group sessions 1 and 2 and templates 1 ("a")
// and 2 ("b") of the default project.
func docsFarm(t *testing.T) *harness {
	h := newHarness(t)
	h.open(1, SessionGroup, "")
	h.open(2, SessionGroup, "")
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("a")})
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("2"), Project: DefaultProject, Spec: shellSpec("b")})
	return h
}

// Entries of an older release replay as they applied then: no revision
// is kept before release 2's SetRelease.
func TestRevisionsStartWithRelease2(t *testing.T) {
	h := newHarness(t)
	h.fsm = releaseZeroFSM(t)
	h.ok(&SetRelease{Release: 1})
	h.open(1, SessionGroup, "")
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("1"), Project: DefaultProject, Spec: shellSpec("a")})
	h.submit(1, "echo")
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("1")})
	if h.session(1).Revision != 0 || h.template(hexID("1")).Revision != 0 {
		t.Fatalf("revisions under release 1: %d, %d", h.session(1).Revision, h.template(hexID("1")).Revision)
	}
	// 0 is unknown: a compare-and-set on 0 accepts, the first change
	// from release 2 on makes it 1, and from then it guards.
	h.ok(&SetRelease{Release: 2})
	h.ok(&SessionUpdate{Now: h.now, ID: sid(1), IfRevision: 0, Doc: &[]byte{'x'}})
	if h.session(1).Revision != 1 {
		t.Fatalf("revision %d after the first change", h.session(1).Revision)
	}
	h.fails(&SessionUpdate{Now: h.now, ID: sid(1), IfRevision: 2, Doc: &[]byte{'y'}}, ErrConflict)
	h.ok(&DocsWrite{Now: h.now, Templates: []DocWrite{{ID: hexID("1"), Doc: []byte("t")}}})
	if x := h.template(hexID("1")); x.Revision != 1 || string(x.Spec.Doc) != "t" {
		t.Fatalf("template %+v", x)
	}
}

func TestDocsWrite(t *testing.T) {
	h := docsFarm(t)
	h.tick(1)
	name := "renamed"
	h.ok(&DocsWrite{Now: h.now,
		Sessions:  []DocWrite{{ID: sid(1), IfRevision: 1, Doc: []byte("s1"), Name: &name}, {ID: sid(2), Doc: []byte("s2")}},
		Templates: []DocWrite{{ID: hexID("1"), IfRevision: 1, Doc: []byte("t1")}},
	})
	if x := h.session(1); string(x.Doc) != "s1" || x.Name != "renamed" || x.Revision != 2 || x.LastActivity != h.now {
		t.Fatalf("session 1 %+v", x)
	}
	if x := h.session(2); string(x.Doc) != "s2" || x.Name != "s" || x.Revision != 2 {
		t.Fatalf("session 2 %+v", x)
	}
	if x := h.template(hexID("1")); string(x.Spec.Doc) != "t1" || x.Spec.Name != "a" || x.Revision != 2 || x.Updated != h.now ||
		x.Spec.Command != shellSpec("a").Command || x.Created == h.now {
		t.Fatalf("template 1 %+v", x)
	}
	// A nil doc clears it; an empty write list is nothing.
	h.ok(&DocsWrite{Now: h.now, Sessions: []DocWrite{{ID: sid(2)}}})
	if x := h.session(2); x.Doc != nil || x.Revision != 3 {
		t.Fatalf("cleared %+v", x)
	}
	h.ok(&DocsWrite{Now: h.now})
}

// A refused docs write changes nothing, whichever write is at fault.
func TestDocsWriteAllOrNone(t *testing.T) {
	name := func(s string) *string { return &s }
	good := DocWrite{ID: sid(1), IfRevision: 1, Doc: []byte("new")}
	for _, tc := range []struct {
		what string
		c    DocsWrite
		want error
	}{
		{"the second write is stale", DocsWrite{Sessions: []DocWrite{good, {ID: sid(2), IfRevision: 7}}}, ErrConflict},
		{"a template is stale", DocsWrite{Sessions: []DocWrite{good}, Templates: []DocWrite{{ID: hexID("1"), IfRevision: 2}}}, ErrConflict},
		{"no such session", DocsWrite{Sessions: []DocWrite{good, {ID: sid(9)}}}, ErrNotFound},
		{"no such template", DocsWrite{Sessions: []DocWrite{good}, Templates: []DocWrite{{ID: hexID("9")}}}, ErrNotFound},
		{"a session written twice", DocsWrite{Sessions: []DocWrite{good, good}}, ErrInvalid},
		{"a template written twice", DocsWrite{Templates: []DocWrite{{ID: hexID("1")}, {ID: hexID("1")}}}, ErrInvalid},
		{"a bad session id", DocsWrite{Sessions: []DocWrite{good, {ID: "x"}}}, ErrInvalid},
		{"a bad template id", DocsWrite{Sessions: []DocWrite{good}, Templates: []DocWrite{{ID: "NOT"}}}, ErrInvalid},
		{"a negative revision", DocsWrite{Sessions: []DocWrite{good, {ID: sid(2), IfRevision: -1}}}, ErrInvalid},
		{"a session doc too large", DocsWrite{Sessions: []DocWrite{good, {ID: sid(2), Doc: make([]byte, MaxSessionDoc+1)}}}, ErrTooLarge},
		{"a template doc too large", DocsWrite{Sessions: []DocWrite{good}, Templates: []DocWrite{{ID: hexID("1"), Doc: make([]byte, MaxDocBytes+1)}}}, ErrTooLarge},
		{"a bad session name", DocsWrite{Sessions: []DocWrite{good, {ID: sid(2), Name: name("a\nb")}}}, ErrInvalid},
		{"an empty template name", DocsWrite{Sessions: []DocWrite{good}, Templates: []DocWrite{{ID: hexID("1"), Name: name(" ")}}}, ErrInvalid},
		{"a template name taken", DocsWrite{Sessions: []DocWrite{good}, Templates: []DocWrite{{ID: hexID("1"), Name: name("b")}}}, ErrInvalid},
		{"two writes take one name", DocsWrite{Templates: []DocWrite{{ID: hexID("1"), Name: name("c")}, {ID: hexID("2"), Name: name("c")}}}, ErrInvalid},
		{"a new name another write keeps", DocsWrite{Templates: []DocWrite{{ID: hexID("1"), Name: name("b")}, {ID: hexID("2")}}}, ErrInvalid},
		{"too many writes", DocsWrite{Sessions: []DocWrite{good, {ID: sid(2)}}, Templates: make([]DocWrite, MaxDocWrites-1)}, ErrTooLarge},
	} {
		t.Run(tc.what, func(t *testing.T) {
			h := docsFarm(t)
			before := h.st().Digest()
			tc.c.Now = h.now + 1
			h.fails(&tc.c, tc.want)
			if h.st().Digest() != before {
				t.Fatal("a refused docs write changed the state")
			}
		})
	}
}

// Another update between the read and the write makes the write stale,
// though it changed another field than the doc.
func TestDocsWriteStaleAfterAnotherUpdate(t *testing.T) {
	h := docsFarm(t)
	read := h.session(1).Revision
	labels := map[string]string{"k": "v"}
	h.ok(&SessionUpdate{Now: h.now, ID: sid(1), Labels: &labels})
	h.fails(&DocsWrite{Now: h.now, Sessions: []DocWrite{{ID: sid(1), IfRevision: read, Doc: []byte("x")}}}, ErrConflict)
	tread := h.template(hexID("2")).Revision
	no := false
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("2"), Patch: TemplatePatch{Public: &no}})
	h.fails(&DocsWrite{Now: h.now, Templates: []DocWrite{{ID: hexID("2"), IfRevision: tread, Doc: []byte("x")}}}, ErrConflict)
	// Read again, write again.
	h.ok(&DocsWrite{Now: h.now,
		Sessions:  []DocWrite{{ID: sid(1), IfRevision: h.session(1).Revision, Doc: []byte("x")}},
		Templates: []DocWrite{{ID: hexID("2"), IfRevision: h.template(hexID("2")).Revision, Doc: []byte("x")}},
	})
	var err error = conflict("session", sid(1), 3, 2)
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "revision conflict") {
		t.Fatalf("conflict error %v", err)
	}
}

func TestDocsWriteNames(t *testing.T) {
	h := docsFarm(t)
	h.ok(&Execute{Now: h.now, ID: hexID("e1"), Template: hexID("1")})
	name := func(s string) *string { return &s }
	// Two templates swap names in one write; executions stay counted.
	h.ok(&DocsWrite{Now: h.now, Templates: []DocWrite{{ID: hexID("1"), Name: name("b")}, {ID: hexID("2"), Name: name("a")}}})
	if x, ok := h.st().TemplateByName(DefaultProject, "b"); !ok || x.ID != hexID("1") {
		t.Fatalf("by name b: %+v", x)
	}
	if x, ok := h.st().TemplateByName(DefaultProject, "a"); !ok || x.ID != hexID("2") || h.st().TemplateUses(hexID("1")) != 1 {
		t.Fatalf("by name a: %+v, uses %d", x, h.st().TemplateUses(hexID("1")))
	}
	// A protected template's doc may be written, not its name.
	yes := true
	h.ok(&TemplateUpdate{Now: h.now, ID: hexID("1"), Patch: TemplatePatch{Protected: &yes}})
	h.ok(&DocsWrite{Now: h.now, Templates: []DocWrite{{ID: hexID("1"), Doc: []byte("d"), Name: name("b")}}})
	h.fails(&DocsWrite{Now: h.now, Templates: []DocWrite{{ID: hexID("1"), Doc: []byte("d"), Name: name("z")}}}, ErrProtected)
	if x := h.template(hexID("1")); !bytes.Equal(x.Spec.Doc, []byte("d")) || !x.Spec.Protected {
		t.Fatalf("protected %+v", x)
	}
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
}

func TestDocsWriteIsNotIgnorable(t *testing.T) {
	if MsgDocsWrite != 42 || MsgDocsWrite.Ignorable() || (DocsWrite{}).Type() != MsgDocsWrite {
		t.Fatalf("MsgDocsWrite is %d, ignorable %v", MsgDocsWrite, MsgDocsWrite.Ignorable())
	}
}

// TestDocsWriteExecutions: an execution's doc is written with the others,
// guarded by its revision (1 at execute); it has no name to write.
func TestDocsWriteExecutions(t *testing.T) {
	h := newHarness(t)
	h.ok(&TemplateCreate{Now: h.now, ID: hexID("a1"), Project: DefaultProject, Spec: shellSpec("t")})
	h.ok(&Execute{Now: h.now, ID: hexID("e1"), Template: hexID("a1")})
	e, _ := h.st().Execution(hexID("e1"))
	if e.Revision != 1 {
		t.Fatalf("revision at execute %d", e.Revision)
	}
	h.ok(&DocsWrite{Now: h.now, Executions: []DocWrite{{ID: hexID("e1"), IfRevision: 1, Doc: []byte(`{"is_public":true}`)}}})
	if e, _ = h.st().Execution(hexID("e1")); string(e.Doc) != `{"is_public":true}` || e.Revision != 2 {
		t.Fatalf("after the write: %q revision %d", e.Doc, e.Revision)
	}
	before := h.st().Digest()
	h.fails(&DocsWrite{Now: h.now, Executions: []DocWrite{{ID: hexID("e1"), IfRevision: 1, Doc: []byte(`x`)}}}, ErrConflict)
	h.fails(&DocsWrite{Now: h.now, Executions: []DocWrite{{ID: hexID("e1"), Doc: []byte(`x`), Name: ptr("n")}}}, ErrInvalid)
	h.fails(&DocsWrite{Now: h.now, Executions: []DocWrite{{ID: hexID("ff"), Doc: []byte(`x`)}}}, ErrNotFound)
	// All or none: a good execution write with a failing template write.
	h.fails(&DocsWrite{Now: h.now, Executions: []DocWrite{{ID: hexID("e1"), Doc: []byte(`y`)}},
		Templates: []DocWrite{{ID: hexID("a1"), IfRevision: 99, Doc: []byte(`z`)}}}, ErrConflict)
	if h.st().Digest() != before {
		t.Fatal("a refused write changed the state")
	}
}
