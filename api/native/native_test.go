package native

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/internal/farmtest"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service/liveness"
)

// fsmStore applies commands through a real FSM, as the leader would.
type fsmStore struct{ *farmtest.Store }

// SetInterpreter and DeleteInterpreter make the store the registry, as
// the service layer is in a coordinator.
func (s *fsmStore) SetInterpreter(ctx context.Context, name, template, uses string) error {
	_, err := s.Apply(ctx, &raftstore.InterpreterSet{Now: now, Name: name, Template: template, Uses: uses})
	return err
}

func (s *fsmStore) DeleteInterpreter(ctx context.Context, name string) error {
	_, err := s.Apply(ctx, &raftstore.InterpreterDelete{Now: now, Name: name})
	return err
}

type pingMap map[string]liveness.Ping

func (m pingMap) Get(w string) (liveness.Ping, bool) { p, ok := m[w]; return p, ok }

type tokenMap = farmtest.Tokens

// farmTest is a state with projects a and b, tokens of each kind, three
// hosts and the routes mounted on a test engine.
type farmTest struct {
	t      *testing.T
	store  *fsmStore
	pings  pingMap
	engine *gin.Engine
	job    int64 // in project a, running on slot "h-a"
}

const now = farmtest.Now

func newFarmTest(t *testing.T) *farmTest {
	gin.SetMode(gin.TestMode)
	f := &farmTest{t: t, store: &fsmStore{farmtest.NewStore(t)}, pings: pingMap{}}
	tokens := tokenMap{}
	for _, tok := range []raftstore.Token{
		{Name: "admin", Role: raftstore.RoleAdmin},
		{Name: "read-a", Role: raftstore.RoleRead, Projects: []string{"a"}},
		{Name: "read-b", Role: raftstore.RoleRead, Projects: []string{"b"}},
		{Name: "agent", Role: raftstore.RoleAgent, Projects: []string{"*"}, Workers: []string{"*"}},
	} {
		tokens[auth.Hash("secret-"+tok.Name)] = tok
	}
	for _, p := range []string{"a", "b"} {
		f.ok(&raftstore.ProjectCreate{Now: now, Name: p})
	}
	sh := raftstore.HostInterpreter{Name: "sh", Path: "/bin/sh"}
	py := raftstore.HostInterpreter{Name: "python3", Path: "/usr/bin/python3"}
	f.slot("h-all", "h-all", nil, sh, py)
	f.slot("h-all/2", "h-all", nil, sh, py)
	f.slot("h-a", "h-a", []string{"a"}, sh)
	f.slot("h-b", "h-b", []string{"b"}, sh, py)
	f.slot("rack/7", "rack/7", []string{"b"})
	ids, _ := f.ok(&raftstore.JobCreate{Now: now, Jobs: []raftstore.JobSpec{{Title: "t", Command: "true", Project: "a", Retry: 1}}}).([]int64)
	f.job = ids[0]
	if a, _ := f.ok(&raftstore.Pick{Now: now, Worker: "h-a"}).(*raftstore.Assignment); a == nil || a.JobID != f.job {
		t.Fatalf("pick %+v", a)
	}
	f.pings["h-all"] = liveness.Ping{Time: now + 1e9, CPU: "[10, 20]", FreeMemory: 100, TotalMemory: 1000}
	f.pings["h-all/2"] = liveness.Ping{Time: now + 2e9, CPU: "[30, 40]", FreeMemory: 90, TotalMemory: 1000}

	e := gin.New()
	m := auth.Mount{Router: e, Auth: auth.New(auth.Config{}, func() auth.Tokens { return tokens }, nil), Abort: apierr.Abort, Table: &auth.Table{}}
	NewHosts(f.store, f.pings).Register(m)
	NewInterpreters(f.store, f.store).Register(m)
	f.engine = e
	return f
}

