package sas

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/internal/farmtest"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

const now = farmtest.Now

// farm is a state with projects a and b, host h-a (sh) serving a, tokens
// of each kind, and the dialect mounted as a coordinator mounts it.
type farm struct {
	t      *testing.T
	store  *farmtest.Store
	h      *Handler
	engine *gin.Engine
}

func newFarm(t *testing.T) *farm {
	gin.SetMode(gin.TestMode)
	f := &farm{t: t, store: farmtest.NewStore(t)}
	f.store.Projects(t, "a", "b")
	f.ok(&raftstore.WorkerRegister{Now: now, Name: "h-a", Projects: []string{"a"}, Host: &raftstore.HostInfo{Name: "h-a", Slots: 1,
		Interpreters: []raftstore.HostInterpreter{{Name: "sh", Path: "/bin/sh"}}}})
	tokens := farmtest.TokensOf(farmtest.Farm4...)
	svc := service.New(service.Config{Applier: service.Single(f.store), State: f.store.State})
	a := auth.New(auth.Config{}, func() auth.Tokens { return tokens }, nil)
	f.h = New(f.store, svc)
	f.h.now = func() time.Time { return time.Unix(0, now+10e9) }
	f.engine = gin.New()
	f.h.Register(auth.Mount{Router: f.engine, Auth: a, Table: &auth.Table{}})
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

type reply struct {
	code   int
	body   string
	header http.Header
}

func (f *farm) do(token, method, path, body string, hdr ...string) reply {
	f.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer secret-"+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	return reply{rec.Code, rec.Body.String(), rec.Header()}
}

// session creates a session of the sh context as user-a.
func (f *farm) session() (string, map[string]json.RawMessage) {
	f.t.Helper()
	r := f.do("user-a", http.MethodPost, Prefix+"/contexts/"+contextID("sh")+"/sessions",
		`{"name":"MySession","description":"This is my test session.","attributes":{"sessionInactiveTimeout":60},"environment":{"options":["memsize=4g","fullstimer"]}}`)
	var m map[string]json.RawMessage
	if r.code != http.StatusCreated || json.Unmarshal([]byte(r.body), &m) != nil {
		f.t.Fatalf("create: %d %s", r.code, r.body)
	}
	var id string
	_ = json.Unmarshal(m["id"], &id)
	if r.header.Get("Location") != Prefix+"/sessions/"+id || r.header.Get("ETag") == "" ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "application/vnd.sas.compute.session+json") {
		f.t.Fatalf("create headers %v", r.header)
	}
	return id, m
}

func (f *farm) submit(session string, code ...string) string {
	f.t.Helper()
	b, _ := json.Marshal(map[string]any{"code": code})
	r := f.do("user-a", http.MethodPost, Prefix+"/sessions/"+session+"/jobs", string(b))
	var j Job
	if r.code != http.StatusCreated || json.Unmarshal([]byte(r.body), &j) != nil || j.State != jobPending && j.ID != "0" {
		f.t.Fatalf("submit: %d %s", r.code, r.body)
	}
	return j.ID
}

// run picks the host's next job and ends it with this output.
func (f *farm) run(stdout, stderr string, exit int) int64 {
	f.t.Helper()
	a, _ := f.ok(&raftstore.Pick{Now: now + 1e9, Worker: "h-a"}).(*raftstore.Assignment)
	if a == nil {
		f.t.Fatal("nothing to pick")
	}
	f.ok(&raftstore.Report{Now: now + 2e9, Worker: "h-a", JobID: a.JobID, AttemptID: a.AttemptID, Log: []byte(stdout), Stderr: []byte(stderr), Done: true, ExitCode: exit})
	return a.JobID
}

