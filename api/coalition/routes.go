// Package coalition serves the Coalition render-farm API (api-dialects.md
// §2): the /api JSON endpoints (also under /xmlrpc and /api/webfrontend),
// xmlrpc addjob, and the /workers protocol of unmodified Coalition workers.
// Handlers only translate: every rule of the job model lives in raftstore,
// statuses in apierr, who may do what in the route table below (auth).
package coalition

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
	"github.com/croftfarm/croft/service/liveness"
)

// Jobs is what the job routes need of the service layer.
type Jobs interface {
	CreateJobs(ctx context.Context, specs []raftstore.JobSpec) ([]int64, error)
	EditJobs(ctx context.Context, edits []raftstore.JobEditItem) error
	DeleteJobs(ctx context.Context, ids []int64) error
	ActOnJobs(ctx context.Context, action string, ids []int64) error
	SetDependencies(ctx context.Context, id int64, deps []int64) error
	NameAffinities(ctx context.Context, names map[int]string) error
}

// Workers is what the worker admin routes need of the service layer.
type Workers interface {
	EditWorkers(ctx context.Context, edits []raftstore.WorkerEditItem) error
	DeleteWorkers(ctx context.Context, names []string) error
	ActOnWorkers(ctx context.Context, action string, names []string) error
}

// WorkerProtocol is what Coalition's worker protocol needs of the service
// layer: the pick and report the Croft agent protocol uses too.
type WorkerProtocol interface {
	Touch(name string, p liveness.Ping) bool
	Pull(ctx context.Context, p service.Pull) (*raftstore.Assignment, error)
	Report(ctx context.Context, r service.Report) (service.ReportResult, error)
	AttemptLive(worker string, jobID, attempt int64) bool
}

// Farm is what the Coalition routes need of the service layer. Requests
// reach these handlers on the leader only (followers forward them).
type Farm interface {
	// State returns the current replicated state for reads.
	State() *raftstore.State
	Jobs
	Workers
	WorkerProtocol
}

// Pings is the leader's in-memory record of worker heartbeats, read for
// the workers' rows.
type Pings interface {
	Get(worker string) (liveness.Ping, bool)
}

// Store is a replicated store that applies commands itself (the package's
// tests, a single process): New runs a service layer of its own over it.
type Store interface {
	// Apply proposes a command and returns the FSM's result.
	Apply(ctx context.Context, cmd raftstore.Command) (any, error)
	// State returns the current replicated state for reads.
	State() *raftstore.State
}

// Limits bound what one request may ask for.
type Limits struct {
	// MaxBody is the largest request body, in bytes (413 beyond).
	MaxBody int64
	// MaxJobsPerRequest bounds the jobs one create makes (a group and
	// its "children"), so one Raft entry.
	MaxJobsPerRequest int
	// MaxProjectJobs bounds the jobs of one project (0: no bound).
	MaxProjectJobs int
	// MaxJobOutput bounds the output kept of one job (its log), in bytes.
	MaxJobOutput int64
}

// DefaultLimits are the limits of a coordinator that sets none.
var DefaultLimits = Limits{MaxBody: 32 << 20, MaxJobsPerRequest: 200_000, MaxProjectJobs: 2_000_000, MaxJobOutput: raftstore.MaxLogBytes}

// Handler serves the Coalition dialect.
type Handler struct {
	farm   Farm
	pings  Pings
	limits Limits
	now    func() time.Time
	// beside are the /api subtrees another dialect serves (Beside).
	beside []besideTree
}

// besideTree is one /api subtree served by another handler.
type besideTree struct {
	prefix string
	next   http.Handler
}

// Beside has next serve the requests for prefix (a path under /api, e.g.
// /api/sessions) and everything below it, instead of Coalition: gin
// cannot mount another dialect's routes beside Coalition's /api
// catch-all. next authenticates and authorises them itself (mount its
// routes with auth.Mount on a router of its own). Call it before Register.
func (h *Handler) Beside(prefix string, next http.Handler) {
	h.beside = append(h.beside, besideTree{prefix: strings.TrimSuffix(prefix, "/"), next: next})
}

