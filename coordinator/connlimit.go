package coordinator

import (
	"container/list"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// HTTPLimits bound the API's connections, so that clients holding
// connections open (idle keep-alives, bodies sent a byte at a time) cannot
// take every file descriptor of the coordinator: agents' heartbeats must
// still get through. A zero field takes its default; a negative one turns
// that limit off.
type HTTPLimits struct {
	// ReadHeaderTimeout bounds reading a request's header (default 10 s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, header and body
	// (default 60 s), so a body sent a byte at a time is cut off. A long
	// poll's body is tiny and read at once: its wait is not a read. The
	// largest body (32 MiB by default) needs about 0.5 MiB/s.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its header to the end
	// of its reply (default 5 min): long enough for a 60 s long poll held
	// by a follower for a leader, and for a long list streamed to a slow
	// but honest client.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waited this long for
	// its next request (default 120 s; Croft's clients drop theirs after
	// 90 s, so they close first and never reuse one the server closes).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header (default 64 KiB; 431
	// beyond).
	MaxHeaderBytes int
	// MaxConnsPerIP is how many connections one client address may hold
	// open (default 256; an IPv6 client counts per /64). One more is
	// answered 429 and closed. The coordinators' own addresses are exempt:
	// a follower forwards everyone's requests from its address. Raise it
	// for many agents behind one NAT address.
	MaxConnsPerIP int
	// MaxConns is how many connections the API holds open in all (default:
	// 80 % of the open-file limit, RLIMIT_NOFILE, minus 256 descriptors
	// kept for Raft, snapshots, the data files and forwarding; at least
	// 64; 8192 where the system has no such limit). Near it, the oldest
	// idle connections are closed to make room; at it, with none idle, a
	// new connection is answered 503 and closed.
	MaxConns int
}

// Defaults of HTTPLimits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 5 * time.Minute
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultMaxConnsPerIP     = 256
)

const (
	// fdReserve is what MaxConns leaves of the open-file limit, besides
	// its 20 %, for everything that is not an API connection.
	fdReserve = 256
	// minMaxConns keeps a tiny open-file limit from leaving no API.
	minMaxConns = 64
	// noFileLimitMaxConns is MaxConns where the system reports no limit.
	noFileLimitMaxConns = 8192
	// freshGrace is how long a new connection may take to send its first
	// header before it may be closed to make room, like an idle one: an
	// honest client sends it within milliseconds (a TLS handshake
	// included), one that trickles it is what the cap is against.
	freshGrace = 2 * time.Second
	// refuseWriteTimeout guards the one write a refused connection gets;
	// a new socket's send buffer is empty, so the write never waits.
	refuseWriteTimeout = 100 * time.Millisecond
	// refuseLogEvery rate-limits the warning about refused connections.
	refuseLogEvery = time.Minute
)

// withDefaults fills the zero fields; fileLimit is the process's soft
// open-file limit (0: none known).
func (h HTTPLimits) withDefaults(fileLimit uint64) HTTPLimits {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&h.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&h.ReadTimeout, DefaultReadTimeout)
	def(&h.WriteTimeout, DefaultWriteTimeout)
	def(&h.IdleTimeout, DefaultIdleTimeout)
	if h.MaxHeaderBytes == 0 {
		h.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if h.MaxConnsPerIP == 0 {
		h.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if h.MaxConns == 0 {
		h.MaxConns = maxConnsFor(fileLimit)
	}
	return h
}

// maxConnsFor is the default MaxConns under an open-file limit.
func maxConnsFor(fileLimit uint64) int {
	if fileLimit == 0 {
		return noFileLimitMaxConns
	}
	n := int(min(fileLimit, 1<<24)*8/10) - fdReserve
	return max(n, minMaxConns)
}

// server returns an http.Server with these limits (negative ones off).
func (h HTTPLimits) server(handler http.Handler, conns *connLimiter) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: max(h.ReadHeaderTimeout, 0),
		ReadTimeout:       max(h.ReadTimeout, 0),
		WriteTimeout:      max(h.WriteTimeout, 0),
		IdleTimeout:       max(h.IdleTimeout, 0),
		MaxHeaderBytes:    max(h.MaxHeaderBytes, 0),
		ConnState:         conns.connState,
	}
}

