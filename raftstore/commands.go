package raftstore

import (
	"bytes"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// MessageType is the first byte of every Raft entry. New types are appended
// at the end of the list; a number is never reused or renumbered, because old
// log entries and snapshots keep their numbers forever.
type MessageType uint8

// The Raft message types. Append only.
const (
	MsgBatch           MessageType = 1  // several commands in one entry (group commit)
	MsgNodeMeta        MessageType = 2  // a coordinator's HTTP address
	MsgJobCreate       MessageType = 3  // create one or many jobs
	MsgJobEdit         MessageType = 4  // edit job attributes (Coalition POST /api/jobs)
	MsgJobDelete       MessageType = 5  // recursive delete
	MsgJobAction       MessageType = 6  // reset, reseterror, start, pause, cancel
	MsgJobSetDeps      MessageType = 7  // replace a job's dependencies
	MsgAffinitySet     MessageType = 8  // name affinity ids
	MsgWorkerRegister  MessageType = 9  // a worker announces itself
	MsgWorkerEdit      MessageType = 10 // edit worker attributes
	MsgWorkerDelete    MessageType = 11 // forget workers
	MsgWorkerAction    MessageType = 12 // start, stop
	MsgPick            MessageType = 13 // a worker takes the best runnable job
	MsgReport          MessageType = 14 // log, progress and result of an attempt
	MsgJobTimeout      MessageType = 15 // the leader saw attempts run past their timeout
	MsgWorkerLost      MessageType = 16 // the leader saw workers go silent
	MsgNodeRemove      MessageType = 17 // forget a coordinator's metadata
	MsgReportPick      MessageType = 18 // an attempt's result, then the worker's next job
	MsgTokenCreate     MessageType = 19 // add an access token (its hash)
	MsgTokenRevoke     MessageType = 20 // remove an access token
	MsgProjectCreate   MessageType = 21 // add a project
	MsgProjectDelete   MessageType = 22 // remove an empty project
	MsgEventPrune      MessageType = 23 // forget old attempt records (retention)
	MsgWorkerExpire    MessageType = 24 // forget workers lost long ago
	MsgJobExpire       MessageType = 25 // delete root jobs finished long ago
	MsgSetRelease      MessageType = 26 // switch apply to a newer release's rules
	MsgInterpreterSet  MessageType = 27 // configure a named interpreter
	MsgInterpreterDel  MessageType = 28 // remove a configured interpreter
	MsgSessionOpen     MessageType = 29 // open a session (sessions.go)
	MsgSessionUpdate   MessageType = 30 // change a session's name, labels, doc, timeout
	MsgSessionClose    MessageType = 31 // close a session, cancel its jobs
	MsgSessionDelete   MessageType = 32 // forget a closed session and its jobs
	MsgSessionSubmit   MessageType = 33 // submit code: a job in a session
	MsgSessionStart    MessageType = 34 // start a group session's jobs
	MsgSessionExpire   MessageType = 35 // the leader saw sessions inactive past their timeout
	MsgTemplateCreate  MessageType = 36 // add a template to a project
	MsgTemplateUpdate  MessageType = 37 // change a template
	MsgTemplateDelete  MessageType = 38 // remove a template without executions
	MsgExecute         MessageType = 39 // run a template: an execution and its job
	MsgExecutionCancel MessageType = 40 // cancel an execution's job
	MsgExecutionDelete MessageType = 41 // forget an ended execution and its job
	MsgDocsWrite       MessageType = 42 // write sessions' and templates' docs together, guarded by revision
)

// IgnoreUnknownTypeFlag, set in a message type, tells a replica that does
// not know the type (an older release, during a rolling upgrade) that it
// may skip the entry: Apply returns nil, the state is unchanged, the
// applied index advances. A replica that meets an unknown type without the
// flag halts instead (see FSM.HaltErr): skipping a command whose effect it
// cannot reproduce would silently diverge it from the newer replicas.
//
// Rule for a new type (as Nomad's and Consul's): number it 26, 27, ... as
// usual, and add the flag (26|IgnoreUnknownTypeFlag) only when a replica
// that skips it still holds, for every other entry and every read of the
// rest of the state, exactly what a replica that applied it holds:
// advisory or bookkeeping records that nothing else in the FSM reads (an
// audit note, a statistic, a hint for the leader). A type that creates or
// changes jobs, workers, attempts, logs, tokens, projects or ids, or that
// later entries may refer to, never carries the flag: an older replica
// must stop until it is upgraded. The low seven bits stay unique across
// flagged and unflagged types.
const IgnoreUnknownTypeFlag MessageType = 128

// Ignorable reports whether an entry of type t that this release does not
// know may be skipped (IgnoreUnknownTypeFlag is set).
func (t MessageType) Ignorable() bool { return t&IgnoreUnknownTypeFlag != 0 }

// Command is one state change. The leader fills in every id-free, time-like
// field (Now) before the command is proposed, so Apply stays deterministic.
type Command interface {
	// Type is the message type written as the entry's first byte.
	Type() MessageType
}

// NodeMeta records the HTTP address of a coordinator, so that any member can
// forward requests to the leader's API.
type NodeMeta struct {
	ID       string
	RaftAddr string
	HTTPAddr string
}

// NodeRemove forgets the metadata of a coordinator removed from the cluster.
type NodeRemove struct {
	ID string
}

// JobSpec describes a new job. Zero values are not defaults: the API edge
// fills Coalition's defaults (timeout 1000, priority 1000, retry 10, ...).
type JobSpec struct {
	// Encoded as an array: a bulk create carries up to a million of these,
	// and field names would triple the entry. Append fields at the end only
	// (an older entry decodes with the new trailing fields left zero).
	_struct struct{} `codec:",toarray"`

	Parent int64
	// ParentRef, when not 0, makes the job a child of the ParentRef-th job
	// (1-based) of the same JobCreate, so a group and its children are
	// created in one entry.
	ParentRef       int
	Title           string
	Command         string
	Dir             string
	Environment     string
	Paused          bool
	Timeout         int64 // seconds, 0 = none
	Priority        int   // MinPriority..MaxPriority, higher runs first
	Retry           int
	Affinity        string
	User            string
	URL             string
	ProgressPattern string
	Dependencies    []int64
	// Project of the job; "" means its parent's (DefaultProject for a
	// root job).
	Project string
	// Env is the job's environment. Environment, when set, is the text a
	// dialect wrote it as, kept to show it back unchanged; an entry with
	// the text and no map (the previous release's) gets the map parsed
	// from the text (EnvFromText).
	Env map[string]string
}

// JobCreate creates jobs in order; the result is their ids ([]int64). Either
// every job is created or none is.
type JobCreate struct {
	Now  int64 // unix nanoseconds, stamped by the leader
	Jobs []JobSpec
	// MaxProjectJobs, when not 0, refuses the create if a project would
	// hold more jobs than this: the leader's configured quota, stamped so
	// that every replica decides alike.
	MaxProjectJobs int
}

// JobPatch holds the attributes to change on a job; nil means unchanged.
type JobPatch struct {
	Parent          *int64
	Title           *string
	Command         *string
	Dir             *string
	Environment     *string
	State           *string
	Paused          *bool
	Timeout         *int64
	Priority        *int
	Retry           *int
	Affinity        *string
	User            *string
	URL             *string
	ProgressPattern *string
	Dependencies    *[]int64
	// Env replaces the environment (an empty map clears it: a nil one
	// encodes as no patch at all). Set without Environment, it clears
	// the text (which no longer describes it); Environment without Env
	// (an entry of the previous release) sets the map parsed from it.
	// Omitted when nil: an edit without it encodes as before.
	Env *map[string]string `codec:",omitempty"`
}

// JobEditItem is one job's patch.
type JobEditItem struct {
	ID    int64
	Patch JobPatch
}

// JobEdit applies patches to jobs, all or none.
type JobEdit struct {
	Now   int64
	Edits []JobEditItem
}

// JobDelete deletes jobs and their subtrees.
type JobDelete struct {
	Now int64
	IDs []int64
}

// Job actions understood by JobAction.
const (
	ActionReset      = "reset"
	ActionResetError = "reseterror"
	ActionStart      = "start"
	ActionPause      = "pause"
	// ActionCancel cancels the leaves of a subtree that are not finished:
	// a running attempt ends (its agent is told to kill it), and the job
	// is not run again until it is reset or started.
	ActionCancel = "cancel"
)

// JobAction runs one of the Action* verbs on jobs.
type JobAction struct {
	Now    int64
	Action string
	IDs    []int64
}

// JobSetDeps replaces the dependencies of a job and re-evaluates its state.
type JobSetDeps struct {
	Now  int64
	ID   int64
	Deps []int64
}

// AffinitySet names affinity ids (1..63). An empty name frees the id.
type AffinitySet struct {
	Names map[int]string
}

// WorkerRegister creates a worker if it is unknown and updates its address,
// and its affinity when SetAffinity is true.
type WorkerRegister struct {
	Now         int64
	Name        string
	IP          string
	SetAffinity bool
	Affinity    string
	// Projects restricts the worker to these projects (nil: the whole
	// farm); it is set on every registration, from the agent's token.
	Projects []string
	// Host, when set (an agent's registration), makes the worker a slot
	// of this host and records what the agent advertised of it. nil (a
	// heartbeat's re-registration, an entry older than hosts) leaves the
	// worker's host as it is. The host takes the worker's Projects.
	Host *HostInfo
}

// HostInfo is what an agent advertises of its host when a slot registers.
type HostInfo struct {
	// Name is the host's (the agent's) name: its first slot's worker
	// name, without a slot suffix.
	Name string
	// Slots is how many slots the agent runs (0: not said).
	Slots int
	// CPUs is the count of logical CPUs (0: not said).
	CPUs int
	// TotalMemory is in MiB (0: not measured).
	TotalMemory int64
	// Interpreters replace the host's advertised interpreters.
	Interpreters []HostInterpreter
}

// WorkerPatch holds the worker attributes to change; nil means unchanged.
type WorkerPatch struct {
	Affinity *string
	Active   *bool
}

// WorkerEditItem is one worker's patch.
type WorkerEditItem struct {
	Name  string
	Patch WorkerPatch
}

// WorkerEdit applies patches to workers, all or none.
type WorkerEdit struct {
	Now   int64
	Edits []WorkerEditItem
}

// WorkerDelete forgets workers; their running jobs go back to WAITING.
type WorkerDelete struct {
	Now   int64
	Names []string
}

// Worker actions understood by WorkerAction.
const (
	ActionWorkerStart = "start"
	ActionWorkerStop  = "stop"
	// ActionWorkerDrain disables a worker without taking back what it
	// runs: its job finishes there, and it takes no new one (release 2).
	ActionWorkerDrain = "drain"
)

// WorkerAction starts or stops workers.
type WorkerAction struct {
	Now    int64
	Action string
	Names  []string
}

// Pick gives the best runnable job to a worker. The result is a *Assignment,
// nil when there is nothing for this worker.
type Pick struct {
	Now    int64
	Worker string
	IP     string
	// Projects restricts a worker the pick creates (a Coalition worker's
	// first call) to these projects; an existing worker keeps its own.
	Projects []string
}

// Report carries what an attempt produced. AttemptID 0 means "the attempt
// this worker is running for JobID" (the Coalition worker protocol has no
// attempt ids). LogOffset is the byte offset of Log within the attempt's
// output, so a retried report is recognised and not appended twice; -1 means
// "append, no de-duplication" (Coalition workers).
type Report struct {
	Now       int64
	Worker    string
	JobID     int64
	AttemptID int64
	LogOffset int64
	Log       []byte
	Progress  *float64
	Done      bool
	ExitCode  int
	TimedOut  bool
	// Lost (with Done) says the agent lost the process without a result
	// (it restarted and found it gone): the job is requeued, not failed.
	Lost bool
	// LogCap, when not 0, is the most output bytes the job's log may
	// hold (the leader's configured quota, stamped so that every replica
	// cuts at the same byte); 0 means MaxLogBytes.
	LogCap int64
	// Stderr is output of the attempt's standard error, at byte offset
	// StderrOffset of that stream (de-duplicated as Log is). Log is
	// standard output, or untyped output (older agents, Coalition
	// workers). Stderr is applied after Log.
	//
	// The fields added since the first release are left out of an entry
	// when zero (omitempty): most reports carry none of them, and a
	// report is the most frequent entry, so it stays as small and as
	// quick to encode as before.
	Stderr       []byte `codec:",omitempty"`
	StderrOffset int64  `codec:",omitempty"`
	// Signal (with Done) is the signal that killed the process, 0 if it
	// exited (ExitCode is then 128+Signal); 0..MaxSignal.
	Signal int `codec:",omitempty"`
}

// ReportPick is an attempt's final report (Done) that also takes the
// worker's next job: the Report, then, if it was accepted, a Pick for the
// same worker at the same time. An agent that wants more work saves a
// request and an entry per job. The result is a ReportPickResult; a
// refused report picks nothing.
type ReportPick struct {
	Report Report
	// IP is the worker's address, as in Pick.
	IP string
}

// JobTimeout ends attempts that ran past their job's timeout. The FSM checks
// the condition again with Now, so a late entry never fails a job that is fine.
type JobTimeout struct {
	Now      int64
	Attempts []int64
}

// WorkerLost marks silent workers TIMEOUT; their running jobs go back to
// WAITING without counting as errors.
type WorkerLost struct {
	Now   int64
	Names []string
}

// EventPrune forgets attempt records (events) that started before Before,
// and the oldest ones past the Keep newest (0: no count limit). The record
// of a running attempt is always kept: it fences that attempt's reports.
type EventPrune struct {
	Now    int64
	Before int64
	Keep   int
}

// WorkerExpire forgets workers that were marked lost before Before and
// have not spoken since. The FSM checks the condition again, so a worker
// that came back meanwhile stays.
type WorkerExpire struct {
	Now    int64
	Before int64
	Names  []string
}

// JobExpire deletes the named root jobs (with their subtrees) that have
// been FINISHED since before Before. The FSM checks the condition again, so
// a job reset or restarted meanwhile stays.
type JobExpire struct {
	Now    int64
	Before int64
	IDs    []int64
}

// SetRelease switches the state to the apply rules of a release (see
// Release): entries before it apply as the release that wrote them did,
// entries after it by the new rules, on every replica alike. A leader
// running a newer release proposes it once it leads. A replica that does
// not know the release halts (FSM.HaltErr) rather than apply rules it does
// not have; a lower release than the state's changes nothing.
type SetRelease struct {
	Release int
}

// InterpreterSet configures a named interpreter, or replaces its
// template. The result is nil.
type InterpreterSet struct {
	Now      int64
	Name     string
	Template string
	// Uses names the detected interpreter whose path {interpreter}
	// stands for, and which hosts must offer; "" means Name.
	Uses string
}

// InterpreterDelete removes a configured interpreter (hosts that detect
// one of that name still offer it, with the default template).
type InterpreterDelete struct {
	Now  int64
	Name string
}

// Batch carries several encoded commands in one Raft entry. Its result is a
// []any with one result (or error) per command, in order.
type Batch struct {
	Entries [][]byte
}

func (NodeMeta) Type() MessageType       { return MsgNodeMeta }
func (NodeRemove) Type() MessageType     { return MsgNodeRemove }
func (JobCreate) Type() MessageType      { return MsgJobCreate }
func (JobEdit) Type() MessageType        { return MsgJobEdit }
func (JobDelete) Type() MessageType      { return MsgJobDelete }
func (JobAction) Type() MessageType      { return MsgJobAction }
func (JobSetDeps) Type() MessageType     { return MsgJobSetDeps }
func (AffinitySet) Type() MessageType    { return MsgAffinitySet }
func (WorkerRegister) Type() MessageType { return MsgWorkerRegister }
func (WorkerEdit) Type() MessageType     { return MsgWorkerEdit }
func (WorkerDelete) Type() MessageType   { return MsgWorkerDelete }
func (WorkerAction) Type() MessageType   { return MsgWorkerAction }
func (Pick) Type() MessageType           { return MsgPick }
func (Report) Type() MessageType         { return MsgReport }
func (JobTimeout) Type() MessageType     { return MsgJobTimeout }
func (WorkerLost) Type() MessageType     { return MsgWorkerLost }
func (ReportPick) Type() MessageType     { return MsgReportPick }
func (Batch) Type() MessageType          { return MsgBatch }
func (EventPrune) Type() MessageType     { return MsgEventPrune }
func (WorkerExpire) Type() MessageType   { return MsgWorkerExpire }
func (JobExpire) Type() MessageType      { return MsgJobExpire }
func (SetRelease) Type() MessageType     { return MsgSetRelease }

func (InterpreterSet) Type() MessageType    { return MsgInterpreterSet }
func (InterpreterDelete) Type() MessageType { return MsgInterpreterDel }

// msgpackHandle is shared by entries and snapshots. Canonical map ordering
// keeps encodings of equal values byte-identical across nodes.
var msgpackHandle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.Canonical = true
	h.RawToString = true
	h.WriteExt = true
	// A list is made at its announced length up to this many items, then
	// grown as items arrive: a 100,000-job create is made in two steps,
	// not ten copies (each a write-barriered copy of pointerful structs
	// while the collector runs), and a forged length costs at most this
	// many zeroed items before the entry fails to decode.
	h.MaxInitLen = 1 << 16
	return h
}()

