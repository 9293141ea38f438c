package coalition

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/jsonstream"
	farmmodel "github.com/croftfarm/croft/farm"
	"github.com/croftfarm/croft/joblog"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/where"
)

// Lists, workers, events, affinities and the web UI's query helpers.
// Every list is streamed page by page (jsonstream): a reply of a million
// rows costs the memory of a page. Croft's ?offset=&limit= window any of
// them; without it a Coalition client gets the whole list, as upstream.

func sortEdits(e []raftstore.JobEditItem) {
	sort.Slice(e, func(i, j int) bool { return e[i].ID < e[j].ID })
}

// startList starts a streamed JSON array reply.
func startList(c *gin.Context) *jsonstream.Array { return jsonstream.Start(c) }

// readable is a cheap filter (it runs under the state's read lock) that
// keeps the jobs p may read.
func readable(p *auth.Principal) func(*raftstore.Job) bool {
	if all, _ := p.Projects(); all && p.CanReadSome() {
		return nil
	}
	return func(j *raftstore.Job) bool { return p.CanRead(j.Project) }
}

// streamChildren streams the readable children of job id (0: the root
// jobs) in id order, within the request's window.
func (h *Handler) streamChildren(c *gin.Context, r *call, id int64) error {
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		return err
	}
	st, keep, redact := h.farm.State(), readable(r.p), r.p.Redacted()
	after := int64(0)
	jsonstream.Pages(c, win, func() ([]raftstore.Job, bool) {
		page, next, more, _ := st.ChildrenAfter(id, after, raftstore.ScanLimit, keep)
		after = next
		return page, more
	}, func(j *raftstore.Job) any { return renderJob(j, redact) })
	return nil
}

// log serves a job's log as a JSON string: the lines of every stream
// concatenated, streamed page by page from the coordinator's log store,
// never the whole log in memory.
func (h *Handler) log(c *gin.Context, r *call) error {
	st := h.farm.State()
	if err := st.LogErr(); err != nil {
		return fmt.Errorf("%w: %v", apierr.ErrUnavailable, err)
	}
	c.Header("Content-Type", "application/json; charset=utf-8")
	c.Status(http.StatusOK)
	w := c.Writer
	if _, err := w.Write([]byte{'"'}); err != nil {
		return nil
	}
	const chunk = 32 << 10
	var text []byte // held back until a character boundary
	flush := func(all bool) {
		for len(text) >= chunk || (all && len(text) > 0) {
			n := min(chunk, len(text))
			// Cut at a character boundary, so a character split in two
			// is not turned into two replacement characters.
			for n < len(text) && n > 0 && !utf8.RuneStart(text[n]) {
				n--
			}
			if n == 0 {
				n = min(chunk, len(text))
			}
			b, _ := json.Marshal(string(text[:n])) // never fails on a string
			if _, err := w.Write(b[1 : len(b)-1]); err != nil || c.Request.Context().Err() != nil {
				panic(http.ErrAbortHandler) // the client went away mid-log
			}
			text = append(text[:0], text[n:]...)
		}
	}
	for from := int64(1); ; {
		page, next, err := st.LogLines(r.id, joblog.Page{From: from, MaxLines: 4096, MaxBytes: 1 << 20})
		if err != nil {
			panic(http.ErrAbortHandler) // the store failed or was replaced mid-log
		}
		if len(page) == 0 {
			break
		}
		for _, l := range page {
			text = append(text, l.Text...)
			flush(false)
		}
		from = next.Line
	}
	flush(true)
	_, _ = w.Write([]byte{'"'})
	return nil
}

func (h *Handler) workers(c *gin.Context, r *call) error {
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		return err
	}
	st, after := h.farm.State(), ""
	jsonstream.Pages(c, win, func() ([]raftstore.Worker, bool) {
		page, next, more := st.WorkersAfter(after, raftstore.ScanLimit)
		after = next
		return page, more
	}, func(w *raftstore.Worker) any {
		p, _ := h.pings.Get(w.Name)
		return renderWorker(w, p)
	})
	return nil
}

// maxWorkerEdits bounds the workers one admin request names.
const maxWorkerEdits = 10_000

