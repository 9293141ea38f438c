package native

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/jsonstream"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// Templates changes templates and runs them (the service layer does).
type Templates interface {
	CreateTemplate(ctx context.Context, project string, spec raftstore.TemplateSpec) (raftstore.Template, error)
	UpdateTemplate(ctx context.Context, id string, patch raftstore.TemplatePatch) (raftstore.Template, error)
	DeleteTemplate(ctx context.Context, id string) error
	Execute(ctx context.Context, req service.ExecuteRequest) (raftstore.ExecutionStatus, error)
	CancelExecution(ctx context.Context, id string) error
	DeleteExecution(ctx context.Context, id string) error
}

// TemplatesHandler serves templates and their executions under
// /croft/v1/templates and /croft/v1/executions: write to change, read to
// see, each checked against the object's project (a public template is
// visible to every reader).
type TemplatesHandler struct {
	store Store
	ops   Templates
}

// NewTemplates returns the templates' handler.
func NewTemplates(store Store, ops Templates) *TemplatesHandler {
	return &TemplatesHandler{store: store, ops: ops}
}

// Bounds of the request bodies: every field at its limit (raftstore's
// MaxMainBytes, MaxDocBytes, MaxEnvironmentBytes, MaxArgsBytes...) fits,
// with room for JSON escaping of most of it.
const (
	maxTemplateBody = 1 << 20
	maxExecuteBody  = 1 << 20
)

// Register mounts the routes.
func (h *TemplatesHandler) Register(m auth.Mount) {
	m.Abort = apierr.Abort
	m.Handle(http.MethodPost, client.PathTemplates, auth.PermWrite, h.create)
	m.Handle(http.MethodGet, client.PathTemplates, auth.PermRead, h.list)
	m.Handle(http.MethodGet, client.PathTemplates+"/:template", auth.PermRead, h.get)
	m.Handle(http.MethodPatch, client.PathTemplates+"/:template", auth.PermWrite, h.update)
	m.Handle(http.MethodDelete, client.PathTemplates+"/:template", auth.PermWrite, h.remove)
	m.Handle(http.MethodPost, client.PathTemplates+"/:template/execute", auth.PermWrite, h.execute)
	m.Handle(http.MethodGet, client.PathExecutions, auth.PermRead, h.executions)
	m.Handle(http.MethodGet, client.PathExecutions+"/:execution", auth.PermRead, h.execution)
	m.Handle(http.MethodDelete, client.PathExecutions+"/:execution", auth.PermWrite, h.deleteExecution)
	m.Handle(http.MethodPost, client.PathExecutions+"/:execution/cancel", auth.PermWrite, h.cancel)
}

// mayRead reports whether p may see template x.
func mayRead(p *auth.Principal, x *raftstore.Template) bool {
	return p.CanRead(x.Project) || (x.Spec.Public && p.CanReadSome())
}

// docJSON shows a stored doc: as it was given when it is JSON (this
// API's), as a JSON string when a dialect stored other bytes, null when
// empty.
func docJSON(doc []byte) json.RawMessage {
	switch {
	case len(doc) == 0:
		return json.RawMessage("null")
	case json.Valid(doc):
		return doc
	}
	b, _ := json.Marshal(string(doc))
	return b
}

// storedDoc stores a request's doc: its JSON text, nothing for null.
func storedDoc(doc json.RawMessage) []byte {
	if len(doc) == 0 || string(doc) == "null" {
		return nil
	}
	return []byte(doc)
}

func defaultsFrom(d client.TemplateDefaults) raftstore.JobDefaults {
	return raftstore.JobDefaults{Retry: d.Retry, Timeout: d.Timeout, Priority: d.Priority, Affinity: d.Affinity, Env: d.Env}
}

func renderTemplate(x *raftstore.Template, uses int) client.Template {
	sp := &x.Spec
	d := sp.Defaults
	labels := sp.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return client.Template{
		ID: x.ID, Project: x.Project, Name: sp.Name, Type: sp.Type, Command: sp.Command, Main: sp.Main,
		Defaults: client.TemplateDefaults{Retry: d.Retry, Timeout: d.Timeout, Priority: d.Priority, Affinity: d.Affinity, Env: d.Env},
		Public:   sp.Public, Protected: sp.Protected, Doc: docJSON(sp.Doc), Labels: labels, Executions: uses,
		Created: time.Unix(0, x.Created).UTC(), Updated: time.Unix(0, x.Updated).UTC(),
	}
}

