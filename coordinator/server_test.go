package coordinator

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/freezer"
	"github.com/croftfarm/croft/cluster"
)

// serverTest is a one-node coordinator on real Raft and HTTP over loopback.
type serverTest struct {
	srv *Server
	url string
	c   *client.Client
}

// startServer starts a coordinator without access control: the tests of
// its behaviour. access_test.go starts secure ones.
func startServer(t *testing.T, ttl time.Duration) *serverTest {
	t.Helper()
	return startServerWith(t, ServerConfig{WorkerTTL: ttl, Auth: auth.Config{Insecure: true}})
}

// startServerWith starts a one-node coordinator with cfg (its cluster.Node and
// SweepInterval filled in for tests).
func startServerWith(t *testing.T, cfg ServerConfig) *serverTest {
	t.Helper()
	return startServerIn(t, t.TempDir(), cfg, nil)
}

// startServerIn is startServerWith on data directory dir, with tune (if
// not nil) adjusting the node's test cluster.Config.
func startServerIn(t *testing.T, dir string, cfg ServerConfig, tune func(*cluster.Config)) *serverTest {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Node = cluster.Config{
		NodeID: "s1", DataDir: dir, RaftAddr: "127.0.0.1:0", HTTPAddr: ln.Addr().String(),
		Bootstrap: true, HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 100 * time.Millisecond, Logger: nodeTestLogger(),
	}
	if tune != nil {
		tune(&cfg.Node)
	}
	cfg.SweepInterval = 50 * time.Millisecond
	srv, err := NewServer(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	st := &serverTest{srv: srv, url: "http://" + ln.Addr().String()}
	st.c = client.New(st.url)
	nodeEventually(t, 10*time.Second, "leadership", func() (bool, string) { return srv.Node().IsLeader(), "" })
	return st
}

func (s *serverTest) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// coalitionWorker calls the Coalition worker protocol.
func (s *serverTest) coalitionWorker(t *testing.T, path string, args url.Values) string {
	t.Helper()
	resp, err := http.PostForm(s.url+"/workers/"+path, args)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/workers/%s: %d %s %v", path, resp.StatusCode, b, err)
	}
	return string(b)
}

func (s *serverTest) waitState(t *testing.T, id int64, want string) client.Job {
	t.Helper()
	var j client.Job
	nodeEventually(t, 15*time.Second, "job "+want, func() (bool, string) {
		var err error
		j, err = s.c.Job(s.ctx(t), id)
		return err == nil && j.State == want, j.State
	})
	return j
}

func TestSweeperTimesOutJobs(t *testing.T) {
	s := startServer(t, time.Hour)
	ctx := s.ctx(t)
	timeout := int64(1)
	id, err := s.c.CreateJob(ctx, client.NewJob{Title: "slow", Command: "sleep 100", Timeout: &timeout})
	if err != nil {
		t.Fatal(err)
	}
	// A Coalition worker does not enforce timeouts itself: the leader does.
	if r := s.coalitionWorker(t, "pickjob", url.Values{"hostname": {"cw"}}); !strings.HasPrefix(r, "("+strconv.FormatInt(id, 10)+",") {
		t.Fatalf("pick %q", r)
	}
	j := s.waitState(t, id, "ERROR")
	if j.RunDone != 1 {
		t.Fatalf("timed-out job %+v", j)
	}
	if r := s.coalitionWorker(t, "heartbeat", url.Values{"hostname": {"cw"}, "jobId": {strconv.FormatInt(id, 10)}}); r != "false" {
		t.Fatalf("heartbeat of a timed-out job: %q", r)
	}
	log, _ := s.c.Log(ctx, id)
	if !strings.Contains(log, "timed out") {
		t.Fatalf("log %q", log)
	}
}

func TestSweeperLosesSilentWorkers(t *testing.T) {
	s := startServer(t, 500*time.Millisecond)
	ctx := s.ctx(t)
	id, err := s.c.CreateJob(ctx, client.NewJob{Title: "orphan", Command: "sleep 100"})
	if err != nil {
		t.Fatal(err)
	}
	if r := s.coalitionWorker(t, "pickjob", url.Values{"hostname": {"ghost"}}); !strings.HasPrefix(r, "("+strconv.FormatInt(id, 10)+",") {
		t.Fatalf("pick %q", r)
	}
	// The worker goes silent: its job is requeued without counting a run.
	j := s.waitState(t, id, "WAITING")
	if j.RunDone != 0 {
		t.Fatalf("requeued job %+v", j)
	}
	ws, err := s.c.Workers(ctx)
	if err != nil || len(ws) != 1 || ws[0].State != "TIMEOUT" {
		t.Fatalf("workers %+v %v", ws, err)
	}
	// It comes back: its next poll clears TIMEOUT (and may take the job again).
	s.coalitionWorker(t, "pickjob", url.Values{"hostname": {"ghost"}})
	ws, err = s.c.Workers(ctx)
	if err != nil || len(ws) != 1 || ws[0].State == "TIMEOUT" {
		t.Fatalf("worker after it polled again %+v %v", ws, err)
	}
}