// Encode frames a command as a Raft entry: the type byte, then msgpack.
func Encode(cmd Command) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(byte(cmd.Type()))
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(cmd); err != nil {
		return nil, fmt.Errorf("encode %T: %w", cmd, err)
	}
	return buf.Bytes(), nil
}

// EncodeBatch frames already-encoded commands as one Batch entry.
func EncodeBatch(entries [][]byte) ([]byte, error) {
	return Encode(Batch{Entries: entries})
}

// newCommand returns an empty command of type t, or nil when this release
// does not know t.
func newCommand(t MessageType) Command {
	switch t {
	case MsgBatch:
		return &Batch{}
	case MsgNodeMeta:
		return &NodeMeta{}
	case MsgNodeRemove:
		return &NodeRemove{}
	case MsgJobCreate:
		return &JobCreate{}
	case MsgJobEdit:
		return &JobEdit{}
	case MsgJobDelete:
		return &JobDelete{}
	case MsgJobAction:
		return &JobAction{}
	case MsgJobSetDeps:
		return &JobSetDeps{}
	case MsgAffinitySet:
		return &AffinitySet{}
	case MsgWorkerRegister:
		return &WorkerRegister{}
	case MsgWorkerEdit:
		return &WorkerEdit{}
	case MsgWorkerDelete:
		return &WorkerDelete{}
	case MsgWorkerAction:
		return &WorkerAction{}
	case MsgPick:
		return &Pick{}
	case MsgReport:
		return &Report{}
	case MsgJobTimeout:
		return &JobTimeout{}
	case MsgWorkerLost:
		return &WorkerLost{}
	case MsgReportPick:
		return &ReportPick{}
	case MsgTokenCreate:
		return &TokenCreate{}
	case MsgTokenRevoke:
		return &TokenRevoke{}
	case MsgProjectCreate:
		return &ProjectCreate{}
	case MsgProjectDelete:
		return &ProjectDelete{}
	case MsgEventPrune:
		return &EventPrune{}
	case MsgWorkerExpire:
		return &WorkerExpire{}
	case MsgJobExpire:
		return &JobExpire{}
	case MsgSetRelease:
		return &SetRelease{}
	case MsgInterpreterSet:
		return &InterpreterSet{}
	case MsgInterpreterDel:
		return &InterpreterDelete{}
	case MsgSessionOpen:
		return &SessionOpen{}
	case MsgSessionUpdate:
		return &SessionUpdate{}
	case MsgSessionClose:
		return &SessionClose{}
	case MsgSessionDelete:
		return &SessionDelete{}
	case MsgSessionSubmit:
		return &SessionSubmit{}
	case MsgSessionStart:
		return &SessionStart{}
	case MsgSessionExpire:
		return &SessionExpire{}
	case MsgTemplateCreate:
		return &TemplateCreate{}
	case MsgTemplateUpdate:
		return &TemplateUpdate{}
	case MsgTemplateDelete:
		return &TemplateDelete{}
	case MsgExecute:
		return &Execute{}
	case MsgExecutionCancel:
		return &ExecutionCancel{}
	case MsgExecutionDelete:
		return &ExecutionDelete{}
	case MsgDocsWrite:
		return &DocsWrite{}
	}
	return nil
}

// Decode parses a Raft entry written by Encode. An entry of a type this
// release does not know is refused with ErrUnknownType (and ErrBadEntry);
// the FSM then skips it or halts, by IgnoreUnknownTypeFlag.
func Decode(buf []byte) (Command, error) {
	if len(buf) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrBadEntry)
	}
	cmd := newCommand(MessageType(buf[0]))
	if cmd == nil {
		return nil, fmt.Errorf("%w: %w %d", ErrBadEntry, ErrUnknownType, buf[0])
	}
	if err := codec.NewDecoderBytes(buf[1:], msgpackHandle).Decode(cmd); err != nil {
		return nil, fmt.Errorf("%w: decode type %d: %v", ErrBadEntry, buf[0], err)
	}
	return cmd, nil
}
