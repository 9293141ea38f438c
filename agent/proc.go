package agent

// procIdent tells a process from a later one that got the same pid: its
// start time after boot, and the boot.
type procIdent struct {
	Start uint64 `json:"start,omitempty"`
	Boot  string `json:"boot,omitempty"`
}

// procState is what became of an identified process.
type procState int

const (
	// procOther: the pid belongs to another process now (or to another
	// boot, or cannot be read): leave it and its group alone.
	procOther procState = iota
	// procGone: no process has the pid. A group with that id, if any is
	// left, is still the job's: a group id is not reused while the
	// group has members.
	procGone
	// procDead: the process exited and is a zombie, so its pid and group
	// id are still reserved.
	procDead
	// procAlive: still running.
	procAlive
)
