package coordinator

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metricValue returns the value of the sample whose name and labels are
// exactly series (as written by the text format), or -1.
func metricValue(text, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v
}

// A job's life shows in /metrics: the job counts by project and state,
// the dispatch latency, the run's outcome, Raft's commits and leader
// changes, the workers, the heartbeats, the HTTP requests by route
// pattern and the job log's size; /healthz and /readyz answer 200.
func TestMetricsAndHealth(t *testing.T) {
	s := startServer(t, time.Hour)
	ctx := s.ctx(t)
	if err := s.c.Register(ctx, client.RegisterRequest{Name: "a1"}); err != nil {
		t.Fatal(err)
	}
	id, err := s.c.CreateJob(ctx, client.NewJob{Title: "j", Command: "echo hi"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.c.Pull(ctx, client.PullRequest{Name: "a1", WaitMillis: 0})
	if err != nil || a == nil {
		t.Fatalf("pull %+v %v", a, err)
	}
	if _, err := s.c.Heartbeat(ctx, client.HeartbeatRequest{Name: "a1", Running: []int64{a.AttemptID}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.Report(ctx, client.ReportRequest{Name: "a1", JobID: id, AttemptID: a.AttemptID, Log: []byte("hi\n"), Done: true}); err != nil {
		t.Fatal(err)
	}
	s.waitState(t, id, "FINISHED")
	_, _ = httpGet(t, s.url+"/croft/v1/jobs/"+strconv.FormatInt(id, 10))
	_, _ = httpGet(t, s.url+"/no/such/path")

	code, text := httpGet(t, s.url+PathMetrics)
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, text)
	}
	for series, min := range map[string]float64{
		`croft_jobs{project="default",state="finished"}`: 1,
		`croft_runs_total{outcome="finished"}`:           1,
		`croft_runs_total{outcome="lost"}`:               0,
		`croft_dispatch_latency_seconds_count`:           1,
		`croft_raft_commit_seconds_count`:                1,
		`croft_raft_leader_changes_total`:                1,
		`croft_raft_leader`:                              1,
		`croft_raft_apply_lag`:                           0,
		`croft_workers{state="idle"}`:                    1,
		`croft_heartbeats_total`:                         2,
		`croft_joblog_bytes`:                             1,
		`croft_http_requests_total{code="200",method="POST",route="` + client.PathPull + `"}`: 1,
		`croft_http_requests_total{code="200",method="GET",route="/croft/v1/jobs/:id"}`:       1,
		`croft_http_requests_total{code="404",method="GET",route="unmatched"}`:                1,
	} {
		if v := metricValue(text, series); v < min {
			t.Errorf("%s = %v, want at least %v", series, v, min)
		}
	}
	if strings.Contains(text, "/croft/v1/jobs/"+strconv.FormatInt(id, 10)+`"`) {
		t.Error("a raw path is a label: unbounded cardinality")
	}
	if v := metricValue(text, `croft_jobs{project="default",state="waiting"}`); v != -1 {
		t.Errorf("no job waits, yet croft_jobs waiting = %v", v)
	}

	if code, body := httpGet(t, s.url+PathHealthz); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	code, body := httpGet(t, s.url+PathReadyz)
	var r Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 200 || !r.Ready || r.LeaderID != "s1" {
		t.Fatalf("/readyz: %d %s %v", code, body, err)
	}
}

// /metrics needs a token with the read rule unless MetricsPublic; the
// health routes never need one.
func TestMetricsAccess(t *testing.T) {
	sec := startSecure(t)
	if code, _ := sec.raw(t, "", http.MethodGet, PathMetrics, ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without a token: %d, want 401", code)
	}
	for _, p := range []string{PathHealthz, PathReadyz} {
		if code, body := sec.raw(t, "", http.MethodGet, p, ""); code != 200 {
			t.Fatalf("%s without a token: %d %s", p, code, body)
		}
	}
	pub := startServerWith(t, ServerConfig{MetricsPublic: true, Auth: auth.Config{}})
	if code, body := httpGet(t, pub.url+PathMetrics); code != 200 || !strings.Contains(body, "croft_raft_leader 1") {
		t.Fatalf("public /metrics without a token: %d %.200s", code, body)
	}
}

// A coordinator started on a fresh data dir without --bootstrap or
// --join is not ready, and /readyz says what to do (issue 12).
func TestReadyzExplainsAnUnconfiguredNode(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{Auth: auth.Config{Insecure: true}, Node: cluster.Config{
		NodeID: "lonely", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", HTTPAddr: ln.Addr().String(), Logger: nodeTestLogger(),
	}})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	code, body := httpGet(t, "http://"+ln.Addr().String()+PathReadyz)
	var r Readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 503 || r.Ready || !strings.Contains(r.Reason, "--bootstrap") || !strings.Contains(r.Reason, "--join") {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if code, _ := httpGet(t, "http://"+ln.Addr().String()+PathHealthz); code != 200 {
		t.Fatalf("/healthz of a live process: %d", code)
	}
}
