package native

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/jsonstream"
	"github.com/croftfarm/croft/raftstore"
)

// PathJobs is the route of the farm's jobs (docs/api/native.md).
const PathJobs = Prefix + "/jobs"

// Job actions of POST /croft/v1/jobs/{id}/{action}, by their route name:
// each is a raftstore verb on the job's subtree. retry is Coalition's
// reseterror: the failed and canceled jobs of the subtree run again.
var jobActions = map[string]string{
	"cancel": raftstore.ActionCancel,
	"pause":  raftstore.ActionPause,
	"start":  raftstore.ActionStart,
	"reset":  raftstore.ActionReset,
	"retry":  raftstore.ActionResetError,
}

// JobService is what the job routes need of the service layer. Requests
// reach the handler on the leader only (followers forward them), so a
// change is visible in State once its call returns.
type JobService interface {
	State() *raftstore.State
	CreateJobs(ctx context.Context, specs []raftstore.JobSpec) ([]int64, error)
	EditJobs(ctx context.Context, edits []raftstore.JobEditItem) error
	DeleteJobs(ctx context.Context, ids []int64) error
	ActOnJobs(ctx context.Context, action string, ids []int64) error
}

// JobLimits bound what one request to the job routes may carry; zero
// fields take DefaultJobLimits'. A coordinator gives the same values as
// to Coalition (--max-body, --max-jobs-per-request).
type JobLimits struct {
	// MaxBody is the largest request body, in bytes (413 beyond).
	MaxBody int64
	// MaxJobsPerRequest bounds the jobs of one create (one Raft entry).
	MaxJobsPerRequest int
}

// DefaultJobLimits are Coalition's defaults (coalition.DefaultLimits).
var DefaultJobLimits = JobLimits{MaxBody: 32 << 20, MaxJobsPerRequest: 200_000}

// JobsHandler serves the neutral job routes: list, read, create, patch,
// delete and act on jobs.
type JobsHandler struct {
	farm   JobService
	limits JobLimits
}

// NewJobs returns the job routes' handler over farm.
func NewJobs(farm JobService, limits JobLimits) *JobsHandler {
	if limits.MaxBody <= 0 {
		limits.MaxBody = DefaultJobLimits.MaxBody
	}
	if limits.MaxJobsPerRequest <= 0 {
		limits.MaxJobsPerRequest = DefaultJobLimits.MaxJobsPerRequest
	}
	return &JobsHandler{farm: farm, limits: limits}
}

// Register mounts the routes: reads need PermRead, changes PermWrite, and
// the handlers check the project of every job named.
func (h *JobsHandler) Register(m auth.Mount) {
	m.Abort = apierr.Abort
	m.Handle(http.MethodGet, PathJobs, auth.PermRead, h.list)
	m.Handle(http.MethodPost, PathJobs, auth.PermWrite, h.create)
	m.Handle(http.MethodGet, PathJobs+"/:id", auth.PermRead, h.get)
	m.Handle(http.MethodPatch, PathJobs+"/:id", auth.PermWrite, h.patch)
	m.Handle(http.MethodDelete, PathJobs+"/:id", auth.PermWrite, h.delete)
	m.Handle(http.MethodPost, PathJobs+"/:id/:action", auth.PermWrite, h.act)
}

// JobCounters are a group's counts of its jobs (a leaf's are 0).
type JobCounters struct {
	// Children is the number of direct children.
	Children int `json:"children"`
	// Total is the number of leaf descendants, and the others how many
	// of them are in each state (canceled ones are not counted failed).
	Total    int `json:"total"`
	Finished int `json:"finished"`
	Failed   int `json:"failed"`
	Running  int `json:"running"`
	Canceled int `json:"canceled"`
}

