package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

func engine() *gin.Engine {
	gin.SetMode(gin.TestMode)
	e := gin.New()
	Register(e)
	e.NoRoute(func(c *gin.Context) { c.String(http.StatusNotFound, "Web service not found.") })
	return e
}

func get(t *testing.T, e http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	e.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func TestAssetsAreServedWithTheirTypesAndHeaders(t *testing.T) {
	e := engine()
	for _, c := range []struct{ path, typ, has string }{
		{"/", "text/html; charset=utf-8", `<script src="/ui/app.js"`},
		{"/ui/", "text/html; charset=utf-8", "<title>Croft</title>"},
		{"/ui/index.html", "text/html; charset=utf-8", "<title>Croft</title>"},
		{"/ui/app.js", "text/javascript; charset=utf-8", "sessionStorage"},
		{"/ui/app.css", "text/css; charset=utf-8", "--running"},
	} {
		w := get(t, e, http.MethodGet, c.path)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != c.typ || !strings.Contains(w.Body.String(), c.has) {
			t.Errorf("GET %s: %d %q, body has %q: %v", c.path, w.Code, w.Header().Get("Content-Type"), c.has, strings.Contains(w.Body.String(), c.has))
		}
		hd := w.Header()
		if hd.Get("Content-Security-Policy") != CSP || hd.Get("X-Content-Type-Options") != "nosniff" || hd.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: security headers %v", c.path, hd)
		}
	}
	if w := get(t, e, http.MethodHead, "/"); w.Code != http.StatusOK {
		t.Errorf("HEAD /: %d", w.Code)
	}
	if !strings.Contains(CSP, "default-src 'self'") || !strings.Contains(CSP, "frame-ancestors 'none'") || strings.Contains(CSP, "unsafe") {
		t.Errorf("CSP %q", CSP)
	}
}

func TestUnknownAndEscapingPathsAre404(t *testing.T) {
	e := engine()
	for _, p := range []string{"/ui/nope.js", "/ui/../web.go", "/ui/..%2fweb.go", "/ui/static/app.js", "/ui/app", "/ui/web.go"} {
		if w := get(t, e, http.MethodGet, p); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
	}
	// Paths outside the dashboard stay with the engine's own 404.
	if w := get(t, e, http.MethodGet, "/nothing"); w.Code != http.StatusNotFound || w.Body.String() != "Web service not found." {
		t.Errorf("GET /nothing: %d %q", w.Code, w.Body.String())
	}
}

// The page holds no inline script or style: the CSP forbids them.
func TestThePageHasNoInlineCode(t *testing.T) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, bad := range []string{"<script>", " style=", "onclick=", "onload=", "http://", "https://"} {
		if strings.Contains(s, bad) {
			t.Errorf("index.html holds %q", bad)
		}
	}
	js, _ := static.ReadFile("static/app.js")
	for _, bad := range []string{"innerHTML", "eval(", "http://", "https://"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js holds %q", bad)
		}
	}
}
