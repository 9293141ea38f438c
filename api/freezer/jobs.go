package freezer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// A Freezer job is a core template of its project (type templateType,
// named by the job_id, the Freezer document its Doc); each start runs it
// once as an execution pinned to the host its client_id names, with the
// script its actions make as the argument of its command. See
// docs/api/freezer.md.
const (
	templateType = "freezer"
	// jobCommand runs the script (the execution's one argument).
	jobCommand = "/bin/sh -c {args}"
)

// Answers of the event route (freezer-api's Job.start/stop/abort).
const (
	startRequested = "start already requested"
	stopRequested  = "stop already requested"
	abortRequested = "abort already requested"
)

func (h *Handler) registerJobs(m auth.Mount) {
	for _, p := range []string{JobsPrefix, JobsPrefix + "/"} {
		m.Handle(http.MethodGet, p, auth.PermRead, h.listJobs)
		m.Handle(http.MethodPost, p, auth.PermWrite, h.createJob)
	}
	m.Handle(http.MethodGet, JobsPrefix+"/:job", auth.PermRead, h.showJob)
	m.Handle(http.MethodPatch, JobsPrefix+"/:job", auth.PermWrite, h.updateJob)
	m.Handle(http.MethodPost, JobsPrefix+"/:job", auth.PermWrite, h.replaceJob)
	m.Handle(http.MethodPut, JobsPrefix+"/:job", auth.PermWrite, h.replaceJob)
	m.Handle(http.MethodDelete, JobsPrefix+"/:job", auth.PermWrite, h.deleteJob)
	m.Handle(http.MethodPost, JobsPrefix+"/:job/event", auth.PermWrite, h.event)
}

// findJob returns job id of project pid: its template and stored
// document.
func (h *Handler) findJob(pid, id string) (raftstore.Template, document, bool) {
	if !userIDPattern.MatchString(id) || len(id) > MaxJobIDBytes {
		return raftstore.Template{}, nil, false
	}
	t, ok := h.store.State().TemplateByName(pid, id)
	if !ok || t.Spec.Type != templateType {
		return raftstore.Template{}, nil, false
	}
	d, err := decode(t.Spec.Doc)
	if err != nil {
		d = document{}
	}
	return t, d, true
}

func jobNotFound(id string) error {
	return apierr.NotFound("job %q not found", apierr.Truncate(id, 64))
}

// readJob checks the project of a job write and reads its body, a job
// document (partial: a patch); it answers the error itself.
func readJob(c *gin.Context, partial bool) (string, document, bool) {
	pid, ok := project(c, true)
	if !ok {
		return "", nil, false
	}
	d, err := readDoc(c)
	if err == nil && d == nil {
		err = apierr.Bad("Missing request body")
	}
	if err == nil {
		err = checkJob(d, partial)
	}
	if err != nil {
		Abort(c, err)
		return "", nil, false
	}
	return pid, d, true
}

// encodeJob renders a job document for its template, with its version.
func encodeJob(d document, version int64) ([]byte, error) {
	d["_version"] = num(version)
	b, err := encode(d)
	if err != nil {
		return nil, err
	}
	if len(b) > raftstore.MaxDocBytes {
		return nil, apierr.Bad("the job document is %d bytes, the limit is %d", len(b), raftstore.MaxDocBytes)
	}
	return b, nil
}

// createJob adds a job: 201 and its id (the body's job_id, or a new
// one); an id in use is 409. A job whose schedule's event is start runs.
func (h *Handler) createJob(c *gin.Context) {
	pid, d, ok := readJob(c, false)
	if !ok {
		return
	}
	id := str(d, "job_id")
	if id == "" {
		var err error
		if id, err = service.NewID(); err != nil {
			Abort(c, err)
			return
		}
	}
	if err := h.addJobDoc(c, pid, id, d); err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"job_id": id})
}

// addJobDoc creates job id of pid from document d, and runs it when its
// event is start.
func (h *Handler) addJobDoc(c *gin.Context, pid, id string, d document) error {
	if _, exists := h.store.State().TemplateByName(pid, id); exists {
		// freezer-api's DocumentExists; a template of another dialect
		// with that name holds it too.
		return fmt.Errorf("%w: job %q exists", apierr.ErrConflict, apierr.Truncate(id, 64))
	}
	if err := newJobDoc(d, id, pid, userOf(c), h.clock().Unix(), service.NewID); err != nil {
		return err
	}
	body, err := encodeJob(d, 1)
	if err != nil {
		return err
	}
	_, err = h.ops.CreateTemplate(c, pid, raftstore.TemplateSpec{Name: id, Type: templateType, Command: jobCommand, Doc: body})
	if err != nil {
		return err
	}
	if str(schedule(d, "job_schedule"), "event") == "start" {
		_, err = h.start(c, pid, id, false, false)
	}
	return err
}

