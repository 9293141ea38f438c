package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/client"
)

const (
	// ForwardedHeader counts the hops a request was forwarded through.
	ForwardedHeader = "X-Croft-Forwarded"
	// NotLeaderHeader marks a 503 from a node that is not the leader: the
	// request was not applied, and the node that forwarded it looks for the
	// leader again and replays it.
	NotLeaderHeader = "X-Croft-Not-Leader"
	// nodeMaxForwardHops stops forwarding loops while members disagree on
	// the leader (an election in progress).
	nodeMaxForwardHops = 3
	// nodeMaxReplayBody is the largest request body kept in memory so the
	// request can be sent again to a new leader.
	nodeMaxReplayBody = 32 << 20
	// nodeForwardPoll is how often a waiting request looks for a leader
	// again: not every change that matters (a NodeMeta applied by the FSM)
	// wakes it.
	nodeForwardPoll = 50 * time.Millisecond
)

// Forward returns middleware that serves a request on the ready leader and
// proxies it there from any other node, so every read and write is served
// by the leader (consistent reads). It waits up to Config.LeaderWait for a
// leader whose HTTP address is known, then answers 503 with a JSON error,
// or 507 when this node's own writes fail (its disk is full).
func (n *Node) Forward() gin.HandlerFunc {
	return n.nodeForward
}

func (n *Node) nodeForward(c *gin.Context) {
	deadline := time.NewTimer(n.cfg.LeaderWait)
	defer deadline.Stop()
	var body *nodeBody // read on the first proxy attempt only
	why := ""
	for {
		changed := n.nodeChanged()
		if ready, _ := n.Leadership(); ready {
			if body != nil {
				body.restore(c.Request)
			}
			c.Next()
			return
		}
		hops, _ := strconv.Atoi(c.GetHeader(ForwardedHeader))
		if hops > 0 && n.raft.State() != raft.Leader {
			// Forwarded here by a node that thought we lead (an election
			// just happened). Holding it for LeaderWait would stall the
			// client while the new leader is already serving: tell the
			// forwarder at once; it knows as much as we do and replays.
			c.Header(NotLeaderHeader, "1")
			nodeAbortJSON(c, http.StatusServiceUnavailable, ErrNotLeader.Error()+": "+n.cfg.NodeID+" is not the leader")
			return
		}
		target, reason := n.nodeLeaderHTTP()
		why = reason
		if target != "" {
			if hops >= nodeMaxForwardHops {
				nodeAbortJSON(c, http.StatusServiceUnavailable, fmt.Sprintf("%v: forwarded %d times, members disagree on the leader", ErrNoLeader, hops))
				return
			}
			if body == nil {
				var err error
				if body, err = nodeReadBody(c.Request); err != nil {
					var mb *http.MaxBytesError
					if errors.As(err, &mb) {
						nodeAbortJSON(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over the limit of %d bytes", mb.Limit))
						return
					}
					nodeAbortJSON(c, http.StatusBadRequest, "read request body: "+err.Error())
					return
				}
			}
			delivered, err := n.nodeProxy(c, target, hops+1, body)
			if err == nil {
				c.Abort()
				return
			}
			if c.Request.Context().Err() != nil {
				c.Abort() // the caller went away: nobody to answer
				return
			}
			// Retry only a request the leader never fully received (dial
			// refused, stale keep-alive connection), or one it refused as
			// not leader: sending it again cannot apply it twice. Past that
			// point the outcome is unknown: 502, and the client decides.
			notLeader := errors.Is(err, errUpstreamNotLeader)
			if !body.replayable || (delivered && !notLeader) {
				n.log.Warn("forwarding to leader failed", "leader_http", target, "err", err)
				nodeAbortJSON(c, http.StatusBadGateway, fmt.Sprintf("forward to leader %s: %v", target, err))
				return
			}
			why = fmt.Sprintf("leader %s unreachable: %v", target, err)
			n.log.Debug("leader unreachable, looking again", "leader_http", target, "err", err)
			if !notLeader {
				changed = nil // the dead leader stays "known" until an election: back off instead
			}
		}
		poll := time.NewTimer(nodeForwardPoll)
		select {
		case <-changed:
		case <-poll.C:
		case <-c.Request.Context().Done():
			poll.Stop()
			c.Abort()
			return
		case <-n.shutdownCh:
			poll.Stop()
			nodeAbortJSON(c, http.StatusServiceUnavailable, ErrNoLeader.Error()+": this node is shutting down")
			return
		case <-deadline.C:
			poll.Stop()
			msg := fmt.Sprintf("%v: %s after %v", ErrNoLeader, why, n.cfg.LeaderWait)
			if serr := n.nodeStorageErr(); serr != nil {
				// A leader that cannot store its log steps down at once,
				// every time it is elected: the cause is the disk.
				apierr.Abort(c, fmt.Errorf("%w: %w (%s)", apierr.ErrInsufficientStorage, serr, msg))
				return
			}
			nodeAbortJSON(c, http.StatusServiceUnavailable, msg)
			return
		}
		poll.Stop()
	}
}

// errUpstreamNotLeader: the node we forwarded to says it is not the leader.
var errUpstreamNotLeader = errors.New("forwarded to a node that is not the leader")

// nodeLeaderHTTP returns the HTTP address of another node that leads, or
// why there is none to forward to.
func (n *Node) nodeLeaderHTTP() (addr, why string) {
	_, id := n.raft.LeaderWithID()
	switch {
	case id == "":
		return "", "no leader known"
	case string(id) == n.cfg.NodeID:
		return "", "this node leads but has not caught up yet"
	}
	m, ok := n.fsm.State().Node(string(id))
	if !ok || m.HTTPAddr == "" {
		return "", fmt.Sprintf("leader %s has no known HTTP address", id)
	}
	return m.HTTPAddr, ""
}

// nodeProxy sends the request to target and streams the reply back. It
// returns an error only when nothing was written to the client; delivered
// then tells whether the whole request reached the leader.
func (n *Node) nodeProxy(c *gin.Context, target string, hops int, body *nodeBody) (delivered bool, err error) {
	var proxyErr error
	var wrote atomic.Bool
	u := &url.URL{Scheme: n.httpScheme(), Host: target}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u) // keeps the path and query
			pr.SetXForwarded()
			pr.Out.Header.Set(ForwardedHeader, strconv.Itoa(hops))
		},
		Transport:     n.proxy,
		FlushInterval: -1, // stream log tails and long polls as they come
		ErrorLog:      slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		ErrorHandler: func(_ http.ResponseWriter, _ *http.Request, err error) {
			proxyErr = err // nothing written yet: the caller decides to retry or answer
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(NotLeaderHeader) != "" {
				resp.Body.Close()
				return errUpstreamNotLeader // not applied there: look again and replay
			}
			return nil
		},
	}
	body.restore(c.Request)
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			wrote.Store(true)
		}
	}}
	rp.ServeHTTP(c.Writer, c.Request.WithContext(httptrace.WithClientTrace(c.Request.Context(), trace)))
	return wrote.Load(), proxyErr
}

