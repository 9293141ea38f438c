package native

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/raftstore"
)

// MaxDrainNames bounds the workers of one drain request.
const MaxDrainNames = 1_000

// WorkerActions runs an action on named workers (the service does).
type WorkerActions interface {
	ActOnWorkers(ctx context.Context, action string, names []string) error
}

// WorkersHandler serves POST /croft/v1/workers/drain: the named workers
// finish what they run and take no new job (they are disabled: Coalition's
// startworkers, or croft worker enable, takes them back). Disabling
// (Coalition's stopworkers) instead takes their jobs back at once.
type WorkersHandler struct{ ops WorkerActions }

// NewWorkers returns the workers' handler.
func NewWorkers(ops WorkerActions) *WorkersHandler { return &WorkersHandler{ops: ops} }

// Register mounts the route: an admin's, as stopping workers is.
func (h *WorkersHandler) Register(m auth.Mount) {
	m.Abort = apierr.Abort
	m.Handle(http.MethodPost, client.PathWorkersDrain, auth.PermAdmin, h.drain)
}

func (h *WorkersHandler) drain(c *gin.Context) {
	body, err := apierr.ReadBody(c, 64<<10)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	var req client.DrainRequest
	if err := json.Unmarshal(body, &req); err != nil {
		apierr.Abort(c, apierr.Bad("a JSON object {\"names\": [...]} expected: %v", err))
		return
	}
	switch {
	case len(req.Names) == 0:
		err = apierr.Bad("names: at least one worker")
	case len(req.Names) > MaxDrainNames:
		err = apierr.Bad("names: %d workers, the limit is %d", len(req.Names), MaxDrainNames)
	}
	for _, n := range req.Names {
		if err == nil {
			err = raftstore.CheckName("worker name", n)
		}
	}
	if err == nil {
		err = h.ops.ActOnWorkers(c, raftstore.ActionWorkerDrain, req.Names)
	}
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
