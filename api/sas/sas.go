// Package sas serves the SAS Viya Compute service's session API under
// /compute (the HTTP mode of saspy, the SAS VS Code extension) over the
// farm's context sessions: a compute context is an interpreter, a compute
// session a raftstore.SessionContext session bound to a host that offers
// it, a job code submitted to the session (docs/api/sas.md).
package sas

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/ids"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// Prefix is the subtree the dialect serves.
const Prefix = "/compute"

// Limits of the dialect's input (413 or 400 past them; docs/api/sas.md).
const (
	// MaxBody bounds a request body: a job's code of
	// raftstore.MaxCodeBytes with every byte escaped, or a session request.
	MaxBody = 128 << 10
	// MaxName and MaxDescription bound a session's name and description
	// (bytes), as SAS documents them (100 and 1000 characters).
	MaxName        = 400
	MaxDescription = 4000
	// MaxDocExtras bounds a session's attributes and environment, as JSON.
	MaxDocExtras = 32 << 10
	// MaxCodeLines bounds the code lines of one job request.
	MaxCodeLines = 10_000
	// DefaultLimit is a collection's page size, MaxLimit the largest one
	// (a larger limit is cut to it: saspy asks limit=999999).
	DefaultLimit = 10
	MaxLimit     = 1000
	// DefaultLogLimit is a log page's size, MaxLogLimit the largest.
	DefaultLogLimit = 100
	MaxLogLimit     = 10_000
	// MaxLogReplyBytes bounds the text of one log page (one line at least).
	MaxLogReplyBytes = 4 << 20
	// MaxScan bounds the log lines one request looks at to skip to a
	// filtered page's start (listing, type=) or to count the listing.
	MaxScan = 200_000
	// MaxWait bounds a state long poll (?wait=) and a log long poll
	// (?timeout=), in seconds; larger values are cut to it. It stays
	// under the server's write timeout (coordinator.DefaultWriteTimeout,
	// 5 min), which would cut the answer of a longer wait.
	MaxWait = 240
	// MaxWaiters bounds the requests long polling at once; past it a
	// request answers at once.
	MaxWaiters = 1024
	// DefaultInactiveTimeout is the sessionInactiveTimeout of a session
	// created without one (seconds), MaxInactiveTimeout the largest.
	DefaultInactiveTimeout = 900
	MaxInactiveTimeout     = 30 * 24 * 3600
)

// Error codes of SAS's error bodies (§5.4).
const (
	CodeSessionNotFound = 5837
	CodeNoCode          = 5202
	CodeBadFilter       = 1104
)

// Store is the farm's replicated state.
type Store interface {
	State() *raftstore.State
}

// Ops runs the session and job operations (the service layer does).
type Ops interface {
	OpenSession(ctx context.Context, spec service.SessionSpec) (raftstore.Session, error)
	CloseSession(ctx context.Context, id string) error
	DeleteSession(ctx context.Context, id string) error
	SubmitCode(ctx context.Context, id, title, code string) (int64, error)
	ActOnJobs(ctx context.Context, action string, ids []int64) error
	DeleteJobs(ctx context.Context, ids []int64) error
}

// Handler serves the dialect.
type Handler struct {
	store   Store
	ops     Ops
	waiters chan struct{} // a token per long poll in progress
	now     func() time.Time
}

// New returns the dialect's handler.
func New(store Store, ops Ops) *Handler {
	return &Handler{store: store, ops: ops, waiters: make(chan struct{}, MaxWaiters), now: time.Now}
}

