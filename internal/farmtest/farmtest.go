// Package farmtest holds what the dialects' tests share to run against a
// real state machine without Raft: a store that applies commands through
// raftstore.FSM as a leader would, and a token table.
package farmtest

import (
	"context"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
)

// Now is the leader time the tests stamp into their commands.
const Now = int64(1_700_000_000) * 1e9

// Store applies commands straight to an FSM: each is encoded and applied
// as the next log entry, so results and refusals are the FSM's own.
type Store struct {
	FSM   *raftstore.FSM
	mu    sync.Mutex
	index uint64
}

// NewStore returns a store over a new FSM whose job logs live in a test
// directory, with this release's apply rules in force, as a leader puts
// them before it takes any request (revisions of sessions and templates,
// runs with exit codes); the FSM is closed when the test ends.
func NewStore(t testing.TB) *Store {
	t.Helper()
	fsm, err := raftstore.NewFSM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsm.Close() })
	s := &Store{FSM: fsm}
	if _, err := s.Apply(context.Background(), &raftstore.SetRelease{Release: raftstore.Release}); err != nil {
		t.Fatal(err)
	}
	return s
}

// State returns the FSM's state.
func (s *Store) State() *raftstore.State { return s.FSM.State() }

// Apply encodes cmd and applies it as the next entry; a refusal is the
// error.
func (s *Store) Apply(_ context.Context, cmd raftstore.Command) (any, error) {
	buf, err := raftstore.Encode(cmd)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.index++
	res := s.FSM.Apply(&raft.Log{Index: s.index, Type: raft.LogCommand, Data: buf})
	s.mu.Unlock()
	if err, ok := res.(error); ok {
		return nil, err
	}
	return res, nil
}

// Tokens is a token table by secret hash, as auth.Tokens wants it.
type Tokens map[string]raftstore.Token

// TokenByHash returns the token whose secret hashes to h.
func (m Tokens) TokenByHash(h string) (raftstore.Token, bool) { t, ok := m[h]; return t, ok }

// TokensOf is a table of these tokens, each with the secret
// "secret-"+its name.
func TokensOf(toks ...raftstore.Token) Tokens {
	out := Tokens{}
	for _, t := range toks {
		out[auth.Hash("secret-"+t.Name)] = t
	}
	return out
}

// Farm4 are the tokens most dialect tests use: an admin, a user and a
// reader of project a, a user of project b.
var Farm4 = []raftstore.Token{
	{Name: "admin", Role: raftstore.RoleAdmin},
	{Name: "user-a", Role: raftstore.RoleUser, Projects: []string{"a"}},
	{Name: "read-a", Role: raftstore.RoleRead, Projects: []string{"a"}},
	{Name: "user-b", Role: raftstore.RoleUser, Projects: []string{"b"}},
}

// Projects creates these projects.
func (s *Store) Projects(t testing.TB, names ...string) {
	t.Helper()
	for _, p := range names {
		if _, err := s.Apply(context.Background(), &raftstore.ProjectCreate{Now: Now, Name: p}); err != nil {
			t.Fatal(err)
		}
	}
}
