package raftstore

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/joblog"
)

// FSM is the Raft finite state machine. It is a thin wrapper: decoding and
// the state swap on restore live here, every rule lives in State.
type FSM struct {
	state atomic.Pointer[State]
	dir   string // where the job log stores live
	// haltErr is set, once, when an entry of an unknown type that may not
	// be skipped arrives; halted is closed then.
	haltErr atomic.Pointer[HaltError]
	halted  chan struct{}
	// obs is the metrics observer, shared by every state of this FSM.
	obs observerBox
}

// storeSeq numbers the job log stores of this process: names never repeat,
// so closing an FSM cannot remove the file of a newer one in the same
// directory.
var storeSeq atomic.Int64

// NewFSM returns an FSM over an empty state, with a new job log store in
// dir (created if needed). The stores of an earlier run in dir are
// removed: raft rebuilds the state, logs included, from its snapshot and
// log. Close the FSM once raft is shut down.
func NewFSM(dir string) (*FSM, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("raftstore: job log dir: %w", err)
	}
	stale, _ := filepath.Glob(filepath.Join(dir, "joblog-*.db"))
	for _, p := range stale {
		if err := os.Remove(p); err != nil {
			return nil, fmt.Errorf("raftstore: %w", err)
		}
	}
	f := &FSM{dir: dir, halted: make(chan struct{})}
	lines, err := f.newStore()
	if err != nil {
		return nil, err
	}
	st := NewState(lines)
	st.obs = &f.obs
	f.state.Store(st)
	return f, nil
}

// newStore creates the next job log store file.
func (f *FSM) newStore() (*joblog.Store, error) {
	name := fmt.Sprintf("joblog-%d-%d.db", os.Getpid(), storeSeq.Add(1))
	return joblog.Create(filepath.Join(f.dir, name))
}

// Close closes the job log store (and removes its file). Raft must be shut
// down first: later applies would lose their log text.
func (f *FSM) Close() error {
	s := f.state.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines.Close()
}

// Halted is closed when the FSM halts (see HaltErr).
func (f *FSM) Halted() <-chan struct{} { return f.halted }

// HaltErr returns why the FSM halted, nil while it runs. A halted FSM met
// an entry written by a newer release that it cannot apply and may not
// skip: from then on every Apply returns this error and changes nothing,
// and Snapshot and Restore refuse, so the state that stopped short is
// never persisted nor built on. Only an upgraded coordinator, replaying
// the log, gets past that entry.
func (f *FSM) HaltErr() error {
	if e := f.haltErr.Load(); e != nil {
		return e
	}
	return nil
}

// halt records the first halt and wakes Halted; it returns the halt error.
func (f *FSM) halt(e *HaltError) error {
	if f.haltErr.CompareAndSwap(nil, e) {
		close(f.halted)
	}
	return f.HaltErr()
}

// State returns the current state. Hold on to it only for one read: a
// restore replaces it.
func (f *FSM) State() *State { return f.state.Load() }

// Apply implements raft.FSM. It returns the command's result, or an error
// value when the command was refused (the state is then unchanged).
//
// An entry of a type this release does not know is skipped when the type
// carries IgnoreUnknownTypeFlag (the result is nil, the applied index
// advances), and halts the FSM otherwise; so does such a command inside a
// batch, before any command of the batch is applied. A malformed entry of
// a known type is refused with ErrBadEntry, alike on every replica.
func (f *FSM) Apply(l *raft.Log) any {
	cmd := f.decode(l)
	if c, ok := cmd.(Command); ok {
		return f.state.Load().apply(l.Index, c)
	}
	return cmd
}

