package sas

import (
	"net/http"
	"sort"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
)

// Context is a compute context: an interpreter of the farm, configured
// (/croft/v1/interpreters) or advertised by a host the token may use.
type Context struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Version     int    `json:"version"`
	Links       []Link `json:"links"`
}

// interpreterNames returns the interpreters offered to the token: the
// configured ones and those the hosts serving one of its projects
// advertise, sorted. The cost is one pass over the hosts, a page at a
// time; the memory, the distinct names.
func interpreterNames(st *raftstore.State, p *auth.Principal) []string {
	seen := map[string]bool{}
	for _, in := range st.Interpreters() {
		seen[in.Name] = true
	}
	after := ""
	for {
		page, next, more := st.HostsAfter(after, raftstore.ScanLimit)
		for i := range page {
			if !servesToken(&page[i], p) {
				continue
			}
			for _, in := range page[i].Interpreters {
				seen[in.Name] = true
			}
		}
		if !more {
			break
		}
		after = next
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// servesToken reports whether host x serves a project the token may read.
func servesToken(x *raftstore.Host, p *auth.Principal) bool {
	if len(x.Projects) == 0 {
		return p.CanReadSome()
	}
	for _, pr := range x.Projects {
		if p.CanRead(pr) {
			return true
		}
	}
	return false
}

func renderContext(name string) Context {
	id := contextID(name)
	self := Prefix + "/contexts/" + id
	create := link(http.MethodPost, "createSession", self+"/sessions", "application/vnd.sas.compute.session.request")
	create.ResponseType = "application/vnd.sas.compute.session"
	return Context{ID: id, Name: name, Description: "Croft interpreter " + name, Version: 2, Links: []Link{
		link(http.MethodGet, "self", self, "application/vnd.sas.compute.context"),
		collLink("sessions", Prefix+"/sessions", "application/vnd.sas.compute.session.summary"),
		create,
	}}
}

// findContext returns the interpreter of a context id (its name is taken
// too, as a convenience); ok is false when the token is offered none.
func findContext(st *raftstore.State, p *auth.Principal, id string) (string, bool) {
	for _, n := range interpreterNames(st, p) {
		if contextID(n) == id || n == id {
			return n, true
		}
	}
	return "", false
}

func (h *Handler) contexts(c *gin.Context) {
	start, limit, err := paging(c, DefaultLimit, MaxLimit)
	if err != nil {
		Abort(c, err)
		return
	}
	names := interpreterNames(h.store.State(), auth.From(c))
	var keep func(Context) bool
	if f := c.Query("filter"); f != "" {
		e, err := parseFilter(f)
		if err != nil {
			Abort(c, err)
			return
		}
		keep = func(x Context) bool { return e.match(fieldsOf{"name": x.Name, "id": x.ID}) }
	}
	items := []Context{}
	count := 0
	for _, n := range names {
		x := renderContext(n)
		if keep != nil && !keep(x) {
			continue
		}
		if count >= start && len(items) < limit {
			items = append(items, x)
		}
		count++
	}
	send(c, http.StatusOK, "application/vnd.sas.collection", 2,
		collection(c, "items", "application/vnd.sas.compute.context.summary", items, start, limit, count))
}

func (h *Handler) context(c *gin.Context) {
	name, ok := findContext(h.store.State(), auth.From(c), c.Param("context"))
	if !ok {
		Abort(c, &Error{Status: http.StatusNotFound, Msg: "No context exists at the requested path."})
		return
	}
	send(c, http.StatusOK, "application/vnd.sas.compute.context", 2, renderContext(name))
}
