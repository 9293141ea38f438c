package sas

import (
	"encoding/json"
	"fmt"
	"github.com/croftfarm/croft/api/ids"
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

var jsonMarshal = json.Marshal

// doc is what the dialect keeps in the core session's Doc.
type doc struct {
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Owner       string          `json:"owner,omitempty"`
	Context     string          `json:"context,omitempty"`
	Attributes  json.RawMessage `json:"attributes,omitempty"`
	Environment json.RawMessage `json:"environment,omitempty"`
}

// docOf reads a session's doc; one written by another dialect reads as
// what it shares (nothing, or a name).
func docOf(x *raftstore.SessionView) doc {
	var d doc
	if json.Unmarshal(x.Doc, &d) != nil {
		return doc{}
	}
	return d
}

// Session states (§5.3). A closed session (deleted, or ended for
// inactivity) is not found.
const (
	statePending = "pending"
	stateIdle    = "idle"
	stateRunning = "running"
)

// sessionState derives a session's state: pending while no slot of its
// host is alive (the agent that runs its code has not spoken, or went
// silent), running while one of its jobs has not ended, idle otherwise.
func sessionState(st *raftstore.State, x *raftstore.SessionView) string {
	if !hostAlive(st, x.Host) {
		return statePending
	}
	if x.Busy {
		return stateRunning
	}
	if n := len(x.Jobs); n > 0 {
		if j, ok := st.Job(x.Jobs[n-1]); ok && !ended(j.State) {
			return stateRunning
		}
	}
	return stateIdle
}

// hostAlive reports whether a slot of the host is registered and not lost.
func hostAlive(st *raftstore.State, host string) bool {
	if host == "" {
		return false
	}
	x, ok := st.Host(host)
	if !ok {
		return false
	}
	for _, slot := range x.Slots {
		if w, ok := st.Worker(slot); ok && w.LostAt == 0 && w.State != raftstore.WorkerStateLost {
			return true
		}
	}
	return false
}

func ended(state string) bool {
	return state == raftstore.StateFinished || state == raftstore.StateFailed || state == raftstore.StateCanceled
}

// sessionETag is the entity tag of a session and of its state: its
// revision (a submit, an update) and its derived state.
func sessionETag(st *raftstore.State, x *raftstore.SessionView) string {
	return fmt.Sprintf(`"%d-%s"`, x.Revision, sessionState(st, x))
}

// Statistics are a log's or a listing's.
type Statistics struct {
	LineCount         int64  `json:"lineCount"`
	ModifiedTimeStamp string `json:"modifiedTimeStamp"`
}

// Session is SAS's session representation (version 2).
type Session struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	Description          string          `json:"description"`
	State                string          `json:"state"`
	StateElapsedTime     int64           `json:"stateElapsedTime"`
	Owner                string          `json:"owner"`
	ApplicationName      string          `json:"applicationName"`
	ServerID             string          `json:"serverId"`
	ServiceAPIVersion    int             `json:"serviceAPIVersion"`
	CreationTimeStamp    string          `json:"creationTimeStamp"`
	SessionConditionCode int64           `json:"sessionConditionCode"`
	Attributes           map[string]any  `json:"attributes"`
	Environment          json.RawMessage `json:"environment"`
	LogStatistics        Statistics      `json:"logStatistics"`
	ListingStatistics    Statistics      `json:"listingStatistics"`
	Links                []Link          `json:"links"`
	Version              int             `json:"version"`
}

// Summary is a session in a list.
type Summary struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Owner   string `json:"owner"`
	State   string `json:"state"`
	Version int    `json:"version"`
	Links   []Link `json:"links"`
}

