package native

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/internal/farmtest"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// jobsFarm serves the job routes over a service layer on a real FSM, with
// projects a and b and a token per role.
type jobsFarm struct {
	t      *testing.T
	store  *fsmStore
	engine *gin.Engine
}

// jobsClock is the leader's clock the service stamps commands with.
var jobsClock = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// jobsLimit is the test handler's MaxJobsPerRequest.
const jobsLimit = 50

func newJobsFarm(t *testing.T) *jobsFarm {
	gin.SetMode(gin.TestMode)
	f := &jobsFarm{t: t, store: &fsmStore{farmtest.NewStore(t)}}
	f.ok(&raftstore.SetRelease{Release: raftstore.Release})
	for _, p := range []string{"a", "b"} {
		f.ok(&raftstore.ProjectCreate{Now: now, Name: p})
	}
	tokens := tokenMap{}
	for _, tok := range []raftstore.Token{
		{Name: "admin", Role: raftstore.RoleAdmin},
		{Name: "user-a", Role: raftstore.RoleUser, Projects: []string{"a"}},
		{Name: "read-a", Role: raftstore.RoleRead, Projects: []string{"a"}},
		{Name: "agent", Role: raftstore.RoleAgent, Projects: []string{"*"}, Workers: []string{"*"}},
	} {
		tokens[auth.Hash("secret-"+tok.Name)] = tok
	}
	f.ok(&raftstore.WorkerRegister{Now: now, Name: "w1"})
	svc := service.New(service.Config{Applier: service.Single(f.store), State: f.store.State,
		Clock: func() time.Time { return jobsClock }})
	e := gin.New()
	m := auth.Mount{Router: e, Auth: auth.New(auth.Config{}, func() auth.Tokens { return tokens }, nil), Abort: apierr.Abort, Table: &auth.Table{}}
	NewJobs(svc, JobLimits{MaxJobsPerRequest: jobsLimit}).Register(m)
	f.engine = e
	return f
}

