package native

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/jsonstream"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// PathSessions is the path of the session routes.
const PathSessions = Prefix + "/sessions"

// Sessions runs the session operations (the service layer does).
type Sessions interface {
	OpenSession(ctx context.Context, spec service.SessionSpec) (raftstore.Session, error)
	UpdateSession(ctx context.Context, id string, p service.SessionPatch) error
	CloseSession(ctx context.Context, id string) error
	DeleteSession(ctx context.Context, id string) error
	SubmitCode(ctx context.Context, id, title, code string) (int64, error)
	StartSession(ctx context.Context, id string) error
}

// SessionsHandler serves the farm's neutral sessions under
// /croft/v1/sessions (docs/api/native.md).
type SessionsHandler struct {
	store Store
	ops   Sessions
}

// NewSessions returns the sessions' handler.
func NewSessions(store Store, ops Sessions) *SessionsHandler {
	return &SessionsHandler{store: store, ops: ops}
}

// maxSessionBody bounds a session or code body: the largest doc
// (raftstore.MaxSessionDoc) and labels, with room for their escapes.
const maxSessionBody = 256 << 10

// Register mounts the routes.
func (h *SessionsHandler) Register(m auth.Mount) {
	m.Abort = apierr.Abort
	m.Handle(http.MethodPost, PathSessions, auth.PermWrite, h.open)
	m.Handle(http.MethodGet, PathSessions, auth.PermRead, h.list)
	m.Handle(http.MethodGet, PathSessions+"/:session", auth.PermRead, h.get)
	m.Handle(http.MethodPatch, PathSessions+"/:session", auth.PermWrite, h.update)
	m.Handle(http.MethodDelete, PathSessions+"/:session", auth.PermWrite, h.remove)
	m.Handle(http.MethodPost, PathSessions+"/:session/close", auth.PermWrite, h.close)
	m.Handle(http.MethodPost, PathSessions+"/:session/start", auth.PermWrite, h.start)
	m.Handle(http.MethodPost, PathSessions+"/:session/jobs", auth.PermWrite, h.submit)
	m.Handle(http.MethodGet, PathSessions+"/:session/jobs", auth.PermRead, h.jobs)
}

// SessionRequest is the body of POST /croft/v1/sessions and (every field
// optional) of PATCH /croft/v1/sessions/{id}.
type SessionRequest struct {
	Kind        string  `json:"kind"`
	Name        *string `json:"name"`
	Interpreter string  `json:"interpreter"`
	Project     string  `json:"project"`
	// Labels replace the session's labels whole.
	Labels *map[string]string `json:"labels"`
	// Doc is any JSON value, kept as it is for the client.
	Doc             json.RawMessage `json:"doc"`
	InactiveTimeout *int64          `json:"inactive_timeout"`
}

// Session is a session in the replies.
type Session struct {
	ID          string            `json:"id"`
	Project     string            `json:"project"`
	Name        string            `json:"name"`
	Kind        string            `json:"kind"`
	Host        string            `json:"host"`
	Interpreter string            `json:"interpreter"`
	State       string            `json:"state"`
	Reason      string            `json:"reason"`
	Busy        bool              `json:"busy"`
	Created     string            `json:"created"`
	Activity    string            `json:"last_activity"`
	Closed      *string           `json:"closed"`
	Timeout     int64             `json:"inactive_timeout"`
	Labels      map[string]string `json:"labels"`
	Doc         json.RawMessage   `json:"doc"`
	Jobs        int               `json:"jobs"`
}