// handOver serves a request for a Beside subtree with its handler, before
// any of Coalition's own checks, and passes every other one on.
func (h *Handler) handOver(c *gin.Context) {
	path := c.Request.URL.Path
	for _, t := range h.beside {
		if path == t.prefix || strings.HasPrefix(path, t.prefix+"/") {
			t.next.ServeHTTP(c.Writer, c.Request)
			c.Abort()
			return
		}
	}
	c.Next()
}

// notFoundBody is Coalition's reply to an unknown service or job.
const notFoundBody = "Web service not found."

// New returns a Coalition handler over a service layer of its own on
// store, with pings as its heartbeat record; zero limits take
// DefaultLimits'. A coordinator, whose dialects share one service, uses
// NewOn.
func New(store Store, pings *liveness.Tracker, limits Limits) *Handler {
	limits = limits.withDefaults()
	if pings == nil {
		pings = liveness.New(service.DefaultWorkerTTL)
	}
	farm := service.New(service.Config{Applier: service.Single(store), State: store.State, Pings: pings,
		LogCap: limits.MaxJobOutput, MaxProjectJobs: limits.MaxProjectJobs})
	return NewOn(farm, pings, limits)
}

// NewOn returns a Coalition handler over farm; zero limits take
// DefaultLimits'. The service enforces MaxJobOutput and MaxProjectJobs:
// give it the same limits.
func NewOn(farm Farm, pings Pings, limits Limits) *Handler {
	return &Handler{farm: farm, pings: pings, limits: limits.withDefaults(), now: time.Now}
}

func (limits Limits) withDefaults() Limits {
	if limits.MaxBody <= 0 {
		limits.MaxBody = DefaultLimits.MaxBody
	}
	if limits.MaxJobsPerRequest <= 0 {
		limits.MaxJobsPerRequest = DefaultLimits.MaxJobsPerRequest
	}
	if limits.MaxJobOutput <= 0 || limits.MaxJobOutput > raftstore.MaxLogBytes {
		limits.MaxJobOutput = raftstore.MaxLogBytes
	}
	return limits
}

// Register mounts the dialect. Every route needs a credential; the table
// below says which (routes), the handlers check each job's project.
func (h *Handler) Register(m auth.Mount) {
	m.Abort = Abort
	api := m
	if len(h.beside) > 0 {
		api.Router = m.Router.Group("", h.handOver)
	}
	api.Handle("ANY", "/api/*path", auth.PermAuthenticated, h.serveAPI)
	m.Handle("ANY", "/xmlrpc/*path", auth.PermAuthenticated, h.serveAPI)
	m.Handle("ANY", "/workers/*path", auth.PermAgent, h.serveWorkers)
}

// Abort answers an error. Coalition's own errors are plain text (its
// 404 is "Web service not found."), and so are refusals of access; bad
// input keeps Croft's JSON {"error": ...}, which Coalition clients show.
func Abort(c *gin.Context, err error) {
	switch st := apierr.Status(err); st {
	case http.StatusUnauthorized, http.StatusForbidden:
		if st == http.StatusUnauthorized {
			c.Header("WWW-Authenticate", `Bearer realm="croft"`)
		}
		c.Data(st, "text/plain; charset=utf-8", []byte(err.Error()+"\n"))
		c.Abort()
	default:
		apierr.Abort(c, err)
	}
}

// notFound answers as Coalition does for anything it does not serve.
func notFound(c *gin.Context) {
	c.Data(http.StatusNotFound, "text/html", []byte(notFoundBody))
}

// reply writes a 200 JSON result, the only success status Coalition knows.
func reply(c *gin.Context, v any) {
	c.JSON(http.StatusOK, v)
}

// jobAccess is what a route does to the job its path names.
type jobAccess int

const (
	noJobAccess jobAccess = iota
	readJob
	writeJob
)

// route is one Coalition service: its method and path (segments after
// /api/, ":id" a job id, ":filter" a distinct-value list), its rule, and
// what it needs of the job its path names.
type route struct {
	method string
	path   string
	perm   auth.Perm
	job    jobAccess
	serve  func(h *Handler, c *gin.Context, r *call) error
}