func (f *jobsFarm) ok(cmd raftstore.Command) any {
	f.t.Helper()
	res, err := f.store.Apply(context.Background(), cmd)
	if err != nil {
		f.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

// send sends a request with a body reader as token.
func (f *jobsFarm) send(token, method, path string, body io.Reader) (int, string) {
	f.t.Helper()
	req := httptest.NewRequest(method, path, body)
	req.Header.Set("Authorization", "Bearer secret-"+token)
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func (f *jobsFarm) do(token, method, path, body string) (int, string) {
	f.t.Helper()
	return f.send(token, method, path, strings.NewReader(body))
}

// want sends a request and fails unless it answers code; a 2xx reply is
// decoded into out (if not nil).
func (f *jobsFarm) want(code int, token, method, path, body string, out any) {
	f.t.Helper()
	got, reply := f.do(token, method, path, body)
	if got != code {
		f.t.Fatalf("%s %s %.200s as %s: %d %s, want %d", method, path, body, token, got, reply, code)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(reply), out); err != nil {
			f.t.Fatalf("%s %s: %v in %s", method, path, err, reply)
		}
	}
}

// create creates jobs as token and returns their ids.
func (f *jobsFarm) create(token, body string) []int64 {
	f.t.Helper()
	var r CreateReply
	f.want(http.StatusCreated, token, http.MethodPost, PathJobs, body, &r)
	return r.IDs
}

func (f *jobsFarm) view(token string, id int64) JobView {
	f.t.Helper()
	var v JobView
	f.want(http.StatusOK, token, http.MethodGet, fmt.Sprintf("%s/%d", PathJobs, id), "", &v)
	return v
}

func (f *jobsFarm) list(token, query string) []int64 {
	f.t.Helper()
	var vs []JobView
	f.want(http.StatusOK, token, http.MethodGet, PathJobs+query, "", &vs)
	ids := []int64{}
	for _, v := range vs {
		ids = append(ids, v.ID)
	}
	return ids
}

// pick starts the next runnable job on w1 and returns its attempt.
func (f *jobsFarm) pick(want int64) *raftstore.Assignment {
	f.t.Helper()
	a, _ := f.ok(&raftstore.Pick{Now: now + 1e9, Worker: "w1"}).(*raftstore.Assignment)
	if a == nil || a.JobID != want {
		f.t.Fatalf("pick: %+v, want job %d", a, want)
	}
	return a
}

func TestJobViewFields(t *testing.T) {
	f := newJobsFarm(t)
	ids := f.create("user-a", `{"title":"frame 1","command":"render -f 1","dir":"/shots","env":{"A":"1","B":"two"},
		"priority":-5,"retry":0,"timeout_s":60,"user":"ann","url":"http://x/1","progress_pattern":"([0-9]+)%"}`)
	id := ids[0]
	v := f.view("user-a", id)
	created := jobsClock.Format(time.RFC3339Nano)
	if v.ID != id || v.Parent != 0 || v.Project != "a" || v.Title != "frame 1" || v.Command != "render -f 1" || v.Dir != "/shots" ||
		v.Env["A"] != "1" || v.Env["B"] != "two" || len(v.Env) != 2 || v.State != "waiting" || v.Paused || v.Priority != -5 ||
		v.Retry != 0 || v.TimeoutS != 60 || v.User != "ann" || v.URL != "http://x/1" || v.ProgressPattern != "([0-9]+)%" ||
		v.Progress != 0 || len(v.Dependencies) != 0 || v.IsGroup || v.Counters != (JobCounters{}) || v.Tries != 0 ||
		v.ExitCode != nil || v.Signal != nil || v.Reason != nil || v.Worker != "" ||
		v.Created == nil || *v.Created != created || v.Started != nil || v.Ended != nil ||
		v.Runs != fmt.Sprintf("/croft/v1/jobs/%d/runs", id) || v.Log != fmt.Sprintf("/croft/v1/jobs/%d/log", id) {
		t.Fatalf("new job's view %+v", v)
	}
	// A read-only token sees the environment's names, not its values.
	if r := f.view("read-a", id); r.Env["A"] != redactedValue || r.Env["B"] != redactedValue || r.Command != v.Command {
		t.Fatalf("read-only view %+v", r)
	}

	// Running: the try counts, no run has ended yet.
	a := f.pick(id)
	half := 0.5
	f.ok(&raftstore.Report{Now: now + 2e9, Worker: "w1", JobID: id, AttemptID: a.AttemptID, Progress: &half})
	if v = f.view("admin", id); v.State != "running" || v.Tries != 1 || v.Worker != "w1" || v.Progress != 0.5 ||
		v.ExitCode != nil || v.Signal != nil || v.Reason != nil || v.Started == nil || *v.Started != time.Unix(0, now+1e9).UTC().Format(time.RFC3339Nano) {
		t.Fatalf("running view %+v", v)
	}
	// Finished: progress 1 whatever was reported last, exit code 0.
	f.ok(&raftstore.Report{Now: now + 3e9, Worker: "w1", JobID: id, AttemptID: a.AttemptID, Done: true, ExitCode: 0})
	v = f.view("admin", id)
	if v.State != "finished" || v.Progress != 1 || v.ExitCode == nil || *v.ExitCode != 0 || v.Signal == nil || *v.Signal != 0 ||
		v.Reason == nil || *v.Reason != "" || v.Ended == nil || v.Tries != 1 || !v.Done {
		t.Fatalf("finished view %+v", v)
	}
	if runs, _, _ := f.store.State().JobRunsAfter(id, 0, 100); len(runs) != v.Tries {
		t.Fatalf("%d runs, tries %d", len(runs), v.Tries)
	}

	// A failed run (failed, yet runnable again: retry 2), then a second
	// try canceled while it runs.
	id2 := f.create("user-a", `{"title":"f2","command":"false","retry":2}`)[0]
	a = f.pick(id2)
	f.ok(&raftstore.Report{Now: now + 4e9, Worker: "w1", JobID: id2, AttemptID: a.AttemptID, Done: true, ExitCode: 137, Signal: 9})
	if v = f.view("admin", id2); v.State != "failed" || v.Tries != 1 || v.ExitCode == nil || *v.ExitCode != 137 || *v.Signal != 9 || *v.Reason != "" || v.Ended == nil || v.Done {
		t.Fatalf("requeued view %+v (a failed job with a retry left is not done)", v)
	}
	f.pick(id2)
	if v = f.view("admin", id2); v.State != "running" || v.Tries != 2 || v.ExitCode == nil || *v.ExitCode != 137 {
		t.Fatalf("second try's view %+v", v)
	}
	f.want(http.StatusOK, "user-a", http.MethodPost, fmt.Sprintf("%s/%d/cancel", PathJobs, id2), "", &v)
	if v.State != "canceled" || v.Tries != 2 || v.ExitCode != nil || v.Reason == nil || *v.Reason != "canceled" || v.Ended == nil {
		t.Fatalf("canceled view %+v", v)
	}
	if runs, _, _ := f.store.State().JobRunsAfter(id2, 0, 100); len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}

	// A group and its children in one request; a dependency on a job.
	g := f.create("user-a", fmt.Sprintf(`{"jobs":[{"title":"g","project":"a"},{"parent_ref":1,"command":"true"},
		{"parent_ref":1,"command":"false","dependencies":[%d]}]}`, id))
	if len(g) != 3 {
		t.Fatalf("ids %v", g)
	}
	v = f.view("admin", g[0])
	if !v.IsGroup || v.Counters != (JobCounters{Children: 2, Total: 2}) || v.Project != "a" {
		t.Fatalf("group view %+v", v)
	}
	if k := f.view("admin", g[2]); k.Parent != g[0] || !slices.Equal(k.Dependencies, []int64{id}) || k.Project != "a" {
		t.Fatalf("child view %+v", k)
	}
	f.want(http.StatusOK, "user-a", http.MethodPost, fmt.Sprintf("%s/%d/cancel", PathJobs, g[0]), "", &v)
	if v.State != "canceled" || v.Counters.Canceled != 2 || v.Counters.Failed != 0 || !v.Done {
		t.Fatalf("canceled group %+v", v)
	}
}

func TestJobListPagingAndFilters(t *testing.T) {
	f := newJobsFarm(t)
	a := f.create("user-a", `{"jobs":[{"title":"1","command":"x","user":"ann","affinity":"gpu, linux"},{"title":"2","command":"x","paused":true,"affinity":"gpux"},
		{"title":"g"},{"parent_ref":3,"command":"x","user":"ann"},{"parent_ref":3,"command":"x"}]}`)
	b := f.create("admin", `{"title":"in b","command":"x","project":"b"}`)
	all := append(slices.Clone(a), b...)
	for _, c := range []struct {
		token, query string
		want         []int64
	}{
		{"admin", "", all},
		{"read-a", "", a},
		{"admin", "?project=b", b},
		{"admin", "?project=a&limit=2", a[:2]},
		{"admin", "?offset=2&limit=2", a[2:4]},
		{"admin", "?offset=6", nil},
		{"read-a", "?state=paused", a[1:2]},
		{"read-a", "?state=waiting,paused", a}, // the group is waiting too
		{"read-a", "?state=paused,running", a[1:2]},
		{"read-a", "?user=ann", []int64{a[0], a[3]}},
		{"admin", "?parent=0", []int64{a[0], a[1], a[2], b[0]}},
		{"read-a", "?parent=0", a[:3]},
		{"read-a", fmt.Sprintf("?parent=%d&limit=1&offset=1", a[2]), a[4:5]},
		{"read-a", fmt.Sprintf("?parent=%d&user=ann", a[2]), a[3:4]},
		{"read-a", "?affinity=linux", a[:1]},
		{"read-a", "?affinity=gpu", a[:1]}, // a name, not a prefix: gpux is another
		{"read-a", "?affinity=gpux", a[1:2]},
	} {
		if got := f.list(c.token, c.query); !slices.Equal(got, append([]int64{}, c.want...)) {
			t.Errorf("%s as %s: %v, want %v", c.query, c.token, got, c.want)
		}
	}
	for _, c := range []struct {
		token, query string
		code         int
	}{
		{"read-a", "?project=b", http.StatusForbidden},
		{"read-a", fmt.Sprintf("?parent=%d", b[0]), http.StatusForbidden},
		{"agent", "", http.StatusForbidden},
		{"admin", "?parent=999", http.StatusNotFound},
		{"admin", "?state=PENDING", http.StatusBadRequest},
		{"admin", "?state=" + strings.Repeat("waiting,", 100), http.StatusRequestEntityTooLarge},
		{"admin", "?parent=-1", http.StatusBadRequest},
		{"admin", "?parent=1e3", http.StatusBadRequest},
		{"admin", "?limit=-1", http.StatusBadRequest},
		{"admin", "?offset=99999999999999999999", http.StatusBadRequest},
		{"admin", "?project=", http.StatusBadRequest},
		{"admin", "?user=" + strings.Repeat("u", raftstore.MaxNameBytes+1), http.StatusRequestEntityTooLarge},
		{"admin", "?affinity=" + strings.Repeat("u", raftstore.MaxNameBytes+1), http.StatusRequestEntityTooLarge},
		{"admin", "?affinity=a%0Ab", http.StatusBadRequest},
	} {
		if code, body := f.do(c.token, http.MethodGet, PathJobs+c.query, ""); code != c.code {
			t.Errorf("%s as %s: %d %s, want %d", c.query, c.token, code, body, c.code)
		}
	}
}

// TestJobListScansInPages lists more jobs than one scan page holds, with a
// filter that keeps few of them.
func TestJobListScansInPages(t *testing.T) {
	f := newJobsFarm(t)
	n := raftstore.ScanLimit*2 + 10
	specs := make([]raftstore.JobSpec, n)
	for i := range specs {
		specs[i] = raftstore.JobSpec{Title: "t", Command: "x", Project: "a"}
		if i%500 == 0 {
			specs[i].User = "rare"
		}
	}
	ids, _ := f.ok(&raftstore.JobCreate{Now: now, Jobs: specs}).([]int64)
	if got := f.list("read-a", "?user=rare"); !slices.Equal(got, []int64{ids[0], ids[500], ids[1000], ids[1500], ids[2000]}) {
		t.Fatalf("rare jobs %v", got)
	}
	if got := f.list("read-a", fmt.Sprintf("?offset=%d", n-3)); !slices.Equal(got, ids[n-3:]) {
		t.Fatalf("last page %v", got)
	}
}

func TestJobWritesAndPermissions(t *testing.T) {
	f := newJobsFarm(t)
	a := f.create("user-a", `{"title":"g"}`)[0] // project a: the token's only one
	kid := f.create("user-a", fmt.Sprintf(`{"parent":%d,"command":"true"}`, a))[0]
	b := f.create("admin", `{"title":"gb","project":"b"}`)[0]
	if v := f.view("admin", kid); v.Project != "a" || v.Parent != a {
		t.Fatalf("child %+v", v)
	}
	if v := f.view("admin", f.create("admin", `{"title":"d"}`)[0]); v.Project != raftstore.DefaultProject {
		t.Fatalf("admin's default project %+v", v)
	}
	path := func(id int64, rest string) string { return fmt.Sprintf("%s/%d%s", PathJobs, id, rest) }

	// Patch: fields change, the reply is the job as edited.
	var v JobView
	f.want(http.StatusOK, "user-a", http.MethodPatch, path(kid, ""), `{"title":"renamed","env":{"K":"v"},"priority":1000000,"retry":3,"timeout_s":5,"paused":true}`, &v)
	if v.Title != "renamed" || v.Env["K"] != "v" || v.Priority != 1_000_000 || v.Retry != 3 || v.TimeoutS != 5 || v.State != "paused" || v.Command != "true" {
		t.Fatalf("patched %+v", v)
	}
	f.want(http.StatusOK, "user-a", http.MethodPatch, path(kid, ""), `{}`, &v)
	v = JobView{} // Unmarshal merges into a map it finds
	f.want(http.StatusOK, "user-a", http.MethodPatch, path(kid, ""), `{"env":{}}`, &v)
	if len(v.Env) != 0 || v.Title != "renamed" {
		t.Fatalf("env cleared %+v", v)
	}
	// Actions.
	for _, c := range []struct{ action, state string }{
		{"start", "waiting"}, {"pause", "paused"}, {"start", "waiting"}, {"cancel", "canceled"}, {"retry", "waiting"},
		{"cancel", "canceled"}, {"reset", "waiting"},
	} {
		f.want(http.StatusOK, "user-a", http.MethodPost, path(kid, "/"+c.action), "", &v)
		if v.State != c.state {
			t.Fatalf("after %s: %s, want %s", c.action, v.State, c.state)
		}
	}

	for _, c := range []struct {
		token, method, path, body string
		code                      int
	}{
		{"read-a", http.MethodPost, PathJobs, `{"title":"t"}`, http.StatusForbidden},
		{"user-a", http.MethodPost, PathJobs, `{"title":"t","project":"b"}`, http.StatusForbidden},
		{"user-a", http.MethodPost, PathJobs, fmt.Sprintf(`{"parent":%d,"command":"x"}`, b), http.StatusForbidden},
		{"user-a", http.MethodPost, PathJobs, fmt.Sprintf(`{"command":"x","dependencies":[%d]}`, b), http.StatusForbidden},
		{"user-a", http.MethodPost, PathJobs, `{"parent":999,"command":"x"}`, http.StatusNotFound},
		{"admin", http.MethodPost, PathJobs, fmt.Sprintf(`{"parent":%d,"project":"b","command":"x"}`, a), http.StatusBadRequest},
		{"user-a", http.MethodPost, PathJobs, fmt.Sprintf(`{"parent":%d,"command":"x"}`, kid), http.StatusBadRequest}, // not a group
		{"read-a", http.MethodPatch, path(kid, ""), `{"title":"x"}`, http.StatusForbidden},
		{"user-a", http.MethodPatch, path(b, ""), `{"title":"x"}`, http.StatusForbidden},
		{"user-a", http.MethodPatch, path(999, ""), `{"title":"x"}`, http.StatusNotFound},
		{"user-a", http.MethodPatch, path(kid, ""), fmt.Sprintf(`{"parent":%d}`, b), http.StatusForbidden},
		{"user-a", http.MethodPatch, path(kid, ""), fmt.Sprintf(`{"dependencies":[%d]}`, b), http.StatusForbidden},
		{"user-a", http.MethodPatch, path(kid, ""), `{"state":"finished"}`, http.StatusBadRequest},
		{"user-a", http.MethodPatch, path(kid, ""), `{"title":"x"} {}`, http.StatusBadRequest},
		{"user-a", http.MethodPatch, path(kid, ""), `[]`, http.StatusBadRequest},
		{"user-a", http.MethodPatch, "/croft/v1/jobs/x", `{}`, http.StatusBadRequest},
		{"read-a", http.MethodPost, path(kid, "/cancel"), "", http.StatusForbidden},
		{"user-a", http.MethodPost, path(b, "/cancel"), "", http.StatusForbidden},
		{"user-a", http.MethodPost, path(999, "/cancel"), "", http.StatusNotFound},
		{"user-a", http.MethodPost, path(kid, "/reseterror"), "", http.StatusNotFound},
		{"user-a", http.MethodPost, "/croft/v1/jobs/0/cancel", "", http.StatusBadRequest},
		{"read-a", http.MethodDelete, path(kid, ""), "", http.StatusForbidden},
		{"user-a", http.MethodDelete, path(b, ""), "", http.StatusForbidden},
		{"user-a", http.MethodDelete, path(999, ""), "", http.StatusNotFound},
		{"read-a", http.MethodGet, path(b, ""), "", http.StatusForbidden},
		{"read-a", http.MethodGet, path(999, ""), "", http.StatusNotFound},
		{"read-a", http.MethodGet, "/croft/v1/jobs/-4", "", http.StatusBadRequest},
	} {
		if code, body := f.do(c.token, c.method, c.path, c.body); code != c.code {
			t.Errorf("%s %s %s as %s: %d %s, want %d", c.method, c.path, c.body, c.token, code, body, c.code)
		}
	}
	if v := f.view("admin", b); v.Title != "gb" || v.State != "finished" && v.State != "waiting" {
		t.Fatalf("project b's job changed: %+v", v)
	}
	// Delete takes the subtree.
	f.want(http.StatusNoContent, "user-a", http.MethodDelete, path(a, ""), "", nil)
	for _, id := range []int64{a, kid} {
		f.want(http.StatusNotFound, "admin", http.MethodGet, path(id, ""), "", nil)
	}
}

// endless is a reader of n bytes of '1', made as they are read.
type endless struct{ n int64 }

func (r *endless) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), r.n)
	for i := range p[:k] {
		p[i] = '1'
	}
	r.n -= k
	return int(k), nil
}

