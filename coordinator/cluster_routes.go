package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/raftstore"
)

// nodeMembershipTimeout bounds a join or remove: a configuration change
// commits within a few heartbeats unless the cluster is losing its leader.
const nodeMembershipTimeout = 30 * time.Second

// RegisterClusterRoutes mounts the cluster endpoints. GET /cluster/status is
// answered by the node asked (its own view); POST /cluster/join and POST
// /cluster/remove change the membership and so run on the leader (they go
// through Forward).
func (n *Node) RegisterClusterRoutes(r gin.IRouter) {
	r.GET("/cluster/status", n.nodeHandleStatus)
	r.POST("/cluster/snapshot", n.nodeHandleSnapshot)
	r.POST("/cluster/join", n.Forward(), n.nodeHandleJoin)
	r.POST("/cluster/remove", n.Forward(), n.nodeHandleRemove)
}

// nodeHandleStatus serves the local view; ?digest=1 adds the state digest,
// which hashes the whole state and so is only computed when asked for.
func (n *Node) nodeHandleStatus(c *gin.Context) {
	st := n.Status()
	if c.Query("digest") != "" {
		st.Digest = n.fsm.State().Digest()
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

// nodeDecodeJSON reads a small JSON body into v, answering 400 on failure.
func nodeDecodeJSON(c *gin.Context, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		nodeAbortJSON(c, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

// nodeClusterError chooses the status of a membership error.
func nodeClusterError(c *gin.Context, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, raftstore.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, raftstore.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader),
		errors.Is(err, context.DeadlineExceeded):
		// Retryable: the leadership moved or the change did not commit in
		// time; the client tries again (a join or remove is idempotent).
		status = http.StatusServiceUnavailable
	}
	nodeAbortJSON(c, status, err.Error())
}
