package coordinator

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
)

// clusterRoutes serves the cluster endpoints of a node.
type clusterRoutes struct {
	node *cluster.Node
	// status adds to each status reply (nil: nothing).
	status func(*client.ClusterStatus)
}

// register mounts the cluster endpoints. GET /cluster/status is answered by
// the node asked (its own view; any valid token), and so is POST
// /cluster/snapshot (admins); POST /cluster/join and POST /cluster/remove
// change the membership and so run on the leader (admins; forwarded), and
// GET /cluster/whoami is answered by the leader (any valid token: a
// follower confirms a token there before it serves a local route).
// local mounts a route on this node, forwarded on the leader.
func (r clusterRoutes) register(local, forwarded auth.Mount) {
	local.Handle(http.MethodGet, "/cluster/status", auth.PermAuthenticated, r.handleStatus)
	local.Handle(http.MethodPost, "/cluster/snapshot", auth.PermAdmin, r.handleSnapshot)
	forwarded.Handle(http.MethodPost, "/cluster/join", auth.PermAdmin, r.handleJoin)
	forwarded.Handle(http.MethodPost, "/cluster/remove", auth.PermAdmin, r.handleRemove)
	forwarded.Handle(http.MethodGet, client.PathWhoami, auth.PermAuthenticated, handleWhoami)
}

// handleWhoami names the request's principal, as the leader sees it.
func handleWhoami(c *gin.Context) {
	p := auth.From(c)
	c.JSON(http.StatusOK, client.Whoami{Name: p.Name, TokenID: p.TokenID})
}

// handleStatus serves the local view; ?digest=1 adds the state digest,
// which hashes the whole state and so is only computed when asked for.
func (r clusterRoutes) handleStatus(c *gin.Context) {
	st := statusReply(r.node.Status())
	if c.Query("digest") != "" {
		st.Digest = r.node.FSM().State().Digest()
	}
	if r.status != nil {
		r.status(&st)
	}
	c.JSON(http.StatusOK, st)
}

// statusReply converts the node's status to the wire type.
func statusReply(s cluster.Status) client.ClusterStatus {
	out := client.ClusterStatus{
		NodeID:         s.NodeID,
		State:          s.State,
		LeaderID:       s.LeaderID,
		LeaderHTTP:     s.LeaderHTTP,
		LeaderRaft:     s.LeaderRaft,
		Term:           s.Term,
		AppliedIndex:   s.AppliedIndex,
		FSMIndex:       s.FSMIndex,
		CommitIndex:    s.CommitIndex,
		LastIndex:      s.LastIndex,
		Members:        make([]client.ClusterMember, 0, len(s.Members)),
		StorageError:   s.StorageError,
		StorageErrorAt: s.StorageErrorAt,
		DiskFull:       s.DiskFull,
		DiskFreeBytes:  s.DiskFreeBytes,
		DiskTotalBytes: s.DiskTotalBytes,
		RaftDBBytes:    s.RaftDBBytes,
		RaftLogBytes:   s.RaftLogBytes,
	}
	for _, m := range s.Members {
		out.Members = append(out.Members, client.ClusterMember{
			ID:            m.ID,
			RaftAddr:      m.RaftAddr,
			HTTPAddr:      m.HTTPAddr,
			Suffrage:      m.Suffrage,
			Leader:        m.Leader,
			CaughtUp:      m.CaughtUp,
			LastContactMS: m.LastContactMS,
			LastLog:       m.LastLog,
			Reachable:     m.Reachable,
		})
	}
	return out
}

// handleSnapshot takes a Raft snapshot of this node now (log compaction
// on demand, before maintenance or to measure it) and answers with its
// index, size and the time it took.
func (r clusterRoutes) handleSnapshot(c *gin.Context) {
	info, err := r.node.Snapshot()
	if err != nil {
		abortEdge(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"index": info.Index, "bytes": info.Bytes, "took_ms": float64(info.Took.Microseconds()) / 1000})
}

func (r clusterRoutes) handleJoin(c *gin.Context) {
	var req client.JoinRequest
	if !nodeDecodeJSON(c, &req) {
		return
	}
	if req.NodeID == "" || req.RaftAddr == "" || req.HTTPAddr == "" {
		apierr.Abort(c, apierr.Bad("node_id, raft_addr and http_addr are required"))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), cluster.MembershipTimeout)
	defer cancel()
	// A lost leadership or a change that did not commit in time is a
	// 503: the client tries again (a join is idempotent).
	if err := r.node.Join(ctx, cluster.JoinRequest{NodeID: req.NodeID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr}); err != nil {
		abortEdge(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{})
}

func (r clusterRoutes) handleRemove(c *gin.Context) {
	var req client.RemoveRequest
	if !nodeDecodeJSON(c, &req) {
		return
	}
	if req.NodeID == "" {
		apierr.Abort(c, apierr.Bad("node_id is required"))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), cluster.MembershipTimeout)
	defer cancel()
	if err := r.node.Remove(ctx, req.NodeID); err != nil {
		abortEdge(c, err)
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
