package jupyter

import (
	"context"
	"encoding/json"
	"github.com/croftfarm/croft/api/ids"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/coalition"
	"github.com/croftfarm/croft/internal/farmtest"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// fsmStore applies commands through a real FSM, as the leader would.
type fsmStore struct{ *farmtest.Store }

type tokenMap = farmtest.Tokens

const now = farmtest.Now

// farm is a state with projects a and b, host h-a (sh, python3) serving
// a, tokens of each kind, and Coalition's /api with /api/sessions handed
// to the dialect, as a coordinator mounts them.
type farm struct {
	t      *testing.T
	store  *fsmStore
	svc    *service.Service
	engine *gin.Engine
}

func newFarm(t *testing.T) *farm {
	gin.SetMode(gin.TestMode)
	f := &farm{t: t, store: &fsmStore{farmtest.NewStore(t)}}
	f.store.Projects(t, "a", "b")
	f.ok(&raftstore.WorkerRegister{Now: now, Name: "h-a", Projects: []string{"a"}, Host: &raftstore.HostInfo{Name: "h-a", Slots: 1, CPUs: 8,
		TotalMemory: 1000, Interpreters: []raftstore.HostInterpreter{{Name: "sh", Path: "/bin/sh"}, {Name: "python3", Path: "/usr/bin/python3"}}}})
	tokens := farmtest.TokensOf(farmtest.Farm4...)
	f.svc = service.New(service.Config{Applier: service.Single(f.store), State: f.store.State})
	a := auth.New(auth.Config{}, func() auth.Tokens { return tokens }, nil)
	inner := gin.New()
	New(f.store, f.svc).Register(auth.Mount{Router: inner, Auth: a, Table: &auth.Table{}})
	coal := coalition.New(f.store, nil, coalition.Limits{})
	coal.Beside(Prefix, inner)
	f.engine = gin.New()
	coal.Register(auth.Mount{Router: f.engine, Auth: a, Abort: apierr.Abort, Table: &auth.Table{}})
	return f
}

func (f *farm) ok(cmd raftstore.Command) any {
	f.t.Helper()
	res, err := f.store.Apply(context.Background(), cmd)
	if err != nil {
		f.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

// reply is one answer.
type reply struct {
	code   int
	body   string
	header http.Header
}

// do sends a request with Jupyter's "Authorization: token T" ("" for no
// token).
func (f *farm) do(token, method, path, body string) reply {
	f.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "token secret-"+token)
	}
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	return reply{rec.Code, rec.Body.String(), rec.Header()}
}

// create posts body as user-a and wants 201, a Location and a session.
func (f *farm) create(body string) Session {
	f.t.Helper()
	r := f.do("user-a", http.MethodPost, Prefix, body)
	var x Session
	if r.code != http.StatusCreated || json.Unmarshal([]byte(r.body), &x) != nil {
		f.t.Fatalf("create %s: %d %s", body, r.code, r.body)
	}
	if loc := r.header.Get("Location"); loc != Prefix+"/"+x.ID {
		f.t.Fatalf("create %s: Location %q for %s", body, loc, x.ID)
	}
	checkModel(f.t, r.body)
	return x
}

var (
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	isoZRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)
)

// checkModel checks §3.2's field rules on one session's JSON: a dashed
// UUID, every field present, a kernel with a non-empty id and name, an
// ISO-8601 Z last_activity, a known execution state and connections.
func checkModel(t *testing.T, body string) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("model %s: %v", body, err)
	}
	for _, k := range []string{"id", "path", "name", "type", "kernel"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("model %s lacks %q", body, k)
		}
	}
	var id string
	if json.Unmarshal(m["id"], &id) != nil || !uuidRE.MatchString(id) {
		t.Fatalf("model id %s", m["id"])
	}
	var k struct {
		ID, Name, LastActivity, ExecutionState *string
		Connections                            *int
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(m["kernel"], &raw); err != nil {
		t.Fatalf("kernel %s: %v", m["kernel"], err)
	}
	for field, dst := range map[string]any{"id": &k.ID, "name": &k.Name, "last_activity": &k.LastActivity, "execution_state": &k.ExecutionState, "connections": &k.Connections} {
		if json.Unmarshal(raw[field], dst) != nil {
			t.Fatalf("kernel %s: %s", m["kernel"], field)
		}
	}
	switch {
	case k.ID == nil || *k.ID == "" || k.Name == nil || *k.Name == "":
		t.Fatalf("kernel %s: id and name must be set", m["kernel"])
	case k.LastActivity == nil || !isoZRE.MatchString(*k.LastActivity):
		t.Fatalf("kernel %s: last_activity is not ISO-8601 Z", m["kernel"])
	case k.ExecutionState == nil || *k.ExecutionState != "idle" && *k.ExecutionState != "busy" && *k.ExecutionState != "dead":
		t.Fatalf("kernel %s: execution_state", m["kernel"])
	case k.Connections == nil || *k.Connections != 0:
		t.Fatalf("kernel %s: connections", m["kernel"])
	}
}

