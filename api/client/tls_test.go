package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/croftfarm/croft/internal/tlsconfig/tlstest"
)

// A client of an HTTPS cluster reaches the leader it learned of, named by
// host:port in a status reply, over https too.
func TestLeaderOfAnHTTPSClusterIsHTTPS(t *testing.T) {
	ca := tlstest.NewCA(t, "farm")
	leaf := ca.Issue(t, "coordinator", "127.0.0.1")
	serve := func(h http.HandlerFunc) *httptest.Server {
		s := httptest.NewUnstartedServer(h)
		s.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
		s.StartTLS()
		t.Cleanup(s.Close)
		return s
	}
	var leaderHits, followerHits atomic.Int32
	var leaderAddr string
	leader := serve(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/jobs" {
			leaderHits.Add(1)
		}
		_ = json.NewEncoder(w).Encode(ClusterStatus{NodeID: "c1", LeaderID: "c1", LeaderHTTP: r.Host})
	})
	leaderAddr = strings.TrimPrefix(leader.URL, "https://")
	follower := serve(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/jobs" {
			followerHits.Add(1)
		}
		_ = json.NewEncoder(w).Encode(ClusterStatus{NodeID: "c2", LeaderID: "c1", LeaderHTTP: leaderAddr})
	})

	c := NewWith(Options{TLS: ca.Client()}, follower.URL, leader.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := c.FindLeader(ctx); err != nil || got != leader.URL {
		t.Fatalf("FindLeader = %q, %v; want %q", got, err, leader.URL)
	}
	for range 3 {
		if err := c.Do(ctx, http.MethodGet, "/api/jobs", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if l, f := leaderHits.Load(), followerHits.Load(); l != 3 || f != 0 {
		t.Fatalf("leader got %d requests, follower %d; want 3 and 0", l, f)
	}

	// A client that trusts another CA gets no answer, and says why once
	// every coordinator refused, rather than retrying until ctx ends.
	other := tlstest.NewCA(t, "other")
	var ve *tls.CertificateVerificationError
	if err := NewWith(Options{TLS: other.Client()}, follower.URL, leader.URL).Do(ctx, http.MethodGet, "/api/jobs", nil, nil); !errors.As(err, &ve) {
		t.Fatalf("client with another CA: %v, want a certificate verification error", err)
	}
}
