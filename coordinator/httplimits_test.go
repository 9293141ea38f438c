package coordinator

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/agentapi"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/native"
	"github.com/croftfarm/croft/api/sas"
	"github.com/croftfarm/croft/cluster"
	"github.com/croftfarm/croft/internal/tlsconfig/tlstest"
)

// startLimited starts an insecure one-node coordinator with these HTTP
// limits and returns it with its host:port.
func startLimited(t *testing.T, h HTTPLimits) (*serverTest, string) {
	t.Helper()
	s := startServerWith(t, ServerConfig{WorkerTTL: time.Hour, Auth: auth.Config{Insecure: true}, HTTP: h})
	return s, strings.TrimPrefix(s.url, "http://")
}

func TestSlowBodyIsCutOffByReadTimeout(t *testing.T) {
	s, addr := startLimited(t, HTTPLimits{ReadTimeout: 300 * time.Millisecond})
	c := dialFrom(t, "127.0.0.1", addr)
	// One byte of a 100-byte body, and no more.
	if _, err := io.WriteString(c, "POST "+client.PathHeartbeat+" HTTP/1.1\r\nHost: croft\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The handler's read of the body failed: it answered 400 with why.
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "timeout") {
		t.Fatalf("slow body: %d %s", resp.StatusCode, body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the connection of a cut-off body is still open: %v", err)
	}
	waitStats(t, s.srv.conns, "the connection released", func(st connStats) bool { return st.Open == 0 })
}

func TestIdleConnectionIsClosedAfterIdleTimeout(t *testing.T) {
	s, addr := startLimited(t, HTTPLimits{IdleTimeout: 300 * time.Millisecond})
	c := dialFrom(t, "127.0.0.1", addr)
	if _, err := io.WriteString(c, "GET /cluster/status HTTP/1.1\r\nHost: croft\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// Kept alive, then closed by the server once idle for IdleTimeout
	// (the read deadline only guards the test).
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v", err)
	}
	waitStats(t, s.srv.conns, "the connection released", func(st connStats) bool { return st.Open == 0 })
}

func TestOversizedHeaderIsRefused(t *testing.T) {
	_, addr := startLimited(t, HTTPLimits{MaxHeaderBytes: 4 << 10})
	c := dialFrom(t, "127.0.0.1", addr)
	// net/http allows 4 KiB over MaxHeaderBytes.
	req := "GET /cluster/status HTTP/1.1\r\nHost: croft\r\nX-Big: " + strings.Repeat("x", 16<<10) + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized header: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestConnCapsUnderTLS checks the caps beneath HTTPS: the server sees
// *tls.Conn, whose idle state must still reach the limiter, and a refused
// connection is closed without a plain-text reply a TLS client could not
// read.
func TestConnCapsUnderTLS(t *testing.T) {
	farm := tlstest.NewCA(t, "farm")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerConfig{
		Node: cluster.Config{
			NodeID: "s1", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", HTTPAddr: ln.Addr().String(), Bootstrap: true,
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
			LeaderLeaseTimeout: 100 * time.Millisecond, Logger: nodeTestLogger(),
		},
		TLS:     farm.Client(),
		HTTPTLS: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{farm.Issue(t, "s1", "127.0.0.1").TLS}},
		Auth:    auth.Config{Insecure: true},
		HTTP:    HTTPLimits{MaxConnsPerIP: 2},
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})
	addr := ln.Addr().String()
	clientTLS := farm.Client()
	clientTLS.ServerName = "127.0.0.1"
	for range 2 {
		c := tls.Client(dialFrom(t, "127.0.0.2", addr), clientTLS)
		if s := get(t, c); s != http.StatusOK { // the dashboard is at /
			t.Fatalf("status %d over HTTPS", s)
		}
	}
	waitStats(t, srv.conns, "two idle TLS connections", func(st connStats) bool { return st.Open == 2 && st.Idle == 2 })
	c := dialFrom(t, "127.0.0.2", addr)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a refused TLS connection got %q, %v", b, err)
	}
	if st := srv.conns.Stats(); st.RefusedPerIP != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// flood is an attacker holding connections open from a few loopback
