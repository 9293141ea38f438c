// Package client is the Go client of a Croft coordinator cluster: the agent
// protocol, the cluster endpoints and the Coalition job API. It is used by
// the agent, the CLI and the tests, so the wire types live here once.
package client

import "time"

// Paths of the Croft agent protocol. Every call is a JSON POST.
const (
	PathRegister  = "/croft/v1/agent/register"
	PathHeartbeat = "/croft/v1/agent/heartbeat"
	PathPull      = "/croft/v1/agent/pull"
	PathReport    = "/croft/v1/agent/report"
)

// Resources is what an agent measures on its host.
type Resources struct {
	// CPU is the load of each core, in percent.
	CPU []float64 `json:"cpu"`
	// FreeMemory and TotalMemory are in MiB, as in Coalition.
	FreeMemory  int64 `json:"free_memory"`
	TotalMemory int64 `json:"total_memory"`
}

// RegisterRequest announces an agent. Affinity replaces the worker's
// affinity lines only when SetAffinity is true, so a wrangler's edit through
// the API is not undone by an agent restart without --affinity.
type RegisterRequest struct {
	Name        string    `json:"name"`
	Affinity    string    `json:"affinity"`
	SetAffinity bool      `json:"set_affinity"`
	Resources   Resources `json:"resources"`
	// Slots is how many attempts the agent runs at once; each slot is a
	// worker of its own (name, name/2, ...). 0: not said (an older agent).
	Slots int `json:"slots,omitempty"`
	// CPUs is the host's count of logical CPUs. 0: not said.
	CPUs int `json:"cpus,omitempty"`
	// Interpreters are the interpreters the agent found on its PATH or
	// was told of, at most MaxInterpreters.
	Interpreters []Interpreter `json:"interpreters,omitempty"`
}

// Bounds of RegisterRequest.Interpreters: an agent sends no more.
const (
	MaxInterpreters    = 64
	MaxInterpreterName = 64   // bytes
	MaxInterpreterPath = 4096 // bytes, as Linux's PATH_MAX
)

// Interpreter is a named way to run code on an agent's host: sh, bash,
// python3... and the absolute path of its executable there.
type Interpreter struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// HeartbeatRequest keeps an agent alive. It is not written to the Raft log.
type HeartbeatRequest struct {
	Name      string    `json:"name"`
	Resources Resources `json:"resources"`
	// Running lists the attempt ids the agent is running.
	Running []int64 `json:"running"`
}

// HeartbeatResponse tells the agent which of its attempts to kill.
type HeartbeatResponse struct {
	Kill []int64 `json:"kill"`
}

// PullRequest asks for work, waiting up to WaitMillis for some to appear.
type PullRequest struct {
	Name       string `json:"name"`
	WaitMillis int    `json:"wait_ms"`
}

// Assignment is one attempt of a job given to an agent.
type Assignment struct {
	AttemptID       int64  `json:"attempt_id"`
	JobID           int64  `json:"job_id"`
	Title           string `json:"title"`
	Command         string `json:"command"`
	Dir             string `json:"dir"`
	Environment     string `json:"environment"`
	User            string `json:"user"`
	ProgressPattern string `json:"progress_pattern"`
	// Timeout is in seconds; 0 means none.
	Timeout int64 `json:"timeout"`
	// Try is the job's 1-based try number of this attempt.
	Try int `json:"try"`
	// Project is the job's project.
	Project string `json:"project"`
	// Session is the id of the session the job was submitted in, "" for
	// a job outside sessions.
	Session string `json:"session,omitempty"`
}

// PullResponse carries an assignment, or none when the wait ran out.
type PullResponse struct {
	Assignment *Assignment `json:"assignment"`
}

