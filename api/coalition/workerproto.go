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
	"github.com/croftfarm/croft/coordinator/liveness"
	"github.com/croftfarm/croft/raftstore"
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

func (h *Handler) serveWorkers(c *gin.Context) {
	if c.Request.Method != http.MethodPost && c.Request.Method != http.MethodGet {
		notFound(c)
		return
	}
	body, err := readBody(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	args := formArgs(c, body)
	host := strings.TrimSpace(args.Get("hostname"))
	if host == "" {
		apierr.Abort(c, apierr.Bad("hostname is required"))
		return
	}
	h.pings.Seen(host, pingFromArgs(args, h.stamp()))
	switch strings.Trim(c.Param("path"), "/") {
	case "pickjob":
		err = h.pickJob(c, host)
	case "heartbeat":
		err = h.workerHeartbeat(c, host, args)
	case "endjob":
		err = h.endJob(c, host, args)
	default:
		notFound(c)
		return
	}
	if err != nil {
		apierr.Abort(c, err)
	}
}

func pingFromArgs(args url.Values, now int64) liveness.Ping {
	p := liveness.Ping{Time: now, CPU: args.Get("load")}
	p.FreeMemory, _ = strconv.ParseInt(args.Get("free_memory"), 10, 64)
	p.TotalMemory, _ = strconv.ParseInt(args.Get("total_memory"), 10, 64)
	return p
}

// pickJob proposes a Pick only when it can change something (WorkFor): an
// idle farm polling every 2 s writes nothing to the Raft log.
func (h *Handler) pickJob(c *gin.Context, host string) error {
	if work, _ := h.store.State().WorkFor(host); !work {
		text(c, noJob)
		return nil
	}
	res, err := h.store.Apply(c, &raftstore.Pick{Now: h.stamp(), Worker: host, IP: c.ClientIP()})
	if err != nil {
		return err
	}
	a, _ := res.(*raftstore.Assignment)
	if a == nil {
		text(c, noJob)
		return nil
	}
	text(c, PyTuple(a.JobID, a.Command, a.Dir, a.User, a.Environment))
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
	st := h.store.State()
	if len(logb) > 0 {
		cmd := &raftstore.Report{Now: h.stamp(), Worker: host, JobID: jobID, LogOffset: -1, Log: logb}
		if j, ok := st.Job(jobID); ok {
			cmd.Progress = lastProgress(j.ProgressPattern, logb)
		}
		if _, err := h.store.Apply(c, cmd); err != nil {
			if errors.Is(err, raftstore.ErrStaleAttempt) || errors.Is(err, raftstore.ErrNotFound) {
				text(c, "false")
				return nil
			}
			return err
		}
	}
	w, ok := st.Worker(host)
	j, jok := st.Job(jobID)
	alive := ok && jok && w.CurrentEvent != 0 && j.Attempt == w.CurrentEvent &&
		j.State == raftstore.StateWorking && !j.HPaused
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
	_, err = h.store.Apply(c, &raftstore.Report{Now: h.stamp(), Worker: host, JobID: jobID, LogOffset: -1, Done: true, ExitCode: code})
	if err != nil && !errors.Is(err, raftstore.ErrStaleAttempt) {
		return err
	}
	// Coalition ignores an end from a worker that no longer owns the job.
	text(c, "None")
	return nil
}

// lastProgress returns the last progress value the pattern finds in text.
func lastProgress(pattern string, text []byte) *float64 {
	re, scale, err := raftstore.ProgressRegexp(pattern)
	if err != nil {
		return nil
	}
	m := re.FindAllSubmatch(text, -1)
	if len(m) == 0 {
		return nil
	}
	v, err := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	if err != nil {
		return nil
	}
	v *= scale
	return &v
}
