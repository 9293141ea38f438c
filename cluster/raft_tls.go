package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// ErrPeerUnverified means a coordinator's Raft address did not prove, over
// mutual TLS, that it holds a certificate of the farm's Raft CA for that
// address: it is not added to the cluster.
var ErrPeerUnverified = errors.New("raft peer not verified")

const (
	// raftTLSHandshakeTimeout bounds an inbound handshake: a peer that
	// connects and says nothing holds its slot this long at most.
	raftTLSHandshakeTimeout = 10 * time.Second
	// raftTLSMaxPending caps the inbound handshakes in progress. Beyond it
	// new connections are closed at once rather than queued, so a flood of
	// silent connections costs neither descriptors nor goroutines for
	// long; a real peer's transport dials again.
	raftTLSMaxPending = 64
	// raftTransportTimeout and raftTransportPool are what raft's TCP
	// transport was given before TLS existed here.
	raftTransportTimeout = 10 * time.Second
	raftTransportPool    = 3
)

// nodeRaftTransport builds the Raft transport: raft's plain TCP transport
// when cfg.RaftTLS is nil (with a warning if it is reachable from other
// machines), else a network transport over raftTLSLayer. The layer is
// returned too (nil without TLS): Join uses it to verify new peers.
func nodeRaftTransport(cfg Config, hlog hclog.Logger, log *slog.Logger) (*raft.NetworkTransport, *raftTLSLayer, error) {
	if cfg.RaftTLS == nil {
		trans, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, nil, raftTransportPool, raftTransportTimeout, hlog)
		if err != nil {
			return nil, nil, err
		}
		if addr := string(trans.LocalAddr()); !raftAddrLoopback(addr) {
			log.Warn("Raft traffic is unauthenticated: use --raft-tls-* (anyone who reaches this address can join the Raft cluster or read its log)", "raft_addr", addr)
		}
		return trans, nil, nil
	}
	layer, err := newRaftTLSLayer(cfg.RaftAddr, cfg.RaftTLS, log, raftTLSHandshakeTimeout, raftTLSMaxPending)
	if err != nil {
		return nil, nil, err
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: raftTransportPool,
		Timeout: raftTransportTimeout,
		Logger:  hlog,
	})
	return trans, layer, nil
}

// raftAddrLoopback reports whether a Raft address (IP:port, as the
// transport advertises it) is only reachable from this machine.
func raftAddrLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// raftTLSLayer is a raft.StreamLayer over mutual TLS. Both ends present a
// certificate and verify the other's chain against the farm's Raft CA
// (never the system's roots); a dialer also checks that the certificate
// is valid for the host of the Raft address it dialed.
//
// Inbound handshakes never run on the accept path: one goroutine accepts
// raw connections and hands each to its own goroutine, which completes the
// handshake within the timeout and only then passes the connection to
// Accept. So a peer that connects and stays silent delays nobody, is
// dropped after the timeout, and at most maxPending of them exist at once.
type raftTLSLayer struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config // requires a client certificate of the CA
	client    *tls.Config
	log       *slog.Logger
	timeout   time.Duration
	pending   chan struct{} // one token per handshake in progress

	conns     chan net.Conn // handshaken connections, for Accept
	ctx       context.Context
	cancel    context.CancelFunc // at Close: ends pending handshakes
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	refusals raftLogLimiter
}

