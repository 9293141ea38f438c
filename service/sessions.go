package service

import (
	"context"

	"github.com/croftfarm/croft/raftstore"
)

// SessionSpec describes a new session (see raftstore.Session).
type SessionSpec struct {
	// Kind is raftstore.SessionGroup or raftstore.SessionContext.
	Kind    string
	Project string // "": the default project
	Name    string
	// Interpreter runs a context session's code (none for a group).
	Interpreter string
	// InactiveTimeout closes the session after this many seconds without
	// activity (0: never).
	InactiveTimeout int64
	Doc             []byte
	Labels          map[string]string
	// ID, when not "", is the id the client chose (32 lowercase hex
	// digits: Freezer's replace of a session that does not exist creates
	// it with its id); one in use is refused. "": drawn here.
	ID string
}

// SessionPatch holds what to change on a session; nil means unchanged.
type SessionPatch struct {
	Name            *string
	Labels          *map[string]string
	Doc             *[]byte
	InactiveTimeout *int64
	// IfRevision, when not 0, refuses the update with
	// raftstore.ErrConflict unless the session is still at this revision
	// (compare-and-set).
	IfRevision int64
	// Interpreter rebinds a context session to another interpreter: its
	// unended jobs are canceled and it moves to a host that offers it.
	Interpreter *string
}

// OpenSession opens a session with an id drawn here (crypto/rand), or
// the spec's, and returns it as opened: a context session is bound to its
// host then.
func (s *Service) OpenSession(ctx context.Context, spec SessionSpec) (raftstore.Session, error) {
	id, err := spec.ID, error(nil)
	if id == "" {
		if id, err = NewID(); err != nil {
			return raftstore.Session{}, err
		}
	}
	cmd := &raftstore.SessionOpen{
		Now: s.stamp(), ID: id, Project: spec.Project, Name: spec.Name, Kind: spec.Kind,
		Interpreter: spec.Interpreter, InactiveTimeout: spec.InactiveTimeout, Doc: spec.Doc, Labels: spec.Labels,
	}
	res, err := s.apply(ctx, cmd)
	if err != nil {
		return raftstore.Session{}, err
	}
	x, err := resultOf[*raftstore.Session](res, cmd)
	if err != nil || x == nil {
		return raftstore.Session{}, err
	}
	return *x, nil
}

// UpdateSession changes a session's name, labels, doc or timeout (an
// empty patch only touches it: its last activity moves to now, its
// revision stays).
func (s *Service) UpdateSession(ctx context.Context, id string, p SessionPatch) error {
	_, err := s.apply(ctx, &raftstore.SessionUpdate{Now: s.stamp(), ID: id, Name: p.Name, Labels: p.Labels, Doc: p.Doc,
		InactiveTimeout: p.InactiveTimeout, IfRevision: p.IfRevision, Interpreter: p.Interpreter})
	return err
}

// WriteExecutionDoc replaces execution id's dialect document if its
// revision is still ifRevision (0: whatever it is); refused with
// raftstore.ErrConflict otherwise.
func (s *Service) WriteExecutionDoc(ctx context.Context, id string, ifRevision int64, doc []byte) error {
	_, err := s.apply(ctx, &raftstore.DocsWrite{Now: s.stamp(), Executions: []raftstore.DocWrite{{ID: id, IfRevision: ifRevision, Doc: doc}}})
	return err
}

// WriteDocs replaces the dialect documents (and the names, where a write
// sets one) of sessions and templates in one entry: all of them or, when
// one is refused, none. A write whose IfRevision is not 0 is refused with
// raftstore.ErrConflict unless its record is still at that revision:
// someone wrote it since it was read. Nothing to write: no entry.
func (s *Service) WriteDocs(ctx context.Context, sessions, templates []raftstore.DocWrite) error {
	if len(sessions)+len(templates) == 0 {
		return nil
	}
	_, err := s.apply(ctx, &raftstore.DocsWrite{Now: s.stamp(), Sessions: sessions, Templates: templates})
	return err
}

// CloseSession closes a session; its jobs that have not ended are
// canceled (running ones stopped). Closing a closed session does nothing.
func (s *Service) CloseSession(ctx context.Context, id string) error {
	_, err := s.apply(ctx, &raftstore.SessionClose{Now: s.stamp(), ID: id})
	return err
}

// DeleteSession forgets a closed session with its jobs.
func (s *Service) DeleteSession(ctx context.Context, id string) error {
	_, err := s.apply(ctx, &raftstore.SessionDelete{Now: s.stamp(), ID: id})
	return err
}

// SubmitCode creates a job in an open session and returns its id: in a
// context session the code runs with the session's interpreter on its
// host, after the session's earlier jobs; in a group session it is a
// shell command that waits for StartSession. The project quota applies.
func (s *Service) SubmitCode(ctx context.Context, id, title, code string) (int64, error) {
	cmd := &raftstore.SessionSubmit{Now: s.stamp(), ID: id, Title: title, Code: code, MaxProjectJobs: s.maxProjectJobs}
	res, err := s.apply(ctx, cmd)
	if err != nil {
		return 0, err
	}
	return resultOf[int64](res, cmd)
}

// StartSession starts a group session: its jobs waiting for the start
// become runnable.
func (s *Service) StartSession(ctx context.Context, id string) error {
	_, err := s.apply(ctx, &raftstore.SessionStart{Now: s.stamp(), ID: id})
	return err
}

// MaxExpireSessions bounds the sessions one round closes for inactivity
// (one entry); the next round takes the rest.
const MaxExpireSessions = 1_000

// ExpireSessions closes the sessions inactive past their timeout: a
// leader duty, run with the sweep. Only the decision goes to Raft; the
// FSM checks each session again with the stamped time. It returns the
// ids proposed.
func (s *Service) ExpireSessions(ctx context.Context) ([]string, error) {
	now := s.stamp()
	ids := s.state().ExpiredSessions(now, MaxExpireSessions)
	if len(ids) == 0 {
		return nil, nil
	}
	if _, err := s.apply(ctx, &raftstore.SessionExpire{Now: now, IDs: ids}); err != nil {
		return nil, err
	}
	return ids, nil
}
