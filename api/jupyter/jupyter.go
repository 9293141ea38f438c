// Package jupyter serves the Jupyter Server sessions API (nbserv_client's
// SessionsApi) under /api/sessions over the farm's context sessions: a
// Jupyter session is a raftstore.SessionContext session, its kernel the
// session's interpreter on its host (docs/api/jupyter.md).
package jupyter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/ids"
	"github.com/croftfarm/croft/api/jsonstream"
	farmcmd "github.com/croftfarm/croft/farm"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// Prefix is the subtree the dialect serves (inside Coalition's /api).
const Prefix = "/api/sessions"

// DefaultKernel is the kernel of a session created without a kernel name,
// as Jupyter's default kernelspec.
const DefaultKernel = "python3"

// Limits of the dialect's input (413 past them).
const (
	// MaxBody bounds a request body: a path and a type, a name, and a
	// kernel, or code of raftstore.MaxCodeBytes with every byte escaped.
	MaxBody = 128 << 10
	// MaxPath bounds a session's path, MaxType its type (bytes).
	MaxPath = 4 << 10
	MaxType = 256
)

// Store is the farm's replicated state.
type Store interface {
	State() *raftstore.State
}

// Sessions runs the session operations (the service layer does).
type Sessions interface {
	OpenSession(ctx context.Context, spec service.SessionSpec) (raftstore.Session, error)
	UpdateSession(ctx context.Context, id string, p service.SessionPatch) error
	CloseSession(ctx context.Context, id string) error
	DeleteSession(ctx context.Context, id string) error
	SubmitCode(ctx context.Context, id, title, code string) (int64, error)
}

// Handler serves the dialect.
type Handler struct {
	store Store
	ops   Sessions
}

// New returns the dialect's handler.
func New(store Store, ops Sessions) *Handler {
	return &Handler{store: store, ops: ops}
}

// Register mounts the routes. Coalition owns /api/*, so m.Router must be
// a router of its own that Coalition hands /api/sessions to
// (coalition.Handler.Beside).
func (h *Handler) Register(m auth.Mount) {
	m.Abort = Abort
	m.Handle(http.MethodGet, Prefix, auth.PermRead, h.list)
	m.Handle(http.MethodPost, Prefix, auth.PermWrite, h.create)
	m.Handle(http.MethodGet, Prefix+"/:session", auth.PermRead, h.get)
	m.Handle(http.MethodPatch, Prefix+"/:session", auth.PermWrite, h.update)
	m.Handle(http.MethodDelete, Prefix+"/:session", auth.PermWrite, h.remove)
	m.Handle(http.MethodPost, Prefix+"/:session/jobs", auth.PermWrite, h.submit)
}

// ErrKernelGone marks a session whose kernel ended before the session was
// deleted: it was closed or expired (410).
var ErrKernelGone = errors.New("kernel deleted before session")

// Abort answers an error as Jupyter Server does, {"message", "reason"},
// with the status of apierr's table, 410 added (a 501 has its own body).
func Abort(c *gin.Context, err error) {
	status := apierr.Status(err)
	switch {
	case errors.Is(err, ErrKernelGone):
		status = http.StatusGone
	case status == http.StatusUnauthorized:
		c.Header("WWW-Authenticate", `token realm="croft"`)
	}
	c.AbortWithStatusJSON(status, gin.H{"message": err.Error(), "reason": nil})
}

// Kernel is a session's kernel: its interpreter on its host.
type Kernel struct {
	ID             string `json:"id"`
	Name           string `json:"name"`
	LastActivity   string `json:"last_activity"`
	ExecutionState string `json:"execution_state"`
	Connections    int    `json:"connections"`
}

// Notebook is the deprecated notebook field of a notebook session.
type Notebook struct {
	Path string `json:"path"`
	Name string `json:"name"`
}

