package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/raftstore"
)

func TestLogSizesFollowTheLog(t *testing.T) {
	s := newLogSizes(100)
	entry := func(idx uint64, size int) *raft.Log {
		return &raft.Log{Index: idx, Type: raft.LogCommand, Data: make([]byte, size)}
	}
	due := func() bool {
		select {
		case <-s.due:
			return true
		default:
			return false
		}
	}
	s.stored([]*raft.Log{entry(1, 10), entry(2, 20), entry(3, 30)})
	if got := s.total(); got != 60 || due() {
		t.Fatalf("3 entries: %d bytes, due %v", got, due())
	}
	if got, all := s.trailing(50); got != 2 || all {
		t.Fatalf("trailing(50) = %d, %v, want 2 (the last entries, 20 + 30 bytes)", got, all)
	}
	if got, _ := s.trailing(49); got != 1 {
		t.Fatalf("trailing(49) = %d, want 1", got)
	}
	if got, all := s.trailing(1000); got != 3 || !all {
		t.Fatalf("trailing(1000) = %d, %v, want 3, all", got, all)
	}
	// A new leader replaces the tail from 3 on.
	s.stored([]*raft.Log{entry(3, 5), entry(4, 5)})
	if got := s.total(); got != 40 {
		t.Fatalf("after replacing the tail: %d bytes, want 40", got)
	}
	// Past the threshold since the last snapshot: due, once.
	s.stored([]*raft.Log{entry(5, 70)})
	if !due() {
		t.Fatal("110 bytes since no snapshot: not due")
	}
	s.stored([]*raft.Log{entry(6, 1)})
	if due() {
		t.Fatal("due again before another threshold of bytes was written")
	}
	// The snapshot up to 5, then compaction keeping 6 only.
	s.snapshotted(5)
	if got := s.sinceSnapshot(); got != 1 {
		t.Fatalf("since the snapshot: %d bytes, want 1", got)
	}
	s.deleted(1, 5)
	if got := s.total(); got != 1 {
		t.Fatalf("after compaction: %d bytes, want 1", got)
	}
	// A snapshot that failed leaves the bytes since the last one high:
	// the next try waits for another threshold of writes.
	s.stored([]*raft.Log{entry(7, 150)})
	if !due() {
		t.Fatal("151 bytes since the snapshot: not due")
	}
	s.stored([]*raft.Log{entry(8, 50)})
	if due() {
		t.Fatal("due again at once after a try")
	}
	s.stored([]*raft.Log{entry(9, 60)})
	if !due() {
		t.Fatal("a threshold written since the last try: not due")
	}
	// A follower's conflicting tail is deleted.
	s.deleted(8, 9)
	if got := s.total(); got != 151 {
		t.Fatalf("after deleting the tail: %d bytes, want 151", got)
	}
	// A gap (a snapshot installed past the log) starts over.
	s.stored([]*raft.Log{entry(20, 3)})
	if got := s.total(); got != 3 {
		t.Fatalf("after a gap: %d bytes, want 3", got)
	}
}

// applyOK applies cmd on n and fails the test on error.
func applyOK(t *testing.T, n *Node, cmd raftstore.Command) any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := n.Apply(ctx, cmd)
	if err != nil {
		t.Fatalf("apply %T: %v", cmd, err)
	}
	return res
}