// connStats are a connLimiter's counters.
type connStats struct {
	Open, Idle, Fresh int // held now: all, idle keep-alives, before their first header
	Peak              int // most held at once
	RefusedPerIP      uint64
	RefusedFull       uint64
	Shed              uint64 // idle or stalled new connections closed to make room
}

// connLimiter counts the API's open connections, by client address and in
// all, refuses those over a cap at once and closes idle ones to make room.
// Its listener admits connections; http.Server tells it their states
// (connState), which it needs to know which ones are idle.
type connLimiter struct {
	max, perIP int // 0: no cap
	shedAt     int // from this many open connections on, each new one sheds an idle one
	exempt     func(netip.Addr) bool
	log        *slog.Logger
	silent     bool // refuse by closing only, without a status line (under TLS)

	mu         sync.Mutex
	byIP       map[netip.Addr]int
	idle       list.List // *limitedConn idle between requests, oldest first
	fresh      list.List // *limitedConn before their first request, oldest first
	freshGrace time.Duration
	stats      connStats
	lastWarn   time.Time
	onRefuse   func(netip.Addr, int) // tests: told every refusal, under mu
}

// newConnLimiter returns a limiter with h's caps (defaults filled);
// exempt, if not nil, tells the addresses free of the per-address cap.
func newConnLimiter(h HTTPLimits, exempt func(netip.Addr) bool, log *slog.Logger) *connLimiter {
	l := &connLimiter{
		max:        max(h.MaxConns, 0),
		perIP:      max(h.MaxConnsPerIP, 0),
		exempt:     exempt,
		log:        log,
		byIP:       map[netip.Addr]int{},
		freshGrace: freshGrace,
	}
	// Shed before the cap, so a burst of new connections (agents coming
	// back after a network cut) finds room without waiting for a close.
	l.shedAt = l.max - l.max/10
	return l
}

// Listener returns ln with its connections counted and capped. Wrap the
// raw TCP listener, below any TLS: a refused connection then costs no
// handshake.
func (l *connLimiter) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: l}
}

// Stats returns the counters.
func (l *connLimiter) Stats() connStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Idle, s.Fresh = l.idle.Len(), l.fresh.Len()
	return s
}

type limitListener struct {
	net.Listener
	l *connLimiter
}

// Accept returns the next admitted connection. Refused ones are answered
// and closed here, in the accept loop: a write to a new socket and a
// close, with no goroutine waiting on the client.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		nc, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c, victim, status := ll.l.admit(nc, time.Now())
		if victim != nil {
			_ = victim.Close() // its server goroutine sees the read fail and ends
		}
		if c != nil {
			return c, nil
		}
		if ll.l.silent {
			_ = nc.Close()
		} else {
			refuse(nc, status)
		}
	}
}

// refusals are the whole replies of refused connections (on a plain
// HTTP listener; under TLS a refused connection is just closed).
var refusals = map[int][]byte{
	http.StatusTooManyRequests:    refusal(http.StatusTooManyRequests, "too many connections from your address"),
	http.StatusServiceUnavailable: refusal(http.StatusServiceUnavailable, "the coordinator has too many connections"),
}

func refusal(status int, msg string) []byte {
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s\n",
		status, http.StatusText(status), len(msg)+1, msg)
}

func refuse(nc net.Conn, status int) {
	_ = nc.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	_, _ = nc.Write(refusals[status])
	_ = nc.Close()
}

// admit decides on a new connection: it returns the tracked connection,
// or the refusal status; and an idle connection to close to make room.
func (l *connLimiter) admit(nc net.Conn, now time.Time) (c, victim *limitedConn, status int) {
	key, addr := clientKey(nc.RemoteAddr())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP > 0 && key.IsValid() && l.byIP[key] >= l.perIP && (l.exempt == nil || !l.exempt(addr)) {
		l.stats.RefusedPerIP++
		return nil, nil, l.refusedLocked(addr, http.StatusTooManyRequests, now)
	}
	if l.max > 0 && l.stats.Open >= l.shedAt {
		if victim = l.victimLocked(now); victim != nil {
			l.releaseLocked(victim)
			l.stats.Shed++
		}
		if l.stats.Open >= l.max {
			l.stats.RefusedFull++
			return nil, victim, l.refusedLocked(addr, http.StatusServiceUnavailable, now)
		}
	}
	c = &limitedConn{Conn: nc, l: l, key: key}
	l.stats.Open++
	l.stats.Peak = max(l.stats.Peak, l.stats.Open)
	if key.IsValid() {
		l.byIP[key]++
	}
	l.moveLocked(c, &l.fresh, now)
	return c, victim, 0
}

