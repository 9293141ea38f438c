package raftstore

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// FSM is the Raft finite state machine. It is a thin wrapper: decoding and
// the state swap on restore live here, every rule lives in State.
type FSM struct {
	state atomic.Pointer[State]
}

// NewFSM returns an FSM over an empty state.
func NewFSM() *FSM {
	f := &FSM{}
	f.state.Store(NewState())
	return f
}

// State returns the current state. Hold on to it only for one read: a
// restore replaces it.
func (f *FSM) State() *State { return f.state.Load() }

// Apply implements raft.FSM. It returns the command's result, or an error
// value when the command was refused (the state is then unchanged).
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, err := Decode(l.Data)
	if err != nil {
		return err
	}
	return f.state.Load().apply(l.Index, cmd)
}

// Snapshot implements raft.FSM. It takes the state's read lock and hands
// it to the snapshot, which streams the state to the sink in Persist and
// releases the lock when done: the snapshot is exactly the state at this
// index, without a copy of the whole state in memory. Apply waits for the
// lock meanwhile (raft keeps committing; only applying pauses).
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	s := f.state.Load()
	s.mu.RLock()
	return &snapshot{state: s}, nil
}

// Restore implements raft.FSM: it builds a fresh state from the snapshot and
// swaps it in, waking anyone who waits on the old one.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	s, err := ReadState(bufio.NewReader(rc))
	if err != nil {
		return err
	}
	old := f.state.Swap(s)
	old.mu.Lock()
	close(old.notify)
	old.notify = make(chan struct{})
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
const snapshotVersion = 2

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
	Events      []*Event
	Affinities  map[int]string
	Nodes       []NodeMeta
	// Added in place (map-encoded, so older snapshots still decode):
	// they read as just the default project and no token.
	Projects []*Project
	Tokens   []*Token
}

// WriteSnapshot encodes the state as a snapshot.
func (s *State) WriteSnapshot(w io.Writer) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.writeSnapshotLocked(w)
}

// writeSnapshotLocked encodes the state; the caller holds the read lock.
func (s *State) writeSnapshotLocked(w io.Writer) error {
	d := s.snapshotLocked()
	return codec.NewEncoder(w, msgpackHandle).Encode(&d)
}

// snapshotLocked gathers the state into its snapshot record; the caller
// holds the read lock.
func (s *State) snapshotLocked() snapshotData {
	d := snapshotData{
		Version:     snapshotVersion,
		Applied:     s.applied,
		LastJobID:   s.lastJobID,
		LastAttempt: s.lastAttempt,
		Logs:        s.logs,
		Affinities:  map[int]string{},
		Jobs:        make([]*Job, 0, len(s.jobs)),
		Workers:     make([]*Worker, 0, len(s.workers)),
		Events:      make([]*Event, 0, len(s.eventByID)),
	}
	s.jobOrder.Ascend(func(id int64) bool {
		d.Jobs = append(d.Jobs, s.jobs[id])
		return true
	})
	s.workerOrder.Ascend(func(n string) bool {
		d.Workers = append(d.Workers, s.workers[n])
		return true
	})
	s.eventOrder.Ascend(func(id int64) bool {
		d.Events = append(d.Events, s.eventByID[id])
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
	return d
}

// ReadState decodes a snapshot written by WriteSnapshot into a new state.
func ReadState(r io.Reader) (*State, error) {
	var d snapshotData
	if err := codec.NewDecoder(r, msgpackHandle).Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: snapshot: %v", ErrBadEntry, err)
	}
	if d.Version != snapshotVersion {
		return nil, fmt.Errorf("%w: snapshot version %d, want %d", ErrBadEntry, d.Version, snapshotVersion)
	}
	upgradeSnapshot(&d)
	s := NewState()
	s.applied, s.lastJobID, s.lastAttempt = d.Applied, d.LastJobID, d.LastAttempt
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
	for _, j := range d.Jobs {
		if j.Project == "" {
			j.Project = DefaultProject // a job of a snapshot older than projects
		}
		if s.projects[j.Project] == nil {
			s.projects[j.Project] = &Project{Name: j.Project}
		}
		s.addJob(j)
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
	if d.Logs != nil {
		s.logs = d.Logs
	}
	for _, w := range d.Workers {
		w.lines, _ = s.workerLines(w.Affinity, true)
		s.addWorker(w)
	}
	for _, e := range d.Events {
		if e.Project == "" {
			e.Project = DefaultProject
		}
		s.addEvent(e)
	}
	for _, n := range d.Nodes {
		s.nodes[n.ID] = n
	}
	s.readyGrew = false
	return s, nil
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
	err := codec.NewEncoder(h, msgpackHandle).Encode(&d)
	s.mu.RUnlock()
	if err != nil {
		return "error: " + err.Error()
	}
	return hex.EncodeToString(h.Sum(nil))
}
