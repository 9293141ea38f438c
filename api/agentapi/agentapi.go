// Package agentapi serves the Croft agent protocol (/croft/v1/agent/*):
// register, heartbeat, long-poll pull and attempt reports. Heartbeats stay
// in the leader's memory; register, pick and report are Raft commands.
package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/coordinator/dispatch"
	"github.com/croftfarm/croft/coordinator/liveness"
	"github.com/croftfarm/croft/raftstore"
)

// Store is what the agent routes need from the coordinator; requests reach
// them on the leader only.
type Store interface {
	Apply(ctx context.Context, cmd raftstore.Command) (any, error)
	State() *raftstore.State
}

// Pings is the leader's in-memory record of worker heartbeats.
type Pings interface {
	Seen(worker string, p liveness.Ping)
}

// Waiters registers waiting pulls, so that a create can hand them a job
// picked in its own entry (see coordinator/dispatch).
type Waiters interface {
	Wait(worker, ip string) *dispatch.Waiter
	// Cancel withdraws a waiter; false if it was claimed already (its
	// result is coming).
	Cancel(w *dispatch.Waiter) bool
}

// MaxPullWait bounds a long poll, so proxies and load balancers in between
// never see an idle connection for long.
const MaxPullWait = 60 * time.Second

// Handler serves the agent protocol.
type Handler struct {
	store   Store
	pings   Pings
	waiters Waiters
	// logCap bounds the output kept of one job (its log), in bytes.
	logCap int64
	now    func() time.Time
}

// New returns an agent protocol handler. logCap bounds the output kept of
// one job, in bytes (0 or more than raftstore.MaxLogBytes: that).
func New(store Store, pings Pings, waiters Waiters, logCap int64) *Handler {
	if logCap <= 0 || logCap > raftstore.MaxLogBytes {
		logCap = raftstore.MaxLogBytes
	}
	return &Handler{store: store, pings: pings, waiters: waiters, logCap: logCap, now: time.Now}
}

// Register mounts the routes: agent tokens (or admins) only, each request
// for a worker name the token is bound to.
func (h *Handler) Register(m auth.Mount) {
	m.Abort = apierr.Abort
	m.Handle(http.MethodPost, client.PathRegister, auth.PermAgent, h.register)
	m.Handle(http.MethodPost, client.PathHeartbeat, auth.PermAgent, h.heartbeat)
	m.Handle(http.MethodPost, client.PathPull, auth.PermAgent, h.pull)
	m.Handle(http.MethodPost, client.PathReport, auth.PermAgent, h.report)
}

// Bounds of the agent protocol's requests.
const (
	// maxBody bounds a request body: a report carries at most one chunk
	// of output (the agent sends 64 KiB, base64 in JSON), a heartbeat a
	// few hundred bytes.
	maxBody = 1 << 20
	// maxChunk bounds the output bytes of one report.
	maxChunk = 512 << 10
	// maxCPUs bounds the per-core loads of a heartbeat.
	maxCPUs = 4096
	// maxRunning bounds the attempts a heartbeat lists.
	maxRunning = 4096
)

// bind decodes the JSON body into v, then checks that the token may act
// as the worker it names. It uses encoding/json directly: gin's binding
// adds a reflective validation pass these types do not use, a good part
// of a heartbeat's cost at thousands per second.
func bind(c *gin.Context, v any, name func() string) bool {
	body, err := apierr.ReadBody(c, maxBody)
	if err == nil {
		if err = json.Unmarshal(body, v); err != nil {
			err = apierr.Bad("malformed JSON: %v", err)
		}
	}
	if err == nil {
		err = validName(name())
	}
	if err == nil {
		if p := auth.From(c); !p.MayActAs(name()) {
			err = apierr.Forbidden("token %q may not act as worker %q", p.Name, name())
		}
	}
	if err != nil {
		apierr.Abort(c, err)
		return false
	}
	return true
}

func validName(name string) error {
	if strings.TrimSpace(name) == "" {
		return apierr.Bad("agent name %q: 1 to %d characters, one line", name, raftstore.MaxNameBytes)
	}
	return raftstore.CheckName("agent name", name)
}

// checkResources bounds what an agent reports of its host.
func checkResources(r client.Resources) error {
	if len(r.CPU) > maxCPUs {
		return fmt.Errorf("%w: %d CPU loads, the limit is %d", raftstore.ErrTooLarge, len(r.CPU), maxCPUs)
	}
	return nil
}