// Register mounts the routes.
func (h *Handler) Register(m auth.Mount) {
	m.Abort = Abort
	const s, j = Prefix + "/sessions/:session", Prefix + "/sessions/:session/jobs/:job"
	m.Handle(http.MethodGet, Prefix+"/contexts", auth.PermRead, h.contexts)
	m.Handle(http.MethodGet, Prefix+"/contexts/:context", auth.PermRead, h.context)
	m.Handle(http.MethodPost, Prefix+"/contexts/:context/sessions", auth.PermWrite, h.create)
	m.Handle(http.MethodGet, Prefix+"/sessions", auth.PermRead, h.list)
	m.Handle(http.MethodGet, s, auth.PermRead, h.get)
	m.Handle(http.MethodDelete, s, auth.PermWrite, h.remove)
	m.Handle(http.MethodGet, s+"/state", auth.PermRead, h.state)
	m.Handle(http.MethodPut, s+"/state", auth.PermWrite, h.setState)
	m.Handle(http.MethodPost, s+"/jobs", auth.PermWrite, h.submit)
	m.Handle(http.MethodGet, s+"/jobs", auth.PermRead, h.jobs)
	m.Handle(http.MethodGet, s+"/log", auth.PermRead, h.sessionLog(false))
	m.Handle(http.MethodGet, s+"/listing", auth.PermRead, h.sessionLog(true))
	m.Handle(http.MethodGet, s+"/results", auth.PermRead, h.results)
	m.Handle(http.MethodGet, s+"/filerefs", auth.PermRead, h.filerefs)
	m.Handle(http.MethodHead, s+"/data/:libref", auth.PermRead, h.libref)
	m.Handle(http.MethodGet, j, auth.PermRead, h.job)
	m.Handle(http.MethodDelete, j, auth.PermWrite, h.removeJob)
	m.Handle(http.MethodGet, j+"/state", auth.PermRead, h.jobState)
	m.Handle(http.MethodPut, j+"/state", auth.PermWrite, h.setJobState)
	m.Handle(http.MethodGet, j+"/log", auth.PermRead, h.jobLog(false))
	m.Handle(http.MethodGet, j+"/listing", auth.PermRead, h.jobLog(true))
	m.Handle(http.MethodGet, j+"/results", auth.PermRead, h.results)
}

// Error is a SAS error: its status, its errorCode and its message.
type Error struct {
	Status int
	Code   int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// ErrorBody is SAS's error representation (version 2).
type ErrorBody struct {
	Version        int      `json:"version"`
	HTTPStatusCode int      `json:"httpStatusCode"`
	ErrorCode      int      `json:"errorCode"`
	Message        string   `json:"message"`
	Details        []string `json:"details"`
}

// Abort answers an error in SAS's shape: an *Error's status and code, or
// the status of apierr's table with that status as the errorCode.
func Abort(c *gin.Context, err error) {
	status, code := apierr.Status(err), 0
	var e *Error
	if errors.As(err, &e) {
		status, code = e.Status, e.Code
	}
	if code == 0 {
		code = status
	}
	if status == http.StatusUnauthorized {
		c.Header("WWW-Authenticate", `Bearer realm="croft"`)
	}
	body := ErrorBody{Version: 2, HTTPStatusCode: status, ErrorCode: code, Message: err.Error(),
		Details: []string{"path: " + apierr.Truncate(c.Request.URL.Path, 256)}}
	c.Header("Content-Type", "application/vnd.sas.error+json;version=2")
	c.AbortWithStatusJSON(status, body)
}

// sessionNotFound is the 404 of an unknown, closed or deleted session.
func sessionNotFound() error {
	return &Error{Status: http.StatusNotFound, Code: CodeSessionNotFound, Msg: "No session exists at the requested path."}
}

// Ids. A session's is its core id as a dashed UUID with SAS's "-ses0000";
// a job's the core job id in decimal; a context's a UUID drawn from its
// interpreter's name (stable over restarts and coordinators).
const sessionSuffix = "-ses0000"

// sessionID is the SAS id of a core session.
func sessionID(id string) string { return ids.Dashed(id) + sessionSuffix }

// coreID reads a SAS session id back; ok is false for any other string.
func coreID(s string) (string, bool) {
	u, ok := strings.CutSuffix(s, sessionSuffix)
	if !ok {
		return "", false
	}
	return ids.Undashed(u)
}

// contextID is the id of the context of an interpreter: a UUID made of
// the first 16 bytes of the SHA-256 of its name (version 8 bits set).
func contextID(name string) string {
	sum := sha256.Sum256([]byte("croft-sas-context\x00" + name))
	sum[6] = sum[6]&0x0f | 0x80
	sum[8] = sum[8]&0x3f | 0x80
	return ids.Dashed(hex.EncodeToString(sum[:16]))
}

// isoTime renders unix nanoseconds as SAS does: ISO-8601 UTC seconds, Z.
func isoTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05Z")
}

// Link is a SAS link. Type is omitted when nil, and written as null when
// it holds "null" (the job's cancel and delete links).
type Link struct {
	Method       string `json:"method"`
	Rel          string `json:"rel"`
	Href         string `json:"href"`
	URI          string `json:"uri"`
	Type         any    `json:"type,omitempty"`
	ResponseType string `json:"responseType,omitempty"`
	ItemType     string `json:"itemType,omitempty"`
}

