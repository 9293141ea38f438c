package cluster

import "time"

// Status is a node's local view of the cluster. The coordinator serves it
// as GET /cluster/status (client.ClusterStatus: the same fields).
type Status struct {
	NodeID       string
	State        string // Raft's: Leader, Follower, Candidate, Shutdown
	LeaderID     string
	LeaderHTTP   string
	LeaderRaft   string
	Term         uint64
	AppliedIndex uint64
	// FSMIndex is the index of the last command the state machine has
	// applied (Raft's applied index runs ahead while entries are queued
	// to the FSM).
	FSMIndex    uint64
	CommitIndex uint64
	LastIndex   uint64
	Members     []Member

	// StorageError is this node's last failed write of its Raft state
	// with its cause; empty while its writes succeed. StorageErrorAt is
	// when it failed, DiskFull whether it is a lack of space.
	StorageError   string
	StorageErrorAt *time.Time
	DiskFull       bool
	// DiskFreeBytes and DiskTotalBytes are the data directory's file
	// system, as last read (0 when unknown).
	DiskFreeBytes  uint64
	DiskTotalBytes uint64
	// RaftDBBytes is raft.db's size; RaftLogBytes the payload of the
	// entries in the log (what compaction by size bounds).
	RaftDBBytes  int64
	RaftLogBytes int64
}

// Member is one coordinator of the Raft configuration.
type Member struct {
	ID       string
	RaftAddr string
	HTTPAddr string
	// Suffrage is "Voter" or "Nonvoter".
	Suffrage string
	Leader   bool
	// CaughtUp, LastContactMS and LastLog are set in the leader's view
	// only, for the other members: whether the member is caught up (see
	// promote.go), how many milliseconds ago it last answered an
	// AppendEntries (nil if never at its current address), and its last
	// log index as of then.
	CaughtUp      *bool
	LastContactMS *int64
	LastLog       uint64
	// Reachable is set in the leader's view only: true for the leader
	// itself, and for another member whose last answer is at most a few
	// heartbeats old (Node.reachableWithin). A dead member is false.
	Reachable *bool
}