// JobView is a job as GET /croft/v1/jobs/{id} shows it: the farm's
// neutral model, times in RFC 3339 UTC (null when unset).
type JobView struct {
	ID      int64  `json:"id"`
	Parent  int64  `json:"parent"`
	Project string `json:"project"`
	Title   string `json:"title"`
	Command string `json:"command"`
	Dir     string `json:"dir"`
	// Env is the environment; a read-only token sees its values as
	// "<redacted>".
	Env map[string]string `json:"env"`
	// State is the neutral state: waiting, blocked, running, finished,
	// failed, canceled, or paused whenever Paused is set.
	State           string  `json:"state"`
	Paused          bool    `json:"paused"`
	Priority        int     `json:"priority"`
	Retry           int     `json:"retry"`
	TimeoutS        int64   `json:"timeout_s"`
	Affinity        string  `json:"affinity"`
	User            string  `json:"user"`
	URL             string  `json:"url"`
	Progress        float64 `json:"progress"`
	ProgressPattern string  `json:"progress_pattern"`
	Dependencies    []int64 `json:"dependencies"`
	IsGroup         bool    `json:"is_group"`
	// Counters are a group's counts; a leaf's are 0.
	Counters JobCounters `json:"counters"`
	// Tries counts the job's starts since it was created.
	Tries int `json:"tries"`
	// ExitCode, Signal and Reason are those of the last ended run: null
	// before the first end. ExitCode is also null for a run whose exit
	// was not reported (Reason says why).
	ExitCode *int    `json:"exit_code"`
	Signal   *int    `json:"signal"`
	Reason   *string `json:"reason"`
	// Worker runs the job, or ran it last.
	Worker  string  `json:"worker"`
	Created *string `json:"created"`
	Started *string `json:"started"`
	// Ended is when the job finished, failed or was canceled (its last
	// run's end; a group's, when its last job finished); null otherwise.
	Ended *string `json:"ended"`
	// Runs and Log are the paths of the job's runs and log.
	Runs string `json:"runs"`
	Log  string `json:"log"`
	// Done is true once the job will not run again by itself: finished,
	// canceled, or failed with no retry left (what "croft wait" waits
	// for). A group's follows its state.
	Done bool `json:"done"`
	// WaitingReason says, on GET /croft/v1/jobs/{id} of a job that waits,
	// why it does not run (computed on read: "paused", "blocked by
	// dependencies not finished yet: 3 (running)", "no worker has
	// affinity gpu", "all 4 workers that can run it are busy"...);
	// absent otherwise.
	WaitingReason string `json:"waiting_reason,omitempty"`
}

// redactedValue stands for an environment value a read-only token may
// not see (Coalition's coalition.Redacted).
const redactedValue = "<redacted>"

// optTime is an RFC 3339 time, or nil for 0.
func optTime(ns int64) *string {
	if ns == 0 {
		return nil
	}
	s := rfc3339(ns)
	return &s
}

// renderJob turns a stored job into its view; with redact the
// environment's values are hidden.
func renderJob(j *raftstore.Job, redact bool) JobView {
	v := JobView{
		ID: j.ID, Parent: j.Parent, Project: j.Project, Title: j.Title, Command: j.Command, Dir: j.Dir,
		Env: map[string]string{}, State: j.Reported(), Paused: j.Paused, Priority: j.Priority, Retry: j.Retry,
		TimeoutS: j.Timeout, Affinity: j.Affinity, User: j.User, URL: j.URL, Progress: j.Progress,
		ProgressPattern: j.ProgressPattern, Dependencies: append([]int64{}, j.Dependencies...), IsGroup: j.IsGroup(),
		Counters: JobCounters{Children: len(j.Children), Total: int(j.Total), Finished: int(j.TotalFinished),
			Failed: int(j.TotalErrors - j.TotalCanceled), Running: int(j.TotalWorking), Canceled: int(j.TotalCanceled)},
		Tries: int(j.Tries), Worker: j.Worker, Created: optTime(j.Created), Started: optTime(j.StartTime), Ended: optTime(endedAt(j)),
		Runs: fmt.Sprintf("%s/%d/runs", PathJobs, j.ID), Log: fmt.Sprintf("%s/%d/log", PathJobs, j.ID),
		Done: j.State == raftstore.StateFinished || j.State == raftstore.StateCanceled ||
			(j.State == raftstore.StateFailed && j.RunDone >= j.Retry),
	}
	if v.Project == "" {
		v.Project = raftstore.DefaultProject
	}
	for k, val := range j.Env {
		if redact {
			val = redactedValue
		}
		v.Env[k] = val
	}
	// Coalition keeps showing the last reported progress; a finished
	// job is done whatever its command last printed.
	if j.State == raftstore.StateFinished && !j.IsGroup() {
		v.Progress = 1
	}
	// A job has ended a run unless it never started, or its one start
	// still runs: only one run of a job is ever live.
	if j.Tries > 1 || (j.Tries == 1 && j.State != raftstore.StateRunning) {
		sig, reason := int(j.Signal), j.Reason.String()
		v.Signal, v.Reason = &sig, &reason
		if j.ExitCode != raftstore.NoExitCode {
			code := int(j.ExitCode)
			v.ExitCode = &code
		}
	}
	return v
}