func TestJupyterCreateOrReturn(t *testing.T) {
	f := newFarm(t)
	x := f.create(`{"path":"work/a.ipynb","name":"a.ipynb","type":"notebook","kernel":{"name":"python3"}}`)
	if x.Path != "work/a.ipynb" || x.Name != "a.ipynb" || x.Type != "notebook" || x.Kernel.Name != "python3" ||
		x.Kernel.ExecutionState != "idle" || x.Notebook == nil || x.Notebook.Path != "work/a.ipynb" {
		t.Fatalf("created %+v", x)
	}
	if got, _ := f.store.State().Session(strings.ReplaceAll(x.ID, "-", "")); got.Host != "h-a" || got.Interpreter != "python3" || got.Project != "a" {
		t.Fatalf("core session %+v", got)
	}
	// The same path: the same session (201 again), whatever the name.
	if y := f.create(`{"path":"work/a.ipynb","name":"other","type":"notebook"}`); y.ID != x.ID {
		t.Fatalf("same path: %s, want %s", y.ID, x.ID)
	}
	// No path: the same name.
	if y := f.create(`{"name":"a.ipynb"}`); y.ID != x.ID {
		t.Fatalf("same name: %s, want %s", y.ID, x.ID)
	}
	// Another path: a new session, with the default kernel.
	y := f.create(`{"path":"b.py","type":"file"}`)
	if y.ID == x.ID || y.Kernel.Name != DefaultKernel || y.Notebook != nil {
		t.Fatalf("another path: %+v", y)
	}
	// The legacy body and no body at all create too.
	if z := f.create(`{"notebook":{"path":"old.ipynb"}}`); z.Path != "old.ipynb" || z.Type != "notebook" {
		t.Fatalf("legacy body: %+v", z)
	}
	if z := f.create(""); z.ID == x.ID || z.ID == y.ID {
		t.Fatalf("no body: %+v", z)
	}
	// A closed session is not returned: its kernel is gone.
	if err := f.svc.CloseSession(context.Background(), strings.ReplaceAll(y.ID, "-", "")); err != nil {
		t.Fatal(err)
	}
	if z := f.create(`{"path":"b.py"}`); z.ID == y.ID {
		t.Fatalf("closed session returned: %+v", z)
	}
	r := f.do("read-a", http.MethodGet, Prefix, "")
	var list []json.RawMessage
	if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &list) != nil || len(list) != 5 {
		t.Fatalf("list: %d %s", r.code, r.body)
	}
	for _, m := range list {
		checkModel(t, string(m))
	}
	// Another project's token sees none of them.
	if r := f.do("user-b", http.MethodGet, Prefix, ""); r.code != http.StatusOK || r.body != "[]" {
		t.Fatalf("list as user-b: %d %s", r.code, r.body)
	}
}

func TestJupyterUnknownKernel(t *testing.T) {
	f := newFarm(t)
	r := f.do("user-a", http.MethodPost, Prefix, `{"path":"x","kernel":{"name":"julia"}}`)
	want := `{"message":"The 'julia' kernel is not available. Please pick another suitable kernel instead, or install that kernel.","short_message":"julia not found"}`
	if r.code != http.StatusNotImplemented || r.body != want {
		t.Fatalf("unknown kernel: %d %s", r.code, r.body)
	}
	// The only host with sh serves project a: for project b there is no
	// such kernel (501, not the 400 of a failed open).
	if r := f.do("user-b", http.MethodPost, Prefix, `{"path":"x","kernel":{"name":"sh"}}`); r.code != http.StatusNotImplemented {
		t.Fatalf("a kernel no host offers to the project: %d %s", r.code, r.body)
	}
	// A configured interpreter is available through the one it uses.
	f.ok(&raftstore.InterpreterSet{Now: now, Name: "py", Template: "{{.Path}} -c {{.Code}}", Uses: "python3"})
	if x := f.create(`{"path":"x","kernel":{"name":"py"}}`); x.Kernel.Name != "py" {
		t.Fatalf("configured kernel: %+v", x)
	}
	if r := f.do("user-a", http.MethodPost, Prefix, `{"path":"y","kernel":{"id":"00000000-0000-0000-0000-000000000000"}}`); r.code != http.StatusBadRequest {
		t.Fatalf("attach to a kernel: %d %s", r.code, r.body)
	}
}

