package freezer

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/internal/farmtest"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// fsmStore applies commands through a real FSM, as the leader would.
type fsmStore struct{ *farmtest.Store }

type tokenMap = farmtest.Tokens

const now = farmtest.Now

// farm is a state with projects a and b, tokens of each kind and the
// dialect mounted on an engine, as a coordinator mounts it.
type farm struct {
	t      *testing.T
	store  *fsmStore
	engine *gin.Engine
	h      *Handler

	mu    sync.Mutex
	clock time.Time // the leader's and the handler's clock
}

// now reads the farm's clock; advance moves it on.
func (f *farm) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

func (f *farm) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = f.clock.Add(d)
}

func newFarm(t *testing.T) *farm {
	gin.SetMode(gin.TestMode)
	f := &farm{t: t, store: &fsmStore{farmtest.NewStore(t)}, clock: time.Now()}
	f.store.Projects(t, "a", "b")
	tokens := farmtest.TokensOf(farmtest.Farm4...)
	svc := service.New(service.Config{Applier: service.Single(f.store), State: f.store.State, Clock: f.now})
	a := auth.New(auth.Config{}, func() auth.Tokens { return tokens }, nil)
	f.engine = gin.New()
	f.h = New(f.store, svc)
	f.h.clock = f.now
	f.h.Register(auth.Mount{Router: f.engine, Auth: a, Table: &auth.Table{}})
	return f
}

type reply struct {
	code int
	body string
}

// do sends a request with OpenStack's X-Auth-Token ("" for no token).
func (f *farm) do(token, method, path, body string) reply {
	f.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("X-Auth-Token", "secret-"+token)
	}
	rec := httptest.NewRecorder()
	f.engine.ServeHTTP(rec, req)
	return reply{rec.Code, rec.Body.String()}
}

func (f *farm) want(r reply, code int) reply {
	f.t.Helper()
	if r.code != code {
		f.t.Fatalf("status %d, want %d: %s", r.code, code, r.body)
	}
	return r
}

func decodeTo[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return v
}

// The samples of §1.6.
const (
	sampleCreate = `{"session_tag":20,"description":"Webapp Database backup ","hold_off":30,
		"schedule":{"schedule_interval":"1 hours","status":"scheduled","event":"start"}}`
	sampleUpdate = `{"session_tag": 250, "description": "Instance Database backup ", "hold_off": 50,
		"schedule": {"schedule_interval": "1 days", "status": "scheduled", "event": "start"}}`
	sampleSearch = `{"match_not": [{"schedule_interval": "10 days"}], "match": [{"hold_off": 50}]}`
	sampleJobs   = `{"jobs": {"0ae284d514eb47dd84154748b5056749": {"time_ended": 1493119342, "status": "scheduled",
		"result": "success", "client_id": "752d8bd43d654e7a840bbfda77ce41af_szaher", "time_started": 1493119341}}}`
)

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (f *farm) create(token, project, body string) string {
	f.t.Helper()
	r := f.want(f.do(token, http.MethodPost, "/v2/"+project+"/sessions", body), http.StatusCreated)
	id := decodeTo[map[string]string](f.t, r.body)["session_id"]
	if !hexID.MatchString(id) {
		f.t.Fatalf("session_id %q: 32 hex digits expected", id)
	}
	return id
}

func (f *farm) show(token, project, id string) map[string]any {
	f.t.Helper()
	return decodeTo[map[string]any](f.t, f.want(f.do(token, http.MethodGet, "/v2/"+project+"/sessions/"+id, ""), http.StatusOK).body)
}