// Session is the Jupyter session model.
type Session struct {
	ID       string    `json:"id"`
	Path     string    `json:"path"`
	Name     string    `json:"name"`
	Type     string    `json:"type"`
	Kernel   Kernel    `json:"kernel"`
	Notebook *Notebook `json:"notebook,omitempty"`
}

// doc is what the dialect keeps in the core session's Doc.
type doc struct {
	Path string `json:"path"`
	Type string `json:"type"`
	// Kernel is the kernel's id after a kernel change ("": the session's
	// id, dashed).
	Kernel string `json:"kernel,omitempty"`
}

// docOf reads a session's doc; one written by another dialect reads as
// empty.
func docOf(x *raftstore.SessionView) doc {
	var d doc
	if json.Unmarshal(x.Doc, &d) != nil {
		return doc{}
	}
	return d
}

// Execution states of a kernel.
const (
	stateIdle = "idle"
	stateBusy = "busy"
	// stateDead is a closed or expired session's: its kernel is gone.
	stateDead = "dead"
)

// isoTime renders unix nanoseconds as Jupyter does: ISO-8601, UTC, Z.
func isoTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000Z")
}

// render maps a core session to the Jupyter model.
func render(x *raftstore.SessionView) Session {
	d := docOf(x)
	state := stateIdle
	switch {
	case x.State == raftstore.SessionStateClosed:
		state = stateDead
	case x.Busy:
		state = stateBusy
	}
	out := Session{ID: ids.Dashed(x.ID), Path: d.Path, Name: x.Name, Type: d.Type, Kernel: Kernel{
		ID: kernelID(x, &d), Name: x.Interpreter, LastActivity: isoTime(x.LastActivity), ExecutionState: state,
	}}
	if d.Type == "notebook" {
		out.Notebook = &Notebook{Path: d.Path, Name: x.Name}
	}
	return out
}

// notFound is Jupyter's 404 for an unknown session.
func notFound(id string) error {
	return apierr.NotFound("Session not found: session_id=%q", apierr.Truncate(id, 64))
}

// lookup finds the context session of the request's :session that the
// token may read (write, when write is set): 404 when there is none or
// the id is not a dashed UUID, 403 when its project is not the token's.
func (h *Handler) lookup(c *gin.Context, write bool) (raftstore.SessionView, bool) {
	raw := c.Param("session")
	id, ok := ids.Undashed(raw)
	if !ok {
		Abort(c, notFound(raw))
		return raftstore.SessionView{}, false
	}
	x, ok := h.store.State().Session(id)
	if !ok {
		Abort(c, notFound(raw))
		return x, false
	}
	p := auth.From(c)
	if !p.CanRead(x.Project) || write && !p.CanWrite(x.Project) {
		Abort(c, apierr.Forbidden("token %q may not change project %q", p.Name, x.Project))
		return x, false
	}
	if x.Kind != raftstore.SessionContext { // a schedule group has no kernel
		Abort(c, notFound(raw))
		return x, false
	}
	return x, true
}

// each calls fn for every context session of the farm, in id order,
// that keep keeps, a page at a time, until fn returns false.
func (h *Handler) each(keep func(*raftstore.SessionView) bool, fn func(*raftstore.SessionView) bool) {
	st, after := h.store.State(), ""
	for {
		page, next, more := st.SessionsAfter(after, raftstore.ScanLimit, func(x *raftstore.SessionView) bool {
			return x.Kind == raftstore.SessionContext && keep(x)
		})
		for i := range page {
			if !fn(&page[i]) {
				return
			}
		}
		if !more {
			return
		}
		after = next
	}
}

// list answers every context session the token may read, streamed a
// page of the state at a time: an admin's list of a large farm costs the
// memory of a page (Jupyter has no paging; Croft's ?offset=&limit= window
// it as every Croft list).
func (h *Handler) list(c *gin.Context) {
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		Abort(c, err)
		return
	}
	p := auth.From(c)
	st, after := h.store.State(), ""
	jsonstream.Pages(c, win, func() ([]raftstore.SessionView, bool) {
		page, next, more := st.SessionsAfter(after, raftstore.ScanLimit, func(x *raftstore.SessionView) bool {
			return x.Kind == raftstore.SessionContext && p.CanRead(x.Project)
		})
		after = next
		return page, more
	}, func(x *raftstore.SessionView) any { return render(x) })
}