// call is one request as a route's handler sees it.
type call struct {
	p    *auth.Principal
	seg  []string
	id   int64         // the :id of the path
	job  raftstore.Job // that job, for routes with job access
	body []byte
}

// routes is the Coalition dialect's route table: every service and its
// rule. A service is reachable only through it (serveAPI).
var routes = []route{
	{http.MethodGet, "jobs", auth.PermRead, noJobAccess, (*Handler).rootJobs},
	{http.MethodPut, "jobs", auth.PermWrite, noJobAccess, (*Handler).createJob},
	{http.MethodPost, "jobs", auth.PermWrite, noJobAccess, (*Handler).editJobs},
	{http.MethodDelete, "jobs", auth.PermWrite, noJobAccess, (*Handler).deleteJobs},
	{http.MethodGet, "jobs/where", auth.PermRead, noJobAccess, (*Handler).whereJobs},
	{http.MethodGet, "jobs/count/where", auth.PermRead, noJobAccess, (*Handler).countWhere},
	{http.MethodGet, "jobs/:filter", auth.PermRead, noJobAccess, (*Handler).distinct},
	{http.MethodGet, "jobs/:id", auth.PermRead, readJob, (*Handler).getJob},
	{http.MethodGet, "jobs/:id/children", auth.PermRead, readJob, (*Handler).children},
	{http.MethodGet, "jobs/:id/dependencies", auth.PermRead, readJob, (*Handler).dependencies},
	{http.MethodPost, "jobs/:id/dependencies", auth.PermWrite, writeJob, (*Handler).setDependencies},
	{http.MethodGet, "jobs/:id/childrendependencies", auth.PermRead, readJob, (*Handler).childrenDependencies},
	{http.MethodGet, "jobs/:id/log", auth.PermRead, readJob, (*Handler).log},
	{http.MethodPost, "resetjobs", auth.PermWrite, noJobAccess, action(raftstore.ActionReset)},
	{http.MethodPost, "reseterrorjobs", auth.PermWrite, noJobAccess, action(raftstore.ActionResetError)},
	{http.MethodPost, "startjobs", auth.PermWrite, noJobAccess, action(raftstore.ActionStart)},
	{http.MethodPost, "pausejobs", auth.PermWrite, noJobAccess, action(raftstore.ActionPause)},
	{http.MethodGet, "workers", auth.PermRead, noJobAccess, (*Handler).workers},
	{http.MethodPost, "workers", auth.PermAdmin, noJobAccess, (*Handler).editWorkers},
	{http.MethodDelete, "workers", auth.PermAdmin, noJobAccess, (*Handler).deleteWorkers},
	{http.MethodPost, "startworkers", auth.PermAdmin, noJobAccess, workerAction(raftstore.ActionWorkerStart)},
	{http.MethodPost, "stopworkers", auth.PermAdmin, noJobAccess, workerAction(raftstore.ActionWorkerStop)},
	{http.MethodGet, "events", auth.PermRead, noJobAccess, (*Handler).events},
	{http.MethodGet, "affinities", auth.PermRead, noJobAccess, (*Handler).affinities},
	{http.MethodPost, "affinities", auth.PermAdmin, noJobAccess, (*Handler).setAffinities},
	{http.MethodGet, "addjob", auth.PermWrite, noJobAccess, (*Handler).addJob},
	{http.MethodPost, "addjob", auth.PermWrite, noJobAccess, (*Handler).addJob},
}

// Route describes one service of the route table, for tests and docs.
type Route struct {
	Method string
	// Path is relative to /api/ (and /xmlrpc/, /api/webfrontend/), with
	// ":id" for a job id and ":filter" for users, states, workers,
	// priorities or affinities.
	Path string
	Perm auth.Perm
	// JobWrite says the :id job's project must be writable, JobRead that
	// it must be readable.
	JobRead, JobWrite bool
}

