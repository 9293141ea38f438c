package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
)

// startDiskServer starts a one-node coordinator without access control,
// as startServerWith, with tune adjusting its node's Config.
func startDiskServer(t *testing.T, dir string, tune func(*cluster.Config)) *serverTest {
	t.Helper()
	return startServerIn(t, dir, ServerConfig{WorkerTTL: time.Hour, Auth: auth.Config{Insecure: true}, LeaderWait: 2 * time.Second}, func(c *cluster.Config) {
		c.DiskPoll = 20 * time.Millisecond
		if tune != nil {
			tune(c)
		}
	})
}

// fullStore fails every StoreLogs with ENOSPC while full is set, as bbolt
// does when its file cannot grow.
type fullStore struct {
	cluster.Store
	path string
	full *atomic.Bool
}

func (s *fullStore) StoreLogs(logs []*raft.Log) error {
	if s.full.Load() {
		return &os.PathError{Op: "write", Path: s.path, Err: syscall.ENOSPC}
	}
	return s.Store.StoreLogs(logs)
}

func (s *fullStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// TestDiskFullAnswers507 makes the node's log store fail with ENOSPC: a
// write gets 507 with the node and the cause, not 503 "no leader", and the
// status says so; once the fault is gone, writes work again without a
// restart and every acknowledged write is still there.
func TestDiskFullAnswers507(t *testing.T) {
	full := &atomic.Bool{}
	dir := t.TempDir()
	s := startDiskServer(t, dir, func(c *cluster.Config) {
		c.WrapStore = func(ns cluster.Store) cluster.Store {
			return &fullStore{Store: ns, path: filepath.Join(dir, "raft.db"), full: full}
		}
	})
	t.Cleanup(func() { full.Store(false) }) // before the server stops
	ctx := s.ctx(t)
	acked := map[int64]string{}
	for i := range 3 {
		title := fmt.Sprintf("before %d", i)
		id, err := s.c.CreateJob(ctx, client.NewJob{Title: title, Command: "true"})
		if err != nil {
			t.Fatal(err)
		}
		acked[id] = title
	}

	full.Store(true)
	check507 := func(what string, err error) {
		t.Helper()
		var se *client.StatusError
		if !errors.As(err, &se) || se.Code != 507 || !strings.Contains(se.Message, "no space left on device") || !strings.Contains(se.Message, "node s1") {
			t.Fatalf("%s with a full disk: %v, want 507 naming the node and the cause", what, err)
		}
		t.Logf("%s: %v", what, err)
	}
	// The ready leader cannot store the entry.
	_, err := s.c.CreateJob(ctx, client.NewJob{Title: "lost 1", Command: "true"})
	check507("a write to the leader", err)
	// It stepped down, and steps down again at every election: no leader.
	_, err = s.c.CreateJob(ctx, client.NewJob{Title: "lost 2", Command: "true"})
	check507("a write without a leader", err)
	st, err := s.c.Status(ctx, s.url)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.StorageError, "no space left on device") || !st.DiskFull || st.StorageErrorAt == nil || st.DiskTotalBytes == 0 {
		t.Fatalf("status with a full disk: %+v", st)
	}

	// Space is back: Raft elects the node again, nothing to restart.
	full.Store(false)
	nodeEventually(t, 15*time.Second, "a ready leader again", func() (bool, string) { return s.srv.Node().IsLeader(), "" })
	id, err := s.c.CreateJob(ctx, client.NewJob{Title: "after", Command: "true"})
	if err != nil {
		t.Fatalf("write once the disk has room: %v", err)
	}
	acked[id] = "after"
	for id, title := range acked {
		if j, err := s.c.Job(ctx, id); err != nil || j.Title != title {
			t.Fatalf("acknowledged job %d: %+v %v", id, j, err)
		}
	}
	// The refused writes were not applied.
	if n := s.srv.Node().FSM().State().JobCount(); n != len(acked) {
		t.Fatalf("%d jobs, %d acknowledged", n, len(acked))
	}
	if st, err := s.c.Status(ctx, s.url); err != nil || st.StorageError != "" || st.DiskFull || st.StorageErrorAt != nil {
		t.Fatalf("status once writes succeed: %+v %v", st, err)
	}
}