func (h *Handler) get(c *gin.Context) {
	if x, ok := h.lookup(c, false); ok {
		c.JSON(http.StatusOK, render(&x))
	}
}

// kernelRequest is a request's kernel.
type kernelRequest struct {
	ID   *string `json:"id"`
	Name *string `json:"name"`
}

// sessionRequest is the body of POST and PATCH /api/sessions.
type sessionRequest struct {
	Path     *string        `json:"path"`
	Name     *string        `json:"name"`
	Type     *string        `json:"type"`
	Kernel   *kernelRequest `json:"kernel"`
	Notebook *struct {
		Path *string `json:"path"`
		Name *string `json:"name"`
	} `json:"notebook"`
	// Project is a Croft extension: the project of a new session (the
	// token's only one, or the default project, when absent).
	Project string `json:"project"`
}

// readRequest reads a bounded body; empty is false for an empty body or
// a JSON null.
func readRequest(c *gin.Context) (req sessionRequest, empty bool, err error) {
	body, err := apierr.ReadBody(c, MaxBody)
	if err != nil {
		return req, false, err
	}
	if s := strings.TrimSpace(string(body)); s == "" || s == "null" {
		return req, true, nil
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, false, apierr.Bad("malformed JSON: %v", err)
	}
	if n := req.Notebook; n != nil && req.Path == nil { // the legacy body
		if n.Path != nil {
			req.Path = n.Path
		} else {
			req.Path = n.Name
		}
		nb := "notebook"
		req.Type = &nb
	}
	return req, false, checkRequest(&req)
}

// checkRequest checks the bounds of a request's fields.
func checkRequest(req *sessionRequest) error {
	if req.Path != nil {
		if err := checkText("path", *req.Path, MaxPath); err != nil {
			return err
		}
	}
	if req.Type != nil {
		if err := checkText("type", *req.Type, MaxType); err != nil {
			return err
		}
	}
	if req.Name != nil {
		if err := raftstore.CheckName("name", *req.Name); err != nil {
			return err
		}
	}
	if k := req.Kernel; k != nil && k.Name != nil {
		if err := raftstore.CheckName("kernel.name", *k.Name); err != nil {
			return err
		}
	}
	return nil
}

func checkText(field, v string, limit int) error {
	if len(v) > limit {
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", raftstore.ErrTooLarge, field, len(v), limit)
	}
	if strings.ContainsRune(v, 0) {
		return fmt.Errorf("%w: %s holds a NUL byte", raftstore.ErrInvalid, field)
	}
	return nil
}

// created answers a created or found session: 201 and its Location.
func created(c *gin.Context, x *raftstore.SessionView) {
	c.Header("Location", Prefix+"/"+ids.Dashed(x.ID))
	c.JSON(http.StatusCreated, render(x))
}

