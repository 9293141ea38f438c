package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// TestAgentStopLeavesJobsToTheNextStart stops an agent as SIGTERM does
// (its context ends, KillOnStop unset): the job runs on, what it prints
// meanwhile waits in the spool, and the next agent re-adopts it and
// delivers all of it and its result, under the same attempt id, once.
func TestAgentStopLeavesJobsToTheNextStart(t *testing.T) {
	f, srv := newFake(t)
	work := t.TempDir()
	dir, restart := readoptTest(t, f, srv, client.Assignment{
		AttemptID: 61, JobID: 6, Dir: work,
		Command: `echo $$ >pid; echo start; while [ ! -e go1 ]; do sleep 0.02; done; echo "while down"; while [ ! -e go2 ]; do sleep 0.02; done; echo end`,
	}, nil, func(string) { f.waitFor("the job to start", func() bool { return string(f.logs[61]) == "start\n" }) })
	shell := readPID(t, filepath.Join(work, "pid"))
	if err := syscall.Kill(shell, 0); err != nil {
		t.Fatalf("the job died with its agent: %v", err)
	}
	// The job writes while no agent runs: its output waits on disk.
	if err := os.WriteFile(filepath.Join(work, "go1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(slotOf(dir, 61), outputName)
	waitUntil(t, "the output written while down", func() bool {
		b, _ := os.ReadFile(out)
		return strings.Contains(string(b), "while down")
	})
	second := restart()
	waitUntil(t, "the second agent to take the attempt", func() bool { return slices.Contains(second.Running(), 61) })
	if err := os.WriteFile(filepath.Join(work, "go2"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the result", func() bool { _, ok := f.results[61]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if res := f.results[61]; res.ExitCode != 0 || res.Lost || res.AttemptID != 61 || res.Name != "node-1" {
		t.Errorf("result = %+v, want exit 0 of attempt 61 from node-1", res)
	}
	if got, want := string(f.logs[61]), "start\nwhile down\nend\n"; got != want {
		t.Errorf("log = %q, want %q", got, want)
	}
	if f.dones[61] != 1 || f.busyPulls != 0 {
		t.Errorf("%d Done reports, %d pulls while busy; want 1 and 0", f.dones[61], f.busyPulls)
	}
}

// runUntilReturned runs a until the test ends; returned is closed when
// Run returned, which must be without an error.
func runUntilReturned(t *testing.T, a *Agent) (returned <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(deadline):
			t.Error("Run did not return after its context ended")
		}
	})
	return done
}

// waitReturned waits until Run returned.
func waitReturned(t *testing.T, returned <-chan struct{}, why string) {
	t.Helper()
	select {
	case <-returned:
	case <-time.After(deadline):
		t.Fatalf("Run did not return %s", why)
	}
}

func TestAgentDrainExitsOnceTheResultIsAcknowledged(t *testing.T) {
	f, srv := newFake(t)
	work := t.TempDir()
	a := newAgent(t, srv, t.TempDir(), nil)
	returned := runUntilReturned(t, a)
	f.push(client.Assignment{AttemptID: 71, JobID: 7, Dir: work, Command: `echo start; while [ ! -e go ]; do sleep 0.02; done; echo end`})
	f.waitFor("the job to start", func() bool { return string(f.logs[71]) == "start\n" })
	a.Drain()
	a.Drain() // twice is harmless
	// Work queued now is not taken: the agent drains.
	f.push(client.Assignment{AttemptID: 72, JobID: 8, Command: `echo never`})
	// The coordinator does not acknowledge the result yet.
	f.set(func() { f.refuseDone = true })
	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the result to be refused twice", func() bool { return f.refusedDones >= 2 })
	select {
	case <-returned:
		t.Fatal("Run returned before the result was acknowledged")
	default:
	}
	f.set(func() { f.refuseDone = false })
	f.waitFor("the result", func() bool { _, ok := f.results[71]; return ok })
	waitReturned(t, returned, "once drained")
	f.mu.Lock()
	defer f.mu.Unlock()
	if res := f.results[71]; res.ExitCode != 0 || res.Lost || res.Next || f.dones[71] != 1 {
		t.Errorf("result = %+v (%d Done reports), want one, exit 0, not asking for more", res, f.dones[71])
	}
	if got := string(f.logs[71]); got != "start\nend\n" {
		t.Errorf("log = %q", got)
	}
	if len(f.queue) != 1 || f.queue[0].AttemptID != 72 {
		t.Errorf("queue = %+v, want attempt 72 left to others", f.queue)
	}
}