func TestJupyterGetPatchDelete(t *testing.T) {
	f := newFarm(t)
	x := f.create(`{"path":"p","name":"n","type":"notebook"}`)
	path := Prefix + "/" + x.ID
	if r := f.do("read-a", http.MethodGet, path, ""); r.code != http.StatusOK {
		t.Fatalf("get: %d %s", r.code, r.body)
	} else {
		checkModel(t, r.body)
	}
	r := f.do("user-a", http.MethodPatch, path, `{"name":"renamed"}`)
	var y Session
	if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &y) != nil || y.Name != "renamed" || y.Path != "p" || y.Type != "notebook" {
		t.Fatalf("rename: %d %s", r.code, r.body)
	}
	y = Session{}
	if r := f.do("user-a", http.MethodPatch, path, `{"path":"q","type":"file","kernel":{"name":"python3"}}`); r.code != http.StatusOK ||
		json.Unmarshal([]byte(r.body), &y) != nil || y.Path != "q" || y.Type != "file" || y.Name != "renamed" || y.Notebook != nil {
		t.Fatalf("move: %d %s", r.code, r.body)
	}
	if r := f.do("user-a", http.MethodPatch, path, `{}`); r.code != http.StatusOK || !strings.Contains(r.body, `"path":"q"`) {
		t.Fatalf("empty patch: %d %s", r.code, r.body)
	}
	for body, want := range map[string]int{
		"":                         http.StatusBadRequest, // "No JSON data provided"
		`{"kernel":{"id":"nope"}}`: http.StatusBadRequest, // "No such kernel"
		`{"name":"a\nb"}`:          http.StatusBadRequest,
		`{"path":"` + strings.Repeat("p", MaxPath+1) + `"}`: http.StatusRequestEntityTooLarge,
		`{`: http.StatusBadRequest,
	} {
		if r := f.do("user-a", http.MethodPatch, path, body); r.code != want || !strings.Contains(r.body, `"message"`) {
			t.Errorf("patch %.40q: %d %s, want %d", body, r.code, r.body, want)
		}
	}
	if r := f.do("user-a", http.MethodPatch, path, `{"kernel":{"id":"`+x.Kernel.ID+`"}}`); r.code != http.StatusOK {
		t.Fatalf("patch with its own kernel: %d %s", r.code, r.body)
	}
	// Another kernel by name (as nbserv_client asks: an empty id): a new
	// kernel, with a new id; the old kernel's running code is stopped.
	job, err := f.svc.SubmitCode(context.Background(), strings.ReplaceAll(x.ID, "-", ""), "t", "print(1)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Apply(context.Background(), &raftstore.Pick{Now: now + 1, Worker: "h-a"}); err != nil {
		t.Fatal(err)
	}
	var nk Session
	if r := f.do("user-a", http.MethodPatch, path, `{"kernel":{"id":"","name":"sh"}}`); r.code != http.StatusOK ||
		json.Unmarshal([]byte(r.body), &nk) != nil || nk.Kernel.Name != "sh" || nk.Kernel.ID == x.Kernel.ID || nk.ID != x.ID {
		t.Fatalf("kernel change: %d %s", r.code, r.body)
	} else {
		checkModel(t, r.body)
	}
	if j, _ := f.store.State().Job(job); j.State != raftstore.StateCanceled {
		t.Fatalf("the old kernel's code is %s", j.State)
	}
	if r := f.do("user-a", http.MethodPatch, path, `{"kernel":{"id":"`+x.Kernel.ID+`"}}`); r.code != http.StatusBadRequest {
		t.Fatalf("the old kernel's id: %d %s", r.code, r.body)
	}
	if r := f.do("user-a", http.MethodPatch, path, `{"kernel":{"id":"`+nk.Kernel.ID+`"}}`); r.code != http.StatusOK {
		t.Fatalf("the new kernel's id: %d %s", r.code, r.body)
	}
	if r := f.do("user-a", http.MethodPatch, path, `{"kernel":{"name":"julia"}}`); r.code != http.StatusNotImplemented || !strings.Contains(r.body, "julia not found") {
		t.Fatalf("a kernel no host offers: %d %s", r.code, r.body)
	}
	// Delete: 204, then the session is gone (404).
	if r := f.do("user-a", http.MethodDelete, path, ""); r.code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if r := f.do("user-a", http.MethodGet, path, ""); r.code != http.StatusNotFound {
		t.Fatalf("get deleted: %d %s", r.code, r.body)
	}
	if r := f.do("user-a", http.MethodDelete, path, ""); r.code != http.StatusNotFound {
		t.Fatalf("delete twice: %d %s", r.code, r.body)
	}
	// A session whose kernel ended first (closed, expired): 410, and gone.
	z := f.create(`{"path":"z"}`)
	if err := f.svc.CloseSession(context.Background(), strings.ReplaceAll(z.ID, "-", "")); err != nil {
		t.Fatal(err)
	}
	if r := f.do("read-a", http.MethodGet, Prefix+"/"+z.ID, ""); r.code != http.StatusOK || !strings.Contains(r.body, `"execution_state":"dead"`) {
		t.Fatalf("closed session: %d %s", r.code, r.body)
	}
	if r := f.do("user-a", http.MethodDelete, Prefix+"/"+z.ID, ""); r.code != http.StatusGone {
		t.Fatalf("delete a closed session: %d %s", r.code, r.body)
	}
	if r := f.do("user-a", http.MethodGet, Prefix+"/"+z.ID, ""); r.code != http.StatusNotFound {
		t.Fatalf("get after 410: %d %s", r.code, r.body)
	}
}