// newRaftTLSLayer listens on bind (a concrete IP and a port, 0 picks one)
// and starts accepting. conf must carry this node's certificate and the
// CA in both RootCAs and ClientCAs (tlsconfig.Mutual builds one).
func newRaftTLSLayer(bind string, conf *tls.Config, log *slog.Logger, timeout time.Duration, maxPending int) (*raftTLSLayer, error) {
	if len(conf.Certificates) == 0 && conf.GetCertificate == nil {
		return nil, errors.New("raft tls: no certificate")
	}
	if conf.RootCAs == nil || conf.ClientCAs == nil {
		// Nil pools would mean "the system's roots" for servers and no
		// verification source for clients: never what a farm wants.
		return nil, errors.New("raft tls: the CA must be set as RootCAs and ClientCAs")
	}
	server := conf.Clone()
	server.ClientAuth = tls.RequireAndVerifyClientCert
	server.MinVersion = max(server.MinVersion, tls.VersionTLS12)
	client := conf.Clone()
	client.MinVersion = server.MinVersion

	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok || addr.IP == nil || addr.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft tls: %s is not advertisable: give a concrete IP", ln.Addr())
	}
	l := &raftTLSLayer{
		ln:        ln,
		advertise: addr,
		server:    server,
		client:    client,
		log:       log,
		timeout:   timeout,
		pending:   make(chan struct{}, maxPending),
		conns:     make(chan net.Conn),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// acceptLoop takes raw connections and starts their handshakes.
func (l *raftTLSLayer) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, say: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("raft tls: accept failed", "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
				continue
			case <-l.ctx.Done():
				return
			}
		}
		delay = 0
		select {
		case l.pending <- struct{}{}:
		default:
			raw.Close()
			l.refusals.warn(l.log, "raft tls: too many handshakes in progress, connection closed", "remote", raw.RemoteAddr().String(), "max_pending", cap(l.pending))
			continue
		}
		l.wg.Add(1)
		go l.handshake(raw)
	}
}

// handshake completes one inbound handshake within the timeout and hands
// the connection to Accept.
func (l *raftTLSLayer) handshake(raw net.Conn) {
	defer l.wg.Done()
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	tc := tls.Server(raw, l.server)
	err := tc.HandshakeContext(ctx) // closes raw when ctx ends first
	<-l.pending
	if err != nil {
		raw.Close()
		if l.ctx.Err() == nil {
			l.refusals.warn(l.log, "raft tls: refused a peer", "remote", raw.RemoteAddr().String(), "err", err)
		}
		return
	}
	select {
	case l.conns <- tc:
	case <-l.ctx.Done():
		tc.Close()
	}
}

// Accept returns the next connection whose handshake completed.
func (l *raftTLSLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops listening, aborts the handshakes in progress and waits for
// their goroutines. Connections already returned by Accept or Dial are the
// transport's to close.
func (l *raftTLSLayer) Close() error {
	l.closeOnce.Do(func() {
		l.cancel()
		l.closeErr = l.ln.Close()
		l.wg.Wait()
	})
	return l.closeErr
}

// Addr is the advertised address: the listener's, with the port it got.
func (l *raftTLSLayer) Addr() net.Addr { return l.advertise }

// Dial connects to a peer and completes the handshake within timeout: the
// peer's certificate must chain to the CA and be valid for the host of
// address (an IP SAN, as Raft addresses are IP:port).
func (l *raftTLSLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return l.dial(l.ctx, string(address), timeout, l.client) // Close aborts it
}

func (l *raftTLSLayer) dial(ctx context.Context, address string, timeout time.Duration, base *tls.Config) (*tls.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	conf := base.Clone()
	conf.ServerName = host
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{}, Config: conf}
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// verifyPeer checks, before a coordinator is added, that its Raft address
// holds a certificate of the CA for that address and accepts this node's.
// The handshake is held to TLS 1.2, where a client's handshake completes
// only after the server accepted the client's certificate (in TLS 1.3 the
// client finishes first and would learn of a refusal on its next read).
func (l *raftTLSLayer) verifyPeer(ctx context.Context, address string) error {
	conf := l.client.Clone()
	conf.MaxVersion = tls.VersionTLS12
	c, err := l.dial(ctx, address, raftTLSHandshakeTimeout, conf)
	if err != nil {
		return err
	}
	return c.Close()
}

// raftLogLimiter keeps a flood of refused connections from flooding the
// log: one line per interval, with the number of lines left out.
type raftLogLimiter struct {
	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (r *raftLogLimiter) warn(log *slog.Logger, msg string, args ...any) {
	r.mu.Lock()
	if time.Since(r.last) < time.Second {
		r.dropped++
		r.mu.Unlock()
		return
	}
	dropped := r.dropped
	r.last, r.dropped = time.Now(), 0
	r.mu.Unlock()
	if dropped > 0 {
		args = append(args, "similar_lines_dropped", dropped)
	}
	log.Warn(msg, args...)
}
