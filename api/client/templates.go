package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// Paths of the templates and executions routes.
const (
	PathTemplates  = "/croft/v1/templates"
	PathExecutions = "/croft/v1/executions"
)

// TemplateDefaults are the job fields a template gives its executions'
// jobs.
type TemplateDefaults struct {
	// Retry is how many runs a failed job gets in all (0 or 1: one).
	Retry int `json:"retry"`
	// Timeout is in seconds (0: none).
	Timeout  int64 `json:"timeout"`
	Priority int   `json:"priority"`
	// Affinity is comma-separated affinity names; an execution's pool is
	// added to them.
	Affinity string            `json:"affinity"`
	Env      map[string]string `json:"env"`
}

// TemplateRequest creates a template (POST /croft/v1/templates).
type TemplateRequest struct {
	// Project is the template's ("" : the token's only project, or
	// default).
	Project string `json:"project"`
	// Name is unique in the project.
	Name string `json:"name"`
	// Type is a free word: Shell, Spark, Pig, Java...
	Type string `json:"type"`
	// Command is a command template with {main} and {args} ("" : the
	// template cannot be executed).
	Command   string           `json:"command"`
	Main      string           `json:"main"`
	Defaults  TemplateDefaults `json:"defaults"`
	Public    bool             `json:"public"`
	Protected bool             `json:"protected"`
	// Doc is any JSON value, kept as given.
	Doc    json.RawMessage   `json:"doc,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// TemplatePatch changes a template (PATCH /croft/v1/templates/{id});
// absent fields are unchanged, defaults are replaced whole.
type TemplatePatch struct {
	Name      *string            `json:"name,omitempty"`
	Type      *string            `json:"type,omitempty"`
	Command   *string            `json:"command,omitempty"`
	Main      *string            `json:"main,omitempty"`
	Defaults  *TemplateDefaults  `json:"defaults,omitempty"`
	Public    *bool              `json:"public,omitempty"`
	Protected *bool              `json:"protected,omitempty"`
	Doc       *json.RawMessage   `json:"doc,omitempty"`
	Labels    *map[string]string `json:"labels,omitempty"`
}

// Template is a saved job of a project.
type Template struct {
	ID        string            `json:"id"`
	Project   string            `json:"project"`
	Name      string            `json:"name"`
	Type      string            `json:"type"`
	Command   string            `json:"command"`
	Main      string            `json:"main"`
	Defaults  TemplateDefaults  `json:"defaults"`
	Public    bool              `json:"public"`
	Protected bool              `json:"protected"`
	Doc       json.RawMessage   `json:"doc"`
	Labels    map[string]string `json:"labels"`
	// Executions counts its executions (it cannot be deleted while
	// there are some).
	Executions int       `json:"executions"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
}

// ExecuteRequest runs a template once (POST
// /croft/v1/templates/{id}/execute).
type ExecuteRequest struct {
	// Pool is an affinity name the job needs besides the template's.
	Pool string `json:"pool,omitempty"`
	// Args fill {args}, each one shell word.
	Args []string `json:"args,omitempty"`
	// Params are environment variables of the job, over the template's.
	Params map[string]string `json:"params,omitempty"`
	Doc    json.RawMessage   `json:"doc,omitempty"`
	// Host, when set, pins the job to that host (an agent's name): it
	// runs only on one of its slots, and waits until one asks for work.
	Host string `json:"host,omitempty"`
}

// Execution is one run of a template: its job's state and, once it
// ended, the return code of its last run.
type Execution struct {
	ID       string `json:"id"`
	Template string `json:"template"`
	Project  string `json:"project"`
	Pool     string `json:"pool"`
	// Host is the host the job is pinned to, "" for none.
	Host   string            `json:"host"`
	JobID  int64             `json:"job_id"`
	Args   []string          `json:"args"`
	Params map[string]string `json:"params"`
	Doc    json.RawMessage   `json:"doc"`
	// State is the job's neutral state: waiting, blocked, running,
	// finished, failed, canceled or paused.
	State string `json:"state"`
	// Ended is true once the job will not run again by itself.
	Ended bool `json:"ended"`
	// ReturnCode is the exit code of the last run once ended; null
	// before, or when that run reported none (see Reason).
	ReturnCode *int       `json:"return_code"`
	Signal     int        `json:"signal"`
	Reason     string     `json:"reason"`
	Tries      int        `json:"tries"`
	Worker     string     `json:"worker"`
	Created    time.Time  `json:"created"`
	Started    *time.Time `json:"started,omitempty"`
	EndTime    *time.Time `json:"end_time,omitempty"`
}

// CreateTemplate adds a template.
func (c *Client) CreateTemplate(ctx context.Context, req TemplateRequest) (Template, error) {
	var out Template
	err := c.Do(ctx, http.MethodPost, PathTemplates, req, &out)
	return out, err
}

// UpdateTemplate changes template id.
func (c *Client) UpdateTemplate(ctx context.Context, id string, patch TemplatePatch) (Template, error) {
	var out Template
	err := c.Do(ctx, http.MethodPatch, PathTemplates+"/"+url.PathEscape(id), patch, &out)
	return out, err
}

// GetTemplate returns template id.
func (c *Client) GetTemplate(ctx context.Context, id string) (Template, error) {
	var out Template
	err := c.Do(ctx, http.MethodGet, PathTemplates+"/"+url.PathEscape(id), nil, &out)
	return out, err
}

// DeleteTemplate removes template id (refused while it has executions).
func (c *Client) DeleteTemplate(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, PathTemplates+"/"+url.PathEscape(id), nil, nil)
}

// Execute runs template id once.
func (c *Client) Execute(ctx context.Context, id string, req ExecuteRequest) (Execution, error) {
	var out Execution
	err := c.Do(ctx, http.MethodPost, PathTemplates+"/"+url.PathEscape(id)+"/execute", req, &out)
	return out, err
}

// GetExecution returns execution id.
func (c *Client) GetExecution(ctx context.Context, id string) (Execution, error) {
	var out Execution
	err := c.Do(ctx, http.MethodGet, PathExecutions+"/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CancelExecution cancels execution id's job.
func (c *Client) CancelExecution(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodPost, PathExecutions+"/"+url.PathEscape(id)+"/cancel", nil, nil)
}

// DeleteExecution deletes an ended execution and its job.
func (c *Client) DeleteExecution(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, PathExecutions+"/"+url.PathEscape(id), nil, nil)
}
