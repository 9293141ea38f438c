package native

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/jsonstream"
	"github.com/croftfarm/croft/farm"
	"github.com/croftfarm/croft/raftstore"
)

// Registry changes the interpreter registry (the service layer does).
type Registry interface {
	SetInterpreter(ctx context.Context, name, template, uses string) error
	DeleteInterpreter(ctx context.Context, name string) error
}

// InterpretersHandler serves the interpreter registry: GET
// /croft/v1/interpreters lists configured and detected interpreters with
// the hosts that offer them; PUT and DELETE /croft/v1/interpreters/{name}
// configure them (admins).
type InterpretersHandler struct {
	store    Store
	registry Registry
}

// NewInterpreters returns the interpreter registry's handler.
func NewInterpreters(store Store, registry Registry) *InterpretersHandler {
	return &InterpretersHandler{store: store, registry: registry}
}

// maxInterpreterBody bounds a PUT body: a template of
// farm.MaxTemplateBytes, every byte of it escaped, and room to spare.
const maxInterpreterBody = 64 << 10

// Register mounts the routes.
func (h *InterpretersHandler) Register(m auth.Mount) {
	m.Abort = apierr.Abort
	m.Handle(http.MethodGet, client.PathInterpreters, auth.PermRead, h.list)
	m.Handle(http.MethodPut, client.PathInterpreters+"/:name", auth.PermAdmin, h.set)
	m.Handle(http.MethodDelete, client.PathInterpreters+"/:name", auth.PermAdmin, h.remove)
}

// offering is who offers one detected interpreter: how many hosts, and
// the first client.MaxListedHosts of them by name.
type offering struct {
	count int
	hosts []string
}

// offerings gathers, over the hosts p may see, who offers each detected
// interpreter (only name, when not ""). The cost is one pass over the
// hosts, a page at a time; the memory, the distinct names.
func offerings(st *raftstore.State, p *auth.Principal, name string) map[string]*offering {
	out := map[string]*offering{}
	eachHost(st, p, func(x *raftstore.Host) bool {
		for _, in := range x.Interpreters {
			if name != "" && in.Name != name {
				continue
			}
			o := out[in.Name]
			if o == nil {
				o = &offering{}
				out[in.Name] = o
			}
			o.count++
			if len(o.hosts) < client.MaxListedHosts {
				o.hosts = append(o.hosts, x.Name)
			}
		}
		return true
	})
	return out
}

func renderInterpreter(in *raftstore.Interpreter, o *offering) client.InterpreterInfo {
	out := client.InterpreterInfo{Name: in.Name, Configured: true, Template: in.Template, Uses: in.Detected(), Hosts: []string{}}
	created, updated := time.Unix(0, in.Created).UTC(), time.Unix(0, in.Updated).UTC()
	out.Created, out.Updated = &created, &updated
	if o != nil {
		out.HostCount, out.Hosts = o.count, o.hosts
	}
	return out
}

// list streams the configured interpreters and the detected ones, merged
// by name and in name order, within the ?offset=&limit= window.
func (h *InterpretersHandler) list(c *gin.Context) {
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	st := h.store.State()
	offered := offerings(st, auth.From(c), "")
	configured := map[string]raftstore.Interpreter{}
	names := make([]string, 0, len(offered))
	for _, in := range st.Interpreters() {
		configured[in.Name] = in
		names = append(names, in.Name)
	}
	for name := range offered {
		if _, ok := configured[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	jsonstream.Pages(c, win, func() ([]string, bool) { return names, false }, func(name *string) any {
		if in, ok := configured[*name]; ok {
			return renderInterpreter(&in, offered[in.Detected()])
		}
		o := offered[*name]
		return client.InterpreterInfo{Name: *name, Template: farm.DefaultInterpreterTemplate, Uses: *name, HostCount: o.count, Hosts: o.hosts}
	})
}

// set configures an interpreter (or replaces its template) and answers
// it as listed.
func (h *InterpretersHandler) set(c *gin.Context) {
	name := c.Param("name")
	body, err := apierr.ReadBody(c, maxInterpreterBody)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	var req client.InterpreterRequest
	if err := json.Unmarshal(body, &req); err != nil {
		apierr.Abort(c, apierr.Bad("malformed JSON: %v", err))
		return
	}
	// Checked here too, so a mistake is a 400 or 413 naming the field
	// without a round trip through Raft.
	if err := raftstore.CheckInterpreterSet(&raftstore.InterpreterSet{Name: name, Template: req.Template, Uses: req.Uses}); err != nil {
		apierr.Abort(c, err)
		return
	}
	if err := h.registry.SetInterpreter(c, name, req.Template, req.Uses); err != nil {
		apierr.Abort(c, err)
		return
	}
	h.answer(c, name)
}

// answer replies with configured interpreter name, as listed.
func (h *InterpretersHandler) answer(c *gin.Context, name string) {
	st := h.store.State()
	in, ok := st.ConfiguredInterpreter(name)
	if !ok {
		// Deleted between the apply and this read: the change happened.
		c.JSON(http.StatusOK, gin.H{})
		return
	}
	c.JSON(http.StatusOK, renderInterpreter(&in, offerings(st, auth.From(c), in.Detected())[in.Detected()]))
}

// remove deletes a configured interpreter; hosts that detect one of the
// name still offer it with the default template.
func (h *InterpretersHandler) remove(c *gin.Context) {
	if err := h.registry.DeleteInterpreter(c, c.Param("name")); err != nil {
		apierr.Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{})
}