func TestAgentProtocol(t *testing.T) {
	s := startServer(t, time.Hour)
	ctx := s.ctx(t)
	if err := s.c.Register(ctx, client.RegisterRequest{Name: "a1", Affinity: "linux", SetAffinity: true,
		Resources: client.Resources{CPU: []float64{12.4, 3}, FreeMemory: 100, TotalMemory: 200}}); err != nil {
		t.Fatal(err)
	}
	ws, _ := s.c.Workers(ctx)
	if len(ws) != 1 || ws[0].CPU != "[12, 3]" || ws[0].Affinity != "linux" || ws[0].TotalMemory != 200 {
		t.Fatalf("registered worker %+v", ws)
	}
	// A long poll returns as soon as a job appears.
	got := make(chan *client.Assignment, 1)
	go func() {
		a, err := s.c.Pull(ctx, client.PullRequest{Name: "a1", WaitMillis: 20000})
		if err != nil {
			t.Error(err)
		}
		got <- a
	}()
	id, err := s.c.CreateJob(ctx, client.NewJob{Title: "linux job", Command: "echo hi", Affinity: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	var a *client.Assignment
	select {
	case a = <-got:
	case <-ctx.Done():
		t.Fatal("long poll did not return")
	}
	if a == nil || a.JobID != id || a.AttemptID == 0 {
		t.Fatalf("assignment %+v", a)
	}
	// An empty wait returns nothing, at once.
	if b, err := s.c.Pull(ctx, client.PullRequest{Name: "a2", WaitMillis: 0}); err != nil || b != nil {
		t.Fatalf("idle pull %+v %v", b, err)
	}
	rep := client.ReportRequest{Name: "a1", JobID: id, AttemptID: a.AttemptID, LogOffset: 0, Log: []byte("hi\n")}
	for i := 0; i < 2; i++ { // a retried chunk is applied once
		if r, err := s.c.Report(ctx, rep); err != nil || !r.Accepted {
			t.Fatalf("report %+v %v", r, err)
		}
	}
	hb, err := s.c.Heartbeat(ctx, client.HeartbeatRequest{Name: "a1", Running: []int64{a.AttemptID, 999}})
	if err != nil || len(hb.Kill) != 1 || hb.Kill[0] != 999 {
		t.Fatalf("heartbeat %+v %v", hb, err)
	}
	if _, err := s.c.Heartbeat(ctx, client.HeartbeatRequest{Name: "nobody"}); !client.IsStatus(err, 404) {
		t.Fatalf("heartbeat of an unknown agent: %v", err)
	}
	done := client.ReportRequest{Name: "a1", JobID: id, AttemptID: a.AttemptID, LogOffset: 3, Done: true}
	for i := 0; i < 2; i++ { // the final report retried is acknowledged again
		if r, err := s.c.Report(ctx, done); err != nil || !r.Accepted {
			t.Fatalf("final report %+v %v", r, err)
		}
	}
	if j := s.waitState(t, id, "FINISHED"); j.RunDone != 1 {
		t.Fatalf("job %+v", j)
	}
	if log, _ := s.c.Log(ctx, id); log != "hi\n" {
		t.Fatalf("log %q", log)
	}
	// A report from an attempt that is no longer current: 409 and kill.
	if _, err := s.c.Job(ctx, id); err != nil {
		t.Fatal(err)
	}
	if r, err := s.c.Report(ctx, client.ReportRequest{Name: "a1", JobID: id, AttemptID: 12345, Log: []byte("x")}); !client.IsStatus(err, 409) || !r.Kill {
		t.Fatalf("stale report %+v %v", r, err)
	}
	// Bad input is a 400 with a JSON error.
	for _, bad := range []client.ReportRequest{
		{Name: "a1", JobID: id},
		{Name: "a1", JobID: id, AttemptID: a.AttemptID, LogOffset: -1},
	} {
		if _, err := s.c.Report(ctx, bad); !client.IsStatus(err, 400) {
			t.Fatalf("bad report %+v: %v", bad, err)
		}
	}
	if err := s.c.Do(ctx, http.MethodPost, client.PathPull, map[string]any{"name": 7}, nil); !client.IsStatus(err, 400) {
		t.Fatalf("pull with a bad body: %v", err)
	}
}

func TestFinalReportTakesTheNextJob(t *testing.T) {
	s := startServer(t, time.Hour)
	ctx := s.ctx(t)
	if err := s.c.Register(ctx, client.RegisterRequest{Name: "a1"}); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for i := range 2 {
		id, err := s.c.CreateJob(ctx, client.NewJob{Title: "job " + strconv.Itoa(i), Command: "true"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	a, err := s.c.Pull(ctx, client.PullRequest{Name: "a1"})
	if err != nil || a == nil || a.JobID != ids[0] {
		t.Fatalf("pull %+v %v", a, err)
	}
	// Next without Done is refused, and changes nothing.
	if _, err := s.c.Report(ctx, client.ReportRequest{Name: "a1", JobID: a.JobID, AttemptID: a.AttemptID, Next: true}); !client.IsStatus(err, 400) {
		t.Fatalf("next without done: %v", err)
	}
	r, err := s.c.Report(ctx, client.ReportRequest{Name: "a1", JobID: a.JobID, AttemptID: a.AttemptID, Done: true, Next: true})
	if err != nil || !r.Accepted || r.Assignment == nil || r.Assignment.JobID != ids[1] || r.Assignment.Command != "true" {
		t.Fatalf("final report with next: %+v %v", r, err)
	}
	s.waitState(t, ids[0], "FINISHED")
	if j := s.waitState(t, ids[1], "WORKING"); j.Worker != "a1" {
		t.Fatalf("next job runs on %q", j.Worker)
	}
	// The queue is empty: the result is applied and nothing is handed out.
	r, err = s.c.Report(ctx, client.ReportRequest{Name: "a1", JobID: ids[1], AttemptID: r.Assignment.AttemptID, Done: true, Next: true})
	if err != nil || !r.Accepted || r.Assignment != nil {
		t.Fatalf("last report with next: %+v %v", r, err)
	}
	s.waitState(t, ids[1], "FINISHED")
	// A stale attempt's report with next: 409, nothing picked.
	if r, err := s.c.Report(ctx, client.ReportRequest{Name: "a1", JobID: ids[0], AttemptID: 4242, Done: true, Next: true}); !client.IsStatus(err, 409) || !r.Kill || r.Assignment != nil {
		t.Fatalf("stale report with next: %+v %v", r, err)
	}
}

// waitingPull starts a long pull of worker; its assignment (or nil) comes
// on the channel. It returns once the pull is registered as waiting.
func (s *serverTest) waitingPull(t *testing.T, worker string) <-chan *client.Assignment {
	t.Helper()
	before := s.srv.offers.Len()
	got := make(chan *client.Assignment, 1)
	go func() {
		a, err := s.c.Pull(s.ctx(t), client.PullRequest{Name: worker, WaitMillis: 20000})
		if err != nil {
			t.Error(err)
		}
		got <- a
	}()
	nodeEventually(t, 10*time.Second, "the pull to wait", func() (bool, string) { return s.srv.offers.Len() > before, "" })
	return got
}

func TestCreateHandsItsJobToAWaitingPull(t *testing.T) {
	s := startServer(t, time.Hour)
	ctx := s.ctx(t)
	if err := s.c.Register(ctx, client.RegisterRequest{Name: "a1"}); err != nil {
		t.Fatal(err)
	}
	got := s.waitingPull(t, "a1")
	before := s.srv.Node().Raft().LastIndex()
	id, err := s.c.CreateJob(ctx, client.NewJob{Title: "render", Command: "true"})
	if err != nil {
		t.Fatal(err)
	}
	a := <-got
	if a == nil || a.JobID != id {
		t.Fatalf("waiting pull got %+v, want job %d", a, id)
	}
	// The create and the pick went in one entry.
	if n := s.srv.Node().Raft().LastIndex() - before; n != 1 {
		t.Errorf("%d entries for a create and its dispatch, want 1", n)
	}
	if j := s.waitState(t, id, "WORKING"); j.Worker != "a1" {
		t.Errorf("job runs on %q", j.Worker)
	}
	if s.srv.offers.Len() != 0 {
		t.Errorf("%d pulls still registered", s.srv.offers.Len())
	}
}

func TestClaimThatPicksNothingKeepsThePullWaiting(t *testing.T) {
	// A create claims the waiting pull, but its job needs an affinity the
	// worker lacks: the pick gives nothing and the pull waits on, until a
	// job it can run arrives.
	s := startServer(t, time.Hour)
	ctx := s.ctx(t)
	if err := s.c.Register(ctx, client.RegisterRequest{Name: "g1", Affinity: "gpu", SetAffinity: true}); err != nil {
		t.Fatal(err)
	}
	got := s.waitingPull(t, "g1")
	linux, err := s.c.CreateJob(ctx, client.NewJob{Title: "linux only", Command: "true", Affinity: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	nodeEventually(t, 10*time.Second, "the pull to wait again", func() (bool, string) { return s.srv.offers.Len() == 1, "" })
	select {
	case a := <-got:
		t.Fatalf("the pull returned %+v for a job it cannot run", a)
	default:
	}
	gpu, err := s.c.CreateJob(ctx, client.NewJob{Title: "gpu", Command: "true", Affinity: "gpu"})
	if err != nil {
		t.Fatal(err)
	}
	if a := <-got; a == nil || a.JobID != gpu {
		t.Fatalf("pull got %+v, want job %d", a, gpu)
	}
	s.waitState(t, linux, "WAITING")
}

// TestDialectDutiesAreRegistered: a dialect with a leader duty (Freezer's
// schedules) gets it run by the leader: mounting it registered it.
func TestDialectDutiesAreRegistered(t *testing.T) {
	s := startServerWith(t, ServerConfig{})
	found := false
	for _, d := range s.srv.duties {
		if _, ok := d.(*freezer.Handler); ok {
			found = true
		}
	}
	if !found {
		t.Fatalf("duties %T: Freezer's schedules are not among them", s.srv.duties)
	}
}