func TestJupyterIDs(t *testing.T) {
	f := newFarm(t)
	x := f.create(`{"path":"p"}`)
	core := strings.ReplaceAll(x.ID, "-", "")
	for _, id := range []string{
		core, // the core's own id is not a Jupyter id
		"s1",
		x.ID + "0",
		strings.ReplaceAll(x.ID, "-", "_"),
		"0000000-00000-0000-0000-000000000000",
		"zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
		"00000000-0000-0000-0000-000000000000", // well-formed, unknown
	} {
		if r := f.do("admin", http.MethodGet, Prefix+"/"+id, ""); r.code != http.StatusNotFound {
			t.Errorf("GET %s: %d %s", id, r.code, r.body)
		}
	}
	if r := f.do("admin", http.MethodGet, Prefix+"/"+strings.ToUpper(x.ID), ""); r.code != http.StatusOK {
		t.Errorf("upper-case UUID: %d %s", r.code, r.body)
	}
	// A schedule group is no kernel: 404 too.
	g, err := f.svc.OpenSession(context.Background(), service.SessionSpec{Kind: raftstore.SessionGroup, Project: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.do("admin", http.MethodGet, Prefix+"/"+ids.Dashed(g.ID), ""); r.code != http.StatusNotFound {
		t.Errorf("group session: %d %s", r.code, r.body)
	}
	if r := f.do("admin", http.MethodGet, Prefix, ""); strings.Contains(r.body, ids.Dashed(g.ID)) {
		t.Errorf("group session listed: %s", r.body)
	}
}

func TestJupyterAccess(t *testing.T) {
	f := newFarm(t)
	x := f.create(`{"path":"p"}`)
	path := Prefix + "/" + x.ID
	for _, c := range []struct {
		token, method, path, body string
		want                      int
	}{
		{"", http.MethodGet, Prefix, "", http.StatusUnauthorized},
		{"", http.MethodGet, path, "", http.StatusUnauthorized},
		{"", http.MethodPost, Prefix, `{}`, http.StatusUnauthorized},
		{"read-a", http.MethodPost, Prefix, `{"path":"r"}`, http.StatusForbidden},
		{"read-a", http.MethodPatch, path, `{"name":"n"}`, http.StatusForbidden},
		{"read-a", http.MethodDelete, path, "", http.StatusForbidden},
		{"read-a", http.MethodPost, path + "/jobs", `{"code":"true"}`, http.StatusForbidden},
		{"user-b", http.MethodGet, path, "", http.StatusForbidden},
		{"user-b", http.MethodPatch, path, `{"name":"n"}`, http.StatusForbidden},
		{"user-b", http.MethodDelete, path, "", http.StatusForbidden},
		{"user-b", http.MethodPost, path + "/jobs", `{"code":"true"}`, http.StatusForbidden},
		{"user-a", http.MethodPost, Prefix, `{"path":"r","project":"b"}`, http.StatusForbidden},
		{"user-a", http.MethodPost, Prefix, `{"path":"r","project":"B!"}`, http.StatusBadRequest},
		{"user-a", http.MethodPost, Prefix, `{"path":"` + strings.Repeat("x", MaxBody) + `"}`, http.StatusRequestEntityTooLarge},
		{"user-a", http.MethodPost, path + "/jobs", `{"code":"` + strings.Repeat("x", MaxBody) + `"}`, http.StatusRequestEntityTooLarge},
		{"user-a", http.MethodPost, path + "/jobs", `{"code":"` + strings.Repeat("x", raftstore.MaxCodeBytes+1) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		r := f.do(c.token, c.method, c.path, c.body)
		if r.code != c.want {
			t.Errorf("%s %s as %q: %d %.200s, want %d", c.method, c.path, c.token, r.code, r.body, c.want)
		}
		if r.code == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s: 401 without WWW-Authenticate", c.method, c.path)
		}
	}
	// ?token= works as the header does.
	req := httptest.NewRequest(http.MethodGet, Prefix+"?token=secret-read-a", nil)
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), x.ID) {
		t.Fatalf("?token=: %d %s", rec.Code, rec.Body.String())
	}
	// Coalition keeps the rest of /api.
	if r := f.do("read-a", http.MethodGet, "/api/jobs", ""); r.code != http.StatusOK || strings.Contains(r.body, `"kernel"`) {
		t.Fatalf("Coalition's /api/jobs: %d %s", r.code, r.body)
	}
	if r := f.do("read-a", http.MethodGet, "/api/sessionsx", ""); r.code != http.StatusNotFound || r.body != "Web service not found." {
		t.Fatalf("/api/sessionsx: %d %s", r.code, r.body)
	}
}

