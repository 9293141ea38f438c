// Package apierr maps errors to HTTP status codes at the edge. The state
// machine and the coordinator return sentinel errors; only this package
// decides which status a client sees, so every dialect answers alike.
package apierr

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/raftstore"
)

var (
	// ErrBadInput marks a request the client must fix (400).
	ErrBadInput = errors.New("bad input")
	// ErrUnavailable marks a request that was not applied and could not be
	// served now, e.g. while the cluster has no leader (503). The client
	// may retry it.
	ErrUnavailable = errors.New("unavailable")
	// ErrOutcomeUnknown marks a write that reached the Raft log but whose
	// commit was not confirmed (leadership lost, or the request gave up):
	// it may or may not be applied (504). Only idempotent requests should
	// be retried blindly.
	ErrOutcomeUnknown = errors.New("outcome unknown")
)

// Bad returns an ErrBadInput error with a message.
func Bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadInput, fmt.Sprintf(format, args...))
}

// Status returns the HTTP status for err.
func Status(err error) int {
	switch {
	case errors.Is(err, ErrBadInput), errors.Is(err, raftstore.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, raftstore.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, raftstore.ErrStaleAttempt):
		return http.StatusConflict
	case errors.Is(err, ErrOutcomeUnknown):
		return http.StatusGatewayTimeout
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return 499 // the client went away; nginx's convention
	default:
		return http.StatusInternalServerError
	}
}

// Abort ends the request with err's status and a JSON error body.
func Abort(c *gin.Context, err error) {
	c.AbortWithStatusJSON(Status(err), client.ErrorBody{Error: err.Error()})
}