// states are the names a list may filter by (JobView.State).
var states = []string{
	raftstore.StateWaiting, raftstore.StateBlocked, raftstore.StateRunning, raftstore.StateFinished,
	raftstore.StateFailed, raftstore.StateCanceled, raftstore.StatePaused,
}

// maxStateList bounds the ?state= value: every name once, with commas.
const maxStateList = 128

// jobFilter is a list request's filters; zero fields keep every job.
type jobFilter struct {
	states  map[string]bool
	project string
	user    string
	// affinity keeps the jobs whose affinity lists this name.
	affinity string
}

// keep runs under the state's read lock: it must stay cheap.
func (f *jobFilter) keep(p *auth.Principal) func(*raftstore.Job) bool {
	return func(j *raftstore.Job) bool {
		project := j.Project
		if project == "" {
			project = raftstore.DefaultProject
		}
		return p.CanRead(project) && (f.project == "" || project == f.project) &&
			(f.user == "" || j.User == f.user) && (f.states == nil || f.states[j.Reported()]) &&
			(f.affinity == "" || hasAffinity(j.Affinity, f.affinity))
	}
}

// parseFilter reads ?state=, ?project=, ?user= and ?affinity=, each
// bounded.
func parseFilter(c *gin.Context, p *auth.Principal) (jobFilter, error) {
	var f jobFilter
	if v, ok := c.GetQuery("state"); ok {
		if len(v) > maxStateList {
			return f, fmt.Errorf("%w: state is %d bytes, the limit is %d", raftstore.ErrTooLarge, len(v), maxStateList)
		}
		f.states = map[string]bool{}
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(states, s) {
				return f, apierr.Bad("state %q is none of %s", s, strings.Join(states, ", "))
			}
			f.states[s] = true
		}
	}
	if v, ok := c.GetQuery("project"); ok {
		if err := raftstore.ValidProjectName(v); err != nil {
			return f, err
		}
		if !p.CanRead(v) {
			return f, apierr.Forbidden("token %q may not read project %q", p.Name, v)
		}
		f.project = v
	}
	if v, ok := c.GetQuery("user"); ok {
		if err := raftstore.CheckName("user", v); err != nil {
			return f, err
		}
		f.user = v
	}
	if v, ok := c.GetQuery("affinity"); ok {
		if err := raftstore.CheckName("affinity", v); err != nil {
			return f, err
		}
		f.affinity = strings.TrimSpace(v)
	}
	return f, nil
}

// hasAffinity reports whether affinity (names separated by commas or
// newlines) lists name, without allocating (keep runs under the state's
// lock).
func hasAffinity(affinity, name string) bool {
	for affinity != "" {
		a := affinity
		if i := strings.IndexAny(affinity, ",\n"); i >= 0 {
			a, affinity = affinity[:i], affinity[i+1:]
		} else {
			affinity = ""
		}
		if strings.TrimSpace(a) == name {
			return true
		}
	}
	return false
}

// list serves GET /croft/v1/jobs: the jobs the token reads, in id order,
// filtered and within ?offset=&limit=, streamed. The state is scanned a
// raftstore.ScanLimit page at a time (the lock is not held across pages).
func (h *JobsHandler) list(c *gin.Context) {
	p := auth.From(c)
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	f, err := parseFilter(c, p)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	st, keep, redact := h.farm.State(), f.keep(p), p.Redacted()
	next := func(after int64) ([]raftstore.Job, int64, bool) {
		return st.JobsAfter(after, raftstore.ScanLimit, keep)
	}
	if v, ok := c.GetQuery("parent"); ok {
		parent, err := strconv.ParseInt(v, 10, 64)
		if err != nil || parent < 0 {
			apierr.Abort(c, apierr.Bad("parent: a job id or 0 (the root jobs) is expected, got %q", v))
			return
		}
		if parent != 0 {
			if _, err := h.readable(p, parent); err != nil {
				apierr.Abort(c, err)
				return
			}
		}
		next = func(after int64) ([]raftstore.Job, int64, bool) {
			page, n, more, _ := st.ChildrenAfter(parent, after, raftstore.ScanLimit, keep)
			return page, n, more
		}
	}
	after := int64(0)
	jsonstream.Pages(c, win, func() ([]raftstore.Job, bool) {
		page, n, more := next(after)
		after = n
		return page, more
	}, func(j *raftstore.Job) any { return renderJob(j, redact) })
}

