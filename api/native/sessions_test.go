package native

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// sessionFarm is farmTest with the session routes mounted on their own
// engine, and writers of each project.
func sessionFarm(t *testing.T) *farmTest {
	f := newFarmTest(t)
	tokens := tokenMap{}
	for _, tok := range []raftstore.Token{
		{Name: "admin", Role: raftstore.RoleAdmin},
		{Name: "user-a", Role: raftstore.RoleUser, Projects: []string{"a"}},
		{Name: "read-a", Role: raftstore.RoleRead, Projects: []string{"a"}},
		{Name: "user-b", Role: raftstore.RoleUser, Projects: []string{"b"}},
	} {
		tokens[auth.Hash("secret-"+tok.Name)] = tok
	}
	svc := service.New(service.Config{Applier: service.Single(f.store), State: f.store.State})
	e := gin.New()
	m := auth.Mount{Router: e, Auth: auth.New(auth.Config{}, func() auth.Tokens { return tokens }, nil), Abort: apierr.Abort, Table: &auth.Table{}}
	NewSessions(f.store, svc).Register(m)
	f.engine = e
	return f
}

func (f *farmTest) openSession(token, body string) Session {
	f.t.Helper()
	code, out := f.do(token, http.MethodPost, PathSessions, body)
	var x Session
	if code != http.StatusCreated || json.Unmarshal([]byte(out), &x) != nil {
		f.t.Fatalf("open %s as %s: %d %s", body, token, code, out)
	}
	return x
}