func (h *Handler) editWorkers(c *gin.Context, r *call) error {
	m, err := parseObject(r.body)
	if err != nil {
		return err
	}
	if len(m) > maxWorkerEdits {
		return wrapf(raftstore.ErrTooLarge, "%d workers in one edit, the limit is %d", len(m), maxWorkerEdits)
	}
	var edits []raftstore.WorkerEditItem
	for name, raw := range m {
		attrs, err := parseObject(raw)
		if err != nil {
			return bad("worker %q: %v", name, err)
		}
		p, err := parseWorkerAttrs(name, attrs)
		if err != nil {
			return err
		}
		edits = append(edits, raftstore.WorkerEditItem{Name: name, Patch: p})
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i].Name < edits[j].Name })
	if err := h.farm.EditWorkers(c, edits); err != nil {
		return err
	}
	reply(c, 1)
	return nil
}

// nameList reads a body that lists worker names, bounded.
func nameList(body []byte) ([]string, error) {
	names, err := parseNameBody(body)
	if err != nil {
		return nil, err
	}
	if len(names) > maxWorkerEdits {
		return nil, wrapf(raftstore.ErrTooLarge, "%d worker names, the limit is %d", len(names), maxWorkerEdits)
	}
	return names, nil
}

func (h *Handler) deleteWorkers(c *gin.Context, r *call) error {
	names, err := nameList(r.body)
	if err != nil {
		return err
	}
	if err := h.farm.DeleteWorkers(c, names); err != nil {
		return err
	}
	reply(c, 1)
	return nil
}

func workerAction(verb string) func(*Handler, *gin.Context, *call) error {
	return func(h *Handler, c *gin.Context, r *call) error {
		names, err := nameList(r.body)
		if err != nil {
			return err
		}
		if err := h.farm.ActOnWorkers(c, verb, names); err != nil {
			return err
		}
		reply(c, 1)
		return nil
	}
}

// queryInt reads an integer query parameter with a default, within
// ±maxQueryInt (so products with it cannot overflow).
func queryInt(c *gin.Context, name string, def int64) (int64, error) {
	s, ok := c.GetQuery(name)
	if !ok || s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != f {
			return 0, apierr.Bad("%s: %q is not a number", name, s)
		}
		f = max(min(f, maxQueryInt), -maxQueryInt)
		v = int64(f)
	}
	return max(min(v, maxQueryInt), -maxQueryInt), nil
}

// maxQueryInt bounds integer query parameters: about 292 years in
// seconds, so a number of seconds times 1e9 still fits an int64.
const maxQueryInt = 1 << 33

// events serves GET /api/events?job=&worker=&howlong=. As in Coalition,
// howlong defaults to -1, which matches nothing: callers pass it.
func (h *Handler) events(c *gin.Context, r *call) error {
	job, err := queryInt(c, "job", 0)
	if err != nil {
		return err
	}
	howlong, err := queryInt(c, "howlong", -1)
	if err != nil {
		return err
	}
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		return err
	}
	worker := c.Query("worker")
	cutoff := h.stamp() - howlong*nanosPerSecond
	p := r.p
	keep := func(e *raftstore.Run) bool {
		return e.Start > cutoff && (worker == "" || e.Worker == worker) && (job <= 0 || e.JobID == job) && p.CanRead(e.Project)
	}
	st, after := h.farm.State(), int64(0)
	jsonstream.Pages(c, win, func() ([]raftstore.Run, bool) {
		page, next, more := st.RunsAfter(after, raftstore.ScanLimit, keep)
		after = next
		return page, more
	}, func(e *raftstore.Run) any { return renderEvent(e) })
	return nil
}

func (h *Handler) affinities(c *gin.Context, r *call) error {
	out := make(map[string]string, raftstore.MaxAffinityID)
	for id, name := range h.farm.State().Affinities() {
		out[strconv.Itoa(id)] = name
	}
	reply(c, out)
	return nil
}

// setAffinities names affinity ids. Coalition's own client sends ids
// 1..64 and upstream ignores an id without a row: ids outside 1..63 are
// ignored here too.
func (h *Handler) setAffinities(c *gin.Context, r *call) error {
	m, err := parseObject(r.body)
	if err != nil {
		return err
	}
	names := make(map[int]string, len(m))
	for k, raw := range m {
		id, err := strconv.Atoi(strings.TrimSpace(k))
		if err != nil {
			return apierr.Bad("affinity id %q: ids are 1..%d", k, raftstore.MaxAffinityID)
		}
		name, err := asString("affinity "+k, raw)
		if err != nil {
			return err
		}
		if id < 1 || id > raftstore.MaxAffinityID {
			continue
		}
		if len(name) > raftstore.MaxAffinityName {
			return wrapf(raftstore.ErrTooLarge, "affinity %d: the name is %d bytes, the limit is %d", id, len(name), raftstore.MaxAffinityName)
		}
		if strings.IndexByte(name, 0) >= 0 {
			return bad("affinity %d: the name contains a NUL byte", id)
		}
		names[id] = name
	}
	if err := h.farm.NameAffinities(c, names); err != nil {
		return err
	}
	reply(c, 1)
	return nil
}

