package coordinator

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/cluster"
	"github.com/croftfarm/croft/raftstore"
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
	// DefaultLeaderWait is how long a request waits for a leader before
	// 503 when ServerConfig.LeaderWait is zero.
	DefaultLeaderWait = 5 * time.Second
)

// leaderView is what forwarding needs of the Raft node (*cluster.Node).
type leaderView interface {
	ID() string
	// Leadership reports whether this node is the ready leader.
	Leadership() (leader bool, since time.Time)
	// RaftLeader reports whether Raft made it leader, ready or not.
	RaftLeader() bool
	LeaderHTTP() (addr, why string)
	Changed() <-chan struct{}
	Done() <-chan struct{}
	StorageErr() error
}

// forwarder serves a request on the ready leader and proxies it there from
// any other node, so every read and write is served by the leader
// (consistent reads). It is the one place requests are forwarded: every
// dialect is mounted behind it (Server.mountDialects).
type forwarder struct {
	node   leaderView
	wait   time.Duration // for a leader, before 503
	scheme string        // of every coordinator's API, as this node's own configuration says
	proxy  *http.Transport
	log    *slog.Logger
}

// newForwarder makes the forwarding of node. tlsConf, when set, makes the
// leader's API HTTPS, verified with it; wait <= 0 means DefaultLeaderWait.
func newForwarder(node leaderView, tlsConf *tls.Config, wait time.Duration, log *slog.Logger) *forwarder {
	if wait <= 0 {
		wait = DefaultLeaderWait
	}
	return &forwarder{
		node:   node,
		wait:   wait,
		scheme: nodeScheme(tlsConf != nil),
		log:    log,
		proxy: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tlsConf.Clone(), // nil stays nil
			TLSHandshakeTimeout: 5 * time.Second,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
			// No ResponseHeaderTimeout: agents long-poll through the proxy.
		},
	}
}

// close drops the proxy's idle connections.
func (f *forwarder) close() { f.proxy.CloseIdleConnections() }

// handle is the middleware. It waits up to the leader wait for a leader
// whose HTTP address is known, then answers 503 with a JSON error, or 507
// when this node's own writes fail (its disk is full).
func (f *forwarder) handle(c *gin.Context) {
	n := f.node
	deadline := time.NewTimer(f.wait)
	defer deadline.Stop()
	var body *nodeBody // read on the first proxy attempt only
	why := ""
	for {
		changed := n.Changed()
		if ready, _ := n.Leadership(); ready {
			if body != nil {
				body.restore(c.Request)
			}
			c.Next()
			return
		}
		hops, _ := strconv.Atoi(c.GetHeader(ForwardedHeader))
		if hops > 0 && !n.RaftLeader() {
			// Forwarded here by a node that thought we lead (an election
			// just happened). Holding it for LeaderWait would stall the
			// client while the new leader is already serving: tell the
			// forwarder at once; it knows as much as we do and replays.
			c.Header(NotLeaderHeader, "1")
			abortEdge(c, fmt.Errorf("%w: %s is not the leader", cluster.ErrNotLeader, n.ID()))
			return
		}
		target, reason := n.LeaderHTTP()
		why = reason
		if target != "" {
			if hops >= nodeMaxForwardHops {
				abortEdge(c, fmt.Errorf("%w: forwarded %d times, members disagree on the leader", cluster.ErrNoLeader, hops))
				return
			}
			if body == nil {
				var err error
				if body, err = nodeReadBody(c.Request); err != nil {
					var mb *http.MaxBytesError
					if errors.As(err, &mb) {
						abortEdge(c, fmt.Errorf("%w: the body is over the limit of %d bytes", raftstore.ErrTooLarge, mb.Limit))
						return
					}
					abortEdge(c, apierr.Bad("read request body: %v", err))
					return
				}
			}
			delivered, err := f.proxyTo(c, target, hops+1, body)
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
				f.log.Warn("forwarding to leader failed", "leader_http", target, "err", err)
				abortEdge(c, fmt.Errorf("%w: forward to leader %s: %w", apierr.ErrBadGateway, target, err))
				return
			}
			why = fmt.Sprintf("leader %s unreachable: %v", target, err)
			f.log.Debug("leader unreachable, looking again", "leader_http", target, "err", err)
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
		case <-n.Done():
			poll.Stop()
			abortEdge(c, fmt.Errorf("%w: this node is shutting down", cluster.ErrNoLeader))
			return
		case <-deadline.C:
			poll.Stop()
			msg := fmt.Sprintf("%s after %v", why, f.wait)
			if serr := n.StorageErr(); serr != nil {
				// A leader that cannot store its log steps down at once,
				// every time it is elected: the cause is the disk.
				abortEdge(c, fmt.Errorf("%w (%v: %s)", serr, cluster.ErrNoLeader, msg))
				return
			}
			abortEdge(c, fmt.Errorf("%w: %s", cluster.ErrNoLeader, msg))
			return
		}
		poll.Stop()
	}
}

// errUpstreamNotLeader: the node we forwarded to says it is not the leader.
var errUpstreamNotLeader = errors.New("forwarded to a node that is not the leader")

// proxyTo sends the request to target and streams the reply back. It
// returns an error only when nothing was written to the client; delivered
// then tells whether the whole request reached the leader.
func (f *forwarder) proxyTo(c *gin.Context, target string, hops int, body *nodeBody) (delivered bool, err error) {
	var proxyErr error
	var wrote atomic.Bool
	u := &url.URL{Scheme: f.scheme, Host: target}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u) // keeps the path and query
			pr.SetXForwarded()
			pr.Out.Header.Set(ForwardedHeader, strconv.Itoa(hops))
		},
		Transport:     f.proxy,
		FlushInterval: -1, // stream log tails and long polls as they come
		ErrorLog:      slog.NewLogLogger(f.log.Handler(), slog.LevelWarn),
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