func TestRequestDrainReachesTheAgentThroughItsDataDir(t *testing.T) {
	_, srv := newFake(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := RequestDrain(ctx, dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no agent: %v, want ErrNotRunning", err)
	}
	a := newAgent(t, srv, dir, func(c *Config) { c.Control = true })
	returned := runUntilReturned(t, a)
	waitUntil(t, "the pid file", func() bool { return exists(filepath.Join(dir, pidName)) })
	pid, err := RequestDrain(ctx, dir)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("RequestDrain = %d, %v; want this process", pid, err)
	}
	// RequestDrain returns once the agent released its data directory,
	// after it removed its pid file.
	if exists(filepath.Join(dir, pidName)) {
		t.Error("RequestDrain returned while the agent runs")
	}
	waitReturned(t, returned, "after RequestDrain")
	if _, err := RequestDrain(ctx, dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("after the agent exited: %v, want ErrNotRunning", err)
	}
}

func TestRequestDrainRefusesAStalePidFile(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDataDir(dir) // an agent that has not named itself yet
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// A pid file left by an agent that died: the pid, reused or not, is
	// not that process any more.
	if err := os.WriteFile(filepath.Join(dir, pidName), []byte(`{"pid":1,"ident":{"start":1,"boot":"another boot"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := RequestDrain(ctx, dir); !errors.Is(err, ErrNoPidFile) {
		t.Fatalf("stale pid file: %v, want ErrNoPidFile", err)
	}
}

func TestJobEnvironmentNamesTheJob(t *testing.T) {
	// The agent's own secrets and job variables are not the job's.
	t.Setenv("CROFT_TOKEN", "the agent's secret")
	t.Setenv(EnvTry, "9")
	f, srv := newFake(t)
	startAgent(t, srv)
	const show = `echo "job=$CROFT_JOB_ID attempt=$CROFT_ATTEMPT_ID try=$CROFT_TRY project=$CROFT_PROJECT session=$CROFT_SESSION_ID token=$CROFT_TOKEN"`
	f.push(client.Assignment{AttemptID: 81, JobID: 8, Try: 2, Project: "film", Session: "0123abcd", Command: show,
		Environment: `CROFT_JOB_ID=999\nCROFT_PROJECT=spoofed`})
	f.push(client.Assignment{AttemptID: 82, JobID: 9, Command: show})
	f.waitFor("both results", func() bool { return len(f.results) == 2 })
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, want := range map[int64]string{
		81: "job=8 attempt=81 try=2 project=film session=0123abcd token=\n",
		82: "job=9 attempt=82 try= project= session= token=\n",
	} {
		if got := string(f.logs[id]); got != want {
			t.Errorf("attempt %d: log %q, want %q", id, got, want)
		}
	}
}

func TestAgentRegistersItsHost(t *testing.T) {
	f, srv := newFake(t)
	a := newAgent(t, srv, t.TempDir(), func(c *Config) {
		c.Slots = 2
		c.Interpreters = []client.Interpreter{{Name: "shell", Path: "/bin/sh"}}
	})
	runAgent(t, a)
	f.waitFor("both slots to register", func() bool { return len(f.registers) >= 2 })
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.registers {
		if r.Slots != 2 || r.CPUs <= 0 || len(r.Interpreters) == 0 || r.Interpreters[0] != (client.Interpreter{Name: "shell", Path: "/bin/sh"}) {
			t.Errorf("register %+v: want 2 slots, the CPUs, the configured interpreter first", r)
		}
	}
}