func renderExecution(e *raftstore.ExecutionStatus) client.Execution {
	out := client.Execution{
		ID: e.ID, Template: e.Template, Project: e.Project, Pool: e.Pool, Host: e.Host, JobID: e.JobID, Args: e.Args, Params: e.Params,
		Doc: docJSON(e.Doc), State: e.State, Ended: e.Ended, Signal: e.Signal, Reason: e.Reason, Tries: e.Tries, Worker: e.Worker,
		Created: time.Unix(0, e.Created).UTC(),
	}
	if out.Args == nil {
		out.Args = []string{}
	}
	if out.Params == nil {
		out.Params = map[string]string{}
	}
	if e.Ended && e.ExitCode != raftstore.NoExitCode {
		code := e.ExitCode
		out.ReturnCode = &code
	}
	if e.StartTime != 0 {
		t := time.Unix(0, e.StartTime).UTC()
		out.Started = &t
	}
	if e.EndTime != 0 {
		t := time.Unix(0, e.EndTime).UTC()
		out.EndTime = &t
	}
	return out
}

// decodeJSON reads a body of at most limit bytes into v: 413 past the
// limit, 400 when malformed; an empty body reads as {}.
func decodeJSON(c *gin.Context, limit int64, v any) error {
	body, err := apierr.ReadBody(c, limit)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return apierr.Bad("malformed JSON: %v", err)
	}
	return nil
}

// create adds a template to the request's project (the token's only one
// when it names none), and answers it (201).
func (h *TemplatesHandler) create(c *gin.Context) {
	var req client.TemplateRequest
	if err := decodeJSON(c, maxTemplateBody, &req); err != nil {
		apierr.Abort(c, err)
		return
	}
	p := auth.From(c)
	if req.Project == "" {
		req.Project = p.DefaultProject()
	}
	if !p.CanWrite(req.Project) {
		apierr.Abort(c, apierr.Forbidden("token %q may not write to project %q", p.Name, req.Project))
		return
	}
	spec := raftstore.TemplateSpec{Name: req.Name, Type: req.Type, Command: req.Command, Main: req.Main,
		Defaults: defaultsFrom(req.Defaults), Public: req.Public, Protected: req.Protected, Doc: storedDoc(req.Doc), Labels: req.Labels}
	// Checked here too, so a mistake is a 400 or 413 naming the field
	// without a round trip through Raft.
	if err := raftstore.CheckTemplateSpec(&spec); err != nil {
		apierr.Abort(c, err)
		return
	}
	x, err := h.ops.CreateTemplate(c, req.Project, spec)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusCreated, renderTemplate(&x, 0))
}

// list streams the templates the token may see, in id order, within the
// ?offset=&limit= window; ?project= keeps one project's.
func (h *TemplatesHandler) list(c *gin.Context) {
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	p, project := auth.From(c), c.Query("project")
	st := h.store.State()
	after := ""
	jsonstream.Pages(c, win, func() ([]raftstore.Template, bool) {
		page, next, more := st.TemplatesAfter(after, raftstore.ScanLimit)
		after = next
		kept := page[:0]
		for _, x := range page {
			if mayRead(p, &x) && (project == "" || x.Project == project) {
				kept = append(kept, x)
			}
		}
		return kept, more
	}, func(x *raftstore.Template) any { return renderTemplate(x, st.TemplateUses(x.ID)) })
}

// template finds the template of the request's path that p may see: 404
// when there is none, 403 when p may not read it.
func (h *TemplatesHandler) template(c *gin.Context) (raftstore.Template, bool) {
	x, ok := h.store.State().Template(c.Param("template"))
	if !ok {
		apierr.Abort(c, apierr.NotFound("template %q", apierr.Truncate(c.Param("template"), 64)))
		return x, false
	}
	if p := auth.From(c); !mayRead(p, &x) {
		apierr.Abort(c, apierr.Forbidden("token %q may not read project %q", p.Name, x.Project))
		return x, false
	}
	return x, true
}

// writable is template, and also checks that p may write to its project.
func (h *TemplatesHandler) writable(c *gin.Context) (raftstore.Template, bool) {
	x, ok := h.template(c)
	if !ok {
		return x, false
	}
	if p := auth.From(c); !p.CanWrite(x.Project) {
		apierr.Abort(c, apierr.Forbidden("token %q may not write to project %q", p.Name, x.Project))
		return x, false
	}
	return x, true
}

func (h *TemplatesHandler) get(c *gin.Context) {
	if x, ok := h.template(c); ok {
		c.JSON(http.StatusOK, renderTemplate(&x, h.store.State().TemplateUses(x.ID)))
	}
}

