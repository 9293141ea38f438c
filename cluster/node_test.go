package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/croftfarm/croft/internal/testwait"
	"github.com/croftfarm/croft/raftstore"
)

// Test Raft timing: short, with slack for -race on a busy 2-core machine.
const (
	testHeartbeat     = 400 * time.Millisecond
	testLease         = 200 * time.Millisecond
	testStabilization = 250 * time.Millisecond
)

// testNode is one member of an in-process test cluster: a Node and nothing
// else, no HTTP (the coordinator's tests run the same over HTTP).
type testNode struct {
	id       string
	dir      string
	raftAddr string
	node     *Node
	stopOnce sync.Once
	stopFn   func()
}

func (m *testNode) stop() { m.stopOnce.Do(m.stopFn) }

func testLogger() *slog.Logger {
	if os.Getenv("CROFT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testCluster is a Joiner that asks its members' ready leader directly, as
// the coordinator's HTTP client does by following the leader.
type testCluster struct {
	mu      sync.Mutex
	members []*testNode
}

func (c *testCluster) add(ms ...*testNode) {
	c.mu.Lock()
	c.members = append(c.members, ms...)
	c.mu.Unlock()
}

func (c *testCluster) Join(ctx context.Context, req JoinRequest) error {
	c.mu.Lock()
	ms := append([]*testNode(nil), c.members...)
	c.mu.Unlock()
	for _, m := range ms {
		if m.node.IsLeader() {
			return m.node.Join(ctx, req)
		}
	}
	return ErrNoLeader
}

// startTestNode starts a member, stopped when owner ends. raftAddr ""
// picks a free port; a restart passes the old address (the Raft
// configuration records it).
func startTestNode(t, owner *testing.T, id, dir, raftAddr string, bootstrap bool, join Joiner, tune func(*Config)) *testNode {
	t.Helper()
	if raftAddr == "" {
		raftAddr = "127.0.0.1:0"
	}
	cfg := Config{
		NodeID: id, DataDir: dir, RaftAddr: raftAddr, HTTPAddr: id + ".invalid:1",
		Bootstrap: bootstrap, Join: join,
		HeartbeatTimeout: testHeartbeat, ElectionTimeout: testHeartbeat,
		LeaderLeaseTimeout: testLease, CommitTimeout: 10 * time.Millisecond,
		StabilizationTime: testStabilization,
		Logger:            testLogger().With("test", t.Name()),
	}
	if tune != nil {
		tune(&cfg)
	}
	var n *Node
	var err error
	// A restarted node rebinds its old Raft port; retry while it is busy.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err = NewNode(cfg, nil)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			t.Fatalf("NewNode %s: %v", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := &testNode{id: id, dir: dir, raftAddr: n.RaftAddr(), node: n}
	m.stopFn = func() {
		if err := n.Shutdown(); err != nil {
			owner.Errorf("shutdown %s: %v", id, err)
		}
	}
	owner.Cleanup(m.stop)
	return m
}

// eventually polls cond until it holds or the timeout ends.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testwait.Until(t, timeout, what, cond)
}

// waitLeader waits for a ready leader among ms.
func waitLeader(t *testing.T, ms ...*testNode) *testNode {
	t.Helper()
	var leader *testNode
	eventually(t, 15*time.Second, "a ready leader", func() (bool, string) {
		for _, m := range ms {
			if m.node.IsLeader() {
				leader = m
				return true, ""
			}
		}
		return false, "no member is a ready leader"
	})
	return leader
}

// waitVoters waits until m's configuration has exactly these voters and its
// FSM knows the HTTP address of each.
func waitVoters(t *testing.T, m *testNode, ids ...string) {
	t.Helper()
	want := strings.Join(ids, ",")
	eventually(t, 15*time.Second, m.id+" sees voters "+want, func() (bool, string) {
		var got []string
		for _, mem := range m.node.Status().Members {
			if mem.Suffrage != "Voter" || mem.HTTPAddr == "" {
				return false, fmt.Sprintf("member %+v", mem)
			}
			got = append(got, mem.ID)
		}
		return strings.Join(got, ",") == want, "voters " + strings.Join(got, ",")
	})
}

func testCreate(ctx context.Context, n *Node, title string) (int64, error) {
	res, err := n.Apply(ctx, raftstore.JobCreate{Now: time.Now().UnixNano(), Jobs: []raftstore.JobSpec{{Title: title, Command: "true"}}})
	if err != nil {
		return 0, err
	}
	return res.([]int64)[0], nil
}

// TestClusterWithoutHTTP runs three nodes in one process with nothing but
// this package: a bootstrap, two joins through a Joiner, their promotion,
// writes on the leader (one entry per group), refusals on a follower,
// replication, a removal and a failover.
func TestClusterWithoutHTTP(t *testing.T) {
	base := t.TempDir()
	reg := &testCluster{}
	var commits atomic.Int64
	count := func(c *Config) { c.OnCommit = func(time.Duration, int) { commits.Add(1) } }
	n1 := startTestNode(t, t, "n1", filepath.Join(base, "n1"), "", true, nil, count)
	reg.add(n1)
	waitLeader(t, n1)
	n2 := startTestNode(t, t, "n2", filepath.Join(base, "n2"), "", false, reg, count)
	n3 := startTestNode(t, t, "n3", filepath.Join(base, "n3"), "", false, reg, count)
	reg.add(n2, n3)
	ms := []*testNode{n1, n2, n3}
	for _, m := range ms {
		waitVoters(t, m, "n1", "n2", "n3")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	leader := waitLeader(t, ms...)
	acked := map[int64]string{}
	for i := range 5 {
		title := fmt.Sprint("job ", i)
		id, err := testCreate(ctx, leader.node, title)
		if err != nil {
			t.Fatalf("create on the leader: %v", err)
		}
		acked[id] = title
	}
	// A group is applied in one entry, in order; a refused command is
	// an error value in its place, the others apply.
	before := leader.node.Raft().LastIndex()
	out, err := leader.node.ApplyGroup(ctx,
		raftstore.JobCreate{Now: 1, Jobs: []raftstore.JobSpec{{Title: "grouped", Command: "true"}}},
		raftstore.JobDelete{Now: 1, IDs: []int64{1 << 40}},
	)
	if err != nil || len(out) != 2 {
		t.Fatalf("ApplyGroup: %v %v", out, err)
	}
	if ids, ok := out[0].([]int64); !ok || len(ids) != 1 {
		t.Fatalf("grouped create: %#v", out[0])
	} else {
		acked[ids[0]] = "grouped"
	}
	if e, ok := out[1].(error); !ok || !errors.Is(e, raftstore.ErrNotFound) {
		t.Fatalf("grouped delete of an unknown job: %#v, want ErrNotFound", out[1])
	}
	if got := leader.node.Raft().LastIndex(); got != before+1 {
		t.Fatalf("the group took %d entries", got-before)
	}
	for _, m := range ms {
		if m == leader {
			continue
		}
		if _, err := testCreate(ctx, m.node, "on a follower"); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("write on follower %s: %v, want ErrNotLeader", m.id, err)
		}
		if err := m.node.Remove(ctx, "n1"); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("remove on follower %s: %v, want ErrNotLeader", m.id, err)
		}
	}
	for _, m := range ms {
		eventually(t, 15*time.Second, m.id+" has every acknowledged job", func() (bool, string) {
			st := m.node.FSM().State()
			for id, title := range acked {
				if j, ok := st.Job(id); !ok || j.Title != title {
					return false, fmt.Sprintf("job %d: %+v %v", id, j, ok)
				}
			}
			return true, ""
		})
	}
	st := leader.node.Status()
	if st.NodeID != leader.id || st.LeaderID != leader.id || st.State != "Leader" || len(st.Members) != 3 || st.RaftLogBytes == 0 {
		t.Fatalf("leader status %+v", st)
	}
	for _, mem := range st.Members {
		if mem.ID != leader.id && (mem.CaughtUp == nil || !*mem.CaughtUp) {
			t.Fatalf("leader's view of %s: %+v", mem.ID, mem)
		}
		if mem.Reachable == nil || !*mem.Reachable {
			t.Fatalf("leader's view of %s: not reachable: %+v", mem.ID, mem)
		}
	}
	if leader.node.LeaderChanges() == 0 {
		t.Fatal("no leader change counted")
	}
	if commits.Load() == 0 {
		t.Fatal("OnCommit was never called")
	}
	if _, err := leader.node.Snapshot(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}

	// Remove a follower, then stop the leader: the last two elect one.
	var gone *testNode
	for _, m := range ms {
		if m != leader {
			gone = m
			break
		}
	}
	// A dead member shows as unreachable in the leader's status (it was
	// listed as a healthy voter: issue 12).
	gone.stop()
	eventually(t, 15*time.Second, gone.id+" unreachable", func() (bool, string) {
		for _, mem := range leader.node.Status().Members {
			if mem.ID == gone.id {
				return mem.Reachable != nil && !*mem.Reachable, fmt.Sprintf("%+v", mem)
			}
		}
		return false, "not a member"
	})
	if err := leader.node.Remove(ctx, gone.id); err != nil {
		t.Fatalf("remove %s: %v", gone.id, err)
	}
	if err := leader.node.Remove(ctx, "nobody"); !errors.Is(err, raftstore.ErrNotFound) {
		t.Fatalf("remove of an unknown node: %v, want ErrNotFound", err)
	}
	gone.stop()
	var rest []*testNode
	for _, m := range ms {
		if m != gone {
			rest = append(rest, m)
		}
	}
	ids := []string{rest[0].id, rest[1].id}
	waitVoters(t, rest[0], ids...)
	leader.stop()
	var last *testNode
	for _, m := range rest {
		if m != leader {
			last = m
		}
	}
	// One voter of two left: no quorum. It cannot lead, and says so.
	if _, err := testCreate(ctx, last.node, "no quorum"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("write without a quorum: %v, want ErrNotLeader", err)
	}
}