// ApplyBatch implements raft.BatchingFSM: the entries raft commits
// together are applied under one lock, and their log lines written in one
// transaction of the job log store. Results are as Apply's, entry by entry:
// an entry that halts the FSM is not applied, nor any after it.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	idx := make([]uint64, len(logs))
	cmds := make([]any, len(logs))
	for i, l := range logs {
		idx[i] = l.Index
		cmds[i] = f.decode(l)
		if f.HaltErr() != nil {
			for j := i; j < len(logs); j++ {
				cmds[j] = f.HaltErr()
			}
			break
		}
	}
	return f.state.Load().applyBatch(idx, cmds)
}

// decode turns an entry into the Command to apply, or into its result
// when there is nothing to apply: nil (not a command, or an unknown type
// that may be skipped: the applied index still advances), ErrBadEntry (a
// malformed entry of a known type) or the halt error.
func (f *FSM) decode(l *raft.Log) any {
	if err := f.HaltErr(); err != nil {
		return err
	}
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, err := Decode(l.Data)
	if err != nil {
		if !errors.Is(err, ErrUnknownType) {
			return err
		}
		t := MessageType(l.Data[0])
		if !t.Ignorable() {
			return f.halt(&HaltError{Index: l.Index, Type: t})
		}
		f.state.Load().skip(l.Index)
		return nil
	}
	if b, ok := cmd.(*Batch); ok {
		for _, e := range b.Entries {
			if len(e) == 0 {
				continue // refused in apply, as any malformed command
			}
			if t := MessageType(e[0]); newCommand(t) == nil && !t.Ignorable() {
				return f.halt(&HaltError{Index: l.Index, Type: t, InBatch: true})
			}
			if MessageType(e[0]) == MsgSetRelease {
				if sub, err := Decode(e); err == nil && sub.(*SetRelease).Release > Release {
					return f.halt(&HaltError{Index: l.Index, Type: MsgSetRelease, InBatch: true, Release: sub.(*SetRelease).Release})
				}
			}
		}
	}
	if r, ok := cmd.(*SetRelease); ok && r.Release > Release {
		return f.halt(&HaltError{Index: l.Index, Type: MsgSetRelease, Release: r.Release})
	}
	return cmd
}

// Snapshot implements raft.FSM. It takes the state's read lock and hands
// it to the snapshot, which streams the state, then the job logs from the
// store, to the sink in Persist and releases the lock when done: the
// snapshot is exactly the state at this index, without a copy of the whole
// state in memory. Apply waits for the lock meanwhile (raft keeps
// committing; only applying pauses), so the store does not change under
// the snapshot either.
//
// A halted FSM refuses: its state stopped short of the log, and a
// snapshot of it would stand for entries it never applied.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.HaltErr(); err != nil {
		return nil, err
	}
	s := f.state.Load()
	s.mu.RLock()
	return &snapshot{state: s}, nil
}

// Restore implements raft.FSM: it builds a fresh state, with a fresh job
// log store, from the snapshot and swaps both in, waking anyone who waits
// on the old state, whose store is then closed.
// A halted FSM refuses: it applies nothing more until it is upgraded.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.HaltErr(); err != nil {
		return err
	}
	lines, err := f.newStore()
	if err != nil {
		return err
	}
	s, err := ReadState(bufio.NewReader(rc), lines)
	if err != nil {
		lines.Close()
		return err
	}
	s.obs = &f.obs
	old := f.state.Swap(s)
	old.mu.Lock()
	close(old.notify)
	old.notify = make(chan struct{})
	close(old.logNotify)
	old.logNotify = make(chan struct{})
	close(old.changeNotify)
	old.changeNotify = make(chan struct{})
	_ = old.lines.Close() // its readers get an error: the state moved on
	old.mu.Unlock()
	return nil
}

// snapshot holds its state's read lock from FSM.Snapshot until Persist
// (or Release) ends.
type snapshot struct {
	state *State
	once  sync.Once
}

func (s *snapshot) unlock() { s.once.Do(s.state.mu.RUnlock) }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	defer s.unlock()
	w := bufio.NewWriterSize(sink, 1<<20)
	err := s.state.writeSnapshotLocked(w)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() { s.unlock() }

