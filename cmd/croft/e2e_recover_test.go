package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// TestRecoverLostQuorumEndToEnd follows docs/OPERATIONS.md ("Recovering a
// cluster that lost its quorum") with the built binary: two of three
// coordinators are lost for good, the survivor is stopped, restarted with
// --recover and a peers.json that lists only itself, checked with `croft
// cluster status`, and restarted without the flag.
func TestRecoverLostQuorumEndToEnd(t *testing.T) {
	dir := t.TempDir()
	coord := func(id, raftAddr string, extra ...string) *proc {
		args := append([]string{"coordinator", "--node-id", id, "--data-dir", filepath.Join(dir, id),
			"--http-addr", "127.0.0.1:0", "--raft-addr", raftAddr}, extra...)
		return start(t, args...)
	}
	nodes := map[string]*proc{"c1": coord("c1", "127.0.0.1:0", "--bootstrap")}
	token := adminToken(t, filepath.Join(dir, "c1"))
	tokenFile := filepath.Join(dir, "c1", AdminTokenFile)
	nodes["c2"] = coord("c2", "127.0.0.1:0", "--join", nodes["c1"].url, "--token-file", tokenFile)
	nodes["c3"] = coord("c3", "127.0.0.1:0", "--join", nodes["c1"].url, "--token-file", tokenFile)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	withToken := func(urls ...string) *client.Client { return client.NewWith(client.Options{Token: token}, urls...) }
	c := withToken(nodes["c1"].url, nodes["c2"].url, nodes["c3"].url)
	st := waitStatus(t, ctx, c, nodes["c1"].url, "three voters", func(st client.ClusterStatus) bool {
		return st.LeaderID != "" && countVoters(st) == 3
	})
	raftAddr := map[string]string{}
	for _, m := range st.Members {
		raftAddr[m.ID] = m.RaftAddr
	}
	var acked []int64
	for i := range 10 {
		id, err := c.CreateJob(ctx, client.NewJob{Title: fmt.Sprint("before ", i), Command: "true", State: "PAUSED"})
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, id)
	}

	// The survivor-to-be has every acknowledged entry: with a single
	// survivor, entries only the lost majority had would be lost too.
	survivor := ""
	for id := range nodes {
		if id != st.LeaderID {
			survivor = id
			break
		}
	}
	sp := nodes[survivor]
	lst := waitStatus(t, ctx, c, nodes[st.LeaderID].url, "the leader's commit index", func(client.ClusterStatus) bool { return true })
	waitStatus(t, ctx, c, sp.url, "the survivor applied every acknowledged entry", func(st client.ClusterStatus) bool {
		return st.FSMIndex >= lst.CommitIndex
	})
	// Lose the leader and the other follower for good (kill -9).
	for id, p := range nodes {
		if id != survivor {
			p.kill()
		}
	}
	waitStatus(t, ctx, c, sp.url, "no leader", func(st client.ClusterStatus) bool { return st.LeaderID == "" })

	// 1. Stop every surviving coordinator.
	sp.stop()
	// 2. Write peers.json listing the survivors.
	peers := filepath.Join(dir, "peers.json")
	data, _ := json.Marshal([]map[string]any{{"id": survivor, "address": raftAddr[survivor], "non_voter": false}})
	if err := os.WriteFile(peers, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// --recover refuses --bootstrap (and --join).
	out, err := exec.CommandContext(ctx, croftBin(t), "coordinator", "--node-id", survivor, "--data-dir", filepath.Join(dir, survivor),
		"--raft-addr", raftAddr[survivor], "--recover", peers, "--bootstrap").CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), "--recover excludes") {
		t.Fatalf("--recover with --bootstrap: exit %d\n%s", code, out)
	}
	// 3. Start each with --recover, on its old Raft address.
	rp := coord(survivor, raftAddr[survivor], "--recover", peers)
	// 4. Check `croft cluster status`: it leads, alone.
	rc := withToken(rp.url)
	waitStatus(t, ctx, rc, rp.url, "the survivor leads", func(st client.ClusterStatus) bool {
		return st.LeaderID == survivor && len(st.Members) == 1 && countVoters(st) == 1
	})
	out, err = exec.CommandContext(ctx, croftBin(t), "cluster", "status", "--coordinator", rp.url, "--token-file", tokenFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "leader: "+survivor) || strings.Count(string(out), "Voter") != 1 {
		t.Fatalf("croft cluster status after recovery: %v\n%s", err, out)
	}
	for _, id := range acked {
		if j, err := rc.Job(ctx, id); err != nil || j.ID != id {
			t.Fatalf("job %d after recovery: %+v %v", id, j, err)
		}
	}
	after, err := rc.CreateJob(ctx, client.NewJob{Title: "after recovery", Command: "true", State: "PAUSED"})
	if err != nil {
		t.Fatal(err)
	}
	acked = append(acked, after)
	if _, err := os.Stat(peers + ".recovered"); err != nil {
		t.Fatalf("peers file not renamed: %v", err)
	}

	// 5. Restart without the flag: the recovered cluster stays.
	rp.stop()
	rp = coord(survivor, raftAddr[survivor])
	rc = withToken(rp.url)
	waitStatus(t, ctx, rc, rp.url, "the survivor leads after a plain restart", func(st client.ClusterStatus) bool {
		return st.LeaderID == survivor && len(st.Members) == 1
	})
	for _, id := range acked {
		if j, err := rc.Job(ctx, id); err != nil || j.ID != id {
			t.Fatalf("job %d after restart: %+v %v", id, j, err)
		}
	}
	if _, err := rc.CreateJob(ctx, client.NewJob{Title: "after restart", Command: "true", State: "PAUSED"}); err != nil {
		t.Fatal(err)
	}
	rp.stop()
}

// waitStatus polls the status of the coordinator at url until cond holds.
func waitStatus(t *testing.T, ctx context.Context, c *client.Client, url, what string, cond func(client.ClusterStatus) bool) client.ClusterStatus {
	t.Helper()
	for {
		st, err := c.Status(ctx, url)
		if err == nil && cond(st) {
			return st
		}
		if ctx.Err() != nil {
			t.Fatalf("waiting for %s: %+v (%v)", what, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exitCode returns the exit status in err from exec (0 for nil).
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
