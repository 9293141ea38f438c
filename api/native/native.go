// Package native serves Croft's own REST routes under /croft/v1: the
// farm's neutral model (runs, exit codes, ...) as Croft names it, in
// snake_case JSON with RFC 3339 UTC times, beside the dialects' routes.
package native

import (
	"net/http"
	"time"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
)

// Prefix is the path every native route starts with.
const Prefix = "/croft/v1"

// Store is what the native routes read: the replicated state.
type Store interface {
	State() *raftstore.State
}

// Handler serves the native job routes.
type Handler struct {
	store Store
	now   func() time.Time
}

// New returns the handler of the native job routes.
func New(store Store) *Handler { return &Handler{store: store, now: time.Now} }

// Register mounts the routes.
func (h *Handler) Register(m auth.Mount) {
	m.Abort = apierr.Abort
	m.Handle(http.MethodGet, Prefix+"/jobs/:id/runs", auth.PermRead, h.runs)
}
