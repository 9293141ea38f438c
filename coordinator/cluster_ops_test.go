package coordinator

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
)

// Operations on a running cluster: planned restarts, long outages, five
// members, replacing a dead member.

func clusterOpsStart(t *testing.T, n int, tune func(*cluster.Config)) []*nodeTestMember {
	t.Helper()
	dir := t.TempDir()
	ms := []*nodeTestMember{nodeTestStartWith(t, t, "n1", filepath.Join(dir, "n1"), "", true, nil, tune)}
	nodeTestLeader(t, ms[0])
	for i := 2; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		ms = append(ms, nodeTestStartWith(t, t, id, filepath.Join(dir, id), "", false, []string{ms[0].url}, tune))
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%d", i+1)
	}
	nodeTestVoters(t, ms[0], ids...)
	return ms
}

func clusterOpsDigestsEqual(t *testing.T, ms ...*nodeTestMember) {
	t.Helper()
	nodeEventually(t, 15*time.Second, "equal digests", func() (bool, string) {
		want := ms[0].node.FSM().State().Digest()
		for _, m := range ms[1:] {
			if got := m.node.FSM().State().Digest(); got != want {
				return false, m.id + " differs from " + ms[0].id
			}
		}
		return true, ""
	})
}

func TestLeadershipTransferOnShutdown(t *testing.T) {
	ms := clusterOpsStart(t, 3, nil)
	leader := nodeTestLeader(t, ms...)
	term := leader.node.Raft().CurrentTerm()
	nodeTestCreate(t, leader, "before")
	// A graceful stop hands leadership over instead of leaving the others
	// to time out and elect.
	if err := leader.node.TransferLeadership(); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	var rest []*nodeTestMember
	for _, m := range ms {
		if m != leader {
			rest = append(rest, m)
		}
	}
	next := nodeTestLeader(t, rest...)
	if got := next.node.Raft().CurrentTerm(); got != term+1 {
		t.Fatalf("term went from %d to %d: an election happened rather than a transfer", term, got)
	}
	leader.stop()
	nodeTestCreate(t, next, "after")
	// A follower has nothing to hand over.
	if err := nodeTestFollower(rest, next).node.TransferLeadership(); err == nil {
		t.Fatal("a follower reported a transfer")
	}
}

func TestFollowerCatchesUpFromSnapshot(t *testing.T) {
	tune := func(c *cluster.Config) {
		c.SnapshotThreshold = 64
		c.TrailingLogs = 8
		c.SnapshotInterval = time.Hour // snapshots are taken by hand below
	}
	ms := clusterOpsStart(t, 3, tune)
	leader := nodeTestLeader(t, ms...)
	var down *nodeTestMember
	for _, m := range ms {
		if m != leader {
			down = m
			break
		}
	}
	down.stop()
	acked := map[int64]string{}
	for i := 0; i < 300; i++ {
		title := "while down " + strconv.Itoa(i)
		acked[nodeTestCreate(t, leader, title)] = title
	}
	// Compact the live members' logs: the entries the stopped node misses
	// are gone from whichever of them leads when it comes back (on a slow
	// machine leadership may move meanwhile).
	for _, m := range ms {
		if m != down {
			if err := m.node.Raft().Snapshot().Error(); err != nil {
				t.Fatalf("snapshot of %s: %v", m.id, err)
			}
		}
	}
	first, _ := leader.node.Raft().Stats()["last_snapshot_index"]
	back := nodeTestStartWith(t, t, down.id, down.dir, down.raftAddr, down.boot, down.join, tune)
	nodeTestHasJobs(t, back, acked)
	// It got there through an installed snapshot, not the log. Raft
	// records the installed snapshot only after the FSM restore returns,
	// so the jobs can be visible a moment before the index is.
	nodeEventually(t, 15*time.Second, "an installed snapshot", func() (bool, string) {
		got := back.node.Raft().Stats()["last_snapshot_index"]
		return got != "0" && got != "", "restarted node has no snapshot (leader's is at " + first + ")"
	})
	var all []*nodeTestMember
	for _, m := range ms {
		if m != down {
			all = append(all, m)
		}
	}
	clusterOpsDigestsEqual(t, append(all, back)...)
}

func TestFiveNodeClusterSurvivesTwoFailures(t *testing.T) {
	ms := clusterOpsStart(t, 5, nil)
	leader := nodeTestLeader(t, ms...)
	acked := map[int64]string{}
	for i := 0; i < 10; i++ {
		acked[nodeTestCreate(t, nodeTestFollower(ms, leader), "five "+strconv.Itoa(i))] = "five " + strconv.Itoa(i)
	}
	// Lose the leader and one follower: 3 of 5 remain, a quorum.
	leader.stop()
	var rest []*nodeTestMember
	stopped := 0
	for _, m := range ms {
		if m == leader {
			continue
		}
		if stopped == 0 {
			m.stop()
			stopped++
			continue
		}
		rest = append(rest, m)
	}
	next := nodeTestLeader(t, rest...)
	acked[nodeTestCreate(t, rest[0], "after two failures")] = "after two failures"
	for _, m := range rest {
		nodeTestHasJobs(t, m, acked)
	}
	if next.node.Raft().State() != raft.Leader {
		t.Fatal("leader lost")
	}
	clusterOpsDigestsEqual(t, rest...)
}

func TestReplaceDeadMember(t *testing.T) {
	ms := clusterOpsStart(t, 3, nil)
	leader := nodeTestLeader(t, ms...)
	var dead *nodeTestMember
	var live []*nodeTestMember
	for _, m := range ms {
		if m != leader && dead == nil {
			dead = m
			continue
		}
		live = append(live, m)
	}
	dead.stop() // for good: its disk is gone
	// The same calls `croft cluster remove|join` make, sent to a follower.
	c := client.New(live[len(live)-1].url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Remove(ctx, dead.id); err != nil {
		t.Fatalf("remove %s: %v", dead.id, err)
	}
	newcomer := nodeTestStart(t, t, "n4", filepath.Join(t.TempDir(), "n4"), "", false, []string{live[0].url})
	var ids []string
	for _, m := range append(live, newcomer) {
		ids = append(ids, m.id)
	}
	nodeTestVoters(t, leader, sortedIDs(ids)...)
	nodeTestCreate(t, newcomer, "after replacement")
	st, err := c.Status(ctx, newcomer.url)
	if err != nil || len(st.Members) != 3 {
		t.Fatalf("status %+v %v", st, err)
	}
	for _, m := range st.Members {
		if m.ID == dead.id {
			t.Fatalf("dead member still listed: %+v", st.Members)
		}
	}
	clusterOpsDigestsEqual(t, append(live, newcomer)...)
}

func sortedIDs(ids []string) []string {
	out := append([]string(nil), ids...)
	slices.Sort(out)
	return out
}

func TestForwardedToANonLeaderAnswersAtOnce(t *testing.T) {
	ms := clusterOpsStart(t, 3, nil)
	leader := nodeTestLeader(t, ms...)
	follower := nodeTestFollower(ms, leader)
	// A request that was already forwarded once reaches a follower (the
	// sender's view of the leader was stale): it is refused as not leader,
	// marked so that the sender replays it, instead of waiting LeaderWait.
	code, out := nodeTestPost(t, follower.url+"/test/jobs", map[string]string{"title": "stale"}, map[string]string{ForwardedHeader: "1"})
	if code != 503 || !strings.Contains(string(out), "not the leader") {
		t.Fatalf("forwarded request at a follower: %d %s", code, out)
	}
	// The same request from a client is forwarded to the leader as usual.
	nodeTestCreate(t, follower, "fresh")
}
