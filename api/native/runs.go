package native

import (
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/jsonstream"
	"github.com/croftfarm/croft/raftstore"
)

// Run is one run (attempt) of a job in the reply of
// GET /croft/v1/jobs/{id}/runs.
type Run struct {
	// Try is the job's 1-based try number; 0 for a run recorded before
	// try numbers existed.
	Try int `json:"try"`
	// AttemptID is the id that fenced the run's reports.
	AttemptID int64  `json:"attempt_id"`
	JobID     int64  `json:"job_id"`
	Project   string `json:"project"`
	Worker    string `json:"worker"`
	// State is the state the run left its job in (running while it runs).
	State string `json:"state"`
	// Start and End are RFC 3339 UTC; End is null while the run runs.
	Start string  `json:"start"`
	End   *string `json:"end"`
	// DurationMS is the run's length in milliseconds; while it runs, its
	// length so far on the answering coordinator's clock.
	DurationMS int64 `json:"duration_ms"`
	// ExitCode is the process's (128+N when signal N killed it); null
	// while the run runs or when no exit was reported (see Reason).
	ExitCode *int `json:"exit_code"`
	// Signal is the signal that killed the process, 0 if none did.
	Signal int `json:"signal"`
	// Reason is "" when the process ended by itself, else "timeout",
	// "canceled", "lost", "fenced" or "deleted".
	Reason string `json:"reason"`
	// Progress is the run's last progress (0..1); 1 for a run that
	// exited 0 by itself.
	Progress float64 `json:"progress"`
}

// rfc3339 formats unix nanoseconds as an RFC 3339 UTC time.
func rfc3339(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// renderRun turns a stored run into the reply's; now and progress serve
// a run still running.
func renderRun(r *raftstore.Run, now int64, progress float64) Run {
	out := Run{
		Try: r.Try, AttemptID: r.ID, JobID: r.JobID, Project: r.Project, Worker: r.Worker, State: r.State,
		Start: rfc3339(r.Start), DurationMS: r.Duration / 1e6, Signal: r.Signal, Reason: r.Reason, Progress: r.Progress,
	}
	if r.End == 0 {
		if r.State == raftstore.StateRunning {
			out.DurationMS, out.Progress = max(now-r.Start, 0)/1e6, progress
		}
		return out
	}
	end := rfc3339(r.End)
	out.End = &end
	if r.ExitCode != raftstore.NoExitCode {
		code := r.ExitCode
		out.ExitCode = &code
	}
	return out
}

// runs serves a job's runs in try order, within the request's
// ?offset=&limit= window: 400 for an id that is not a positive integer,
// 404 for a job that does not exist, 403 for a job of a project the
// token may not read.
func (h *Handler) runs(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		apierr.Abort(c, apierr.Bad("job id: a positive integer is expected, got %q", c.Param("id")))
		return
	}
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	st := h.store.State()
	j, ok := st.Job(id)
	if !ok {
		apierr.Abort(c, apierr.NotFound("job %d", id))
		return
	}
	if p := auth.From(c); !p.CanRead(j.Project) {
		apierr.Abort(c, apierr.Forbidden("token %q may not read project %q", p.Name, j.Project))
		return
	}
	now, after := h.now().UnixNano(), int64(0)
	jsonstream.Pages(c, win, func() ([]raftstore.Run, bool) {
		page, next, more := st.JobRunsAfter(id, after, raftstore.ScanLimit)
		after = next
		return page, more
	}, func(r *raftstore.Run) any { return renderRun(r, now, j.Progress) })
}
