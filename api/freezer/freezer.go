// Package freezer serves the OpenStack Freezer API v2 under
// /v2/{project_id}/ over the farm's sessions: a Freezer session is a
// raftstore.SessionGroup session of that project, the Freezer document
// kept in its Doc (docs/api/freezer.md).
package freezer

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// Prefix is the sessions' subtree, JobsPrefix the jobs'.
const (
	Prefix     = "/v2/:project/sessions"
	JobsPrefix = "/v2/:project/jobs"
)

// Limits of the dialect's input (413, or 400, past them).
const (
	// MaxBody bounds a request body: a session document, or a search.
	MaxBody = 32 << 10
	// MaxDepth bounds how deep a body's JSON nests.
	MaxDepth = 32
	// MaxLimit bounds a list's limit, MaxOffset its offset.
	MaxLimit  = 1_000
	MaxOffset = raftstore.MaxProjectSessions
	// MaxSearchTerms bounds the pairs of a search's match and match_not.
	MaxSearchTerms = 64
	// DefaultLimit is a list's limit when none is given (freezer-api's).
	DefaultLimit = 10
	// MaxSessionJobs bounds the jobs of one session.
	MaxSessionJobs = 100
)

// defaultUser is the user_id of a session whose token name does not fit
// the schema's pattern.
const defaultUser = "croft"

// StatusMalformed is freezer-api's status for a body that is not JSON.
const StatusMalformed = 753

// Errors the dialect answers with freezer-api's own statuses.
var (
	// ErrMalformed marks a body that is not JSON (StatusMalformed).
	ErrMalformed = errors.New("malformed JSON")
	// errNotImplemented is freezer-api's MethodNotImplemented (405): an
	// action or event it does not know.
	errNotImplemented = errors.New("Bad Method")
)

// Store is the farm's replicated state.
type Store interface {
	State() *raftstore.State
}

// Ops are the farm operations the dialect uses (the service layer's):
// sessions, templates (a Freezer job) and their executions (its runs),
// and the documents of both written together.
type Ops interface {
	OpenSession(ctx context.Context, spec service.SessionSpec) (raftstore.Session, error)
	CloseSession(ctx context.Context, id string) error
	DeleteSession(ctx context.Context, id string) error
	CreateTemplate(ctx context.Context, project string, spec raftstore.TemplateSpec) (raftstore.Template, error)
	DeleteTemplate(ctx context.Context, id string) error
	Execute(ctx context.Context, req service.ExecuteRequest) (raftstore.ExecutionStatus, error)
	CancelExecution(ctx context.Context, id string) error
	DeleteExecution(ctx context.Context, id string) error
	WriteDocs(ctx context.Context, sessions, templates []raftstore.DocWrite) error
}

// Handler serves the dialect.
type Handler struct {
	store Store
	ops   Ops
	// clock is the time of starts and actions (time.Now; tests move it).
	clock func() time.Time
}

// New returns the dialect's handler.
func New(store Store, ops Ops) *Handler {
	return &Handler{store: store, ops: ops, clock: time.Now}
}

// Register mounts the routes. The collection is also served with a
// trailing slash, as python-freezerclient builds its URLs; replace is
// POST in freezer-api's code and PUT for clients that say so.
func (h *Handler) Register(m auth.Mount) {
	m.Abort = Abort
	for _, p := range []string{Prefix, Prefix + "/"} {
		m.Handle(http.MethodGet, p, auth.PermRead, h.list)
		m.Handle(http.MethodPost, p, auth.PermWrite, h.create)
		m.Handle(http.MethodPatch, p, auth.PermWrite, h.update)
	}
	m.Handle(http.MethodGet, Prefix+"/:session", auth.PermRead, h.show)
	m.Handle(http.MethodPatch, Prefix+"/:session", auth.PermWrite, h.update)
	m.Handle(http.MethodPost, Prefix+"/:session", auth.PermWrite, h.replace)
	m.Handle(http.MethodPut, Prefix+"/:session", auth.PermWrite, h.replace)
	m.Handle(http.MethodDelete, Prefix+"/:session", auth.PermWrite, h.remove)
	for _, p := range []string{"/action", "/actions"} {
		m.Handle(http.MethodPost, Prefix+"/:session"+p, auth.PermWrite, h.action)
	}
	m.Handle(http.MethodPut, Prefix+"/:session/jobs/:job", auth.PermWrite, h.addJob)
	m.Handle(http.MethodDelete, Prefix+"/:session/jobs/:job", auth.PermWrite, h.removeJob)
	h.registerJobs(m)
}