// sessionLinks are the session's links (§5.2: href == uri, root-relative).
func sessionLinks(id string) []Link {
	self := Prefix + "/sessions/" + id
	execute := link(http.MethodPost, "execute", self+"/jobs", "application/vnd.sas.compute.job.request")
	execute.ResponseType = "application/vnd.sas.compute.job"
	assign := link(http.MethodPost, "assignFileref", self+"/filerefs", "application/vnd.sas.compute.fileref.request")
	assign.ResponseType = "application/vnd.sas.compute.fileref"
	return []Link{
		link(http.MethodGet, "self", self, "application/vnd.sas.compute.session"),
		link(http.MethodGet, "alternate", self, "application/vnd.sas.compute.session.summary"),
		link(http.MethodGet, "state", self+"/state", "text/plain"),
		link(http.MethodPut, "cancel", self+"/state?value=canceled", ""),
		link(http.MethodDelete, "delete", self, ""),
		execute,
		collLink("jobs", self+"/jobs", "application/vnd.sas.compute.job"),
		collLink("files", self+"/filerefs", "application/vnd.sas.compute.fileref.summary"),
		assign,
		collLink("librefs", self+"/data", "application/vnd.sas.compute.library.summary"),
		collLink("log", self+"/log", "application/vnd.sas.compute.log.line"),
		link(http.MethodGet, "logAsText", self+"/log", "text/plain"),
		collLink("listing", self+"/listing", "application/vnd.sas.compute.log.line"),
		link(http.MethodGet, "listingAsText", self+"/listing", "text/plain"),
		collLink("results", self+"/results", "application/vnd.sas.compute.result"),
	}
}

// render maps a core session to SAS's representation; its statistics
// read its jobs (at most raftstore.MaxSessionJobs lookups, and MaxScan
// log lines to count the listing).
func (h *Handler) render(st *raftstore.State, x *raftstore.SessionView) Session {
	d := docOf(x)
	id := sessionID(x.ID)
	name := d.Name
	if name == "" {
		name = x.Name
	}
	attrs := map[string]any{}
	if len(d.Attributes) > 0 {
		_ = json.Unmarshal(d.Attributes, &attrs)
	}
	attrs["sessionInactiveTimeout"] = x.InactiveTimeout
	env := d.Environment
	if len(env) == 0 {
		env = json.RawMessage(`{"options":[]}`)
	}
	state := sessionState(st, x)
	out := Session{ID: id, Name: name, Description: d.Description, State: state, Owner: d.Owner, ApplicationName: "croft",
		ServerID: ids.Dashed(x.ID), ServiceAPIVersion: 4, CreationTimeStamp: isoTime(x.Created), Attributes: attrs,
		Environment: env, Links: sessionLinks(id), Version: 2}
	modified, since := x.Created, x.Created
	var logLines, listLines int64
	budget := MaxScan
	for _, jid := range x.Jobs {
		j, ok := st.Job(jid)
		if !ok {
			continue
		}
		out.SessionConditionCode = max(out.SessionConditionCode, conditionCode(&j))
		logLines += int64(j.LogLines)
		listLines += countListing(st, &j, &budget)
		modified = max(modified, j.StartTime, j.EndTime)
		since = max(since, j.Created, j.StartTime, j.EndTime)
	}
	if state == stateIdle {
		since = max(since, x.LastActivity)
	}
	out.LogStatistics = Statistics{LineCount: logLines, ModifiedTimeStamp: isoTime(modified)}
	out.ListingStatistics = Statistics{LineCount: listLines, ModifiedTimeStamp: isoTime(modified)}
	out.StateElapsedTime = max(0, (h.now().UnixNano()-since)/int64(time.Second))
	return out
}

func summary(st *raftstore.State, x *raftstore.SessionView) Summary {
	d := docOf(x)
	name := d.Name
	if name == "" {
		name = x.Name
	}
	id := sessionID(x.ID)
	self := Prefix + "/sessions/" + id
	return Summary{ID: id, Name: name, Owner: d.Owner, State: sessionState(st, x), Version: 2, Links: []Link{
		link(http.MethodGet, "self", self, "application/vnd.sas.compute.session.summary"),
		link(http.MethodGet, "state", self+"/state", "text/plain"),
		link(http.MethodDelete, "delete", self, ""),
	}}
}

// lookup finds the open context session of the request's :session that
// the token may read (write, when write is set): 404 (errorCode 5837)
// when there is none, it is closed (deleted, or ended for inactivity) or
// the id is not a SAS session id; 403 when its project is not the
// token's.
func (h *Handler) lookup(c *gin.Context, write bool) (*raftstore.State, raftstore.SessionView, bool) {
	st := h.store.State()
	id, ok := coreID(c.Param("session"))
	if !ok {
		Abort(c, sessionNotFound())
		return st, raftstore.SessionView{}, false
	}
	x, ok := st.Session(id)
	if !ok {
		Abort(c, sessionNotFound())
		return st, x, false
	}
	p := auth.From(c)
	if !p.CanRead(x.Project) || write && !p.CanWrite(x.Project) {
		Abort(c, apierr.Forbidden("token %q may not change project %q", p.Name, x.Project))
		return st, x, false
	}
	if x.Kind != raftstore.SessionContext || x.State != raftstore.SessionStateOpen {
		Abort(c, sessionNotFound())
		return st, x, false
	}
	return st, x, true
}

