package native

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// TestDrainRoute: an admin drains a worker (its running job goes on, it
// takes no new one); no token 401, another role 403; a malformed, an
// empty, an oversized body and a name that is no worker change nothing.
func TestDrainRoute(t *testing.T) {
	f := newFarmTest(t) // h-a runs f.job
	tokens := tokenMap{
		auth.Hash("secret-admin"):  {Name: "admin", Role: raftstore.RoleAdmin},
		auth.Hash("secret-read-a"): {Name: "read-a", Role: raftstore.RoleRead, Projects: []string{"a"}},
		auth.Hash("secret-user"):   {Name: "user", Role: raftstore.RoleUser, Projects: []string{"*"}},
	}
	e := gin.New()
	svc := service.New(service.Config{Applier: service.Single(f.store), State: f.store.State})
	NewWorkers(svc).Register(auth.Mount{Router: e, Auth: auth.New(auth.Config{}, func() auth.Tokens { return tokens }, nil), Abort: apierr.Abort, Table: &auth.Table{}})
	do := func(token, body string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, client.PathWorkersDrain, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer secret-"+token)
		}
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	before := f.store.State().Digest()
	for _, c := range []struct {
		token, body string
		code        int
	}{
		{"", `{"names":["h-a"]}`, http.StatusUnauthorized},
		{"read-a", `{"names":["h-a"]}`, http.StatusForbidden},
		{"user", `{"names":["h-a"]}`, http.StatusForbidden},
		{"admin", `{"names":`, http.StatusBadRequest},
		{"admin", `["h-a"]`, http.StatusBadRequest},
		{"admin", `{"names":[]}`, http.StatusBadRequest},
		{"admin", `{"names":["a\nb"]}`, http.StatusBadRequest},
		{"admin", `{"names":["h-a","nobody"]}`, http.StatusNotFound},
		{"admin", `{"names":["` + strings.Repeat("x", 70<<10) + `"]}`, http.StatusRequestEntityTooLarge},
		{"admin", `{"names":[` + strings.Repeat(`"h-a",`, MaxDrainNames) + `"h-a"]}`, http.StatusBadRequest},
	} {
		if code, body := do(c.token, c.body); code != c.code {
			t.Errorf("%s %.60q: %d %s, want %d", c.token, c.body, code, body, c.code)
		}
	}
	if f.store.State().Digest() != before {
		t.Fatal("a refused drain changed the state")
	}
	if code, body := do("admin", `{"names":["h-a"]}`); code != http.StatusNoContent {
		t.Fatalf("drain: %d %s", code, body)
	}
	w, _ := f.store.State().Worker("h-a")
	j, _ := f.store.State().Job(f.job)
	if w.Active || j.State != raftstore.StateRunning || j.Worker != "h-a" {
		t.Fatalf("after the drain: worker active %v, job %s on %q", w.Active, j.State, j.Worker)
	}
}
