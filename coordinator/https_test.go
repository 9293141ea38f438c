package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
	"github.com/croftfarm/croft/internal/tlsconfig/tlstest"
)

// tlsTestStart starts a Server with HTTPS and Raft over mutual TLS. farm
// issues its HTTPS certificate and is the CA it trusts; raftCA issues its
// Raft certificate (the farm's CA, or another one).
func tlsTestStart(t *testing.T, farm, raftCA *tlstest.CA, id, dir string, bootstrap bool, join []string) *nodeTestMember {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLeaf := farm.Issue(t, id, "127.0.0.1")
	srv, err := NewServer(ServerConfig{
		Node: cluster.Config{
			NodeID: id, DataDir: dir, RaftAddr: "127.0.0.1:0", HTTPAddr: ln.Addr().String(),
			Bootstrap:        bootstrap,
			HeartbeatTimeout: nodeTestHeartbeat, ElectionTimeout: nodeTestHeartbeat,
			LeaderLeaseTimeout: nodeTestLease, CommitTimeout: 10 * time.Millisecond,
			Logger:  nodeTestLogger().With("test", t.Name()),
			RaftTLS: raftCA.Mutual(raftCA.Issue(t, id+"-raft", "127.0.0.1")),
		},
		Join:       join,
		TLS:        farm.Client(),
		LeaderWait: nodeTestWait,
		HTTPTLS:    &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{httpLeaf.TLS}},
		Auth:       auth.Config{Insecure: true}, // TLS is under test here; access control has its own tests
	})
	if err != nil {
		ln.Close()
		t.Fatalf("NewServer %s: %v", id, err)
	}
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	m := &nodeTestMember{id: id, dir: dir, raftAddr: srv.Node().RaftAddr(), url: "https://" + ln.Addr().String(),
		boot: bootstrap, join: join, node: srv.Node()}
	m.stopFn = func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close %s: %v", id, err)
		}
		<-served
	}
	t.Cleanup(m.stop)
	return m
}

// TestRaftTLSCluster runs three coordinators with HTTPS and Raft over
// mutual TLS: they join over https, elect a leader and replicate; a write
// to a follower is forwarded over https; a coordinator whose Raft
// certificate is of another CA is refused before it becomes a voter.
func TestRaftTLSCluster(t *testing.T) {
	farm := tlstest.NewCA(t, "farm")
	base := t.TempDir()
	n1 := tlsTestStart(t, farm, farm, "n1", filepath.Join(base, "n1"), true, nil)
	nodeTestLeader(t, n1)
	n2 := tlsTestStart(t, farm, farm, "n2", filepath.Join(base, "n2"), false, []string{n1.url})
	n3 := tlsTestStart(t, farm, farm, "n3", filepath.Join(base, "n3"), false, []string{strings.TrimPrefix(n1.url, "https://")})
	ms := []*nodeTestMember{n1, n2, n3}
	for _, m := range ms {
		nodeTestVoters(t, m, "n1", "n2", "n3")
	}
	follower := nodeTestFollower(ms, nodeTestLeader(t, ms...)) // if the leadership moves, writes still go through

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fc := client.NewWith(client.Options{TLS: farm.Client()}, follower.url)
	acked := map[int64]string{}
	for i := range 3 {
		title := fmt.Sprint("over tls ", i)
		id, err := fc.CreateJob(ctx, client.NewJob{Title: title, State: "PAUSED"})
		if err != nil {
			t.Fatalf("create through follower %s: %v", follower.id, err)
		}
		acked[id] = title
	}
	for _, m := range ms {
		nodeTestHasJobs(t, m, acked)
	}

	// Plain HTTP to an HTTPS coordinator gets no API answer.
	if _, err := client.New(strings.Replace(follower.url, "https://", "http://", 1)).Job(ctx, 1); !client.IsStatus(err, http.StatusBadRequest) {
		t.Fatalf("plain HTTP to an HTTPS coordinator: %v, want 400", err)
	}

	// A coordinator with a Raft certificate of another CA asks to join
	// (its HTTPS certificate is good): refused, the voters stay three.
	rogue := tlsTestStart(t, farm, tlstest.NewCA(t, "other"), "n4", filepath.Join(base, "n4"), false, nil)
	err := fc.Join(ctx, client.JoinRequest{NodeID: "n4", RaftAddr: rogue.raftAddr, HTTPAddr: strings.TrimPrefix(rogue.url, "https://")})
	if !client.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), cluster.ErrPeerUnverified.Error()) {
		t.Fatalf("join of a peer of another CA: %v, want 400 %q", err, cluster.ErrPeerUnverified)
	}
	// The same through Node.Join, on whichever node leads now (a busy
	// machine may have cost the first leader its lease meanwhile).
	nodeEventually(t, 15*time.Second, "the leader's Join refuses n4", func() (bool, string) {
		for _, m := range ms {
			if m.node.IsLeader() {
				err := m.node.Join(ctx, cluster.JoinRequest{NodeID: "n4", RaftAddr: rogue.raftAddr, HTTPAddr: "x:1"})
				return errors.Is(err, cluster.ErrPeerUnverified), fmt.Sprintf("Join on %s: %v", m.id, err)
			}
		}
		return false, "no ready leader"
	})
	nodeTestVoters(t, n1, "n1", "n2", "n3")
	if got := rogue.node.FSM().State().AppliedIndex(); got != 0 {
		t.Fatalf("the rogue applied entries up to %d", got)
	}
}

func TestJoinURLMustMatchTheScheme(t *testing.T) {
	farm := tlstest.NewCA(t, "farm")
	for _, c := range []struct {
		tls  *tls.Config
		join string
	}{
		{farm.Client(), "http://127.0.0.1:1"},
		{nil, "https://127.0.0.1:1"},
	} {
		_, err := NewServer(ServerConfig{Node: cluster.Config{NodeID: "x", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0"}, Join: []string{c.join}, TLS: c.tls, HTTPTLS: c.tls})
		if !errors.Is(err, ErrSchemeMismatch) {
			t.Errorf("join %s with TLS %v: %v, want ErrSchemeMismatch", c.join, c.tls != nil, err)
		}
	}
	for _, sc := range []ServerConfig{{HTTPTLS: farm.Client()}, {TLS: farm.Client()}} {
		sc.Node.NodeID, sc.Node.DataDir, sc.Node.RaftAddr = "x", t.TempDir(), "127.0.0.1:0"
		if _, err := NewServer(sc); !errors.Is(err, ErrSchemeMismatch) {
			t.Errorf("NewServer with HTTPTLS %v, TLS %v: %v, want ErrSchemeMismatch", sc.HTTPTLS != nil, sc.TLS != nil, err)
		}
	}
	got, err := nodeJoinURLs([]string{"127.0.0.1:1", "https://h:2"}, true)
	if err != nil || strings.Join(got, " ") != "https://127.0.0.1:1 https://h:2" {
		t.Fatalf("nodeJoinURLs = %v, %v", got, err)
	}
}
