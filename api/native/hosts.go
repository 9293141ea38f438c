package native

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/jsonstream"
	"github.com/croftfarm/croft/farm"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service/liveness"
)

// Pings is the leader's in-memory record of its workers' last pings.
type Pings interface {
	Get(worker string) (liveness.Ping, bool)
}

// HostsHandler serves the hosts: GET /croft/v1/hosts and
// GET /croft/v1/hosts/{name}. It runs on the leader (the routes are
// forwarded there), whose pings carry the hosts' live load.
type HostsHandler struct {
	store Store
	pings Pings
}

// NewHosts returns the hosts' handler.
func NewHosts(store Store, pings Pings) *HostsHandler {
	return &HostsHandler{store: store, pings: pings}
}

// Register mounts the routes. A host's name may hold a '/' (an agent's
// name is any one-line name), hence the catch-all.
func (h *HostsHandler) Register(m auth.Mount) {
	m.Abort = apierr.Abort
	m.Handle(http.MethodGet, client.PathHosts, auth.PermRead, h.list)
	m.Handle(http.MethodGet, client.PathHosts+"/*host", auth.PermRead, h.get)
}

// maySee reports whether p may see host x: admins see every host, others
// the hosts that serve one of their projects (a host of the whole farm
// serves them all).
func maySee(p *auth.Principal, x *raftstore.Host) bool {
	if p.IsAdmin() || (x.Projects == nil && p.CanReadSome()) {
		return true
	}
	for _, pr := range x.Projects {
		if p.CanRead(pr) {
			return true
		}
	}
	return false
}

// offers reports whether host x detected interpreter name.
func offers(x *raftstore.Host, name string) bool {
	for _, in := range x.Interpreters {
		if in.Name == name {
			return true
		}
	}
	return false
}

// eachHost calls fn on every host p may see, in name order, a page of
// raftstore.ScanLimit at a time (the state's lock is not held across
// pages), until fn returns false.
func eachHost(st *raftstore.State, p *auth.Principal, fn func(*raftstore.Host) bool) {
	for after, more := "", true; more; {
		var page []raftstore.Host
		page, after, more = st.HostsAfter(after, raftstore.ScanLimit)
		for i := range page {
			if maySee(p, &page[i]) && !fn(&page[i]) {
				return
			}
		}
	}
}

// list streams the hosts the token may see, in name order, within the
// ?offset=&limit= window; ?interpreter=NAME keeps those that offer it (a
// configured interpreter: those that detect the one it uses).
func (h *HostsHandler) list(c *gin.Context) {
	win, err := jsonstream.ParsePaging(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	st := h.store.State()
	want := c.Query("interpreter")
	if want != "" {
		if err := farm.CheckInterpreterName(want); err != nil {
			apierr.Abort(c, apierr.Bad("interpreter: %v", err))
			return
		}
		if in, ok := st.ConfiguredInterpreter(want); ok {
			want = in.Detected()
		}
	}
	p := auth.From(c)
	after, more := "", true
	jsonstream.Pages(c, win, func() ([]raftstore.Host, bool) {
		var page []raftstore.Host
		page, after, more = st.HostsAfter(after, raftstore.ScanLimit)
		keep := page[:0]
		for i := range page {
			if maySee(p, &page[i]) && (want == "" || offers(&page[i], want)) {
				keep = append(keep, page[i])
			}
		}
		return keep, more
	}, func(x *raftstore.Host) any { return h.render(st, p, x) })
}

// get answers one host.
func (h *HostsHandler) get(c *gin.Context) {
	name := strings.TrimPrefix(c.Param("host"), "/")
	st := h.store.State()
	x, ok := st.Host(name)
	if !ok {
		apierr.Abort(c, apierr.NotFound("host %q", name))
		return
	}
	p := auth.From(c)
	if !maySee(p, &x) {
		apierr.Abort(c, apierr.Forbidden("token %q may not see host %q: it serves none of its projects", p.Name, name))
		return
	}
	c.JSON(http.StatusOK, h.render(st, p, &x))
}

// render builds a host's reply: its slots' state and work (a job only if
// p may read its project) and the newest of its slots' pings.
func (h *HostsHandler) render(st *raftstore.State, p *auth.Principal, x *raftstore.Host) client.Host {
	out := client.Host{
		Name: x.Name, SlotCount: x.SlotCount, CPUs: x.CPUs, TotalMemory: x.TotalMemory,
		Slots:           make([]client.HostSlot, 0, len(x.Slots)),
		Interpreters:    make([]client.Interpreter, 0, len(x.Interpreters)),
		Projects:        x.Projects,
		FirstRegistered: time.Unix(0, x.FirstRegistered).UTC(),
		LastRegistered:  time.Unix(0, x.LastRegistered).UTC(),
	}
	if out.Projects == nil {
		out.Projects = []string{raftstore.AllProjects}
	}
	for _, in := range x.Interpreters {
		out.Interpreters = append(out.Interpreters, client.Interpreter{Name: in.Name, Path: in.Path})
	}
	var newest liveness.Ping
	for _, name := range x.Slots {
		slot := client.HostSlot{Name: name}
		if w, ok := st.Worker(name); ok {
			slot.State, slot.Active = w.State, w.Active
			if ev, ok := st.RunByID(w.CurrentEvent); ok && w.CurrentEvent != 0 && p.CanRead(ev.Project) {
				slot.Job, slot.Attempt = ev.JobID, ev.ID
			}
		}
		out.Slots = append(out.Slots, slot)
		if ping, ok := h.pings.Get(name); ok && ping.Time > newest.Time {
			newest = ping
		}
	}
	if newest.Time != 0 {
		out.Live = &client.HostLive{Seen: time.Unix(0, newest.Time).UTC(), CPU: parseLoads(newest.CPU), FreeMemory: newest.FreeMemory}
	}
	return out
}

// parseLoads reads back the per-core loads of a ping, which the agent
// API keeps as Coalition's "[12, 3]" string; a malformed value is left out.
func parseLoads(s string) []int {
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	out := []int{}
	if s == "" {
		return out
	}
	for _, f := range strings.Split(s, ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			out = append(out, v)
		}
	}
	return out
}
