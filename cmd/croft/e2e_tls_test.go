package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/internal/tlsconfig/tlstest"
)

// tlsCoordArgs are the flags of a coordinator with HTTPS and Raft over
// mutual TLS, one certificate for both.
func tlsCoordArgs(dir, id, cert, key, ca, raftCA string) []string {
	return []string{"coordinator", "--node-id", id, "--data-dir", filepath.Join(dir, id),
		"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--tls-cert", cert, "--tls-key", key, "--ca-cert", ca,
		"--raft-tls-cert", cert, "--raft-tls-key", key, "--raft-tls-ca", raftCA}
}

// tlsWaitMembers waits until the coordinator at url reports these members
// and a leader.
func tlsWaitMembers(t *testing.T, c *client.Client, url string, n int) client.ClusterStatus {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx, url)
		cancel()
		if err == nil && len(st.Members) == n && st.LeaderID != "" {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not see %d members and a leader: %+v %v", url, n, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLog waits until a process's stderr contains want.
func waitLog(t *testing.T, p *proc, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.stderr(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", want, p.stderr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTLSClusterEndToEnd runs three coordinators with HTTPS and Raft over
// mutual TLS and an agent over https: a job submitted to a follower is
// forwarded to the leader and runs. Plain HTTP and clients of another CA
// are refused, and a coordinator with certificates of another CA never
// becomes a member.
func TestTLSClusterEndToEnd(t *testing.T) {
	dir := t.TempDir()
	farm := tlstest.NewCA(t, "farm")
	caFile := farm.WriteCA(t, dir, "ca.pem")
	coord := func(id string, extra ...string) *proc {
		cert, key := farm.Issue(t, id, "127.0.0.1").Write(t, dir, id)
		return start(t, append(tlsCoordArgs(dir, id, cert, key, caFile, caFile), extra...)...)
	}
	c1 := coord("c1", "--bootstrap")
	if !strings.HasPrefix(c1.url, "https://") {
		t.Fatalf("coordinator announced %s, want https", c1.url)
	}
	token := adminToken(t, filepath.Join(dir, "c1"))
	tokenFile := filepath.Join(dir, "c1", AdminTokenFile)
	c2 := coord("c2", "--join", c1.url, "--token-file", tokenFile)
	c3 := coord("c3", "--join", c1.url, "--token-file", tokenFile)
	nodes := map[string]*proc{"c1": c1, "c2": c2, "c3": c3}
	urls := []string{c1.url, c2.url, c3.url}
	c := client.NewWith(client.Options{TLS: farm.Client(), Token: token}, urls...)
	st := tlsWaitMembers(t, c, c1.url, 3)

	// An agent over https runs a job submitted to a follower, which
	// forwards it to the leader over https.
	startProc(t, false, "agent", "--coordinator", strings.Join(urls, ","), "--ca-cert", caFile,
		"--name", "tls-agent", "--data-dir", filepath.Join(dir, "agent"), "--token-file", tokenFile)
	var follower string
	for id, p := range nodes {
		if id != st.LeaderID {
			follower = p.url
		}
	}
	fc := client.NewWith(client.Options{TLS: farm.Client(), Token: token}, follower)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id, err := fc.CreateJob(ctx, client.NewJob{Title: "over tls", Command: "echo hello over tls"})
	if err != nil {
		t.Fatalf("create through follower %s: %v", follower, err)
	}
	if j := waitJob(t, fc, id, "FINISHED"); j.Worker != "tls-agent" {
		t.Fatalf("job ran on %q", j.Worker)
	}
	if log, err := fc.Log(ctx, id); err != nil || !strings.Contains(log, "hello over tls") {
		t.Fatalf("log %q, %v", log, err)
	}

	// Plain HTTP gets no answer from the API, nor does a client that
	// trusts another CA.
	plain := "http://" + strings.TrimPrefix(follower, "https://")
	if _, err := client.NewWith(client.Options{Token: token}, plain).Job(ctx, id); !client.IsStatus(err, http.StatusBadRequest) {
		t.Fatalf("plain HTTP: %v, want 400", err)
	}
	other := tlstest.NewCA(t, "other")
	_, err = client.NewWith(client.Options{TLS: other.Client(), Token: token}, follower).Job(ctx, id)
	var ve *tls.CertificateVerificationError
	if !errors.As(err, &ve) {
		t.Fatalf("client of another CA: %v, want a certificate verification error", err)
	}

	// The CLI: --ca-cert verifies the cluster; without it, the system's
	// roots do not know the farm's CA.
	out, err := exec.CommandContext(ctx, croftBin(t), "cluster", "status", "--coordinator", follower, "--ca-cert", caFile, "--token-file", tokenFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "leader: "+st.LeaderID) {
		t.Fatalf("croft cluster status --ca-cert: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, croftBin(t), "cluster", "status", "--coordinator", follower, "--token-file", tokenFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate signed by unknown authority") {
		t.Fatalf("croft cluster status without --ca-cert: %v\n%s", err, out)
	}

	// A coordinator whose certificates come from another CA (it does
	// trust the farm's, so its join reaches the leader) is refused.
	otherCA := other.WriteCA(t, dir, "other-ca.pem")
	cert, key := other.Issue(t, "rogue", "127.0.0.1").Write(t, dir, "rogue")
	rogue := start(t, append(tlsCoordArgs(dir, "rogue", cert, key, caFile, otherCA), "--join", c1.url, "--token-file", tokenFile)...)
	waitLog(t, rogue, "raft peer not verified")
	if st := tlsWaitMembers(t, c, c1.url, 3); strings.Contains(fmt.Sprint(st.Members), "rogue") {
		t.Fatalf("the rogue is a member: %+v", st.Members)
	}
	rogue.stop()

	t.Run("certificates made as docs/OPERATIONS.md says", func(t *testing.T) {
		tlsOpenSSLCluster(t)
	})
}

// TestTLSDev runs the one-process farm over HTTPS: its agent verifies the
// coordinator with --ca-cert.
func TestTLSDev(t *testing.T) {
	dir := t.TempDir()
	farm := tlstest.NewCA(t, "farm")
	caFile := farm.WriteCA(t, dir, "ca.pem")
	cert, key := farm.Issue(t, "dev", "127.0.0.1").Write(t, dir, "dev")
	dev := start(t, "dev", "--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0",
		"--tls-cert", cert, "--tls-key", key, "--ca-cert", caFile,
		"--raft-tls-cert", cert, "--raft-tls-key", key, "--raft-tls-ca", caFile)
	if !strings.HasPrefix(dev.url, "https://") {
		t.Fatalf("dev announced %s, want https", dev.url)
	}
	c := client.NewWith(client.Options{TLS: farm.Client(), Token: adminToken(t, filepath.Join(dir, "data"))}, dev.url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := c.CreateJob(ctx, client.NewJob{Title: "dev tls", Command: "echo dev over tls"})
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, id, "FINISHED")
	if log, err := c.Log(ctx, id); err != nil || !strings.Contains(log, "dev over tls") {
		t.Fatalf("log %q, %v", log, err)
	}
	dev.stop()
}

// tlsOpenSSLCluster makes a CA and two coordinator certificates with the
// openssl commands of docs/OPERATIONS.md, verbatim, and forms a cluster of
// two coordinators with them: HTTPS, the join, and Raft's mutual TLS all
// accept them.
func tlsOpenSSLCluster(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("SKIP: openssl is not installed, so the documented openssl commands are not checked")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("SKIP: bash is not installed, so the documented openssl commands are not checked")
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "<!-- begin: tls-pki")
	block, _, ok2 := strings.Cut(block, "<!-- end: tls-pki -->")
	_, block, ok3 := strings.Cut(block, "```sh\n")
	block, _, ok4 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 || !ok4 {
		t.Fatal("docs/OPERATIONS.md has no tls-pki block")
	}
	dir := t.TempDir()
	pki := filepath.Join(dir, "pki")
	if err := os.Mkdir(pki, 0o700); err != nil {
		t.Fatal(err)
	}
	script := block + "\ncert o1 IP:127.0.0.1\ncert o2 IP:127.0.0.1,DNS:localhost\n"
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = pki
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the documented openssl commands failed: %v\n%s", err, out)
	}
	ca := filepath.Join(pki, "ca.pem")
	f := func(name string) string { return filepath.Join(pki, name) }
	o1 := start(t, append(tlsCoordArgs(dir, "o1", f("o1.pem"), f("o1.key"), ca, ca), "--bootstrap")...)
	token := adminToken(t, filepath.Join(dir, "o1"))
	o2 := start(t, append(tlsCoordArgs(dir, "o2", f("o2.pem"), f("o2.key"), ca, ca), "--join", o1.url, "--token", token)...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conf, err := clientTLS(ca)
	if err != nil {
		t.Fatal(err)
	}
	// o2's own view (status is answered locally) lists both members only
	// once it received the configuration from o1 over Raft's mutual TLS.
	c := client.NewWith(client.Options{TLS: conf, Token: token}, o1.url, o2.url)
	tlsWaitMembers(t, c, o2.url, 2)
	id, err := c.CreateJob(ctx, client.NewJob{Title: "openssl", State: "PAUSED"})
	if err != nil {
		t.Fatal(err)
	}
	if j, err := client.NewWith(client.Options{TLS: conf, Token: token}, o2.url).Job(ctx, id); err != nil || j.Title != "openssl" {
		t.Fatalf("job %d via o2: %+v %v", id, j, err)
	}
	out, err := exec.CommandContext(ctx, croftBin(t), "cluster", "status", "--coordinator", o2.url, "--ca-cert", ca, "--token", token).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "o1") || !strings.Contains(string(out), "o2") {
		t.Fatalf("croft cluster status: %v\n%s", err, out)
	}
	o2.stop()
	o1.stop()
}