// titles are Falcon's error titles by status.
var titles = map[int]string{
	http.StatusBadRequest:            "Bad request format",
	http.StatusUnauthorized:          "Unauthorized",
	http.StatusForbidden:             "Access Forbidden",
	http.StatusNotFound:              "Not Found",
	http.StatusConflict:              "Document already existing",
	http.StatusRequestEntityTooLarge: "Request Entity Too Large",
	StatusMalformed:                  "Malformed JSON",
	http.StatusMethodNotAllowed:      "Bad Method",
}

// Abort answers an error as freezer-api does, {"title", "description"},
// with the status of apierr's table and 753 for malformed JSON.
func Abort(c *gin.Context, err error) {
	status := apierr.Status(err)
	switch {
	case errors.Is(err, ErrMalformed):
		status = StatusMalformed
	case errors.Is(err, errNotImplemented):
		status = http.StatusMethodNotAllowed
	}
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Keystone uri="croft"`)
	}
	title, ok := titles[status]
	if !ok {
		title = http.StatusText(status)
	}
	c.AbortWithStatusJSON(status, gin.H{"title": title, "description": err.Error()})
}

// project returns the path's project_id if the token may read it (write,
// when write is set); else it answers 403.
func project(c *gin.Context, write bool) (string, bool) {
	pid := c.Param("project")
	p := auth.From(c)
	if !p.CanRead(pid) || write && !p.CanWrite(pid) {
		Abort(c, apierr.Forbidden("token %q may not %s project %q", p.Name, map[bool]string{false: "read", true: "change"}[write], apierr.Truncate(pid, 64)))
		return "", false
	}
	return pid, true
}

// lookup finds the Freezer session id of project pid; ok is false when
// there is none (another project's is none too).
func (h *Handler) lookup(pid, id string) (raftstore.SessionView, bool) {
	if raftstore.ValidSessionID(id) != nil {
		return raftstore.SessionView{}, false
	}
	x, ok := h.store.State().Session(id)
	if !ok || x.Project != pid || x.Kind != raftstore.SessionGroup {
		return raftstore.SessionView{}, false
	}
	return x, true
}

func notFound(id string) error {
	return apierr.NotFound("session %q not found", apierr.Truncate(id, 64))
}

// readDoc reads a bounded body as a document; an empty body is nil.
func readDoc(c *gin.Context) (document, error) {
	body, err := apierr.ReadBody(c, MaxBody)
	if err != nil || len(body) == 0 {
		return nil, err
	}
	return decode(body)
}

// userOf is the session's user_id: the token's name when the schema
// takes it.
func userOf(c *gin.Context) string {
	if n := auth.From(c).Name; userIDPattern.MatchString(n) {
		return n
	}
	return defaultUser
}

// writeRequest checks the project of a write and reads its body: a
// session document, required, checked whole (partial: a patch, whose
// fields are all optional). It answers the error itself.
func writeRequest(c *gin.Context, partial bool) (pid string, d document, ok bool) {
	if pid, ok = project(c, true); !ok {
		return "", nil, false
	}
	d, err := readDoc(c)
	if err == nil && d == nil {
		err = apierr.Bad("Missing request body")
	}
	if err == nil {
		err = checkSession(d, partial)
	}
	if err != nil {
		Abort(c, err)
		return "", nil, false
	}
	return pid, d, true
}

// idFields are the fields the server owns: a body's are ignored.
var idFields = []string{"session_id", "user_id", "project_id", "_version"}

// create opens a group session holding the body's document: 201 and
// its 32-hex id.
func (h *Handler) create(c *gin.Context) {
	pid, d, ok := writeRequest(c, false)
	if !ok {
		return
	}
	for _, k := range idFields {
		delete(d, k)
	}
	if err := h.open(c, pid, "", d); err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"session_id": str(d, "session_id")})
}

// open makes a session of project pid from document d (its server
// fields dropped by the caller), with id ("": a new one); d gets the
// defaults, the identity fields and the id.
func (h *Handler) open(c *gin.Context, pid, id string, d document) error {
	setDefaults(d)
	d["user_id"] = userOf(c)
	d["project_id"] = pid
	d["_version"] = json.Number("1")
	body, err := encode(d)
	if err != nil {
		return err
	}
	s, err := h.ops.OpenSession(c, service.SessionSpec{ID: id, Kind: raftstore.SessionGroup, Project: pid, Name: coreFields(d), Doc: body})
	if err != nil {
		return err
	}
	d["session_id"] = s.ID
	return nil
}

func (h *Handler) show(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	x, ok := h.lookup(pid, c.Param("session"))
	if !ok {
		Abort(c, notFound(c.Param("session")))
		return
	}
	c.JSON(http.StatusOK, sessionView(h.store.State(), docOf(&x)))
}

// casTries bounds the read-modify-write loops: each try that fails
// lost to a write that landed meanwhile, so the farm made progress.
const casTries = 16

// retry runs a read-modify-write until it applies without a revision
// conflict, at most casTries times; the last conflict is answered 409.
func retry(f func() error) error {
	for i := 1; ; i++ {
		err := f()
		if !errors.Is(err, raftstore.ErrConflict) || i == casTries {
			return err
		}
	}
}

// sessionWrite is the write of document d as session x's, its version
// bumped, guarded by the revision it was read at.
func sessionWrite(x *raftstore.SessionView, d document) (raftstore.DocWrite, int64, error) {
	version, _ := integer(docOf(x)["_version"])
	version++
	d["session_id"], d["project_id"] = x.ID, x.Project
	d["_version"] = num(version)
	body, err := encode(d)
	if err != nil {
		return raftstore.DocWrite{}, 0, err
	}
	name := coreFields(d)
	return raftstore.DocWrite{ID: x.ID, IfRevision: x.Revision, Doc: body, Name: &name}, version, nil
}

// writeSession reads session id of project pid, changes its document
// with change and writes it, again while another write got there first;
// the answer is the new version.
func (h *Handler) writeSession(ctx context.Context, pid, id string, change func(d document) error) (int64, error) {
	var version int64
	err := retry(func() error {
		x, ok := h.lookup(pid, id)
		if !ok {
			return notFound(id)
		}
		d := docOf(&x)
		if err := change(d); err != nil {
			return err
		}
		w, v, err := sessionWrite(&x, d)
		if err != nil {
			return err
		}
		version = v
		return h.ops.WriteDocs(ctx, []raftstore.DocWrite{w}, nil)
	})
	return version, err
}

// update merges the body into the session (the id in the path, or in the
// body on the collection path); its jobs map is merged key by key.
func (h *Handler) update(c *gin.Context) {
	pid, patch, ok := writeRequest(c, true)
	if !ok {
		return
	}
	id := c.Param("session")
	if id == "" {
		s, isStr := patch["session_id"].(string)
		if !isStr || s == "" {
			Abort(c, apierr.Bad("session_id is required in the body on the collection path"))
			return
		}
		id = s
	}
	for _, k := range idFields {
		delete(patch, k)
	}
	version, err := h.writeSession(c, pid, id, func(d document) error {
		for k, v := range patch {
			if k == "jobs" {
				jobs, _ := d["jobs"].(document)
				merged := document{}
				for jk, jv := range jobs {
					merged[jk] = jv
				}
				for jk, jv := range v.(document) { // checkSession: an object
					merged[jk] = jv
				}
				if len(merged) > MaxSessionJobs {
					return apierr.Bad("the session would have %d jobs, the limit is %d", len(merged), MaxSessionJobs)
				}
				v = merged
			}
			d[k] = v
		}
		return nil
	})
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"session_id": id, "version": version})
}

// replace overwrites the session's document with the body (schedule
// required, as on create), keeping its identity: 201.
func (h *Handler) replace(c *gin.Context) {
	pid, body, ok := writeRequest(c, false)
	if !ok {
		return
	}
	for _, k := range idFields {
		delete(body, k)
	}
	id := c.Param("session")
	if _, ok := h.lookup(pid, id); !ok {
		// freezer-api creates a missing one with the client's id (the
		// python client's create(doc, session_id) posts here). Ids are
		// the core's: 32 lowercase hex digits, else 404.
		if _, taken := h.store.State().Session(id); taken || raftstore.ValidSessionID(id) != nil {
			Abort(c, notFound(id))
			return
		}
		if err := h.open(c, pid, id, body); err != nil {
			Abort(c, err)
			return
		}
		c.JSON(http.StatusCreated, gin.H{"session_id": id, "version": 1})
		return
	}
	version, err := h.writeSession(c, pid, id, func(d document) error {
		user := d["user_id"]
		for k := range d {
			if k != "_version" {
				delete(d, k)
			}
		}
		for k, v := range body {
			d[k] = v
		}
		setDefaults(d)
		d["user_id"] = user
		return nil
	})
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"session_id": id, "version": version})
}

// remove closes the session (its jobs that have not ended are canceled)
// and deletes it: 204, also when there was none, as freezer-api answers.
func (h *Handler) remove(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	x, ok := h.lookup(pid, c.Param("session"))
	if !ok {
		c.Status(http.StatusNoContent)
		return
	}
	err := h.ops.CloseSession(c, x.ID)
	if err == nil {
		err = h.ops.DeleteSession(c, x.ID)
	}
	if err != nil && !errors.Is(err, raftstore.ErrNotFound) { // deleted meanwhile: done
		Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// search is a list's filter: a row is kept when every match pair is
// equal to one of its flattened values and no match_not pair is.
type search struct {
	match, matchNot []map[string]any
}

// readSearch reads the search body of a list (a GET with a body).
func readSearch(c *gin.Context) (*search, error) {
	d, err := readDoc(c)
	if err != nil || d == nil {
		return nil, err
	}
	s := &search{}
	for key, dst := range map[string]*[]map[string]any{"match": &s.match, "match_not": &s.matchNot} {
		v, ok := d[key]
		if !ok {
			continue
		}
		list, isList := v.([]any)
		if !isList {
			return nil, apierr.Bad("%s must be a list of objects", key)
		}
		for _, e := range list {
			m, isMap := e.(document)
			if !isMap {
				return nil, apierr.Bad("%s must be a list of objects", key)
			}
			*dst = append(*dst, m)
		}
	}
	// freezer CLI compatibility: {"_all": "<JSON list>"} is the match list.
	if len(s.match) == 1 {
		if all, ok := s.match[0]["_all"].(string); ok {
			var list []map[string]any
			dec := json.NewDecoder(strings.NewReader(all))
			dec.UseNumber()
			if err := dec.Decode(&list); err != nil {
				return nil, apierr.Bad("match _all: a JSON list of objects expected: %v", err)
			}
			s.match = list
		}
	}
	n := 0
	for _, m := range append(append([]map[string]any{}, s.match...), s.matchNot...) {
		n += len(m)
	}
	if n > MaxSearchTerms {
		return nil, apierr.Bad("the search has %d terms, the limit is %d", n, MaxSearchTerms)
	}
	return s, nil
}

// keeps reports whether a session's document passes the search.
func (s *search) keeps(d document) bool {
	if s == nil {
		return true
	}
	flat := flatten(d)
	has := func(k string, v any) bool {
		for _, x := range flat[k] {
			if equal(x, v) {
				return true
			}
		}
		return false
	}
	for _, m := range s.match {
		for k, v := range m {
			if !has(k, v) {
				return false
			}
		}
	}
	for _, m := range s.matchNot {
		for k, v := range m {
			if has(k, v) {
				return false
			}
		}
	}
	return true
}

// queryInt reads a query integer in [0, limit], def when absent.
func queryInt(c *gin.Context, name string, def, limit int) (int, error) {
	v, ok := c.GetQuery(name)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, apierr.Bad("%s: a non-negative integer expected", name)
	}
	if n > limit {
		return 0, apierr.Bad("%s is %d, the limit is %d", name, n, limit)
	}
	return n, nil
}

// list answers the project's sessions in id order that pass the search,
// offset and limit applied after it.
func (h *Handler) list(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	limit, err := queryInt(c, "limit", DefaultLimit, MaxLimit)
	if err != nil {
		Abort(c, err)
		return
	}
	offset, err := queryInt(c, "offset", 0, MaxOffset)
	if err != nil {
		Abort(c, err)
		return
	}
	s, err := readSearch(c)
	if err != nil {
		Abort(c, err)
		return
	}
	out := []document{}
	st, after, skipped := h.store.State(), "", 0
	for len(out) < limit {
		page, next, more := st.SessionsAfter(after, raftstore.ScanLimit, func(x *raftstore.SessionView) bool {
			return x.Project == pid && x.Kind == raftstore.SessionGroup
		})
		for i := 0; i < len(page) && len(out) < limit; i++ {
			d := sessionView(st, docOf(&page[i]))
			delete(d, "_version") // as the sqlalchemy driver lists them
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
	c.JSON(http.StatusOK, gin.H{"sessions": out})
}