func (h *Handler) showJob(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	_, d, ok := h.findJob(pid, c.Param("job"))
	if !ok {
		Abort(c, jobNotFound(c.Param("job")))
		return
	}
	c.JSON(http.StatusOK, jobView(h.store.State(), d))
}

// listJobs answers the project's jobs in template id order that pass the
// search, offset and limit applied after it.
func (h *Handler) listJobs(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	limit, err := queryInt(c, "limit", DefaultLimit, MaxLimit)
	if err == nil {
		var offset int
		offset, err = queryInt(c, "offset", 0, MaxOffset)
		if err == nil {
			var s *search
			if s, err = readSearch(c); err == nil {
				c.JSON(http.StatusOK, gin.H{"jobs": h.jobsPage(pid, s, offset, limit)})
				return
			}
		}
	}
	Abort(c, err)
}

func (h *Handler) jobsPage(pid string, s *search, offset, limit int) []document {
	out := []document{}
	st, after, skipped := h.store.State(), "", 0
	for len(out) < limit {
		page, next, more := st.TemplatesAfter(after, raftstore.ScanLimit)
		for i := 0; i < len(page) && len(out) < limit; i++ {
			t := &page[i]
			if t.Project != pid || t.Spec.Type != templateType {
				continue
			}
			stored, err := decode(t.Spec.Doc)
			if err != nil {
				continue
			}
			d := jobView(st, stored)
			delete(d, "_version")
			if !s.keeps(d) {
				continue
			}
			if skipped < offset {
				skipped++
				continue
			}
			out = append(out, d)
		}
		if !more {
			break
		}
		after = next
	}
	return out
}

// writeJob reads job id of pid, changes its stored document with change
// and writes it (with writes of sessions change returns), again while
// another write got there first. The answer is the new version.
func (h *Handler) writeJob(ctx context.Context, pid, id string, change func(t *raftstore.Template, d document) ([]raftstore.DocWrite, error)) (int64, error) {
	var version int64
	err := retry(func() error {
		t, d, ok := h.findJob(pid, id)
		if !ok {
			return jobNotFound(id)
		}
		version, _ = integer(d["_version"])
		version++
		sessions, err := change(&t, d)
		if err != nil {
			return err
		}
		body, err := encodeJob(d, version)
		if err != nil {
			return err
		}
		return h.ops.WriteDocs(ctx, sessions, []raftstore.DocWrite{{ID: t.ID, IfRevision: t.Revision, Doc: body}})
	})
	return version, err
}

// keepServerFields carries what the server owns from the stored job
// document into its new one.
func keepServerFields(old, d document) {
	for _, k := range []string{"job_id", "project_id", "user_id", hiddenRuns} {
		if v, ok := old[k]; ok {
			d[k] = v
		} else {
			delete(d, k)
		}
	}
}

// updateJob merges the body into the job: top-level fields replaced,
// job_schedule merged key by key; 200 and the version. A job whose event
// becomes start runs.
func (h *Handler) updateJob(c *gin.Context) {
	pid, patch, ok := readJob(c, true)
	if !ok {
		return
	}
	h.rewriteJob(c, pid, c.Param("job"), http.StatusOK, func(_, d document) {
		for k, v := range patch {
			if k == "job_schedule" {
				sched := schedule(d, "job_schedule")
				for sk, sv := range v.(document) { // checkJob: a schedule
					sched[sk] = sv
				}
				continue
			}
			d[k] = v
		}
	})
}

// rewriteJob changes job id's stored document with change (the server's
// fields kept, the whole checked after it) and answers status with the
// new version; a job whose event becomes start runs.
func (h *Handler) rewriteJob(c *gin.Context, pid, id string, status int, change func(old, d document)) {
	wasStart := false
	version, err := h.writeJob(c, pid, id, func(_ *raftstore.Template, d document) ([]raftstore.DocWrite, error) {
		old := copyDoc(d)
		wasStart = str(schedule(old, "job_schedule"), "event") == "start"
		change(old, d)
		keepServerFields(old, d)
		return nil, checkStored(d)
	})
	if err == nil && !wasStart {
		err = h.startIfAsked(c, pid, id)
	}
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(status, gin.H{"job_id": id, "version": version})
}

// checkStored checks a job document after a change, as a whole.
func checkStored(d document) error {
	runs := d[hiddenRuns]
	delete(d, hiddenRuns)
	err := checkJob(d, false)
	if runs != nil {
		d[hiddenRuns] = runs
	}
	return err
}