// TestReferenceSampleShape checks §5.5's sample as a vector: every field
// of the reference session and its link rels, with href == uri.
func TestReferenceSampleShape(t *testing.T) {
	f := newFarm(t)
	id, m := f.session()
	for _, k := range []string{"listingStatistics", "logStatistics", "serviceAPIVersion", "sessionConditionCode", "stateElapsedTime",
		"attributes", "state", "owner", "environment", "creationTimeStamp", "serverId", "description", "id", "links", "version", "name"} {
		if _, ok := m[k]; !ok {
			t.Errorf("the session lacks %q", k)
		}
	}
	r := f.do("read-a", http.MethodGet, Prefix+"/sessions/"+id, "")
	var s Session
	if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &s) != nil {
		t.Fatalf("get: %d %s", r.code, r.body)
	}
	if s.Name != "MySession" || s.Description != "This is my test session." || s.Owner != "user-a" || s.State != stateIdle ||
		s.Version != 2 || s.Attributes["sessionInactiveTimeout"] != float64(60) || string(s.Environment) != `{"options":["memsize=4g","fullstimer"]}` ||
		s.ServerID+sessionSuffix != s.ID || !strings.HasSuffix(s.CreationTimeStamp, "Z") {
		t.Fatalf("session %+v", s)
	}
	rels := map[string]Link{}
	for _, l := range s.Links {
		rels[l.Rel] = l
		if l.Href != l.URI || !strings.HasPrefix(l.Href, Prefix+"/sessions/"+id) {
			t.Errorf("link %+v", l)
		}
	}
	for _, rel := range []string{"self", "alternate", "state", "cancel", "delete", "execute", "jobs", "files", "assignFileref", "librefs", "log", "listing", "results"} {
		if _, ok := rels[rel]; !ok {
			t.Errorf("no link %q", rel)
		}
	}
	if l := rels["cancel"]; l.Method != http.MethodPut || l.Type != nil || !strings.HasSuffix(l.Href, "/state?value=canceled") {
		t.Errorf("cancel link %+v", l)
	}
	if l := rels["execute"]; l.Method != http.MethodPost || l.Type != "application/vnd.sas.compute.job.request" || l.ResponseType != "application/vnd.sas.compute.job" {
		t.Errorf("execute link %+v", l)
	}
	// The context lists it by its createSession link.
	r = f.do("read-a", http.MethodGet, Prefix+"/contexts?limit=999999", "")
	var coll struct {
		Items []Context `json:"items"`
		Count int       `json:"count"`
		Limit int       `json:"limit"`
	}
	if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &coll) != nil || coll.Count != 1 || coll.Limit != MaxLimit ||
		coll.Items[0].Name != "sh" || coll.Items[0].Links[2].Rel != "createSession" {
		t.Fatalf("contexts: %d %s", r.code, r.body)
	}
}

