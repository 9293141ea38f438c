// Package auth authenticates API requests and says what they may do.
//
// Every request carries a token (or comes from a network the operator
// trusts, or the farm runs --insecure). The token's record lives in the
// replicated state (raftstore.Token): a role, the projects it may act on
// and, for agents, the worker names it may act as. This package turns a
// request into a Principal; the handlers of each dialect ask the Principal
// before they act (CanRead, CanWrite, MayActAs...), so the rule for a route
// sits next to the route.
//
// Tokens are taken where each ecosystem puts them: "Authorization: Bearer
// T" everywhere, "X-Auth-Token: T" (OpenStack clients), "Authorization:
// token T" and "?token=T" (Jupyter clients).
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/raftstore"
)

// SecretPrefix starts every token secret, so a leaked one is recognisable
// (secret scanners, logs).
const SecretPrefix = "croft_"

// Principal is who a request acts for and what it may do.
type Principal struct {
	// Name is the token's name, or "insecure" / "trusted network".
	Name string
	// TokenID is the token's public id; "" without a token.
	TokenID string

	roles    roleSet
	all      bool     // every project
	projects []string // when not all
	workers  []string // worker name patterns an agent may act as
}

// roleSet is a set of roles, a bit each: a principal is made per request.
type roleSet uint8

const (
	roleAdmin roleSet = 1 << iota
	roleUser
	roleRead
	roleAgent
)

// roleBit is role's bit; 0 for an unknown role.
func roleBit(role string) roleSet {
	switch role {
	case raftstore.RoleAdmin:
		return roleAdmin
	case raftstore.RoleUser:
		return roleUser
	case raftstore.RoleRead:
		return roleRead
	case raftstore.RoleAgent:
		return roleAgent
	}
	return 0
}

// FromToken is the principal of a token.
func FromToken(t raftstore.Token) *Principal {
	p := &Principal{Name: t.Name, TokenID: t.ID, roles: roleBit(t.Role), workers: t.Workers}
	for _, pr := range t.Projects {
		if pr == raftstore.AllProjects {
			p.all = true
		}
	}
	if !p.all {
		p.projects = t.Projects
	}
	if t.Role == raftstore.RoleAdmin {
		p.all = true
	}
	return p
}

// Insecure is the principal of every request of a farm run with
// --insecure: an admin.
func Insecure() *Principal {
	return &Principal{Name: "insecure", roles: roleAdmin, all: true}
}

// Trusted is the principal of a tokenless request from a trusted network:
// the given roles on every project, as any worker.
func Trusted(roles []string) *Principal {
	p := &Principal{Name: "trusted network", all: true, workers: []string{"*"}}
	for _, r := range roles {
		p.roles |= roleBit(r)
	}
	return p
}

// Has reports whether the principal holds role.
func (p *Principal) Has(role string) bool { return p.roles&roleBit(role) != 0 }

// IsAdmin reports whether the principal may do everything.
func (p *Principal) IsAdmin() bool { return p.roles&roleAdmin != 0 }

// inProject reports whether the principal's projects include project.
func (p *Principal) inProject(project string) bool {
	if project == "" {
		project = raftstore.DefaultProject
	}
	if p.all {
		return true
	}
	for _, x := range p.projects {
		if x == project {
			return true
		}
	}
	return false
}

// CanRead reports whether the principal may read project's work.
func (p *Principal) CanRead(project string) bool {
	return p.IsAdmin() || (p.roles&(roleUser|roleRead) != 0 && p.inProject(project))
}

// CanWrite reports whether the principal may submit and control work in
// project.
func (p *Principal) CanWrite(project string) bool {
	return p.IsAdmin() || (p.roles&roleUser != 0 && p.inProject(project))
}

// CanReadSome reports whether the principal may read any project at all
// (list routes then filter row by row).
func (p *Principal) CanReadSome() bool {
	return p.roles&(roleAdmin|roleUser|roleRead) != 0
}

// Redacted reports whether environment values must be hidden from the
// principal: a read-only token sees the names, not the values.
func (p *Principal) Redacted() bool {
	return p.roles&(roleAdmin|roleUser) == 0
}

// MayActAs reports whether the principal may speak the agent or worker
// protocol as worker: an admin, or an agent token bound to the name (or
// to the name a slot suffix "/N" extends, or to a prefix ending in '*').
func (p *Principal) MayActAs(worker string) bool {
	if p.IsAdmin() {
		return true
	}
	if p.roles&roleAgent == 0 || worker == "" {
		return false
	}
	for _, pat := range p.workers {
		if MatchWorker(pat, worker) {
			return true
		}
	}
	return false
}

// MatchWorker reports whether a token's worker pattern covers worker: the
// same name, that name with a slot suffix ("render-1/2"), or, for a
// pattern ending in '*', any name with that prefix.
func MatchWorker(pattern, worker string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(worker, prefix)
	}
	if worker == pattern {
		return true
	}
	rest, ok := strings.CutPrefix(worker, pattern+"/")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// WorkerProjects is what a worker registered by this principal serves: nil
// (the whole farm) unless the token is restricted to some projects.
func (p *Principal) WorkerProjects() []string {
	if p.all {
		return nil
	}
	return append([]string{}, p.projects...)
}

// DefaultProject is the project a create goes to when it names none: the
// token's only project if it has exactly one, else the farm's default.
func (p *Principal) DefaultProject() string {
	if !p.all && len(p.projects) == 1 {
		return p.projects[0]
	}
	return raftstore.DefaultProject
}

