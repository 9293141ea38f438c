package raftstore

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Access control lives in the replicated state, so that a token created or
// revoked on the leader is known or forgotten by every coordinator as soon
// as the entry is applied. Secrets are never here: a token is stored as the
// SHA-256 of its secret, which the leader computes before proposing.

// Token roles. A token has exactly one.
const (
	// RoleAdmin may do everything: tokens, projects, membership,
	// snapshots, workers, every project's jobs.
	RoleAdmin = "admin"
	// RoleUser submits and controls work in its projects, and reads them.
	RoleUser = "user"
	// RoleRead reads its projects, with environment values redacted.
	RoleRead = "read"
	// RoleAgent speaks the agent and Coalition worker protocols only, as
	// the worker names it is bound to.
	RoleAgent = "agent"
)

// Roles lists the roles, from the most to the least powerful.
var Roles = []string{RoleAdmin, RoleUser, RoleRead, RoleAgent}

// DefaultProject is the project every farm has; it cannot be deleted.
const DefaultProject = "default"

// AllProjects in a token's project list grants every project, present and
// future.
const AllProjects = "*"

// Bounds of the access records. Tokens and projects are few and admin-made;
// the bounds keep a careless script from filling the state.
const (
	MaxTokens          = 10_000
	MaxProjects        = 1_000
	MaxTokenProjects   = 100
	MaxTokenWorkers    = 100
	MaxAccessNameBytes = 64
)

