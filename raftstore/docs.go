package raftstore

import "fmt"

// Docs writes (DESIGN.md, "Docs writes"): a dialect that keeps its own
// documents in sessions and templates (Freezer v2: a job's document in a
// template, a session's in a session) writes several of them in one
// entry, all or none, each guarded by the revision it read
// (compare-and-set), so two coordinators' requests never interleave half
// of one write with half of the other.

// MaxDocWrites bounds the writes of one DocsWrite, sessions and templates
// together: each is a document of up to 64 KiB.
const MaxDocWrites = 8

// DocWrite replaces the dialect document (and, when Name is set, the name) of one session, template or execution,
// if its revision is still IfRevision (0: whatever it is).
type DocWrite struct {
	_struct struct{} `codec:",toarray"`

	ID         string
	IfRevision int64
	Doc        []byte
	Name       *string
}

// DocsWrite writes the documents of sessions, templates and executions
// in one step: all or none. An execution's write names no Name.
type DocsWrite struct {
	Now        int64
	Sessions   []DocWrite
	Templates  []DocWrite
	Executions []DocWrite
}

// Type is MsgDocsWrite.
func (DocsWrite) Type() MessageType { return MsgDocsWrite }

// CheckDocsWrite checks what a docs write holds against the limits: at
// most MaxDocWrites writes, well-formed ids, each named once, documents
// within MaxSessionDoc (a session's) or MaxDocBytes (a template's), valid
// names. What depends on the state (the records, their revisions, the
// names taken) is checked when it applies.
func CheckDocsWrite(c *DocsWrite) error {
	if n := len(c.Sessions) + len(c.Templates) + len(c.Executions); n > MaxDocWrites {
		return fmt.Errorf("%w: %d writes, the limit is %d", ErrTooLarge, n, MaxDocWrites)
	}
	seen := make(map[string]bool, len(c.Sessions))
	for i := range c.Sessions {
		w := &c.Sessions[i]
		if err := ValidSessionID(w.ID); err != nil {
			return err
		}
		if err := checkWrite("session", w, seen); err != nil {
			return err
		}
		if err := CheckSessionFields(w.Name, nil, &w.Doc, nil); err != nil {
			return err
		}
	}
	seen = make(map[string]bool, len(c.Templates))
	for i := range c.Templates {
		w := &c.Templates[i]
		if err := CheckHexID("template id", w.ID); err != nil {
			return err
		}
		if err := checkWrite("template", w, seen); err != nil {
			return err
		}
		if err := checkDoc(w.Doc); err != nil {
			return err
		}
		if w.Name != nil {
			if err := checkTemplateName(*w.Name); err != nil {
				return err
			}
		}
	}
	seen = make(map[string]bool, len(c.Executions))
	for i := range c.Executions {
		w := &c.Executions[i]
		if err := CheckHexID("execution id", w.ID); err != nil {
			return err
		}
		if err := checkWrite("execution", w, seen); err != nil {
			return err
		}
		if w.Name != nil {
			return invalid("execution %s has no name to write", w.ID)
		}
		if err := checkDoc(w.Doc); err != nil {
			return err
		}
	}
	return nil
}

// checkWrite checks what every write must be: its record named once in
// the command (seen holds the ids of its kind so far), a revision that
// can exist.
func checkWrite(what string, w *DocWrite, seen map[string]bool) error {
	if seen[w.ID] {
		return invalid("%s %s is written twice", what, w.ID)
	}
	seen[w.ID] = true
	if w.IfRevision < 0 {
		return invalid("%s %s: revision %d is negative", what, w.ID, w.IfRevision)
	}
	return nil
}

