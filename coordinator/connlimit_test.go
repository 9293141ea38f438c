package coordinator

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveLimited serves a small handler through l on a loopback port and
// returns the address. GET answers "ok"; POST reads its whole body first.
func serveLimited(t *testing.T, l *connLimiter) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := HTTPLimits{ReadHeaderTimeout: -1, ReadTimeout: -1, WriteTimeout: -1, IdleTimeout: -1}.server(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, "ok")
		}), l)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l.Listener(ln))
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// dialFrom opens a connection from the loopback address ip; the test's
// cleanup closes it.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// get sends a keep-alive GET on c and returns the reply's status.
func get(t *testing.T, c net.Conn) int {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: croft\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// statusLine reads what a refused connection gets: its status line, and
// then the end of the connection.
func statusLine(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading a refusal: %v (got %q)", err, rest)
	}
	line, _, _ := strings.Cut(string(rest), "\r\n")
	return line
}

// closedByServer waits for c to be closed by the other end.
func closedByServer(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if n != 0 || errors.As(err, &ne) && ne.Timeout() || err == nil {
		t.Fatalf("%s: still open (read %d, %v)", what, n, err)
	}
}

func waitStats(t *testing.T, l *connLimiter, what string, cond func(connStats) bool) {
	t.Helper()
	nodeEventually(t, 10*time.Second, what, func() (bool, string) {
		st := l.Stats()
		return cond(st), fmt.Sprintf("%+v", st)
	})
}

func TestConnLimitPerIPCap(t *testing.T) {
	exempt := netip.MustParseAddr("127.0.0.3")
	l := newConnLimiter(HTTPLimits{MaxConnsPerIP: 3, MaxConns: 100}, func(a netip.Addr) bool { return a == exempt }, nodeTestLogger())
	addr := serveLimited(t, l)
	var held []net.Conn
	for range 3 {
		c := dialFrom(t, "127.0.0.1", addr)
		if s := get(t, c); s != 200 {
			t.Fatalf("status %d under the cap", s)
		}
		held = append(held, c)
	}
	// The fourth is answered and closed at once, before it sends anything.
	if line := statusLine(t, dialFrom(t, "127.0.0.1", addr)); line != "HTTP/1.1 429 Too Many Requests" {
		t.Fatalf("over the cap: %q", line)
	}
	if st := l.Stats(); st.RefusedPerIP != 1 || st.Open != 3 {
		t.Fatalf("after a refusal: %+v", st)
	}
	// Another address has its own count; an exempt one has none.
	if s := get(t, dialFrom(t, "127.0.0.2", addr)); s != 200 {
		t.Fatalf("another address: %d", s)
	}
	for range 5 {
		if s := get(t, dialFrom(t, "127.0.0.3", addr)); s != 200 {
			t.Fatalf("exempt address: %d", s)
		}
	}
	// A closed connection frees its place.
	held[0].Close()
	waitStats(t, l, "the closed connection to be released", func(st connStats) bool { return st.Open == 2+1+5 })
	if s := get(t, dialFrom(t, "127.0.0.1", addr)); s != 200 {
		t.Fatalf("after a close: %d", s)
	}
	if st := l.Stats(); st.RefusedPerIP != 1 || st.Peak != 9 {
		t.Fatalf("stats %+v", st)
	}
}

