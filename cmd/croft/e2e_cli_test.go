package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// runCLI runs the croft binary with the CROFT_* environment given and
// returns its stdout, stderr and exit code.
func runCLI(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, croftBin(t), args...)
	cmd.Env = append(cmd.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("croft %q: %v", args, err)
	}
	return out.String(), errb.String(), code
}

// TestCLIAgainstDev drives every client command of the binary against
// "croft dev": exit codes, tables, JSON.
func TestCLIAgainstDev(t *testing.T) {
	dir := t.TempDir()
	dev := start(t, "dev", "--data-dir", filepath.Join(dir, "data"), "--agent-data-dir", filepath.Join(dir, "agent"),
		"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	// The coordinator from the environment, the token from a config
	// file (CROFT_CONFIG: the user's own is not read).
	conf := writeFile(t, dir, "config", "# croft\ntoken_file = "+filepath.Join(dir, "data", AdminTokenFile)+"\n", 0o600)
	adminToken(t, filepath.Join(dir, "data"))
	env := []string{"CROFT_COORDINATOR=" + dev.url, "CROFT_TOKEN=", "CROFT_CONFIG=" + conf}
	run := func(want int, args ...string) string {
		t.Helper()
		out, errs, code := runCLI(t, env, args...)
		if code != want {
			t.Fatalf("croft %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, out, errs)
		}
		return out
	}

	// submit --wait: exit 0 for a finished job, 1 for a failed one.
	out := run(0, "submit", "--wait", "--title", "frames", "--", "sh", "-c", "echo frame 1; echo frame 2")
	ok := regexp1(t, `job (\d+) finished \(exit 0\)`, out)
	out = run(1, "submit", "--wait", "--title", "bad", "--", "sh", "-c", "echo oops; exit 3")
	bad := regexp1(t, `job (\d+) failed \(exit 3\)`, out)
	run(1, "wait", "--quiet", ok, bad)
	run(0, "wait", "--quiet", ok)

	// jobs --json, job ID (its run and exit code), log.
	var jobs []client.NativeJob
	if err := json.Unmarshal([]byte(run(0, "jobs", "--json", "--state", "failed")), &jobs); err != nil || len(jobs) != 1 || strconv.FormatInt(jobs[0].ID, 10) != bad {
		t.Fatalf("jobs --json --state failed: %+v %v", jobs, err)
	}
	out = run(0, "job", bad)
	if !regexp.MustCompile(`(?m)^exit\s+3$`).MatchString(out) || !regexp.MustCompile(`(?m)^1\s+\d+\s+\S+\s+failed\s+\S+\s+\S+\s+3\s+0\s+-$`).MatchString(out) {
		t.Fatalf("croft job %s:\n%s", bad, out)
	}
	if out = run(0, "log", ok); !strings.Contains(out, "frame 1\nframe 2\n") {
		t.Fatalf("croft log %s:\n%s", ok, out)
	}
	if out = run(0, "log", "-f", bad); !strings.Contains(out, "oops") {
		t.Fatalf("croft log -f %s:\n%s", bad, out)
	}

	// pause, start, cancel, delete.
	p := strings.TrimSpace(run(0, "submit", "--paused", "--quiet", "true"))
	if out = run(0, "job", p); !regexp.MustCompile(`(?m)^state\s+paused$`).MatchString(out) {
		t.Fatalf("paused job:\n%s", out)
	}
	run(0, "start", p)
	run(0, "wait", "--quiet", p)
	s := strings.TrimSpace(run(0, "submit", "--quiet", "sleep 30"))
	if out = run(0, "cancel", s); !strings.Contains(out, "job "+s+": canceled") {
		t.Fatalf("cancel: %s", out)
	}
	run(0, "delete", s)
	run(1, "job", s)
	run(2, "delete")

	// workers, worker disable and enable.
	if out = run(0, "workers"); !strings.Contains(out, "ENABLED") || !regexp.MustCompile(`(?m)\syes\s`).MatchString(out) {
		t.Fatalf("workers:\n%s", out)
	}
	var ws []client.Worker
	if err := json.Unmarshal([]byte(run(0, "workers", "--json")), &ws); err != nil || len(ws) == 0 {
		t.Fatalf("workers --json: %v %v", ws, err)
	}
	run(0, "worker", "disable", ws[0].Name)
	if out = run(0, "workers"); !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(ws[0].Name) + `\s+\S+\s+no\s`).MatchString(out) {
		t.Fatalf("disabled worker:\n%s", out)
	}
	run(0, "worker", "enable", ws[0].Name)
	run(1, "worker", "enable", "no-such-worker")
	run(0, "worker", "drain", ws[0].Name)
	run(0, "worker", "enable", ws[0].Name)

	// cluster status; the other lists answer.
	if out = run(0, "cluster", "status"); !strings.Contains(out, "REACHABLE") || !strings.Contains(out, "yes") {
		t.Fatalf("cluster status:\n%s", out)
	}
	for _, cmd := range [][]string{{"hosts"}, {"sessions"}, {"templates"}, {"executions"}, {"token", "list"}, {"project", "list"}} {
		run(0, cmd...)
	}

	// --help of every command and subcommand: usage on stdout, exit 0.
	for _, cmd := range helpCommands() {
		out, errs, code := runCLI(t, env, append(cmd, "--help")...)
		if code != 0 || !strings.Contains(out, "Usage") || errs != "" {
			t.Errorf("croft %q --help: exit %d\nstdout:\n%s\nstderr:\n%s", cmd, code, out, errs)
		}
	}
	// An unknown flag: its error once, exit 2.
	_, errs, code := runCLI(t, env, "jobs", "--bogus")
	if code != 2 || strings.Count(errs, "-bogus") != 1 {
		t.Fatalf("unknown flag: exit %d, stderr %q", code, errs)
	}

	// A stopped coordinator: a clear error at once.
	dev.stop()
	began := time.Now()
	_, errs, code = runCLI(t, env, "cluster", "status")
	if took := time.Since(began); code != 1 || !strings.Contains(errs, "no coordinator available") || !strings.Contains(errs, "connection refused") || took > 5*time.Second {
		t.Fatalf("stopped coordinator: exit %d after %v, stderr %q", code, took, errs)
	}
}

// helpCommands are the commands and subcommands whose --help is tested.
func helpCommands() [][]string {
	cmds := [][]string{{"coordinator"}, {"agent"}, {"dev"}, {"bench"}, {"cluster"}, {"cluster", "status"}, {"cluster", "join"},
		{"cluster", "remove"}, {"token"}, {"token", "create"}, {"token", "list"}, {"token", "revoke"}, {"project"},
		{"project", "create"}, {"project", "list"}, {"project", "delete"}, {"worker"}, {"worker", "enable"},
		{"worker", "disable"}, {"worker", "drain"}, {"session"}, {"session", "close"}, {"session", "start"},
		{"session", "delete"}, {"template"}, {"template", "delete"}, {"execution"}, {"execution", "cancel"},
		{"execution", "delete"}}
	for name := range clientCommands {
		cmds = append(cmds, []string{name})
	}
	return cmds
}

// regexp1 returns the first group of re in s.
func regexp1(t *testing.T, re, s string) string {
	t.Helper()
	m := regexp.MustCompile(re).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("%q not in:\n%s", re, s)
	}
	return m[1]
}
