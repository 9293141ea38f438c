// Package agentapi serves the Croft agent protocol (/croft/v1/agent/*):
// register, heartbeat, long-poll pull and attempt reports. Heartbeats stay
// in the leader's memory; register, pick and report go through the
// service layer (package service), which the protocol shares with
// Coalition's worker protocol.
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
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
	"github.com/croftfarm/croft/service/liveness"
)

// Farm is what the agent routes need of the service layer; requests
// reach them on the leader only.
type Farm interface {
	State() *raftstore.State
	RegisterWorker(ctx context.Context, r service.Registration) error
	Heartbeat(ctx context.Context, b service.Beat) (kill []int64, err error)
	Pull(ctx context.Context, p service.Pull) (*raftstore.Assignment, error)
	Report(ctx context.Context, r service.Report) (service.ReportResult, error)
}

// MaxPullWait bounds a long poll, so proxies and load balancers in between
// never see an idle connection for long.
const MaxPullWait = 60 * time.Second

// Handler serves the agent protocol.
type Handler struct {
	farm Farm
}

// New returns an agent protocol handler.
func New(farm Farm) *Handler {
	return &Handler{farm: farm}
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

// ping turns an agent's measurements into Coalition's worker columns (the
// service stamps its time).
func ping(r client.Resources) liveness.Ping {
	p := liveness.Ping{FreeMemory: r.FreeMemory, TotalMemory: r.TotalMemory}
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
	host := hostInfo(&req)
	if err == nil {
		err = raftstore.CheckHostInfo(host)
	}
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	reg := service.Registration{Name: req.Name, IP: auth.ClientIPOf(c), SetAffinity: req.SetAffinity, Affinity: req.Affinity,
		Projects: auth.From(c).WorkerProjects(), Ping: ping(req.Resources), Host: host}
	if err := h.farm.RegisterWorker(c, reg); err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"ok": true})
}

// hostInfo is what a slot's registration says of its host. The host is
// named by the agent: its first slot's worker name, the others' without
// their "/N" suffix (agent.SlotName), N in 2..Slots.
func hostInfo(req *client.RegisterRequest) *raftstore.HostInfo {
	hi := &raftstore.HostInfo{Name: HostName(req.Name, req.Slots), Slots: req.Slots, CPUs: req.CPUs, TotalMemory: req.Resources.TotalMemory}
	if len(req.Interpreters) > 0 {
		hi.Interpreters = make([]raftstore.HostInterpreter, len(req.Interpreters))
		for i, in := range req.Interpreters {
			hi.Interpreters[i] = raftstore.HostInterpreter{Name: in.Name, Path: in.Path}
		}
	}
	return hi
}

// HostName is the host of the agent slot named worker, for an agent that
// runs slots slots: worker without a "/N" suffix when N is a slot number
// (2..slots, no leading zero), else worker itself.
func HostName(worker string, slots int) string {
	i := strings.LastIndexByte(worker, '/')
	if i <= 0 || slots < 2 {
		return worker
	}
	n, err := strconv.Atoi(worker[i+1:])
	if err != nil || n < 2 || n > slots || strconv.Itoa(n) != worker[i+1:] {
		return worker
	}
	return worker[:i]
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
	kill, err := h.farm.Heartbeat(c, service.Beat{Name: req.Name, IP: auth.ClientIPOf(c), Ping: ping(req.Resources), Running: req.Running})
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	if len(kill) == 0 {
		// Nearly every reply: skip encoding it, thousands of times a second.
		c.Data(http.StatusOK, jsonContentType, nothingToKill)
		return
	}
	c.JSON(http.StatusOK, client.HeartbeatResponse{Kill: kill})
}

// The usual heartbeat reply, encoded once.
var nothingToKill = []byte(`{"kill":[]}`)

const jsonContentType = "application/json; charset=utf-8"

// pull gives the agent a job, waiting up to the asked time for one (the
// service's Pull: no Raft entry while there is nothing to pick, and a
// create may hand a waiting pull its job in the create's own entry).
func (h *Handler) pull(c *gin.Context) {
	var req client.PullRequest
	if !bind(c, &req, func() string { return req.Name }) {
		return
	}
	wait := time.Duration(min(max(req.WaitMillis, 0), int(MaxPullWait/time.Millisecond))) * time.Millisecond
	ctx := c.Request.Context()
	a, err := h.farm.Pull(ctx, service.Pull{Worker: req.Name, IP: auth.ClientIPOf(c), Projects: auth.From(c).WorkerProjects(), Wait: wait})
	switch {
	case ctx.Err() != nil:
		return // the agent went away
	case err != nil:
		apierr.Abort(c, err)
	case a != nil:
		c.JSON(http.StatusOK, client.PullResponse{Assignment: assignment(a)})
	default:
		c.JSON(http.StatusOK, client.PullResponse{})
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
		Try:             a.Try,
		Project:         a.Project,
		Session:         a.Session,
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
	if req.LogOffset < 0 || req.StderrOffset < 0 {
		apierr.Abort(c, apierr.Bad("log_offset %d or stderr_offset %d is negative", req.LogOffset, req.StderrOffset))
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
	if len(req.Log)+len(req.Stderr) > maxChunk {
		apierr.Abort(c, fmt.Errorf("%w: a chunk of %d bytes, the limit is %d", raftstore.ErrTooLarge, len(req.Log)+len(req.Stderr), maxChunk))
		return
	}
	// Only the worker that holds the attempt reports on it: a token bound
	// to another worker cannot finish, fail or fill someone else's job.
	if ev, ok := h.farm.State().RunByID(req.AttemptID); ok && !auth.From(c).MayActAs(ev.Worker) {
		apierr.Abort(c, apierr.Forbidden("token %q may not report for worker %q", auth.From(c).Name, ev.Worker))
		return
	}
	res, err := h.farm.Report(c, service.Report{
		Worker: req.Name, IP: c.ClientIP(), JobID: req.JobID, AttemptID: req.AttemptID,
		LogOffset: req.LogOffset, Log: req.Log, Progress: req.Progress,
		Stderr: req.Stderr, StderrOffset: req.StderrOffset,
		Done: req.Done, ExitCode: req.ExitCode, TimedOut: req.TimedOut, Lost: req.Lost, Next: req.Next,
		Signal: req.Signal,
	})
	switch {
	case errors.Is(err, raftstore.ErrStaleAttempt):
		c.JSON(http.StatusConflict, client.ReportResponse{Kill: true, Error: err.Error()})
	case err != nil:
		apierr.Abort(c, err)
	default:
		resp := client.ReportResponse{Accepted: true, LogFull: res.LogFull}
		if res.Next != nil {
			resp.Assignment = assignment(res.Next)
		}
		c.JSON(http.StatusOK, resp)
	}
}