// create returns the open session of the project with the body's path
// (else its name), or opens one with the body's kernel.
func (h *Handler) create(c *gin.Context) {
	req, _, err := readRequest(c)
	if err != nil {
		Abort(c, err)
		return
	}
	p := auth.From(c)
	project := req.Project
	if project == "" {
		project = p.DefaultProject()
	} else if err := raftstore.ValidProjectName(project); err != nil {
		Abort(c, err)
		return
	}
	if !p.CanWrite(project) {
		Abort(c, apierr.Forbidden("token %q may not write project %q", p.Name, project))
		return
	}
	if x, ok := h.existing(project, req.Path, req.Name); ok {
		created(c, &x)
		return
	}
	kernel := DefaultKernel
	if k := req.Kernel; k != nil {
		if k.ID != nil && *k.ID != "" {
			Abort(c, apierr.Bad("kernel.id: a new session cannot attach to another session's kernel; give kernel.name"))
			return
		}
		if k.Name != nil && *k.Name != "" {
			kernel = *k.Name
		}
	}
	if !kernelName(kernel) {
		noKernel(c, kernel)
		return
	}
	var d doc
	if req.Path != nil {
		d.Path = *req.Path
	}
	if req.Type != nil {
		d.Type = *req.Type
	}
	body, _ := json.Marshal(d) // two strings: cannot fail
	spec := service.SessionSpec{Kind: raftstore.SessionContext, Project: project, Interpreter: kernel, Doc: body}
	if req.Name != nil {
		spec.Name = *req.Name
	}
	s, err := h.ops.OpenSession(c, spec)
	if errors.Is(err, raftstore.ErrNoHost) {
		noKernel(c, kernel)
		return
	}
	if err != nil {
		Abort(c, err)
		return
	}
	x, ok := h.store.State().Session(s.ID)
	if !ok {
		x = raftstore.SessionView{Session: s} // deleted meanwhile: answer it as opened
	}
	created(c, &x)
}

// existing finds the open context session of project whose path is path
// (when given and not ""), else whose name is name (likewise): Jupyter
// Server dedupes on the path, its reference doc on the name.
func (h *Handler) existing(project string, path, name *string) (raftstore.SessionView, bool) {
	var match func(*raftstore.SessionView) bool
	switch {
	case path != nil && *path != "":
		match = func(x *raftstore.SessionView) bool { return docOf(x).Path == *path }
	case name != nil && *name != "":
		match = func(x *raftstore.SessionView) bool { return x.Name == *name }
	default:
		return raftstore.SessionView{}, false
	}
	var found raftstore.SessionView
	ok := false
	h.each(func(x *raftstore.SessionView) bool {
		return x.Project == project && x.State == raftstore.SessionStateOpen && match(x)
	}, func(x *raftstore.SessionView) bool {
		found, ok = *x, true
		return false
	})
	return found, ok
}

// noKernel answers Jupyter's 501 for a kernel no host offers.
func noKernel(c *gin.Context, kernel string) {
	c.AbortWithStatusJSON(http.StatusNotImplemented, gin.H{
		"message":       fmt.Sprintf("The '%s' kernel is not available. Please pick another suitable kernel instead, or install that kernel.", kernel),
		"short_message": kernel + " not found",
	})
}

// kernelName reports whether name can be an interpreter's at all: any
// other is a kernel no host can offer (Jupyter's 501, as for one no host
// offers, which the core says with raftstore.ErrNoHost).
func kernelName(name string) bool { return farmcmd.CheckInterpreterName(name) == nil }

// update changes a session's path, name or type, and its kernel: a
// kernel.name other than its own starts a new kernel (the session is
// rebound to that interpreter, on a host that offers it; its running
// code is stopped, as the old kernel is shut down) with a new kernel id;
// a kernel.id other than its kernel's is "No such kernel" (400). Each
// write is guarded by the revision it read, and done again when another
// write got there first.
func (h *Handler) update(c *gin.Context) {
	x, ok := h.lookup(c, true)
	if !ok {
		return
	}
	req, empty, err := readRequest(c)
	if err == nil && empty {
		err = apierr.Bad("No JSON data provided")
	}
	if err != nil {
		Abort(c, err)
		return
	}
	for try := 1; ; try++ {
		patch, err := h.patchOf(&x, &req)
		if err == nil && patch != nil {
			err = h.ops.UpdateSession(c, x.ID, *patch)
		}
		if errors.Is(err, raftstore.ErrConflict) && try < casTries {
			if x, ok = h.store.State().Session(x.ID); ok {
				continue
			}
			err = notFound(c.Param("session"))
		}
		if errors.Is(err, raftstore.ErrNoHost) {
			noKernel(c, *req.Kernel.Name)
			return
		}
		if err != nil {
			Abort(c, err)
			return
		}
		break
	}
	if v, ok := h.store.State().Session(x.ID); ok {
		x = v
	}
	c.JSON(http.StatusOK, render(&x))
}