func (f *farmTest) ok(cmd raftstore.Command) any {
	f.t.Helper()
	res, err := f.store.Apply(context.Background(), cmd)
	if err != nil {
		f.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

func (f *farmTest) slot(worker, host string, projects []string, interps ...raftstore.HostInterpreter) {
	f.t.Helper()
	f.ok(&raftstore.WorkerRegister{Now: now, Name: worker, Projects: projects,
		Host: &raftstore.HostInfo{Name: host, Slots: 2, CPUs: 8, TotalMemory: 1000, Interpreters: interps}})
}

// do sends a request as token and returns the status and body.
func (f *farmTest) do(token, method, path, body string) (int, string) {
	f.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer secret-"+token)
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// get decodes a 200 reply into out.
func (f *farmTest) get(token, path string, out any) {
	f.t.Helper()
	code, body := f.do(token, http.MethodGet, path, "")
	if code != http.StatusOK {
		f.t.Fatalf("GET %s as %s: %d %s", path, token, code, body)
	}
	if err := json.Unmarshal([]byte(body), out); err != nil {
		f.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

func hostNames(hs []client.Host) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.Name)
	}
	return out
}

func TestHostsListPagedAndByProject(t *testing.T) {
	f := newFarmTest(t)
	for _, c := range []struct {
		token, query string
		want         []string
	}{
		{"admin", "", []string{"h-a", "h-all", "h-b", "rack/7"}},
		{"read-a", "", []string{"h-a", "h-all"}},
		{"read-b", "", []string{"h-all", "h-b", "rack/7"}},
		{"admin", "?offset=1&limit=2", []string{"h-all", "h-b"}},
		{"admin", "?offset=9", nil},
		{"admin", "?interpreter=python3", []string{"h-all", "h-b"}},
		{"read-a", "?interpreter=python3", []string{"h-all"}},
		{"admin", "?interpreter=nowhere", nil},
	} {
		var hs []client.Host
		f.get(c.token, client.PathHosts+c.query, &hs)
		if got := hostNames(hs); !slices.Equal(got, c.want) {
			t.Errorf("%s%s as %s: %v, want %v", client.PathHosts, c.query, c.token, got, c.want)
		}
	}
	// A configured interpreter filters by the one it uses.
	f.ok(&raftstore.InterpreterSet{Now: now, Name: "py-u", Template: "{interpreter} -u {file}", Uses: "python3"})
	var hs []client.Host
	if f.get("admin", client.PathHosts+"?interpreter=py-u", &hs); !slices.Equal(hostNames(hs), []string{"h-all", "h-b"}) {
		t.Errorf("hosts of py-u: %v", hostNames(hs))
	}
	for _, q := range []string{"?limit=-1", "?offset=x", "?interpreter=a%20b", "?interpreter=" + strings.Repeat("x", 65)} {
		if code, body := f.do("admin", http.MethodGet, client.PathHosts+q, ""); code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", q, code, body)
		}
	}
	if code, _ := f.do("agent", http.MethodGet, client.PathHosts, ""); code != http.StatusForbidden {
		t.Errorf("an agent token lists hosts: %d, want 403", code)
	}
}

func TestHostDetail(t *testing.T) {
	f := newFarmTest(t)
	var h client.Host
	f.get("read-a", client.PathHosts+"/h-all", &h)
	if len(h.Slots) != 2 || h.Slots[0].Name != "h-all" || h.Slots[0].State != raftstore.WorkerStateIdle || !h.Slots[0].Active ||
		h.CPUs != 8 || h.TotalMemory != 1000 || h.SlotCount != 2 || !slices.Equal(h.Projects, []string{"*"}) ||
		len(h.Interpreters) != 2 || h.Interpreters[1] != (client.Interpreter{Name: "python3", Path: "/usr/bin/python3"}) {
		t.Fatalf("host h-all: %+v", h)
	}
	// The live load is the newest of its slots' pings.
	if h.Live == nil || !slices.Equal(h.Live.CPU, []int{30, 40}) || h.Live.FreeMemory != 90 || h.Live.Seen.UnixNano() != now+2e9 {
		t.Fatalf("live %+v", h.Live)
	}
	// The running job shows to who reads its project.
	h = client.Host{}
	f.get("read-a", client.PathHosts+"/h-a", &h)
	if s := h.Slots[0]; s.State != raftstore.WorkerStateBusy || s.Job != f.job || s.Attempt == 0 || h.Live != nil {
		t.Fatalf("host h-a as read-a: %+v", h)
	}
	f.ok(&raftstore.JobCreate{Now: now, Jobs: []raftstore.JobSpec{{Title: "b", Command: "true", Project: "b", Retry: 1}}})
	if a, _ := f.ok(&raftstore.Pick{Now: now, Worker: "h-all/2"}).(*raftstore.Assignment); a == nil {
		t.Fatal("no pick on h-all/2")
	}
	for token, wantJob := range map[string]bool{"read-a": false, "read-b": true, "admin": true} {
		h = client.Host{}
		f.get(token, client.PathHosts+"/h-all", &h)
		if s := h.Slots[1]; s.State != raftstore.WorkerStateBusy || (s.Job != 0) != wantJob || (s.Attempt != 0) != wantJob {
			t.Errorf("slot h-all/2 as %s: %+v", token, s)
		}
	}
	f.get("admin", client.PathHosts+"/rack/7", &h)
	if h.Name != "rack/7" || len(h.Slots) != 1 {
		t.Fatalf("a host with a slash: %+v", h)
	}
	for _, c := range []struct {
		token, path string
		want        int
	}{
		{"read-a", "/h-b", http.StatusForbidden},
		{"read-b", "/h-a", http.StatusForbidden},
		{"admin", "/nope", http.StatusNotFound},
		{"admin", "/", http.StatusNotFound},
		{"agent", "/h-all", http.StatusForbidden},
	} {
		if code, body := f.do(c.token, http.MethodGet, client.PathHosts+c.path, ""); code != c.want {
			t.Errorf("GET %s as %s: %d %s, want %d", c.path, c.token, code, body, c.want)
		}
	}
	if parseLoads("[1, x, 3]"); !slices.Equal(parseLoads("[1, x, 3]"), []int{1, 3}) || len(parseLoads("")) != 0 {
		t.Fatalf("parseLoads %v", parseLoads("[1, x, 3]"))
	}
}

func TestInterpreterRegistryRoutes(t *testing.T) {
	f := newFarmTest(t)
	path := client.PathInterpreters + "/py-u"
	code, body := f.do("admin", http.MethodPut, path, `{"template":"{interpreter} -u {file}","uses":"python3"}`)
	var in client.InterpreterInfo
	if code != http.StatusOK || json.Unmarshal([]byte(body), &in) != nil || !in.Configured || in.Uses != "python3" ||
		in.HostCount != 2 || !slices.Equal(in.Hosts, []string{"h-all", "h-b"}) || in.Created == nil {
		t.Fatalf("PUT: %d %s", code, body)
	}
	if code, body := f.do("admin", http.MethodPut, client.PathInterpreters+"/sh", `{"template":"{interpreter} -e {file}"}`); code != http.StatusOK {
		t.Fatalf("PUT sh: %d %s", code, body)
	}
	for _, c := range []struct {
		token, name, body string
		want              int
	}{
		{"read-a", "x", `{"template":"{file}"}`, http.StatusForbidden},
		{"agent", "x", `{"template":"{file}"}`, http.StatusForbidden},
		{"admin", "x", `{"template":`, http.StatusBadRequest},
		{"admin", "x", `{"template":"{nope}"}`, http.StatusBadRequest},
		{"admin", "x", `{"template":"run {file"}`, http.StatusBadRequest},
		{"admin", "x", `{"template":"a\u0000{file}"}`, http.StatusBadRequest},
		{"admin", "x", `{"template":""}`, http.StatusBadRequest},
		{"admin", "a%20b", `{"template":"{file}"}`, http.StatusBadRequest},
		{"admin", "x", `{"template":"{file}","uses":"a/b"}`, http.StatusBadRequest},
		{"admin", "x", `{"template":"` + strings.Repeat("x", 4<<10+1) + `"}`, http.StatusRequestEntityTooLarge},
		{"admin", "x", `{"template":"` + strings.Repeat("x", 70<<10) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		if code, body := f.do(c.token, http.MethodPut, client.PathInterpreters+"/"+c.name, c.body); code != c.want {
			t.Errorf("PUT %s as %s %.40s: %d %s, want %d", c.name, c.token, c.body, code, body, c.want)
		}
	}
	if _, ok := f.store.State().ConfiguredInterpreter("x"); ok {
		t.Fatal("a refused PUT configured x")
	}
	// The list merges configured and detected names; hosts as the token
	// may see them.
	var list []client.InterpreterInfo
	f.get("read-a", client.PathInterpreters, &list)
	got := map[string]client.InterpreterInfo{}
	var names []string
	for _, in := range list {
		got[in.Name] = in
		names = append(names, in.Name)
	}
	if !slices.Equal(names, []string{"py-u", "python3", "sh"}) {
		t.Fatalf("interpreters %v", names)
	}
	if p := got["py-u"]; !p.Configured || p.HostCount != 1 || !slices.Equal(p.Hosts, []string{"h-all"}) {
		t.Errorf("py-u as read-a: %+v", p)
	}
	if p := got["python3"]; p.Configured || p.Template != "{interpreter} {file}" || p.Uses != "python3" || p.HostCount != 1 {
		t.Errorf("python3 as read-a: %+v", p)
	}
	if p := got["sh"]; !p.Configured || p.Template != "{interpreter} -e {file}" || p.HostCount != 2 || !slices.Equal(p.Hosts, []string{"h-a", "h-all"}) {
		t.Errorf("sh as read-a: %+v", p)
	}
	f.get("admin", client.PathInterpreters+"?offset=1&limit=1", &list)
	if len(list) != 1 || list[0].Name != "python3" || list[0].HostCount != 2 {
		t.Fatalf("a page of interpreters: %+v", list)
	}
	if code, _ := f.do("admin", http.MethodGet, client.PathInterpreters+"?limit=z", ""); code != http.StatusBadRequest {
		t.Fatalf("a bad limit: %d", code)
	}
	if code, _ := f.do("read-a", http.MethodDelete, path, ""); code != http.StatusForbidden {
		t.Fatalf("DELETE as read-a: %d", code)
	}
	if code, body := f.do("admin", http.MethodDelete, path, ""); code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, _ := f.do("admin", http.MethodDelete, path, ""); code != http.StatusNotFound {
		t.Fatalf("DELETE again: %d, want 404", code)
	}
}