// TestCompactionBySize writes 20 times the log's byte budget as job output
// (64 KiB per entry, far from the entry-count thresholds) and checks that
// snapshots are taken by size and that raft.db stays within a few times the
// budget.
func TestCompactionBySize(t *testing.T) {
	const (
		chunk      = 64 << 10
		snapBytes  = 8 * chunk
		trailBytes = 10 * chunk // past the floor of 8 entries
		budget     = snapBytes + trailBytes
	)
	dir := t.TempDir()
	tune := func(c *Config) {
		c.SnapshotBytes, c.TrailingBytes = snapBytes, trailBytes
		c.SnapshotThreshold, c.SnapshotInterval = 1<<30, time.Hour // never by count
	}
	m := startTestNode(t, t, "c1", dir, "", true, nil, tune)
	waitLeader(t, m)
	n := m.node
	id := applyOK(t, n, raftstore.JobCreate{Now: 1, Jobs: []raftstore.JobSpec{{Title: "noisy", Command: "yes"}}}).([]int64)[0]
	a := applyOK(t, n, raftstore.Pick{Now: 2, Worker: "w1"}).(*raftstore.Assignment)
	if a == nil || a.JobID != id {
		t.Fatalf("pick: %+v", a)
	}
	out := bytes.Repeat([]byte("frame 0001 rendered in 12.5 s\n"), chunk/30+1)[:chunk]
	db := filepath.Join(dir, "raft.db")
	var maxDB, maxLog int64
	snaps := map[string]bool{}
	written := 0
	for off := int64(0); written < 20*budget; off += chunk {
		// The job's stored log is capped small: the state (and so each
		// snapshot) stays small while every entry carries 256 KiB.
		applyOK(t, n, raftstore.Report{Now: 3, Worker: "w1", JobID: id, AttemptID: a.AttemptID, LogOffset: off, Log: out, LogCap: 64 << 10})
		written += chunk
		fi, err := os.Stat(db)
		if err != nil {
			t.Fatal(err)
		}
		maxDB = max(maxDB, fi.Size())
		maxLog = max(maxLog, n.sizes.total())
		snaps[n.Raft().Stats()["last_snapshot_index"]] = true
	}
	st := n.Status()
	t.Logf("wrote %d MiB in %d entries of %d KiB; %d snapshots seen; raft.db max %.1f MiB, now %.1f MiB; log max %.1f MiB, now %.1f MiB; trailing logs %d",
		written>>20, written/chunk, chunk>>10, len(snaps)-1, float64(maxDB)/(1<<20), float64(st.RaftDBBytes)/(1<<20),
		float64(maxLog)/(1<<20), float64(st.RaftLogBytes)/(1<<20), n.Raft().ReloadableConfig().TrailingLogs)
	if len(snaps) < 5 {
		t.Errorf("%d snapshots seen for %d times the threshold written", len(snaps)-1, written/snapBytes)
	}
	if maxDB > 4*budget {
		t.Errorf("raft.db reached %d bytes, over 4 times the budget (%d) while %d were written", maxDB, budget, written)
	}
	if got := n.Raft().ReloadableConfig().TrailingLogs; got < nodeMinTrailingLogs || got > trailBytes/chunk {
		t.Errorf("trailing logs %d, want the entries that fit in %d bytes (under %d)", got, trailBytes, trailBytes/chunk)
	}
	if first, _ := n.store.FirstIndex(); first < 10 {
		t.Errorf("first log index %d: the log was not compacted", first)
	}

	// A restart counts the log it finds (compaction by size off, so that
	// it does not compact meanwhile).
	m.stop()
	before := n.sizes.total() // final: a snapshot may have run until the stop
	r := startTestNode(t, t, "c1", dir, m.raftAddr, true, nil, func(c *Config) {
		tune(c)
		c.SnapshotBytes = -1
	})
	if got := r.node.sizes.total(); got != before {
		t.Errorf("after a restart the log weighs %d bytes, it was %d", got, before)
	}
}

// countingSink is a snapshot sink that only counts bytes.
type countingSink struct{ n int64 }

func (s *countingSink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }
func (s *countingSink) Close() error                { return nil }
func (s *countingSink) ID() string                  { return "count" }
func (s *countingSink) Cancel() error               { return nil }

