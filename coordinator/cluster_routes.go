package coordinator

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
)

// nodeMembershipTimeout bounds a join or remove: a configuration change
// commits within a few heartbeats unless the cluster is losing its leader.
const nodeMembershipTimeout = 30 * time.Second

// RegisterClusterRoutes mounts the cluster endpoints. GET /cluster/status is
// answered by the node asked (its own view; any valid token), and so is
// POST /cluster/snapshot (admins); POST /cluster/join and POST
// /cluster/remove change the membership and so run on the leader (admins;
// forwarded). local mounts a route on this node, forwarded on the leader;
// status adds to each status reply.
func (n *Node) RegisterClusterRoutes(local, forwarded auth.Mount, status func(*client.ClusterStatus)) {
	local.Handle(http.MethodGet, "/cluster/status", auth.PermAuthenticated, func(c *gin.Context) { n.nodeHandleStatus(c, status) })
	local.Handle(http.MethodPost, "/cluster/snapshot", auth.PermAdmin, n.nodeHandleSnapshot)
	forwarded.Handle(http.MethodPost, "/cluster/join", auth.PermAdmin, n.nodeHandleJoin)
	forwarded.Handle(http.MethodPost, "/cluster/remove", auth.PermAdmin, n.nodeHandleRemove)
}

// nodeHandleStatus serves the local view; ?digest=1 adds the state digest,
// which hashes the whole state and so is only computed when asked for.
func (n *Node) nodeHandleStatus(c *gin.Context, status func(*client.ClusterStatus)) {
	st := n.Status()
	if c.Query("digest") != "" {
		st.Digest = n.fsm.State().Digest()
	}
	if status != nil {
		status(&st)
	}
	c.JSON(http.StatusOK, st)
}

// nodeHandleSnapshot takes a Raft snapshot of this node now (log
// compaction on demand, before maintenance or to measure it) and answers
// with its index, size and the time it took.
func (n *Node) nodeHandleSnapshot(c *gin.Context) {
	t0 := time.Now()
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		c.JSON(http.StatusConflict, client.ErrorBody{Error: "snapshot: " + err.Error()})
		return
	}
	took := time.Since(t0)
	meta, rc, err := f.Open()
	if err != nil {
		c.JSON(http.StatusInternalServerError, client.ErrorBody{Error: "snapshot: " + err.Error()})
		return
	}
	rc.Close()
	c.JSON(http.StatusOK, gin.H{"index": meta.Index, "bytes": meta.Size, "took_ms": float64(took.Microseconds()) / 1000})
}

func (n *Node) nodeHandleJoin(c *gin.Context) {
	var req client.JoinRequest
	if !nodeDecodeJSON(c, &req) {
		return
	}
	if req.NodeID == "" || req.RaftAddr == "" || req.HTTPAddr == "" {
		nodeAbortJSON(c, http.StatusBadRequest, "node_id, raft_addr and http_addr are required")
		return
	}
	ctx, cancel := nodeContext(c, nodeMembershipTimeout)
	defer cancel()
	if err := n.Join(ctx, req); err != nil {
		nodeClusterError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{})
}

func (n *Node) nodeHandleRemove(c *gin.Context) {
	var req client.RemoveRequest
	if !nodeDecodeJSON(c, &req) {
		return
	}
	if req.NodeID == "" {
		nodeAbortJSON(c, http.StatusBadRequest, "node_id is required")
		return
	}
	ctx, cancel := nodeContext(c, nodeMembershipTimeout)
	defer cancel()
	if err := n.Remove(ctx, req.NodeID); err != nil {
		nodeClusterError(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{})
}

// nodeDecodeJSON reads a small JSON body into v, answering 400 (or 413)
// on failure.
func nodeDecodeJSON(c *gin.Context, v any) bool {
	body, err := apierr.ReadBody(c, 1<<20)
	if err == nil {
		if err = json.Unmarshal(body, v); err != nil {
			err = apierr.Bad("bad JSON body: %v", err)
		}
	}
	if err != nil {
		apierr.Abort(c, err)
		return false
	}
	return true
}

// nodeClusterError answers a membership error. A lost leadership or a
// change that did not commit in time is a 503: the client tries again (a
// join or remove is idempotent).
func nodeClusterError(c *gin.Context, err error) {
	apierr.Abort(c, edgeError(err))
}
