// Package coalition serves the Coalition render-farm API (api-dialects.md
// §2): the /api JSON endpoints (also under /xmlrpc and /api/webfrontend),
// xmlrpc addjob, and the /workers protocol of unmodified Coalition workers.
// Handlers only translate: every rule lives in raftstore, statuses in apierr.
package coalition

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/coordinator/liveness"
	"github.com/croftfarm/croft/raftstore"
)

// Store is what the Coalition routes need from the coordinator. Requests
// reach these handlers on the leader only (followers forward them).
type Store interface {
	// Apply proposes a command and returns the FSM's result.
	Apply(ctx context.Context, cmd raftstore.Command) (any, error)
	// State returns the current replicated state for reads.
	State() *raftstore.State
}

// Pings is the leader's in-memory record of worker heartbeats.
type Pings interface {
	Seen(worker string, p liveness.Ping)
	Get(worker string) (liveness.Ping, bool)
	Forget(worker string)
}

// Handler serves the Coalition dialect.
type Handler struct {
	store Store
	pings Pings
	now   func() time.Time
}

// MaxBodyBytes bounds a request body; larger bodies get 413.
const MaxBodyBytes = 64 << 20

// notFoundBody is Coalition's reply to an unknown service or job.
const notFoundBody = "Web service not found."

// New returns a Coalition handler.
func New(store Store, pings Pings) *Handler {
	return &Handler{store: store, pings: pings, now: time.Now}
}

// Register mounts the dialect. mw runs before every handler (the leader
// forwarding middleware).
func (h *Handler) Register(r gin.IRouter, mw ...gin.HandlerFunc) {
	api := append(append([]gin.HandlerFunc{}, mw...), h.serveAPI)
	for _, prefix := range []string{"/api", "/xmlrpc"} {
		r.Any(prefix+"/*path", api...)
	}
	wk := append(append([]gin.HandlerFunc{}, mw...), h.serveWorkers)
	r.Any("/workers/*path", wk...)
}

// notFound answers as Coalition does for anything it does not serve.
func notFound(c *gin.Context) {
	c.Data(http.StatusNotFound, "text/html", []byte(notFoundBody))
}

// reply writes a 200 JSON result, the only success status Coalition knows.
func reply(c *gin.Context, v any) {
	c.JSON(http.StatusOK, v)
}

func readBody(c *gin.Context) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes))
	if err != nil {
		return nil, apierr.Bad("reading the body: %v", err)
	}
	return body, nil
}

// serveAPI dispatches /api, /xmlrpc and /api/webfrontend paths the way
// Coalition's Master.render does: by path segments and method.
func (h *Handler) serveAPI(c *gin.Context) {
	path := strings.Trim(c.Param("path"), "/")
	if rest, ok := strings.CutPrefix(path, "webfrontend"); ok {
		path = strings.Trim(rest, "/")
	}
	seg := strings.Split(path, "/")
	m := c.Request.Method
	var body []byte
	if m != http.MethodGet && m != http.MethodHead {
		b, err := readBody(c)
		if err != nil {
			apierr.Abort(c, err)
			return
		}
		body = b
	}
	var err error
	switch {
	case path == "jobs" && m == http.MethodGet:
		err = h.rootJobs(c)
	case path == "jobs" && m == http.MethodPut:
		err = h.createJob(c, body)
	case path == "jobs" && m == http.MethodPost:
		err = h.editJobs(c, body)
	case path == "jobs" && m == http.MethodDelete:
		err = h.deleteJobs(c, body)
	case len(seg) >= 2 && seg[0] == "jobs" && isFilter(seg[1]) && len(seg) == 2:
		err = h.distinct(c, seg[1])
	case len(seg) >= 2 && seg[0] == "jobs" && seg[1] == "where" && len(seg) == 2:
		err = h.where(c, false)
	case len(seg) == 3 && seg[0] == "jobs" && seg[1] == "count" && seg[2] == "where":
		err = h.where(c, true)
	case len(seg) >= 2 && seg[0] == "jobs":
		err = h.jobPath(c, seg[1:], m, body)
	case path == "resetjobs" && m == http.MethodPost:
		err = h.jobAction(c, raftstore.ActionReset, body)
	case path == "reseterrorjobs" && m == http.MethodPost:
		err = h.jobAction(c, raftstore.ActionResetError, body)
	case path == "startjobs" && m == http.MethodPost:
		err = h.jobAction(c, raftstore.ActionStart, body)
	case path == "pausejobs" && m == http.MethodPost:
		err = h.jobAction(c, raftstore.ActionPause, body)
	case path == "workers" && m == http.MethodGet:
		err = h.workers(c)
	case path == "workers" && m == http.MethodPost:
		err = h.editWorkers(c, body)
	case path == "workers" && m == http.MethodDelete:
		err = h.deleteWorkers(c, body)
	case path == "startworkers" && m == http.MethodPost:
		err = h.workerAction(c, raftstore.ActionWorkerStart, body)
	case path == "stopworkers" && m == http.MethodPost:
		err = h.workerAction(c, raftstore.ActionWorkerStop, body)
	case path == "events" && m == http.MethodGet:
		err = h.events(c)
	case path == "affinities" && m == http.MethodGet:
		err = h.affinities(c)
	case path == "affinities" && m == http.MethodPost:
		err = h.setAffinities(c, body)
	case path == "addjob" && (m == http.MethodGet || m == http.MethodPost):
		h.addJob(c, body)
		return
	default:
		// Includes terminateworkers: Croft has no cloud mode, and Coalition
		// answers 404 outside cloud mode.
		notFound(c)
		return
	}
	if err != nil {
		apierr.Abort(c, err)
	}
}

