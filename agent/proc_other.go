//go:build !linux

package agent

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// waitExited is not available here: the shell is reaped without first
// killing what its job left behind in the group.
func waitExited(pid int) error { return errors.ErrUnsupported }

// killSession cannot find a session's processes here: what a supervisor
// killed from outside left behind is not cleaned up.
func killSession(sid int) {}

// identify cannot tell processes apart here: a pid is all there is.
func identify(pid int) (procIdent, error) { return procIdent{}, nil }

// state can only tell whether some process has the pid; one that has not
// is never signalled as a group.
func (procIdent) state(pid int) procState {
	if pid > 0 && syscall.Kill(pid, 0) == nil {
		return procAlive
	}
	return procOther
}

// leaseClock is the wall clock here.
func leaseClock() int64 { return time.Now().UnixNano() }

// datasync flushes f to disk.
func datasync(f *os.File) error { return f.Sync() }

// soleOpener cannot tell here: the file is taken as shared.
func soleOpener(f *os.File) bool { return false }
