package auth

import (
	"sort"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
)

// Perm is the coarse rule of a route: which principals may call it at all.
// Handlers then check the finer part (the project of each job, the worker
// name), since only they know which job or worker a request is about.
type Perm int

// The route rules.
const (
	// PermAuthenticated: any valid credential (the cluster's status).
	PermAuthenticated Perm = iota + 1
	// PermRead: a principal that reads some project; handlers show only
	// the rows of its projects.
	PermRead
	// PermWrite: a principal that submits work (user or admin); handlers
	// check each job's project.
	PermWrite
	// PermAdmin: an admin (tokens, projects, membership, workers,
	// affinities, snapshots).
	PermAdmin
	// PermAgent: an agent (or an admin); handlers check the worker name.
	PermAgent
)

// String names the rule, for tables and errors.
func (p Perm) String() string {
	switch p {
	case PermAuthenticated:
		return "authenticated"
	case PermRead:
		return "read"
	case PermWrite:
		return "write"
	case PermAdmin:
		return "admin"
	case PermAgent:
		return "agent"
	}
	return "none"
}

// Allows reports whether principal p passes the rule.
func (p Perm) Allows(pr *Principal) bool {
	switch p {
	case PermAuthenticated:
		return true
	case PermRead:
		return pr.CanReadSome()
	case PermWrite:
		return pr.roles&(roleAdmin|roleUser) != 0
	case PermAdmin:
		return pr.IsAdmin()
	case PermAgent:
		return pr.roles&(roleAdmin|roleAgent) != 0
	}
	return false
}

// Check returns an ErrForbidden error unless principal pr passes rule p.
func (p Perm) Check(pr *Principal) error {
	if p.Allows(pr) {
		return nil
	}
	return apierr.Forbidden("token %q may not do this (needs %s)", pr.Name, p)
}

// Route is one mounted route and its rule.
type Route struct {
	Method string
	Path   string
	Perm   Perm
	// Local routes are answered by the coordinator asked, not forwarded
	// to the leader.
	Local bool
}

// Table records every route mounted through a Mount, so a test can walk
// them all: a route cannot be added without a rule.
type Table struct {
	mu     sync.Mutex
	routes []Route
}

// Routes returns the mounted routes, by path then method.
func (t *Table) Routes() []Route {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]Route(nil), t.routes...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out
}

func (t *Table) add(r Route) {
	t.mu.Lock()
	t.routes = append(t.routes, r)
	t.mu.Unlock()
}

// Mount mounts a dialect's routes: each one authenticated, checked against
// its rule and, unless Forward is nil, forwarded to the leader.
type Mount struct {
	Router gin.IRouter
	Auth   *Authenticator
	// Forward is the leader-forwarding middleware; nil serves the route
	// on the coordinator asked.
	Forward gin.HandlerFunc
	// Confirm, when set, makes the middleware that runs after the rule on
	// a route served on the coordinator asked (Forward nil), given the
	// route's rule: that coordinator's copy of the tokens may lag the
	// leader's, so the credential is confirmed with the leader there (a
	// token just revoked is refused on every coordinator at once).
	Confirm func(Perm, Aborter) gin.HandlerFunc
	// Abort answers an error in the dialect's shape.
	Abort Aborter
	// Table records the routes.
	Table *Table
}

// Handle mounts handlers for method ("ANY" for every method) and path,
// behind rule perm.
func (m Mount) Handle(method, path string, perm Perm, handlers ...gin.HandlerFunc) {
	chain := []gin.HandlerFunc{}
	if m.Forward != nil {
		chain = append(chain, m.Auth.Precheck(m.Abort), m.Forward)
	}
	chain = append(chain, m.Auth.Middleware(m.Abort), require(perm, m.Abort))
	if m.Forward == nil && m.Confirm != nil {
		chain = append(chain, m.Confirm(perm, m.Abort))
	}
	chain = append(chain, handlers...)
	if method == "ANY" {
		m.Router.Any(path, chain...)
	} else {
		m.Router.Handle(method, path, chain...)
	}
	if m.Table != nil {
		m.Table.add(Route{Method: method, Path: path, Perm: perm, Local: m.Forward == nil})
	}
}

func require(perm Perm, abort Aborter) gin.HandlerFunc {
	return func(c *gin.Context) {
		if err := perm.Check(From(c)); err != nil {
			abort(c, err)
			return
		}
		c.Next()
	}
}