// casTries bounds update's read-modify-write loop.
const casTries = 16

// patchOf is the change req makes to session x (nil: none), guarded by
// x's revision; raftstore.ErrNoHost when the kernel asked for cannot be.
func (h *Handler) patchOf(x *raftstore.SessionView, req *sessionRequest) (*service.SessionPatch, error) {
	d := docOf(x)
	changed := false
	patch := service.SessionPatch{Name: req.Name, IfRevision: x.Revision}
	if k := req.Kernel; k != nil {
		switch {
		case k.ID != nil && *k.ID != "":
			if *k.ID != kernelID(x, &d) {
				return nil, apierr.Bad("No such kernel: %s", apierr.Truncate(*k.ID, 64))
			}
		case k.Name != nil && *k.Name != "" && *k.Name != x.Interpreter:
			if !kernelName(*k.Name) {
				return nil, raftstore.ErrNoHost
			}
			id, err := service.NewID()
			if err != nil {
				return nil, err
			}
			patch.Interpreter = k.Name
			d.Kernel = ids.Dashed(id)
			changed = true
		}
	}
	if req.Path != nil {
		d.Path, changed = *req.Path, true
	}
	if req.Type != nil {
		d.Type, changed = *req.Type, true
	}
	if changed {
		body, _ := json.Marshal(d) // strings: cannot fail
		patch.Doc = &body
	}
	if patch.Name == nil && patch.Doc == nil {
		return nil, nil
	}
	return &patch, nil
}

// kernelID is session x's kernel's id: the session's own (dashed) until
// a kernel change gave it a new one.
func kernelID(x *raftstore.SessionView, d *doc) string {
	if d.Kernel != "" {
		return d.Kernel
	}
	return ids.Dashed(x.ID)
}

// remove closes the session (its kernel: running code is stopped) and
// deletes it: 204. A session already closed, by a user of another dialect
// or for inactivity, is deleted too, with 410 as Jupyter answers when the
// kernel was gone.
func (h *Handler) remove(c *gin.Context) {
	x, ok := h.lookup(c, true)
	if !ok {
		return
	}
	gone := x.State == raftstore.SessionStateClosed
	if !gone {
		if err := h.ops.CloseSession(c, x.ID); err != nil {
			Abort(c, err)
			return
		}
	}
	if err := h.ops.DeleteSession(c, x.ID); err != nil {
		Abort(c, err)
		return
	}
	if gone {
		Abort(c, ErrKernelGone)
		return
	}
	c.Status(http.StatusNoContent)
}

// codeRequest is the body of POST /api/sessions/{id}/jobs.
type codeRequest struct {
	Code  string `json:"code"`
	Title string `json:"title"`
}

// Job is a submitted code's job: its id and where its output is read.
type Job struct {
	ID      int64  `json:"id"`
	Session string `json:"session_id"`
	Log     string `json:"log"`
}

// submit runs the body's code in the session, after its earlier code, on
// its host with its kernel's interpreter.
func (h *Handler) submit(c *gin.Context) {
	x, ok := h.lookup(c, true)
	if !ok {
		return
	}
	body, err := apierr.ReadBody(c, MaxBody)
	if err != nil {
		Abort(c, err)
		return
	}
	var req codeRequest
	if err := json.Unmarshal(body, &req); err != nil {
		Abort(c, apierr.Bad("malformed JSON: %v", err))
		return
	}
	if err := raftstore.CheckCode(req.Code); err != nil {
		Abort(c, err)
		return
	}
	if err := raftstore.CheckName("title", req.Title); err != nil {
		Abort(c, err)
		return
	}
	id, err := h.ops.SubmitCode(c, x.ID, req.Title, req.Code)
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusCreated, Job{ID: id, Session: ids.Dashed(x.ID), Log: fmt.Sprintf("/croft/v1/jobs/%d/log", id)})
}