// ping turns an agent's measurements into Coalition's worker columns.
func ping(now int64, r client.Resources) liveness.Ping {
	p := liveness.Ping{Time: now, FreeMemory: r.FreeMemory, TotalMemory: r.TotalMemory}
	if len(r.CPU) > 0 {
		b := make([]byte, 0, 2+5*len(r.CPU))
		b = append(b, '[')
		for i, v := range r.CPU {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = strconv.AppendInt(b, int64(v+0.5), 10)
		}
		p.CPU = string(append(b, ']'))
	}
	return p
}

// register records a worker, restricted to the projects of the token it
// registers with.
func (h *Handler) register(c *gin.Context) {
	var req client.RegisterRequest
	if !bind(c, &req, func() string { return req.Name }) {
		return
	}
	err := checkResources(req.Resources)
	if err == nil && req.SetAffinity {
		err = raftstore.CheckAffinity("affinity", req.Affinity)
	}
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	now := h.now().UnixNano()
	cmd := &raftstore.WorkerRegister{Now: now, Name: req.Name, IP: auth.ClientIPOf(c), SetAffinity: req.SetAffinity, Affinity: req.Affinity,
		Projects: auth.From(c).WorkerProjects()}
	if _, err := h.store.Apply(c, cmd); err != nil {
		apierr.Abort(c, err)
		return
	}
	h.pings.Seen(req.Name, ping(now, req.Resources))
	c.JSON(http.StatusOK, gin.H{"ok": true})
}

// heartbeat records the agent's measurements in memory and tells it which
// of its attempts are no longer its own. It writes to Raft only when a
// worker marked lost comes back.
func (h *Handler) heartbeat(c *gin.Context) {
	var req client.HeartbeatRequest
	if !bind(c, &req, func() string { return req.Name }) {
		return
	}
	if err := checkResources(req.Resources); err != nil {
		apierr.Abort(c, err)
		return
	}
	if len(req.Running) > maxRunning {
		apierr.Abort(c, fmt.Errorf("%w: %d running attempts, the limit is %d", raftstore.ErrTooLarge, len(req.Running), maxRunning))
		return
	}
	st := h.store.State()
	w, ok := st.Worker(req.Name)
	if !ok {
		apierr.Abort(c, fmt.Errorf("%w: worker %q: register first", raftstore.ErrNotFound, req.Name))
		return
	}
	now := h.now().UnixNano()
	h.pings.Seen(req.Name, ping(now, req.Resources))
	if w.State == raftstore.WorkerTimeout {
		if _, err := h.store.Apply(c, &raftstore.WorkerRegister{Now: now, Name: req.Name, IP: auth.ClientIPOf(c), Projects: w.Projects}); err != nil {
			apierr.Abort(c, err)
			return
		}
	}
	resp := client.HeartbeatResponse{Kill: []int64{}}
	for _, a := range req.Running {
		if ev, ok := st.Event(a); !ok || ev.Worker != req.Name || !st.AttemptLive(a) {
			resp.Kill = append(resp.Kill, a)
		}
	}
	if len(resp.Kill) == 0 {
		// Nearly every reply: skip encoding it, thousands of times a second.
		c.Data(http.StatusOK, jsonContentType, nothingToKill)
		return
	}
	c.JSON(http.StatusOK, resp)
}

// The usual heartbeat reply, encoded once.
var nothingToKill = []byte(`{"kill":[]}`)

const jsonContentType = "application/json; charset=utf-8"

// pull gives the agent a job, waiting up to the asked time for one. It
// proposes a Pick only when one would change something (State.WorkFor),
// so idle agents cost no Raft entries. While it waits, a create may claim
// it and pick for it in the create's own entry (Waiters).
func (h *Handler) pull(c *gin.Context) {
	var req client.PullRequest
	if !bind(c, &req, func() string { return req.Name }) {
		return
	}
	wait := time.Duration(min(max(req.WaitMillis, 0), int(MaxPullWait/time.Millisecond))) * time.Millisecond
	timer := time.NewTimer(wait)
	defer timer.Stop()
	ip := auth.ClientIPOf(c)
	projects := auth.From(c).WorkerProjects()
	for {
		work, changed := h.store.State().WorkFor(req.Name)
		if work {
			now := h.now().UnixNano()
			h.pings.Seen(req.Name, liveness.Ping{Time: now})
			res, err := h.store.Apply(c, &raftstore.Pick{Now: now, Worker: req.Name, IP: ip, Projects: projects})
			if err != nil {
				apierr.Abort(c, err)
				return
			}
			if a, _ := res.(*raftstore.Assignment); a != nil {
				c.JSON(http.StatusOK, client.PullResponse{Assignment: assignment(a)})
				return
			}
			// Another worker took it first: wait for the next change.
		}
		w := h.waiters.Wait(req.Name, ip)
		var offer dispatch.Result
		claimed, expired := false, false
		select {
		case offer = <-w.C():
			claimed = true
		case <-changed:
		case <-timer.C:
			expired = true
		case <-c.Request.Context().Done():
		}
		if !claimed && !h.waiters.Cancel(w) {
			offer, claimed = <-w.C(), true // a create claimed it meanwhile
		}
		if claimed && offer.Err == nil && offer.Assignment != nil {
			h.pings.Seen(req.Name, liveness.Ping{Time: h.now().UnixNano()})
			c.JSON(http.StatusOK, client.PullResponse{Assignment: assignment(offer.Assignment)})
			return
		}
		// A claim that gave nothing (or failed) is a wake-up: look again.
		switch {
		case c.Request.Context().Err() != nil:
			return
		case expired:
			c.JSON(http.StatusOK, client.PullResponse{})
			return
		}
	}
}