// snapshotBytesPerJob builds a state of jobs with short titles (finished
// ones also ran once, which leaves an attempt record) and returns the
// size of its snapshot per job.
func snapshotBytesPerJob(tb testing.TB, jobs int, finished bool) float64 {
	f, err := raftstore.NewFSM(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var index uint64
	apply := func(cmd raftstore.Command) any {
		data, err := raftstore.Encode(cmd)
		if err != nil {
			tb.Fatal(err)
		}
		index++
		res := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
		if err, ok := res.(error); ok {
			tb.Fatal(err)
		}
		return res
	}
	const per = 10_000
	for done := 0; done < jobs; done += per {
		specs := make([]raftstore.JobSpec, 0, per)
		for i := done; i < jobs && i < done+per; i++ {
			specs = append(specs, raftstore.JobSpec{Title: fmt.Sprintf("shot %06d", i), Command: fmt.Sprintf("render -f %d scene.blend", i), User: "anna"})
		}
		apply(&raftstore.JobCreate{Now: 1, Jobs: specs})
	}
	if finished {
		for range jobs {
			a := apply(&raftstore.Pick{Now: 2, Worker: "w1"}).(*raftstore.Assignment)
			apply(&raftstore.Report{Now: 3, Worker: "w1", JobID: a.JobID, AttemptID: a.AttemptID, Done: true})
		}
	}
	snap, err := f.Snapshot()
	if err != nil {
		tb.Fatal(err)
	}
	sink := &countingSink{}
	if err := snap.Persist(sink); err != nil {
		tb.Fatal(err)
	}
	return float64(sink.n) / float64(jobs)
}

// TestSnapshotBytesPerJob checks the figure DESIGN.md and OPERATIONS.md
// use for the state's size: about half a kilobyte per job.
func TestSnapshotBytesPerJob(t *testing.T) {
	waiting := snapshotBytesPerJob(t, 10_000, false)
	finished := snapshotBytesPerJob(t, 2_000, true)
	t.Logf("snapshot bytes per job: %.0f waiting, %.0f finished", waiting, finished)
	if waiting > 1024 || finished > 1024 {
		t.Errorf("snapshot bytes per job: %.0f waiting, %.0f finished; the docs say about 500", waiting, finished)
	}
}

// BenchmarkSnapshotBytesPerJob reports the snapshot size per job of a
// 100,000-job state (go test -run '^$' -bench SnapshotBytesPerJob
// ./cluster/).
func BenchmarkSnapshotBytesPerJob(b *testing.B) {
	for _, finished := range []bool{false, true} {
		name := "waiting"
		if finished {
			name = "finished"
		}
		b.Run(name, func(b *testing.B) {
			var per float64
			for range b.N {
				per = snapshotBytesPerJob(b, 100_000, finished)
			}
			b.ReportMetric(per, "bytes/job")
		})
	}
}

// failingStable fails its first `fails` SetUint64 calls with ENOSPC.
type failingStable struct {
	Store
	fails int
	tries int
}

func (s *failingStable) SetUint64(k []byte, v uint64) error {
	s.tries++
	if s.tries <= s.fails {
		return &os.PathError{Op: "write", Path: "raft.db", Err: syscall.ENOSPC}
	}
	return s.Store.SetUint64(k, v)
}

// TestSavingTheTermWaitsForRoom checks the stable store's failures: Raft
// panics when it cannot save its term, so that write is retried until it
// works (or the node stops); the vote's failure is returned at once.
func TestSavingTheTermWaitsForRoom(t *testing.T) {
	health := &diskHealth{log: testLogger()}
	inner := &failingStable{Store: raft.NewInmemStore(), fails: 3}
	stop := make(chan struct{})
	s := &diskStore{Store: inner, id: "s1", health: health, sizes: newLogSizes(0), shutdown: stop, retry: time.Millisecond}

	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil || inner.tries != 4 {
		t.Fatalf("saving the term: %v after %d tries, want success after 4", err, inner.tries)
	}
	if v, err := inner.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 || health.current() != nil {
		t.Fatalf("term %d %v, failure %+v", v, err, health.current())
	}

	inner.tries, inner.fails = 0, 1
	err := s.SetUint64([]byte("LastVoteTerm"), 7)
	if !errors.Is(err, ErrStorage) || !errors.Is(err, syscall.ENOSPC) || inner.tries != 1 {
		t.Fatalf("saving the vote: %v after %d tries, want ErrStorage and ENOSPC at once", err, inner.tries)
	}
	if f := health.current(); f == nil || !isDiskFull(f.err) {
		t.Fatalf("failure recorded: %+v", f)
	}

	close(stop)
	inner.tries, inner.fails = 0, 1<<30
	if err := s.SetUint64([]byte("CurrentTerm"), 8); !errors.Is(err, ErrStorage) {
		t.Fatalf("saving the term while stopping: %v", err)
	}
}