// Routes returns the route table.
func Routes() []Route {
	out := make([]Route, 0, len(routes))
	for _, r := range routes {
		out = append(out, Route{Method: r.method, Path: r.path, Perm: r.perm, JobRead: r.job == readJob, JobWrite: r.job == writeJob})
	}
	return out
}

// match reports whether path segments seg fit the route's path, and the
// job id they name.
func (r *route) match(seg []string) (id int64, ok bool) {
	pat := strings.Split(r.path, "/")
	if len(pat) != len(seg) {
		return 0, false
	}
	for i, p := range pat {
		switch p {
		case ":id":
			v, err := strconv.ParseInt(seg[i], 10, 64)
			if err != nil || v < 0 {
				return 0, false
			}
			id = v
		case ":filter":
			if !isFilter(seg[i]) {
				return 0, false
			}
		default:
			if seg[i] != p {
				return 0, false
			}
		}
	}
	return id, true
}

// serveAPI dispatches /api, /xmlrpc and /api/webfrontend paths the way
// Coalition's Master.render does: by path segments and method.
func (h *Handler) serveAPI(c *gin.Context) {
	path := strings.Trim(c.Param("path"), "/")
	if rest, ok := strings.CutPrefix(path, "webfrontend"); ok {
		path = strings.Trim(rest, "/")
	}
	seg := strings.Split(path, "/")
	var rt *route
	r := &call{p: auth.From(c), seg: seg}
	for i := range routes {
		if id, ok := routes[i].match(seg); ok && routes[i].method == c.Request.Method {
			rt, r.id = &routes[i], id
			break
		}
	}
	if rt == nil {
		// Includes terminateworkers: Croft has no cloud mode, and
		// Coalition answers 404 outside cloud mode.
		notFound(c)
		return
	}
	if err := rt.perm.Check(r.p); err != nil {
		Abort(c, err)
		return
	}
	if rt.job != noJobAccess {
		j, ok := h.farm.State().Job(r.id)
		if !ok {
			notFound(c)
			return
		}
		if err := mayAccess(r.p, &j, rt.job == writeJob); err != nil {
			Abort(c, err)
			return
		}
		r.job = j
	}
	if m := c.Request.Method; m != http.MethodGet && m != http.MethodHead {
		body, err := apierr.ReadBody(c, h.limits.MaxBody)
		if err != nil {
			Abort(c, err)
			return
		}
		r.body = body
	}
	if err := rt.serve(h, c, r); err != nil {
		Abort(c, err)
	}
}

// mayAccess checks that principal p may read (or, with write, control) job.
func mayAccess(p *auth.Principal, j *raftstore.Job, write bool) error {
	if write && !p.CanWrite(j.Project) {
		return apierr.Forbidden("token %q may not control jobs of project %q", p.Name, j.Project)
	}
	if !p.CanRead(j.Project) {
		return apierr.Forbidden("token %q may not read project %q", p.Name, j.Project)
	}
	return nil
}

// mayWriteAll checks that p may control each of the jobs ids names that
// exist (the FSM answers for the others).
func (h *Handler) mayWriteAll(p *auth.Principal, ids []int64) error {
	if p.IsAdmin() {
		return nil
	}
	st := h.farm.State()
	for _, id := range ids {
		if j, ok := st.Job(id); ok && !p.CanWrite(j.Project) {
			return apierr.Forbidden("token %q may not control job %d of project %q", p.Name, id, j.Project)
		}
	}
	return nil
}

// stamp is the leader's clock, for reads that depend on the time (the
// service stamps commands).
func (h *Handler) stamp() int64 { return h.now().UnixNano() }

func (h *Handler) getJob(c *gin.Context, r *call) error {
	out := renderJob(&r.job, r.p.Redacted())
	deps := append([]int64{}, r.job.Dependencies...)
	out.Dependencies = &deps
	reply(c, out)
	return nil
}

func (h *Handler) rootJobs(c *gin.Context, r *call) error {
	return h.streamChildren(c, r, 0)
}

func (h *Handler) children(c *gin.Context, r *call) error {
	return h.streamChildren(c, r, r.id)
}

