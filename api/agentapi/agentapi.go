// Package agentapi serves the Croft agent protocol (/croft/v1/agent/*):
// register, heartbeat, long-poll pull and attempt reports. Heartbeats stay
// in the leader's memory; register, pick and report are Raft commands.
package agentapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
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
	now     func() time.Time
}

// New returns an agent protocol handler.
func New(store Store, pings Pings, waiters Waiters) *Handler {
	return &Handler{store: store, pings: pings, waiters: waiters, now: time.Now}
}

// Register mounts the routes; mw runs first (leader forwarding).
func (h *Handler) Register(r gin.IRouter, mw ...gin.HandlerFunc) {
	with := func(f gin.HandlerFunc) []gin.HandlerFunc {
		return append(append([]gin.HandlerFunc{}, mw...), f)
	}
	r.POST(client.PathRegister, with(h.register)...)
	r.POST(client.PathHeartbeat, with(h.heartbeat)...)
	r.POST(client.PathPull, with(h.pull)...)
	r.POST(client.PathReport, with(h.report)...)
}

// maxBody bounds a request body: a report carries at most a 64 KiB chunk
// (base64 in JSON), a heartbeat a few hundred bytes.
const maxBody = 64 << 20

// bind decodes the JSON body into v. It uses encoding/json directly: gin's
// binding adds a reflective validation pass these types do not use, a
// good part of a heartbeat's cost at thousands per second.
func bind(c *gin.Context, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, maxBody))
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		apierr.Abort(c, apierr.Bad("malformed JSON: %v", err))
		return false
	}
	return true
}

func validName(name string) error {
	if strings.TrimSpace(name) == "" || len(name) > 255 || strings.ContainsAny(name, "\n\r") {
		return apierr.Bad("agent name %q: 1 to 255 characters, one line", name)
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

func (h *Handler) register(c *gin.Context) {
	var req client.RegisterRequest
	if !bind(c, &req) {
		return
	}
	if err := validName(req.Name); err != nil {
		apierr.Abort(c, err)
		return
	}
	now := h.now().UnixNano()
	h.pings.Seen(req.Name, ping(now, req.Resources))
	cmd := &raftstore.WorkerRegister{Now: now, Name: req.Name, IP: c.ClientIP(), SetAffinity: req.SetAffinity, Affinity: req.Affinity}
	if _, err := h.store.Apply(c, cmd); err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"ok": true})
}

// heartbeat records the agent's measurements in memory and tells it which
// of its attempts are no longer its own. It writes to Raft only when a
// worker marked lost comes back.
func (h *Handler) heartbeat(c *gin.Context) {
	var req client.HeartbeatRequest
	if !bind(c, &req) {
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
		if _, err := h.store.Apply(c, &raftstore.WorkerRegister{Now: now, Name: req.Name, IP: c.ClientIP()}); err != nil {
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
	if !bind(c, &req) {
		return
	}
	if err := validName(req.Name); err != nil {
		apierr.Abort(c, err)
		return
	}
	wait := min(time.Duration(max(req.WaitMillis, 0))*time.Millisecond, MaxPullWait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	ip := c.ClientIP()
	for {
		work, changed := h.store.State().WorkFor(req.Name)
		if work {
			now := h.now().UnixNano()
			h.pings.Seen(req.Name, liveness.Ping{Time: now})
			res, err := h.store.Apply(c, &raftstore.Pick{Now: now, Worker: req.Name, IP: ip})
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
		Environment:     a.Environment,
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
	if !bind(c, &req) {
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
	now := h.now().UnixNano()
	h.pings.Seen(req.Name, liveness.Ping{Time: now})
	rep := raftstore.Report{
		Now: now, Worker: req.Name, JobID: req.JobID, AttemptID: req.AttemptID,
		LogOffset: req.LogOffset, Log: req.Log, Progress: req.Progress,
		Done: req.Done, ExitCode: req.ExitCode, TimedOut: req.TimedOut, Lost: req.Lost,
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
		resp := client.ReportResponse{Accepted: true}
		if rp, ok := res.(raftstore.ReportPickResult); ok && rp.Next != nil {
			resp.Assignment = assignment(rp.Next)
		}
		c.JSON(http.StatusOK, resp)
	}
}