// snapshotVersion is bumped when the snapshot layout changes incompatibly.
// Version 3 moved the job logs out of snapshotData into line records that
// follow it; version 2 snapshots (logs in Logs) still restore.
const (
	snapshotVersion   = 3
	snapshotVersionV2 = 2
)

// snapLine is one job log line of a snapshot; the lines follow the
// snapshotData record, in job then line order, and end with a record of
// Job 0.
type snapLine struct {
	_struct struct{} `codec:",toarray"`

	Job    int64
	Number int64
	Stream uint8
	Offset int64
	Text   []byte
}

// snapshotData is the whole state as written to a snapshot. Derived indexes
// are not in it: they are rebuilt on restore.
type snapshotData struct {
	Version     int
	Applied     uint64
	LastJobID   int64
	LastAttempt int64
	Jobs        []*Job
	Logs        map[int64][]byte
	Workers     []*Worker
	Events      []*Run // runs; the key keeps its name for older snapshots
	Affinities  map[int]string
	// Logs holds the job logs in version 2 snapshots only.
	Nodes []NodeMeta
	// Added in place (map-encoded, so older snapshots still decode):
	// they read as just the default project and no token.
	Projects []*Project
	Tokens   []*Token
	// Release is the release whose apply rules are in force (0 in older
	// snapshots).
	Release int
	// Added in place too: an older snapshot restores with no host and
	// no configured interpreter.
	Hosts        []*Host
	Interpreters []*Interpreter
	// Added in place too: an older snapshot restores with no session.
	Sessions []*Session
	// Added in place too: an older snapshot restores with no template
	// and no execution.
	Templates  []*Template
	Executions []*Execution
}

// WriteSnapshot encodes the state as a snapshot.
func (s *State) WriteSnapshot(w io.Writer) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.writeSnapshotLocked(w)
}

// writeSnapshotLocked encodes the state, then streams the job logs from
// the store; the caller holds the read lock. A store that lost writes
// (joblog.ErrLost) makes no snapshot: it would spread the loss.
func (s *State) writeSnapshotLocked(w io.Writer) error {
	d := s.snapshotLocked()
	enc := codec.NewEncoder(w, msgpackHandle)
	if err := enc.Encode(&d); err != nil {
		return err
	}
	return s.writeLinesLocked(enc)
}

// writeLinesLocked encodes every job log line, then the end record.
func (s *State) writeLinesLocked(enc *codec.Encoder) error {
	err := s.lines.Each(func(job int64, l joblog.Line) error {
		return enc.Encode(&snapLine{Job: job, Number: l.Number, Stream: uint8(l.Stream), Offset: l.Offset, Text: l.Text})
	})
	if err != nil {
		return fmt.Errorf("raftstore: job logs: %w", err)
	}
	return enc.Encode(&snapLine{})
}

// snapshotLocked gathers the state into its snapshot record; the caller
// holds the read lock.
func (s *State) snapshotLocked() snapshotData {
	d := snapshotData{
		Version:     snapshotVersion,
		Applied:     s.applied,
		LastJobID:   s.lastJobID,
		LastAttempt: s.lastAttempt,
		Release:     s.release,
		Affinities:  map[int]string{},
		Jobs:        make([]*Job, 0, len(s.jobs)),
		Workers:     make([]*Worker, 0, len(s.workers)),
		Events:      make([]*Run, 0, len(s.runByID)),
	}
	s.jobOrder.Ascend(func(id int64) bool {
		d.Jobs = append(d.Jobs, s.jobs[id])
		return true
	})
	s.workerOrder.Ascend(func(n string) bool {
		d.Workers = append(d.Workers, s.workers[n])
		return true
	})
	s.runOrder.Ascend(func(id int64) bool {
		d.Events = append(d.Events, s.runByID[id])
		return true
	})
	for id := 1; id <= MaxAffinityID; id++ {
		if s.affinities[id] != "" {
			d.Affinities[id] = s.affinities[id]
		}
	}
	for _, id := range sortedKeys(keysOf(s.nodes)) {
		d.Nodes = append(d.Nodes, s.nodes[id])
	}
	for _, name := range sortedKeys(keysOf(s.projects)) {
		d.Projects = append(d.Projects, s.projects[name])
	}
	for _, id := range sortedKeys(keysOf(s.tokenByID)) {
		d.Tokens = append(d.Tokens, s.tokenByID[id])
	}
	s.hostOrder.Ascend(func(n string) bool {
		d.Hosts = append(d.Hosts, s.hosts[n])
		return true
	})
	for _, n := range sortedKeys(keysOf(s.interpreters)) {
		d.Interpreters = append(d.Interpreters, s.interpreters[n])
	}
	s.sessionOrder.Ascend(func(id string) bool {
		d.Sessions = append(d.Sessions, s.sessions[id])
		return true
	})
	d.Templates, d.Executions = s.tpl.snapshot()
	return d
}