// sessionRequest is the body of a session's creation (version 1).
type sessionRequest struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Attributes  json.RawMessage `json:"attributes"`
	Environment json.RawMessage `json:"environment"`
}

// checkText bounds a text field and refuses NUL bytes.
func checkText(field, v string, limit int) error {
	if len(v) > limit {
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", raftstore.ErrTooLarge, field, len(v), limit)
	}
	if strings.ContainsRune(v, 0) {
		return fmt.Errorf("%w: %s holds a NUL byte", raftstore.ErrInvalid, field)
	}
	return nil
}

// inactiveTimeout reads attributes.sessionInactiveTimeout (seconds).
func inactiveTimeout(attrs json.RawMessage) (int64, error) {
	if len(attrs) == 0 || string(attrs) == "null" {
		return DefaultInactiveTimeout, nil
	}
	var a map[string]json.RawMessage
	if err := json.Unmarshal(attrs, &a); err != nil {
		return 0, apierr.Bad("attributes is not an object: %v", err)
	}
	v, ok := a["sessionInactiveTimeout"]
	if !ok {
		return DefaultInactiveTimeout, nil
	}
	var f float64
	if err := json.Unmarshal(v, &f); err != nil {
		var s string // SAS clients may send it as a string
		if json.Unmarshal(v, &s) != nil {
			return 0, apierr.Bad("attributes.sessionInactiveTimeout is not a number of seconds")
		}
		if f, err = strconv.ParseFloat(s, 64); err != nil {
			return 0, apierr.Bad("attributes.sessionInactiveTimeout is not a number of seconds")
		}
	}
	if f < 0 || f > MaxInactiveTimeout || f != f {
		return 0, apierr.Bad("attributes.sessionInactiveTimeout is not 0..%d seconds", MaxInactiveTimeout)
	}
	return int64(f), nil
}

// create opens a context session with the context's interpreter, on a
// host that offers it, in the token's project (its only one, or the
// default project; ?project= chooses another, a Croft extension).
func (h *Handler) create(c *gin.Context) {
	p := auth.From(c)
	project := c.Query("project")
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
	body, err := apierr.ReadBody(c, MaxBody)
	if err != nil {
		Abort(c, err)
		return
	}
	var req sessionRequest
	if s := strings.TrimSpace(string(body)); s != "" && s != "null" {
		if err := json.Unmarshal(body, &req); err != nil {
			Abort(c, apierr.Bad("malformed JSON: %v", err))
			return
		}
	}
	for _, f := range []struct {
		name, v string
		limit   int
	}{{"name", req.Name, MaxName}, {"description", req.Description, MaxDescription},
		{"attributes", string(req.Attributes), MaxDocExtras}, {"environment", string(req.Environment), MaxDocExtras}} {
		if err := checkText(f.name, f.v, f.limit); err != nil {
			Abort(c, err)
			return
		}
	}
	timeout, err := inactiveTimeout(req.Attributes)
	if err != nil {
		Abort(c, err)
		return
	}
	st := h.store.State()
	interp, ok := findContext(st, p, c.Param("context"))
	if !ok {
		Abort(c, &Error{Status: http.StatusNotFound, Msg: "No context exists at the requested path."})
		return
	}
	d := doc{Name: req.Name, Description: req.Description, Owner: p.Name, Context: contextID(interp),
		Attributes: compact(req.Attributes), Environment: compact(req.Environment)}
	raw, err := json.Marshal(d)
	if err != nil {
		Abort(c, apierr.Bad("attributes or environment: %v", err))
		return
	}
	spec := service.SessionSpec{Kind: raftstore.SessionContext, Project: project, Interpreter: interp, InactiveTimeout: timeout, Doc: raw}
	if raftstore.CheckName("name", req.Name) == nil {
		spec.Name = req.Name
	}
	s, err := h.ops.OpenSession(c, spec)
	if err != nil {
		Abort(c, err)
		return
	}
	st = h.store.State()
	x, ok := st.Session(s.ID)
	if !ok {
		x = raftstore.SessionView{Session: s} // deleted meanwhile: answer it as opened
	}
	id := sessionID(x.ID)
	c.Header("Location", Prefix+"/sessions/"+id)
	c.Header("ETag", sessionETag(st, &x))
	send(c, http.StatusCreated, "application/vnd.sas.compute.session", 2, h.render(st, &x))
}

