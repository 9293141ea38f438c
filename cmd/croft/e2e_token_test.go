package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// cliResult is what one run of the CLI printed and its exit code.
type cliResult struct {
	stdout, stderr string
	code           int
}

// cli runs the croft binary with args and the environment env (added to
// this process's, from which any CROFT_TOKEN is removed), and waits for it.
func cli(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, croftBin(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CROFT_TOKEN=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("croft %v: %v", args, err)
	}
	return cliResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

// mustCLI is cli for a run that must succeed.
func mustCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := cli(t, env, args...)
	if r.code != 0 {
		t.Fatalf("croft %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

var secretLine = regexp.MustCompile(`(?m)^secret \(shown once, keep it\): (croft_\S+)$`)

// TestTokenAndProjectCommandsEndToEnd runs `croft project` and `croft
// token` against a `croft dev` farm, as an admin would from a shell:
// a project is made, a token for it is created (its secret printed once),
// listed without its secret, used, revoked by name (then refused: 401,
// through the API and the CLI), and a second one revoked by id.
func TestTokenAndProjectCommandsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dev := start(t, "dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	adminSecret := adminToken(t, data)
	// The admin's commands find their token in the data directory.
	asAdmin := []string{"--coordinator", dev.url, "--data-dir", data}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Projects.
	if out := mustCLI(t, nil, append([]string{"project", "create", "shots"}, asAdmin...)...); out != "created project shots\n" {
		t.Fatalf("project create printed %q", out)
	}
	mustCLI(t, nil, append([]string{"project", "create", "scratch"}, asAdmin...)...)
	out := mustCLI(t, nil, append([]string{"project", "list"}, asAdmin...)...)
	for _, p := range []string{"default", "shots", "scratch"} {
		if !regexp.MustCompile(`(?m)^` + p + `\s+0\s`).MatchString(out) {
			t.Fatalf("project list does not show %s with 0 jobs:\n%s", p, out)
		}
	}
	if out := mustCLI(t, nil, append([]string{"project", "delete", "scratch"}, asAdmin...)...); out != "deleted project scratch\n" {
		t.Fatalf("project delete printed %q", out)
	}
	var ps []client.Project
	if err := json.Unmarshal([]byte(mustCLI(t, nil, append([]string{"project", "list", "--json"}, asAdmin...)...)), &ps); err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Name != "default" || ps[1].Name != "shots" {
		t.Fatalf("projects after the delete: %+v", ps)
	}

	// A token for the project: its secret is printed once.
	out = mustCLI(t, nil, append([]string{"token", "create", "--name", "ci", "--role", "user", "--projects", "shots"}, asAdmin...)...)
	m := secretLine.FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "token ci (") || !strings.Contains(out, "role user, projects shots)") {
		t.Fatalf("token create printed:\n%s", out)
	}
	ciSecret := m[1]
	var reader client.Token
	if err := json.Unmarshal([]byte(mustCLI(t, nil, append([]string{"token", "create", "--name", "reader", "--role", "read", "--projects", "shots", "--json"}, asAdmin...)...)), &reader); err != nil {
		t.Fatal(err)
	}
	if reader.Secret == "" || reader.ID == "" || reader.Role != "read" || strings.Join(reader.Projects, ",") != "shots" {
		t.Fatalf("token create --json: %+v", reader)
	}

	// The list shows the tokens, never a secret.
	out = mustCLI(t, nil, append([]string{"token", "list"}, asAdmin...)...)
	if !regexp.MustCompile(`(?m)^ci\s+\S+\s+user\s+shots\s`).MatchString(out) || !regexp.MustCompile(`(?m)^reader\s+`+reader.ID+`\s+read\s+shots\s`).MatchString(out) {
		t.Fatalf("token list:\n%s", out)
	}
	jsonList := mustCLI(t, nil, append([]string{"token", "list", "--json"}, asAdmin...)...)
	for _, secret := range []string{adminSecret, ciSecret, reader.Secret} {
		if strings.Contains(out, secret) || strings.Contains(jsonList, secret) {
			t.Fatalf("token list shows a secret:\n%s\n%s", out, jsonList)
		}
	}
	var listed []client.Token
	if err := json.Unmarshal([]byte(jsonList), &listed); err != nil || len(listed) < 3 {
		t.Fatalf("token list --json: %v\n%s", err, jsonList)
	}

	// The token works, within its project: the native API, Coalition's,
	// and the CLI with $CROFT_TOKEN.
	ci := client.NewWith(client.Options{Token: ciSecret}, dev.url)
	id, err := ci.CreateJob(ctx, client.NewJob{Title: "by ci", Command: "true", Project: "shots", State: "PAUSED"})
	if err != nil {
		t.Fatalf("a job by the new token: %v", err)
	}
	if j, err := ci.Job(ctx, id); err != nil || j.Title != "by ci" {
		t.Fatalf("read back %+v %v", j, err)
	}
	var jobs []client.Job
	if err := ci.Do(ctx, http.MethodGet, "/api/jobs", nil, &jobs); err != nil || len(jobs) != 1 || jobs[0].ID != id {
		t.Fatalf("the token's Coalition job list: %+v %v", jobs, err)
	}
	if _, err := ci.CreateJob(ctx, client.NewJob{Title: "elsewhere", Command: "true", Project: "default"}); !client.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("a job in another project: %v, want 403", err)
	}
	ciEnv := []string{"CROFT_TOKEN=" + ciSecret}
	if out := mustCLI(t, ciEnv, "project", "list", "--coordinator", dev.url); !strings.Contains(out, "shots") || strings.Contains(out, "default") {
		t.Fatalf("the projects the ci token sees:\n%s", out)
	}
	if r := cli(t, ciEnv, "token", "create", "--name", "escalate", "--role", "admin", "--coordinator", dev.url); r.code != 1 || !strings.Contains(r.stderr, "403") {
		t.Fatalf("a user token creating a token: exit %d %s", r.code, r.stderr)
	}

	// Revoked by name: refused at once, by the API and the CLI.
	if out := mustCLI(t, nil, append([]string{"token", "revoke", "ci"}, asAdmin...)...); !strings.HasPrefix(out, "revoked ci (") {
		t.Fatalf("token revoke printed %q", out)
	}
	if _, err := ci.Job(ctx, id); !client.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("the revoked token reads a job: %v, want 401", err)
	}
	if err := ci.Do(ctx, http.MethodGet, "/api/jobs", nil, &jobs); !client.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("the revoked token lists Coalition's jobs: %v, want 401", err)
	}
	if r := cli(t, ciEnv, "project", "list", "--coordinator", dev.url); r.code != 1 || !strings.Contains(r.stderr, "401") {
		t.Fatalf("the CLI with the revoked token: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Revoked by id.
	readerClient := client.NewWith(client.Options{Token: reader.Secret}, dev.url)
	if _, err := readerClient.Job(ctx, id); err != nil {
		t.Fatalf("the reader before its revocation: %v", err)
	}
	if out := mustCLI(t, nil, append([]string{"token", "revoke", reader.ID}, asAdmin...)...); out != "revoked reader ("+reader.ID+")\n" {
		t.Fatalf("token revoke by id printed %q", out)
	}
	if _, err := readerClient.Job(ctx, id); !client.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("the reader after its revocation: %v, want 401", err)
	}
	out = mustCLI(t, nil, append([]string{"token", "list"}, asAdmin...)...)
	if strings.Contains(out, "ci ") || strings.Contains(out, "reader") || !strings.Contains(out, "admin") {
		t.Fatalf("token list after the revocations:\n%s", out)
	}
	// Revoking again is an error, and so are usage mistakes (exit 2).
	if r := cli(t, nil, append([]string{"token", "revoke", "ci"}, asAdmin...)...); r.code != 1 || !strings.Contains(r.stderr, "404") {
		t.Fatalf("revoking a revoked token: exit %d %s", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"token", "create", "--role", "user"},
		{"token", "revoke"},
		{"token", "rotate"},
		{"project", "create"},
		{"project", "list", "extra"},
	} {
		if r := cli(t, nil, append(args, asAdmin...)...); r.code != 2 {
			t.Errorf("croft %v: exit %d, want 2 (usage)\n%s", args, r.code, r.stderr)
		}
	}
	// The admin token still works and the job is still there.
	if j, err := client.NewWith(client.Options{Token: adminSecret}, dev.url).Job(ctx, id); err != nil || j.Project != "shots" {
		t.Fatalf("the admin reads the job: %+v %v", j, err)
	}
}
