package coalition

import (
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/raftstore"
)

// Workers, events, affinities and the web UI's query helpers.

func sortEdits(e []raftstore.JobEditItem) {
	sort.Slice(e, func(i, j int) bool { return e[i].ID < e[j].ID })
}

func (h *Handler) workers(c *gin.Context) error {
	ws := h.store.State().Workers()
	out := make([]client.Worker, 0, len(ws))
	for i := range ws {
		p, _ := h.pings.Get(ws[i].Name)
		out = append(out, renderWorker(&ws[i], p))
	}
	reply(c, out)
	return nil
}

func (h *Handler) editWorkers(c *gin.Context, body []byte) error {
	m, err := parseObject(body)
	if err != nil {
		return err
	}
	cmd := &raftstore.WorkerEdit{Now: h.stamp()}
	for name, raw := range m {
		attrs, err := parseObject(raw)
		if err != nil {
			return bad("worker %q: %v", name, err)
		}
		p, err := parseWorkerAttrs(name, attrs)
		if err != nil {
			return err
		}
		cmd.Edits = append(cmd.Edits, raftstore.WorkerEditItem{Name: name, Patch: p})
	}
	sort.Slice(cmd.Edits, func(i, j int) bool { return cmd.Edits[i].Name < cmd.Edits[j].Name })
	if len(cmd.Edits) > 0 {
		if _, err := h.store.Apply(c, cmd); err != nil {
			return err
		}
	}
	reply(c, 1)
	return nil
}

func (h *Handler) deleteWorkers(c *gin.Context, body []byte) error {
	names, err := parseNameBody(body)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		if _, err := h.store.Apply(c, &raftstore.WorkerDelete{Now: h.stamp(), Names: names}); err != nil {
			return err
		}
		for _, n := range names {
			h.pings.Forget(n)
		}
	}
	reply(c, 1)
	return nil
}

func (h *Handler) workerAction(c *gin.Context, action string, body []byte) error {
	names, err := parseNameBody(body)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		if _, err := h.store.Apply(c, &raftstore.WorkerAction{Now: h.stamp(), Action: action, Names: names}); err != nil {
			return err
		}
	}
	reply(c, 1)
	return nil
}

// queryInt reads an integer query parameter with a default.
func queryInt(c *gin.Context, name string, def int64) (int64, error) {
	s, ok := c.GetQuery(name)
	if !ok || s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return 0, apierr.Bad("%s: %q is not a number", name, s)
		}
		v = int64(f)
	}
	return v, nil
}

// events serves GET /api/events?job=&worker=&howlong=. As in Coalition,
// howlong defaults to -1, which matches nothing: callers pass it.
func (h *Handler) events(c *gin.Context) error {
	job, err := queryInt(c, "job", 0)
	if err != nil {
		return err
	}
	howlong, err := queryInt(c, "howlong", -1)
	if err != nil {
		return err
	}
	worker := c.Query("worker")
	cutoff := h.stamp() - howlong*nanosPerSecond
	evs := h.store.State().Events(func(e *raftstore.Event) bool {
		return e.Start > cutoff && (worker == "" || e.Worker == worker) && (job <= 0 || e.JobID == job)
	})
	out := make([]client.Event, 0, len(evs))
	for i := range evs {
		out = append(out, renderEvent(&evs[i]))
	}
	reply(c, out)
	return nil
}

func (h *Handler) affinities(c *gin.Context) error {
	out := make(map[string]string, raftstore.MaxAffinityID)
	for id, name := range h.store.State().Affinities() {
		out[strconv.Itoa(id)] = name
	}
	reply(c, out)
	return nil
}

func (h *Handler) setAffinities(c *gin.Context, body []byte) error {
	m, err := parseObject(body)
	if err != nil {
		return err
	}
	cmd := &raftstore.AffinitySet{Names: make(map[int]string, len(m))}
	for k, raw := range m {
		id, err := strconv.Atoi(strings.TrimSpace(k))
		if err != nil || id < 1 || id > raftstore.MaxAffinityID {
			return apierr.Bad("affinity id %q: ids are 1..%d", k, raftstore.MaxAffinityID)
		}
		name, err := asString("affinity "+k, raw)
		if err != nil {
			return err
		}
		cmd.Names[id] = name
	}
	if len(cmd.Names) > 0 {
		if _, err := h.store.Apply(c, cmd); err != nil {
			return err
		}
	}
	reply(c, 1)
	return nil
}

// filterColumns are the UI's distinct-value lists: /api/jobs/users/ etc.
var filterColumns = map[string]string{
	"users": "user", "states": "state", "workers": "worker", "priorities": "priority", "affinities": "affinity",
}

func isFilter(s string) bool { _, ok := filterColumns[s]; return ok }