// filterColumns are the UI's distinct-value lists: /api/jobs/users/ etc.
var filterColumns = map[string]string{
	"users": "user", "states": "state", "workers": "worker", "priorities": "priority", "affinities": "affinity",
}

func isFilter(s string) bool { _, ok := filterColumns[s]; return ok }

// maxDistinct bounds a distinct-value list: it is meant for a drop-down.
const maxDistinct = 10_000

// distinct serves /api/jobs/{users,states,workers,priorities,affinities}/:
// the distinct values of a column over the readable jobs, as
// [{"user": "..."}, ...].
func (h *Handler) distinct(c *gin.Context, r *call) error {
	col := filterColumns[r.seg[1]]
	st, keep := h.farm.State(), readable(r.p)
	seen := map[any]bool{}
	var vals []any
	for after, more := int64(0), true; more; {
		var page []raftstore.Job
		page, after, more = st.JobsAfter(after, raftstore.ScanLimit, keep)
		for k := range page {
			v, _ := jobColumn(renderJob(&page[k], false))(col)
			if !seen[v] {
				if len(vals) >= maxDistinct {
					return wrapf(raftstore.ErrTooLarge, "more than %d distinct %s", maxDistinct, r.seg[1])
				}
				seen[v] = true
				vals = append(vals, v)
			}
		}
		if err := c.Request.Context().Err(); err != nil {
			return err
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

// compileWhere compiles the request's where_clause and checks its columns.
func compileWhere(c *gin.Context) (*where.Clause, error) {
	w, err := where.Compile(c.Query("where_clause"))
	if err != nil {
		return nil, apierr.Bad("where_clause: %v", err)
	}
	if col, unknown := jobColumns.Unknown(w); unknown {
		return nil, apierr.Bad("where_clause: unknown column %q", col)
	}
	return w, nil
}

// whereError maps an evaluation error to the edge's sentinels: a value
// built too large is a 413; a clause that needs more work than a query may
// spend, or is malformed, a 400 (the same query would fail again: the
// client narrows it); a client that went away, or a deadline, as is.
func whereError(err error) error {
	switch {
	case errors.Is(err, where.ErrTooLarge):
		return fmt.Errorf("%w: where_clause: %v", raftstore.ErrTooLarge, err)
	case errors.Is(err, where.ErrBudget), errors.Is(err, where.ErrBadClause):
		return apierr.Bad("where_clause: %v", err)
	}
	return err
}

// scanWhere calls match for every readable job the clause keeps, in id
// order, until it returns false. The clause is evaluated outside the
// state's lock, a page at a time; a read token's rows are redacted before
// the clause sees them (it could otherwise probe environment values).
func (h *Handler) scanWhere(c *gin.Context, r *call, w *where.Clause, match func(client.Job) bool) error {
	st, keep, redact := h.farm.State(), readable(r.p), r.p.Redacted()
	// One budget for the whole query: its steps over every row, and the
	// request's context (a client that leaves stops the evaluation).
	budget := where.NewBudget(c.Request.Context(), where.DefaultSteps)
	for after, more := int64(0), true; more; {
		var page []raftstore.Job
		page, after, more = st.JobsAfter(after, raftstore.ScanLimit, keep)
		for k := range page {
			row := renderJob(&page[k], redact)
			ok, err := w.MatchBudget(jobColumn(row), budget)
			if err != nil {
				return whereError(err)
			}
			if ok && !match(row) {
				return nil
			}
		}
		if err := c.Request.Context().Err(); err != nil {
			return err
		}
	}
	return nil
}

// whereJobs serves /api/jobs/where/?where_clause=&min=&max=: the jobs
// matching a SQL WHERE clause, rows min..max-1 in id order (and Croft's
// offset/limit window over those).
func (h *Handler) whereJobs(c *gin.Context, r *call) error {
	w, err := compileWhere(c)
	if err != nil {
		return err
	}
	lo, err := queryInt(c, "min", 0)
	if err != nil {
		return err
	}
	hi, err := queryInt(c, "max", -1)
	if err != nil {
		return err
	}
	win := jsonstream.Paging{Offset: max(lo, 0), Limit: -1}
	if hi >= 0 {
		win.Limit = max(hi-win.Offset, 0)
	}
	// The clause is evaluated over every job before anything is sent, so
	// that an error (a value too large, the budget spent) is a status, not
	// a reply cut short; only the ids of the window are kept (8 bytes a
	// match), then their rows are streamed.
	var ids []int64
	var i int64
	err = h.scanWhere(c, r, w, func(row client.Job) bool {
		in, next := win.Take(i)
		i++
		if in {
			ids = append(ids, row.ID)
		}
		return next
	})
	if err != nil {
		return err
	}
	st, redact := h.farm.State(), r.p.Redacted()
	arr := startList(c)
	for _, id := range ids {
		if j, ok := st.Job(id); ok && arr.Add(renderJob(&j, redact)) != nil {
			break
		}
	}
	arr.Close(nil)
	return nil
}

// countWhere serves /api/jobs/count/where/?where_clause=: the number of
// readable jobs matching.
func (h *Handler) countWhere(c *gin.Context, r *call) error {
	w, err := compileWhere(c)
	if err != nil {
		return err
	}
	n := 0
	if err := h.scanWhere(c, r, w, func(client.Job) bool { n++; return true }); err != nil {
		return err
	}
	reply(c, n)
	return nil
}

// addJob serves /xmlrpc/addjob: query or form arguments, the new id as
// plain text, "-1" on failure (with a 4xx status and the reason in a header).
func (h *Handler) addJob(c *gin.Context, r *call) error {
	args := formArgs(c, r.body)
	fail := func(err error) error {
		c.Header("X-Croft-Error", err.Error())
		c.Data(apierr.Status(err), "text/plain", []byte("-1"))
		return nil
	}
	spec := raftstore.JobSpec{Timeout: defaultTimeout, Priority: ClampPriority(defaultPriority), Retry: defaultRetry}
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
			return fail(err)
		}
	}
	spec.Priority, spec.Retry = ClampPriority(int(max(min(prio, 1<<20), -1))), int(max(min(retry, 1<<31), 0))
	spec.Title = args.Get("title")
	spec.Command = args.Get("cmd")
	if spec.Command == "" {
		spec.Command = args.Get("command")
	}
	spec.Dir = args.Get("dir")
	spec.Environment = args.Get("env")
	spec.Env = fromCoalitionEnv(spec.Environment)
	spec.Affinity = args.Get("affinity")
	spec.URL = args.Get("url")
	spec.User = args.Get("user")
	spec.ProgressPattern = args.Get("localprogress")
	if spec.ProgressPattern != "" {
		if _, _, err := farmmodel.ProgressRegexp(spec.ProgressPattern); err != nil {
			return fail(apierr.Bad("localprogress: %v", err))
		}
	}
	if s := strings.ToUpper(args.Get("state")); s == "PAUSED" {
		spec.Paused = true
	}
	if s := args.Get("paused"); s != "" && s != "0" && !strings.EqualFold(s, "false") {
		spec.Paused = true
	}
	if s := args.Get("dependencies"); s != "" {
		ids, err := asIDList("dependencies", []byte(strconv.Quote(s)))
		if err != nil {
			return fail(err)
		}
		spec.Dependencies = ids
	}
	m := map[string]json.RawMessage{}
	if s := args.Get("project"); s != "" {
		m["project"], _ = json.Marshal(s)
	}
	if spec.Parent != 0 {
		m["parent"] = json.RawMessage(strconv.FormatInt(spec.Parent, 10))
	}
	project, err := h.projectOf(r.p, m)
	if err != nil {
		return fail(err)
	}
	spec.Project = project
	if err := raftstore.CheckSpec(&spec); err != nil {
		return fail(err)
	}
	ids, err := h.farm.CreateJobs(c, []raftstore.JobSpec{spec})
	if err != nil {
		return fail(err)
	}
	c.Data(http.StatusOK, "text/plain", []byte(strconv.FormatInt(ids[0], 10)))
	return nil
}
