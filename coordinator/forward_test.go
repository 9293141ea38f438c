package coordinator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
)

// fakeLeader is a leaderView without Raft.
type fakeLeader struct {
	ready, raftLeader bool
	leaderHTTP, why   string
	storage           error
	done              chan struct{}
}

func (f *fakeLeader) ID() string                    { return "n1" }
func (f *fakeLeader) Leadership() (bool, time.Time) { return f.ready, time.Time{} }
func (f *fakeLeader) RaftLeader() bool              { return f.raftLeader }
func (f *fakeLeader) LeaderHTTP() (string, string)  { return f.leaderHTTP, f.why }
func (f *fakeLeader) Changed() <-chan struct{}      { return nil }
func (f *fakeLeader) Done() <-chan struct{}         { return f.done }
func (f *fakeLeader) StorageErr() error             { return f.storage }

// TestForwarderAnswers checks the forwarding's own answers, each through
// the one error table: served on the ready leader, 503 at once (marked)
// for a forwarded request on a non-leader, 503 "no leader" after the
// wait, 507 when the cause is this node's disk, 503 at shutdown.
func TestForwarderAnswers(t *testing.T) {
	gin.SetMode(gin.TestMode)
	shut := make(chan struct{})
	close(shut)
	for _, tc := range []struct {
		name   string
		node   *fakeLeader
		hops   string
		status int
		marked bool
		prefix string
	}{
		{"ready leader", &fakeLeader{ready: true, raftLeader: true}, "", http.StatusOK, false, ""},
		{"forwarded to a non-leader", &fakeLeader{why: "no leader known"}, "1", http.StatusServiceUnavailable, true, "not the leader"},
		{"no leader", &fakeLeader{why: "no leader known"}, "", http.StatusServiceUnavailable, false, "no leader: no leader known after"},
		{"no leader, full disk", &fakeLeader{why: "no leader known", storage: fmt.Errorf("node n1: %w: no space left on device", cluster.ErrStorage)}, "", http.StatusInsufficientStorage, false, "node n1"},
		{"shutting down", &fakeLeader{why: "no leader known", done: shut}, "", http.StatusServiceUnavailable, false, "no leader: this node is shutting down"},
		{"members disagree", &fakeLeader{raftLeader: true, leaderHTTP: "127.0.0.1:1"}, "3", http.StatusServiceUnavailable, false, "no leader: forwarded 3 times"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newForwarder(tc.node, nil, 100*time.Millisecond, nodeTestLogger())
			defer f.close()
			e := gin.New()
			e.GET("/x", f.handle, func(c *gin.Context) { c.String(http.StatusOK, "served") })
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			if tc.hops != "" {
				req.Header.Set(ForwardedHeader, tc.hops)
			}
			w := httptest.NewRecorder()
			e.ServeHTTP(w, req)
			if w.Code != tc.status || (w.Header().Get(NotLeaderHeader) != "") != tc.marked {
				t.Fatalf("status %d, marked %q: %s", w.Code, w.Header().Get(NotLeaderHeader), w.Body)
			}
			if tc.prefix == "" {
				return
			}
			var eb client.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || !strings.HasPrefix(eb.Error, tc.prefix) {
				t.Fatalf("body %s (%v), want an error starting %q", w.Body, err, tc.prefix)
			}
		})
	}
}
