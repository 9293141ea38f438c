package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
)

// Membership safety: joins are non-voters until caught up, and a lost
// quorum can be recovered from a peers file.

// memberStatus reads GET /cluster/status of m over HTTP.
func memberStatus(t *testing.T, m *nodeTestMember) client.ClusterStatus {
	t.Helper()
	resp, err := http.Get(m.url + "/cluster/status")
	if err != nil {
		t.Fatalf("status of %s: %v", m.id, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var st client.ClusterStatus
	if resp.StatusCode != http.StatusOK || json.Unmarshal(out, &st) != nil {
		t.Fatalf("status of %s: %d %s", m.id, resp.StatusCode, out)
	}
	return st
}

// memberOf returns the member id of st.
func memberOf(st client.ClusterStatus, id string) (client.ClusterMember, bool) {
	for _, m := range st.Members {
		if m.ID == id {
			return m, true
		}
	}
	return client.ClusterMember{}, false
}

// memberWaitSuffrage waits until m's configuration lists id with suffrage.
func memberWaitSuffrage(t *testing.T, m *nodeTestMember, id, suffrage string) {
	t.Helper()
	nodeEventually(t, 20*time.Second, fmt.Sprintf("%s sees %s as %s", m.id, id, suffrage), func() (bool, string) {
		mem, ok := memberOf(statusReply(m.node.Status()), id)
		return ok && mem.Suffrage == suffrage, fmt.Sprintf("%+v", mem)
	})
}

// memberNotCaughtUp checks that the leader's status shows id as a
// non-voter that is not caught up and was never heard from.
func memberNotCaughtUp(t *testing.T, leader *nodeTestMember, id string) {
	t.Helper()
	m, ok := memberOf(memberStatus(t, leader), id)
	if !ok || m.Suffrage != "Nonvoter" || m.CaughtUp == nil || *m.CaughtUp || m.LastContactMS != nil {
		t.Fatalf("%s in the leader's status: %+v (found %v), want a non-voter never caught up", id, m, ok)
	}
}

func memberJoin(t *testing.T, via *nodeTestMember, req client.JoinRequest, want int) {
	t.Helper()
	if code, out := nodeTestPost(t, via.url+"/cluster/join", req, nil); code != want {
		t.Fatalf("join %+v: %d %s, want %d", req, code, out, want)
	}
}

// TestJoinUnreachableKeepsQuorum is the quorum theft: on a one-node farm,
// a join of a node nobody can reach must not take the leadership away.
func TestJoinUnreachableKeepsQuorum(t *testing.T) {
	dir := t.TempDir()
	n1 := nodeTestStart(t, t, "n1", filepath.Join(dir, "n1"), "", true, nil)
	nodeTestLeader(t, n1)
	acked := map[int64]string{nodeTestCreate(t, n1, "before"): "before"}

	memberJoin(t, n1, client.JoinRequest{NodeID: "evil", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}, http.StatusOK)
	acked[nodeTestCreate(t, n1, "after the join")] = "after the join"
	if !n1.node.IsLeader() {
		t.Fatal("n1 lost the leadership to an unreachable joiner")
	}
	memberNotCaughtUp(t, n1, "evil")

	// The membership survives a restart, and so does the leadership.
	n1.stop()
	n1 = nodeTestStart(t, t, "n1", n1.dir, n1.raftAddr, true, nil)
	nodeTestLeader(t, n1)
	acked[nodeTestCreate(t, n1, "after a restart")] = "after a restart"
	memberNotCaughtUp(t, n1, "evil")

	// And the operator can take the mistake back.
	if code, out := nodeTestPost(t, n1.url+"/cluster/remove", client.RemoveRequest{NodeID: "evil"}, nil); code != http.StatusOK {
		t.Fatalf("remove evil: %d %s", code, out)
	}
	nodeTestVoters(t, n1, "n1")
	acked[nodeTestCreate(t, n1, "after the remove")] = "after the remove"
	nodeTestHasJobs(t, n1, acked)
}

// memberConfigHistory lists the suffrage id had in each configuration
// entry of m's log, oldest first ("-" where it was not a member).
func memberConfigHistory(t *testing.T, m *nodeTestMember, id string) []string {
	t.Helper()
	first, err := m.node.LogStore().FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := m.node.LogStore().LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := m.node.LogStore().GetLog(i, &l); err != nil {
			t.Fatalf("log %d: %v", i, err)
		}
		if l.Type != raft.LogConfiguration {
			continue
		}
		s := "-"
		for _, srv := range raft.DecodeConfiguration(l.Data).Servers {
			if string(srv.ID) == id {
				s = srv.Suffrage.String()
			}
		}
		out = append(out, s)
	}
	return out
}

// TestJoinPromotesCaughtUpNonvoter adds a real third node: it joins as a
// non-voter, catches up, and the leader promotes it.
func TestJoinPromotesCaughtUpNonvoter(t *testing.T) {
	ms := clusterOpsStart(t, 2, nil)
	leader := nodeTestLeader(t, ms...)
	acked := map[int64]string{}
	for i := range 20 {
		title := fmt.Sprint("before n3 ", i)
		acked[nodeTestCreate(t, leader, title)] = title
	}
	n3 := nodeTestStart(t, t, "n3", filepath.Join(t.TempDir(), "n3"), "", false, []string{ms[1].url})
	nodeTestVoters(t, leader, "n1", "n2", "n3")
	nodeTestHasJobs(t, n3, acked)

	// The log tells the story: first a non-voter, then a voter.
	hist := strings.Join(memberConfigHistory(t, ms[0], "n3"), ",")
	if !strings.Contains(hist, "Nonvoter,Voter") || strings.Index(hist, "Voter") < strings.Index(hist, "Nonvoter") {
		t.Fatalf("n3's suffrage in the configuration entries: %s, want Nonvoter then Voter", hist)
	}
	// The leader's view shows every follower caught up and in contact.
	leader = nodeTestLeader(t, append(ms, n3)...)
	nodeEventually(t, 10*time.Second, "followers caught up in the leader's status", func() (bool, string) {
		st := memberStatus(t, leader)
		for _, m := range st.Members {
			if m.ID == leader.id {
				if m.CaughtUp != nil {
					return false, "leader reports itself"
				}
				continue
			}
			if m.CaughtUp == nil || !*m.CaughtUp || m.LastContactMS == nil || m.LastLog == 0 {
				return false, fmt.Sprintf("%+v", m)
			}
		}
		return true, ""
	})
	// Followers do not pretend to know.
	for _, m := range append(ms, n3) {
		if m == leader {
			continue
		}
		for _, mem := range memberStatus(t, m).Members {
			if mem.CaughtUp != nil || mem.LastContactMS != nil {
				t.Fatalf("follower %s reports progress: %+v", m.id, mem)
			}
		}
	}
	acked[nodeTestCreate(t, n3, "via n3")] = "via n3"
	nodeTestHasJobs(t, n3, acked)
}

// TestJoinWrongRaftAddressNeverPromoted joins a running coordinator under
// a Raft address where something answers, but not its Raft (its HTTP
// address): it stays a non-voter while a correct joiner after it is
// promoted; removed and joined with the right address, it is promoted.
// Moving a voter to a wrong address demotes it, so that cannot cost the
// quorum either.
func TestJoinWrongRaftAddressNeverPromoted(t *testing.T) {
	dir := t.TempDir()
	n1 := nodeTestStart(t, t, "n1", filepath.Join(dir, "n1"), "", true, nil)
	nodeTestLeader(t, n1)
	// n2 runs, but waits to be added (neither bootstrap nor join).
	n2 := nodeTestStart(t, t, "n2", filepath.Join(dir, "n2"), "", false, nil)
	n2HTTP := strings.TrimPrefix(n2.url, "http://")
	memberJoin(t, n1, client.JoinRequest{NodeID: "n2", RaftAddr: n2HTTP, HTTPAddr: n2HTTP}, http.StatusOK)

	// n3 joins after n2 and is promoted: the promotion loop has looked at
	// n2 for longer than the stabilization time, and left it alone.
	n3 := nodeTestStart(t, t, "n3", filepath.Join(dir, "n3"), "", false, []string{n1.url})
	memberWaitSuffrage(t, n1, "n3", "Voter")
	memberNotCaughtUp(t, nodeTestLeader(t, n1, n3), "n2")
	nodeTestCreate(t, n3, "with n2 misaddressed")

	// Removed and joined again with its real address, n2 is promoted.
	// (Joining again without the remove moves it too, but Raft's
	// replication to it may still be waiting out an RPC timeout or a
	// backoff earned at the wrong address.)
	if code, out := nodeTestPost(t, n3.url+"/cluster/remove", client.RemoveRequest{NodeID: "n2"}, nil); code != http.StatusOK {
		t.Fatalf("remove n2: %d %s", code, out)
	}
	memberJoin(t, n3, client.JoinRequest{NodeID: "n2", RaftAddr: n2.raftAddr, HTTPAddr: n2HTTP}, http.StatusOK)
	nodeTestVoters(t, n1, "n1", "n2", "n3")

	// Moving a voter to a wrong address demotes it: the other two keep
	// the quorum. Moving it back makes it a voter again.
	all := []*nodeTestMember{n1, n2, n3}
	leader := nodeTestLeader(t, all...)
	var moved, other *nodeTestMember
	for _, m := range all {
		switch {
		case m == leader:
		case moved == nil:
			moved = m
		default:
			other = m
		}
	}
	movedHTTP := strings.TrimPrefix(moved.url, "http://")
	memberJoin(t, other, client.JoinRequest{NodeID: moved.id, RaftAddr: "127.0.0.1:1", HTTPAddr: movedHTTP}, http.StatusOK)
	memberNotCaughtUp(t, nodeTestLeader(t, leader, other), moved.id)
	nodeTestCreate(t, other, "with a voter moved away")
	memberJoin(t, other, client.JoinRequest{NodeID: moved.id, RaftAddr: moved.raftAddr, HTTPAddr: movedHTTP}, http.StatusOK)
	nodeTestVoters(t, n1, "n1", "n2", "n3")

	// The leader's own address cannot be moved.
	leader = nodeTestLeader(t, all...)
	memberJoin(t, n1, client.JoinRequest{NodeID: leader.id, RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}, http.StatusBadRequest)
}

// memberWritePeers writes a peers.json file listing ms as voters.
func memberWritePeers(t *testing.T, path string, ms ...*nodeTestMember) {
	t.Helper()
	type entry struct {
		ID       string `json:"id"`
		Address  string `json:"address"`
		NonVoter bool   `json:"non_voter"`
	}
	var peers []entry
	for _, m := range ms {
		peers = append(peers, entry{ID: m.id, Address: m.raftAddr})
	}
	data, err := json.Marshal(peers)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRecoverLostQuorum loses two of three coordinators for good and
// brings the survivor back as a one-node cluster from a peers file, as
// `croft coordinator --recover` does.
func TestRecoverLostQuorum(t *testing.T) {
	ms := clusterOpsStart(t, 3, nil)
	leader := nodeTestLeader(t, ms...)
	acked := map[int64]string{}
	for i := range 20 {
		title := fmt.Sprint("before the loss ", i)
		acked[nodeTestCreate(t, leader, title)] = title
	}
	survivor := nodeTestFollower(ms, leader)
	nodeTestHasJobs(t, survivor, acked)
	for _, m := range ms {
		m.stop() // the others for good; the survivor to recover it
	}

	peers := filepath.Join(t.TempDir(), "peers.json")
	recoverCfg := func(c *cluster.Config) {
		c.Recover = peers
		c.Bootstrap, c.Join = false, nil
	}
	// Refusals: the survivor must be listed at its own Raft address,
	// and recovery excludes bootstrap and join.
	for _, tc := range []struct {
		what  string
		peers []*nodeTestMember
		cfg   cluster.Config
	}{
		{"bootstrap", []*nodeTestMember{survivor}, cluster.Config{Bootstrap: true}},
		{"join", []*nodeTestMember{survivor}, cluster.Config{Join: cluster.JoinFunc(func(context.Context, cluster.JoinRequest) error { return nil })}},
		{"a file without this node", []*nodeTestMember{{id: "other", raftAddr: "127.0.0.1:1"}}, cluster.Config{}},
		{"another raft address", []*nodeTestMember{survivor}, cluster.Config{}},
	} {
		memberWritePeers(t, peers, tc.peers...)
		cfg := tc.cfg
		cfg.NodeID, cfg.DataDir, cfg.RaftAddr, cfg.Recover = survivor.id, survivor.dir, "127.0.0.1:0", peers
		cfg.Logger = nodeTestLogger()
		if n, err := cluster.NewNode(cfg, nil); !errors.Is(err, cluster.ErrInvalidConfig) {
			if n != nil {
				n.Shutdown()
			}
			t.Fatalf("recover with %s: %v, want cluster.ErrInvalidConfig", tc.what, err)
		}
	}
	if _, err := os.Stat(peers); err != nil {
		t.Fatalf("a refused recovery touched the peers file: %v", err)
	}

	memberWritePeers(t, peers, survivor)
	r := nodeTestStartWith(t, t, survivor.id, survivor.dir, survivor.raftAddr, false, nil, recoverCfg)
	nodeTestLeader(t, r)
	nodeTestVoters(t, r, survivor.id)
	nodeTestHasJobs(t, r, acked)
	acked[nodeTestCreate(t, r, "after recovery")] = "after recovery"
	if _, err := os.Stat(peers); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("peers file after recovery: %v, want it renamed", err)
	}
	if _, err := os.Stat(peers + ".recovered"); err != nil {
		t.Fatalf("renamed peers file: %v", err)
	}

	// Restarting with the same flags starts normally, and so does a
	// restart without them.
	r.stop()
	r = nodeTestStartWith(t, t, survivor.id, survivor.dir, survivor.raftAddr, false, nil, recoverCfg)
	nodeTestLeader(t, r)
	acked[nodeTestCreate(t, r, "after a restart with --recover")] = "after a restart with --recover"
	r.stop()
	r = nodeTestStart(t, t, survivor.id, survivor.dir, survivor.raftAddr, false, nil)
	nodeTestLeader(t, r)
	nodeTestVoters(t, r, survivor.id)
	nodeTestHasJobs(t, r, acked)

	// The recovered cluster grows again the normal way.
	n4 := nodeTestStart(t, t, "n4", filepath.Join(t.TempDir(), "n4"), "", false, []string{r.url})
	nodeTestVoters(t, r, sortedIDs([]string{survivor.id, "n4"})...)
	nodeTestHasJobs(t, n4, acked)
}