// TestTwoJobsInOrderAndLogPaging runs two jobs in a session, in order,
// and pages their logs: start/limit, an empty page at the end, types,
// the listing and the session's concatenation.
func TestTwoJobsInOrderAndLogPaging(t *testing.T) {
	f := newFarm(t)
	id, _ := f.session()
	j1 := f.submit(id, "echo a", "echo b")
	j2 := f.submit(id, "echo c")
	if r := f.do("read-a", http.MethodGet, Prefix+"/sessions/"+id+"/state", ""); r.body != stateRunning {
		t.Fatalf("state with queued code: %s", r.body)
	}
	if got := f.run("a\nb\n", "WARNING: w\n", 0); itoa(got) != j1 {
		t.Fatalf("first run is %d, want %s", got, j1)
	}
	if got := f.run("c\n", "boom\n", 3); itoa(got) != j2 {
		t.Fatalf("second run is %d, want %s", got, j2)
	}
	base := Prefix + "/sessions/" + id
	if r := f.do("read-a", http.MethodGet, base+"/jobs/"+j1+"/state", ""); r.body != jobCompleted {
		t.Fatalf("job 1: %s", r.body)
	}
	var j Job
	if r := f.do("read-a", http.MethodGet, base+"/jobs/"+j2, ""); json.Unmarshal([]byte(r.body), &j) != nil || j.State != jobError || j.JobConditionCode != 3 ||
		j.CompletedTimeStamp == "" || j.ListingStatistics.LineCount != 1 {
		t.Fatalf("job 2: %s", r.body)
	}
	var s Session
	if r := f.do("read-a", http.MethodGet, base, ""); json.Unmarshal([]byte(r.body), &s) != nil || s.State != stateIdle || s.SessionConditionCode != 3 ||
		s.ListingStatistics.LineCount != 3 || s.LogStatistics.LineCount < 5 {
		t.Fatalf("session: %s", r.body)
	}
	page := func(path string) []LogLine {
		t.Helper()
		r := f.do("read-a", http.MethodGet, path, "")
		var c struct {
			Items []LogLine `json:"items"`
		}
		if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &c) != nil {
			t.Fatalf("%s: %d %s", path, r.code, r.body)
		}
		return c.Items
	}
	var all []string
	for start := 0; ; start += 2 {
		items := page(base + "/jobs/" + j1 + "/log?start=" + itoa(int64(start)) + "&limit=2")
		if len(items) == 0 {
			break
		}
		for _, l := range items {
			all = append(all, l.Type+":"+l.Line)
		}
	}
	if len(all) < 3 || all[0] != "normal:a" || all[1] != "normal:b" || all[2] != "warning:WARNING: w" {
		t.Fatalf("job 1's log %q", all)
	}
	if items := page(base + "/log?type=error"); len(items) != 1 || items[0].Line != "boom" {
		t.Fatalf("errors: %+v", items)
	}
	if items := page(base + "/listing?start=1&limit=5"); len(items) != 2 || items[0].Line != "b" || items[1].Line != "c" {
		t.Fatalf("listing: %+v", items)
	}
	if r := f.do("read-a", http.MethodGet, base+"/listing", "", "Accept", "text/plain"); r.body != "a\nb\nc\n" {
		t.Fatalf("listing as text: %q", r.body)
	}
	// A finished job's log long poll answers at once.
	if items := page(base + "/jobs/" + j2 + "/log?start=99&timeout=60"); len(items) != 0 {
		t.Fatalf("past the end: %+v", items)
	}
	// Filter and paging of jobs.
	r := f.do("read-a", http.MethodGet, base+"/jobs?filter=eq(state,'error')", "")
	if !strings.Contains(r.body, `"count":1`) || !strings.Contains(r.body, `"id":"`+j2+`"`) {
		t.Fatalf("jobs filtered: %s", r.body)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// waiting waits (polling with a deadline) until n requests long poll.
func (f *farm) waiting(n int) {
	f.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); len(f.h.waiters) != n; {
		if time.Now().After(deadline) {
			f.t.Fatalf("%d waiters, want %d", len(f.h.waiters), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStateLongPoll: a long poll returns with the new state when it
// changes, 304 on expiry; without If-None-Match wait is ignored; a cancel
// with a stale If-Match works.
func TestStateLongPoll(t *testing.T) {
	f := newFarm(t)
	id, _ := f.session()
	j := f.submit(id, "sleep 9")
	path := Prefix + "/sessions/" + id + "/jobs/" + j + "/state"
	r := f.do("read-a", http.MethodGet, path, "")
	etag := r.header.Get("ETag")
	if r.body != jobPending || etag == "" {
		t.Fatalf("state: %s %v", r.body, r.header)
	}
	if r := f.do("read-a", http.MethodGet, path+"?wait=1", "", "If-None-Match", etag); r.code != http.StatusNotModified {
		t.Fatalf("expiry: %d %s", r.code, r.body)
	}
	if r := f.do("read-a", http.MethodGet, path+"?wait=60", ""); r.code != http.StatusOK || r.body != jobPending {
		t.Fatalf("no If-None-Match: %d %s", r.code, r.body)
	}
	done := make(chan reply, 1)
	go func() { done <- f.do("read-a", http.MethodGet, path+"?wait=60", "", "If-None-Match", etag) }()
	f.waiting(1)
	a, _ := f.ok(&raftstore.Pick{Now: now + 1e9, Worker: "h-a"}).(*raftstore.Assignment)
	if r := <-done; r.code != http.StatusOK || r.body != jobRunning || r.header.Get("ETag") == etag {
		t.Fatalf("on change: %d %s %v", r.code, r.body, r.header)
	}
	// The session's state long polls alike.
	spath := Prefix + "/sessions/" + id + "/state"
	sr := f.do("read-a", http.MethodGet, spath, "")
	go func() {
		done <- f.do("read-a", http.MethodGet, spath+"?wait=60", "", "If-None-Match", sr.header.Get("ETag"))
	}()
	f.waiting(1)
	// Cancel with the first, stale ETag: not 412.
	if r := f.do("user-a", http.MethodPut, path+"?value=canceled", "", "If-Match", etag); r.code != http.StatusOK || r.body != jobCanceled {
		t.Fatalf("cancel: %d %s", r.code, r.body)
	}
	if r := <-done; r.code != http.StatusOK || r.body != stateIdle {
		t.Fatalf("session on change: %d %s", r.code, r.body)
	}
	if _, err := f.store.Apply(context.Background(), &raftstore.Report{Now: now + 2e9, Worker: "h-a", JobID: a.JobID, AttemptID: a.AttemptID, Done: true}); err == nil {
		t.Fatal("the canceled attempt's report was taken")
	}
	// A session's cancel (the older ?state= spelling) cancels queued code.
	j2 := f.submit(id, "sleep 9")
	if r := f.do("user-a", http.MethodPut, spath+"?state=canceled", ""); r.code != http.StatusOK || r.body != stateIdle {
		t.Fatalf("session cancel: %d %s", r.code, r.body)
	}
	if r := f.do("read-a", http.MethodGet, Prefix+"/sessions/"+id+"/jobs/"+j2+"/state", ""); r.body != jobCanceled {
		t.Fatalf("queued job after a session cancel: %s", r.body)
	}
	// The host's agent goes silent: pending.
	f.ok(&raftstore.WorkerLost{Now: now + 3e9, Names: []string{"h-a"}})
	if r := f.do("read-a", http.MethodGet, spath, ""); r.body != statePending {
		t.Fatalf("lost host: %s", r.body)
	}
}

// TestAccessAndBadInput: 401, 403, 404 (5837), and bad input answered in
// SAS's error shape.
func TestAccessAndBadInput(t *testing.T) {
	f := newFarm(t)
	id, _ := f.session()
	base := Prefix + "/sessions/" + id
	errOf := func(r reply) ErrorBody {
		var e ErrorBody
		if json.Unmarshal([]byte(r.body), &e) != nil || e.Version != 2 || e.HTTPStatusCode != r.code {
			t.Fatalf("error body %d %s", r.code, r.body)
		}
		return e
	}
	if r := f.do("", http.MethodGet, base, ""); r.code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", r.code)
	}
	if r := f.do("user-b", http.MethodGet, base, ""); r.code != http.StatusForbidden {
		t.Fatalf("other project: %d", r.code)
	} else {
		errOf(r)
	}
	if r := f.do("read-a", http.MethodPost, base+"/jobs", `{"code":["true"]}`); r.code != http.StatusForbidden {
		t.Fatalf("read token submits: %d", r.code)
	}
	for _, p := range []string{"nope", strings.Repeat("0", 36) + sessionSuffix, "00000000-0000-0000-0000-000000000000-ses0000"} {
		if r := f.do("read-a", http.MethodGet, Prefix+"/sessions/"+p, ""); r.code != http.StatusNotFound || errOf(r).ErrorCode != CodeSessionNotFound {
			t.Fatalf("%s: %d %s", p, r.code, r.body)
		}
	}
	cases := []struct {
		method, path, body string
		code, errorCode    int
	}{
		{http.MethodPost, base + "/jobs", `{"code":[]}`, 400, CodeNoCode},
		{http.MethodPost, base + "/jobs", `{"codeUri":"/files/files/x"}`, 400, 400},
		{http.MethodPost, base + "/jobs", `{"code":["a` + "\x00" + `"]}`, 400, 400},
		{http.MethodPost, base + "/jobs", `{"code":`, 400, 400},
		{http.MethodPost, base + "/jobs", `{"code":["` + strings.Repeat("x", MaxBody) + `"]}`, 413, 413},
		{http.MethodPost, base + "/jobs", `{"code":["` + strings.Repeat("x", 20<<10) + `"]}`, 413, 413},
		{http.MethodGet, Prefix + "/sessions?filter=eq(name", "", 400, CodeBadFilter},
		{http.MethodGet, Prefix + "/sessions?filter=lt(name,'a')", "", 400, CodeBadFilter},
		{http.MethodGet, Prefix + "/sessions?filter=eq(secret,'a')", "", 400, CodeBadFilter},
		{http.MethodGet, Prefix + "/sessions?filter=" + strings.Repeat("and(", 20), "", 400, CodeBadFilter},
		{http.MethodGet, Prefix + "/sessions?start=-1", "", 400, 400},
		{http.MethodGet, Prefix + "/sessions?limit=0", "", 400, 400},
		{http.MethodGet, base + "/log?type=bogus", "", 400, 400},
		{http.MethodGet, base + "/state?wait=abc", "", 400, 400},
		{http.MethodPut, base + "/state?value=running", "", 400, 400},
		{http.MethodGet, base + "/jobs/99999", "", 404, 404},
		{http.MethodPost, Prefix + "/contexts/nope/sessions", `{}`, 404, 404},
		{http.MethodPost, Prefix + "/contexts/" + contextID("sh") + "/sessions", `{"name":"` + strings.Repeat("n", MaxName+1) + `"}`, 413, 413},
		{http.MethodPost, Prefix + "/contexts/" + contextID("sh") + "/sessions", `{"attributes":{"sessionInactiveTimeout":-1}}`, 400, 400},
	}
	for _, c := range cases {
		r := f.do("user-a", c.method, c.path, c.body)
		if r.code != c.code || errOf(r).ErrorCode != c.errorCode {
			t.Errorf("%s %s %.40q: %d %.200s, want %d (%d)", c.method, c.path, c.body, r.code, r.body, c.code, c.errorCode)
		}
	}
	// A session of another project is not listed; one's own is, with
	// the filter language.
	for filter, want := range map[string]int{
		"": 1, "eq(name,'MySession')": 1, "and(eq(owner,'user-a'),startsWith(name,'My'))": 1,
		"or(eq(name,'x'),contains(name,'Sess'))": 1, "ne(state,'idle')": 0, "eq(name,'it''s')": 0,
	} {
		r := f.do("user-a", http.MethodGet, Prefix+"/sessions?filter="+filter, "")
		var c Collection
		if r.code != http.StatusOK || json.Unmarshal([]byte(r.body), &c) != nil || c.Count != want {
			t.Errorf("filter %q: %d %s, want %d", filter, r.code, r.body, want)
		}
	}
	if r := f.do("user-b", http.MethodGet, Prefix+"/sessions", ""); !strings.Contains(r.body, `"count":0`) {
		t.Fatalf("user-b lists %s", r.body)
	}
	if r := f.do("read-a", http.MethodHead, base+"/data/USER", ""); r.code != http.StatusOK {
		t.Fatalf("HEAD data/USER: %d", r.code)
	}
	if r := f.do("read-a", http.MethodHead, base+"/data/MYLIB", ""); r.code != http.StatusNotFound {
		t.Fatalf("HEAD data/MYLIB: %d", r.code)
	}
	// An expired session is gone: 404 with 5837.
	x, _ := f.store.State().Session(strings.ReplaceAll(strings.TrimSuffix(id, sessionSuffix), "-", ""))
	f.ok(&raftstore.SessionExpire{Now: x.LastActivity + 61e9, IDs: []string{x.ID}})
	if r := f.do("read-a", http.MethodGet, base, ""); r.code != http.StatusNotFound || errOf(r).ErrorCode != CodeSessionNotFound {
		t.Fatalf("expired: %d %s", r.code, r.body)
	}
}

// TestFilterParser covers the filter language's forms.
func TestFilterParser(t *testing.T) {
	f := fieldsOf{"name": "it's", "state": "idle", "owner": "u", "id": "x"}
	for s, want := range map[string]bool{
		`eq(name,'it''s')`: true, `eq(name,"it's")`: true, `eq(state,idle)`: true, `ne(state, idle)`: false,
		`and(eq(owner,u),eq(id,x),contains(name,'s'))`: true, `or(eq(owner,v),startsWith(name,'it'))`: true,
	} {
		e, err := parseFilter(s)
		if err != nil || e.match(f) != want {
			t.Errorf("%s: %v %v", s, err, err == nil && e.match(f))
		}
	}
	var bad []string
	for _, s := range []string{"", "eq", "eq(name)", "eq(name,'x'", "and(eq(name,x))", "eq(name,'x') junk", strings.Repeat("x", MaxFilter+1)} {
		if _, err := parseFilter(s); err == nil {
			bad = append(bad, s)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Fatalf("accepted %q", bad)
	}
}