// addresses: idle keep-alives and request bodies that never finish.
type flood struct {
	addr string

	mu       sync.Mutex
	conns    []net.Conn // every connection opened, closed by close
	slow     []net.Conn // those sending a body, a byte a second
	statuses map[int]int
	dialErrs int
}

// run opens attempts connections from ip, one after the other; every
// slowEvery-th (none if 0) sends a header and the start of a body, the
// others a GET whose reply they read and then keep the connection idle.
func (f *flood) run(ip string, attempts, slowEvery int) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	for i := range attempts {
		c, err := d.Dial("tcp", f.addr)
		f.mu.Lock()
		if err != nil {
			f.dialErrs++
			f.mu.Unlock()
			continue
		}
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		if slowEvery > 0 && i%slowEvery == 0 {
			// Over a cap, this one was answered and closed; it cannot
			// tell without waiting, so it just goes on.
			_, _ = io.WriteString(c, "POST "+client.PathHeartbeat+" HTTP/1.1\r\nHost: croft\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
			f.mu.Lock()
			f.slow = append(f.slow, c)
			f.mu.Unlock()
			continue
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		status := 0
		if _, err := io.WriteString(c, "GET /nowhere HTTP/1.1\r\nHost: croft\r\n\r\n"); err == nil {
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				status = resp.StatusCode
			}
		}
		f.mu.Lock()
		f.statuses[status]++
		f.mu.Unlock()
		if status == http.StatusNotFound {
			_ = c.SetDeadline(time.Time{}) // admitted: keep it, idle
		} else {
			_ = c.Close()
		}
	}
}

// drip sends one more byte of every slow body each second until stop.
func (f *flood) drip(stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		f.mu.Lock()
		live := f.slow[:0]
		for _, c := range f.slow {
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := io.WriteString(c, " "); err == nil {
				live = append(live, c)
			}
		}
		f.slow = live
		f.mu.Unlock()
	}
}

func (f *flood) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.conns, f.slow = nil, nil
}

