package raftstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// writeFixture regenerates testdata/release-0 with the code of this tree.
// Only a release does this; the committed files must stay those written by
// the release they are named after (see testdata/release-0/README.md).
var writeFixture = flag.Bool("write-fixture", false, "rewrite testdata/release-0 from the current code")

const release0Dir = "testdata/release-0"

// fixtureRecorder applies commands through the real encode -> Apply path
// and keeps every entry it applied, framed for the log fixture.
type fixtureRecorder struct {
	*harness
	entries [][]byte
}

// raw applies an already-encoded entry and records it.
func (r *fixtureRecorder) raw(entry []byte) any {
	r.t.Helper()
	r.entries = append(r.entries, entry)
	r.index++
	return r.fsm.Apply(&raft.Log{Index: r.index, Type: raft.LogCommand, Data: entry})
}

func (r *fixtureRecorder) enc(cmd Command) []byte {
	r.t.Helper()
	buf, err := Encode(cmd)
	if err != nil {
		r.t.Fatal(err)
	}
	return buf
}

// must applies a command that has to be accepted.
func (r *fixtureRecorder) must(cmd Command) any {
	r.t.Helper()
	res := r.raw(r.enc(cmd))
	if err, isErr := res.(error); isErr {
		r.t.Fatalf("entry %d %T: %v", len(r.entries), cmd, err)
	}
	return res
}

// refused applies a command that has to be refused with want.
func (r *fixtureRecorder) refused(cmd Command, want error) {
	r.t.Helper()
	if err, _ := r.raw(r.enc(cmd)).(error); !errors.Is(err, want) {
		r.t.Fatalf("entry %d %T: got %v, want %v", len(r.entries), cmd, err, want)
	}
}

func (r *fixtureRecorder) pickJob(worker string, want int64) *Assignment {
	r.t.Helper()
	a, _ := r.must(&Pick{Now: r.now, Worker: worker, IP: "10.1.0.1"}).(*Assignment)
	if a == nil || a.JobID != want {
		r.t.Fatalf("%s picked %+v, want job %d", worker, a, want)
	}
	return a
}

