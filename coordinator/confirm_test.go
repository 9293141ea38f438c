package coordinator

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/internal/farmtest"
	"github.com/croftfarm/croft/raftstore"
)

// TestConfirmLocal checks, without Raft, how a coordinator confirms a
// token with the leader before it serves a route of its own: its status
// (rule "authenticated") and an admin route. The leader is a test server
// answering GET /cluster/whoami as each case says.
func TestConfirmLocal(t *testing.T) {
	gin.SetMode(gin.TestMode)
	type leaderSays int
	const (
		valid leaderSays = iota
		revoked
		notLeader
	)
	var says atomic.Int32
	var asked atomic.Int32
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if r.URL.Path != client.PathWhoami || r.Header.Get("Authorization") != "Bearer secret-admin" || r.Header.Get(ForwardedHeader) != "1" {
			t.Errorf("the leader was asked %s %s %v", r.Method, r.URL, r.Header)
		}
		switch leaderSays(says.Load()) {
		case valid:
			_, _ = w.Write([]byte(`{"name":"admin"}`))
		case revoked:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"unauthenticated: unknown or revoked token"}`))
		case notLeader:
			w.Header().Set(NotLeaderHeader, "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":"not the leader"}`))
		}
	}))
	defer leader.Close()
	leaderAddr := strings.TrimPrefix(leader.URL, "http://")
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := strings.TrimPrefix(dead.URL, "http://")
	dead.Close() // nothing listens there any more

	const wait = 200 * time.Millisecond
	tokens := farmtest.TokensOf(raftstore.Token{Name: "admin", Role: raftstore.RoleAdmin})
	serve := func(node *fakeLeader, cfg auth.Config, method, path string) (int, string) {
		s := &Server{
			fwd:  newForwarder(node, nil, wait, nodeTestLogger()),
			auth: auth.New(cfg, func() auth.Tokens { return tokens }, nil),
			log:  nodeTestLogger(),
		}
		defer s.fwd.close()
		e := gin.New()
		m := auth.Mount{Router: e, Auth: s.auth, Abort: apierr.Abort, Confirm: s.confirmLocal}
		ok := func(c *gin.Context) { c.String(http.StatusOK, "served") }
		m.Handle(http.MethodGet, "/status", auth.PermAuthenticated, ok)
		m.Handle(http.MethodPost, "/snapshot", auth.PermAdmin, ok)
		req := httptest.NewRequest(method, path, nil)
		req.Header.Set("Authorization", "Bearer secret-admin")
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		return w.Code, w.Body.String()
	}

	for _, tc := range []struct {
		name           string
		node           *fakeLeader
		says           leaderSays
		insecure       bool
		status, admin  int  // the answers of the status and of the admin route
		leaderIsAsked  bool // whether the leader is asked at all
		adminBodyStart string
	}{
		{name: "the ready leader trusts its own copy", node: &fakeLeader{ready: true, raftLeader: true}, status: 200, admin: 200},
		{name: "a follower, the token is valid", node: &fakeLeader{leaderHTTP: leaderAddr}, says: valid, status: 200, admin: 200, leaderIsAsked: true},
		{name: "a follower, the token was revoked", node: &fakeLeader{leaderHTTP: leaderAddr}, says: revoked, status: 401, admin: 401, leaderIsAsked: true,
			adminBodyStart: `{"error":"unauthenticated: unknown or revoked token (the leader says)"}`},
		{name: "no leader known", node: &fakeLeader{why: "no leader known"}, status: 200, admin: 503,
			adminBodyStart: `{"error":"no leader: cannot confirm the token with the leader: no leader known after`},
		{name: "the leader is unreachable", node: &fakeLeader{leaderHTTP: deadAddr}, status: 200, admin: 503, adminBodyStart: `{"error":"no leader: cannot confirm`},
		{name: "the leader known is no longer it", node: &fakeLeader{leaderHTTP: leaderAddr}, says: notLeader, status: 200, admin: 503, leaderIsAsked: true,
			adminBodyStart: `{"error":"no leader: cannot confirm the token with the leader: leader ` + leaderAddr + `: forwarded to a node that is not the leader after`},
		{name: "insecure: nothing to confirm", node: &fakeLeader{leaderHTTP: leaderAddr}, says: revoked, insecure: true, status: 200, admin: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			says.Store(int32(tc.says))
			asked.Store(0)
			cfg := auth.Config{Insecure: tc.insecure}
			if code, body := serve(tc.node, cfg, http.MethodGet, "/status"); code != tc.status {
				t.Errorf("status: %d %s, want %d", code, body, tc.status)
			}
			code, body := serve(tc.node, cfg, http.MethodPost, "/snapshot")
			if code != tc.admin || !strings.HasPrefix(body, tc.adminBodyStart) {
				t.Errorf("admin route: %d %s, want %d %s...", code, body, tc.admin, tc.adminBodyStart)
			}
			if (asked.Load() > 0) != tc.leaderIsAsked {
				t.Errorf("the leader was asked %d times", asked.Load())
			}
		})
	}
}