func (h *Handler) dependencies(c *gin.Context, r *call) error {
	deps, _ := h.farm.State().Dependencies(r.id)
	out := make([]any, 0, len(deps))
	for i := range deps {
		if r.p.CanRead(deps[i].Project) {
			out = append(out, renderJob(&deps[i], r.p.Redacted()))
		}
	}
	reply(c, out)
	return nil
}

func (h *Handler) setDependencies(c *gin.Context, r *call) error {
	ids, err := parseIDBody(r.body)
	if err != nil {
		return err
	}
	if err := checkIDs(ids, raftstore.MaxDependencies); err != nil {
		return err
	}
	if err := h.farm.SetDependencies(c, r.id, ids); err != nil {
		return err
	}
	reply(c, 1)
	return nil
}

func (h *Handler) childrenDependencies(c *gin.Context, r *call) error {
	type pair struct {
		ID         int64 `json:"id"`
		Dependency int64 `json:"dependency"`
	}
	st := h.farm.State()
	arr := startList(c)
	for after, more := int64(0), true; more; {
		var page []raftstore.Job
		page, after, more, _ = st.ChildrenAfter(r.id, after, raftstore.ScanLimit, nil)
		for _, k := range page {
			for _, d := range k.Dependencies {
				if arr.Add(pair{ID: k.ID, Dependency: d}) != nil {
					arr.Close(nil)
					return nil
				}
			}
		}
	}
	arr.Close(nil)
	return nil
}

// createJob serves PUT /api/jobs. Besides Coalition's attributes it takes
// two Croft extensions: "project" (the job's project; default the token's
// only one, else "default") and "children", a list of job objects (which
// may have children of their own) created under the new job in the same
// Raft entry, so a 10,000-frame job is one request and one commit. The
// reply is still the bare id of the top job.
func (h *Handler) createJob(c *gin.Context, r *call) error {
	// No Coalition client sends an empty create (a job has at least a
	// title or a command): an empty body is a forgotten curl -d, and
	// made a stray job (issue 12). {} still creates an empty job.
	if t := bytes.TrimSpace(r.body); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return bad("the body is empty: PUT /api/jobs takes the job's attributes as a JSON object, e.g. {\"title\":\"hi\",\"command\":\"echo hi\"}")
	}
	m, err := parseObject(r.body)
	if err != nil {
		return err
	}
	project, err := h.projectOf(r.p, m)
	if err != nil {
		return err
	}
	var specs []raftstore.JobSpec
	if err := flattenJob(m, 0, &specs, h.limits.MaxJobsPerRequest); err != nil {
		return err
	}
	specs[0].Project = project
	ids, err := h.farm.CreateJobs(c, specs)
	if err != nil {
		return err
	}
	reply(c, ids[0])
	return nil
}

// projectOf takes the "project" member out of a create's attributes and
// decides the new job's project: the one named, else its parent's, else
// the token's default. The principal must be able to write it.
func (h *Handler) projectOf(p *auth.Principal, m map[string]json.RawMessage) (string, error) {
	project := ""
	if raw, ok := m["project"]; ok {
		delete(m, "project")
		s, err := asString("project", raw)
		if err != nil {
			return "", err
		}
		project = s
	}
	if raw, ok := m["parent"]; ok && project == "" {
		if id, err := asID("parent", raw); err == nil && id != 0 {
			if j, ok := h.farm.State().Job(id); ok {
				project = j.Project
			}
		}
	}
	if project == "" {
		project = p.DefaultProject()
	}
	if err := raftstore.ValidProjectName(project); err != nil {
		return "", err
	}
	if !p.CanWrite(project) {
		return "", apierr.Forbidden("token %q may not submit jobs to project %q", p.Name, project)
	}
	return project, nil
}