// jobParam reads the :id of a path: 400 for anything but a positive id.
func jobParam(c *gin.Context) (int64, error) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, apierr.Bad("job id: a positive integer is expected, got %q", c.Param("id"))
	}
	return id, nil
}

// readable returns job id if p may read it: 404 for no such job, 403 for
// a job of a project p does not read.
func (h *JobsHandler) readable(p *auth.Principal, id int64) (raftstore.Job, error) {
	j, ok := h.farm.State().Job(id)
	if !ok {
		return j, apierr.NotFound("job %d", id)
	}
	if !p.CanRead(j.Project) {
		return j, apierr.Forbidden("token %q may not read project %q", p.Name, j.Project)
	}
	return j, nil
}

// writable returns job id if p may control it: as readable, and 403 for
// a project p may read but not control.
func (h *JobsHandler) writable(p *auth.Principal, id int64) (raftstore.Job, error) {
	j, err := h.readable(p, id)
	if err == nil && !p.CanWrite(j.Project) {
		err = apierr.Forbidden("token %q may not control jobs of project %q", p.Name, j.Project)
	}
	return j, err
}

// pathJob reads the path's job, readable (write false) or writable by
// the caller; on error the request is aborted.
func (h *JobsHandler) pathJob(c *gin.Context, write bool) (raftstore.Job, bool) {
	id, err := jobParam(c)
	if err == nil {
		check := h.readable
		if write {
			check = h.writable
		}
		var j raftstore.Job
		if j, err = check(auth.From(c), id); err == nil {
			return j, true
		}
	}
	apierr.Abort(c, err)
	return raftstore.Job{}, false
}

// get serves GET /croft/v1/jobs/{id}.
func (h *JobsHandler) get(c *gin.Context) {
	if j, ok := h.pathJob(c, false); ok {
		v := renderJob(&j, auth.From(c).Redacted())
		v.WaitingReason = h.farm.State().WaitingReason(j.ID)
		c.JSON(http.StatusOK, v)
	}
}

// reply answers a change with the job as it is now.
func (h *JobsHandler) reply(c *gin.Context, id int64) {
	j, err := h.readable(auth.From(c), id)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, renderJob(&j, auth.From(c).Redacted()))
}

// JobRequest is a job to create: POST /croft/v1/jobs takes one, or
// {"jobs": [...]} for a batch created all or none in one Raft entry.
// Zero values are the defaults: no retry, no timeout, priority 0.
type JobRequest struct {
	// Parent is the id of an existing group (0: a root job); ParentRef,
	// in a batch, the 1-based index of an earlier group of the batch.
	// They exclude each other.
	Parent    int64 `json:"parent"`
	ParentRef int   `json:"parent_ref"`
	// Project defaults to the parent's, else the token's only project,
	// else "default".
	Project         string            `json:"project"`
	Title           string            `json:"title"`
	Command         string            `json:"command"`
	Dir             string            `json:"dir"`
	Env             map[string]string `json:"env"`
	Paused          bool              `json:"paused"`
	Priority        int               `json:"priority"`
	Retry           int               `json:"retry"`
	TimeoutS        int64             `json:"timeout_s"`
	Affinity        string            `json:"affinity"`
	User            string            `json:"user"`
	URL             string            `json:"url"`
	ProgressPattern string            `json:"progress_pattern"`
	Dependencies    []int64           `json:"dependencies"`
}

// CreateReply is the reply of a create: the new jobs' ids, in order.
type CreateReply struct {
	IDs []int64 `json:"ids"`
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// anything after the value: 400 for each.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apierr.Bad("body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apierr.Bad("body: one JSON object is expected")
	}
	return nil
}

// readBody reads the request's body within the limit (413 beyond) and
// refuses a NUL byte anywhere in it (400): no field may carry one, and a
// "\u0000" escape is refused by the field checks.
func (h *JobsHandler) readBody(c *gin.Context) ([]byte, error) {
	body, err := apierr.ReadBody(c, h.limits.MaxBody)
	if err != nil {
		return nil, err
	}
	if bytes.IndexByte(body, 0) >= 0 {
		return nil, apierr.Bad("body: a NUL byte")
	}
	return body, nil
}

