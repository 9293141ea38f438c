package coalition

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service/liveness"
)

// fsmStore applies commands straight to an FSM: the API logic is tested
// without Raft (the coordinator tests cover the replicated path).
type fsmStore struct {
	mu    sync.Mutex
	fsm   *raftstore.FSM
	index uint64
}

func (s *fsmStore) Apply(_ context.Context, cmd raftstore.Command) (any, error) {
	buf, err := raftstore.Encode(cmd)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.index++
	res := s.fsm.Apply(&raft.Log{Index: s.index, Type: raft.LogCommand, Data: buf})
	s.mu.Unlock()
	if err, ok := res.(error); ok {
		return nil, err
	}
	return res, nil
}

func (s *fsmStore) State() *raftstore.State { return s.fsm.State() }

type farm struct {
	t     *testing.T
	srv   *httptest.Server
	store *fsmStore
}

// newFarm serves the dialect without access control: the tests of the
// dialect's behaviour; access has tests of its own (access_test.go).
func newFarm(t *testing.T) *farm {
	return newFarmWith(t, auth.Config{Insecure: true}, Limits{})
}

func newFarmWith(t *testing.T, cfg auth.Config, limits Limits) *farm {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	fsm, err := raftstore.NewFSM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsm.Close() })
	st := &fsmStore{fsm: fsm}
	a := auth.New(cfg, func() auth.Tokens { return st.State() }, nil)
	New(st, liveness.New(time.Hour), limits).Register(auth.Mount{Router: e, Auth: a})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &farm{t: t, srv: srv, store: st}
}