func renderSession(x *raftstore.SessionView) Session {
	out := Session{
		ID: x.ID, Project: x.Project, Name: x.Name, Kind: x.Kind, Host: x.Host, Interpreter: x.Interpreter,
		State: x.State, Reason: x.Reason, Busy: x.Busy, Created: rfc3339(x.Created), Activity: rfc3339(x.LastActivity),
		Timeout: x.InactiveTimeout, Labels: x.Labels, Jobs: len(x.Jobs),
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if x.Closed != 0 {
		closed := rfc3339(x.Closed)
		out.Closed = &closed
	}
	if json.Valid(x.Doc) {
		out.Doc = json.RawMessage(x.Doc) // a doc written by another dialect may not be JSON: null then
	}
	return out
}

// SessionJob is a job of a session in GET /croft/v1/sessions/{id}/jobs.
type SessionJob struct {
	ID    int64  `json:"id"`
	Title string `json:"title"`
	// State is the job's neutral state (waiting, running, finished, ...).
	State string `json:"state"`
	// Tries counts its starts; ExitCode, Signal and Reason are those of
	// its last ended run (exit_code null before one, or when no exit was
	// reported).
	Tries    int     `json:"tries"`
	ExitCode *int    `json:"exit_code"`
	Signal   int     `json:"signal"`
	Reason   string  `json:"reason"`
	Progress float64 `json:"progress"`
	Created  string  `json:"created"`
}

// CodeRequest is the body of POST /croft/v1/sessions/{id}/jobs.
type CodeRequest struct {
	Code  string `json:"code"`
	Title string `json:"title"`
}

// readJSON reads a bounded JSON body into v (decodeJSON), answering the
// error itself.
func readJSON(c *gin.Context, v any) bool {
	if err := decodeJSON(c, maxSessionBody, v); err != nil {
		apierr.Abort(c, err)
		return false
	}
	return true
}

// docBytes is a request's doc as stored: nil when absent.
func docBytes(raw json.RawMessage) *[]byte {
	if raw == nil {
		return nil
	}
	b := []byte(raw)
	return &b
}

// open opens a session in the token's project (or the one named) and
// answers it as GET does.
func (h *SessionsHandler) open(c *gin.Context) {
	var req SessionRequest
	if !readJSON(c, &req) {
		return
	}
	p := auth.From(c)
	if req.Project == "" {
		req.Project = p.DefaultProject()
	}
	spec := service.SessionSpec{Kind: req.Kind, Project: req.Project, Interpreter: req.Interpreter}
	if req.Name != nil {
		spec.Name = *req.Name
	}
	if req.Labels != nil {
		spec.Labels = *req.Labels
	}
	if d := docBytes(req.Doc); d != nil {
		spec.Doc = *d
	}
	if req.InactiveTimeout != nil {
		spec.InactiveTimeout = *req.InactiveTimeout
	}
	// Checked here with a stand-in id, so a mistake is a 400 or 413
	// naming the field without a round trip through Raft.
	if err := raftstore.CheckSessionOpen(&raftstore.SessionOpen{ID: "00000000000000000000000000000000", Project: spec.Project,
		Name: spec.Name, Kind: spec.Kind, Interpreter: spec.Interpreter, InactiveTimeout: spec.InactiveTimeout,
		Doc: spec.Doc, Labels: spec.Labels}); err != nil {
		apierr.Abort(c, err)
		return
	}
	if !p.CanWrite(spec.Project) {
		apierr.Abort(c, apierr.Forbidden("token %q may not write project %q", p.Name, spec.Project))
		return
	}
	x, err := h.ops.OpenSession(c, spec)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	v, ok := h.store.State().Session(x.ID)
	if !ok {
		v = raftstore.SessionView{Session: x} // deleted meanwhile: answer it as opened
	}
	c.JSON(http.StatusCreated, renderSession(&v))
}

// lookup finds the session of the request's :session that the token may read
// (write, when write is set): 404 when there is none, 403 when its
// project is not the token's.
func (h *SessionsHandler) lookup(c *gin.Context, write bool) (raftstore.SessionView, bool) {
	id := c.Param("session")
	if err := raftstore.ValidSessionID(id); err != nil {
		apierr.Abort(c, apierr.Bad("session id: 32 lowercase hex digits expected"))
		return raftstore.SessionView{}, false
	}
	x, ok := h.store.State().Session(id)
	if !ok {
		apierr.Abort(c, apierr.NotFound("session %s", id))
		return x, false
	}
	p := auth.From(c)
	if !p.CanRead(x.Project) || write && !p.CanWrite(x.Project) {
		apierr.Abort(c, apierr.Forbidden("token %q may not change project %q", p.Name, x.Project))
		return x, false
	}
	return x, true
}

func (h *SessionsHandler) get(c *gin.Context) {
	if x, ok := h.lookup(c, false); ok {
		c.JSON(http.StatusOK, renderSession(&x))
	}
}

// answer replies with session id as GET does after a change.
func (h *SessionsHandler) answer(c *gin.Context, id string) {
	x, ok := h.store.State().Session(id)
	if !ok {
		c.JSON(http.StatusOK, gin.H{}) // deleted meanwhile: the change happened
		return
	}
	c.JSON(http.StatusOK, renderSession(&x))
}

// list streams the sessions of the projects the token may read, in id
// order, optionally of one ?project=, within the ?offset=&limit= window.
func (h *SessionsHandler) list(c *gin.Context) {
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	project := c.Query("project")
	if project != "" {
		if err := raftstore.ValidProjectName(project); err != nil {
			apierr.Abort(c, err)
			return
		}
	}
	p, st, after := auth.From(c), h.store.State(), ""
	jsonstream.Pages(c, win, func() ([]raftstore.SessionView, bool) {
		page, next, more := st.SessionsAfter(after, raftstore.ScanLimit, func(x *raftstore.SessionView) bool {
			return (project == "" || x.Project == project) && p.CanRead(x.Project)
		})
		after = next
		return page, more
	}, func(x *raftstore.SessionView) any { return renderSession(x) })
}

func (h *SessionsHandler) update(c *gin.Context) {
	x, ok := h.lookup(c, true)
	if !ok {
		return
	}
	var req SessionRequest
	if !readJSON(c, &req) {
		return
	}
	if req.Kind != "" || req.Interpreter != "" || req.Project != "" {
		apierr.Abort(c, apierr.Bad("kind, interpreter and project cannot change"))
		return
	}
	patch := service.SessionPatch{Name: req.Name, Labels: req.Labels, Doc: docBytes(req.Doc), InactiveTimeout: req.InactiveTimeout}
	if err := raftstore.CheckSessionFields(patch.Name, patch.Labels, patch.Doc, patch.InactiveTimeout); err != nil {
		apierr.Abort(c, err)
		return
	}
	if err := h.ops.UpdateSession(c, x.ID, patch); err != nil {
		apierr.Abort(c, err)
		return
	}
	h.answer(c, x.ID)
}

func (h *SessionsHandler) close(c *gin.Context) {
	if x, ok := h.lookup(c, true); ok {
		if err := h.ops.CloseSession(c, x.ID); err != nil {
			apierr.Abort(c, err)
			return
		}
		h.answer(c, x.ID)
	}
}

func (h *SessionsHandler) start(c *gin.Context) {
	if x, ok := h.lookup(c, true); ok {
		if err := h.ops.StartSession(c, x.ID); err != nil {
			apierr.Abort(c, err)
			return
		}
		h.answer(c, x.ID)
	}
}

// remove deletes a closed session with its jobs (400 while it is open).
func (h *SessionsHandler) remove(c *gin.Context) {
	if x, ok := h.lookup(c, true); ok {
		if err := h.ops.DeleteSession(c, x.ID); err != nil {
			apierr.Abort(c, err)
			return
		}
		c.Status(http.StatusNoContent)
	}
}

// submit creates a job running the body's code in the session, with
// the job as GET .../jobs lists it.
func (h *SessionsHandler) submit(c *gin.Context) {
	x, ok := h.lookup(c, true)
	if !ok {
		return
	}
	var req CodeRequest
	if !readJSON(c, &req) {
		return
	}
	if err := raftstore.CheckCode(req.Code); err != nil {
		apierr.Abort(c, err)
		return
	}
	if err := raftstore.CheckName("title", req.Title); err != nil {
		apierr.Abort(c, err)
		return
	}
	id, err := h.ops.SubmitCode(c, x.ID, req.Title, req.Code)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	j, ok := h.store.State().Job(id)
	if !ok {
		c.JSON(http.StatusCreated, gin.H{"id": id})
		return
	}
	c.JSON(http.StatusCreated, renderSessionJob(&j))
}

func renderSessionJob(j *raftstore.Job) SessionJob {
	out := SessionJob{ID: j.ID, Title: j.Title, State: j.Reported(), Tries: int(j.Tries), Signal: int(j.Signal), Reason: j.Reason.String(),
		Progress: j.Progress, Created: rfc3339(j.Created)}
	ended := j.State == raftstore.StateFinished || j.State == raftstore.StateFailed || j.State == raftstore.StateCanceled || j.Tries > 1
	if ended && j.ExitCode != raftstore.NoExitCode && j.Reason.String() == raftstore.ReasonExit {
		code := int(j.ExitCode)
		out.ExitCode = &code
	}
	return out
}

// jobs streams the session's jobs in submission order, within the
// ?offset=&limit= window (a session holds at most MaxSessionJobs).
func (h *SessionsHandler) jobs(c *gin.Context) {
	x, ok := h.lookup(c, false)
	if !ok {
		return
	}
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	st, rest := h.store.State(), x.Jobs
	jsonstream.Pages(c, win, func() ([]raftstore.Job, bool) {
		n := min(len(rest), raftstore.ScanLimit)
		page := make([]raftstore.Job, 0, n)
		for _, id := range rest[:n] {
			if j, ok := st.Job(id); ok {
				page = append(page, j)
			}
		}
		rest = rest[n:]
		return page, len(rest) > 0
	}, func(j *raftstore.Job) any { return renderSessionJob(j) })
}
