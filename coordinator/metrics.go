package coordinator

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/cluster"
	"github.com/croftfarm/croft/raftstore"
)

// The monitoring routes: /metrics (Prometheus text format), /healthz and
// /readyz. See docs/api/metrics.md.
const (
	PathMetrics = "/metrics"
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
)

// ReadyMaxLag is how many committed entries a coordinator may still have
// to apply and be ready (/readyz): more means it is catching up (after a
// restart, a snapshot install or a partition).
const ReadyMaxLag = 1000

// metrics is one coordinator's Prometheus registry and the instruments
// fed as things happen; the gauges are read from the state at scrape
// time (collect), at a cost bounded by the projects, states and workers,
// never by the jobs.
type metrics struct {
	reg      *prometheus.Registry
	http     *prometheus.CounterVec
	dispatch prometheus.Histogram
	commit   prometheus.Histogram
	runs     *prometheus.CounterVec

	jobs       *prometheus.Desc
	agents     *prometheus.Desc
	applyLag   *prometheus.Desc
	commitIdx  *prometheus.Desc
	appliedIdx *prometheus.Desc
	leader     *prometheus.Desc
	leaderChg  *prometheus.Desc
	heartbeats *prometheus.Desc
	logBytes   *prometheus.Desc

	s *Server
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		http: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "croft_http_requests_total",
			Help: "HTTP requests answered by this coordinator, by route pattern (not the raw path), method and status code.",
		}, []string{"route", "method", "code"}),
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "croft_dispatch_latency_seconds",
			Help:    "Time from a job becoming runnable (its creation, its previous run's end or its dependencies' end) to a worker picking it.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
		}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "croft_raft_commit_seconds",
			Help:    "Time from proposing a Raft entry on this coordinator (as leader) to its commit and apply.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "croft_runs_total",
			Help: "Runs (attempts) ended, by outcome: finished, failed, canceled, timeout, lost. Counted by every coordinator as it applies the log.",
		}, []string{"outcome"}),
		jobs:       prometheus.NewDesc("croft_jobs", "Jobs by project and state (groups included).", []string{"project", "state"}, nil),
		agents:     prometheus.NewDesc("croft_workers", "Workers (agent slots and Coalition workers) by state.", []string{"state"}, nil),
		applyLag:   prometheus.NewDesc("croft_raft_apply_lag", "Committed Raft entries this coordinator has not applied yet.", nil, nil),
		commitIdx:  prometheus.NewDesc("croft_raft_commit_index", "This coordinator's Raft commit index.", nil, nil),
		appliedIdx: prometheus.NewDesc("croft_raft_applied_index", "Index of the last entry this coordinator's state applied.", nil, nil),
		leader:     prometheus.NewDesc("croft_raft_leader", "1 while this coordinator is the ready leader, else 0.", nil, nil),
		leaderChg:  prometheus.NewDesc("croft_raft_leader_changes_total", "New leaders (itself included) this coordinator saw since it started.", nil, nil),
		heartbeats: prometheus.NewDesc("croft_heartbeats_total", "Signs of life this coordinator recorded from workers (agent heartbeats, pulls and reports; Coalition pings).", nil, nil),
		logBytes:   prometheus.NewDesc("croft_joblog_bytes", "Size of this coordinator's job log store on disk (the jobs' output).", nil, nil),
	}
	for _, o := range []string{raftstore.OutcomeFinished, raftstore.OutcomeFailed, raftstore.OutcomeCanceled, raftstore.OutcomeTimeout, raftstore.OutcomeLost} {
		m.runs.WithLabelValues(o) // every outcome shows, at 0
	}
	m.reg.MustRegister(m.http, m.dispatch, m.commit, m.runs, m,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Dispatched implements raftstore.Observer.
func (m *metrics) Dispatched(wait int64) {
	m.dispatch.Observe(max(0, float64(wait)/1e9))
}

// RunEnded implements raftstore.Observer.
func (m *metrics) RunEnded(outcome string) { m.runs.WithLabelValues(outcome).Inc() }

// onCommit is the node's cluster.Config.OnCommit.
func (m *metrics) onCommit(took time.Duration, _ int) { m.commit.Observe(took.Seconds()) }

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.jobs, m.agents, m.applyLag, m.commitIdx, m.appliedIdx, m.leader, m.leaderChg, m.heartbeats, m.logBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the gauges, from the state now.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.s
	if s == nil {
		return
	}
	st := s.node.FSM().State()
	for _, c := range st.JobCounts() {
		ch <- prometheus.MustNewConstMetric(m.jobs, prometheus.GaugeValue, float64(c.Jobs), c.Project, c.State)
	}
	for state, n := range st.WorkerCounts() {
		ch <- prometheus.MustNewConstMetric(m.agents, prometheus.GaugeValue, float64(n), state)
	}
	commit, applied := s.node.Raft().CommitIndex(), st.AppliedIndex()
	lag := 0.0
	if commit > applied {
		lag = float64(commit - applied)
	}
	ch <- prometheus.MustNewConstMetric(m.applyLag, prometheus.GaugeValue, lag)
	ch <- prometheus.MustNewConstMetric(m.commitIdx, prometheus.GaugeValue, float64(commit))
	ch <- prometheus.MustNewConstMetric(m.appliedIdx, prometheus.GaugeValue, float64(applied))
	leader := 0.0
	if ready, _ := s.node.Leadership(); ready {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(m.leader, prometheus.GaugeValue, leader)
	ch <- prometheus.MustNewConstMetric(m.leaderChg, prometheus.CounterValue, float64(s.node.LeaderChanges()))
	ch <- prometheus.MustNewConstMetric(m.heartbeats, prometheus.CounterValue, float64(s.pings.Count()))
	ch <- prometheus.MustNewConstMetric(m.logBytes, prometheus.GaugeValue, float64(st.LogStoreBytes()))
}

// countHTTP counts every request by its route pattern (gin's FullPath:
// bounded cardinality); a path no route matched counts as "unmatched".
func (m *metrics) countHTTP(c *gin.Context) {
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	method := c.Request.Method
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
	default:
		method = "other" // a client's invented method cannot add series
	}
	m.http.WithLabelValues(route, method, strconv.Itoa(c.Writer.Status())).Inc()
}

