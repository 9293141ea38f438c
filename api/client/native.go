package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Paths of the native job and session routes (docs/api/native.md).
const (
	PathJobs     = "/croft/v1/jobs"
	PathSessions = "/croft/v1/sessions"
)

// JobCounters are a group's counts of its leaf jobs (a leaf's are 0).
type JobCounters struct {
	Children int `json:"children"`
	Total    int `json:"total"`
	Finished int `json:"finished"`
	Failed   int `json:"failed"`
	Running  int `json:"running"`
	Canceled int `json:"canceled"`
}

// NativeJob is a job as GET /croft/v1/jobs/{id} shows it (the farm's
// neutral model).
type NativeJob struct {
	ID      int64             `json:"id"`
	Parent  int64             `json:"parent"`
	Project string            `json:"project"`
	Title   string            `json:"title"`
	Command string            `json:"command"`
	Dir     string            `json:"dir"`
	Env     map[string]string `json:"env"`
	// State is waiting, blocked, running, finished, failed, canceled,
	// or paused.
	State           string      `json:"state"`
	Paused          bool        `json:"paused"`
	Priority        int         `json:"priority"`
	Retry           int         `json:"retry"`
	TimeoutS        int64       `json:"timeout_s"`
	Affinity        string      `json:"affinity"`
	User            string      `json:"user"`
	URL             string      `json:"url"`
	Progress        float64     `json:"progress"`
	ProgressPattern string      `json:"progress_pattern"`
	Dependencies    []int64     `json:"dependencies"`
	IsGroup         bool        `json:"is_group"`
	Counters        JobCounters `json:"counters"`
	Tries           int         `json:"tries"`
	// ExitCode, Signal and Reason are the last ended run's (nil before).
	ExitCode *int       `json:"exit_code"`
	Signal   *int       `json:"signal"`
	Reason   *string    `json:"reason"`
	Worker   string     `json:"worker"`
	Created  *time.Time `json:"created"`
	Started  *time.Time `json:"started"`
	Ended    *time.Time `json:"ended"`
	// Done is true once the job will not run again by itself.
	Done bool `json:"done"`
}

// JobSpec is one job of POST /croft/v1/jobs; zero fields take the
// defaults.
type JobSpec struct {
	Parent          int64             `json:"parent,omitempty"`
	ParentRef       int               `json:"parent_ref,omitempty"`
	Project         string            `json:"project,omitempty"`
	Title           string            `json:"title,omitempty"`
	Command         string            `json:"command,omitempty"`
	Dir             string            `json:"dir,omitempty"`
	Env             map[string]string `json:"env,omitempty"`
	Paused          bool              `json:"paused,omitempty"`
	Priority        int               `json:"priority,omitempty"`
	Retry           int               `json:"retry,omitempty"`
	TimeoutS        int64             `json:"timeout_s,omitempty"`
	Affinity        string            `json:"affinity,omitempty"`
	User            string            `json:"user,omitempty"`
	URL             string            `json:"url,omitempty"`
	ProgressPattern string            `json:"progress_pattern,omitempty"`
	Dependencies    []int64           `json:"dependencies,omitempty"`
}

// JobFilter narrows GET /croft/v1/jobs; zero fields keep every job.
type JobFilter struct {
	// State is a comma list of states.
	State    string
	Project  string
	User     string
	Affinity string
	// Parent, when set, keeps the jobs directly under it (0: the roots).
	Parent *int64
	Offset int
	// Limit is the most jobs returned; 0 means all.
	Limit int
}