// release0Scenario drives every message type of release 0 (1..25) through
// a small farm: projects and tokens, a group with children, dependencies,
// picks, reports with logs and exit codes (agent and Coalition worker
// protocols), a retry, a timeout, a lost worker, the retention commands
// and a batch. The expected facts are checked by TestReleaseZeroLogReplays.
func release0Scenario(r *fixtureRecorder) {
	ms := func(sec int64) { r.tick(sec) }
	r.must(&NodeMeta{ID: "c1", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8080"})
	r.must(&NodeMeta{ID: "c2", RaftAddr: "10.0.0.2:7000", HTTPAddr: "10.0.0.2:8080"})
	r.must(&NodeRemove{ID: "c2"})
	r.must(&ProjectCreate{Now: r.now, Name: "film"})
	r.must(&ProjectCreate{Now: r.now, Name: "scratch"})
	r.must(&ProjectDelete{Now: r.now, Name: "scratch"})
	r.must(&TokenCreate{Now: r.now, Token: Token{ID: "tok-alice", Name: "alice", Role: RoleUser, Projects: []string{"film"}, Hash: hashOf("alice-secret"), CreatedBy: "root"}})
	r.must(&TokenCreate{Now: r.now, Token: Token{ID: "tok-agent", Name: "renderers", Role: RoleAgent, Projects: []string{AllProjects}, Workers: []string{"render-*"}, Hash: hashOf("agent-secret"), CreatedBy: "root"}})
	r.must(&TokenCreate{Now: r.now, Token: Token{ID: "tok-old", Name: "old", Role: RoleRead, Hash: hashOf("old-secret")}})
	r.must(&TokenRevoke{Now: r.now, ID: "tok-old"})
	r.must(&AffinitySet{Names: map[int]string{1: "linux", 2: "gpu"}})

	// Jobs 1..4: a film group and three frames (ParentRef), 5: a comp
	// depending on frames 1 and 3 (jobs 2, 4), 6 and 7: default-project jobs.
	ms(1)
	r.must(&JobCreate{Now: r.now, MaxProjectJobs: 100, Jobs: []JobSpec{
		{Title: "shot-010", Priority: 5, Retry: 10, Project: "film", User: "alice"},
		{ParentRef: 1, Title: "frame-1", Command: "render -f 1", Dir: "/shots/010", Environment: "A=1\nB=2", Priority: 9, Retry: 3, Affinity: "linux", ProgressPattern: "%percent", Timeout: 600},
		{ParentRef: 1, Title: "frame-2", Command: "render -f 2", Priority: 8, Retry: 2},
		{ParentRef: 1, Title: "frame-3", Command: "render -f 3", Priority: 7, Retry: 1, Timeout: 30},
	}})
	r.must(&JobCreate{Now: r.now, Jobs: []JobSpec{{Parent: 1, Title: "comp", Command: "comp 010", Retry: 10, Dependencies: []int64{2, 4}}}})
	r.must(&JobCreate{Now: r.now, Jobs: []JobSpec{
		{Title: "cleanup", Command: "rm -rf /tmp/x", Retry: 10, Priority: 1},
		{Title: "archive", Command: "tar cf a.tar .", Retry: 10, Priority: 2},
	}})
	title := "cleanup-all"
	prio := 3
	r.must(&JobEdit{Now: r.now, Edits: []JobEditItem{{ID: 6, Patch: JobPatch{Title: &title, Priority: &prio}}}})
	r.must(&JobSetDeps{Now: r.now, ID: 6, Deps: []int64{7}})
	r.must(&JobAction{Now: r.now, Action: ActionPause, IDs: []int64{4}})
	r.must(&JobAction{Now: r.now, Action: ActionStart, IDs: []int64{4}})
	r.refused(&JobDelete{Now: r.now, IDs: []int64{999}}, ErrNotFound)

	// Workers.
	r.must(&WorkerRegister{Now: r.now, Name: "render-01", IP: "10.1.0.1", SetAffinity: true, Affinity: "linux"})
	r.must(&WorkerRegister{Now: r.now, Name: "render-02", IP: "10.1.0.2", Projects: []string{"film"}})
	r.must(&WorkerRegister{Now: r.now, Name: "render-03", IP: "10.1.0.3"})
	aff := "gpu"
	r.must(&WorkerEdit{Now: r.now, Edits: []WorkerEditItem{{Name: "render-03", Patch: WorkerPatch{Affinity: &aff}}}})
	r.must(&WorkerAction{Now: r.now, Action: ActionWorkerStop, Names: []string{"render-03"}})
	r.must(&WorkerAction{Now: r.now, Action: ActionWorkerStart, Names: []string{"render-03"}})

	// frame-1 on render-01: two log chunks (one retried), progress, exit 0.
	ms(1)
	a1 := r.pickJob("render-01", 2)
	half := 0.5
	r.must(&Report{Now: r.now, Worker: "render-01", JobID: 2, AttemptID: a1.AttemptID, LogOffset: 0, Log: []byte("frame 1: 50%\n"), Progress: &half})
	r.must(&Report{Now: r.now, Worker: "render-01", JobID: 2, AttemptID: a1.AttemptID, LogOffset: 0, Log: []byte("frame 1: 50%\n")})
	ms(2)
	r.must(&Report{Now: r.now, Worker: "render-01", JobID: 2, AttemptID: a1.AttemptID, LogOffset: 13, Log: []byte("frame 1: done\n"), Done: true, ExitCode: 0})

	// frame-2 on render-02 fails with exit code 3, then is retried by a
	// ReportPick-less pick and finishes through a ReportPick that hands
	// render-02 frame-3.
	a2 := r.pickJob("render-02", 3)
	r.must(&Report{Now: r.now, Worker: "render-02", JobID: 3, AttemptID: a2.AttemptID, LogOffset: 0, Log: []byte("segfault\n"), Done: true, ExitCode: 3})
	a3 := r.pickJob("render-02", 3)
	ms(1)
	rp := r.must(&ReportPick{Report: Report{Now: r.now, Worker: "render-02", JobID: 3, AttemptID: a3.AttemptID, LogOffset: 0, Log: []byte("ok\n"), Done: true}, IP: "10.1.0.2"}).(ReportPickResult)
	if rp.Next == nil || rp.Next.JobID != 4 {
		r.t.Fatalf("report-pick handed %+v, want job 4", rp.Next)
	}
	// frame-3 (timeout 30 s, retry 1) runs past its timeout.
	ms(31)
	r.must(&JobTimeout{Now: r.now, Attempts: []int64{rp.Next.AttemptID}})

	// The comp waits for frame-3; archive (7) goes to render-03 through
	// the Coalition worker protocol (attempt 0, no offsets), then
	// render-03 picks cleanup (6) and goes silent.
	a7 := r.pickJob("render-03", 7)
	r.must(&Report{Now: r.now, Worker: "render-03", JobID: 7, LogOffset: -1, Log: []byte("archived\n")})
	r.must(&Report{Now: r.now, Worker: "render-03", JobID: 7, LogOffset: -1, Done: true})
	_ = a7
	r.pickJob("render-03", 6)
	ms(60)
	r.must(&WorkerLost{Now: r.now, Names: []string{"render-03"}})

	// A batch (group commit): a new worker, a create, a refused delete.
	ms(1)
	batch, err := EncodeBatch([][]byte{
		r.enc(&WorkerRegister{Now: r.now, Name: "render-04", IP: "10.1.0.4"}),
		r.enc(&JobCreate{Now: r.now, Jobs: []JobSpec{{Title: "expire-me", Command: "true", Retry: 10, Priority: 9}}}),
		r.enc(&JobDelete{Now: r.now, IDs: []int64{12345}}),
	})
	if err != nil {
		r.t.Fatal(err)
	}
	res, _ := r.raw(batch).([]any)
	if len(res) != 3 || !errors.Is(res[2].(error), ErrNotFound) {
		r.t.Fatalf("batch results %v", res)
	}
	a8 := r.pickJob("render-04", 8)
	r.must(&Report{Now: r.now, Worker: "render-04", JobID: 8, AttemptID: a8.AttemptID, LogOffset: 0, Log: []byte("bye\n"), Done: true})

	// Retention: render-03 is forgotten, old events pruned, job 8 expires.
	ms(3600)
	r.must(&WorkerExpire{Now: r.now, Before: r.now - 60e9, Names: []string{"render-03"}})
	r.must(&EventPrune{Now: r.now, Before: 0, Keep: 5})
	r.must(&JobExpire{Now: r.now, Before: r.now - 60e9, IDs: []int64{8}})
	r.must(&WorkerDelete{Now: r.now, Names: []string{"render-04"}})
	r.must(&JobDelete{Now: r.now, IDs: []int64{6}})
}

// TestWriteReleaseFixture writes testdata/release-0: the log of
// release0Scenario and the snapshot of the state it leads to. It runs only
// with -write-fixture:
//
//	go test ./raftstore -run TestWriteReleaseFixture -args -write-fixture
func TestWriteReleaseFixture(t *testing.T) {
	if !*writeFixture {
		t.Skip("run with -args -write-fixture to rewrite testdata/release-0")
	}
	r := &fixtureRecorder{harness: newHarness(t)}
	release0Scenario(r)
	var log bytes.Buffer
	for _, e := range r.entries {
		log.Write(binary.BigEndian.AppendUint32(nil, uint32(len(e))))
		log.Write(e)
	}
	var snap bytes.Buffer
	if err := r.st().WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(release0Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"log.bin": log.Bytes(), "state.snap": snap.Bytes()} {
		if err := os.WriteFile(filepath.Join(release0Dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d entries (%d bytes), snapshot %d bytes", len(r.entries), log.Len(), snap.Len())
}

// readLogFixture reads a log fixture: entries framed by a 4-byte
// big-endian length.
func readLogFixture(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			t.Fatalf("%s: truncated frame", path)
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(len(b)-4) < uint64(n) {
			t.Fatalf("%s: frame of %d bytes past the end", path, n)
		}
		out = append(out, b[4:4+n])
		b = b[4+n:]
	}
	return out
}

// checkRelease0Facts checks the state release0Scenario leads to, fact by
// fact (a digest alone would break whenever a field is added to the state).
func checkRelease0Facts(t *testing.T, s *State) {
	t.Helper()
	job := func(id int64) Job {
		t.Helper()
		j, ok := s.Job(id)
		if !ok {
			t.Fatalf("job %d missing", id)
		}
		return j
	}
	expect := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}
	// Jobs: 6 and 8 are gone, the rest with their states.
	for _, id := range []int64{6, 8} {
		if _, ok := s.Job(id); ok {
			t.Errorf("job %d should have been deleted", id)
		}
	}
	expect("job count", s.JobCount(), 6)
	g := job(1)
	expect("group", []any{g.Title, g.Project, g.Children, g.IsGroup(), g.Total, g.TotalFinished, g.TotalErrors, g.State},
		[]any{"shot-010", "film", []int64{2, 3, 4, 5}, true, 4, 2, 1, StateFailed})
	f1 := job(2)
	expect("frame-1", []any{f1.State, f1.RunDone, f1.Worker, f1.Environment, f1.Affinity, f1.Project, f1.Progress >= 0.5, f1.Timeout},
		[]any{StateFinished, 1, "render-01", "A=1\nB=2", "linux", "film", true, 600})
	f2 := job(3)
	expect("frame-2", []any{f2.State, f2.RunDone, f2.Worker}, []any{StateFinished, 2, "render-02"})
	f3 := job(4)
	expect("frame-3", []any{f3.State, f3.RunDone, f3.Paused}, []any{StateFailed, 1, false})
	comp := job(5)
	expect("comp", []any{comp.State, comp.Dependencies}, []any{StateBlocked, []int64{2, 4}})
	archive := job(7)
	expect("archive", []any{archive.Title, archive.State, archive.Project, archive.Worker}, []any{"archive", StateFinished, DefaultProject, "render-03"})
	// Logs: the retried chunk once, the Coalition worker's appended.
	for id, want := range map[int64]string{2: "frame 1: 50%\nframe 1: done\n", 7: "archived\n"} {
		if got, _ := s.Log(id); got != want {
			t.Errorf("log of job %d: %q, want %q", id, got, want)
		}
	}
	if got, _ := s.Log(3); !bytes.Contains([]byte(got), []byte("segfault\n")) || !bytes.HasSuffix([]byte(got), []byte("ok\n")) {
		t.Errorf("log of job 3: %q", got)
	}
	if got, _ := s.Log(4); !bytes.Contains([]byte(got), []byte("timed out")) {
		t.Errorf("log of job 4 lacks the timeout note: %q", got)
	}
	// Workers: render-03 expired, render-04 deleted.
	var names []string
	for _, w := range s.Workers() {
		names = append(names, w.Name)
	}
	expect("workers", names, []string{"render-01", "render-02"})
	w1, _ := s.Worker("render-01")
	expect("render-01", []any{w1.Affinity, w1.Finished, w1.State, w1.IP}, []any{"linux", 1, WorkerStateIdle, "10.1.0.1"})
	w2, _ := s.Worker("render-02")
	expect("render-02", []any{w2.Projects, w2.Finished, w2.Error}, []any{[]string{"film"}, 1, 2})
	// Events: the prune kept the 5 newest of 7, then those of the
	// deleted jobs 8 and 6 went with them.
	var events []string
	for _, e := range s.Runs(nil) {
		events = append(events, fmt.Sprintf("%d:%s", e.JobID, e.Worker))
	}
	expect("events", events, []string{"3:render-02", "4:render-02", "7:render-03"})
	// Projects, tokens, affinities, nodes.
	var projects []string
	for _, p := range s.Projects() {
		projects = append(projects, fmt.Sprintf("%s:%d", p.Name, p.Jobs))
	}
	expect("projects", projects, []string{"default:1", "film:5"})
	expect("tokens", s.TokenCount(), 2)
	if tok, ok := s.TokenByHash(hashOf("agent-secret")); !ok || tok.ID != "tok-agent" || tok.Role != RoleAgent || fmt.Sprint(tok.Workers) != "[render-*]" {
		t.Errorf("agent token %+v %v", tok, ok)
	}
	if _, ok := s.TokenByID("tok-old"); ok {
		t.Error("revoked token still known")
	}
	named := map[int]string{}
	for id, name := range s.Affinities() {
		if name != "" {
			named[id] = name
		}
	}
	expect("affinities", named, map[int]string{1: "linux", 2: "gpu"})
	expect("nodes", s.Nodes(), []NodeMeta{{ID: "c1", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8080"}})
}

// TestReleaseZeroLogReplays applies the log written by release 0 with this
// code, and checks the state it leads to and that release 0's snapshot
// restores to the same state.
func TestReleaseZeroLogReplays(t *testing.T) {
	entries := readLogFixture(t, filepath.Join(release0Dir, "log.bin"))
	seen := map[MessageType]bool{}
	f := releaseZeroFSM(t)
	for i, e := range entries {
		seen[MessageType(e[0])] = true
		if MessageType(e[0]) == MsgBatch {
			cmd, err := Decode(e)
			if err != nil {
				t.Fatalf("entry %d: %v", i+1, err)
			}
			for _, sub := range cmd.(*Batch).Entries {
				seen[MessageType(sub[0])] = true
			}
		}
		res := f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: e})
		if err := failure(res); err != nil {
			t.Fatalf("entry %d: %v", i+1, err)
		}
	}
	for m := MsgBatch; m <= MsgJobExpire; m++ {
		if !seen[m] {
			t.Errorf("the fixture has no entry of type %d", m)
		}
	}
	checkRelease0Facts(t, f.State())

	snap, err := os.Open(filepath.Join(release0Dir, "state.snap"))
	if err != nil {
		t.Fatal(err)
	}
	restored := releaseZeroFSM(t)
	if err := restored.Restore(io.NopCloser(snap)); err != nil {
		t.Fatalf("release 0 snapshot: %v", err)
	}
	checkRelease0Facts(t, restored.State())
	if restored.State().AppliedIndex() != uint64(len(entries)) {
		t.Errorf("snapshot index %d, want %d", restored.State().AppliedIndex(), len(entries))
	}
	if a, b := f.State().Digest(), restored.State().Digest(); a != b {
		t.Errorf("the replayed log and the restored snapshot differ: %s %s", a, b)
	}
}

// rawEntry is an entry of type t with a msgpack body no release decodes
// the same way: what a newer release's command looks like to this one.
func rawEntry(t MessageType) []byte {
	return append([]byte{byte(t)}, 0x82, 0xa1, 'x', 0x01, 0xa1, 'y', 0x02)
}

func TestIgnorableUnknownTypeIsSkipped(t *testing.T) {
	h := newHarness(t)
	h.create(JobSpec{Command: "a"})
	before := h.st().Digest()
	newType := MessageType(100) | IgnoreUnknownTypeFlag
	h.index++
	if res := h.fsm.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: rawEntry(newType)}); res != nil {
		t.Fatalf("ignorable entry: %v", res)
	}
	if h.st().Digest() != before || h.st().AppliedIndex() != h.index {
		t.Fatalf("ignorable entry changed the state or left the index at %d", h.st().AppliedIndex())
	}
	// Inside a batch: the commands around it apply, its result is nil.
	batch, err := EncodeBatch([][]byte{
		mustEncode(t, &JobCreate{Now: h.now, Jobs: []JobSpec{{Command: "b", Retry: 1}}}),
		rawEntry(newType),
		mustEncode(t, &JobCreate{Now: h.now, Jobs: []JobSpec{{Command: "c", Retry: 1}}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.index++
	res, _ := h.fsm.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: batch}).([]any)
	if len(res) != 3 || res[1] != nil || fmt.Sprint(res[0], res[2]) != "[2] [3]" {
		t.Fatalf("batch results %v", res)
	}
	if h.fsm.HaltErr() != nil {
		t.Fatalf("halted: %v", h.fsm.HaltErr())
	}
	h.create(JobSpec{Command: "d"})
	if h.st().JobCount() != 4 {
		t.Fatalf("%d jobs, want 4", h.st().JobCount())
	}
}

func TestUnknownTypeHalts(t *testing.T) {
	for _, inBatch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", inBatch), func(t *testing.T) {
			h := newHarness(t)
			h.create(JobSpec{Command: "a"})
			before := h.st().Digest()
			entry := rawEntry(100)
			if inBatch {
				// The create ahead of it must not apply either: a
				// batch is applied whole or, halted, not at all.
				var err error
				entry, err = EncodeBatch([][]byte{
					mustEncode(t, &JobCreate{Now: h.now, Jobs: []JobSpec{{Command: "b", Retry: 1}}}),
					rawEntry(100),
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			h.index++
			res := h.fsm.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: entry})
			var he *HaltError
			if err, _ := res.(error); !errors.Is(err, ErrHalted) || !errors.As(err, &he) {
				t.Fatalf("unknown type: %v", res)
			}
			if he.Index != h.index || he.Type != 100 || he.InBatch != inBatch {
				t.Fatalf("halt error %+v", he)
			}
			select {
			case <-h.fsm.Halted():
			default:
				t.Fatal("Halted not closed")
			}
			// Every later entry is refused with the same error, and
			// nothing changes.
			for _, cmd := range []Command{&JobCreate{Now: h.now, Jobs: []JobSpec{{Command: "c"}}}, &NodeMeta{ID: "x"}} {
				h.index++
				if err, _ := h.fsm.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: mustEncode(t, cmd)}).(error); err != he {
					t.Fatalf("%T after the halt: %v", cmd, err)
				}
			}
			if h.st().Digest() != before || h.st().AppliedIndex() != 1 {
				t.Fatalf("a halted FSM changed (applied index %d)", h.st().AppliedIndex())
			}
			if snap, err := h.fsm.Snapshot(); !errors.Is(err, ErrHalted) || snap != nil {
				t.Fatalf("a halted FSM took a snapshot: %v", err)
			}
			var buf bytes.Buffer
			if err := testFSM(t).State().WriteSnapshot(&buf); err != nil {
				t.Fatal(err)
			}
			if err := h.fsm.Restore(io.NopCloser(&buf)); !errors.Is(err, ErrHalted) {
				t.Fatalf("a halted FSM restored: %v", err)
			}
		})
	}
}