func TestAgentKeepsWorkingThroughAConnectionFlood(t *testing.T) {
	// 127.0.0.2 sends slow bodies (every other connection) and piles up
	// against its own cap: busy connections cannot be shed. 127.0.0.3-5
	// hold idle keep-alives, which push the total to the global cap.
	const (
		perIP     = 32
		maxConns  = 100 // idle ones are shed from 90 on
		attackers = 4   // 127.0.0.2 to 127.0.0.5
		attempts  = 600 // connections opened by each: 2,400 in all
		after     = 20  // agent rounds once the attackers stopped dialing
		maxRounds = 20000
	)
	if soft, _, _ := fileLimit(); soft != 0 && soft < 8192 {
		t.Skipf("open-file limit %d: the flood needs about 3,000 descriptors", soft)
	}
	s, addr := startLimited(t, HTTPLimits{
		MaxConnsPerIP: perIP, MaxConns: maxConns,
		ReadHeaderTimeout: 2 * time.Second, ReadTimeout: 4 * time.Second, IdleTimeout: 3 * time.Second, WriteTimeout: 10 * time.Second,
	})
	lim := s.srv.conns
	agentIP := netip.MustParseAddr("127.0.0.1")
	var agentRefused atomic.Int64
	lim.mu.Lock()
	lim.onRefuse = func(a netip.Addr, _ int) {
		if a == agentIP {
			agentRefused.Add(1)
		}
	}
	lim.mu.Unlock()
	baseline := runtime.NumGoroutine()

	f := &flood{addr: addr, statuses: map[int]int{}}
	t.Cleanup(f.close)
	stop := make(chan struct{})
	var dripped sync.WaitGroup
	dripped.Add(1)
	go func() {
		defer dripped.Done()
		f.drip(stop)
	}()
	t.Cleanup(func() {
		close(stop)
		dripped.Wait()
	})
	var dialing sync.WaitGroup
	for i := range attackers {
		dialing.Add(1)
		slowEvery := 0
		if i == 0 {
			slowEvery = 2
		}
		go func() {
			defer dialing.Done()
			f.run(fmt.Sprintf("127.0.0.%d", 2+i), attempts, slowEvery)
		}()
	}
	attacked := make(chan struct{})
	go func() {
		dialing.Wait()
		close(attacked)
	}()

	// Meanwhile an agent registers and heartbeats, and opens a new
	// connection for every round besides: each call must succeed.
	agent := client.New(s.url)
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer fresh.CloseIdleConnections()
	rounds, afterRounds, atCap, peakGoroutines := 0, 0, 0, 0
	for ; rounds < maxRounds && afterRounds < after; rounds++ {
		select {
		case <-attacked:
			afterRounds++
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if rounds%10 == 0 {
			if err := agent.Register(ctx, client.RegisterRequest{Name: "render-1"}); err != nil {
				cancel()
				t.Fatalf("round %d: register: %v", rounds, err)
			}
		}
		if _, err := agent.Heartbeat(ctx, client.HeartbeatRequest{Name: "render-1"}); err != nil {
			cancel()
			t.Fatalf("round %d: heartbeat: %v", rounds, err)
		}
		if lim.Stats().Open >= lim.shedAt {
			atCap++
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/cluster/status", nil)
		resp, err := fresh.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("round %d: a new connection: %v", rounds, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cancel()
		if resp.StatusCode != 200 {
			t.Fatalf("round %d: a new connection: status %d", rounds, resp.StatusCode)
		}
		peakGoroutines = max(peakGoroutines, runtime.NumGoroutine())
	}
	if afterRounds < after {
		t.Fatalf("the attackers were still dialing after %d agent rounds", rounds)
	}

	st := lim.Stats()
	f.mu.Lock()
	statuses, dialErrs, opened := fmt.Sprint(f.statuses), f.dialErrs, len(f.conns)
	f.mu.Unlock()
	t.Logf("%d agent rounds (%d near the cap); attackers opened %d connections (dial errors %d), replies %s; server %+v; goroutines %d at start, %d at most",
		rounds, atCap, opened, dialErrs, statuses, st, baseline, peakGoroutines)
	if n := agentRefused.Load(); n > 0 {
		t.Errorf("%d of the agent's connections were refused", n)
	}
	if st.Peak > maxConns {
		t.Errorf("%d connections held at once, over the cap of %d", st.Peak, maxConns)
	}
	if st.RefusedPerIP == 0 || st.Shed == 0 || atCap == 0 {
		t.Errorf("the flood never reached the caps: %+v, %d rounds near the cap", st, atCap)
	}
	f.mu.Lock()
	tooMany := f.statuses[http.StatusTooManyRequests]
	f.mu.Unlock()
	if tooMany == 0 {
		t.Errorf("no attacker connection was answered 429")
	}
	// A refused connection costs no goroutine, an admitted one a bounded
	// number: the server's and, while a request runs, its body reader.
	if limit := baseline + 2*maxConns + 100; peakGoroutines > limit {
		t.Errorf("%d goroutines during the flood, over %d", peakGoroutines, limit)
	}

	// The attackers never close anything: the server's timeouts take
	// every connection back (the agent's keep-alive may remain).
	close(stop)
	dripped.Wait()
	stop = make(chan struct{}) // for the cleanup
	waitStats(t, lim, "the flood's connections timed out", func(st connStats) bool { return st.Open <= 1 })
	nodeEventually(t, 10*time.Second, "goroutines back down", func() (bool, string) {
		n := runtime.NumGoroutine()
		return n <= baseline+20, fmt.Sprintf("%d goroutines, %d at start", n, baseline)
	})
}

// TestLongPollsEndBeforeTheWriteTimeout: every long poll of the dialects
// answers before the server's write timeout would cut its connection.
func TestLongPollsEndBeforeTheWriteTimeout(t *testing.T) {
	for name, wait := range map[string]time.Duration{
		"SAS ?wait= and log ?timeout=": sas.MaxWait * time.Second,
		"native log follow":            native.MaxLogWait,
		"agent pull":                   agentapi.MaxPullWait,
	} {
		if wait >= DefaultWriteTimeout-10*time.Second {
			t.Errorf("%s waits up to %v: not 10 s under the write timeout %v", name, wait, DefaultWriteTimeout)
		}
	}
}
