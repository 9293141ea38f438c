package raftstore

import (
	"errors"
	"fmt"
)

// Sentinel errors returned by Apply. The API edge maps them to HTTP status
// codes with errors.Is; the FSM never chooses a status itself.
var (
	// ErrBadEntry means a Raft entry could not be decoded.
	ErrBadEntry = errors.New("bad raft entry")
	// ErrNotFound means a job, worker or attempt id does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid means the command is well-formed but breaks a rule of the
	// model (a parent that is not a group, a dependency cycle, ...).
	ErrInvalid = errors.New("invalid request")
	// ErrInternal means applying a command hit a bug (a recovered panic).
	ErrInternal = errors.New("internal error")
	// ErrStaleAttempt means a report came from an attempt that is no longer
	// the job's current one: it is refused and the agent must kill it.
	ErrStaleAttempt = errors.New("stale attempt")
	// ErrTooLarge means a field, list or request is over a documented
	// limit (see limits.go).
	ErrTooLarge = errors.New("too large")
)

// notFound wraps ErrNotFound with the missing thing's name.
func notFound(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, args...))
}

// invalid wraps ErrInvalid with a reason.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// stale wraps ErrStaleAttempt with a reason.
func stale(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrStaleAttempt, fmt.Sprintf(format, args...))
}