func TestFreezerCreateShowDefaults(t *testing.T) {
	f := newFarm(t)
	id := f.create("user-a", "a", sampleCreate)
	got := f.show("read-a", "a", id)
	want := map[string]any{
		"session_id": id, "project_id": "a", "user_id": "user-a", "description": "Webapp Database backup ",
		"session_tag": 20.0, "hold_off": 30.0, "status": "active", "result": "", "last_start": "",
		"time_started": -1.0, "time_ended": -1.0, "time_start": -1.0, "time_end": -1.0, "_version": 1.0,
		"schedule": map[string]any{"schedule_interval": "1 hours", "status": "scheduled", "event": "start"},
	}
	for k, v := range want {
		if b1, b2 := mustJSON(t, got[k]), mustJSON(t, v); b1 != b2 {
			t.Errorf("%s = %s, want %s", k, b1, b2)
		}
	}
	// Defaults of §1.4, and the core session's name is the description.
	id2 := f.create("user-a", "a", `{"schedule":{}}`)
	got = f.show("user-a", "a", id2)
	if got["hold_off"] != 30.0 || got["session_tag"] != 0.0 {
		t.Errorf("defaults: %v", got)
	}
	if x, _ := f.store.State().Session(id); x.Name != "Webapp Database backup " || x.Kind != raftstore.SessionGroup || x.Project != "a" {
		t.Errorf("core session: %+v", x.Session)
	}
	// The trailing-slash collection, as python-freezerclient posts.
	r := f.want(f.do("user-a", http.MethodPost, "/v2/a/sessions/", sampleCreate), http.StatusCreated)
	if !hexID.MatchString(decodeTo[map[string]string](t, r.body)["session_id"]) {
		t.Errorf("trailing slash create: %s", r.body)
	}
	f.want(f.do("user-a", http.MethodGet, "/v2/a/sessions/", ""), http.StatusOK)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFreezerBadInput(t *testing.T) {
	f := newFarm(t)
	for _, c := range []struct {
		name, body string
		code       int
	}{
		{"empty", "", http.StatusBadRequest},
		{"no schedule", `{"description":"x"}`, http.StatusBadRequest},
		{"malformed", `{"schedule":`, StatusMalformed},
		{"not json", `hello`, StatusMalformed},
		{"not an object", `[1]`, http.StatusBadRequest},
		{"unknown schedule key", `{"schedule":{"when":"now"}}`, http.StatusBadRequest},
		{"bad event", `{"schedule":{"event":"go"}}`, http.StatusBadRequest},
		{"bad interval", `{"schedule":{"schedule_interval":"often"}}`, http.StatusBadRequest},
		{"bad date", `{"schedule":{"schedule_date":"tomorrow"}}`, http.StatusBadRequest},
		{"string tag", `{"schedule":{},"session_tag":"5"}`, http.StatusBadRequest},
		{"deep", `{"schedule":{},"x":` + strings.Repeat("[", MaxDepth+2) + strings.Repeat("]", MaxDepth+2) + `}`, http.StatusBadRequest},
		{"too large", `{"schedule":{},"description":"` + strings.Repeat("x", MaxBody) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		r := f.do("user-a", http.MethodPost, "/v2/a/sessions", c.body)
		if r.code != c.code {
			t.Errorf("%s: %d %s, want %d", c.name, r.code, r.body, c.code)
			continue
		}
		e := decodeTo[map[string]string](t, r.body)
		if e["title"] == "" || e["description"] == "" {
			t.Errorf("%s: error body %s: title and description expected", c.name, r.body)
		}
	}
	if r := f.do("user-a", http.MethodPost, "/v2/a/sessions", `{"schedule":`); !strings.Contains(r.body, `"Malformed JSON"`) {
		t.Errorf("753 title: %s", r.body)
	}
	for _, q := range []string{"limit=-1", "limit=x", "limit=100000", "offset=100000"} {
		f.want(f.do("user-a", http.MethodGet, "/v2/a/sessions?"+q, ""), http.StatusBadRequest)
	}
	f.want(f.do("user-a", http.MethodGet, "/v2/a/sessions", `{"match":`), StatusMalformed)
	f.want(f.do("user-a", http.MethodGet, "/v2/a/sessions", `{"match":{"a":1}}`), http.StatusBadRequest)
}

func TestFreezerPatchReplaceDelete(t *testing.T) {
	f := newFarm(t)
	id := f.create("user-a", "a", sampleCreate)
	r := f.want(f.do("user-a", http.MethodPatch, "/v2/a/sessions/"+id, sampleUpdate), http.StatusOK)
	if got := decodeTo[map[string]any](t, r.body); got["session_id"] != id || got["version"] != 2.0 {
		t.Errorf("patch answer %s", r.body)
	}
	got := f.show("user-a", "a", id)
	if got["session_tag"] != 250.0 || got["hold_off"] != 50.0 || got["user_id"] != "user-a" {
		t.Errorf("after patch: %v", got)
	}
	if x, _ := f.store.State().Session(id); x.Name != "Instance Database backup " {
		t.Errorf("core name %q", x.Name)
	}
	// jobs merge key by key; the collection path takes the id in the body.
	f.want(f.do("user-a", http.MethodPatch, "/v2/a/sessions/"+id, sampleJobs), http.StatusOK)
	f.want(f.do("user-a", http.MethodPatch, "/v2/a/sessions", `{"session_id":"`+id+`","jobs":{"j2":{"status":"running"}}}`), http.StatusOK)
	jobs, _ := f.show("user-a", "a", id)["jobs"].(map[string]any)
	if len(jobs) != 2 || jobs["j2"] == nil || jobs["0ae284d514eb47dd84154748b5056749"] == nil {
		t.Errorf("merged jobs: %v", jobs)
	}
	f.want(f.do("user-a", http.MethodPatch, "/v2/a/sessions", `{"jobs":{}}`), http.StatusBadRequest)
	f.want(f.do("user-a", http.MethodPatch, "/v2/a/sessions/"+id, `{"schedule":{"event":"later"}}`), http.StatusBadRequest)
	f.want(f.do("user-a", http.MethodPatch, "/v2/a/sessions/"+id, `{`), StatusMalformed)
	f.want(f.do("user-a", http.MethodPatch, "/v2/a/sessions/"+strings.Repeat("0", 32), `{"hold_off":1}`), http.StatusNotFound)

	// Replace by POST (freezer-api) and PUT: the document is the body's.
	for i, m := range []string{http.MethodPost, http.MethodPut} {
		r = f.want(f.do("user-a", m, "/v2/a/sessions/"+id, `{"schedule":{"schedule_interval":"10 days"},"description":"replaced"}`), http.StatusCreated)
		if got := decodeTo[map[string]any](t, r.body); got["version"] != float64(5+i) {
			t.Errorf("%s replace answer %s", m, r.body)
		}
		got = f.show("user-a", "a", id)
		if got["description"] != "replaced" || got["jobs"] != nil || got["hold_off"] != 30.0 || got["user_id"] != "user-a" {
			t.Errorf("after %s replace: %v", m, got)
		}
	}
	f.want(f.do("user-a", http.MethodPut, "/v2/a/sessions/"+id, `{"description":"no schedule"}`), http.StatusBadRequest)
	// Replace of an id that does not exist creates it with that id, as
	// freezer-api does (python-freezerclient's create(doc, session_id));
	// an id the core cannot take, or another project's, is 404.
	given := strings.Repeat("1", 32)
	r = f.want(f.do("user-a", http.MethodPut, "/v2/a/sessions/"+given, `{"schedule":{},"description":"mine"}`), http.StatusCreated)
	if r.body != `{"session_id":"`+given+`","version":1}` || f.show("read-a", "a", given)["description"] != "mine" {
		t.Errorf("replace-create: %s", r.body)
	}
	f.want(f.do("user-a", http.MethodPut, "/v2/a/sessions/NOT-HEX", `{"schedule":{}}`), http.StatusNotFound)
	other := f.create("user-b", "b", `{"schedule":{}}`)
	f.want(f.do("user-a", http.MethodPut, "/v2/a/sessions/"+other, `{"schedule":{}}`), http.StatusNotFound)
	if f.show("user-b", "b", other)["project_id"] != "b" {
		t.Error("another project's session was taken over")
	}

	f.want(f.do("user-a", http.MethodDelete, "/v2/a/sessions/"+id, ""), http.StatusNoContent)
	if _, ok := f.store.State().Session(id); ok {
		t.Error("the core session outlived its delete")
	}
	f.want(f.do("user-a", http.MethodGet, "/v2/a/sessions/"+id, ""), http.StatusNotFound)
	f.want(f.do("user-a", http.MethodDelete, "/v2/a/sessions/"+id, ""), http.StatusNoContent) // as freezer-api
	f.want(f.do("user-a", http.MethodGet, "/v2/a/sessions/not-an-id", ""), http.StatusNotFound)
}

func TestFreezerListSearchPaging(t *testing.T) {
	f := newFarm(t)
	wanted := f.create("user-a", "a", sampleUpdate) // hold_off 50, 1 days
	f.want(f.do("user-a", http.MethodPatch, "/v2/a/sessions/"+wanted, sampleJobs), http.StatusOK)
	f.create("user-a", "a", `{"hold_off":50,"schedule":{"schedule_interval":"10 days"}}`)
	f.create("user-a", "a", `{"hold_off":40,"schedule":{"schedule_interval":"1 days"}}`)
	f.create("user-b", "b", sampleUpdate)

	list := func(query, body string) []map[string]any {
		t.Helper()
		r := f.want(f.do("read-a", http.MethodGet, "/v2/a/sessions"+query, body), http.StatusOK)
		return decodeTo[map[string][]map[string]any](t, r.body)["sessions"]
	}
	if got := list("", ""); len(got) != 3 {
		t.Fatalf("list: %d sessions, want project a's 3", len(got))
	}
	got := list("", sampleSearch)
	if len(got) != 1 || got[0]["session_id"] != wanted {
		t.Fatalf("sample search: %v", got)
	}
	if _, ok := got[0]["_version"]; ok {
		t.Error("a listed session has _version")
	}
	// Flattened keys: one inside jobs, one inside schedule.
	if got := list("", `{"match":[{"client_id":"752d8bd43d654e7a840bbfda77ce41af_szaher"}]}`); len(got) != 1 || got[0]["session_id"] != wanted {
		t.Errorf("match in jobs: %v", got)
	}
	if got := list("", `{"match":[{"schedule_interval":"1 days"}]}`); len(got) != 2 {
		t.Errorf("match in schedule: %d", len(got))
	}
	if got := list("", `{"match_not":[{"hold_off":50.0}]}`); len(got) != 1 || got[0]["hold_off"] != 40.0 {
		t.Errorf("match_not: %v", got)
	}
	if got := list("", `{"match":[{"_all":"[{\"hold_off\": 40}]"}]}`); len(got) != 1 {
		t.Errorf("_all: %v", got)
	}
	// Paging, after the search as freezer-api applies it.
	all := list("", "")
	if got := list("?limit=2", ""); len(got) != 2 || got[0]["session_id"] != all[0]["session_id"] {
		t.Errorf("limit 2: %v", got)
	}
	if got := list("?limit=2&offset=2", ""); len(got) != 1 || got[0]["session_id"] != all[2]["session_id"] {
		t.Errorf("offset 2: %v", got)
	}
	if got := list("?offset=1", `{"match":[{"hold_off":50}]}`); len(got) != 1 {
		t.Errorf("offset over a search: %v", got)
	}
	if got := list("?limit=0", ""); len(got) != 0 {
		t.Errorf("limit 0: %v", got)
	}
	terms := `{"match":[` + strings.Repeat(`{"a":1},`, MaxSearchTerms) + `{"a":1}]}`
	f.want(f.do("read-a", http.MethodGet, "/v2/a/sessions", terms), http.StatusBadRequest)
}

func TestFreezerAccess(t *testing.T) {
	f := newFarm(t)
	idA := f.create("user-a", "a", sampleCreate)
	idB := f.create("user-b", "b", sampleCreate)
	routes := []struct{ method, path, body string }{
		{http.MethodGet, "/v2/%s/sessions", ""},
		{http.MethodGet, "/v2/%s/sessions/", ""},
		{http.MethodPost, "/v2/%s/sessions", sampleCreate},
		{http.MethodPost, "/v2/%s/sessions/", sampleCreate},
		{http.MethodPatch, "/v2/%s/sessions", `{"session_id":"` + idB + `","hold_off":1}`},
		{http.MethodPatch, "/v2/%s/sessions/", `{"session_id":"` + idB + `","hold_off":1}`},
		{http.MethodGet, "/v2/%s/sessions/" + idB, ""},
		{http.MethodPatch, "/v2/%s/sessions/" + idB, `{"hold_off":1}`},
		{http.MethodPost, "/v2/%s/sessions/" + idB, sampleCreate},
		{http.MethodPut, "/v2/%s/sessions/" + idB, sampleCreate},
		{http.MethodDelete, "/v2/%s/sessions/" + idB, ""},
	}
	for _, r := range routes {
		path := strings.Replace(r.path, "%s", "b", 1)
		if got := f.do("", r.method, path, r.body); got.code != http.StatusUnauthorized || !strings.Contains(got.body, `"title"`) {
			t.Errorf("%s %s without a token: %d %s", r.method, path, got.code, got.body)
		}
		if got := f.do("user-a", r.method, path, r.body); got.code != http.StatusForbidden || !strings.Contains(got.body, `"title"`) {
			t.Errorf("%s %s as user-a: %d %s, want 403", r.method, path, got.code, got.body)
		}
		if r.method != http.MethodGet {
			if got := f.do("read-a", r.method, strings.Replace(r.path, "%s", "a", 1), r.body); got.code != http.StatusForbidden {
				t.Errorf("%s as read-a: %d, want 403", r.method, got.code)
			}
		}
	}
	// Project b's session named under project a's path is none of a's.
	f.want(f.do("user-a", http.MethodGet, "/v2/a/sessions/"+idB, ""), http.StatusNotFound)
	f.want(f.do("user-a", http.MethodPatch, "/v2/a/sessions/"+idB, `{"hold_off":1}`), http.StatusNotFound)
	f.want(f.do("user-a", http.MethodDelete, "/v2/a/sessions/"+idB, ""), http.StatusNoContent)
	f.show("user-b", "b", idB)
	f.show("admin", "a", idA)
}