func TestJupyterRunCode(t *testing.T) {
	f := newFarm(t)
	x := f.create(`{"path":"p","kernel":{"name":"sh"}}`)
	path := Prefix + "/" + x.ID
	r := f.do("user-a", http.MethodPost, path+"/jobs", `{"code":"echo hello","title":"cell 1"}`)
	var j Job
	if r.code != http.StatusCreated || json.Unmarshal([]byte(r.body), &j) != nil || j.ID == 0 || j.Session != x.ID {
		t.Fatalf("submit: %d %s", r.code, r.body)
	}
	if want := "/croft/v1/jobs/" + strings.TrimSpace(strings.Split(strings.Split(r.body, `"id":`)[1], ",")[0]) + "/log"; j.Log != want {
		t.Fatalf("log %q, want %q", j.Log, want)
	}
	st := f.store.State()
	core := strings.ReplaceAll(x.ID, "-", "")
	if s, _ := st.Session(core); len(s.Jobs) != 1 || s.Jobs[0] != j.ID {
		t.Fatalf("session jobs %+v", s.Jobs)
	}
	job, ok := st.Job(j.ID)
	if !ok || job.Title != "cell 1" || job.Project != "a" || !strings.Contains(job.Command, "echo hello") {
		t.Fatalf("job %+v", job)
	}
	// The host picks it: the kernel is busy until it ends.
	if a, _ := f.ok(&raftstore.Pick{Now: now + 1e9, Worker: "h-a"}).(*raftstore.Assignment); a == nil || a.JobID != j.ID {
		t.Fatalf("pick %+v", a)
	}
	if r := f.do("read-a", http.MethodGet, path, ""); !strings.Contains(r.body, `"execution_state":"busy"`) {
		t.Fatalf("running: %s", r.body)
	}
	for body, want := range map[string]int{`{`: http.StatusBadRequest, `{"code":"x","title":"a\nb"}`: http.StatusBadRequest} {
		if r := f.do("user-a", http.MethodPost, path+"/jobs", body); r.code != want {
			t.Errorf("submit %q: %d %s, want %d", body, r.code, r.body, want)
		}
	}
	// Deleting the session stops its code and deletes its jobs.
	if r := f.do("user-a", http.MethodDelete, path, ""); r.code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if _, ok := f.store.State().Job(j.ID); ok {
		t.Fatalf("job %d outlived its session", j.ID)
	}
}
