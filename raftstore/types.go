package raftstore

// Job states, with Coalition's names.
const (
	StateWaiting  = "WAITING"  // runnable
	StatePending  = "PENDING"  // blocked by unfinished dependencies
	StateWorking  = "WORKING"  // an attempt is running
	StateFinished = "FINISHED" // last attempt exited 0
	StateError    = "ERROR"    // last attempt failed or timed out
	StatePaused   = "PAUSED"   // reported whenever Paused is set
)

// Worker states.
const (
	WorkerWaiting = "WAITING"
	WorkerWorking = "WORKING"
	WorkerTimeout = "TIMEOUT"
)

// Job is one node of the job tree: a leaf with a command, or a group (empty
// command) whose state and counters derive from its children. Times are unix
// nanoseconds stamped by the leader.
type Job struct {
	// Snapshots encode it as an array, not a map of field names: a third
	// of the size and faster. Fields are appended at the end only; the
	// snapshot version changes when that is not enough.
	_struct struct{} `codec:",toarray"`

	ID              int64
	Parent          int64
	Title           string
	Command         string
	Dir             string
	Environment     string
	State           string // stored state; see Reported for what users see
	Paused          bool
	Worker          string
	StartTime       int64
	Duration        int64
	PingTime        int64
	RunDone         int
	Retry           int
	Timeout         int64 // seconds, 0 = none
	Priority        int
	Affinity        string
	AffinityBits    uint64
	User            string
	URL             string
	Finished        int // direct children FINISHED
	Errors          int // direct children ERROR
	Working         int // direct children WORKING
	Total           int // leaf descendants
	TotalFinished   int
	TotalErrors     int
	TotalWorking    int
	Progress        float64
	ProgressPattern string
	HAffinity       uint64
	HPriority       uint64
	HPaused         bool
	HDepth          int
	Dependencies    []int64
	Children        []int64 // ascending ids
	Attempt         int64   // current attempt id while WORKING
	AttemptLog      int64   // bytes of the current attempt's output received
	LogTruncated    bool
	Created         int64
	// Project is the project the job belongs to; a child is in its
	// parent's. "" (jobs of older snapshots) reads as DefaultProject.
	Project string
	// EndTime is when the job (a group: its last job) became FINISHED;
	// 0 while it is not. Finished root jobs may expire after an age.
	EndTime int64
	// The job's log lives in this coordinator's joblog store; the state
	// keeps only its tail (see joblog.Tail): bytes and lines (the open
	// one included), the open last line's length (0: it ended) and
	// stream. Jobs of older snapshots read 0 until their Logs convert.
	LogBytes      int64
	LogLines      int64
	LogOpen       int64
	LogOpenStream uint8
	// AttemptErrLog is the bytes of the current attempt's standard error
	// received, as AttemptLog is for its standard output.
	AttemptErrLog int64

	ready readyKey // position in the scheduler index; not replicated
}

// IsGroup reports whether the job is a group node (never runnable).
func (j *Job) IsGroup() bool { return j.Command == "" }

// Reported is the state shown to users: PAUSED whenever the job is paused.
func (j *Job) Reported() string {
	if j.Paused {
		return StatePaused
	}
	return j.State
}

// Worker is a render node (a Croft agent slot or a Coalition worker).
// Load and memory figures are not here: heartbeats stay in leader memory.
type Worker struct {
	// Snapshots encode it as an array, not a map of field names: a third
	// of the size and faster. Fields are appended at the end only; the
	// snapshot version changes when that is not enough.
	_struct struct{} `codec:",toarray"`

	Name         string
	IP           string
	Affinity     string // newline-separated lines, in priority order
	State        string
	Active       bool
	Finished     int
	Error        int
	LastJob      int64
	CurrentEvent int64 // the running attempt id, 0 when idle
	StartTime    int64
	// Projects restricts the worker to these projects' jobs; nil serves
	// the whole farm. It comes from the token the worker registered with.
	Projects []string
	// LostAt is when the worker was marked lost (TIMEOUT for silence); 0
	// while it speaks. Workers lost for long are forgotten (WorkerExpire).
	LostAt int64

	lines []uint64 // affinity masks per line; derived, not replicated
}

// Event is one attempt: a dispatch of a job to a worker. Its id is the
// attempt id that fences every report.
type Event struct {
	// Snapshots encode it as an array, not a map of field names: a third
	// of the size and faster. Fields are appended at the end only; the
	// snapshot version changes when that is not enough.
	_struct struct{} `codec:",toarray"`

	ID       int64
	Worker   string
	JobID    int64
	JobTitle string
	State    string
	Start    int64
	Duration int64
	// Project is the job's project, so reads can be filtered by it.
	Project string
}

// Assignment is what a worker receives when it picks a job.
type Assignment struct {
	AttemptID       int64
	JobID           int64
	Title           string
	Command         string
	Dir             string
	Environment     string
	User            string
	ProgressPattern string
	Timeout         int64
}

// ReportResult is the result of an accepted Report.
type ReportResult struct {
	// Duplicate is true when the report had been applied already (a retry).
	Duplicate bool
	// Done is true when the attempt has ended (by this or an earlier report).
	Done bool
}

// ReportPickResult is the result of a ReportPick: the report's, and the
// worker's next attempt (nil when nothing is runnable for it).
type ReportPickResult struct {
	Report ReportResult
	Next   *Assignment
}