// ReportRequest carries an attempt's output, progress and, when Done, its
// result. Reports are retried until acknowledged: LogOffset (the offset of
// Log in the attempt's output) makes a retry harmless.
type ReportRequest struct {
	Name      string `json:"name"`
	JobID     int64  `json:"job_id"`
	AttemptID int64  `json:"attempt_id"`
	LogOffset int64  `json:"log_offset"`
	// Log is raw output bytes (base64 in JSON), so output that is not
	// UTF-8 keeps its length and LogOffset stays exact.
	Log      []byte   `json:"log"`
	Progress *float64 `json:"progress,omitempty"`
	Done     bool     `json:"done"`
	ExitCode int      `json:"exit_code"`
	TimedOut bool     `json:"timed_out"`
	// Lost (with Done) reports that the agent lost the process without a
	// result, e.g. it restarted and found it gone: the job is requeued
	// without counting a run.
	Lost bool `json:"lost,omitempty"`
	// Next (with Done) asks for the worker's next job in the reply, as a
	// pull would give it, without waiting: one request per job instead of
	// two. An agent asks only when the worker will run what it gets.
	Next bool `json:"next,omitempty"`
	// Stderr is output of the attempt's standard error (base64), at byte
	// offset StderrOffset of that stream; Log is then standard output.
	// An agent that does not separate the streams sends only Log, which
	// reads as stdout. Both are de-duplicated by offset on retry.
	Stderr       []byte `json:"stderr,omitempty"`
	StderrOffset int64  `json:"stderr_offset,omitempty"`
	// Signal (with Done) is the signal that killed the process (ExitCode
	// is then 128+Signal); 0 if it exited. At most 255.
	Signal int `json:"signal"`
}

// ReportResponse acknowledges a report. A report from a stale attempt gets
// HTTP 409 with Kill set: the agent must kill the process and drop the
// attempt's remaining reports.
type ReportResponse struct {
	Accepted bool   `json:"accepted"`
	Kill     bool   `json:"kill"`
	Error    string `json:"error,omitempty"`
	// Assignment is the worker's next attempt when the report asked for it
	// (Next) and a job was runnable; the worker now runs it.
	Assignment *Assignment `json:"assignment,omitempty"`
	// LogFull says the job's log reached the farm's cap: what did not fit
	// was dropped, and the agent sends no more output for this attempt
	// (its result still goes). The job itself runs on.
	LogFull bool `json:"log_full,omitempty"`
}

// ClusterMember is one coordinator as seen in the Raft configuration.
type ClusterMember struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// Suffrage is "Voter" or "Nonvoter". A coordinator joins as a
	// non-voter and the leader promotes it once it has caught up.
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
	// CaughtUp is set in the leader's view only, for every member but the
	// leader: the member answered the leader's replication recently and
	// its log reaches the leader's commit index (within a few entries). A
	// non-voter is promoted after staying caught up for the
	// stabilization time; one that never is stays a non-voter.
	CaughtUp *bool `json:"caught_up,omitempty"`
	// LastContactMS is, in the leader's view, how many milliseconds ago
	// the member last answered an AppendEntries (heartbeats included);
	// absent when this node never heard from it at its current address.
	LastContactMS *int64 `json:"last_contact_ms,omitempty"`
	// LastLog is, in the leader's view, the member's last log index as of
	// that contact.
	LastLog uint64 `json:"last_log,omitempty"`
	// Reachable is set in the leader's view only: true for the leader
	// itself and for a member that answered within the last few
	// heartbeats (2 × the Raft heartbeat timeout, 1 s by default); false
	// for a member that is down or cut off, which `croft cluster status`
	// marks. Absent in a follower's view (it does not hear the others).
	Reachable *bool `json:"reachable,omitempty"`
}