func (f JobFilter) query() string {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("state", f.State)
	set("project", f.Project)
	set("user", f.User)
	set("affinity", f.Affinity)
	if f.Parent != nil {
		q.Set("parent", strconv.FormatInt(*f.Parent, 10))
	}
	if f.Offset > 0 {
		q.Set("offset", strconv.Itoa(f.Offset))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// Run is one run (attempt) of a job.
type Run struct {
	Try        int        `json:"try"`
	AttemptID  int64      `json:"attempt_id"`
	JobID      int64      `json:"job_id"`
	Project    string     `json:"project"`
	Worker     string     `json:"worker"`
	State      string     `json:"state"`
	Start      time.Time  `json:"start"`
	End        *time.Time `json:"end"`
	DurationMS int64      `json:"duration_ms"`
	ExitCode   *int       `json:"exit_code"`
	Signal     int        `json:"signal"`
	Reason     string     `json:"reason"`
	Progress   float64    `json:"progress"`
}

// LogLine is one line of a job's log.
type LogLine struct {
	Number int64  `json:"number"`
	Stream string `json:"stream"`
	Offset int64  `json:"offset"`
	Text   string `json:"text"`
}

// LogPage is a reply of GET /croft/v1/jobs/{id}/log.
type LogPage struct {
	JobID      int64     `json:"job_id"`
	Lines      []LogLine `json:"lines"`
	NextLine   int64     `json:"next_line"`
	NextOffset int64     `json:"next_offset"`
	// Done: no attempt runs and every line was read.
	Done      bool `json:"done"`
	Truncated bool `json:"truncated"`
}

func jobPath(id int64) string { return PathJobs + "/" + strconv.FormatInt(id, 10) }

// ListJobs returns the jobs the filter keeps, in id order.
func (c *Client) ListJobs(ctx context.Context, f JobFilter) ([]NativeJob, error) {
	var out []NativeJob
	err := c.Do(ctx, http.MethodGet, PathJobs+f.query(), nil, &out)
	return out, err
}

// GetJob returns job id in the neutral model.
func (c *Client) GetJob(ctx context.Context, id int64) (NativeJob, error) {
	var out NativeJob
	err := c.Do(ctx, http.MethodGet, jobPath(id), nil, &out)
	return out, err
}

// CreateJobs creates the jobs (all or none) and returns their ids in order.
// Not idempotent: a create whose outcome is unknown is not retried.
func (c *Client) CreateJobs(ctx context.Context, jobs ...JobSpec) ([]int64, error) {
	var out struct {
		IDs []int64 `json:"ids"`
	}
	err := c.Do(ctx, http.MethodPost, PathJobs, struct {
		Jobs []JobSpec `json:"jobs"`
	}{jobs}, &out)
	return out.IDs, err
}

// ActOnJob runs action (cancel, pause, start, reset, retry) on job id and
// what is below it, and returns the job after it.
func (c *Client) ActOnJob(ctx context.Context, id int64, action string) (NativeJob, error) {
	var out NativeJob
	err := c.Do(ctx, http.MethodPost, jobPath(id)+"/"+url.PathEscape(action), nil, &out)
	return out, err
}

// DeleteJob deletes job id and everything below it.
func (c *Client) DeleteJob(ctx context.Context, id int64) error {
	return c.Do(ctx, http.MethodDelete, jobPath(id), nil, nil)
}

// Runs returns a job's runs in try order.
func (c *Client) Runs(ctx context.Context, id int64) ([]Run, error) {
	var out []Run
	err := c.Do(ctx, http.MethodGet, jobPath(id)+"/runs", nil, &out)
	return out, err
}

// LogLines returns a page of job id's log from line fromLine (1-based);
// with follow the coordinator waits (up to wait) for a line to appear.
func (c *Client) LogLines(ctx context.Context, id, fromLine int64, follow bool, wait time.Duration) (LogPage, error) {
	q := url.Values{}
	q.Set("from_line", strconv.FormatInt(max(fromLine, 1), 10))
	if follow {
		q.Set("follow", "true")
		q.Set("wait", wait.String())
	}
	var out LogPage
	err := c.Do(ctx, http.MethodGet, jobPath(id)+"/log?"+q.Encode(), nil, &out)
	return out, err
}

// Session is a session of the farm (GET /croft/v1/sessions/{id}).
type Session struct {
	ID              string            `json:"id"`
	Project         string            `json:"project"`
	Name            string            `json:"name"`
	Kind            string            `json:"kind"`
	Host            string            `json:"host"`
	Interpreter     string            `json:"interpreter"`
	State           string            `json:"state"`
	Reason          string            `json:"reason"`
	Busy            bool              `json:"busy"`
	Created         time.Time         `json:"created"`
	LastActivity    time.Time         `json:"last_activity"`
	Closed          *time.Time        `json:"closed"`
	InactiveTimeout int64             `json:"inactive_timeout"`
	Labels          map[string]string `json:"labels"`
	Doc             json.RawMessage   `json:"doc"`
	Jobs            int               `json:"jobs"`
}

// SessionJob is a job of a session as its list shows it.
type SessionJob struct {
	ID       int64     `json:"id"`
	Title    string    `json:"title"`
	State    string    `json:"state"`
	Tries    int       `json:"tries"`
	ExitCode *int      `json:"exit_code"`
	Signal   int       `json:"signal"`
	Reason   string    `json:"reason"`
	Progress float64   `json:"progress"`
	Created  time.Time `json:"created"`
}

// Page is the ?offset=&limit= window of a list; a zero Limit means all.
type Page struct {
	Offset, Limit int
}

func (p Page) query(q url.Values) string {
	if p.Offset > 0 {
		q.Set("offset", strconv.Itoa(p.Offset))
	}
	if p.Limit > 0 {
		q.Set("limit", strconv.Itoa(p.Limit))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

func withParam(k, v string) url.Values {
	q := url.Values{}
	if v != "" {
		q.Set(k, v)
	}
	return q
}

// Sessions lists the sessions the token reads ("" project: all).
func (c *Client) Sessions(ctx context.Context, project string, p Page) ([]Session, error) {
	var out []Session
	err := c.Do(ctx, http.MethodGet, PathSessions+p.query(withParam("project", project)), nil, &out)
	return out, err
}

// GetSession returns session id.
func (c *Client) GetSession(ctx context.Context, id string) (Session, error) {
	var out Session
	err := c.Do(ctx, http.MethodGet, PathSessions+"/"+url.PathEscape(id), nil, &out)
	return out, err
}

// SessionJobs lists a session's jobs in submission order.
func (c *Client) SessionJobs(ctx context.Context, id string, p Page) ([]SessionJob, error) {
	var out []SessionJob
	err := c.Do(ctx, http.MethodGet, PathSessions+"/"+url.PathEscape(id)+"/jobs"+p.query(url.Values{}), nil, &out)
	return out, err
}

// SessionAction runs close or start on session id.
func (c *Client) SessionAction(ctx context.Context, id, action string) error {
	return c.Do(ctx, http.MethodPost, PathSessions+"/"+url.PathEscape(id)+"/"+url.PathEscape(action), nil, nil)
}

// DeleteSession forgets a closed session with its jobs.
func (c *Client) DeleteSession(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, PathSessions+"/"+url.PathEscape(id), nil, nil)
}

// Templates lists the templates the token sees ("" project: all).
func (c *Client) Templates(ctx context.Context, project string, p Page) ([]Template, error) {
	var out []Template
	err := c.Do(ctx, http.MethodGet, PathTemplates+p.query(withParam("project", project)), nil, &out)
	return out, err
}

// Executions lists the executions the token sees ("" template: all).
func (c *Client) Executions(ctx context.Context, template string, p Page) ([]Execution, error) {
	var out []Execution
	err := c.Do(ctx, http.MethodGet, PathExecutions+p.query(withParam("template", template)), nil, &out)
	return out, err
}

// SetWorkersActive enables (active) or disables the named workers: a
// disabled worker is given no job, and the job it runs is requeued
// (admins).
func (c *Client) SetWorkersActive(ctx context.Context, active bool, names ...string) error {
	path := "/api/stopworkers"
	if active {
		path = "/api/startworkers"
	}
	return c.Do(ctx, http.MethodPost, path, names, nil)
}

// PathWorkersDrain drains workers (POST, DrainRequest; admins).
const PathWorkersDrain = "/croft/v1/workers/drain"

// DrainRequest names the workers to drain.
type DrainRequest struct {
	Names []string `json:"names"`
}

// DrainWorkers drains the named workers: each finishes the job it runs
// and is then given no new one (it is disabled; SetWorkersActive(true)
// takes it back). Unlike a disable, no job is requeued (admins).
func (c *Client) DrainWorkers(ctx context.Context, names ...string) error {
	return c.Do(ctx, http.MethodPost, PathWorkersDrain, DrainRequest{Names: names}, nil)
}
