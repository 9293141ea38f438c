package coordinator

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
	"github.com/croftfarm/croft/raftstore"
)

// errHeldBack is the failure of a log store the test holds back.
var errHeldBack = errors.New("held back by the test")

// laggingStore refuses to store log entries while lag is set: the node
// keeps hearing the leader's heartbeats (it knows the leader) but applies
// nothing new, as a follower on a slow disk or link does.
type laggingStore struct {
	cluster.Store
	lag *atomic.Bool
}

func (s *laggingStore) StoreLogs(logs []*raft.Log) error {
	if s.lag.Load() {
		return errHeldBack
	}
	return s.Store.StoreLogs(logs)
}

func (s *laggingStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// secureMember is a coordinator of a test cluster with access control on,
// whose log store can be held back.
type secureMember struct {
	*nodeTestMember
	srv *Server
	lag atomic.Bool
}

// secureMemberStart starts a Server with access control on. The
// bootstrap node writes the admin token to <dir>/admin.token; the others
// join with joinToken.
func secureMemberStart(t *testing.T, id, dir string, bootstrap bool, join []string, joinToken string) *secureMember {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &secureMember{}
	srv, err := NewServer(ServerConfig{
		Node: cluster.Config{
			NodeID: id, DataDir: dir, RaftAddr: "127.0.0.1:0", HTTPAddr: ln.Addr().String(),
			Bootstrap:        bootstrap,
			HeartbeatTimeout: nodeTestHeartbeat, ElectionTimeout: nodeTestHeartbeat,
			LeaderLeaseTimeout: nodeTestLease, CommitTimeout: 10 * time.Millisecond,
			StabilizationTime: nodeTestStabilization,
			Logger:            nodeTestLogger().With("test", t.Name()),
			WrapStore:         func(s cluster.Store) cluster.Store { return &laggingStore{Store: s, lag: &m.lag} },
		},
		Join:           join,
		JoinToken:      joinToken,
		LeaderWait:     nodeTestWait,
		WorkerTTL:      time.Hour,
		Pprof:          true, // one more route answered locally
		BootstrapToken: bootstrap,
		AdminTokenFile: filepath.Join(dir, "admin.token"),
	})
	if err != nil {
		ln.Close()
		t.Fatalf("NewServer %s: %v", id, err)
	}
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	m.srv = srv
	m.nodeTestMember = &nodeTestMember{id: id, dir: dir, raftAddr: srv.Node().RaftAddr(), url: "http://" + ln.Addr().String(),
		boot: bootstrap, join: join, node: srv.Node()}
	m.stopFn = func() {
		m.lag.Store(false)
		if err := srv.Close(); err != nil {
			t.Errorf("close %s: %v", id, err)
		}
		<-served
	}
	t.Cleanup(m.stop)
	return m
}

// call sends method path with the secret and returns the status and body.
func (m *secureMember) call(t *testing.T, secret, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, m.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, m.id, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// knowsToken reports whether m's copy of the state holds the token.
func (m *secureMember) knowsToken(secret string) bool {
	_, ok := m.node.FSM().State().TokenByHash(auth.Hash(secret))
	return ok
}

// TestRevocationOnEveryCoordinator revokes a token through one of three
// coordinators while another one lags (its log store is held back: it
// still hears the leader but applies nothing): once the revocation is
// acknowledged, every coordinator refuses the token, on the forwarded
// routes and on those each coordinator answers itself (every local route
// of the server: the cluster status, snapshots, pprof), including the
// lagging one, whose own copy still holds the token. A valid token still
// works there. Once the follower catches up its copy refuses the token
// too.
func TestRevocationOnEveryCoordinator(t *testing.T) {
	base := t.TempDir()
	n1 := secureMemberStart(t, "n1", filepath.Join(base, "n1"), true, nil, "")
	var adminSecret string
	nodeEventually(t, 20*time.Second, "the bootstrap admin token", func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(n1.dir, "admin.token"))
		adminSecret = strings.TrimSpace(string(b))
		return err == nil && adminSecret != "", fmt.Sprint(err)
	})
	n2 := secureMemberStart(t, "n2", filepath.Join(base, "n2"), false, []string{n1.url}, adminSecret)
	n3 := secureMemberStart(t, "n3", filepath.Join(base, "n3"), false, []string{n1.url}, adminSecret)
	ms := []*secureMember{n1, n2, n3}
	for _, m := range ms {
		nodeTestVoters(t, m.nodeTestMember, "n1", "n2", "n3")
	}

	// Every route a coordinator answers itself, with how to call it.
	type route struct{ method, path string }
	var local []route
	for _, r := range n1.srv.Routes() {
		if !r.Local {
			continue
		}
		c, ok := routeCases[r.Method+" "+r.Path]
		if !ok {
			t.Fatalf("local route %s %s has no case in routeCases", r.Method, r.Path)
		}
		method := r.Method
		if method == "ANY" {
			method = http.MethodGet
		}
		local = append(local, route{method, c.path})
	}
	if len(local) < 3 {
		t.Fatalf("local routes %+v: want at least the status, snapshots and pprof", local)
	}
	forwarded := []route{{http.MethodGet, client.PathTokens}, {http.MethodGet, "/api/jobs"}, {http.MethodGet, client.PathWhoami}}

	// An admin token "ops", so that every route is open to it.
	leader := nodeTestLeader(t, n1.nodeTestMember, n2.nodeTestMember, n3.nodeTestMember)
	var via *secureMember // a follower: the create is forwarded
	for _, m := range ms {
		if m.id != leader.id {
			via = m
		}
	}
	var ops client.Token
	if err := client.NewWith(client.Options{Token: adminSecret}, via.url).Do(t.Context(), http.MethodPost, client.PathTokens,
		client.TokenRequest{Name: "ops", Role: raftstore.RoleAdmin}, &ops); err != nil || ops.Secret == "" {
		t.Fatalf("create ops: %+v %v", ops, err)
	}
	nodeEventually(t, 15*time.Second, "every coordinator knows ops", func() (bool, string) {
		for _, m := range ms {
			if !m.knowsToken(ops.Secret) {
				return false, m.id + " does not"
			}
		}
		return true, ""
	})
	for _, m := range ms {
		for _, r := range append(local, forwarded...) {
			if code, body := m.call(t, ops.Secret, r.method, r.path, ""); code == http.StatusUnauthorized || code == http.StatusForbidden {
				t.Fatalf("%s %s on %s with a valid admin token: %d %s", r.method, r.path, m.id, code, body)
			}
		}
	}

	// Hold a follower back and revoke ops through the other coordinator
	// that is not the leader... whichever leads now.
	leader = nodeTestLeader(t, n1.nodeTestMember, n2.nodeTestMember, n3.nodeTestMember)
	var lagging, other *secureMember
	for _, m := range ms {
		switch {
		case m.id == leader.id:
		case lagging == nil:
			lagging = m
		default:
			other = m
		}
	}
	lagging.lag.Store(true)
	if err := client.NewWith(client.Options{Token: adminSecret}, other.url).Do(t.Context(), http.MethodDelete, client.PathTokens+"/ops", nil, nil); err != nil {
		t.Fatalf("revoke ops through %s: %v", other.id, err)
	}
	if !lagging.knowsToken(ops.Secret) {
		t.Fatalf("%s applied the revocation although held back: the test shows nothing", lagging.id)
	}
	t.Logf("leader %s; %s lags (its copy still holds ops); revoked through %s", leader.id, lagging.id, other.id)

	// Refused at once everywhere, the lagging follower included.
	for _, m := range ms {
		for _, r := range append(local, forwarded...) {
			if code, body := m.call(t, ops.Secret, r.method, r.path, ""); code != http.StatusUnauthorized {
				t.Errorf("%s %s on %s (%s) with the revoked token: %d %s, want 401", r.method, r.path, m.id, roleOf(m, leader, lagging), code, body)
			}
		}
	}
	if !lagging.knowsToken(ops.Secret) {
		t.Fatalf("%s caught up during the checks: they did not run against a lagging copy", lagging.id)
	}
	// A valid token still gets the lagging follower's own status and
	// snapshot: it asks the leader, which knows the token.
	for _, r := range []route{{http.MethodGet, "/cluster/status"}, {http.MethodPost, "/cluster/snapshot"}} {
		if code, body := lagging.call(t, adminSecret, r.method, r.path, ""); code == http.StatusUnauthorized || code == http.StatusForbidden {
			t.Errorf("%s %s on the lagging %s with the admin token: %d %s", r.method, r.path, lagging.id, code, body)
		}
	}

	// Caught up, its own copy refuses the token too.
	lagging.lag.Store(false)
	nodeEventually(t, 20*time.Second, lagging.id+" applies the revocation", func() (bool, string) {
		return !lagging.knowsToken(ops.Secret), ""
	})
	for _, r := range local {
		if code, body := lagging.call(t, ops.Secret, r.method, r.path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s %s on %s, caught up: %d %s, want 401", r.method, r.path, lagging.id, code, body)
		}
	}
}

// roleOf names m's part in the test, for messages.
func roleOf(m *secureMember, leader *nodeTestMember, lagging *secureMember) string {
	switch {
	case m.id == leader.id:
		return "the leader"
	case m == lagging:
		return "the lagging follower"
	}
	return "a follower"
}