// nodeBody is a request body read ahead so the request can be replayed.
// Bodies over nodeMaxReplayBody are streamed once and not replayable.
type nodeBody struct {
	buf        []byte
	rest       io.ReadCloser // the unread part when not replayable
	replayable bool
}

func nodeReadBody(r *http.Request) (*nodeBody, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return &nodeBody{replayable: true}, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, nodeMaxReplayBody+1))
	if err != nil {
		return nil, err
	}
	if len(buf) > nodeMaxReplayBody {
		return &nodeBody{buf: buf, rest: r.Body}, nil
	}
	return &nodeBody{buf: buf, replayable: true}, nil
}

// restore installs a fresh reader of the body on r.
func (b *nodeBody) restore(r *http.Request) {
	if !b.replayable {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b.buf), b.rest), b.rest}
		return
	}
	if len(b.buf) == 0 {
		r.Body, r.GetBody, r.ContentLength = http.NoBody, nil, 0
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(b.buf))
	// GetBody lets the transport resend on a stale keep-alive connection.
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b.buf)), nil }
	r.ContentLength = int64(len(b.buf))
	r.Header.Del("Transfer-Encoding")
	r.TransferEncoding = nil
}

func nodeAbortJSON(c *gin.Context, status int, msg string) {
	c.AbortWithStatusJSON(status, client.ErrorBody{Error: msg})
}

// nodeContext bounds work a handler does on behalf of a request.
func nodeContext(c *gin.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Request.Context(), d)
}