// A node started on a fresh data dir without Bootstrap or Join says so
// (Unconfigured), until a leader adds it.
func TestUnconfiguredNode(t *testing.T) {
	base := t.TempDir()
	n1 := startTestNode(t, t, "n1", filepath.Join(base, "n1"), "", true, nil, nil)
	waitLeader(t, n1)
	if n1.node.Unconfigured() {
		t.Fatal("a bootstrapped node is unconfigured")
	}
	n2 := startTestNode(t, t, "n2", filepath.Join(base, "n2"), "", false, nil, nil)
	if !n2.node.Unconfigured() {
		t.Fatal("a node without state, bootstrap or join is not unconfigured")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n1.node.Join(ctx, JoinRequest{NodeID: "n2", RaftAddr: n2.raftAddr, HTTPAddr: "n2.invalid:1"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "n2 added", func() (bool, string) { return !n2.node.Unconfigured(), "still unconfigured" })
}

// TestNodeConfig checks the refusals of NewNode.
func TestNodeConfig(t *testing.T) {
	if _, err := NewNode(Config{NodeID: "x"}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("missing DataDir and RaftAddr: %v", err)
	}
	join := JoinFunc(func(context.Context, JoinRequest) error { return nil })
	if _, err := NewNode(Config{NodeID: "x", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", Bootstrap: true, Join: join}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Bootstrap with Join: %v", err)
	}
	if _, err := NewNode(Config{NodeID: "x", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", Recover: "peers.json", Join: join}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Recover with Join: %v", err)
	}
}
