package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/internal/testwait"
)

// A coordinator started on a fresh data dir without --bootstrap or
// --join refuses to start (exit 2) and says what to do; it used to start
// quietly and answer every request "503 no leader" (issue 12).
func TestCoordinatorFreshDirNeedsBootstrapOrJoin(t *testing.T) {
	cmd := exec.Command(croftBin(t), "coordinator", "--node-id", "c1", "--data-dir", filepath.Join(t.TempDir(), "c1"),
		"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("exit %d (%v), want 2:\n%s", code, err, out)
	}
	if !strings.Contains(string(out), "--bootstrap") || !strings.Contains(string(out), "--join") {
		t.Fatalf("the message does not tell what to do:\n%s", out)
	}
}

// An agent whose coordinator does not answer says so, with the address
// and the error, on its first try (it printed nothing for 8 s: issue 12).
func TestAgentSaysItCannotReachTheCoordinator(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close() // nobody listens there now: connection refused
	p := startProc(t, false, "agent", "--coordinator", url, "--name", "lonely", "--data-dir", filepath.Join(t.TempDir(), "agent"), "--token", "x")
	// The first try gives up after 1.5 s; the bound is loose for a busy CI.
	testwait.Until(t, 10*time.Second, "the agent logs that it cannot register", func() (bool, string) {
		s := p.stderr()
		return strings.Contains(s, "cannot register with the coordinators") && strings.Contains(s, url) && strings.Contains(s, "refused"), s
	})
	if !strings.Contains(p.stderr(), "registering with the coordinators") {
		t.Fatalf("no line before the first try:\n%s", p.stderr())
	}
}