// compact keeps a JSON value without its blanks (nil for none or null).
func compact(v json.RawMessage) json.RawMessage {
	if len(v) == 0 || strings.TrimSpace(string(v)) == "null" {
		return nil
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return out
}

// list pages the open context sessions the token may read, in id order,
// filtered by ?filter=. It looks at every session (the count needs it).
func (h *Handler) list(c *gin.Context) {
	start, limit, err := paging(c, DefaultLimit, MaxLimit)
	if err != nil {
		Abort(c, err)
		return
	}
	var e *expr
	if f := c.Query("filter"); f != "" {
		if e, err = parseFilter(f); err != nil {
			Abort(c, err)
			return
		}
	}
	p := auth.From(c)
	st, after := h.store.State(), ""
	items := []Summary{}
	count := 0
	for {
		page, next, more := st.SessionsAfter(after, raftstore.ScanLimit, func(x *raftstore.SessionView) bool {
			return x.Kind == raftstore.SessionContext && x.State == raftstore.SessionStateOpen && p.CanRead(x.Project)
		})
		for i := range page {
			s := summary(st, &page[i])
			if e != nil && !e.match(fieldsOf{"name": s.Name, "state": s.State, "owner": s.Owner, "id": s.ID}) {
				continue
			}
			if count >= start && len(items) < limit {
				items = append(items, s)
			}
			count++
		}
		if !more {
			break
		}
		after = next
	}
	send(c, http.StatusOK, "application/vnd.sas.collection", 2,
		collection(c, "sessions", "application/vnd.sas.compute.session.summary", items, start, limit, count))
}

func (h *Handler) get(c *gin.Context) {
	st, x, ok := h.lookup(c, false)
	if !ok {
		return
	}
	c.Header("ETag", sessionETag(st, &x))
	send(c, http.StatusOK, "application/vnd.sas.compute.session", 2, h.render(st, &x))
}

// remove ends the session (its running and queued code is canceled) and
// deletes it with its jobs: 204. No If-Match is needed.
func (h *Handler) remove(c *gin.Context) {
	_, x, ok := h.lookup(c, true)
	if !ok {
		return
	}
	if err := h.deleteSession(c, x.ID); err != nil {
		Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (h *Handler) deleteSession(c *gin.Context, id string) error {
	if err := h.ops.CloseSession(c, id); err != nil {
		return err
	}
	return h.ops.DeleteSession(c, id)
}

// state answers the session's state as text with its ETag; ?wait=N with
// If-None-Match long polls (see waitState).
func (h *Handler) state(c *gin.Context) {
	st, x, ok := h.lookup(c, false)
	if !ok {
		return
	}
	read := func(st *raftstore.State) (string, string, bool) {
		v, ok := st.Session(x.ID)
		if !ok || v.State != raftstore.SessionStateOpen {
			return "", "", false
		}
		return sessionState(st, &v), sessionETag(st, &v), true
	}
	h.waitState(c, st, read, sessionNotFound)
}

// waitState answers a state as text/plain with its ETag. With ?wait=N and
// an If-None-Match, it waits until the ETag differs (200 and the new
// state, at once when it differs already) or N seconds passed (304);
// without If-None-Match, wait is ignored.
func (h *Handler) waitState(c *gin.Context, st *raftstore.State, read func(*raftstore.State) (state, etag string, ok bool), gone func() error) {
	wait, hasWait, err := seconds(c, "wait")
	if err != nil {
		Abort(c, err)
		return
	}
	state, etag, ok := read(st)
	if !ok {
		Abort(c, gone())
		return
	}
	if inm := c.GetHeader("If-None-Match"); hasWait && inm != "" {
		if h.waitChange(c, wait, func(st *raftstore.State) bool {
			_, e, ok := read(st)
			return !ok || e != inm
		}) {
			if state, etag, ok = read(h.store.State()); !ok {
				Abort(c, gone())
				return
			}
		} else {
			if c.Request.Context().Err() != nil {
				return
			}
			c.Header("ETag", inm)
			c.Status(http.StatusNotModified)
			return
		}
	}
	c.Header("ETag", etag)
	c.Data(http.StatusOK, "text/plain;charset=utf-8", []byte(state))
}

// stateValue reads PUT state's ?value= (or the older ?state=).
func stateValue(c *gin.Context) (string, error) {
	v, ok := c.GetQuery("value")
	if !ok {
		v, ok = c.GetQuery("state")
	}
	switch {
	case !ok:
		return "", apierr.Bad("value is required: canceled or deleted")
	case v == "canceled" || v == "deleted":
		return v, nil
	default:
		return "", apierr.Bad("value %q is neither canceled nor deleted", apierr.Truncate(v, 32))
	}
}

// setState cancels the session's running and queued code (value=canceled;
// the session stays, idle) or deletes it (value=deleted). If-Match is
// not checked: saspy sends the ETag of its first read, stale by then, and
// a cancel is safe to repeat (docs/api/sas.md).
func (h *Handler) setState(c *gin.Context) {
	_, x, ok := h.lookup(c, true)
	if !ok {
		return
	}
	v, err := stateValue(c)
	if err != nil {
		Abort(c, err)
		return
	}
	if v == "deleted" {
		if err := h.deleteSession(c, x.ID); err != nil {
			Abort(c, err)
			return
		}
		c.Data(http.StatusOK, "text/plain;charset=utf-8", []byte("deleted"))
		return
	}
	if err := h.cancelJobs(c, x.Jobs); err != nil {
		Abort(c, err)
		return
	}
	st := h.store.State()
	if v, ok := st.Session(x.ID); ok {
		x = v
	}
	c.Header("ETag", sessionETag(st, &x))
	c.Data(http.StatusOK, "text/plain;charset=utf-8", []byte(sessionState(st, &x)))
}

// cancelJobs cancels the jobs of a list that have not ended, in one entry.
func (h *Handler) cancelJobs(c *gin.Context, jobs []int64) error {
	st := h.store.State()
	var ids []int64
	for _, id := range jobs {
		if j, ok := st.Job(id); ok && !ended(j.State) {
			ids = append(ids, id)
		}
	}
	return h.ops.ActOnJobs(c, raftstore.ActionCancel, ids)
}

// libref answers HEAD .../data/{libref}: 200 for the librefs every SAS
// session has (USER, WORK, SASUSER, SASHELP; saspy asks USER), 404 for
// any other; a Croft session has no SAS libraries.
func (h *Handler) libref(c *gin.Context) {
	if _, _, ok := h.lookup(c, false); !ok {
		return
	}
	switch strings.ToUpper(c.Param("libref")) {
	case "USER", "WORK", "SASUSER", "SASHELP":
		c.Header("Content-Type", "application/vnd.sas.compute.library+json;version=1")
		c.Status(http.StatusOK)
	default:
		c.AbortWithStatus(http.StatusNotFound)
	}
}

// filerefs answers the (empty) collection of a session's filerefs.
func (h *Handler) filerefs(c *gin.Context) {
	if _, _, ok := h.lookup(c, false); !ok {
		return
	}
	start, limit, err := paging(c, DefaultLimit, MaxLimit)
	if err != nil {
		Abort(c, err)
		return
	}
	send(c, http.StatusOK, "application/vnd.sas.collection", 2,
		collection(c, "filerefs", "application/vnd.sas.compute.fileref.summary", []any{}, start, limit, 0))
}

// results answers a session's or a job's results: none, as code that is
// not SAS makes no ODS output (?includeTypes= is accepted).
func (h *Handler) results(c *gin.Context) {
	st, x, ok := h.lookup(c, false)
	if !ok {
		return
	}
	if c.Param("job") != "" {
		if _, ok := h.findJob(c, st, &x); !ok {
			return
		}
	}
	if err := checkText("includeTypes", c.Query("includeTypes"), 256); err != nil {
		Abort(c, err)
		return
	}
	start, limit, err := paging(c, DefaultLimit, MaxLimit)
	if err != nil {
		Abort(c, err)
		return
	}
	send(c, http.StatusOK, "application/vnd.sas.collection", 2,
		collection(c, "results", "application/vnd.sas.compute.result", []any{}, start, limit, 0))
}