// decodeCreate reads a create's body: one job, or {"jobs": [...]} of at
// most limit jobs, counted as they are decoded (a longer list is 413
// without decoding the rest).
func decodeCreate(body []byte, limit int) ([]JobRequest, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, apierr.Bad("body: a job object, or {\"jobs\": [...]}, is expected")
	}
	raw, batch := top["jobs"]
	if !batch {
		var one JobRequest
		if err := decodeStrict(body, &one); err != nil {
			return nil, err
		}
		return []JobRequest{one}, nil
	}
	if len(top) != 1 {
		return nil, apierr.Bad("body: a batch has only \"jobs\"")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return nil, apierr.Bad("jobs: a list of job objects is expected")
	}
	var out []JobRequest
	for dec.More() {
		if len(out) >= limit {
			return nil, fmt.Errorf("%w: more than %d jobs in one request (the coordinator's --max-jobs-per-request)", raftstore.ErrTooLarge, limit)
		}
		var r JobRequest
		if err := dec.Decode(&r); err != nil {
			return nil, apierr.Bad("jobs[%d]: %v", len(out), err)
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, apierr.Bad("jobs: the list is empty")
	}
	return out, nil
}

// spec turns a request into the FSM's spec.
func (r *JobRequest) spec() raftstore.JobSpec {
	return raftstore.JobSpec{
		Parent: r.Parent, ParentRef: r.ParentRef, Title: r.Title, Command: r.Command, Dir: r.Dir, Paused: r.Paused,
		Timeout: r.TimeoutS, Priority: r.Priority, Retry: r.Retry, Affinity: r.Affinity, User: r.User, URL: r.URL,
		ProgressPattern: r.ProgressPattern, Dependencies: r.Dependencies, Project: r.Project, Env: r.Env,
	}
}

// create serves POST /croft/v1/jobs: 201 with the new ids. Every field is
// checked against raftstore's limits before anything is proposed, and
// every job named (parent, dependencies) must be one the token controls.
func (h *JobsHandler) create(c *gin.Context) {
	body, err := h.readBody(c)
	if err == nil {
		var reqs []JobRequest
		if reqs, err = decodeCreate(body, h.limits.MaxJobsPerRequest); err == nil {
			var specs []raftstore.JobSpec
			if specs, err = h.specs(auth.From(c), reqs); err == nil {
				var ids []int64
				if ids, err = h.farm.CreateJobs(c, specs); err == nil {
					c.JSON(http.StatusCreated, CreateReply{IDs: ids})
					return
				}
			}
		}
	}
	apierr.Abort(c, err)
}

// specs checks a create's jobs and decides their projects.
func (h *JobsHandler) specs(p *auth.Principal, reqs []JobRequest) ([]raftstore.JobSpec, error) {
	specs := make([]raftstore.JobSpec, len(reqs))
	projects := map[int64]string{} // jobs named, found writable: their projects
	for i := range reqs {
		r := &reqs[i]
		at := func(err error) error {
			if len(reqs) == 1 {
				return err
			}
			return fmt.Errorf("jobs[%d]: %w", i, err)
		}
		specs[i] = r.spec()
		if err := raftstore.CheckSpec(&specs[i]); err != nil {
			return nil, at(err)
		}
		switch {
		case r.ParentRef != 0 && r.Parent != 0:
			return nil, at(apierr.Bad("parent and parent_ref exclude each other"))
		case r.ParentRef < 0 || r.ParentRef > i:
			return nil, at(apierr.Bad("parent_ref %d must name an earlier job of the request (1..%d)", r.ParentRef, i))
		}
		for _, id := range append([]int64{r.Parent}, r.Dependencies...) {
			if _, seen := projects[id]; id == 0 || seen {
				continue
			}
			j, err := h.writable(p, id)
			if err != nil {
				return nil, at(err)
			}
			projects[id] = j.Project
		}
		if r.Parent != 0 && specs[i].Project == "" {
			specs[i].Project = projects[r.Parent]
		}
		if r.Parent == 0 && r.ParentRef == 0 && specs[i].Project == "" {
			specs[i].Project = p.DefaultProject()
		}
		if r.ParentRef != 0 && specs[i].Project == "" {
			specs[i].Project = specs[r.ParentRef-1].Project
		}
		if !p.CanWrite(specs[i].Project) {
			return nil, at(apierr.Forbidden("token %q may not submit jobs to project %q", p.Name, specs[i].Project))
		}
	}
	return specs, nil
}

