package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/croftfarm/croft/api/client"
)

// agentCrash is a coordinator, an agent, and a job that records its shell's
// pid and each of its runs in files.
type agentCrash struct {
	t              *testing.T
	c              *client.Client
	coord          *proc
	dataDir        string
	pidFile, marks string
	tokenFile      string
	job            int64
}

// newAgentCrash starts a one-node cluster and an agent, submits the job and
// waits until it runs.
func newAgentCrash(t *testing.T) *agentCrash {
	dir := t.TempDir()
	x := &agentCrash{t: t, dataDir: filepath.Join(dir, "agent"), pidFile: filepath.Join(dir, "pid"), marks: filepath.Join(dir, "runs")}
	x.coord = start(t, "coordinator", "--node-id", "c1", "--data-dir", filepath.Join(dir, "c1"),
		"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--bootstrap")
	x.c = adminClient(t, filepath.Join(dir, "c1"), x.coord.url)
	x.tokenFile = filepath.Join(dir, "c1", AdminTokenFile)
	// The jobs outlive the agents on purpose: whatever is left when the
	// test ends is killed by process group.
	t.Cleanup(func() {
		if shell, err := x.shell(); err == nil {
			if pgid, err := syscall.Getpgid(shell); err == nil && pgid > 1 {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := fmt.Sprintf("echo $$ > %s; echo run >> %s; echo start; sleep 3; echo end", x.pidFile, x.marks)
	id, err := x.c.CreateJob(ctx, client.NewJob{Title: "outlives its agent", Command: cmd})
	if err != nil {
		t.Fatal(err)
	}
	x.job = id
	return x
}

// agent starts an agent on the test's data directory.
func (x *agentCrash) agent() *proc {
	return startProc(x.t, false, "agent", "--coordinator", x.coord.url, "--name", "e2e-agent", "--data-dir", x.dataDir, "--token-file", x.tokenFile)
}

// shell returns the pid of the job's shell, once it wrote it.
func (x *agentCrash) shell() (int, error) {
	b, err := os.ReadFile(x.pidFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// waitRunning waits until the job is WORKING and its shell runs, and
// returns the shell's pid.
func (x *agentCrash) waitRunning() int {
	x.t.Helper()
	waitJob(x.t, x.c, x.job, "WORKING")
	limit := time.Now().Add(30 * time.Second)
	for {
		if pid, err := x.shell(); err == nil && syscall.Kill(pid, 0) == nil {
			return pid
		}
		if time.Now().After(limit) {
			x.t.Fatal("the job's shell did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runs returns how many times the job started.
func (x *agentCrash) runs() int {
	b, _ := os.ReadFile(x.marks)
	return strings.Count(string(b), "run\n")
}

// waitGoneProc polls until no process has pid (or only a zombie does).
func waitGoneProc(t *testing.T, pid int) {
	t.Helper()
	limit := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); err == nil && i > 0 && strings.HasPrefix(string(b[i+1:]), " Z") {
			return
		}
		if time.Now().After(limit) {
			t.Fatalf("process %d still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAgentKilledJobRunsOnAndIsReadopted(t *testing.T) {
	x := newAgentCrash(t)
	first := x.agent()
	shell := x.waitRunning()
	first.kill() // kill -9 of the agent's process group; the job has its own
	if err := syscall.Kill(shell, 0); err != nil {
		t.Fatalf("the job died with its agent: %v", err)
	}
	x.agent() // re-adopts it
	j := waitJob(t, x.c, x.job, "FINISHED")
	if j.RunDone != 1 {
		t.Errorf("run_done = %d, want 1", j.RunDone)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if log, err := x.c.Log(ctx, x.job); err != nil || !strings.Contains(log, "start\n") || !strings.Contains(log, "end\n") {
		t.Errorf("log %q, %v; want both lines", log, err)
	}
	if n := x.runs(); n != 1 {
		t.Errorf("the job ran %d times, want once", n)
	}
}

func TestAgentHostCrashRequeuesJob(t *testing.T) {
	x := newAgentCrash(t)
	first := x.agent()
	shell := x.waitRunning()
	// A host crash: the agent, the job's supervisor (the shell's parent;
	// the job's group is in its session) and the job's whole group die at
	// once, without a result.
	first.kill()
	pgid, err := syscall.Getpgid(shell)
	if err != nil {
		t.Fatal(err)
	}
	sup, err := unix.Getsid(shell)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGoneProc(t, shell)
	waitGoneProc(t, sup)
	x.agent() // reports the attempt lost: the job is requeued and runs again
	j := waitJob(t, x.c, x.job, "FINISHED")
	if j.RunDone != 1 || j.Errors != 0 {
		t.Errorf("run_done = %d, errors = %d; want the lost run not counted", j.RunDone, j.Errors)
	}
	if n := x.runs(); n != 2 {
		t.Errorf("the job started %d times, want twice (the crash, then the rerun)", n)
	}
}