// A malformed entry of a known type is refused alike on every replica, as
// before: it does not halt.
func TestMalformedKnownEntryIsRefused(t *testing.T) {
	h := newHarness(t)
	before := h.st().Digest()
	for _, entry := range [][]byte{{byte(MsgJobCreate), 0xc1}, {byte(MsgReport)}, {}} {
		h.index++
		if err, _ := h.fsm.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: entry}).(error); !errors.Is(err, ErrBadEntry) || errors.Is(err, ErrUnknownType) {
			t.Fatalf("malformed %x: %v", entry, err)
		}
	}
	if h.fsm.HaltErr() != nil || h.st().Digest() != before {
		t.Fatalf("a malformed entry halted (%v) or changed the state", h.fsm.HaltErr())
	}
	h.create(JobSpec{Command: "a"})
}

func mustEncode(t *testing.T, cmd Command) []byte {
	t.Helper()
	b, err := Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ApplyBatch (raft hands committed entries over in batches) follows the
// same rules entry by entry: the entries ahead of one that halts apply,
// it and every later one get the halt error.
func TestApplyBatchHaltsAtTheUnknownEntry(t *testing.T) {
	h := newHarness(t)
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: mustEncode(t, &JobCreate{Now: h.now, Jobs: []JobSpec{{Command: "a"}}})},
		{Index: 2, Type: raft.LogCommand, Data: rawEntry(MessageType(100) | IgnoreUnknownTypeFlag)},
		{Index: 3, Type: raft.LogCommand, Data: rawEntry(101)},
		{Index: 4, Type: raft.LogCommand, Data: mustEncode(t, &JobCreate{Now: h.now, Jobs: []JobSpec{{Command: "b"}}})},
	}
	res := h.fsm.ApplyBatch(logs)
	if fmt.Sprint(res[0]) != "[1]" || res[1] != nil {
		t.Fatalf("results before the halt: %v", res[:2])
	}
	for _, r := range res[2:] {
		if err, _ := r.(error); !errors.Is(err, ErrHalted) {
			t.Fatalf("result after the halt: %v", r)
		}
	}
	if h.st().JobCount() != 1 || h.st().AppliedIndex() != 2 {
		t.Fatalf("%d jobs, applied index %d: want 1 job, index 2", h.st().JobCount(), h.st().AppliedIndex())
	}
}

