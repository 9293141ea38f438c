// Package apierr maps errors to HTTP status codes at the edge. The state
// machine and the coordinator return sentinel errors; only this package
// decides which status a client sees, so every dialect answers alike.
package apierr

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	// ErrUnauthenticated marks a request without a valid credential (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden marks a request whose credential lacks the right: the
	// role, the project or the worker name (403).
	ErrForbidden = errors.New("forbidden")
	// ErrInsufficientStorage marks a write the coordinators could not
	// store: a disk is full (507). Nothing was acknowledged; retry once
	// space is back.
	ErrInsufficientStorage = errors.New("insufficient storage")
	// ErrConflict marks a request the current state refuses to carry out,
	// e.g. a snapshot asked for while one is taken (409).
	ErrConflict = errors.New("conflict")
	// ErrBadGateway marks a request this coordinator forwarded to the
	// leader that was delivered but got no reply: its outcome is unknown
	// (502). The Go client retries it.
	ErrBadGateway = errors.New("bad gateway")
)

// Forbidden returns an ErrForbidden error with a message.
func Forbidden(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrForbidden, fmt.Sprintf(format, args...))
}

// NotFound returns a raftstore.ErrNotFound error (404) with a message.
func NotFound(format string, args ...any) error {
	return fmt.Errorf("%w: %s", raftstore.ErrNotFound, fmt.Sprintf(format, args...))
}

// Unauthenticated returns an ErrUnauthenticated error with a message.
func Unauthenticated(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnauthenticated, fmt.Sprintf(format, args...))
}

// Bad returns an ErrBadInput error with a message.
func Bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadInput, fmt.Sprintf(format, args...))
}

// Truncate shortens s to n bytes and "..." for an error message: a
// client's input is quoted back, not repeated whole.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Status returns the HTTP status for err.
func Status(err error) int {
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, raftstore.ErrTooLarge), isMaxBytes(err):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrInsufficientStorage):
		return http.StatusInsufficientStorage
	case errors.Is(err, ErrBadInput), errors.Is(err, raftstore.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, raftstore.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, raftstore.ErrStaleAttempt), errors.Is(err, ErrConflict),
		errors.Is(err, raftstore.ErrTemplateInUse), errors.Is(err, raftstore.ErrProtected), errors.Is(err, raftstore.ErrExecutionActive),
		errors.Is(err, raftstore.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrBadGateway):
		return http.StatusBadGateway
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

// ReadBody reads a request body of at most limit bytes. A larger one (by
// its Content-Length, or once limit bytes were read) is an error with
// status 413; nothing more of it is read.
func ReadBody(c *gin.Context, limit int64) ([]byte, error) {
	if c.Request.ContentLength > limit {
		return nil, fmt.Errorf("%w: the body is %d bytes, the limit is %d", raftstore.ErrTooLarge, c.Request.ContentLength, limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if isMaxBytes(err) {
		return nil, fmt.Errorf("%w: the body is over the limit of %d bytes", raftstore.ErrTooLarge, limit)
	}
	if err != nil {
		return nil, Bad("reading the body: %v", err)
	}
	return body, nil
}

// isMaxBytes reports whether err is http.MaxBytesReader's "body too large".
func isMaxBytes(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// Abort ends the request with err's status and a JSON error body. A 401
// says how to authenticate.
func Abort(c *gin.Context, err error) {
	status := Status(err)
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="croft"`)
	}
	c.AbortWithStatusJSON(status, client.ErrorBody{Error: err.Error()})
}