// JobPatchRequest is the body of PATCH /croft/v1/jobs/{id}: the fields
// to change (absent or null: unchanged), with JobRequest's meanings. An
// empty env clears the environment; states change through the actions.
type JobPatchRequest struct {
	Parent          *int64             `json:"parent"`
	Title           *string            `json:"title"`
	Command         *string            `json:"command"`
	Dir             *string            `json:"dir"`
	Env             *map[string]string `json:"env"`
	Paused          *bool              `json:"paused"`
	Priority        *int               `json:"priority"`
	Retry           *int               `json:"retry"`
	TimeoutS        *int64             `json:"timeout_s"`
	Affinity        *string            `json:"affinity"`
	User            *string            `json:"user"`
	URL             *string            `json:"url"`
	ProgressPattern *string            `json:"progress_pattern"`
	Dependencies    *[]int64           `json:"dependencies"`
}

// patch serves PATCH /croft/v1/jobs/{id} and answers the job as edited.
func (h *JobsHandler) patch(c *gin.Context) {
	j, ok := h.pathJob(c, true)
	if !ok {
		return
	}
	err := h.edit(c, &j)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	h.reply(c, j.ID)
}

func (h *JobsHandler) edit(c *gin.Context, j *raftstore.Job) error {
	body, err := h.readBody(c)
	if err != nil {
		return err
	}
	var r JobPatchRequest
	if err := decodeStrict(body, &r); err != nil {
		return err
	}
	p := raftstore.JobPatch{
		Parent: r.Parent, Title: r.Title, Command: r.Command, Dir: r.Dir, Env: r.Env, Paused: r.Paused,
		Timeout: r.TimeoutS, Priority: r.Priority, Retry: r.Retry, Affinity: r.Affinity, User: r.User, URL: r.URL,
		ProgressPattern: r.ProgressPattern, Dependencies: r.Dependencies,
	}
	if err := raftstore.CheckPatch(&p); err != nil {
		return err
	}
	var named []int64
	if r.Parent != nil && *r.Parent != 0 {
		named = append(named, *r.Parent)
	}
	if r.Dependencies != nil {
		named = append(named, *r.Dependencies...)
	}
	checked := map[int64]bool{}
	for _, id := range named {
		if !checked[id] {
			if _, err := h.writable(auth.From(c), id); err != nil {
				return err
			}
			checked[id] = true
		}
	}
	if p == (raftstore.JobPatch{}) {
		return nil // nothing to change: no entry
	}
	return h.farm.EditJobs(c, []raftstore.JobEditItem{{ID: j.ID, Patch: p}})
}

// delete serves DELETE /croft/v1/jobs/{id}: the job and its subtree go;
// 204.
func (h *JobsHandler) delete(c *gin.Context) {
	j, ok := h.pathJob(c, true)
	if !ok {
		return
	}
	if err := h.farm.DeleteJobs(c, []int64{j.ID}); err != nil {
		apierr.Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// act serves POST /croft/v1/jobs/{id}/{action} and answers the job after
// the action. The body, if any, is not read.
func (h *JobsHandler) act(c *gin.Context) {
	verb, known := jobActions[c.Param("action")]
	if !known {
		apierr.Abort(c, apierr.NotFound("job action %q: none of cancel, pause, start, reset, retry", apierr.Truncate(c.Param("action"), 40)))
		return
	}
	j, ok := h.pathJob(c, true)
	if !ok {
		return
	}
	if err := h.farm.ActOnJobs(c, verb, []int64{j.ID}); err != nil {
		apierr.Abort(c, err)
		return
	}
	h.reply(c, j.ID)
}

// endedAt is when j ended, 0 while it has not: a finished job's EndTime; a
// failed or canceled leaf's last run ended at its start plus its duration.
func endedAt(j *raftstore.Job) int64 {
	switch {
	case j.EndTime != 0:
		return j.EndTime
	case !j.IsGroup() && j.StartTime != 0 && (j.State == raftstore.StateFailed || j.State == raftstore.StateCanceled):
		return j.StartTime + j.Duration
	}
	return 0
}