// call sends a request and returns status and body.
func (f *farm) call(method, path, body string) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// ok sends a request that must succeed and decodes the JSON reply.
func (f *farm) ok(method, path, body string, out any) {
	f.t.Helper()
	code, b := f.call(method, path, body)
	if code != http.StatusOK {
		f.t.Fatalf("%s %s %s: %d %s", method, path, body, code, b)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(b), out); err != nil {
			f.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
}

func (f *farm) create(body string) int64 {
	f.t.Helper()
	var id int64
	f.ok(http.MethodPut, "/api/jobs", body, &id)
	return id
}

func (f *farm) job(id int64) client.Job {
	f.t.Helper()
	var j client.Job
	f.ok(http.MethodGet, "/api/jobs/"+strconv.FormatInt(id, 10), "", &j)
	return j
}

// worker speaks the Coalition worker protocol, form-encoded.
func (f *farm) worker(path string, args url.Values) string {
	f.t.Helper()
	resp, err := http.PostForm(f.srv.URL+"/workers/"+path, args)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		f.t.Fatalf("/workers/%s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

func TestCreateReturnsBareIntegerAndDefaults(t *testing.T) {
	f := newFarm(t)
	code, body := f.call(http.MethodPut, "/api/jobs", `{"title":"hi","command":"echo hi"}`)
	if code != 200 || body != "1" {
		t.Fatalf("create: %d %q", code, body)
	}
	j := f.job(1)
	if j.State != "WAITING" || j.Timeout != 1000 || j.Priority != 255 || j.Retry != 10 || j.Parent != 0 {
		t.Fatalf("defaults: %+v", j)
	}
	if j.Dependencies == nil || len(*j.Dependencies) != 0 {
		t.Fatalf("GET /api/jobs/1 must carry dependencies: %+v", j.Dependencies)
	}
	var roots []map[string]any
	f.ok(http.MethodGet, "/api/jobs", "", &roots)
	if len(roots) != 1 {
		t.Fatalf("roots %v", roots)
	}
	if _, has := roots[0]["dependencies"]; has {
		t.Fatal("list rows carry dependencies")
	}
	for _, key := range []string{"id", "parent", "title", "command", "dir", "environment", "state", "worker",
		"start_time", "duration", "ping_time", "run_done", "retry", "timeout", "priority", "affinity", "user",
		"finished", "errors", "working", "total", "total_finished", "total_errors", "total_working", "url",
		"progress", "progress_pattern", "h_affinity", "h_priority", "h_paused", "h_depth"} {
		if _, has := roots[0][key]; !has {
			t.Errorf("job row lacks %q", key)
		}
	}
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	f := newFarm(t)
	f.create(`{"title":"keep","command":"true"}`)
	cases := []struct {
		method, path, body string
		code               int
	}{
		{"PUT", "/api/jobs", `{"title":`, 400},
		{"PUT", "/api/jobs", ``, 400}, // a forgotten -d made a stray job (issue 12)
		{"PUT", "/api/jobs", " \n", 400},
		{"PUT", "/api/jobs", `null`, 400},
		{"PUT", "/api/jobs", `[1,2]`, 400},
		{"PUT", "/api/jobs", `{"title": 12}`, 400},
		{"PUT", "/api/jobs", `{"priority": "high"}`, 400},
		{"PUT", "/api/jobs", `{"timeout": 1.5}`, 400},
		{"PUT", "/api/jobs", `{"colour": "red"}`, 400},
		{"PUT", "/api/jobs", `{"id": 5}`, 400},
		{"PUT", "/api/jobs", `{"parent": 99}`, 404},
		{"PUT", "/api/jobs", `{"parent": 1}`, 400}, // job 1 has a command: not a group
		{"PUT", "/api/jobs", `{"dependencies": [99]}`, 404},
		{"PUT", "/api/jobs", `{"state": "FINISHED"}`, 400},
		{"PUT", "/api/jobs", `{"progress_pattern": "no placeholder"}`, 400},
		{"POST", "/api/jobs", `{"1": {"title": 3}}`, 400},
		{"POST", "/api/jobs", `{"1": {"run_done": 3}}`, 400},
		{"POST", "/api/jobs", `{"abc": {"title": "x"}}`, 400},
		{"POST", "/api/jobs", `{"1": {"title": "x"}, "99": {"title": "y"}}`, 404},
		{"DELETE", "/api/jobs", `[1, 99]`, 404},
		{"DELETE", "/api/jobs", `{"1": 1}`, 400},
		{"POST", "/api/resetjobs", `["x"]`, 400},
		{"POST", "/api/pausejobs", `[99]`, 404},
		{"POST", "/api/jobs/1/dependencies", `[1]`, 400},
		{"POST", "/api/workers", `{"nobody": {"active": 0}}`, 404},
		{"POST", "/api/affinities", `{"64": "x", "0": "y"}`, 200}, // Coalition's client sends 1..64: ignored, as upstream
		{"POST", "/api/affinities", `{"x": "y"}`, 400},
		{"POST", "/api/affinities", `{"1": 7}`, 400},
		{"GET", "/api/events?howlong=soon", ``, 400},
		{"GET", "/api/jobs/where/?where_clause=state%3D", ``, 400},
		{"GET", "/api/jobs/where/?where_clause=colour%3D1", ``, 400},
	}
	for _, c := range cases {
		before := f.store.State().Digest()
		code, body := f.call(c.method, c.path, c.body)
		if code != c.code {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, code, body, c.code)
		}
		if code >= 400 && code != 404 && !strings.Contains(body, `"error"`) {
			t.Errorf("%s %s: error body %q is not JSON", c.method, c.path, body)
		}
		if f.store.State().Digest() != before {
			t.Errorf("%s %s %s changed the state", c.method, c.path, c.body)
		}
	}
	if j := f.job(1); j.Title != "keep" {
		t.Fatalf("job changed: %+v", j)
	}
}

func TestNotFoundBodies(t *testing.T) {
	f := newFarm(t)
	for _, p := range []string{"/api/jobs/42", "/api/nothing", "/api/jobs/42/log", "/api/terminateworkers", "/api/jobs/x"} {
		method := http.MethodGet
		if p == "/api/terminateworkers" {
			method = http.MethodPost
		}
		code, body := f.call(method, p, "")
		if code != 404 || body != "Web service not found." {
			t.Errorf("%s %s: %d %q", method, p, code, body)
		}
	}
}

func TestPrefixesServeTheSameAPI(t *testing.T) {
	f := newFarm(t)
	id := f.create(`{"title":"a","command":"true"}`)
	for _, p := range []string{"/api/jobs/", "/xmlrpc/jobs/", "/api/webfrontend/jobs/"} {
		var j client.Job
		f.ok(http.MethodGet, p+strconv.FormatInt(id, 10), "", &j)
		if j.ID != id {
			t.Fatalf("%s: %+v", p, j)
		}
	}
}

// TestUpstreamSuite replays the scenario of Coalition's tests/main_test.py.
func TestUpstreamSuite(t *testing.T) {
	f := newFarm(t)
	f.ok("POST", "/api/affinities", `{"1":"linux","2":"win","3":"windows project","4":"windows","5":"dos"}`, nil)
	var affs map[string]string
	f.ok("GET", "/api/affinities", "", &affs)
	if affs["1"] != "linux" || affs["3"] != "windows project" || len(affs) != 63 {
		t.Fatalf("affinities %v", affs)
	}
	for _, w := range []string{"worker-0", "worker-1"} {
		if r := f.worker("pickjob", url.Values{"hostname": {w}, "load": {"[0]"}, "free_memory": {"100"}, "total_memory": {"200"}}); r != "(-1, '', '', '', None)" {
			t.Fatalf("idle pick: %q", r)
		}
	}
	var workers []client.Worker
	f.ok("GET", "/api/workers", "", &workers)
	if len(workers) != 2 || workers[0].TotalMemory != 200 || workers[0].CPU != "[0]" {
		t.Fatalf("workers %+v", workers)
	}
	var one int
	f.ok("POST", "/api/workers", `{"worker-0":{"affinity":"windows\nlinux"},"worker-1":{"affinity":"linux"}}`, &one)
	if one != 1 {
		t.Fatalf("edit workers replied %d", one)
	}

	paused := f.create(`{"title":"paused","command":"echo","state":"PAUSED"}`)
	if j := f.job(paused); j.State != "PAUSED" {
		t.Fatalf("paused job %s", j.State)
	}
	parent := f.create(`{"title":"parent"}`)
	var children []int64
	for i := 0; i < 10; i++ {
		children = append(children, f.create(`{"title":"c","command":"echo","state":"PAUSED","parent":`+strconv.FormatInt(parent, 10)+`}`))
	}
	hi := f.create(`{"title":"sleep hi","command":"sleep 2","affinity":"linux","priority":129}`)
	lo := f.create(`{"title":"sleep lo","command":"sleep 2","affinity":"linux","priority":128}`)
	if j := f.job(hi); j.Affinity != "linux" || j.Priority != 129 {
		t.Fatalf("job %+v", j)
	}
	dep := f.create(`{"title":"dep","command":"echo dep","state":"PAUSED"}`)
	ids, _ := json.Marshal(children)
	f.ok("POST", "/api/jobs/"+strconv.FormatInt(dep, 10)+"/dependencies", string(ids), nil)
	f.ok("POST", "/api/jobs", `{"`+strconv.FormatInt(dep, 10)+`":{"state":"WAITING"}}`, nil)
	if s := f.job(dep).State; s != "PENDING" {
		t.Fatalf("dep state %s, want PENDING", s)
	}

	// The priority-129 job starts before the priority-128 one.
	first := f.worker("pickjob", url.Values{"hostname": {"worker-1"}})
	if !strings.HasPrefix(first, "("+strconv.FormatInt(hi, 10)+", u'sleep 2'") {
		t.Fatalf("first pick %q", first)
	}
	second := f.worker("pickjob", url.Values{"hostname": {"worker-0"}})
	if !strings.HasPrefix(second, "("+strconv.FormatInt(lo, 10)+",") {
		t.Fatalf("second pick %q", second)
	}
	for _, w := range []string{"worker-1", "worker-0"} {
		jid := hi
		if w == "worker-0" {
			jid = lo
		}
		log := base64.StdEncoding.EncodeToString([]byte("PROGRESS:50\n"))
		if r := f.worker("heartbeat", url.Values{"hostname": {w}, "jobId": {strconv.FormatInt(jid, 10)}, "log": {log}}); r != "true" {
			t.Fatalf("heartbeat %q", r)
		}
		if r := f.worker("endjob", url.Values{"hostname": {w}, "jobId": {strconv.FormatInt(jid, 10)}, "errorCode": {"0"}}); r != "None" {
			t.Fatalf("endjob %q", r)
		}
	}
	if j := f.job(hi); j.State != "FINISHED" || j.Progress != 0.5 || j.RunDone != 1 {
		t.Fatalf("hi job %+v", j)
	}
	var log string
	f.ok("GET", "/api/jobs/"+strconv.FormatInt(hi, 10)+"/log", "", &log)
	if log != "PROGRESS:50\n" {
		t.Fatalf("log %q", log)
	}

	// Set the children WAITING and run them all: dep then finishes too.
	edit := map[string]map[string]string{}
	for _, c := range children {
		edit[strconv.FormatInt(c, 10)] = map[string]string{"state": "WAITING"}
	}
	b, _ := json.Marshal(edit)
	f.ok("POST", "/api/jobs", string(b), nil)
	for n := 0; n < 11; n++ {
		r := f.worker("pickjob", url.Values{"hostname": {"worker-1"}})
		id, err := strconv.ParseInt(strings.SplitN(strings.TrimPrefix(r, "("), ",", 2)[0], 10, 64)
		if err != nil || id < 0 {
			t.Fatalf("pick %d: %q", n, r)
		}
		if n < 10 && id == dep {
			t.Fatal("dep ran before its dependencies")
		}
		f.worker("endjob", url.Values{"hostname": {"worker-1"}, "jobId": {strconv.FormatInt(id, 10)}, "errorCode": {"0"}})
	}
	if s := f.job(dep).State; s != "FINISHED" {
		t.Fatalf("dep %s", s)
	}
	g := f.job(parent)
	if g.State != "FINISHED" || g.Working != 0 || g.Errors != 0 || g.RunDone != 0 || g.Total != 10 || g.TotalFinished != 10 {
		t.Fatalf("group %+v", g)
	}
	var evs []client.Event
	f.ok("GET", "/api/events?howlong=3600&worker=worker-0", "", &evs)
	if len(evs) != 1 || evs[0].JobID != lo || evs[0].State != "FINISHED" {
		t.Fatalf("events %+v", evs)
	}
	f.ok("GET", "/api/events?howlong=3600&job="+strconv.FormatInt(dep, 10), "", &evs)
	if len(evs) != 1 {
		t.Fatalf("events of dep %+v", evs)
	}
	f.ok("GET", "/api/events", "", &evs)
	if len(evs) != 0 {
		t.Fatal("howlong defaults to -1, which matches nothing")
	}
}

func TestWorkerProtocolKillsPausedJob(t *testing.T) {
	f := newFarm(t)
	id := f.create(`{"title":"long","command":"sleep 100"}`)
	r := f.worker("pickjob", url.Values{"hostname": {"w"}})
	if r != "("+strconv.FormatInt(id, 10)+", u'sleep 100', u'', u'', u'')" {
		t.Fatalf("pick %q", r)
	}
	f.ok("POST", "/api/pausejobs", "["+strconv.FormatInt(id, 10)+"]", nil)
	if r := f.worker("heartbeat", url.Values{"hostname": {"w"}, "jobId": {strconv.FormatInt(id, 10)}, "log": {""}}); r != "false" {
		t.Fatalf("heartbeat after pause %q", r)
	}
	if r := f.worker("endjob", url.Values{"hostname": {"w"}, "jobId": {strconv.FormatInt(id, 10)}, "errorCode": {"-9"}}); r != "None" {
		t.Fatalf("endjob %q", r)
	}
	if j := f.job(id); j.State != "PAUSED" || j.RunDone != 0 {
		t.Fatalf("job after pause %+v", j)
	}
	// A stopped worker gets nothing.
	f.ok("POST", "/api/startjobs", "["+strconv.FormatInt(id, 10)+"]", nil)
	f.ok("POST", "/api/stopworkers", `["w"]`, nil)
	if r := f.worker("pickjob", url.Values{"hostname": {"w"}}); r != noJob {
		t.Fatalf("stopped worker picked %q", r)
	}
}

func TestWhereDistinctAndAddJob(t *testing.T) {
	f := newFarm(t)
	f.create(`{"title":"a","command":"true","user":"bob"}`)
	f.create(`{"title":"b","command":"true","user":"alice","state":"PAUSED"}`)
	var jobs []client.Job
	f.ok("GET", "/api/jobs/where/?where_clause="+url.QueryEscape("user LIKE 'b%'"), "", &jobs)
	if len(jobs) != 1 || jobs[0].User != "bob" {
		t.Fatalf("where %+v", jobs)
	}
	var n int
	f.ok("GET", "/api/jobs/count/where/?where_clause="+url.QueryEscape("state='PAUSED' OR id=1"), "", &n)
	if n != 2 {
		t.Fatalf("count %d", n)
	}
	var users []map[string]string
	f.ok("GET", "/api/jobs/users/", "", &users)
	if len(users) != 2 || users[0]["user"] != "alice" {
		t.Fatalf("users %v", users)
	}
	resp, err := http.Get(f.srv.URL + "/xmlrpc/addjob?title=x&cmd=echo+x&dependencies=1,2&priority=7")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "3" {
		t.Fatalf("addjob %d %q", resp.StatusCode, b)
	}
	if j := f.job(3); j.Command != "echo x" || j.Priority != 7 || len(*j.Dependencies) != 2 {
		t.Fatalf("added job %+v", j)
	}
	resp, err = http.Get(f.srv.URL + "/xmlrpc/addjob?title=x&parent=zz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || string(b) != "-1" {
		t.Fatalf("bad addjob %d %q", resp.StatusCode, b)
	}
}

func TestCreateGroupWithChildrenInOneRequest(t *testing.T) {
	f := newFarm(t)
	var kids []string
	for i := 0; i < 50; i++ {
		kids = append(kids, `{"title":"frame `+strconv.Itoa(i)+`","command":"render `+strconv.Itoa(i)+`"}`)
	}
	body := `{"title":"shot","children":[` + strings.Join(kids, ",") + `,{"title":"sub","children":[{"command":"x"}]}]}`
	entries := f.store.index
	id := f.create(body)
	if f.store.index != entries+1 {
		t.Fatalf("%d Raft entries for one request", f.store.index-entries)
	}
	g := f.job(id)
	if g.Total != 51 || g.Command != "" {
		t.Fatalf("group %+v", g)
	}
	var children []client.Job
	f.ok("GET", "/api/jobs/"+strconv.FormatInt(id, 10)+"/children", "", &children)
	if len(children) != 51 || children[0].Title != "frame 0" || children[0].Parent != id || children[50].Total != 1 {
		t.Fatalf("children %d, first %+v", len(children), children[0])
	}
	for _, bad := range []string{
		`{"command":"x","children":[{"command":"y"}]}`,  // a group has no command
		`{"children":[{"command":"y","parent":3}]}`,     // parent comes from the nesting
		`{"children":{"command":"y"}}`,                  // not a list
		`{"children":[{"command":"y","colour":"red"}]}`, // unknown attribute inside
	} {
		before := f.store.State().Digest()
		if code, b := f.call("PUT", "/api/jobs", bad); code != 400 {
			t.Errorf("%s: %d %s", bad, code, b)
		}
		if f.store.State().Digest() != before {
			t.Errorf("%s changed the state", bad)
		}
	}
}

func TestCountElements(t *testing.T) {
	for raw, want := range map[string]int{
		`[]`: 0, ` [ ] `: 0, `[{}]`: 1, `[1,2,3]`: 3, `[{"a":[1,2]},{"b":"x,]"}]`: 2, `["\",",{}]`: 2, `[[],[[]]]`: 2,
	} {
		if got := countElements([]byte(raw), 100); got != want {
			t.Errorf("countElements(%s) = %d, want %d", raw, got, want)
		}
	}
	if got := countElements([]byte(`[1,2,3,4,5,6]`), 3); got <= 3 {
		t.Errorf("a list past the bound counts %d", got)
	}
}