// Projects returns the projects the principal may read: all is true for
// every one.
func (p *Principal) Projects() (all bool, projects []string) {
	return p.all, p.projects
}

// Secret returns the token a request carries, or "".
func Secret(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		switch strings.ToLower(scheme) {
		case "bearer", "token":
			return strings.TrimSpace(rest)
		}
	}
	if t := r.Header.Get("X-Auth-Token"); t != "" {
		return strings.TrimSpace(t)
	}
	return r.URL.Query().Get("token")
}

// Hash returns the hex SHA-256 of a secret, as tokens are stored. The
// secrets carry 256 random bits, so a fast hash is enough: there is
// nothing to guess.
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// NewSecret draws a token secret: SecretPrefix and 32 random bytes.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// NewID draws a token's public id.
func NewID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "tok-" + hex.EncodeToString(b), nil
}

// Tokens looks tokens up by the hash of their secret: the replicated state.
type Tokens interface {
	TokenByHash(hash string) (raftstore.Token, bool)
}

// Config is how a coordinator authenticates.
type Config struct {
	// Insecure turns access control off: every request is an admin's.
	Insecure bool
	// TrustNets are the networks whose tokenless requests get TrustRoles.
	TrustNets []*net.IPNet
	// TrustRoles are the roles of a tokenless request from TrustNets.
	TrustRoles []string
}

// Authenticator turns requests into principals.
type Authenticator struct {
	cfg    Config
	tokens func() Tokens
	// peer reports whether an address is another coordinator's: its
	// X-Forwarded-For names the client it forwarded for.
	peer func(net.IP) bool
}

// New returns an authenticator over the tokens of the current state.
// peer tells the coordinators' addresses (nil: none).
func New(cfg Config, tokens func() Tokens, peer func(net.IP) bool) *Authenticator {
	if peer == nil {
		peer = func(net.IP) bool { return false }
	}
	return &Authenticator{cfg: cfg, tokens: tokens, peer: peer}
}

// Insecure reports whether access control is off.
func (a *Authenticator) Insecure() bool { return a.cfg.Insecure }

// ClientIP is the address of the client a request comes from: the
// connection's, or, when the connection is another coordinator's (which
// forwarded the request to the leader), the last address that coordinator
// appended to X-Forwarded-For. A header from anyone else is ignored: it
// could say anything.
func (a *Authenticator) ClientIP(r *http.Request) net.IP {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	xff := r.Header.Get("X-Forwarded-For")
	if xff == "" {
		return ip
	}
	hops := strings.Split(xff, ",")
	for i := len(hops) - 1; i >= 0 && ip != nil && a.peer(ip); i-- {
		next := net.ParseIP(strings.TrimSpace(hops[i]))
		if next == nil {
			break
		}
		ip = next
	}
	return ip
}

// trusted reports whether a tokenless request from ip gets TrustRoles.
func (a *Authenticator) trusted(ip net.IP) bool {
	if ip == nil || len(a.cfg.TrustRoles) == 0 {
		return false
	}
	for _, n := range a.cfg.TrustNets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Authenticate returns the request's principal, or an error wrapping
// apierr.ErrUnauthenticated.
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, error) {
	if a.cfg.Insecure {
		return Insecure(), nil
	}
	secret := Secret(r)
	if secret == "" {
		if a.trusted(a.ClientIP(r)) {
			return Trusted(a.cfg.TrustRoles), nil
		}
		return nil, apierr.Unauthenticated("a token is required (Authorization: Bearer <token>)")
	}
	t, ok := a.tokens().TokenByHash(Hash(secret))
	if !ok {
		return nil, apierr.Unauthenticated("unknown or revoked token")
	}
	return FromToken(t), nil
}

// Aborter ends a request with an error in its dialect's shape.
type Aborter func(c *gin.Context, err error)

// Where Middleware leaves the principal and the authenticator (which
// tells the client's address when it is asked for).
const (
	principalKey = "croft.principal"
	authKey      = "croft.authenticator"
)

// Precheck is middleware for a node that may forward the request to the
// leader: a request without any credential (and not from a trusted
// network) is refused here, so unauthenticated traffic never costs the
// leader anything. A request with a token goes on: this node's copy of the
// tokens may lag the leader's, which decides.
func (a *Authenticator) Precheck(abort Aborter) gin.HandlerFunc {
	return func(c *gin.Context) {
		if a.cfg.Insecure || Secret(c.Request) != "" || a.trusted(a.ClientIP(c.Request)) {
			c.Next()
			return
		}
		abort(c, apierr.Unauthenticated("a token is required (Authorization: Bearer <token>)"))
	}
}

// Middleware authenticates the request and leaves its principal for
// From; a request that cannot be authenticated ends with 401.
func (a *Authenticator) Middleware(abort Aborter) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, err := a.Authenticate(c.Request)
		if err != nil {
			abort(c, err)
			return
		}
		c.Set(principalKey, p)
		c.Set(authKey, a)
		c.Next()
	}
}

// ClientIPOf returns the client's address (through a forwarding
// coordinator, see ClientIP), or "" outside Middleware.
func ClientIPOf(c *gin.Context) string {
	if v, ok := c.Get(authKey); ok {
		if ip := v.(*Authenticator).ClientIP(c.Request); ip != nil {
			return ip.String()
		}
	}
	return ""
}

// From returns the principal Middleware authenticated. A route mounted
// without it has none: such a request may do nothing.
func From(c *gin.Context) *Principal {
	if v, ok := c.Get(principalKey); ok {
		if p, ok := v.(*Principal); ok {
			return p
		}
	}
	return &Principal{Name: "nobody"}
}