func TestJobInputBounds(t *testing.T) {
	f := newJobsFarm(t)
	g := f.create("user-a", `{"title":"g"}`)[0]
	// 100 MB, announced: refused before it is read.
	req := httptest.NewRequest(http.MethodPost, PathJobs, &endless{n: 100 << 20})
	req.ContentLength = 100 << 20
	req.Header.Set("Authorization", "Bearer secret-user-a")
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("100 MB announced: %d %s", rec.Code, rec.Body)
	}
	// 100 MB, chunked: cut at the limit.
	for _, method := range []string{http.MethodPost, http.MethodPatch} {
		p := PathJobs
		if method == http.MethodPatch {
			p = fmt.Sprintf("%s/%d", PathJobs, g)
		}
		body := io.MultiReader(strings.NewReader(`{"title":"`), &endless{n: 100 << 20}, strings.NewReader(`"}`))
		if code, out := f.send("user-a", method, p, body); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s 100 MB chunked: %d %.200s", method, code, out)
		}
	}
	deps := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("%d,", g), 1_000_000), ",")
	many := make([]string, jobsLimit+1)
	for i := range many {
		many[i] = `{"title":"t"}`
	}
	for _, c := range []struct {
		name, body string
		code       int
	}{
		{"a million dependencies", `{"title":"t","dependencies":[` + deps + `]}`, http.StatusRequestEntityTooLarge},
		{"too many jobs", `{"jobs":[` + strings.Join(many, ",") + `]}`, http.StatusRequestEntityTooLarge},
		{"a NUL byte", "{\"title\":\"a\x00b\"}", http.StatusBadRequest},
		{"an escaped NUL", `{"title":"a\u0000b"}`, http.StatusBadRequest},
		{"a NUL in a command", `{"command":"echo \u0000"}`, http.StatusBadRequest},
		{"a NUL in an env key", `{"command":"x","env":{"A\u0000":"1"}}`, http.StatusBadRequest},
		{"a NUL in an env value", `{"command":"x","env":{"A":"\u0000"}}`, http.StatusBadRequest},
		{"a huge priority", `{"title":"t","priority":1e30}`, http.StatusBadRequest},
		{"a priority past the range", `{"title":"t","priority":1000001}`, http.StatusBadRequest},
		{"a huge timeout", `{"title":"t","timeout_s":99999999999999999999}`, http.StatusBadRequest},
		{"a timeout past the range", `{"title":"t","timeout_s":2147483648}`, http.StatusBadRequest},
		{"a negative retry", `{"title":"t","retry":-1}`, http.StatusBadRequest},
		{"a fractional priority", `{"title":"t","priority":1.5}`, http.StatusBadRequest},
		{"a huge parent", `{"title":"t","parent":18446744073709551616}`, http.StatusBadRequest},
		{"a negative dependency", `{"title":"t","dependencies":[-1]}`, http.StatusBadRequest},
		{"a long title", `{"title":"` + strings.Repeat("t", raftstore.MaxTitleBytes+1) + `"}`, http.StatusRequestEntityTooLarge},
		{"an unknown field", `{"title":"t","state":"finished"}`, http.StatusBadRequest},
		{"an unknown field in a batch", `{"jobs":[{"title":"t","colour":1}]}`, http.StatusBadRequest},
		{"a batch with more", `{"jobs":[{"title":"t"}],"title":"x"}`, http.StatusBadRequest},
		{"an empty batch", `{"jobs":[]}`, http.StatusBadRequest},
		{"a batch that is no list", `{"jobs":{}}`, http.StatusBadRequest},
		{"a list", `[{"title":"t"}]`, http.StatusBadRequest},
		{"null", `null`, http.StatusBadRequest},
		{"no body", ``, http.StatusBadRequest},
		{"trailing data", `{"title":"t"}x`, http.StatusBadRequest},
		{"a wrong type", `{"title":5}`, http.StatusBadRequest},
		{"parent and parent_ref", fmt.Sprintf(`{"jobs":[{"title":"g"},{"parent":%d,"parent_ref":1}]}`, g), http.StatusBadRequest},
		{"a forward parent_ref", `{"jobs":[{"parent_ref":2},{"title":"g"}]}`, http.StatusBadRequest},
		{"a bad env key", `{"command":"x","env":{"A=B":"1"}}`, http.StatusBadRequest},
		{"an env value that is no string", `{"command":"x","env":{"A":1}}`, http.StatusBadRequest},
		{"a bad project", `{"title":"t","project":"no such/project"}`, http.StatusBadRequest},
	} {
		if code, out := f.do("user-a", http.MethodPost, PathJobs, c.body); code != c.code {
			t.Errorf("%s: %d %.300s, want %d", c.name, code, out, c.code)
		}
	}
	if n := f.store.State().JobCount(); n != 1 {
		t.Fatalf("%d jobs after refused creates, want 1", n)
	}
	for _, c := range []struct {
		name, body string
		code       int
	}{
		{"a million dependencies", `{"dependencies":[` + deps + `]}`, http.StatusRequestEntityTooLarge},
		{"a huge priority", `{"priority":-1e300}`, http.StatusBadRequest},
		{"a NUL", `{"title":"\u0000"}`, http.StatusBadRequest},
		{"a huge retry", `{"retry":10001}`, http.StatusBadRequest},
	} {
		if code, out := f.do("user-a", http.MethodPatch, fmt.Sprintf("%s/%d", PathJobs, g), c.body); code != c.code {
			t.Errorf("patch with %s: %d %.300s, want %d", c.name, code, out, c.code)
		}
	}
	if ids := f.create("user-a", `{"jobs":[`+strings.Join(many[1:], ",")+`]}`); len(ids) != jobsLimit {
		t.Fatalf("a batch at the limit: %d ids", len(ids))
	}
}
