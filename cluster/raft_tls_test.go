package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/internal/tlsconfig/tlstest"
)

// raftTLSTestLayer starts a stream layer on loopback, closed by the test.
func raftTLSTestLayer(t *testing.T, conf *tls.Config, timeout time.Duration, maxPending int) *raftTLSLayer {
	t.Helper()
	l, err := newRaftTLSLayer("127.0.0.1:0", conf, testLogger(), timeout, maxPending)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// raftTLSAccept waits for the next accepted connection and the byte its
// peer wrote first, which tells which peer it is.
func raftTLSAccept(t *testing.T, l *raftTLSLayer) byte {
	t.Helper()
	type result struct {
		b   byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		_, err = io.ReadFull(c, b[:])
		ch <- result{b[0], err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		return r.b
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted in 10 s")
		return 0
	}
}

// raftTLSRefused dials addr with conf and expects the server to refuse the
// handshake: with TLS 1.3 the client's handshake may complete before the
// server judged its certificate, so the refusal (an alert) can surface on
// the first read instead. A read that merely times out means accepted.
func raftTLSRefused(t *testing.T, what, addr string, conf *tls.Config) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("%s: the server accepted the connection (read: %v)", what, err)
	}
}

func TestRaftTLSLayerVerifiesPeers(t *testing.T) {
	farm := tlstest.NewCA(t, "farm")
	other := tlstest.NewCA(t, "other")
	server := raftTLSTestLayer(t, farm.Mutual(farm.Issue(t, "c1", "127.0.0.1")), 10*time.Second, 8)
	addr := server.Addr().String()
	good := raftTLSTestLayer(t, farm.Mutual(farm.Issue(t, "c2", "127.0.0.1")), 10*time.Second, 8)
	stranger := raftTLSTestLayer(t, other.Mutual(other.Issue(t, "x", "127.0.0.1")), 10*time.Second, 8)

	// A peer of another CA does not trust our certificate...
	if _, err := stranger.Dial(raft.ServerAddress(addr), 5*time.Second); err == nil {
		t.Fatal("a peer of another CA completed a dial")
	}
	// ...and one that trusts it but holds another CA's certificate, or
	// none, is refused by the server.
	strangerCert := other.Issue(t, "x", "127.0.0.1")
	raftTLSRefused(t, "client certificate of another CA", addr, &tls.Config{
		RootCAs: farm.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{strangerCert.TLS},
	})
	raftTLSRefused(t, "no client certificate", addr, &tls.Config{RootCAs: farm.Pool(), ServerName: "127.0.0.1"})
	// A plain TCP client sending Raft bytes gets nothing either.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = raw.Write([]byte{0, 1, 2, 3, '\n'})
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(raw); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("plain TCP client: the server kept the connection open")
		} // else a reset: closed too
	}
	raw.Close()

	// A certificate of the CA for another host is refused by the dialer:
	// the server's certificate names 127.0.0.1, not localhost.
	if _, err := good.Dial(raft.ServerAddress(strings.Replace(addr, "127.0.0.1", "localhost", 1)), 5*time.Second); err == nil {
		t.Fatal("a certificate was accepted for a host it does not name")
	}

	// A peer of the farm connects; it is the first connection Accept
	// returns, so none of the refused ones got through.
	c, err := good.Dial(raft.ServerAddress(addr), 5*time.Second)
	if err != nil {
		t.Fatalf("good peer: %v", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{'G'}); err != nil {
		t.Fatal(err)
	}
	if b := raftTLSAccept(t, server); b != 'G' {
		t.Fatalf("accepted a connection that wrote %q, want the good peer's", b)
	}
	// verifyPeer (Join's check) passes for the farm and fails for the
	// stranger, in both directions.
	ctx := context.Background()
	if err := good.verifyPeer(ctx, addr); err != nil {
		t.Fatalf("verifyPeer of a farm peer: %v", err)
	}
	if err := good.verifyPeer(ctx, stranger.Addr().String()); err == nil {
		t.Fatal("verifyPeer accepted a peer of another CA")
	}
	if err := stranger.verifyPeer(ctx, addr); err == nil {
		t.Fatal("a farm peer accepted the stranger's client certificate")
	}
}

func TestRaftTLSLayerBoundsHandshakes(t *testing.T) {
	farm := tlstest.NewCA(t, "farm")
	conf := farm.Mutual(farm.Issue(t, "c1", "127.0.0.1"))
	peer := raftTLSTestLayer(t, farm.Mutual(farm.Issue(t, "c2", "127.0.0.1")), 10*time.Second, 8)
	stall := func(l *raftTLSLayer) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	waitPending := func(l *raftTLSLayer, n int) {
		t.Helper()
		eventually(t, 10*time.Second, fmt.Sprintf("%d pending handshakes", n), func() (bool, string) {
			return len(l.pending) == n, fmt.Sprintf("%d pending", len(l.pending))
		})
	}
	// closedByServer reads from a stalled connection until the server
	// closes it; the deadline is only a guard against a hang.
	closedByServer := func(c net.Conn, what string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("%s: %v, want the server to close it", what, err)
		}
	}

	t.Run("a stalled handshake blocks nobody", func(t *testing.T) {
		l := raftTLSTestLayer(t, conf, time.Minute, 2)
		s1 := stall(l)
		waitPending(l, 1)
		c, err := peer.Dial(raft.ServerAddress(l.Addr().String()), 5*time.Second)
		if err != nil {
			t.Fatalf("good peer behind a stalled one: %v", err)
		}
		defer c.Close()
		if _, err := c.Write([]byte{'G'}); err != nil {
			t.Fatal(err)
		}
		if b := raftTLSAccept(t, l); b != 'G' {
			t.Fatalf("accepted %q", b)
		}
		// At the cap, a new connection is closed at once instead of
		// waiting for a slot (the handshake timeout here is a minute).
		stall(l)
		waitPending(l, 2)
		closedByServer(stall(l), "connection beyond the cap")
		// A stalled peer that goes away frees its slot.
		s1.Close()
		waitPending(l, 1)
	})

	t.Run("a stalled handshake times out", func(t *testing.T) {
		l := raftTLSTestLayer(t, conf, 200*time.Millisecond, 2)
		s := stall(l)
		closedByServer(s, "stalled handshake")
		waitPending(l, 0)
	})

	t.Run("close ends pending handshakes", func(t *testing.T) {
		l := raftTLSTestLayer(t, conf, time.Minute, 2)
		s := stall(l)
		waitPending(l, 1)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		closedByServer(s, "handshake pending at Close")
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	})
}

func TestRaftWarnsWithoutTLSOffLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "[::1]:1": true, "10.0.0.1:1": false, "0.0.0.0:1": false, "bad": false} {
		if got := raftAddrLoopback(addr); got != want {
			t.Errorf("raftAddrLoopback(%q) = %v", addr, got)
		}
	}
	// On a machine with a non-loopback address, binding Raft there
	// without TLS warns.
	var ip net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			ip = n.IP
			break
		}
	}
	if ip == nil {
		t.Skip("no non-loopback IPv4 address here to bind Raft to")
	}
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, nil)) // logged synchronously
	for _, host := range []string{"127.0.0.1", ip.String()} {
		trans, _, err := nodeRaftTransport(Config{RaftAddr: net.JoinHostPort(host, "0")}, hclog.NewNullLogger(), logger)
		if err != nil {
			t.Fatal(err)
		}
		trans.Close()
	}
	if n := strings.Count(logs.String(), "Raft traffic is unauthenticated"); n != 1 {
		t.Fatalf("%d warnings, want 1 (for %s only):\n%s", n, ip, logs.String())
	}
}