// Entries written before a SetRelease apply by release 0's rules, the
// ones after it by this release's, on every replica at the same index; a
// snapshot keeps the release in force.
func TestSetReleaseSwitchesTheRules(t *testing.T) {
	f := releaseZeroFSM(t)
	index := uint64(0)
	apply := func(cmd Command) any {
		t.Helper()
		index++
		return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: mustEncode(t, cmd)})
	}
	now := int64(1_700_000_000e9)
	apply(&JobCreate{Now: now, Jobs: []JobSpec{{Command: "a", Retry: 3}}})
	a, _ := apply(&Pick{Now: now, Worker: "w"}).(*Assignment)
	if a == nil || a.Try != 0 {
		t.Fatalf("release 0 pick: %+v, want try 0 (no try numbers)", a)
	}
	apply(&Report{Now: now, Worker: "w", AttemptID: a.AttemptID, LogOffset: 0, Done: true, ExitCode: 3})
	if r, _ := f.State().RunByID(a.AttemptID); r.End != 0 || r.ExitCode != 0 {
		t.Fatalf("release 0 run end: %+v", r)
	}
	if res := apply(&SetRelease{Release: Release}); res != nil || f.State().Release() != Release {
		t.Fatalf("SetRelease: %v, release %d", res, f.State().Release())
	}
	b, _ := apply(&Pick{Now: now, Worker: "w"}).(*Assignment)
	if b == nil || b.Try != 1 {
		t.Fatalf("release %d pick: %+v, want try 1", Release, b)
	}
	apply(&Report{Now: now + 1e9, Worker: "w", AttemptID: b.AttemptID, LogOffset: 0, Done: true, ExitCode: 4})
	if r, _ := f.State().RunByID(b.AttemptID); r.End != now+1e9 || r.ExitCode != 4 {
		t.Fatalf("release %d run end: %+v", Release, r)
	}
	// A lower release changes nothing; the release survives a snapshot.
	apply(&SetRelease{Release: 0})
	var buf bytes.Buffer
	if err := f.State().WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	restored := releaseZeroFSM(t)
	if err := restored.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if restored.State().Release() != Release {
		t.Fatalf("restored release %d, want %d", restored.State().Release(), Release)
	}
	// A newer release's rules are not known here: the replica halts.
	res := apply(&SetRelease{Release: Release + 1})
	var he *HaltError
	if err, _ := res.(error); !errors.As(err, &he) || he.Release != Release+1 || errors.Is(err, ErrUnknownType) {
		t.Fatalf("SetRelease %d: %v", Release+1, res)
	}
}