func assignment(a *raftstore.Assignment) *client.Assignment {
	return &client.Assignment{
		AttemptID:       a.AttemptID,
		JobID:           a.JobID,
		Title:           a.Title,
		Command:         a.Command,
		Dir:             a.Dir,
		Environment:     raftstore.EnvText(a.Env), // KEY=VALUE lines, as the agent has always parsed
		User:            a.User,
		ProgressPattern: a.ProgressPattern,
		Timeout:         a.Timeout,
	}
}

// report applies an attempt's output or result. A stale attempt gets 409
// and Kill: the agent must stop it and drop its remaining reports. A final
// report with Next also picks the worker's next job, in the same entry.
func (h *Handler) report(c *gin.Context) {
	var req client.ReportRequest
	if !bind(c, &req, func() string { return req.Name }) {
		return
	}
	if req.AttemptID <= 0 {
		apierr.Abort(c, apierr.Bad("attempt_id is required"))
		return
	}
	if req.LogOffset < 0 {
		apierr.Abort(c, apierr.Bad("log_offset %d is negative", req.LogOffset))
		return
	}
	if req.Progress != nil && (*req.Progress < 0 || *req.Progress > 1) {
		apierr.Abort(c, apierr.Bad("progress %v is outside 0..1", *req.Progress))
		return
	}
	if req.Next && !req.Done {
		apierr.Abort(c, apierr.Bad("next is only for a final report (done)"))
		return
	}
	if len(req.Log) > maxChunk {
		apierr.Abort(c, fmt.Errorf("%w: a chunk of %d bytes, the limit is %d", raftstore.ErrTooLarge, len(req.Log), maxChunk))
		return
	}
	// Only the worker that holds the attempt reports on it: a token bound
	// to another worker cannot finish, fail or fill someone else's job.
	st := h.store.State()
	if ev, ok := st.Event(req.AttemptID); ok && !auth.From(c).MayActAs(ev.Worker) {
		apierr.Abort(c, apierr.Forbidden("token %q may not report for worker %q", auth.From(c).Name, ev.Worker))
		return
	}
	// The job's output is capped before Raft: a chunk past the cap is cut
	// (the log says where) and the agent told to send no more.
	full := false
	if n, truncated, ok := st.LogSize(req.JobID); ok && len(req.Log) > 0 {
		switch {
		case truncated:
			req.Log, full = nil, true
		case n >= h.logCap:
			// One byte past the cap, which the FSM cuts: the log then
			// says where it was cut.
			req.Log, full = req.Log[:1], true
		case int64(len(req.Log)) > h.logCap-n:
			full = true // the FSM keeps what fits and notes the cut
		}
	}
	now := h.now().UnixNano()
	h.pings.Seen(req.Name, liveness.Ping{Time: now})
	rep := raftstore.Report{
		Now: now, Worker: req.Name, JobID: req.JobID, AttemptID: req.AttemptID,
		LogOffset: req.LogOffset, Log: req.Log, Progress: req.Progress,
		Done: req.Done, ExitCode: req.ExitCode, TimedOut: req.TimedOut, Lost: req.Lost,
		LogCap: h.logCap,
	}
	var cmd raftstore.Command = &rep
	if req.Next {
		cmd = &raftstore.ReportPick{Report: rep, IP: c.ClientIP()}
	}
	res, err := h.store.Apply(c, cmd)
	switch {
	case errors.Is(err, raftstore.ErrStaleAttempt):
		c.JSON(http.StatusConflict, client.ReportResponse{Kill: true, Error: err.Error()})
	case err != nil:
		apierr.Abort(c, err)
	default:
		resp := client.ReportResponse{Accepted: true, LogFull: full}
		if rp, ok := res.(raftstore.ReportPickResult); ok && rp.Next != nil {
			resp.Assignment = assignment(rp.Next)
		}
		c.JSON(http.StatusOK, resp)
	}
}
