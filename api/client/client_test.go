package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryOnlyWhatCannotApplyTwice(t *testing.T) {
	dial := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	broken := &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}
	cases := []struct {
		err        error
		idempotent bool
		want       bool
	}{
		{&StatusError{Code: 503}, false, true},  // not applied: no leader
		{&StatusError{Code: 504}, false, false}, // outcome unknown: a create could be made twice
		{&StatusError{Code: 504}, true, true},
		{&StatusError{Code: 502}, false, false},
		{&StatusError{Code: 400}, true, false},
		{&StatusError{Code: 409}, true, false},
		{dial, false, true}, // nothing was sent
		{broken, false, false},
		{broken, true, true},
	}
	for _, c := range cases {
		if got := retryable(c.err, c.idempotent); got != c.want {
			t.Errorf("retryable(%v, idempotent=%v) = %v, want %v", c.err, c.idempotent, got, c.want)
		}
	}
	for _, c := range []struct {
		method, path string
		want         bool
	}{
		{http.MethodGet, "/api/jobs", true},
		{http.MethodPut, "/api/jobs", false},
		{http.MethodPost, "/api/resetjobs", false},
		{http.MethodPost, PathReport, true},
		{http.MethodPost, "/cluster/join", true},
	} {
		if got := idempotent(c.method, c.path); got != c.want {
			t.Errorf("idempotent(%s %s) = %v", c.method, c.path, got)
		}
	}
}

// A cluster that knows no leader yet is asked again until it does.
func TestWaitLeaderWaitsForAnElection(t *testing.T) {
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := ClusterStatus{NodeID: "c1"}
		if asked.Add(1) > 2 {
			st.LeaderID, st.LeaderHTTP = "c1", strings.TrimPrefix(srvURL(r), "http://")
		}
		_ = json.NewEncoder(w).Encode(st)
	}))
	defer srv.Close()
	c := New(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.WaitLeader(ctx)
	if err != nil || got != srv.URL {
		t.Fatalf("WaitLeader = %q, %v; want %q", got, err, srv.URL)
	}
	if n := asked.Load(); n != 3 {
		t.Errorf("asked %d times, want 3", n)
	}
	// With no leader ever, it gives up when ctx ends.
	none := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(ClusterStatus{NodeID: "c1"})
	}))
	defer none.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer scancel()
	if _, err := New(none.URL).WaitLeader(sctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("without a leader: %v, want ErrUnavailable", err)
	}
}

func srvURL(r *http.Request) string { return "http://" + r.Host }

// A client given a follower first learns the leader and goes straight to
// it: the follower would forward every request.
func TestClientGoesStraightToTheLeader(t *testing.T) {
	var leaderHits, followerHits atomic.Int32
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/jobs" {
			leaderHits.Add(1)
		}
		_ = json.NewEncoder(w).Encode(ClusterStatus{NodeID: "c1", LeaderID: "c1", LeaderHTTP: strings.TrimPrefix(srvURL(r), "http://")})
	}))
	defer leader.Close()
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/jobs" {
			followerHits.Add(1) // it would forward
		}
		_ = json.NewEncoder(w).Encode(ClusterStatus{NodeID: "c2", LeaderID: "c1", LeaderHTTP: strings.TrimPrefix(leader.URL, "http://")})
	}))
	defer follower.Close()
	c := New(follower.URL, leader.URL)
	for range 3 {
		if err := c.Do(context.Background(), http.MethodGet, "/api/jobs", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if leaderHits.Load() != 3 || followerHits.Load() != 0 {
		t.Errorf("leader served %d requests, follower %d; want 3 and 0", leaderHits.Load(), followerHits.Load())
	}
	// A leader that is not among the URLs given is left to the forwarding.
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(ClusterStatus{NodeID: "c2", LeaderID: "c9", LeaderHTTP: "10.255.255.1:19211"})
	}))
	defer elsewhere.Close()
	c = New(elsewhere.URL, follower.URL)
	if err := c.Do(context.Background(), http.MethodGet, "/api/jobs", nil, nil); err != nil {
		t.Fatalf("with an unreachable leader address: %v", err)
	}
}

// Croft's own routes answer 201 (created, with a body) and 204 (no body):
// both are successes; anything outside 2xx is a StatusError.
func TestDoTakesEvery2xx(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cluster/status":
			_ = json.NewEncoder(w).Encode(ClusterStatus{NodeID: "c1"})
		case "/created":
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"ids":[7]}`))
		case "/gone":
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusMultipleChoices)
		}
	}))
	defer srv.Close()
	c := New(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var created struct{ IDs []int64 }
	if err := c.Do(ctx, http.MethodPost, "/created", map[string]int{}, &created); err != nil || len(created.IDs) != 1 || created.IDs[0] != 7 {
		t.Fatalf("201: %v %+v", err, created)
	}
	if err := c.Do(ctx, http.MethodDelete, "/gone", nil, &created); err != nil {
		t.Fatalf("204: %v", err)
	}
	var se *StatusError
	if err := c.Do(ctx, http.MethodGet, "/other", nil, nil); !errors.As(err, &se) || se.Code != http.StatusMultipleChoices {
		t.Fatalf("300: %v", err)
	}
}