// flattenJob appends the job described by m, then its children (depth
// first), to specs. parentRef is the 1-based index of its parent in specs,
// or 0 for a job placed by its own "parent" attribute. At most limit jobs.
func flattenJob(m map[string]json.RawMessage, parentRef int, specs *[]raftstore.JobSpec, limit int) error {
	kids, hasKids := m["children"]
	delete(m, "children")
	if parentRef != 0 {
		if _, ok := m["parent"]; ok {
			return bad("a job inside \"children\" takes its parent from there: drop \"parent\"")
		}
		if _, ok := m["project"]; ok {
			return bad("a job inside \"children\" is in its parent's project: drop \"project\"")
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
	if err := raftstore.CheckSpec(&spec); err != nil {
		return jobError(len(*specs), err)
	}
	spec.ParentRef = parentRef
	if len(*specs) >= limit {
		return tooMany(limit)
	}
	*specs = append(*specs, spec)
	if !hasKids {
		return nil
	}
	if spec.Command != "" {
		return bad("a job with children is a group: its command must be empty")
	}
	// Counted before it is decoded: a list far over the limit must not
	// cost the memory of decoding it.
	if n := countElements(kids, limit); len(*specs)+n > limit {
		return tooMany(limit)
	}
	// One pass over the list decodes every child's members.
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(kids, &list); err != nil {
		return childrenError(kids)
	}
	if len(*specs)+len(list) > limit {
		return tooMany(limit)
	}
	self := len(*specs)
	*specs = slices.Grow(*specs, len(list))
	for i, km := range list {
		if km == nil {
			return bad("children[%d]: a job object is expected", i)
		}
		if err := flattenJob(km, self, specs, limit); err != nil {
			return err
		}
	}
	return nil
}

// jobError names the job of a create that broke a limit (0: the top one).
func jobError(i int, err error) error {
	if i == 0 {
		return err
	}
	return wrapf(err, "job %d of the request", i+1)
}

func tooMany(limit int) error {
	return wrapf(raftstore.ErrTooLarge, "more than %d jobs in one request (the coordinator's --max-jobs-per-request)", limit)
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

// maxEdits bounds the jobs one edit, delete or action names.
const maxEdits = 100_000

func (h *Handler) editJobs(c *gin.Context, r *call) error {
	m, err := parseObject(r.body)
	if err != nil {
		return err
	}
	if len(m) > maxEdits {
		return wrapf(raftstore.ErrTooLarge, "%d jobs in one edit, the limit is %d", len(m), maxEdits)
	}
	var edits []raftstore.JobEditItem
	ids := make([]int64, 0, len(m))
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
		if err := raftstore.CheckPatch(&p); err != nil {
			return wrapf(err, "job %d", id)
		}
		edits = append(edits, raftstore.JobEditItem{ID: id, Patch: p})
		ids = append(ids, id)
	}
	if err := h.mayWriteAll(r.p, ids); err != nil {
		return err
	}
	for i := range edits {
		if st := edits[i].Patch.State; st != nil {
			n, err := fromCoalitionState(*st)
			if err != nil {
				return err
			}
			edits[i].Patch.State = &n
		}
	}
	sortEdits(edits)
	if err := h.farm.EditJobs(c, edits); err != nil {
		return err
	}
	reply(c, 1)
	return nil
}

// idList reads a body that lists job ids, bounded, that p may control.
func (h *Handler) idList(r *call) ([]int64, error) {
	ids, err := parseIDBody(r.body)
	if err != nil {
		return nil, err
	}
	if err := checkIDs(ids, maxEdits); err != nil {
		return nil, err
	}
	return ids, h.mayWriteAll(r.p, ids)
}

func checkIDs(ids []int64, limit int) error {
	if len(ids) > limit {
		return wrapf(raftstore.ErrTooLarge, "%d job ids, the limit is %d", len(ids), limit)
	}
	return nil
}

func (h *Handler) deleteJobs(c *gin.Context, r *call) error {
	ids, err := h.idList(r)
	if err != nil {
		return err
	}
	if err := h.farm.DeleteJobs(c, ids); err != nil {
		return err
	}
	reply(c, 1)
	return nil
}

func action(verb string) func(*Handler, *gin.Context, *call) error {
	return func(h *Handler, c *gin.Context, r *call) error {
		ids, err := h.idList(r)
		if err != nil {
			return err
		}
		if err := h.farm.ActOnJobs(c, verb, ids); err != nil {
			return err
		}
		reply(c, 1)
		return nil
	}
}