// ReadState decodes a snapshot written by WriteSnapshot into a new state
// whose job logs go into lines, a new store.
func ReadState(r io.Reader, lines *joblog.Store) (*State, error) {
	var d snapshotData
	dec := codec.NewDecoder(r, msgpackHandle)
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %v", ErrBadEntry, err)
	}
	if d.Version != snapshotVersion && d.Version != snapshotVersionV2 {
		return nil, fmt.Errorf("%w: snapshot version %d, want %d", ErrBadEntry, d.Version, snapshotVersion)
	}
	upgradeSnapshot(&d)
	s := NewState(lines)
	s.applied, s.lastJobID, s.lastAttempt = d.Applied, d.LastJobID, d.LastAttempt
	s.release = d.Release
	for id, name := range d.Affinities {
		if id >= 1 && id <= MaxAffinityID {
			s.affinities[id] = name
		}
	}
	for _, p := range d.Projects {
		s.projects[p.Name] = &Project{Name: p.Name, Created: p.Created}
	}
	for _, t := range d.Tokens {
		s.tokens[t.Hash] = t
		s.tokenByID[t.ID] = t
	}
	// Sessions and pins first: whether a job is in the shared ready
	// index depends on its session's kind and on its execution's host.
	// Their derived counts follow the jobs.
	s.restorePins(d.Executions)
	for _, x := range d.Sessions {
		if s.projects[x.Project] == nil {
			s.projects[x.Project] = &Project{Name: x.Project}
		}
		s.sessions[x.ID] = x
	}
	for _, j := range d.Jobs {
		if j.Project == "" {
			j.Project = DefaultProject // a job of a snapshot older than projects
		}
		if s.projects[j.Project] == nil {
			s.projects[j.Project] = &Project{Name: j.Project}
		}
		s.addJob(j)
		s.countMove(j.Project, "", j.State)
	}
	for _, j := range d.Jobs {
		if j.Parent == 0 {
			s.root.Children = append(s.root.Children, j.ID)
		}
		for _, dep := range j.Dependencies {
			m := s.dependents[dep]
			if m == nil {
				m = make(map[int64]struct{})
				s.dependents[dep] = m
			}
			m[j.ID] = struct{}{}
		}
	}
	// The priority paths are not in the snapshot: derive every h_* cache
	// from the root down, then index what the walk did not reach (only a
	// corrupt state has such jobs).
	for _, id := range s.root.Children {
		s.refreshH(s.jobs[id], true)
	}
	for _, j := range d.Jobs {
		s.reindex(j)
	}
	var err error
	if d.Version == snapshotVersionV2 {
		s.convertLogs(d.Logs)
	} else {
		err = s.readLines(dec)
	}
	if cerr := s.lw.Commit(); err == nil && cerr != nil {
		err = fmt.Errorf("raftstore: job logs: %w", cerr)
	}
	if err != nil {
		return nil, err
	}
	for _, w := range d.Workers {
		w.lines, _ = s.workerLines(w.Affinity, true)
		s.addWorker(w)
	}
	for _, e := range d.Events {
		if e.Project == "" {
			e.Project = DefaultProject
		}
		s.addRun(e)
	}
	for _, n := range d.Nodes {
		s.nodes[n.ID] = n
	}
	for _, h := range d.Hosts {
		s.hosts[h.Name] = h
		s.hostOrder.ReplaceOrInsert(h.Name)
		for _, w := range h.Slots {
			s.slotHost[w] = h.Name
		}
	}
	for _, in := range d.Interpreters {
		s.interpreters[in.Name] = in
	}
	for _, x := range d.Sessions {
		s.addSession(x)
	}
	s.tpl.restore(d.Templates, d.Executions)
	s.readyGrew, s.logChanged = false, false
	return s, nil
}

