package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// gatedJob is a job that prints, waits for a gate file, prints again and
// ends; it records its shell's pid and each of its runs in files.
type gatedJob struct {
	t                          *testing.T
	dir                        string
	pid, runs, gate, afterGate string
	id                         int64
}

func newGatedJob(t *testing.T, c *client.Client, title string) *gatedJob {
	t.Helper()
	dir := t.TempDir()
	g := &gatedJob{t: t, dir: dir, pid: filepath.Join(dir, "pid"), runs: filepath.Join(dir, "runs"),
		gate: filepath.Join(dir, "go"), afterGate: filepath.Join(dir, "printed")}
	// Whatever the job leaves running when the test ends is killed by
	// process group: the job outlives its agents on purpose.
	t.Cleanup(func() {
		if shell, err := g.shell(); err == nil {
			if pgid, err := syscall.Getpgid(shell); err == nil && pgid > 1 {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}
	})
	cmd := fmt.Sprintf(`echo $$ > %s; echo run >> %s; echo start; while [ ! -e %s ]; do sleep 0.05; done; echo "after the gate"; touch %s; sleep 0.5; echo end`,
		g.pid, g.runs, g.gate, g.afterGate)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := c.CreateJob(ctx, client.NewJob{Title: title, Command: cmd})
	if err != nil {
		t.Fatal(err)
	}
	g.id = id
	return g
}

func (g *gatedJob) shell() (int, error) {
	b, err := os.ReadFile(g.pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// waitRunning waits until the job's shell runs and returns its pid.
func (g *gatedJob) waitRunning() int {
	g.t.Helper()
	limit := time.Now().Add(30 * time.Second)
	for {
		if pid, err := g.shell(); err == nil && syscall.Kill(pid, 0) == nil {
			return pid
		}
		if time.Now().After(limit) {
			g.t.Fatal("the job's shell did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// open lets the job go on, and waits until it printed past the gate.
func (g *gatedJob) open() {
	g.t.Helper()
	if err := os.WriteFile(g.gate, nil, 0o644); err != nil {
		g.t.Fatal(err)
	}
	limit := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(g.afterGate); err == nil {
			break
		}
		if time.Now().After(limit) {
			g.t.Fatal("the job did not go past its gate")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// check waits until the job is FINISHED and checks it ran once, with its
// whole output.
func (g *gatedJob) check(c *client.Client) {
	g.t.Helper()
	j := waitJob(g.t, c, g.id, "FINISHED")
	if j.RunDone != 1 || j.Errors != 0 {
		g.t.Errorf("run_done = %d, errors = %d; want one run", j.RunDone, j.Errors)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if log, err := c.Log(ctx, g.id); err != nil || !strings.Contains(log, "start\nafter the gate\nend\n") {
		g.t.Errorf("log %q, %v; want every line, once, in order", log, err)
	}
	if b, _ := os.ReadFile(g.runs); strings.Count(string(b), "run\n") != 1 {
		g.t.Errorf("the job started %d times, want once", strings.Count(string(b), "run\n"))
	}
}

// signalAndWait sends sig to the process (not its group) and waits until it
// exited, successfully.
func (p *proc) signalAndWait(sig syscall.Signal) {
	p.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("croft did not exit on %v:\n%s", sig, p.stderr())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Errorf("croft exited with %d on %v:\n%s", code, sig, p.stderr())
	}
}

func TestAgentSIGTERMLeavesItsJobToTheNextStart(t *testing.T) {
	dir := t.TempDir()
	coord := start(t, "coordinator", "--node-id", "c1", "--data-dir", filepath.Join(dir, "c1"),
		"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--bootstrap")
	c := adminClient(t, filepath.Join(dir, "c1"), coord.url)
	agentDir := filepath.Join(dir, "agent")
	agent := func() *proc {
		return startProc(t, false, "agent", "--coordinator", coord.url, "--name", "e2e-agent", "--data-dir", agentDir,
			"--token-file", filepath.Join(dir, "c1", AdminTokenFile))
	}
	first := agent()
	job := newGatedJob(t, c, "outlives a planned restart")
	shell := job.waitRunning()
	waitJob(t, c, job.id, "WORKING")
	first.signalAndWait(syscall.SIGTERM) // systemctl restart: the agent's process only
	if err := syscall.Kill(shell, 0); err != nil {
		t.Fatalf("the job died with its agent: %v", err)
	}
	job.open() // it prints while no agent runs
	second := agent()
	job.check(c)

	// Drained: the agent takes no more work and exits once its running
	// job is over and reported; "croft agent --drain" waits for that.
	job2 := newGatedJob(t, c, "runs to its end under a drain")
	job2.waitRunning()
	drain := startProc(t, false, "agent", "--drain", "--data-dir", agentDir)
	waitLogged(t, second, "draining")
	job2.open()
	select {
	case <-drain.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("croft agent --drain did not return:\n%s", drain.stderr())
	}
	if code := drain.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(drain.stdout(), "drained and exited") {
		t.Fatalf("croft agent --drain exited %d:\n%s\n%s", code, drain.stdout(), drain.stderr())
	}
	// The drain returns once the agent let go of its data directory,
	// its result acknowledged first.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if j, err := c.Job(ctx, job2.id); err != nil || j.State != "FINISHED" {
		t.Fatalf("drained job %+v, %v; want FINISHED when the drain returns", j, err)
	}
	job2.check(c)
	select {
	case <-second.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the drained agent did not exit:\n%s", second.stderr())
	}
	if code := second.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("the drained agent exited with %d", code)
	}
	coord.stop()
}

func TestDevCtrlCLeavesItsJobToTheNextDev(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dev := func() *proc {
		return start(t, "dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	}
	first := dev()
	c := adminClient(t, data, first.url)
	job := newGatedJob(t, c, "outlives croft dev")
	shell := job.waitRunning()
	waitJob(t, c, job.id, "WORKING")
	first.signalAndWait(syscall.SIGINT) // Ctrl-C
	if err := syscall.Kill(shell, 0); err != nil {
		t.Fatalf("the job died with croft dev: %v", err)
	}
	job.open()
	second := dev()
	job.check(adminClient(t, data, second.url))
	second.stop()
}

// waitLogged waits until p logged text.
func waitLogged(t *testing.T, p *proc, text string) {
	t.Helper()
	limit := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.stderr(), text) {
		if time.Now().After(limit) {
			t.Fatalf("%q not logged:\n%s", text, p.stderr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