// jobPath serves /api/jobs/{id}[/children|/dependencies|/childrendependencies|/log].
func (h *Handler) jobPath(c *gin.Context, seg []string, m string, body []byte) error {
	id, err := strconv.ParseInt(seg[0], 10, 64)
	if err != nil || id < 0 {
		notFound(c)
		return nil
	}
	st := h.store.State()
	switch {
	case len(seg) == 1 && m == http.MethodGet:
		j, ok := st.Job(id)
		if !ok {
			notFound(c)
			return nil
		}
		out := renderJob(&j)
		deps := append([]int64{}, j.Dependencies...)
		out.Dependencies = &deps
		reply(c, out)
	case len(seg) == 2 && seg[1] == "children" && m == http.MethodGet:
		kids, ok := st.Children(id)
		if !ok {
			notFound(c)
			return nil
		}
		reply(c, renderJobs(kids))
	case len(seg) == 2 && seg[1] == "dependencies" && m == http.MethodGet:
		deps, ok := st.Dependencies(id)
		if !ok {
			notFound(c)
			return nil
		}
		reply(c, renderJobs(deps))
	case len(seg) == 2 && seg[1] == "dependencies" && m == http.MethodPost:
		ids, err := parseIDBody(body)
		if err != nil {
			return err
		}
		if _, err := h.store.Apply(c, &raftstore.JobSetDeps{Now: h.stamp(), ID: id, Deps: ids}); err != nil {
			return err
		}
		reply(c, 1)
	case len(seg) == 2 && seg[1] == "childrendependencies" && m == http.MethodGet:
		kids, ok := st.Children(id)
		if !ok {
			notFound(c)
			return nil
		}
		type pair struct {
			ID         int64 `json:"id"`
			Dependency int64 `json:"dependency"`
		}
		out := []pair{}
		for _, k := range kids {
			for _, d := range k.Dependencies {
				out = append(out, pair{ID: k.ID, Dependency: d})
			}
		}
		reply(c, out)
	case len(seg) == 2 && seg[1] == "log" && m == http.MethodGet:
		text, ok := st.Log(id)
		if !ok {
			notFound(c)
			return nil
		}
		reply(c, text)
	default:
		notFound(c)
	}
	return nil
}

// stamp is the leader's clock, read before a command is proposed.
func (h *Handler) stamp() int64 { return h.now().UnixNano() }

func (h *Handler) rootJobs(c *gin.Context) error {
	kids, _ := h.store.State().Children(0)
	reply(c, renderJobs(kids))
	return nil
}