// TestDiskFullOnTmpfs fills a real (tmpfs) file system under a coordinator:
// a report that does not fit answers 507 with the cause, the status shows
// it, and once the filler is deleted the same report goes through and
// every acknowledged write is intact. It needs to mount (root).
func TestDiskFullOnTmpfs(t *testing.T) {
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64m"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): this test needs root", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	s := startDiskServer(t, filepath.Join(mnt, "data"), func(c *cluster.Config) {
		c.SnapshotBytes, c.TrailingBytes = 8<<20, 4<<20
	})
	filler := filepath.Join(mnt, "filler")
	t.Cleanup(func() { os.Remove(filler) }) // before the server stops
	ctx := s.ctx(t)
	if err := s.c.Register(ctx, client.RegisterRequest{Name: "a1"}); err != nil {
		t.Fatal(err)
	}
	noisy, err := s.c.CreateJob(ctx, client.NewJob{Title: "noisy", Command: "yes"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.c.Pull(ctx, client.PullRequest{Name: "a1"})
	if err != nil || a == nil || a.JobID != noisy {
		t.Fatalf("pull: %+v %v", a, err)
	}
	acked := map[int64]string{noisy: "noisy"}
	for i := range 2 {
		title := fmt.Sprintf("queued %d", i)
		id, err := s.c.CreateJob(ctx, client.NewJob{Title: title, Command: "true"})
		if err != nil {
			t.Fatal(err)
		}
		acked[id] = title
	}
	first := bytes.Repeat([]byte("a"), 64<<10)
	if r, err := s.c.Report(ctx, client.ReportRequest{Name: "a1", JobID: noisy, AttemptID: a.AttemptID, Log: first}); err != nil || !r.Accepted {
		t.Fatalf("first report: %+v %v", r, err)
	}

	// Fill the file system.
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 1<<20)
	for {
		if _, err = f.Write(block); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the disk: %v", err)
	}
	second := bytes.Repeat([]byte("b"), 512<<10)
	rep := client.ReportRequest{Name: "a1", JobID: noisy, AttemptID: a.AttemptID, LogOffset: int64(len(first)), Log: second}
	_, err = s.c.Report(ctx, rep)
	var se *client.StatusError
	if !errors.As(err, &se) || se.Code != 507 || !strings.Contains(se.Message, "no space left on device") || !strings.Contains(se.Message, "node s1") {
		t.Fatalf("report with a full disk: %v, want 507 naming the node and the cause", err)
	}
	t.Logf("report with a full disk: %v", err)
	var st client.ClusterStatus
	nodeEventually(t, 10*time.Second, "the status to show the full disk", func() (bool, string) {
		st, err = s.c.Status(ctx, s.url)
		return err == nil && st.DiskFull && strings.Contains(st.StorageError, "no space left on device") && st.DiskFreeBytes < 1<<20,
			fmt.Sprintf("%+v %v", st, err)
	})
	t.Logf("status: storage_error %q, disk_free_bytes %d of %d, raft_db_bytes %d", st.StorageError, st.DiskFreeBytes, st.DiskTotalBytes, st.RaftDBBytes)

	// Room again: the same report goes through, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	nodeEventually(t, 15*time.Second, "a ready leader", func() (bool, string) { return s.srv.Node().IsLeader(), "" })
	if r, err := s.c.Report(ctx, rep); err != nil || !r.Accepted {
		t.Fatalf("report once the disk has room: %+v %v", r, err)
	}
	if log, err := s.c.Log(ctx, noisy); err != nil || log != string(first)+string(second) {
		t.Fatalf("log of job %d: %d bytes, %v", noisy, len(log), err)
	}
	for id, title := range acked {
		if j, err := s.c.Job(ctx, id); err != nil || j.Title != title {
			t.Fatalf("acknowledged job %d: %+v %v", id, j, err)
		}
	}
	nodeEventually(t, 10*time.Second, "the status to clear", func() (bool, string) {
		st, err = s.c.Status(ctx, s.url)
		return err == nil && st.StorageError == "" && !st.DiskFull && st.DiskFreeBytes > 32<<20, fmt.Sprintf("%+v %v", st, err)
	})
}