// ClusterStatus is the reply of GET /cluster/status, served by the node asked.
type ClusterStatus struct {
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	LeaderID     string `json:"leader_id"`
	LeaderHTTP   string `json:"leader_http"`
	LeaderRaft   string `json:"leader_raft"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	// FSMIndex is the index of the last command the state machine has
	// applied (Raft's applied index runs ahead while entries are queued
	// to the FSM).
	FSMIndex    uint64          `json:"fsm_index"`
	CommitIndex uint64          `json:"commit_index"`
	LastIndex   uint64          `json:"last_index"`
	Members     []ClusterMember `json:"members"`
	// Digest is a hash of the replicated state, set with ?digest=1.
	Digest string `json:"digest,omitempty"`
	// Insecure says the coordinator runs without access control.
	Insecure bool `json:"insecure,omitempty"`

	// StorageError is this node's last failed write of its Raft state
	// (raft.db or a snapshot) with its cause, e.g. "... no space left on
	// device"; empty while its writes succeed. It is cleared by the next
	// successful write of the same kind. While it is set, a write this
	// node cannot serve answers 507 with the same cause.
	StorageError string `json:"storage_error"`
	// StorageErrorAt is when that write failed.
	StorageErrorAt *time.Time `json:"storage_error_at,omitempty"`
	// DiskFull says StorageError is a lack of space (ENOSPC or EDQUOT).
	DiskFull bool `json:"disk_full,omitempty"`
	// DiskFreeBytes is the space left for the coordinator on the file
	// system of its data directory, and DiskTotalBytes that file
	// system's size, as read every few seconds (0 when unknown).
	DiskFreeBytes  uint64 `json:"disk_free_bytes"`
	DiskTotalBytes uint64 `json:"disk_total_bytes"`
	// RaftDBBytes is the size of this node's raft.db (the Raft log and
	// its free pages, which bolt reuses but never gives back).
	RaftDBBytes int64 `json:"raft_db_bytes"`
	// RaftLogBytes is the payload of the entries in this node's Raft log
	// (what compaction by size bounds).
	RaftLogBytes int64 `json:"raft_log_bytes"`
}

// JoinRequest asks the cluster to add a coordinator. It joins as a
// non-voter; the leader promotes it to voter once it has caught up.
type JoinRequest struct {
	NodeID   string `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
}

// RemoveRequest asks the cluster to remove a coordinator.
type RemoveRequest struct {
	NodeID string `json:"node_id"`
}

// PathWhoami names the token of a request (GET, any valid token),
// answered by the leader: a coordinator asks it there to confirm a token
// before it serves a route of its own (its copy of the tokens may lag).
const PathWhoami = "/cluster/whoami"

// Whoami is the reply of GET /cluster/whoami: who the leader says the
// request's credential is.
type Whoami struct {
	// Name is the token's name ("insecure" or "trusted network" without
	// a token).
	Name string `json:"name"`
	// TokenID is the token's public id; "" without a token.
	TokenID string `json:"token_id,omitempty"`
}

// ErrorBody is the JSON body of every Croft error reply.
type ErrorBody struct {
	Error string `json:"error"`
}

// Paths of Croft's access API (admin tokens; projects are listed by
// readers).
const (
	PathTokens   = "/croft/v1/tokens"
	PathProjects = "/croft/v1/projects"
)

// TokenRequest asks for a new token (POST /croft/v1/tokens).
type TokenRequest struct {
	Name string `json:"name"`
	// Role is admin, user, read or agent.
	Role string `json:"role"`
	// Projects the token may act on; ["*"] for every one. Default:
	// ["default"]. Admin tokens act on every project.
	Projects []string `json:"projects,omitempty"`
	// Workers binds an agent token to worker names: a name (and its
	// slots, name/2...) or a prefix ending in '*'.
	Workers []string `json:"workers,omitempty"`
}

// Token describes a token. Secret is set only in the reply of its
// creation: it is shown once, and the coordinators keep only its hash.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Projects  []string  `json:"projects"`
	Workers   []string  `json:"workers,omitempty"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by,omitempty"`
	Secret    string    `json:"secret,omitempty"`
}

// Project describes a project.
type Project struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Jobs    int       `json:"jobs"`
}

// ProjectRequest asks for a new project (POST /croft/v1/projects).
type ProjectRequest struct {
	Name string `json:"name"`
}