// distinct serves /api/jobs/{users,states,workers,priorities,affinities}/:
// the distinct values of a column, as [{"user": "..."}, ...].
func (h *Handler) distinct(c *gin.Context, filter string) error {
	col := filterColumns[filter]
	seen := map[any]bool{}
	var vals []any
	for _, j := range renderJobs(h.store.State().Jobs(nil)) {
		v, _ := jobColumn(j)(col)
		if !seen[v] {
			seen[v] = true
			vals = append(vals, v)
		}
	}
	sort.Slice(vals, func(i, k int) bool { return lessAny(vals[i], vals[k]) })
	out := make([]map[string]any, 0, len(vals))
	for _, v := range vals {
		out = append(out, map[string]any{col: v})
	}
	reply(c, out)
	return nil
}

func lessAny(a, b any) bool {
	switch x := a.(type) {
	case int64:
		y, _ := b.(int64)
		return x < y
	case string:
		y, _ := b.(string)
		return x < y
	}
	return false
}

// where serves /api/jobs/where/?where_clause=&min=&max= (the jobs matching
// a SQL WHERE clause, rows min..max-1 in id order) and
// /api/jobs/count/where/?where_clause= (their number).
func (h *Handler) where(c *gin.Context, count bool) error {
	w, err := CompileWhere(c.Query("where_clause"))
	if err != nil {
		return apierr.Bad("where_clause: %v", err)
	}
	probe := jobColumn(client.Job{})
	for _, col := range w.Columns() {
		if _, ok := probe(col); !ok {
			return apierr.Bad("where_clause: unknown column %q", col)
		}
	}
	lo, err := queryInt(c, "min", 0)
	if err != nil {
		return err
	}
	hi, err := queryInt(c, "max", -1)
	if err != nil {
		return err
	}
	var out []client.Job
	for _, j := range renderJobs(h.store.State().Jobs(nil)) {
		ok, err := w.Match(jobColumn(j))
		if err != nil {
			return apierr.Bad("where_clause: %v", err)
		}
		if ok {
			out = append(out, j)
		}
	}
	if count {
		reply(c, len(out))
		return nil
	}
	lo = max(lo, 0)
	if hi < 0 || hi > int64(len(out)) {
		hi = int64(len(out))
	}
	if lo > hi {
		lo = hi
	}
	page := out[lo:hi]
	if page == nil {
		page = []client.Job{}
	}
	reply(c, page)
	return nil
}

// addJob serves /xmlrpc/addjob: query or form arguments, the new id as
// plain text, "-1" on failure (with a 4xx status and the reason in a header).
func (h *Handler) addJob(c *gin.Context, body []byte) {
	args := formArgs(c, body)
	fail := func(err error) {
		c.Header("X-Croft-Error", err.Error())
		c.Data(apierr.Status(err), "text/plain", []byte("-1"))
	}
	spec := raftstore.JobSpec{Timeout: defaultTimeout, Priority: raftstore.ClampPriority(defaultPriority), Retry: defaultRetry}
	intArg := func(name string, dst *int64) error {
		if s := args.Get(name); s != "" {
			v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return apierr.Bad("%s: %q is not an integer", name, s)
			}
			*dst = v
		}
		return nil
	}
	var prio, retry int64 = int64(spec.Priority), int64(spec.Retry)
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"parent", &spec.Parent}, {"timeout", &spec.Timeout}, {"priority", &prio}, {"retry", &retry}} {
		if err := intArg(f.name, f.dst); err != nil {
			fail(err)
			return
		}
	}
	spec.Priority, spec.Retry = raftstore.ClampPriority(int(max(min(prio, 1<<20), -1))), int(max(retry, 0))
	spec.Title = args.Get("title")
	spec.Command = args.Get("cmd")
	if spec.Command == "" {
		spec.Command = args.Get("command")
	}
	spec.Dir = args.Get("dir")
	spec.Environment = args.Get("env")
	spec.Affinity = args.Get("affinity")
	spec.URL = args.Get("url")
	spec.User = args.Get("user")
	spec.ProgressPattern = args.Get("localprogress")
	if spec.ProgressPattern != "" {
		if _, _, err := raftstore.ProgressRegexp(spec.ProgressPattern); err != nil {
			fail(apierr.Bad("localprogress: %v", err))
			return
		}
	}
	if s := strings.ToUpper(args.Get("state")); s == raftstore.StatePaused {
		spec.Paused = true
	}
	if s := args.Get("paused"); s != "" && s != "0" && !strings.EqualFold(s, "false") {
		spec.Paused = true
	}
	if s := args.Get("dependencies"); s != "" {
		ids, err := asIDList("dependencies", []byte(strconv.Quote(s)))
		if err != nil {
			fail(err)
			return
		}
		spec.Dependencies = ids
	}
	res, err := h.store.Apply(c, &raftstore.JobCreate{Now: h.stamp(), Jobs: []raftstore.JobSpec{spec}})
	if err != nil {
		fail(err)
		return
	}
	c.Data(http.StatusOK, "text/plain", []byte(strconv.FormatInt(res.([]int64)[0], 10)))
}