// startIfAsked runs job id when its stored event is start.
func (h *Handler) startIfAsked(ctx context.Context, pid, id string) error {
	if _, d, ok := h.findJob(pid, id); ok && str(schedule(d, "job_schedule"), "event") == "start" {
		_, err := h.start(ctx, pid, id, false, false)
		return err
	}
	return nil
}

// replaceJob overwrites the job's document with the body (201 and the
// version), or creates the job with that id, as freezer-api does.
func (h *Handler) replaceJob(c *gin.Context) {
	pid, body, ok := readJob(c, false)
	if !ok {
		return
	}
	id := c.Param("job")
	if !userIDPattern.MatchString(id) || len(id) > MaxJobIDBytes {
		Abort(c, apierr.Bad("job_id: a string of letters, digits, '_' and '-' (at most %d bytes) expected", MaxJobIDBytes))
		return
	}
	if _, _, exists := h.findJob(pid, id); !exists {
		if err := h.addJobDoc(c, pid, id, body); err != nil {
			Abort(c, err)
			return
		}
		c.JSON(http.StatusCreated, gin.H{"job_id": id, "version": 1})
		return
	}
	h.rewriteJob(c, pid, id, http.StatusCreated, func(old, d document) {
		for k := range d {
			delete(d, k)
		}
		for k, v := range body {
			d[k] = v
		}
		sched := schedule(d, "job_schedule")
		if _, ok := sched["time_created"]; !ok {
			sched["time_created"] = schedule(old, "job_schedule")["time_created"]
		}
	})
}

// deleteJob cancels the job's run, forgets its runs and the job: 204,
// also when there was none.
func (h *Handler) deleteJob(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	t, _, ok := h.findJob(pid, c.Param("job"))
	if !ok {
		c.Status(http.StatusNoContent)
		return
	}
	if err := h.forgetRuns(c, t.ID); err != nil {
		Abort(c, err)
		return
	}
	if err := h.ops.DeleteTemplate(c, t.ID); err != nil && !errors.Is(err, raftstore.ErrNotFound) {
		Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// forgetRuns cancels and forgets every execution of template tid.
func (h *Handler) forgetRuns(ctx context.Context, tid string) error {
	st, after := h.store.State(), ""
	for {
		page, next, more := st.ExecutionsAfter(after, raftstore.ScanLimit, tid)
		for _, e := range page {
			if !e.Ended {
				if err := h.ops.CancelExecution(ctx, e.ID); err != nil && !errors.Is(err, raftstore.ErrNotFound) {
					return err
				}
			}
			if err := h.ops.DeleteExecution(ctx, e.ID); err != nil && !errors.Is(err, raftstore.ErrNotFound) {
				return err
			}
		}
		if !more {
			return nil
		}
		after = next
	}
}

// event answers POST .../jobs/{id}/event: {"start"|"stop"|"abort": x}.
//   - start runs the job unless its newest run has not ended;
//   - stop sets the event and takes back a run that has not started;
//   - abort sets the event and cancels the run (its process is killed).
func (h *Handler) event(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	d, err := readDoc(c)
	if err == nil && len(d) != 1 {
		err = apierr.Bad("Bad Action Method")
	}
	if err != nil {
		Abort(c, err)
		return
	}
	id := c.Param("job")
	if _, _, ok := h.findJob(pid, id); !ok {
		Abort(c, jobNotFound(id))
		return
	}
	var result string
	switch {
	case has(d, "start"):
		var started bool
		if started, err = h.start(c, pid, id, false, false); err == nil {
			result = resultSuccess
			if !started {
				result = startRequested
			}
		}
	case has(d, "stop"):
		result, err = h.halt(c, pid, id, statusStop, stopRequested)
	case has(d, "abort"):
		result, err = h.halt(c, pid, id, "abort", abortRequested)
	default:
		err = apierr.Bad("Bad Action Method")
	}
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"result": result})
}

func has(d document, k string) bool {
	_, ok := d[k]
	return ok
}

// halt sets the job's event to stop or abort (already: the answer is
// again) and takes back its newest run: abort cancels it wherever it is,
// stop only while it has not started.
func (h *Handler) halt(c *gin.Context, pid, id, event, again string) (string, error) {
	same := false
	_, err := h.writeJob(c, pid, id, func(_ *raftstore.Template, d document) ([]raftstore.DocWrite, error) {
		sched := schedule(d, "job_schedule")
		same = str(sched, "event") == event
		sched["event"] = event
		return nil, nil
	})
	if err != nil {
		return "", err
	}
	if err := h.takeBack(c, pid, id, event == "abort"); err != nil {
		return "", err
	}
	if same {
		return again, nil
	}
	return resultSuccess, nil
}