// refusedLocked records a refusal and warns, at most every minute.
func (l *connLimiter) refusedLocked(addr netip.Addr, status int, now time.Time) int {
	if l.onRefuse != nil {
		l.onRefuse(addr, status)
	}
	if now.Sub(l.lastWarn) >= refuseLogEvery {
		l.lastWarn = now
		l.log.Warn("refusing API connections over a cap (this warning repeats at most every minute)",
			"client", addr, "status", status, "open", l.stats.Open, "max_conns", l.max, "max_conns_per_ip", l.perIP,
			"refused_per_ip", l.stats.RefusedPerIP, "refused_full", l.stats.RefusedFull, "shed", l.stats.Shed)
	}
	return status
}

// victimLocked picks the connection to close for room: the oldest idle
// one (a client's transport reuses its newest first, so the oldest is the
// least likely to be in use again), else the oldest new one that has not
// sent its header within freshGrace. Active requests are never closed:
// ReadTimeout and WriteTimeout bound them.
func (l *connLimiter) victimLocked(now time.Time) *limitedConn {
	if e := l.idle.Front(); e != nil {
		return e.Value.(*limitedConn)
	}
	if e := l.fresh.Front(); e != nil {
		if c := e.Value.(*limitedConn); now.Sub(c.since) >= l.freshGrace {
			return c
		}
	}
	return nil
}

// moveLocked puts c at the back of to (nil: in no list).
func (l *connLimiter) moveLocked(c *limitedConn, to *list.List, now time.Time) {
	if c.in != nil {
		c.in.Remove(c.elem)
		c.in, c.elem = nil, nil
	}
	if to != nil {
		c.in, c.elem, c.since = to, to.PushBack(c), now
	}
}

// releaseLocked stops counting c; it is called once per connection.
func (l *connLimiter) releaseLocked(c *limitedConn) {
	if c.released {
		return
	}
	c.released = true
	l.moveLocked(c, nil, time.Time{})
	l.stats.Open--
	if c.key.IsValid() {
		if l.byIP[c.key]--; l.byIP[c.key] <= 0 {
			delete(l.byIP, c.key)
		}
	}
}

// connState is http.Server.ConnState: it keeps the idle list.
func (l *connLimiter) connState(nc net.Conn, st http.ConnState) {
	c := trackedConn(nc)
	if c == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.released {
		return
	}
	switch st {
	case http.StateIdle:
		l.moveLocked(c, &l.idle, time.Now())
	case http.StateActive, http.StateHijacked, http.StateClosed:
		l.moveLocked(c, nil, time.Time{}) // a hijacked one still counts until closed
	}
}

// trackedConn finds the limitedConn under nc, which a TLS server wraps.
func trackedConn(nc net.Conn) *limitedConn {
	for {
		switch c := nc.(type) {
		case *limitedConn:
			return c
		case interface{ NetConn() net.Conn }:
			nc = c.NetConn()
		default:
			return nil
		}
	}
}

// clientKey returns the address a connection counts against (an IPv6
// address's /64, which one client usually has whole) and the client's
// own address; both invalid for a connection without an IP.
func clientKey(a net.Addr) (key, addr netip.Addr) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, netip.Addr{}
	}
	addr = ta.AddrPort().Addr().Unmap()
	key = addr.WithZone("")
	if key.Is6() {
		if p, err := key.Prefix(64); err == nil {
			key = p.Addr()
		}
	}
	return key, addr
}

// limitedConn is an admitted connection; closing it frees its place.
type limitedConn struct {
	net.Conn
	l   *connLimiter
	key netip.Addr

	// Under l.mu:
	released bool
	in       *list.List // l.idle, l.fresh or nil
	elem     *list.Element
	since    time.Time // when it entered in

	closeOnce sync.Once
	closeErr  error
}

// Close frees the connection's place and closes it (once).
func (c *limitedConn) Close() error {
	c.l.mu.Lock()
	c.l.releaseLocked(c)
	c.l.mu.Unlock()
	c.closeOnce.Do(func() { c.closeErr = c.Conn.Close() })
	return c.closeErr
}

// CloseWrite lets http.Server half-close the connection before closing
// it, as it does with a bare TCP connection, so the client reads the
// whole reply.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the connection underneath.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }
