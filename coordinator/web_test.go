package coordinator

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/web"
)

// The dashboard is served at / and /ui/ without a token, beside the
// dialects' routes, which keep their own answers.
func TestDashboardBesideTheRoutes(t *testing.T) {
	s := startSecure(t)
	get := func(path string, bearer string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for _, p := range []string{"/", "/ui/app.js", "/ui/app.css"} {
		code, h, body := get(p, "")
		if code != http.StatusOK || h.Get("Content-Security-Policy") != web.CSP || body == "" {
			t.Errorf("GET %s without a token: %d %v", p, code, h)
		}
	}
	for _, c := range []struct {
		path, token string
		code        int
		body        string
	}{
		{"/api/jobs", "", http.StatusUnauthorized, ""},
		{"/api/jobs", s.secrets["admin"], http.StatusOK, "["},
		{"/api/no-such-service", s.secrets["admin"], http.StatusNotFound, "Web service not found."},
		{"/no-such-path", "", http.StatusNotFound, "Web service not found."},
		{"/api/sessions", s.secrets["admin"], http.StatusOK, "["},
		{"/croft/v1/jobs?limit=1", "", http.StatusUnauthorized, ""},
		{"/ui/no-such-asset.js", "", http.StatusNotFound, ""},
	} {
		code, _, body := get(c.path, c.token)
		if code != c.code || !strings.HasPrefix(body, c.body) {
			t.Errorf("GET %s: %d %q, want %d %q", c.path, code, body, c.code, c.body)
		}
	}
}