// projectName is what a project name may be: short, printable, usable in a
// URL path segment without escaping.
var projectName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidProjectName reports whether name may name a project.
func ValidProjectName(name string) error {
	if !projectName.MatchString(name) {
		return invalid("project name %q: 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Project is a namespace of jobs (and, later, sessions, templates and
// executions) with its own access: a token grants some projects.
type Project struct {
	Name    string
	Created int64
	// jobs counts the project's jobs: derived, rebuilt on restore.
	jobs int
	// sessions counts the project's sessions: derived, as jobs.
	sessions int
}

// Token is an access token as the state keeps it: everything but the
// secret, of which only the SHA-256 (hex) is kept.
type Token struct {
	// ID is the token's public id (shown by list, used to revoke).
	ID   string
	Name string
	Role string
	// Projects the token may act on; AllProjects for every one. Admin
	// tokens act on every project whatever this says.
	Projects []string
	// Workers are the worker names an agent token may act as: a name
	// (which also covers its slots, name/2, name/3...) or a prefix ending
	// in '*'.
	Workers []string
	// Hash is the hex SHA-256 of the secret.
	Hash      string
	Created   int64
	CreatedBy string
}

// TokenCreate adds a token. The leader draws the id and the secret and
// stamps the secret's hash; the secret itself never enters the log.
type TokenCreate struct {
	Now   int64
	Token Token
}

// TokenRevoke removes a token by id: from the moment the entry applies, no
// coordinator accepts it.
type TokenRevoke struct {
	Now int64
	ID  string
}

// ProjectCreate adds a project.
type ProjectCreate struct {
	Now  int64
	Name string
}

// ProjectDelete removes an empty project that no token names.
type ProjectDelete struct {
	Now  int64
	Name string
}

func (TokenCreate) Type() MessageType   { return MsgTokenCreate }
func (TokenRevoke) Type() MessageType   { return MsgTokenRevoke }
func (ProjectCreate) Type() MessageType { return MsgProjectCreate }
func (ProjectDelete) Type() MessageType { return MsgProjectDelete }

// ValidRole reports whether role is one of Roles.
func ValidRole(role string) bool {
	for _, r := range Roles {
		if r == role {
			return true
		}
	}
	return false
}

// validAccessName checks a token name or a worker pattern: printable, one
// line, bounded.
func validAccessName(what, name string, maxBytes int) error {
	if name == "" || len(name) > maxBytes {
		return invalid("%s %q: 1 to %d bytes", what, truncate(name, 80), maxBytes)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return invalid("%s %q: control characters are not allowed", what, truncate(name, 80))
		}
	}
	return nil
}

// CheckToken checks a token's fields, without the state: the role, the
// name, the projects' and workers' shapes, and the hash.
func CheckToken(t *Token) error {
	if err := validAccessName("token name", t.Name, MaxAccessNameBytes); err != nil {
		return err
	}
	if err := validAccessName("token id", t.ID, MaxAccessNameBytes); err != nil {
		return err
	}
	if !ValidRole(t.Role) {
		return invalid("role %q: one of %s", t.Role, strings.Join(Roles, ", "))
	}
	if len(t.Projects) > MaxTokenProjects {
		return fmt.Errorf("%w: %d projects, the limit is %d", ErrTooLarge, len(t.Projects), MaxTokenProjects)
	}
	for _, p := range t.Projects {
		if p != AllProjects {
			if err := ValidProjectName(p); err != nil {
				return err
			}
		}
	}
	if t.Role != RoleAgent && len(t.Workers) > 0 {
		return invalid("only agent tokens are bound to workers")
	}
	if len(t.Workers) > MaxTokenWorkers {
		return fmt.Errorf("%w: %d worker names, the limit is %d", ErrTooLarge, len(t.Workers), MaxTokenWorkers)
	}
	for _, w := range t.Workers {
		if err := validAccessName("worker name", w, MaxNameBytes); err != nil {
			return err
		}
	}
	if b, err := hex.DecodeString(t.Hash); err != nil || len(b) != 32 {
		return invalid("token hash: 64 hex digits expected")
	}
	return nil
}

func (s *State) createToken(c *TokenCreate) error {
	t := c.Token
	if err := CheckToken(&t); err != nil {
		return err
	}
	if len(s.tokens) >= MaxTokens {
		return fmt.Errorf("%w: %d tokens, the limit", ErrTooLarge, MaxTokens)
	}
	if s.tokenByID[t.ID] != nil {
		return invalid("token id %q exists", t.ID)
	}
	if s.tokens[t.Hash] != nil {
		return invalid("token secret collides with an existing token")
	}
	for _, o := range s.tokens {
		if o.Name == t.Name {
			return invalid("a token named %q exists", t.Name)
		}
	}
	for _, p := range t.Projects {
		if p != AllProjects && s.projects[p] == nil {
			return notFound("project %q", p)
		}
	}
	t.Projects = append([]string(nil), t.Projects...)
	t.Workers = append([]string(nil), t.Workers...)
	t.Created = c.Now
	s.tokens[t.Hash] = &t
	s.tokenByID[t.ID] = &t
	return nil
}

func (s *State) revokeToken(c *TokenRevoke) error {
	t := s.tokenByID[c.ID]
	if t == nil {
		return notFound("token %q", c.ID)
	}
	delete(s.tokenByID, t.ID)
	delete(s.tokens, t.Hash)
	return nil
}

func (s *State) createProject(c *ProjectCreate) error {
	if err := ValidProjectName(c.Name); err != nil {
		return err
	}
	if s.projects[c.Name] != nil {
		return invalid("project %q exists", c.Name)
	}
	if len(s.projects) >= MaxProjects {
		return fmt.Errorf("%w: %d projects, the limit", ErrTooLarge, MaxProjects)
	}
	s.projects[c.Name] = &Project{Name: c.Name, Created: c.Now}
	return nil
}

func (s *State) deleteProject(c *ProjectDelete) error {
	p := s.projects[c.Name]
	switch {
	case p == nil:
		return notFound("project %q", c.Name)
	case c.Name == DefaultProject:
		return invalid("the %s project cannot be deleted", DefaultProject)
	case p.jobs > 0:
		return invalid("project %q still has %d jobs", c.Name, p.jobs)
	case p.sessions > 0:
		return invalid("project %q still has %d sessions", c.Name, p.sessions)
	case s.tpl.perProject[c.Name] > 0:
		return invalid("project %q still has %d templates", c.Name, s.tpl.perProject[c.Name])
	}
	for _, id := range sortedKeys(keysOf(s.tokenByID)) {
		if t := s.tokenByID[id]; containsString(t.Projects, c.Name) {
			return invalid("token %q (%s) grants project %q: revoke it first", t.Name, t.ID, c.Name)
		}
	}
	for _, n := range sortedKeys(keysOf(s.workers)) {
		if containsString(s.workers[n].Projects, c.Name) {
			return invalid("worker %q serves project %q: delete it first", n, c.Name)
		}
	}
	delete(s.projects, c.Name)
	return nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// TokenByHash returns the token whose secret hashes to hash (hex SHA-256).
func (s *State) TokenByHash(hash string) (Token, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tokens[hash]
	if t == nil {
		return Token{}, false
	}
	return *t, true
}

// TokenByID returns a token by its public id.
func (s *State) TokenByID(id string) (Token, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tokenByID[id]
	if t == nil {
		return Token{}, false
	}
	return *t, true
}

// Tokens returns every token (hashes included: callers must not show
// them), by name.
func (s *State) Tokens() []Token {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Token, 0, len(s.tokens))
	for _, t := range s.tokens {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// TokenCount returns the number of tokens.
func (s *State) TokenCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.tokens)
}

// ProjectInfo is a project as reads show it.
type ProjectInfo struct {
	Name    string
	Created int64
	Jobs    int
}

// Projects returns every project by name.
func (s *State) Projects() []ProjectInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]ProjectInfo, 0, len(s.projects))
	for _, name := range sortedKeys(keysOf(s.projects)) {
		p := s.projects[name]
		out = append(out, ProjectInfo{Name: p.Name, Created: p.Created, Jobs: p.jobs})
	}
	return out
}

// Project returns one project.
func (s *State) Project(name string) (ProjectInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := s.projects[name]
	if p == nil {
		return ProjectInfo{}, false
	}
	return ProjectInfo{Name: p.Name, Created: p.Created, Jobs: p.jobs}, true
}