// createJob serves PUT /api/jobs. Besides Coalition's attributes it takes
// a Croft extension, "children": a list of job objects (which may have
// children of their own) created under the new job in the same Raft entry,
// so a 10,000-frame job is one request and one commit. The reply is still
// the bare id of the top job.
func (h *Handler) createJob(c *gin.Context, body []byte) error {
	m, err := parseObject(body)
	if err != nil {
		return err
	}
	var specs []raftstore.JobSpec
	if err := flattenJob(m, 0, &specs); err != nil {
		return err
	}
	res, err := h.store.Apply(c, &raftstore.JobCreate{Now: h.stamp(), Jobs: specs})
	if err != nil {
		return err
	}
	reply(c, res.([]int64)[0])
	return nil
}

// maxJobsPerRequest bounds one create request (and so one Raft entry).
const maxJobsPerRequest = 1_000_000

// flattenJob appends the job described by m, then its children (depth
// first), to specs. parentRef is the 1-based index of its parent in specs,
// or 0 for a job placed by its own "parent" attribute.
func flattenJob(m map[string]json.RawMessage, parentRef int, specs *[]raftstore.JobSpec) error {
	kids, hasKids := m["children"]
	delete(m, "children")
	if parentRef != 0 {
		if _, ok := m["parent"]; ok {
			return bad("a job inside \"children\" takes its parent from there: drop \"parent\"")
		}
	}
	p, err := parseJobAttrs(m)
	if err != nil {
		return err
	}
	spec, err := specFromPatch(p)
	if err != nil {
		return err
	}
	spec.ParentRef = parentRef
	if len(*specs) >= maxJobsPerRequest {
		return bad("more than %d jobs in one request", maxJobsPerRequest)
	}
	*specs = append(*specs, spec)
	if !hasKids {
		return nil
	}
	if spec.Command != "" {
		return bad("a job with children is a group: its command must be empty")
	}
	// One pass over the list decodes every child's members.
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(kids, &list); err != nil {
		return childrenError(kids)
	}
	self := len(*specs)
	*specs = slices.Grow(*specs, len(list))
	for i, km := range list {
		if km == nil {
			return bad("children[%d]: a job object is expected", i)
		}
		if err := flattenJob(km, self, specs); err != nil {
			return err
		}
	}
	return nil
}

// childrenError says what is wrong with a "children" value that is not a
// list of objects.
func childrenError(kids json.RawMessage) error {
	var list []json.RawMessage
	if err := json.Unmarshal(kids, &list); err != nil {
		return bad("children: a list of job objects is expected")
	}
	for i, raw := range list {
		if km, err := parseObject(raw); err != nil || km == nil {
			return bad("children[%d]: a job object is expected", i)
		}
	}
	return bad("children: a list of job objects is expected")
}

func (h *Handler) editJobs(c *gin.Context, body []byte) error {
	m, err := parseObject(body)
	if err != nil {
		return err
	}
	cmd := &raftstore.JobEdit{Now: h.stamp()}
	for key, raw := range m {
		id, err := parseID(key)
		if err != nil {
			return err
		}
		attrs, err := parseObject(raw)
		if err != nil {
			return bad("job %d: %v", id, err)
		}
		p, err := parseJobAttrs(attrs)
		if err != nil {
			return err
		}
		cmd.Edits = append(cmd.Edits, raftstore.JobEditItem{ID: id, Patch: p})
	}
	sortEdits(cmd.Edits)
	if len(cmd.Edits) > 0 {
		if _, err := h.store.Apply(c, cmd); err != nil {
			return err
		}
	}
	reply(c, 1)
	return nil
}

func (h *Handler) deleteJobs(c *gin.Context, body []byte) error {
	ids, err := parseIDBody(body)
	if err != nil {
		return err
	}
	if len(ids) > 0 {
		if _, err := h.store.Apply(c, &raftstore.JobDelete{Now: h.stamp(), IDs: ids}); err != nil {
			return err
		}
	}
	reply(c, 1)
	return nil
}

func (h *Handler) jobAction(c *gin.Context, action string, body []byte) error {
	ids, err := parseIDBody(body)
	if err != nil {
		return err
	}
	if len(ids) > 0 {
		if _, err := h.store.Apply(c, &raftstore.JobAction{Now: h.stamp(), Action: action, IDs: ids}); err != nil {
			return err
		}
	}
	reply(c, 1)
	return nil
}
