package coordinator

import (
	"errors"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/cluster"
)

// edgeError translates the Raft layer's sentinel errors into the API's: it
// is where package cluster meets the HTTP edge, and apierr.Status, the one
// error-to-status table, then picks the status. A command that was not
// applied becomes apierr.ErrUnavailable (503, safe to retry), or
// apierr.ErrInsufficientStorage (507) when storage was the cause (the
// leader could not store the entry, or lost its leadership while its own
// writes fail), one whose fate is unknown apierr.ErrOutcomeUnknown (504).
// The message is kept; other errors pass unchanged.
func edgeError(err error) error {
	var kind error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cluster.ErrOutcomeUnknown):
		kind = apierr.ErrOutcomeUnknown
	case errors.Is(err, cluster.ErrStorage):
		kind = apierr.ErrInsufficientStorage
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrNoLeader):
		kind = apierr.ErrUnavailable
	case errors.Is(err, cluster.ErrSnapshotRefused):
		kind = apierr.ErrConflict
	default:
		return err
	}
	return &translated{kind: kind, err: err}
}

// translated is a cluster error with the API sentinel it stands for.
type translated struct{ kind, err error }

func (e *translated) Error() string   { return e.err.Error() }
func (e *translated) Unwrap() []error { return []error{e.kind, e.err} }

// abortEdge answers err, translated, with apierr's status and JSON body.
func abortEdge(c *gin.Context, err error) { apierr.Abort(c, edgeError(err)) }