// update changes the fields the body names; 409 for a protected template
// unless the body clears protected.
func (h *TemplatesHandler) update(c *gin.Context) {
	x, ok := h.writable(c)
	if !ok {
		return
	}
	var req client.TemplatePatch
	if err := decodeJSON(c, maxTemplateBody, &req); err != nil {
		apierr.Abort(c, err)
		return
	}
	patch := raftstore.TemplatePatch{Name: req.Name, Type: req.Type, Command: req.Command, Main: req.Main,
		Public: req.Public, Protected: req.Protected, Labels: req.Labels}
	if req.Defaults != nil {
		d := defaultsFrom(*req.Defaults)
		patch.Defaults = &d
	}
	if req.Doc != nil {
		doc := storedDoc(*req.Doc)
		patch.Doc = &doc
	}
	y, err := h.ops.UpdateTemplate(c, x.ID, patch)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, renderTemplate(&y, h.store.State().TemplateUses(y.ID)))
}

// remove deletes a template: 409 while it has executions or is protected.
func (h *TemplatesHandler) remove(c *gin.Context) {
	x, ok := h.writable(c)
	if !ok {
		return
	}
	if err := h.ops.DeleteTemplate(c, x.ID); err != nil {
		apierr.Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// execute runs the template once, pinned to a host when the body names
// one. A template without a command, or a bad host name, is a 400. It
// answers the execution (201).
func (h *TemplatesHandler) execute(c *gin.Context) {
	x, ok := h.writable(c)
	if !ok {
		return
	}
	var req client.ExecuteRequest
	if err := decodeJSON(c, maxExecuteBody, &req); err != nil {
		apierr.Abort(c, err)
		return
	}
	p := auth.From(c)
	doc := storedDoc(req.Doc)
	// The execution's own fields are checked here, for a 400 or 413
	// without a round trip; the id is the leader's (any valid one here).
	check := raftstore.Execute{ID: "00000000000000000000000000000000", Template: x.ID, Pool: req.Pool, Args: req.Args,
		Params: req.Params, Doc: doc, User: p.Name, Host: req.Host}
	if err := raftstore.CheckExecute(&check); err != nil {
		apierr.Abort(c, err)
		return
	}
	if _, err := raftstore.ExecutionSpec(&x, &check); err != nil {
		apierr.Abort(c, err)
		return
	}
	e, err := h.ops.Execute(c, service.ExecuteRequest{Template: x.ID, Pool: req.Pool, Args: req.Args, Params: req.Params, Doc: doc,
		User: p.Name, Host: req.Host})
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusCreated, renderExecution(&e))
}

// executions streams the executions the token may see, in id order,
// within the ?offset=&limit= window; ?template= keeps one template's.
func (h *TemplatesHandler) executions(c *gin.Context) {
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	p, tmpl := auth.From(c), c.Query("template")
	st := h.store.State()
	after := ""
	jsonstream.Pages(c, win, func() ([]raftstore.ExecutionStatus, bool) {
		page, next, more := st.ExecutionsAfter(after, raftstore.ScanLimit, tmpl)
		after = next
		kept := page[:0]
		for _, e := range page {
			if p.CanRead(e.Project) {
				kept = append(kept, e)
			}
		}
		return kept, more
	}, func(e *raftstore.ExecutionStatus) any { return renderExecution(e) })
}

// findExecution finds the execution of the request's path: 404 when there
// is none, 403 when p may not read (write, when write) its project.
func (h *TemplatesHandler) findExecution(c *gin.Context, write bool) (raftstore.ExecutionStatus, bool) {
	e, ok := h.store.State().Execution(c.Param("execution"))
	if !ok {
		apierr.Abort(c, apierr.NotFound("execution %q", apierr.Truncate(c.Param("execution"), 64)))
		return e, false
	}
	p := auth.From(c)
	if !p.CanRead(e.Project) || (write && !p.CanWrite(e.Project)) {
		apierr.Abort(c, apierr.Forbidden("token %q may not access project %q", p.Name, e.Project))
		return e, false
	}
	return e, true
}

func (h *TemplatesHandler) execution(c *gin.Context) {
	if e, ok := h.findExecution(c, false); ok {
		c.JSON(http.StatusOK, renderExecution(&e))
	}
}

// cancel cancels the execution's job and answers the execution.
func (h *TemplatesHandler) cancel(c *gin.Context) {
	e, ok := h.findExecution(c, true)
	if !ok {
		return
	}
	if err := h.ops.CancelExecution(c, e.ID); err != nil {
		apierr.Abort(c, err)
		return
	}
	if now, ok := h.store.State().Execution(e.ID); ok {
		e = now
	}
	c.JSON(http.StatusOK, renderExecution(&e))
}

// deleteExecution deletes an ended execution and its job: 409 until it
// ended (cancel it first).
func (h *TemplatesHandler) deleteExecution(c *gin.Context) {
	e, ok := h.findExecution(c, true)
	if !ok {
		return
	}
	if err := h.ops.DeleteExecution(c, e.ID); err != nil {
		apierr.Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
