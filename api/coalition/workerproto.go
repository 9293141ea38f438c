package coalition

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
	"github.com/croftfarm/croft/service/liveness"
)

// The Coalition worker protocol (api-dialects.md §2.4): form-encoded POSTs
// from worker.py, plain-text Python-literal replies. Unmodified Coalition
// workers run beside Croft agents on the same scheduler.

// formArgs merges query-string and form-body arguments, like Twisted's
// request.args.
func formArgs(c *gin.Context, body []byte) url.Values {
	args := c.Request.URL.Query()
	if len(body) > 0 && !strings.HasPrefix(strings.TrimSpace(string(body)), "{") {
		if form, err := url.ParseQuery(string(body)); err == nil {
			for k, v := range form {
				args[k] = append(args[k], v...)
			}
		}
	}
	return args
}

func text(c *gin.Context, s string) {
	c.Data(http.StatusOK, "text/plain", []byte(s))
}

// noJob is pickjob's reply when there is nothing to run, byte for byte
// what Coalition sends.
const noJob = "(-1, '', '', '', None)"

// maxWorkerBody bounds a worker protocol request: a heartbeat carries
// the output since the last one, base64-encoded.
const maxWorkerBody = 8 << 20

// serveWorkers serves the worker protocol. The token must be bound to the
// worker's host name (or be an admin's).
func (h *Handler) serveWorkers(c *gin.Context) {
	path := strings.Trim(c.Param("path"), "/")
	if (c.Request.Method != http.MethodPost && c.Request.Method != http.MethodGet) ||
		(path != "pickjob" && path != "heartbeat" && path != "endjob") {
		notFound(c)
		return
	}
	body, err := apierr.ReadBody(c, maxWorkerBody)
	if err != nil {
		Abort(c, err)
		return
	}
	args := formArgs(c, body)
	host := strings.TrimSpace(args.Get("hostname"))
	if host == "" {
		Abort(c, apierr.Bad("hostname is required"))
		return
	}
	if err := raftstore.CheckName("hostname", host); err != nil {
		Abort(c, err)
		return
	}
	p := auth.From(c)
	if !p.MayActAs(host) {
		Abort(c, apierr.Forbidden("token %q may not act as worker %q", p.Name, host))
		return
	}
	// Only workers that exist (or that this pick creates) are tracked:
	// a stream of made-up names must not grow the leader's memory.
	ping := pingFromArgs(args)
	h.farm.Touch(host, ping)
	switch path {
	case "pickjob":
		err = h.pickJob(c, host, p, ping)
	case "heartbeat":
		err = h.workerHeartbeat(c, host, args)
	case "endjob":
		err = h.endJob(c, host, args)
	}
	if err != nil {
		Abort(c, err)
	}
}

// pingFromArgs reads a worker's measurements (the service stamps the
// ping's time).
func pingFromArgs(args url.Values) liveness.Ping {
	load := args.Get("load")
	if len(load) > maxLoadBytes {
		load = "" // a load string is a few numbers; ignore a huge one
	}
	p := liveness.Ping{CPU: load}
	p.FreeMemory, _ = strconv.ParseInt(args.Get("free_memory"), 10, 64)
	p.TotalMemory, _ = strconv.ParseInt(args.Get("total_memory"), 10, 64)
	return p
}

// maxLoadBytes bounds the load string a worker reports.
const maxLoadBytes = 4 << 10

// pickJob is the service's pick without a wait: an idle farm polling
// every 2 s writes nothing to the Raft log. A worker the pick creates
// serves the projects of the token it came with.
func (h *Handler) pickJob(c *gin.Context, host string, p *auth.Principal, ping liveness.Ping) error {
	a, err := h.farm.Pull(c, service.Pull{Worker: host, IP: auth.ClientIPOf(c), Projects: p.WorkerProjects(), Ping: ping})
	if err != nil {
		return err
	}
	if a == nil {
		text(c, noJob)
		return nil
	}
	text(c, PyTuple(a.JobID, a.Command, a.Dir, a.User, coalitionEnv(a.Environment, a.Env)))
	return nil
}

// workerHeartbeat appends the worker's new output to the job log (with the
// progress parsed from it) and answers whether the job is still its own.
func (h *Handler) workerHeartbeat(c *gin.Context, host string, args url.Values) error {
	jobID, err := strconv.ParseInt(args.Get("jobId"), 10, 64)
	if err != nil {
		return apierr.Bad("jobId: %q is not an integer", args.Get("jobId"))
	}
	logb, err := base64.StdEncoding.DecodeString(args.Get("log"))
	if err != nil {
		return apierr.Bad("log: not base64: %v", err)
	}
	if len(logb) > 0 {
		// The worker's current attempt, output only: the log cap and the
		// stale-attempt check are the service's, shared with the agents.
		_, err := h.farm.Report(c, service.Report{Worker: host, JobID: jobID, LogOffset: -1, Log: logb,
			ProgressFromLog: true, OutputOnly: true})
		if err != nil {
			if errors.Is(err, raftstore.ErrStaleAttempt) || errors.Is(err, raftstore.ErrNotFound) {
				text(c, "false")
				return nil
			}
			return err
		}
	}
	// A job under a paused group is not the worker's to run on, even
	// while it is still WORKING.
	j, ok := h.farm.State().Job(jobID)
	alive := ok && !j.HPaused && h.farm.AttemptLive(host, jobID, 0)
	text(c, strconv.FormatBool(alive))
	return nil
}

func (h *Handler) endJob(c *gin.Context, host string, args url.Values) error {
	jobID, err := strconv.ParseInt(args.Get("jobId"), 10, 64)
	if err != nil {
		return apierr.Bad("jobId: %q is not an integer", args.Get("jobId"))
	}
	code, err := strconv.Atoi(strings.TrimSpace(args.Get("errorCode")))
	if err != nil {
		return apierr.Bad("errorCode: %q is not an integer", args.Get("errorCode"))
	}
	_, err = h.farm.Report(c, service.Report{Worker: host, JobID: jobID, LogOffset: -1, Done: true, ExitCode: code})
	if err != nil && !errors.Is(err, raftstore.ErrStaleAttempt) {
		return err
	}
	// Coalition ignores an end from a worker that no longer owns the job.
	text(c, "None")
	return nil
}
