// Package web serves the dashboard: one page of HTML, CSS and JavaScript
// embedded in the binary (no build step, nothing fetched from elsewhere).
// The assets hold no data and need no token; the page asks the user for a
// token and reads everything through the same REST API as any client.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"
)

//go:embed static
var static embed.FS

// Prefix is the path of the dashboard's assets; the page itself is at "/".
const Prefix = "/ui/"

// CSP is the Content-Security-Policy of every answer: the page runs only
// its own script and style (no inline code), talks only to its origin, and
// may not be framed (clickjacking).
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// types are the assets' content types, fixed here rather than guessed
// from the system's MIME table (which varies between hosts).
var types = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
}

// Register mounts GET and HEAD of "/" (the page) and of Prefix+"*file"
// (its assets) on r, outside the token checks: they are public files.
func Register(r gin.IRoutes) {
	r.GET("/", page)
	r.HEAD("/", page)
	r.GET(Prefix+"*file", asset)
	r.HEAD(Prefix+"*file", asset)
}

// headers sets the security headers every answer of the dashboard carries.
func headers(h http.Header) {
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// Revalidated each time, so an upgraded coordinator serves its new page.
	h.Set("Cache-Control", "no-cache")
}

func page(c *gin.Context) { serve(c, "index.html") }

func asset(c *gin.Context) {
	name := strings.TrimPrefix(path.Clean("/"+c.Param("file")), "/")
	if name == "" || name == "." {
		name = "index.html"
	}
	serve(c, name)
}

func serve(c *gin.Context, name string) {
	headers(c.Writer.Header())
	typ, ok := types[path.Ext(name)]
	b, err := fs.ReadFile(static, "static/"+name)
	if !ok || err != nil {
		c.Data(http.StatusNotFound, "text/plain; charset=utf-8", []byte("not found\n"))
		return
	}
	c.Data(http.StatusOK, typ, b)
}
