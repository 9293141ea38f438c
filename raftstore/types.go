package raftstore

import (
	"math"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Job states: the farm's neutral names (see DESIGN.md, "States"). Each
// dialect maps them to its own names at its edge; Coalition's are the
// upper-case names of the previous release (coalition.coalitionState).
// The identifiers keep their historical spelling for now; their values are
// what the state, the log and snapshots hold.
const (
	StateWaiting  = "waiting"  // runnable
	StateBlocked  = "blocked"  // blocked by unfinished dependencies
	StateRunning  = "running"  // an attempt is running
	StateFinished = "finished" // last attempt exited 0
	StateFailed   = "failed"   // last attempt failed or timed out
	StateCanceled = "canceled" // canceled by a user; not runnable until reset or started
	StatePaused   = "paused"   // reported whenever Paused is set
)

// Worker states, neutral names as for jobs.
const (
	WorkerStateIdle = "idle" // speaks, runs nothing
	WorkerStateBusy = "busy" // runs an attempt
	WorkerStateLost = "lost" // went silent (or its attempt timed out)
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
	Environment     string // the environment as a dialect wrote it (see Env), or ""
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
	Finished        int32 // direct children finished (32-bit counters: see TestJobFitsItsSizeClass)
	Errors          int32 // direct children failed or canceled
	Working         int32 // direct children running
	Total           int32 // leaf descendants
	TotalFinished   int32
	TotalErrors     int32
	TotalWorking    int32
	Progress        float64
	ProgressPattern string
	HAffinity       uint64
	HPriority       retired // Coalition's packed h_priority, replaced by PriorityPath: keeps its toarray slot
	HPaused         bool
	HDepth          int32 // 32 bits: Job must stay within its size class (see TestJobFitsItsSizeClass)
	Dependencies    []int64
	Children        []int64 // ascending ids
	Attempt         int64   // current attempt id while running
	AttemptLog      int64   // bytes of the current attempt's output received
	LogTruncated    bool
	Created         int64
	// Project is the project the job belongs to; a child is in its
	// parent's. "" (jobs of older snapshots) reads as DefaultProject.
	Project string
	// EndTime is when the job (a group: its last job) became finished;
	// 0 while it is not. Finished root jobs may expire after an age.
	EndTime int64
	// The job's log lives in this coordinator's joblog store; the state
	// keeps only its tail (see joblog.Tail): bytes and lines (the open
	// one included), the open last line's length (0: it ended) and
	// stream. Jobs of older snapshots read 0 until their Logs convert.
	LogBytes      int32 // at most the log cap (64 MiB)
	LogLines      int32
	LogOpen       int32 // at most joblog.MaxLine: int32 keeps Job in a smaller size class
	LogOpenStream uint8
	// AttemptErrLog is the bytes of the current attempt's standard error
	// received, as AttemptLog is for its standard output.
	AttemptErrLog int32
	// Tries counts the job's starts since it was created (a reset does
	// not restart it): the Try of its latest run.
	Tries int32
	// ExitCode, Signal and Reason are those of the job's last ended run
	// (see Run); a reset keeps them. 0, 0, "" before its first end.
	ExitCode int32
	Signal   int32
	Reason   ReasonCode
	// TotalCanceled counts the canceled leaf descendants (also counted in
	// TotalErrors): a group whose errors are all cancels is canceled.
	TotalCanceled int32
	// Env is the job's environment, KEY -> VALUE (nil: none). It is
	// replaced whole, never changed in place: readers share it.
	Env map[string]string
	// Session is the id of the session the job was submitted to, ""
	// for none (see Session).
	Session string

	// ready is the job's place in the scheduler index, and holds its
	// PriorityPath even while it is not runnable; not replicated.
	ready readyKey
}

// PriorityLevels is the number of tree levels that the scheduler orders by
// one at a time; the priorities of deeper levels add up into the last.
const PriorityLevels = 7

// PriorityPath is a job's hierarchical priority: the priority of its root
// ancestor, of the next one down, ..., of the job itself, one level per
// entry; levels below PriorityLevels add into the last entry, and missing
// levels are 0. Runnable jobs run in descending lexicographic order of
// their paths (then by id): a child of a higher-priority group runs before
// any child of a lower one. For priorities in 0..255 this is the order of
// Coalition's h_priority (8 bits per level), which coalition derives from
// the path.
type PriorityPath [PriorityLevels]int32

// PriorityPath returns the job's hierarchical priority.
func (j *Job) PriorityPath() PriorityPath { return j.ready.hprio }

// below returns the path of a child at depth (1 for a root job) with
// priority prio under a parent whose path is p. The sum of deep levels
// saturates: a legacy tree deeper than MaxDepth cannot wrap it around.
func (p PriorityPath) below(depth, prio int) PriorityPath {
	i := min(max(depth, 1), PriorityLevels) - 1
	v := int64(p[i]) + int64(clampPriority(prio))
	p[i] = int32(min(max(v, math.MinInt32), math.MaxInt32))
	return p
}

// higher compares two paths for the scheduler: whether p is higher than
// b, or equal to it.
func (p PriorityPath) higher(b PriorityPath) (higher, equal bool) {
	for i := range p {
		if p[i] != b[i] {
			return p[i] > b[i], false
		}
	}
	return false, true
}

// IsGroup reports whether the job is a group node (never runnable).
func (j *Job) IsGroup() bool { return j.Command == "" }

// Reported is the state shown to users: paused whenever the job is paused.
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
	// LostAt is when the worker was marked lost for silence; 0
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
	Environment     string // the text a dialect wrote, "" when none (see Job)
	User            string
	ProgressPattern string
	Timeout         int64
	// Try is the job's 1-based try number of this attempt (Run.Try).
	Try int
	// Project is the job's project.
	Project string
	Env     map[string]string // the environment to run with (shared: read only)
	// Session is the job's session id, "" outside sessions.
	Session string
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

// clamp32 is v within int32: the job keeps its last exit code and signal in
// 32 bits (its run keeps them whole), so that Job fits a smaller size class.
func clamp32(v int) int32 { return int32(min(max(v, math.MinInt32), math.MaxInt32)) }

// retired is a field of a toarray record that a release no longer keeps:
// it holds its place in the array (the fields after it keep their
// positions), takes no memory, reads whatever an older snapshot or entry
// has there and drops it, and writes 0, as the field's zero value was.
type retired struct{}

// CodecEncodeSelf writes the zero the field had in every record written
// since it was retired.
func (retired) CodecEncodeSelf(e *codec.Encoder) { e.MustEncode(uint64(0)) }

// CodecDecodeSelf reads the value there and drops it.
func (*retired) CodecDecodeSelf(d *codec.Decoder) {
	var v any
	d.MustDecode(&v)
}

// ReasonCode is a run's Reason in one byte: a Job keeps its last run's so
// (see TestJobFitsItsSizeClass); String gives the name back.
type ReasonCode uint8

// reasonNames are the reasons by code, in the order of their codes.
var reasonNames = [...]string{ReasonExit, ReasonTimeout, ReasonCanceled, ReasonLost, ReasonFenced, ReasonDeleted}

// reasonCodeOf returns the code of reason r (one of the Reason* names).
func reasonCodeOf(r string) ReasonCode {
	for i, n := range reasonNames {
		if n == r {
			return ReasonCode(i)
		}
	}
	return 0
}

// String returns the reason's name: ReasonExit ("") ... ReasonDeleted.
func (c ReasonCode) String() string {
	if int(c) < len(reasonNames) {
		return reasonNames[c]
	}
	return ""
}