// jsonNull is a Link.Type written as null.
type jsonNull struct{}

func (jsonNull) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

func link(method, rel, href, typ string) Link {
	l := Link{Method: method, Rel: rel, Href: href, URI: href}
	if typ != "" {
		l.Type = typ
	}
	return l
}

func collLink(rel, href, item string) Link {
	l := link(http.MethodGet, rel, href, "application/vnd.sas.collection")
	l.ItemType = item
	return l
}

// Collection is SAS's collection shape.
type Collection struct {
	Name    string `json:"name"`
	Accept  string `json:"accept"`
	Start   int    `json:"start"`
	Count   int    `json:"count"`
	Items   any    `json:"items"`
	Limit   int    `json:"limit"`
	Version int    `json:"version"`
	Links   []Link `json:"links"`
}

// collection builds a page of a collection at path (its query kept but
// start and limit), with self, first, prev, next and last links.
func collection(c *gin.Context, name, accept string, items any, start, limit, count int) Collection {
	base := c.Request.URL.Path
	q := c.Request.URL.Query()
	page := func(rel string, at int) Link {
		q.Set("start", strconv.Itoa(at))
		q.Set("limit", strconv.Itoa(limit))
		return collLink(rel, base+"?"+q.Encode(), accept)
	}
	links := []Link{page("self", start), page("first", 0)}
	if start > 0 {
		links = append(links, page("prev", max(start-limit, 0)))
	}
	if start+limit < count {
		links = append(links, page("next", start+limit))
	}
	links = append(links, page("last", max(count-1, 0)/limit*limit))
	return Collection{Name: name, Accept: accept, Start: start, Count: count, Items: items, Limit: limit, Version: 2, Links: links}
}

// paging reads ?start= and ?limit= (def by default, cut to most).
func paging(c *gin.Context, def, most int) (start, limit int, err error) {
	limit = def
	if v, ok := c.GetQuery("start"); ok {
		n, e := strconv.ParseInt(v, 10, 64)
		if e != nil || n < 0 {
			return 0, 0, apierr.Bad("start %q is not an integer >= 0", apierr.Truncate(v, 32))
		}
		start = int(min(n, 1<<40))
	}
	if v, ok := c.GetQuery("limit"); ok {
		n, e := strconv.ParseInt(v, 10, 64)
		if e != nil || n < 1 {
			return 0, 0, apierr.Bad("limit %q is not an integer >= 1", apierr.Truncate(v, 32))
		}
		limit = int(min(n, int64(most)))
	}
	return start, limit, nil
}

// seconds reads a query's number of seconds, cut to MaxWait; ok is false
// when absent.
func seconds(c *gin.Context, name string) (time.Duration, bool, error) {
	v, ok := c.GetQuery(name)
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n < 0 || n != n {
		return 0, false, apierr.Bad("%s %q is not a number of seconds >= 0", name, apierr.Truncate(v, 32))
	}
	return time.Duration(min(n, MaxWait) * float64(time.Second)), true, nil
}

// send answers a SAS representation with its media type and version.
func send(c *gin.Context, status int, media string, version int, v any) {
	c.Header("Content-Type", fmt.Sprintf("%s+json;charset=utf-8;version=%d", media, version))
	c.Status(status)
	c.Render(-1, jsonRender{v})
}

// jsonRender writes v as JSON without touching the Content-Type.
type jsonRender struct{ v any }

func (r jsonRender) Render(w http.ResponseWriter) error {
	b, err := jsonMarshal(r.v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (jsonRender) WriteContentType(http.ResponseWriter) {}

// waitChange waits until changed reports true (the state moved), at most
// d, and never while MaxWaiters others wait: it checks after every
// applied batch of entries (raftstore.State.Changed), never in a loop of
// its own. It reports whether the state changed.
func (h *Handler) waitChange(c *gin.Context, d time.Duration, changed func(st *raftstore.State) bool) bool {
	select {
	case h.waiters <- struct{}{}:
		defer func() { <-h.waiters }()
	default:
		return changed(h.store.State())
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		st := h.store.State() // anew each time: a restore swaps it
		ch := st.Changed()    // before the read: no change is missed
		if changed(st) {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return changed(h.store.State())
		case <-c.Request.Context().Done():
			return false
		}
	}
}
