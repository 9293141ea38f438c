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
	// ErrUnknownType means an entry's message type is not one this
	// release knows: a newer release wrote it.
	ErrUnknownType = errors.New("unknown message type")
	// ErrHalted means the FSM met an entry of an unknown type that it may
	// not skip, and applies nothing more (see FSM.HaltErr).
	ErrHalted = errors.New("state machine halted")
	// ErrTooLarge means a field, list or request is over a documented
	// limit (see limits.go).
	ErrTooLarge = errors.New("too large")
	// ErrConflict means a compare-and-set write (IfRevision) found the
	// record at another revision: someone wrote it meanwhile. Read it
	// again and retry.
	ErrConflict = errors.New("revision conflict")
	// ErrNoHost means no host offers a context session's interpreter to
	// its project (at open, or at a kernel change): an ErrInvalid, which a
	// dialect may answer in its own words (Jupyter: 501, no such kernel).
	ErrNoHost = fmt.Errorf("%w: no host offers it", ErrInvalid)
)

// notFound wraps ErrNotFound with the missing thing's name.
func notFound(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, args...))
}

// invalid wraps ErrInvalid with a reason.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// conflict wraps ErrConflict with the record and both revisions.
func conflict(what, id string, have, want int64) error {
	return fmt.Errorf("%w: %s %s is at revision %d, not %d", ErrConflict, what, truncate(id, 40), have, want)
}

// stale wraps ErrStaleAttempt with a reason.
func stale(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrStaleAttempt, fmt.Sprintf(format, args...))
}

// HaltError is why an FSM halted: the entry at Index has a message type
// this release does not know and may not skip (IgnoreUnknownTypeFlag is
// not set), so applying on would diverge from the newer replicas. It
// matches ErrHalted and ErrUnknownType.
type HaltError struct {
	Index uint64
	Type  MessageType
	// InBatch is true when the type was that of a command inside a
	// MsgBatch entry.
	InBatch bool
	// Release, when not 0, is the release a SetRelease entry asks for,
	// newer than this code's (the type itself is known).
	Release int
}

func (e *HaltError) Error() string {
	where := ""
	if e.InBatch {
		where = " (in a batch)"
	}
	if e.Release != 0 {
		return fmt.Sprintf("%v: entry %d%s switches to the rules of release %d, this coordinator has release %d's: it was written by a newer release", ErrHalted, e.Index, where, e.Release, Release)
	}
	return fmt.Sprintf("%v: entry %d has message type %d%s, which this release does not know and may not skip: it was written by a newer release", ErrHalted, e.Index, e.Type, where)
}

// Unwrap lets errors.Is match ErrHalted and, for an unknown type,
// ErrUnknownType.
func (e *HaltError) Unwrap() []error {
	if e.Release != 0 {
		return []error{ErrHalted}
	}
	return []error{ErrHalted, ErrUnknownType}
}