// readLines reads a snapshot's line records into the store, checking that
// each job's lines follow each other and agree with its tail.
func (s *State) readLines(dec *codec.Decoder) error {
	var cur *Job
	var next, off int64
	done := func() error {
		if cur != nil && (next-1 != int64(cur.LogLines) || off != int64(cur.LogBytes)) {
			return fmt.Errorf("%w: snapshot: job %d has %d lines, %d bytes; its tail says %d, %d", ErrBadEntry, cur.ID, next-1, off, cur.LogLines, cur.LogBytes)
		}
		return nil
	}
	for {
		var l snapLine
		if err := dec.Decode(&l); err != nil {
			return fmt.Errorf("%w: snapshot lines: %v", ErrBadEntry, err)
		}
		if l.Job == 0 {
			return done()
		}
		if cur == nil || l.Job != cur.ID {
			if err := done(); err != nil {
				return err
			}
			if cur = s.jobs[l.Job]; cur == nil {
				return fmt.Errorf("%w: snapshot: lines of unknown job %d", ErrBadEntry, l.Job)
			}
			next, off = 1, 0
		}
		if l.Number != next || l.Offset != off || l.Stream >= joblog.NumStreams {
			return fmt.Errorf("%w: snapshot: job %d line %d is out of order", ErrBadEntry, l.Job, l.Number)
		}
		s.lw.Put(l.Job, joblog.Line{Number: l.Number, Stream: joblog.Stream(l.Stream), Offset: l.Offset, Text: l.Text})
		next, off = next+1, off+int64(len(l.Text))
	}
}

// convertLogs turns the logs of a version 2 snapshot (one byte slice per
// job) into lines: a line that starts with "[croft] " was the farm's
// note, any other is standard output (version 2 had one stream).
func (s *State) convertLogs(logs map[int64][]byte) {
	ids := make([]int64, 0, len(logs))
	for id := range logs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for _, id := range ids {
		j := s.jobs[id]
		if j == nil {
			continue
		}
		t := joblog.Tail{}
		for text := logs[id]; len(text) > 0; {
			n := len(text)
			if i := bytes.IndexByte(text, '\n'); i >= 0 {
				n = i + 1
			}
			st := joblog.Stdout
			if bytes.HasPrefix(text[:n], []byte("[croft] ")) {
				st = joblog.Farm
			}
			s.lw.Append(id, &t, st, text[:n])
			text = text[n:]
		}
		setTail(j, t)
		delete(logs, id) // the converted text can go as we go
	}
}

// Digest is a hash of the whole replicated state: two nodes that applied the
// same entries have the same digest. The applied index is left out: it
// differs between nodes that hold the same state (no-op and membership
// entries never reach the state).
func (s *State) Digest() string {
	s.mu.RLock()
	d := s.snapshotLocked()
	d.Applied = 0
	h := sha256.New()
	enc := codec.NewEncoder(h, msgpackHandle)
	err := enc.Encode(&d)
	if err == nil {
		err = s.writeLinesLocked(enc)
	}
	s.mu.RUnlock()
	if err != nil {
		return "error: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}
