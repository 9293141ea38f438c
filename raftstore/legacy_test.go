package raftstore

import (
	"bytes"
	"encoding/binary"
	"io"
	"maps"
	"os"
	"testing"

	"github.com/hashicorp/raft"
)

// The fixtures in testdata were written by the previous release (commit
// baaea67, Coalition's upper-case state names): legacy-v1-log.bin is every
// entry it applied (4-byte big-endian length, then the entry) and
// legacy-v1-snapshot.msgpack the snapshot of the state they built: a group
// with a finished and a failed child, a running job on w2, a job forced
// FINISHED while paused, a lost worker, environments in Coalition's text.

func readLegacySnapshot(t *testing.T) *State {
	t.Helper()
	b, err := os.ReadFile("testdata/legacy-v1-snapshot.msgpack")
	if err != nil {
		t.Fatal(err)
	}
	f := releaseZeroFSM(t)
	if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatalf("restore the previous release's snapshot: %v", err)
	}
	return f.State()
}

func replayLegacyLog(t *testing.T) *FSM {
	t.Helper()
	b, err := os.ReadFile("testdata/legacy-v1-log.bin")
	if err != nil {
		t.Fatal(err)
	}
	f := releaseZeroFSM(t)
	for idx := uint64(1); len(b) > 0; idx++ {
		n := binary.BigEndian.Uint32(b)
		entry := b[4 : 4+n]
		b = b[4+n:]
		if res, isErr := f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: entry}).(error); isErr {
			t.Fatalf("entry %d of the previous release refused: %v", idx, res)
		}
	}
	return f
}

func checkLegacyState(t *testing.T, s *State) {
	t.Helper()
	if err := checkInvariants(s); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[int64]string{1: StateFailed, 2: StateFinished, 3: StateFailed, 4: StateWaiting, 5: StatePaused, 6: StateRunning} {
		if j, _ := s.Job(id); j.Reported() != want {
			t.Errorf("job %d (%s) is %q, want %q", id, j.Title, j.Reported(), want)
		}
	}
	if j, _ := s.Job(5); j.State != StateFinished {
		t.Errorf("paused job 5 holds %q, want %q", j.State, StateFinished)
	}
	for name, want := range map[string]string{"w1": WorkerStateIdle, "w2": WorkerStateBusy, "w3": WorkerStateLost} {
		if w, _ := s.Worker(name); w.State != want {
			t.Errorf("worker %s is %q, want %q", name, w.State, want)
		}
	}
	for id, want := range map[int64]struct {
		text string
		env  map[string]string
	}{
		1: {"", nil},
		2: {`A=1\nB=2`, map[string]string{"A": "1", "B": "2"}},
		3: {"X=1\nX=2\nnoequals", map[string]string{"X": "2"}},
		4: {"K=v", map[string]string{"K": "v"}},
	} {
		if j, _ := s.Job(id); j.Environment != want.text || !maps.Equal(j.Env, want.env) || (j.Env == nil) != (want.env == nil) {
			t.Errorf("job %d environment %q %v, want %q %v", id, j.Environment, j.Env, want.text, want.env)
		}
	}
	evs, _, _ := s.RunsAfter(0, 100, nil)
	got := map[int64]string{}
	for _, e := range evs {
		got[e.JobID] = e.State
	}
	for id, want := range map[int64]string{3: StateFailed, 2: StateFinished, 6: StateRunning} {
		if got[id] != want {
			t.Errorf("event of job %d is %q, want %q", id, got[id], want)
		}
	}
}

func TestLegacySnapshotRestores(t *testing.T) {
	s := readLegacySnapshot(t)
	checkLegacyState(t, s)
	// The restored state runs on: the running attempt reports, its
	// worker frees, and a second restore of our own snapshot is equal.
	f := releaseZeroFSM(t)
	f.state.Store(s)
	h := &harness{t: t, fsm: f, now: 1_700_000_100 * 1e9, index: s.applied}
	j, _ := s.Job(6)
	h.ok(&Report{Now: h.now, Worker: "w2", JobID: 6, AttemptID: j.Attempt, LogOffset: 4, Log: []byte(" done\n"), Done: true})
	h.wantState(6, StateFinished)
	if w, _ := s.Worker("w2"); w.State != WorkerStateIdle || w.Finished != 1 {
		t.Fatalf("worker w2 after the report: %+v", w)
	}
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	backFSM := releaseZeroFSM(t)
	err := backFSM.Restore(io.NopCloser(&buf))
	back := backFSM.State()
	if err != nil {
		t.Fatal(err)
	}
	if back.Digest() != s.Digest() {
		t.Fatal("a restored legacy state does not round-trip through a snapshot")
	}
}

func TestLegacyLogReplaysToTheLegacySnapshot(t *testing.T) {
	f := replayLegacyLog(t)
	checkLegacyState(t, f.State())
	if got, want := f.State().Digest(), readLegacySnapshot(t).Digest(); got != want {
		t.Fatal("replaying the previous release's log and restoring its snapshot give different states")
	}
}

func TestUpgradeEditAcceptsOldAndNeutralNames(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "x", Paused: true})[0]
	for _, tc := range []struct{ set, want string }{
		{"WAITING", StateWaiting}, {"PAUSED", StatePaused}, {StateWaiting, StateWaiting},
		{"FINISHED", StateFinished}, {StateFailed, StateFailed}, {"ERROR", StateFailed},
	} {
		st := tc.set
		h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: id, Patch: JobPatch{State: &st}}}})
		h.wantState(id, tc.want)
	}
	for _, bad := range []string{"WORKING", StateRunning, "Waiting", "nonsense", ""} {
		st := bad
		h.fails(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: id, Patch: JobPatch{State: &st}}}}, ErrInvalid)
	}
}