func TestSessionRoutes(t *testing.T) {
	f := sessionFarm(t)
	x := f.openSession("user-a", `{"kind":"context","interpreter":"sh","project":"a","name":"k","labels":{"l":"v"},"doc":{"kernel":"sh"},"inactive_timeout":60}`)
	if len(x.ID) != 32 || x.Host != "h-a" || x.State != "open" || x.Busy || x.Labels["l"] != "v" || string(x.Doc) != `{"kernel":"sh"}` || x.Timeout != 60 {
		t.Fatalf("opened %+v", x)
	}
	path := PathSessions + "/" + x.ID
	code, out := f.do("user-a", http.MethodPost, path+"/jobs", `{"code":"echo one","title":"first"}`)
	var j SessionJob
	if code != http.StatusCreated || json.Unmarshal([]byte(out), &j) != nil || j.State != "waiting" || j.Title != "first" || j.ExitCode != nil {
		t.Fatalf("submit: %d %s", code, out)
	}
	var jobs []SessionJob
	f.get("read-a", path+"/jobs", &jobs)
	if len(jobs) != 1 || jobs[0].ID != j.ID {
		t.Fatalf("jobs %+v", jobs)
	}
	var got Session
	f.get("read-a", path, &got)
	if got.Jobs != 1 || got.Name != "k" {
		t.Fatalf("get %+v", got)
	}
	if code, out := f.do("user-a", http.MethodPatch, path, `{"name":"renamed","doc":[1]}`); code != http.StatusOK || !strings.Contains(out, `"renamed"`) || !strings.Contains(out, `"doc":[1]`) {
		t.Fatalf("patch: %d %s", code, out)
	}
	// Lists: the token's projects only, ?project= narrows.
	f.openSession("user-b", `{"kind":"group","project":"b"}`)
	var list []Session
	if f.get("read-a", PathSessions, &list); len(list) != 1 || list[0].ID != x.ID {
		t.Fatalf("list as read-a: %+v", list)
	}
	if f.get("admin", PathSessions, &list); len(list) != 2 {
		t.Fatalf("list as admin: %+v", list)
	}
	if f.get("admin", PathSessions+"?project=b&limit=5", &list); len(list) != 1 || list[0].Project != "b" {
		t.Fatalf("list of b: %+v", list)
	}
	if code, _ := f.do("user-a", http.MethodDelete, path, ""); code != http.StatusBadRequest {
		t.Fatalf("delete an open session: %d", code)
	}
	if code, out := f.do("user-a", http.MethodPost, path+"/close", ""); code != http.StatusOK || !strings.Contains(out, `"state":"closed"`) {
		t.Fatalf("close: %d %s", code, out)
	}
	if f.get("read-a", path+"/jobs", &jobs); jobs[0].State != "canceled" {
		t.Fatalf("after close: %+v", jobs)
	}
	if code, _ := f.do("user-a", http.MethodDelete, path, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := f.do("read-a", http.MethodGet, path, ""); code != http.StatusNotFound {
		t.Fatalf("get a deleted session: %d", code)
	}
}

func TestSessionRoutesRefuse(t *testing.T) {
	f := sessionFarm(t)
	a := f.openSession("user-a", `{"kind":"group","project":"a"}`)
	b := f.openSession("user-b", `{"kind":"group","project":"b"}`)
	big := strings.Repeat("x", raftstore.MaxSessionDoc)
	for _, c := range []struct {
		token, method, path, body string
		want                      int
	}{
		{"user-a", http.MethodPost, PathSessions, `{"kind":"group","project":"b"}`, http.StatusForbidden},
		{"read-a", http.MethodPost, PathSessions, `{"kind":"group","project":"a"}`, http.StatusForbidden},
		{"user-a", http.MethodGet, PathSessions + "/" + b.ID, "", http.StatusForbidden},
		{"user-a", http.MethodPost, PathSessions + "/" + b.ID + "/close", "", http.StatusForbidden},
		{"read-a", http.MethodPost, PathSessions + "/" + a.ID + "/jobs", `{"code":"true"}`, http.StatusForbidden},
		{"user-a", http.MethodPost, PathSessions, `{"kind":"kernel"}`, http.StatusBadRequest},
		{"user-a", http.MethodPost, PathSessions, `{"kind":"context","interpreter":"ruby"}`, http.StatusBadRequest},
		{"user-a", http.MethodPost, PathSessions, `{"kind":`, http.StatusBadRequest},
		{"user-a", http.MethodPost, PathSessions, `{"kind":"group","inactive_timeout":-1}`, http.StatusBadRequest},
		{"user-a", http.MethodPost, PathSessions, fmt.Sprintf(`{"kind":"group","doc":"%s"}`, big), http.StatusRequestEntityTooLarge},
		{"user-a", http.MethodPost, PathSessions, fmt.Sprintf(`{"kind":"group","doc":"%s"}`, strings.Repeat(big, 5)), http.StatusRequestEntityTooLarge},
		{"user-a", http.MethodGet, PathSessions + "/nothex", "", http.StatusBadRequest},
		{"user-a", http.MethodGet, PathSessions + "/" + strings.Repeat("0", 32), "", http.StatusNotFound},
		{"user-a", http.MethodGet, PathSessions + "?project=a%20b", "", http.StatusBadRequest},
		{"user-a", http.MethodGet, PathSessions + "?limit=-1", "", http.StatusBadRequest},
		{"user-a", http.MethodPost, PathSessions + "/" + a.ID + "/jobs", `{"code":""}`, http.StatusBadRequest},
		{"user-a", http.MethodPost, PathSessions + "/" + a.ID + "/jobs", fmt.Sprintf(`{"code":"%s"}`, strings.Repeat("x", raftstore.MaxCodeBytes+1)), http.StatusRequestEntityTooLarge},
		{"user-a", http.MethodPatch, PathSessions + "/" + a.ID, `{"kind":"context"}`, http.StatusBadRequest},
		{"user-a", http.MethodPatch, PathSessions + "/" + a.ID, `{"labels":{"":"x"}}`, http.StatusBadRequest},
	} {
		if code, out := f.do(c.token, c.method, c.path, c.body); code != c.want {
			t.Errorf("%s %s as %s: %d %s, want %d", c.method, c.path, c.token, code, truncateBody(out), c.want)
		}
	}
}

func truncateBody(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
