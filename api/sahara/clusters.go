package sahara

import (
	"crypto/sha1"
	"encoding/hex"
	"github.com/croftfarm/croft/api/ids"
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/raftstore"
)

// A Sahara cluster is a pool of the farm: the workers whose affinity
// lines name it (the pool is that affinity name). Pools are not records:
// a cluster exists while a worker that serves the tenant names it, and
// its id is derived from its name (a name-based UUID, version 5), so it
// is the same on every coordinator and across restarts.

// poolNamespace is the UUID namespace of the pools' ids (RFC 4122's URL
// namespace; the name is "croft:pool:<name>").
var poolNamespace = [16]byte{0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// PoolID is the Sahara cluster id of pool name: a UUIDv5.
func PoolID(name string) string {
	s := sha1.New()
	s.Write(poolNamespace[:])
	s.Write([]byte("croft:pool:" + name))
	b := s.Sum(nil)[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return ids.Dashed(hex.EncodeToString(b))
}

// pool is a pool with the workers in it.
type pool struct {
	name    string
	workers []string
}

// pools lists the pools tenant pid may run on: the affinity names of
// the workers that are not lost and serve pid, sorted by name.
func (h *Handler) pools(pid string) []pool {
	by := map[string]*pool{}
	for _, w := range h.store.State().Workers() {
		if w.LostAt != 0 || w.State == raftstore.WorkerStateLost || !serves(&w, pid) {
			continue
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(w.Affinity, "\n") {
			for _, n := range strings.Split(line, ",") {
				n = strings.TrimSpace(n)
				if n == "" || seen[n] {
					continue
				}
				seen[n] = true
				p := by[n]
				if p == nil {
					p = &pool{name: n}
					by[n] = p
				}
				p.workers = append(p.workers, w.Name)
			}
		}
	}
	out := make([]pool, 0, len(by))
	for _, p := range by {
		sort.Strings(p.workers)
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func serves(w *raftstore.Worker, pid string) bool {
	if w.Projects == nil {
		return true
	}
	for _, p := range w.Projects {
		if p == pid {
			return true
		}
	}
	return false
}

// findPool returns the pool a cluster id names.
func (h *Handler) findPool(pid, id string) (pool, bool) {
	id = strings.ToLower(id)
	for _, p := range h.pools(pid) {
		if PoolID(p.name) == id {
			return p, true
		}
	}
	return pool{}, false
}

// clusterView renders a pool in Sahara's cluster shape, as far as
// clients read it.
func clusterView(pid string, p *pool) obj {
	return obj{"id": PoolID(p.name), "name": p.name, "tenant_id": pid, "status": "Active", "status_description": "",
		"plugin_name": "croft", "hadoop_version": "1", "description": "Croft pool " + p.name,
		"is_public": true, "is_protected": false, "is_transient": false, "info": obj{},
		"node_groups":   []obj{{"name": p.name, "count": len(p.workers), "instances": instances(p.workers)}},
		"croft_workers": p.workers, "created_at": nil, "updated_at": nil}
}

func instances(workers []string) []obj {
	out := make([]obj, 0, len(workers))
	for _, w := range workers {
		out = append(out, obj{"instance_name": w, "instance_id": w})
	}
	return out
}

var clusterSorts = map[string]string{"id": "id", "name": "name"}

func (h *Handler) listClusters(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	q, err := parseList(c, clusterSorts)
	if err != nil {
		Abort(c, err)
		return
	}
	l := lister{q: q}
	for _, p := range h.pools(pid) {
		if !l.add(clusterView(pid, &p)) {
			break
		}
	}
	l.answer(c, "clusters")
}

func (h *Handler) showCluster(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	id := param(c, "id")
	p, ok := h.findPool(pid, id)
	if !ok {
		Abort(c, notFound(id))
		return
	}
	c.JSON(http.StatusOK, gin.H{"cluster": clusterView(pid, &p)})
}
