package coordinator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
	"github.com/croftfarm/croft/internal/testwait"
	"github.com/croftfarm/croft/raftstore"
)

// Test Raft timing: short, with slack for -race on a busy 2-core machine.
const (
	nodeTestHeartbeat = 400 * time.Millisecond
	nodeTestLease     = 200 * time.Millisecond
	nodeTestWait      = 4 * time.Second // LeaderWait
	// nodeTestStabilization is how long a joined non-voter stays caught up
	// before it is promoted.
	nodeTestStabilization = 250 * time.Millisecond
)

// nodeTestMember is one coordinator of a test cluster: a Node plus a gin
// HTTP server with the forwarding, the cluster routes and a test write
// route.
type nodeTestMember struct {
	id       string
	dir      string
	raftAddr string
	url      string
	boot     bool     // started with Bootstrap (kept on restart)
	join     []string // started with Join (kept on restart)
	node     *cluster.Node
	stopOnce sync.Once
	stopFn   func()
}

func (m *nodeTestMember) stop() { m.stopOnce.Do(m.stopFn) }

func nodeTestLogger() *slog.Logger {
	if os.Getenv("CROFT_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// nodeTestJobReply is what the test route answers.
type nodeTestJobReply struct {
	ID     int64  `json:"id"`
	Query  string `json:"query"`
	Header string `json:"header"`
	Hops   string `json:"hops"`
	Method string `json:"method"`
}

// nodeTestStart starts a member, stopped when owner ends (a subtest may
// start a member that outlives it). raftAddr "" picks a free port; a restart
// passes the old address (the Raft configuration records it).
func nodeTestStart(t, owner *testing.T, id, dir, raftAddr string, bootstrap bool, join []string) *nodeTestMember {
	t.Helper()
	return nodeTestStartWith(t, owner, id, dir, raftAddr, bootstrap, join, nil)
}

// nodeTestStartWith is nodeTestStart with a hook that adjusts the cluster.Config.
func nodeTestStartWith(t, owner *testing.T, id, dir, raftAddr string, bootstrap bool, join []string, tune func(*cluster.Config)) *nodeTestMember {
	t.Helper()
	gin.SetMode(gin.TestMode)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if raftAddr == "" {
		raftAddr = "127.0.0.1:0"
	}
	joiner, err := newJoiner(join, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cluster.Config{
		NodeID: id, DataDir: dir, RaftAddr: raftAddr, HTTPAddr: ln.Addr().String(),
		Bootstrap: bootstrap, Join: joiner,
		HeartbeatTimeout: nodeTestHeartbeat, ElectionTimeout: nodeTestHeartbeat,
		LeaderLeaseTimeout: nodeTestLease, CommitTimeout: 10 * time.Millisecond,
		StabilizationTime: nodeTestStabilization,
		Logger:            nodeTestLogger().With("test", t.Name()),
	}
	if tune != nil {
		tune(&cfg)
	}
	var n *cluster.Node
	// A restarted node rebinds its old Raft port; retry while it is busy.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err = cluster.NewNode(cfg, nil)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			ln.Close()
			t.Fatalf("cluster.NewNode %s: %v", id, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	engine := gin.New()
	local := auth.Mount{Router: engine, Auth: auth.New(auth.Config{Insecure: true}, nil, nil), Abort: apierr.Abort}
	forward := newForwarder(n, nil, nodeTestWait, cfg.Logger)
	fwd := local
	fwd.Forward = forward.handle
	clusterRoutes{node: n}.register(local, fwd)
	engine.Any("/test/jobs", forward.handle, func(c *gin.Context) {
		var in struct{ Title string }
		if err := json.NewDecoder(c.Request.Body).Decode(&in); err != nil {
			c.JSON(http.StatusBadRequest, client.ErrorBody{Error: err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
		defer cancel()
		res, err := n.Apply(ctx, raftstore.JobCreate{
			Now:  time.Now().UnixNano(),
			Jobs: []raftstore.JobSpec{{Title: in.Title, Command: "true"}},
		})
		switch {
		case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, context.DeadlineExceeded):
			c.JSON(http.StatusServiceUnavailable, client.ErrorBody{Error: err.Error()})
			return
		case err != nil:
			c.JSON(http.StatusInternalServerError, client.ErrorBody{Error: err.Error()})
			return
		}
		c.JSON(http.StatusOK, nodeTestJobReply{
			ID:     res.([]int64)[0],
			Query:  c.Query("q"),
			Header: c.GetHeader("X-Test"),
			Hops:   c.GetHeader(ForwardedHeader),
			Method: c.Request.Method,
		})
	})
	srv := &http.Server{Handler: engine}
	go srv.Serve(ln)
	m := &nodeTestMember{id: id, dir: dir, raftAddr: n.RaftAddr(), url: "http://" + ln.Addr().String(), boot: bootstrap, join: join, node: n}
	m.stopFn = func() {
		srv.Close()
		forward.close()
		if err := n.Shutdown(); err != nil {
			owner.Errorf("shutdown %s: %v", id, err)
		}
	}
	owner.Cleanup(m.stop)
	return m
}

// nodeEventually polls cond until it holds or the timeout ends.
func nodeEventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testwait.Until(t, timeout, what, cond)
}

// nodeTestLeader waits for a ready leader among ms.
func nodeTestLeader(t *testing.T, ms ...*nodeTestMember) *nodeTestMember {
	t.Helper()
	var leader *nodeTestMember
	nodeEventually(t, 15*time.Second, "a ready leader", func() (bool, string) {
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

// nodeTestVoters waits until m's configuration has exactly these voters and
// its FSM knows the HTTP address of each.
func nodeTestVoters(t *testing.T, m *nodeTestMember, ids ...string) {
	t.Helper()
	want := strings.Join(ids, ",")
	nodeEventually(t, 15*time.Second, m.id+" sees voters "+want, func() (bool, string) {
		st := m.node.Status()
		var got []string
		for _, mem := range st.Members {
			if mem.Suffrage != "Voter" || mem.HTTPAddr == "" {
				return false, fmt.Sprintf("member %+v", mem)
			}
			got = append(got, mem.ID)
		}
		return strings.Join(got, ",") == want, "voters " + strings.Join(got, ",")
	})
}

func nodeTestPost(t *testing.T, url string, body any, hdr map[string]string) (int, []byte) {
	t.Helper()
	data, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// nodeTestCreate creates a job through m's HTTP API and returns its id.
func nodeTestCreate(t *testing.T, m *nodeTestMember, title string) int64 {
	t.Helper()
	code, out := nodeTestPost(t, m.url+"/test/jobs", map[string]string{"title": title}, nil)
	if code != http.StatusOK {
		t.Fatalf("create %q via %s: %d %s", title, m.id, code, out)
	}
	var r nodeTestJobReply
	if err := json.Unmarshal(out, &r); err != nil || r.ID == 0 {
		t.Fatalf("create %q: reply %s (%v)", title, out, err)
	}
	return r.ID
}

// nodeTestHasJobs waits until m's FSM has every acknowledged job.
func nodeTestHasJobs(t *testing.T, m *nodeTestMember, acked map[int64]string) {
	t.Helper()
	nodeEventually(t, 15*time.Second, m.id+" has every acknowledged job", func() (bool, string) {
		st := m.node.FSM().State()
		for id, title := range acked {
			j, ok := st.Job(id)
			if !ok {
				return false, fmt.Sprintf("job %d missing (applied %d)", id, st.AppliedIndex())
			}
			if j.Title != title {
				return false, fmt.Sprintf("job %d title %q, want %q", id, j.Title, title)
			}
		}
		return true, ""
	})
}

func nodeTestFollower(ms []*nodeTestMember, leader *nodeTestMember) *nodeTestMember {
	for _, m := range ms {
		if m != leader {
			return m
		}
	}
	return nil
}

// TestNodeCluster runs a 3-node cluster over real TCP through its life:
// bootstrap and joins, forwarding, group commit, restarts, leader failover,
// membership changes, convergence and loss of quorum. The steps share the
// cluster (starting one costs seconds under -race) and run in order.
func TestNodeCluster(t *testing.T) {
	top := t // members started by a step outlive it
	base := t.TempDir()
	dirs := map[string]string{}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		dirs[id] = base + "/" + id
	}
	n1 := nodeTestStart(t, t, "n1", dirs["n1"], "", true, nil)
	n2 := nodeTestStart(t, t, "n2", dirs["n2"], "", false, []string{n1.url})
	n3 := nodeTestStart(t, t, "n3", dirs["n3"], "", false, []string{n1.url})
	ms := []*nodeTestMember{n1, n2, n3}
	acked := map[int64]string{} // every job whose creation was acknowledged

	t.Run("bootstrap and join", func(t *testing.T) {
		leader := nodeTestLeader(t, ms...)
		for _, m := range ms {
			nodeTestVoters(t, m, "n1", "n2", "n3")
		}
		ok, since := leader.node.Leadership()
		if !ok || since.IsZero() {
			t.Fatalf("leader %s: Leadership() = %v, %v", leader.id, ok, since)
		}
		for _, m := range ms {
			if m == leader {
				continue
			}
			if m.node.IsLeader() {
				t.Fatalf("%s and %s both ready leaders", m.id, leader.id)
			}
			if _, err := m.node.Apply(context.Background(), raftstore.NodeRemove{ID: "x"}); !errors.Is(err, cluster.ErrNotLeader) {
				t.Fatalf("Apply on follower %s: %v, want cluster.ErrNotLeader", m.id, err)
			}
			if err := m.node.WaitLeader(context.Background()); err != nil {
				t.Fatal(err)
			}
			st := m.node.Status()
			if st.LeaderID != leader.id || st.LeaderHTTP != strings.TrimPrefix(leader.url, "http://") || st.State != "Follower" {
				t.Fatalf("follower status %+v, leader %s at %s", st, leader.id, leader.url)
			}
		}
	})

	t.Run("write to follower is forwarded", func(t *testing.T) {
		leader := nodeTestLeader(t, ms...)
		f := nodeTestFollower(ms, leader)
		code, out := nodeTestPost(t, f.url+"/test/jobs?q=hello%20world", map[string]string{"title": "fwd"}, map[string]string{"X-Test": "kept"})
		if code != http.StatusOK {
			t.Fatalf("forwarded write: %d %s", code, out)
		}
		var r nodeTestJobReply
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		if r.ID == 0 || r.Query != "hello world" || r.Header != "kept" || r.Hops != "1" || r.Method != http.MethodPost {
			t.Fatalf("forwarded reply %+v", r)
		}
		acked[r.ID] = "fwd"
		if j, ok := leader.node.FSM().State().Job(r.ID); !ok || j.Title != "fwd" {
			t.Fatalf("leader does not have job %d after ack: %+v", r.ID, j)
		}
		// A request that already went round too many times is refused.
		code, out = nodeTestPost(t, f.url+"/test/jobs", map[string]string{"title": "loop"}, map[string]string{ForwardedHeader: "3"})
		var eb client.ErrorBody
		if code != http.StatusServiceUnavailable || json.Unmarshal(out, &eb) != nil || eb.Error == "" {
			t.Fatalf("hop limit: %d %s", code, out)
		}
	})

	t.Run("apply group", func(t *testing.T) {
		// Groups among single commands: each group's commands apply
		// together, in order (their jobs get consecutive ids), and each
		// caller gets its own results.
		leader := nodeTestLeader(t, ms...)
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make(chan error, 100)
		for i := range 60 {
			wg.Go(func() {
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				create := func(title string, parent int64) raftstore.JobCreate {
					return raftstore.JobCreate{Now: time.Now().UnixNano(), Jobs: []raftstore.JobSpec{{Title: title, Command: "true", Parent: parent}}}
				}
				if i%3 != 0 {
					if _, err := leader.node.Apply(ctx, create(fmt.Sprintf("single-%d", i), 0)); err != nil {
						errs <- err
					}
					return
				}
				out, err := leader.node.ApplyGroup(ctx, create(fmt.Sprintf("g%d-a", i), 0), create("refused", 1<<40), create(fmt.Sprintf("g%d-b", i), 0))
				if err != nil || len(out) != 3 {
					errs <- fmt.Errorf("group %d: %v, %d results", i, err, len(out))
					return
				}
				a, _ := out[0].([]int64)
				b, _ := out[2].([]int64)
				if e, _ := out[1].(error); !errors.Is(e, raftstore.ErrNotFound) || len(a) != 1 || len(b) != 1 || b[0] != a[0]+1 {
					errs <- fmt.Errorf("group %d: results %v", i, out)
				}
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("group commit", func(t *testing.T) {
		leader := nodeTestLeader(t, ms...)
		r := leader.node.Raft()
		before := r.LastIndex()
		const callers = 200
		type result struct {
			id  int64
			err error
		}
		results := make([]result, callers)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				spec := raftstore.JobSpec{Title: fmt.Sprintf("gc-%d", i), Command: "true"}
				if i%20 == 7 {
					spec.Parent = 1 << 40 // refused by the FSM: no such parent
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				res, err := leader.node.Apply(ctx, raftstore.JobCreate{Now: time.Now().UnixNano(), Jobs: []raftstore.JobSpec{spec}})
				if err == nil {
					results[i].id = res.([]int64)[0]
				}
				results[i].err = err
			}()
		}
		close(start)
		wg.Wait()
		st := leader.node.FSM().State()
		seen := map[int64]bool{}
		for i, res := range results {
			if i%20 == 7 {
				if !errors.Is(res.err, raftstore.ErrNotFound) {
					t.Fatalf("caller %d: err %v, want ErrNotFound", i, res.err)
				}
				continue
			}
			if res.err != nil {
				t.Fatalf("caller %d: %v", i, res.err)
			}
			if seen[res.id] {
				t.Fatalf("caller %d: id %d given twice", i, res.id)
			}
			seen[res.id] = true
			want := fmt.Sprintf("gc-%d", i)
			if j, ok := st.Job(res.id); !ok || j.Title != want {
				t.Fatalf("caller %d got id %d holding %q, want %q", i, res.id, j.Title, want)
			}
			acked[res.id] = want
		}
		after := r.LastIndex()
		batches := 0
		for idx := before + 1; idx <= after; idx++ {
			var l raft.Log
			if err := leader.node.LogStore().GetLog(idx, &l); err == nil && l.Type == raft.LogCommand && len(l.Data) > 0 &&
				raftstore.MessageType(l.Data[0]) == raftstore.MsgBatch {
				batches++
			}
		}
		t.Logf("%d commands in %d raft entries (%d batches)", callers, after-before, batches)
		if after-before >= callers || batches == 0 {
			t.Fatalf("%d commands took %d entries (%d batches): no group commit", callers, after-before, batches)
		}

		// A lone command goes as a plain entry.
		if _, err := leader.node.Apply(context.Background(), raftstore.AffinitySet{Names: map[int]string{1: "linux"}}); err != nil {
			t.Fatal(err)
		}
		var l raft.Log
		if err := leader.node.LogStore().GetLog(r.LastIndex(), &l); err != nil || raftstore.MessageType(l.Data[0]) != raftstore.MsgAffinitySet {
			t.Fatalf("lone command entry: type %d, err %v", l.Data[0], err)
		}
	})

	t.Run("restarted follower catches up", func(t *testing.T) {
		leader := nodeTestLeader(t, ms...)
		f := nodeTestFollower(ms, leader)
		f.stop()
		for i := range 20 {
			title := fmt.Sprintf("while-down-%d", i)
			acked[nodeTestCreate(t, leader, title)] = title
		}
		r := nodeTestStart(t, top, f.id, f.dir, f.raftAddr, f.boot, f.join) // same flags: no second bootstrap or join
		for i, m := range ms {
			if m == f {
				ms[i] = r
			}
		}
		nodeTestHasJobs(t, r, acked)
		if st := r.node.Status(); len(st.Members) != 3 {
			t.Fatalf("restarted node lost its membership: %+v", st.Members)
		}
	})

	t.Run("leader failover keeps acknowledged writes", func(t *testing.T) {
		old := nodeTestLeader(t, ms...)
		var rest []*nodeTestMember
		for _, m := range ms {
			if m != old {
				rest = append(rest, m)
			}
		}
		old.stop()
		start := time.Now()
		// A write sent at once to a follower first finds the dead leader
		// unreachable, then waits for the election and reaches the new one.
		acked[nodeTestCreate(t, rest[0], "during-failover")] = "during-failover"
		t.Logf("write during failover acknowledged after %v", time.Since(start).Round(time.Millisecond))
		leader := nodeTestLeader(t, rest...)
		t.Logf("new leader %s ready %v after the old one stopped", leader.id, time.Since(start).Round(time.Millisecond))
		nodeTestHasJobs(t, leader, acked)
		f := nodeTestFollower(rest, leader)
		acked[nodeTestCreate(t, f, "after-failover")] = "after-failover"

		// The old leader comes back as a follower and catches up.
		r := nodeTestStart(t, top, old.id, old.dir, old.raftAddr, old.boot, old.join)
		for i, m := range ms {
			if m == old {
				ms[i] = r
			}
		}
		nodeTestHasJobs(t, r, acked)
	})

	t.Run("join and remove", func(t *testing.T) {
		leader := nodeTestLeader(t, ms...)
		f := nodeTestFollower(ms, leader)
		n4 := nodeTestStart(t, t, "n4", dirs["n4"], "", false, []string{f.url}) // joins through a follower
		for _, m := range ms {
			nodeTestVoters(t, m, "n1", "n2", "n3", "n4")
		}
		// Joining again with the same addresses changes nothing.
		idx := leader.node.Raft().LastIndex()
		req := client.JoinRequest{NodeID: "n4", RaftAddr: n4.raftAddr, HTTPAddr: strings.TrimPrefix(n4.url, "http://")}
		if code, out := nodeTestPost(t, f.url+"/cluster/join", req, nil); code != http.StatusOK {
			t.Fatalf("re-join: %d %s", code, out)
		}
		if got := leader.node.Raft().LastIndex(); got != idx {
			t.Fatalf("re-join wrote entries: last index %d -> %d", idx, got)
		}
		// Another id on a used Raft address is refused.
		bad := client.JoinRequest{NodeID: "n5", RaftAddr: n4.raftAddr, HTTPAddr: "127.0.0.1:1"}
		if code, out := nodeTestPost(t, f.url+"/cluster/join", bad, nil); code != http.StatusBadRequest {
			t.Fatalf("join on a used address: %d %s", code, out)
		}

		// Remove n4 through a follower (forwarded to the leader).
		if code, out := nodeTestPost(t, f.url+"/cluster/remove", client.RemoveRequest{NodeID: "n4"}, nil); code != http.StatusOK {
			t.Fatalf("remove: %d %s", code, out)
		}
		n4.stop()
		for _, m := range ms {
			nodeTestVoters(t, m, "n1", "n2", "n3")
			nodeEventually(t, 10*time.Second, m.id+" forgets n4", func() (bool, string) {
				_, ok := m.node.FSM().State().Node("n4")
				return !ok, "n4 metadata still there"
			})
		}

		// Errors are JSON with the status chosen at the edge.
		for _, tc := range []struct {
			path string
			body string
			want int
		}{
			{"/cluster/remove", `{"node_id":"nope"}`, http.StatusNotFound},
			{"/cluster/remove", `{"node_id":`, http.StatusBadRequest},
			{"/cluster/remove", `{}`, http.StatusBadRequest},
			{"/cluster/join", `{"node_id":"x"}`, http.StatusBadRequest},
			{"/cluster/join", `nope`, http.StatusBadRequest},
		} {
			resp, err := http.Post(f.url+tc.path, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var eb client.ErrorBody
			if resp.StatusCode != tc.want || json.Unmarshal(out, &eb) != nil || eb.Error == "" {
				t.Fatalf("POST %s %s: %d %s, want %d with a JSON error", tc.path, tc.body, resp.StatusCode, out, tc.want)
			}
		}

		// The Go client reads the status of any member.
		st, err := client.New(f.url).Status(context.Background(), f.url)
		if err != nil || st.NodeID != f.id || st.LeaderID != leader.id || len(st.Members) != 3 {
			t.Fatalf("client status: %+v, %v", st, err)
		}
	})

	t.Run("all nodes converge", func(t *testing.T) {
		nodeEventually(t, 15*time.Second, "equal digests", func() (bool, string) {
			var ds []string
			for _, m := range ms {
				ds = append(ds, m.node.FSM().State().Digest())
			}
			for _, d := range ds[1:] {
				if d != ds[0] {
					return false, strings.Join(ds, " ")
				}
			}
			return true, ""
		})
		for _, m := range ms {
			nodeTestHasJobs(t, m, acked)
		}
	})

	t.Run("no quorum answers 503", func(t *testing.T) {
		// Stop the leader and one follower: the survivor has no leader to
		// forward to and must answer 503 within LeaderWait, not hang. (On a
		// slow machine it may win an election between the two stops, with
		// the other one's vote: then it leads alone, and the write fails as
		// not leader once its lease runs out. Also a 503, in time.)
		leader := nodeTestLeader(t, ms...)
		survivor := nodeTestFollower(ms, leader)
		for _, m := range ms {
			if m != survivor {
				m.stop()
			}
		}
		start := time.Now()
		code, out := nodeTestPost(t, survivor.url+"/test/jobs", map[string]string{"title": "no-quorum"}, nil)
		took := time.Since(start)
		var eb client.ErrorBody
		if code != http.StatusServiceUnavailable || json.Unmarshal(out, &eb) != nil ||
			!(strings.HasPrefix(eb.Error, "no leader") || strings.Contains(eb.Error, "not the leader")) {
			t.Fatalf("without quorum: %d %s", code, out)
		}
		if took > nodeTestWait+3*time.Second {
			t.Fatalf("503 took %v", took)
		}
		t.Logf("503 after %v: %s", took.Round(time.Millisecond), eb.Error)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := survivor.node.WaitLeader(ctx); err != nil && !errors.Is(err, cluster.ErrNoLeader) {
			t.Fatalf("WaitLeader: %v", err)
		}
	})
}

// TestNodeLoneLeaderSteppingDown checks that a leader that loses its
// quorum fails writes with cluster.ErrNotLeader instead of hanging.
func TestNodeLoneLeaderSteppingDown(t *testing.T) {
	base := t.TempDir()
	a := nodeTestStart(t, t, "a", base+"/a", "", true, nil)
	b := nodeTestStart(t, t, "b", base+"/b", "", false, []string{a.url})
	nodeTestVoters(t, a, "a", "b")
	leader := nodeTestLeader(t, a, b)
	if leader != a {
		t.Fatalf("leader %s, want a", leader.id)
	}
	b.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := a.node.Apply(ctx, raftstore.JobCreate{Now: 1, Jobs: []raftstore.JobSpec{{Title: "x", Command: "true"}}})
	if !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("Apply without quorum: %v, want cluster.ErrNotLeader", err)
	}
	t.Logf("failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	code, out := nodeTestPost(t, a.url+"/test/jobs", map[string]string{"title": "y"}, nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("request without quorum: %d %s", code, out)
	}
}

// TestNodeRestartKeepsState restarts a bootstrapped single node with the
// same flags: it must replay its log, not bootstrap a new cluster.
func TestNodeRestartKeepsState(t *testing.T) {
	dir := t.TempDir() + "/solo"
	a := nodeTestStart(t, t, "solo", dir, "", true, nil)
	nodeTestLeader(t, a)
	id := nodeTestCreate(t, a, "kept")
	last := a.node.Raft().LastIndex()
	a.stop()

	b := nodeTestStart(t, t, "solo", dir, a.raftAddr, true, nil)
	nodeTestLeader(t, b)
	nodeTestHasJobs(t, b, map[int64]string{id: "kept"})
	if got := b.node.Raft().LastIndex(); got <= last {
		t.Fatalf("last index %d after restart, was %d", got, last)
	}
	// The restarted leader records its new HTTP address.
	nodeEventually(t, 5*time.Second, "new HTTP address recorded", func() (bool, string) {
		st := b.node.Status()
		return st.LeaderHTTP == strings.TrimPrefix(b.url, "http://"), "leader_http " + st.LeaderHTTP
	})
}