// takeBack cancels job id's newest run if it has not ended: always
// (running is true), or only while it waits for its client.
func (h *Handler) takeBack(ctx context.Context, pid, id string, running bool) error {
	_, d, ok := h.findJob(pid, id)
	if !ok {
		return nil
	}
	e, ok := lastRun(h.store.State(), d)
	if !ok || e.Ended || !running && e.State == raftstore.StateRunning {
		return nil
	}
	if err := h.ops.CancelExecution(ctx, e.ID); err != nil && !errors.Is(err, raftstore.ErrNotFound) {
		return err
	}
	return nil
}

// hostOf is the host a client_id names: the client_id, or with
// freezer's default form "<project>_<host>" the host after the project.
func (h *Handler) hostOf(pid, client string) string {
	if rest, ok := strings.CutPrefix(client, pid+"_"); ok && rest != "" {
		if _, exists := h.store.State().Host(client); !exists {
			return rest
		}
	}
	return client
}

// start runs job id of project pid once on its client, as freezer-
// scheduler does on a start event: the run is an execution pinned to the
// client's host, its script made of the job's actions. When the job is a
// member of a session of the project, the session's start action is done
// for it first (its tag protocol), unless the caller did (acted); as with
// freezer-scheduler, the run goes on whatever that action answers. A job
// whose schedule says to wait (a date to come) only gets the start event,
// unless due says Tick found it due: Tick runs it then. It reports false when the job's newest run had
// not ended (nothing done).
func (h *Handler) start(ctx context.Context, pid, id string, acted, due bool) (bool, error) {
	t, d, ok := h.findJob(pid, id)
	if !ok {
		return false, jobNotFound(id)
	}
	st := h.store.State()
	seen, _ := lastRun(st, d)
	if seen.ID != "" && !seen.Ended {
		return false, nil
	}
	if !due && later(schedule(d, "job_schedule"), h.clock()) {
		return h.requestStart(ctx, pid, id)
	}
	actions, _ := d["job_actions"].([]any)
	sh, err := script(id, actions)
	if err != nil {
		return false, err
	}
	e, err := h.ops.Execute(ctx, service.ExecuteRequest{Template: t.ID, Host: h.hostOf(pid, str(d, "client_id")), Args: []string{sh}, User: str(d, "user_id")})
	if err != nil {
		return false, err
	}
	now := seconds(e.Created) // a member's time_started is its run's, see sessionView
	var dropped []string
	lost := false
	_, err = h.writeJob(ctx, pid, id, func(_ *raftstore.Template, d document) ([]raftstore.DocWrite, error) {
		runs := runsOf(d)
		if len(runs) > 0 && runs[len(runs)-1] != seen.ID {
			if other, ok := st.Execution(runs[len(runs)-1]); ok && !other.Ended {
				lost = true // another start got there first
				return nil, errLostRace
			}
		}
		runs = append(runs, e.ID)
		dropped = nil
		if len(runs) > MaxRuns {
			dropped, runs = runs[:len(runs)-MaxRuns], runs[len(runs)-MaxRuns:]
		}
		setRuns(d, runs)
		schedule(d, "job_schedule")["event"] = "start"
		sid := str(d, "session_id")
		if sid == "" {
			return nil, nil
		}
		x, ok := h.lookup(pid, sid)
		if !ok {
			return nil, nil
		}
		sd := docOf(&x)
		if acted { // the caller's start action gave the session its tag
			d["session_tag"] = sd["session_tag"]
			return nil, nil
		}
		tag, _ := integer(d["session_tag"])
		result, newTag, err := startAction(sd, id, tag, now)
		if err != nil || result != resultSuccess {
			return nil, nil // not a member, or held off: the run goes on
		}
		d["session_tag"] = num(newTag)
		w, _, err := sessionWrite(&x, sd)
		if err != nil {
			return nil, err
		}
		return []raftstore.DocWrite{w}, nil
	})
	if lost {
		_ = h.ops.CancelExecution(ctx, e.ID)
		_ = h.ops.DeleteExecution(ctx, e.ID)
		return false, nil
	}
	if err != nil {
		return true, err
	}
	for _, old := range dropped {
		if x, ok := st.Execution(old); ok && x.Ended {
			_ = h.ops.DeleteExecution(ctx, old) // best effort: a run kept longer is harmless
		}
	}
	return true, nil
}

// requestStart records a start whose run waits for the job's schedule
// (Tick starts it when due): the event is start.
func (h *Handler) requestStart(ctx context.Context, pid, id string) (bool, error) {
	_, err := h.writeJob(ctx, pid, id, func(_ *raftstore.Template, d document) ([]raftstore.DocWrite, error) {
		schedule(d, "job_schedule")["event"] = "start"
		return nil, nil
	})
	return true, err
}

// errLostRace stops a write that found another start's run.
var errLostRace = errors.New("another start got there first")