func TestConnLimitShedsOldestIdleFirst(t *testing.T) {
	l := newConnLimiter(HTTPLimits{MaxConnsPerIP: -1, MaxConns: 4}, nil, nodeTestLogger())
	l.freshGrace = time.Hour // new connections are spared until said otherwise
	addr := serveLimited(t, l)

	a, b := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
	get(t, a)
	// The server marks a connection idle after the reply is sent: wait,
	// so that a is the older.
	waitStats(t, l, "a idle", func(st connStats) bool { return st.Idle == 1 })
	get(t, b)
	waitStats(t, l, "two idle connections", func(st connStats) bool { return st.Idle == 2 })
	// c is busy: its body never comes. d has sent nothing yet.
	c := dialFrom(t, "127.0.0.1", addr)
	if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: croft\r\nContent-Length: 10\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitStats(t, l, "c active", func(st connStats) bool { return st.Open == 3 && st.Idle == 2 && st.Fresh == 0 })
	d := dialFrom(t, "127.0.0.1", addr)
	waitStats(t, l, "the cap reached", func(st connStats) bool { return st.Open == 4 && st.Fresh == 1 })

	// At the cap, each new connection closes the oldest idle one.
	dialFrom(t, "127.0.0.1", addr)
	waitStats(t, l, "a shed", func(st connStats) bool { return st.Shed == 1 })
	closedByServer(t, a, "the oldest idle connection")
	dialFrom(t, "127.0.0.1", addr)
	waitStats(t, l, "a second shed", func(st connStats) bool { return st.Shed == 2 })
	closedByServer(t, b, "the other idle connection")

	// Nothing idle, c busy, the new ones young: refused.
	if line := statusLine(t, dialFrom(t, "127.0.0.1", addr)); line != "HTTP/1.1 503 Service Unavailable" {
		t.Fatalf("full: %q", line)
	}
	// A new connection that kept silent past the grace goes next, oldest
	// first: d.
	l.mu.Lock()
	l.freshGrace = 0
	l.mu.Unlock()
	h := dialFrom(t, "127.0.0.1", addr)
	closedByServer(t, d, "the oldest silent connection")
	if s := get(t, h); s != 200 {
		t.Fatalf("the connection that took d's place: %d", s)
	}
	st := l.Stats()
	if st.Shed != 3 || st.RefusedFull != 1 || st.Peak != 4 || st.Open != 4 {
		t.Fatalf("stats %+v", st)
	}
	// The busy connection was never touched.
	if _, err := io.WriteString(c, "0123456789"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("busy connection: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestConnLimitCountsGoBackDown(t *testing.T) {
	l := newConnLimiter(HTTPLimits{MaxConnsPerIP: 8, MaxConns: 16}, nil, nodeTestLogger())
	addr := serveLimited(t, l)
	var conns []net.Conn
	for i := range 40 {
		c := dialFrom(t, "127.0.0."+strconv.Itoa(2+i%3), addr)
		if i%2 == 0 {
			get(t, c) // idle; the others stay new
		}
		conns = append(conns, c)
	}
	if st := l.Stats(); st.Shed == 0 || st.RefusedFull == 0 || st.Peak > 16 {
		t.Fatalf("40 connections against a cap of 16: %+v", st)
	}
	for _, c := range conns {
		c.Close()
	}
	waitStats(t, l, "every connection released", func(st connStats) bool { return st.Open == 0 && st.Idle == 0 && st.Fresh == 0 })
	l.mu.Lock()
	n := len(l.byIP)
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d addresses still counted", n)
	}
}

func TestHTTPLimitsDefaults(t *testing.T) {
	h := HTTPLimits{}.withDefaults(0)
	want := HTTPLimits{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 5 * time.Minute,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10, MaxConnsPerIP: 256, MaxConns: 8192}
	if h != want {
		t.Fatalf("defaults %+v", h)
	}
	for limit, want := range map[uint64]int{1024: 563, 100: 64, 1 << 20: 838604, 1 << 62: 13421516} {
		if got := (HTTPLimits{}).withDefaults(limit).MaxConns; got != want {
			t.Errorf("open-file limit %d: max conns %d, want %d", limit, got, want)
		}
	}
	// Given values stay; negative ones turn the limit off.
	h = HTTPLimits{ReadTimeout: -1, IdleTimeout: time.Second, MaxConnsPerIP: -1, MaxConns: -1}.withDefaults(1024)
	srv := h.server(http.NotFoundHandler(), newConnLimiter(h, nil, nodeTestLogger()))
	if srv.ReadTimeout != 0 || srv.IdleTimeout != time.Second || srv.ReadHeaderTimeout != 10*time.Second || srv.MaxHeaderBytes != 64<<10 {
		t.Fatalf("server %+v", srv)
	}
	if l := newConnLimiter(h, nil, nodeTestLogger()); l.max != 0 || l.perIP != 0 {
		t.Fatalf("caps off: %d %d", l.max, l.perIP)
	}
}