// registerMonitoring mounts /healthz, /readyz (no token: they tell
// nothing sensitive) and /metrics (a token with the read rule, unless
// public). They are answered by the coordinator asked, never forwarded.
func (s *Server) registerMonitoring(e *gin.Engine, local auth.Mount, public bool) {
	e.GET(PathHealthz, func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"status": "ok", "node_id": s.node.ID()})
	})
	e.HEAD(PathHealthz, func(c *gin.Context) { c.Status(http.StatusOK) })
	e.GET(PathReadyz, s.handleReadyz)
	e.HEAD(PathReadyz, s.handleReadyz)
	h := gin.WrapH(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: nil, Registry: s.metrics.reg}))
	if public {
		e.GET(PathMetrics, h)
		return
	}
	// A scrape must work when there is no leader (when it matters most):
	// the token falls back to this node's copy, as for the status.
	local.Confirm = func(perm auth.Perm, abort auth.Aborter) gin.HandlerFunc { return s.confirmView(perm, abort, true) }
	local.Handle(http.MethodGet, PathMetrics, auth.PermRead, h)
}

// Readiness is the body of /readyz.
type Readiness struct {
	Ready  bool   `json:"ready"`
	NodeID string `json:"node_id"`
	// Reason says why the coordinator is not ready (empty when it is).
	Reason       string `json:"reason,omitempty"`
	LeaderID     string `json:"leader_id,omitempty"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

// Ready reports whether this coordinator can serve: a leader is known,
// it has applied all but ReadyMaxLag committed entries, its FSM is not
// halted and its data directory takes a write.
func (s *Server) Ready() Readiness {
	st := s.node.FSM().State()
	_, leaderID := s.node.Raft().LeaderWithID()
	r := Readiness{NodeID: s.node.ID(), LeaderID: string(leaderID), CommitIndex: s.node.Raft().CommitIndex(), AppliedIndex: st.AppliedIndex()}
	switch {
	case s.node.Unconfigured():
		r.Reason = cluster.UnconfiguredHint
	case s.HaltErr() != nil:
		r.Reason = "halted: " + s.HaltErr().Error()
	case leaderID == "":
		r.Reason = "no leader known: an election is under way, or this coordinator cannot reach a quorum of the cluster"
	case r.CommitIndex > r.AppliedIndex+ReadyMaxLag:
		r.Reason = fmt.Sprintf("catching up: %d committed entries not applied yet (at most %d)", r.CommitIndex-r.AppliedIndex, ReadyMaxLag)
	case s.node.StorageErr() != nil:
		r.Reason = "cannot write its Raft state: " + s.node.StorageErr().Error()
	default:
		if err := probeWrite(s.cfg.Node.DataDir); err != nil {
			r.Reason = "data directory not writable: " + err.Error()
		}
	}
	r.Ready = r.Reason == ""
	return r
}

func (s *Server) handleReadyz(c *gin.Context) {
	r := s.Ready()
	code := http.StatusOK
	if !r.Ready {
		code = http.StatusServiceUnavailable
	}
	if c.Request.Method == http.MethodHead {
		c.Status(code)
		return
	}
	c.JSON(code, r)
}

// probeWrite writes and removes a small file in dir.
func probeWrite(dir string) error {
	f, err := os.CreateTemp(dir, ".readyz-*")
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte("ok"))
	cerr := f.Close()
	rerr := os.Remove(f.Name())
	return errors.Join(werr, cerr, rerr)
}
