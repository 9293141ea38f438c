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
	// Tries counts the job's starts since it was created (a reset does
	// not restart it): the Try of its latest run.
	Tries int
	// ExitCode, Signal and Reason are those of the job's last ended run
	// (see Run); a reset keeps them. 0, 0, "" before its first end.
	ExitCode int
	Signal   int
	Reason   string

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

// Run is one attempt: a dispatch of a job to a worker, from its start to
// its end. Its id is the attempt id that fences every report. Coalition
// shows runs as its "events".
type Run struct {
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
	// Try is the job's 1-based try number: its Tries after this start.
	// It counts every start since the job was created (a reset does not
	// restart it), so a job's runs are numbered 1, 2, 3... without a
	// repeat. 0: a run recorded before try numbers existed.
	Try int
	// End is when the run ended (unix ns); 0 while it runs.
	End int64
	// ExitCode is the process's exit code (128+N when signal N killed
	// it), or NoExitCode when no exit was reported: the run was lost,
	// canceled, fenced, deleted or timed out by the coordinator.
	ExitCode int
	// Signal is the signal that killed the process; 0 if it exited.
	Signal int
	// Reason says why the run ended: ReasonExit (the process ended by
	// itself, see ExitCode and Signal) or one of the other Reason*.
	Reason string
	// Progress is the job's progress when the run ended: 1 for a run
	// that exited 0 by itself, whatever it reported last.
	Progress float64
}

// Reasons a run ended (Run.Reason), in the farm's neutral words.
const (
	ReasonExit     = ""         // the process ended by itself: see ExitCode and Signal
	ReasonTimeout  = "timeout"  // it ran past the job's timeout
	ReasonCanceled = "canceled" // a user stopped it: reset, pause, forced state, worker stopped, command cleared
	ReasonLost     = "lost"     // the worker went silent, or the agent lost the process
	ReasonFenced   = "fenced"   // the worker asked for new work while it ran: it was replaced
	ReasonDeleted  = "deleted"  // its job or its worker was deleted
)

// NoExitCode is a run's ExitCode when the process's end was not reported.
const NoExitCode = -1

// MaxSignal bounds Report.Signal: signal numbers are small (Linux has 64).
const MaxSignal = 255

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
	// Try is the job's 1-based try number of this attempt (Run.Try).
	Try int
	// Project is the job's project.
	Project string
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