// writeDocs applies a DocsWrite: every write is checked against the state
// first (the record exists, is at its revision, its new name is free in
// the project once the whole command applied, a protected template's name
// stays), then all are made. A refused command changes nothing.
func (s *State) writeDocs(c *DocsWrite) error {
	if err := CheckDocsWrite(c); err != nil {
		return err
	}
	sessions := make([]*Session, len(c.Sessions))
	for i := range c.Sessions {
		w := &c.Sessions[i]
		x, err := s.session(w.ID)
		if err != nil {
			return err
		}
		if err := checkRevision("session", x.ID, x.Revision, w.IfRevision); err != nil {
			return err
		}
		sessions[i] = x
	}
	tpls, err := s.checkTemplateWrites(c.Templates)
	if err != nil {
		return err
	}
	execs := make([]*Execution, len(c.Executions))
	for i := range c.Executions {
		w := &c.Executions[i]
		e := s.tpl.execs[w.ID]
		if e == nil {
			return notFound("execution %s", truncate(w.ID, 40))
		}
		if err := checkRevision("execution", e.ID, e.Revision, w.IfRevision); err != nil {
			return err
		}
		execs[i] = e
	}

	for i := range c.Sessions {
		w, x := &c.Sessions[i], sessions[i]
		x.Doc = cloneBytes(w.Doc) // replaced, never changed in place: readers share it
		if w.Name != nil {
			x.Name = *w.Name
		}
		x.LastActivity = c.Now
		x.Revision++
	}
	// Replaced whole (readers hold copies), and every written template
	// leaves the name index before any comes back: two templates that
	// swap names never collide midway.
	uses := make([]int, len(tpls))
	for i, x := range tpls {
		uses[i] = s.tpl.uses[x.ID]
		s.tpl.dropTemplate(x)
	}
	for i, x := range tpls {
		w := &c.Templates[i]
		y := *x
		y.Spec.Doc = append([]byte(nil), w.Doc...)
		if w.Name != nil {
			y.Spec.Name = *w.Name
		}
		y.Updated, y.Revision = c.Now, x.Revision+1
		s.tpl.addTemplate(&y)
		if uses[i] > 0 {
			s.tpl.uses[y.ID] = uses[i]
		}
	}
	for i, e := range execs {
		e.Doc = append([]byte(nil), c.Executions[i].Doc...) // replaced whole: readers share it
		e.Revision++
	}
	return nil
}

// checkTemplateWrites checks the template writes of a DocsWrite against
// the state and returns their templates, in order.
func (s *State) checkTemplateWrites(writes []DocWrite) ([]*Template, error) {
	tpls := make([]*Template, len(writes))
	written := make(map[string]bool, len(writes))
	for i := range writes {
		w := &writes[i]
		x := s.tpl.byID[w.ID]
		if x == nil {
			return nil, notFound("template %s", truncate(w.ID, 40))
		}
		if err := checkRevision("template", x.ID, x.Revision, w.IfRevision); err != nil {
			return nil, err
		}
		// The doc is the dialect's own data, which a protected template
		// keeps writable; its name is not.
		if w.Name != nil && *w.Name != x.Spec.Name && x.Spec.Protected {
			return nil, fmt.Errorf("%w: %s: its name cannot change (its doc may)", ErrProtected, x.ID)
		}
		tpls[i], written[x.ID] = x, true
	}
	// Names are unique in a project once the whole command applied: a
	// new name may be one that another write gives up, not one that a
	// template left as it is holds, nor one that two writes take.
	final := make(map[string]string, len(writes)) // project "\x00" name -> id
	for i := range writes {
		x, name := tpls[i], tpls[i].Spec.Name
		if writes[i].Name != nil {
			name = *writes[i].Name
		}
		key := nameKey(x.Project, name)
		if id := s.tpl.byName[key]; id != "" && !written[id] {
			return nil, invalid("project %q has a template named %q", x.Project, truncate(name, 40))
		}
		if id, ok := final[key]; ok {
			return nil, invalid("templates %s and %s would both be named %q in project %q", id, x.ID, truncate(name, 40), x.Project)
		}
		final[key] = x.ID
	}
	return tpls, nil
}
