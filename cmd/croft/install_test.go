package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The install scripts (scripts/install-agent.sh, install-coordinator.sh)
// run here with --root into a throwaway directory and --no-start, as CI
// cannot drive systemd; the units they write are checked line by line and
// with systemd-analyze verify where it is installed.

// runScript runs a script of scripts/ with args; it returns its output and
// exit code.
func runScript(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("SKIP: bash is not installed")
	}
	cmd := exec.Command("bash", append([]string{filepath.Join("..", "..", "scripts", name)}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), exitCode(err)
}

// fakeBinary writes an executable standing for bin/croft.
func fakeBinary(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "croft-build")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho croft\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeFile writes content to dir/name with mode and returns its path.
func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// unitSettings reads a unit file's Key=Value lines (comments skipped; a
// repeated key keeps its last value).
func unitSettings(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not a setting: %q", path, line)
		}
		m[k] = v
	}
	return m
}

// execArgs splits an ExecStart value as systemd does for the scripts'
// quoting: words in double quotes with \\ \" escapes, "$$" for $ and "%%"
// for %.
func execArgs(t *testing.T, v string) []string {
	t.Helper()
	var args []string
	for v != "" {
		v = strings.TrimLeft(v, " ")
		if v == "" {
			break
		}
		if v[0] != '"' {
			word, rest, _ := strings.Cut(v, " ")
			args, v = append(args, word), rest
			continue
		}
		var b strings.Builder
		i := 1
		for ; i < len(v) && v[i] != '"'; i++ {
			switch {
			case v[i] == '\\' && i+1 < len(v):
				i++
				b.WriteByte(v[i])
			case (v[i] == '$' || v[i] == '%') && i+1 < len(v) && v[i+1] == v[i]:
				i++
				b.WriteByte(v[i])
			case v[i] == '$' || v[i] == '%':
				t.Fatalf("unescaped %c in ExecStart %q", v[i], v)
			default:
				b.WriteByte(v[i])
			}
		}
		if i >= len(v) {
			t.Fatalf("unterminated quote in ExecStart %q", v)
		}
		args, v = append(args, b.String()), v[i+1:]
	}
	return args
}

// checkMode fails unless path exists with mode perm.
func checkMode(t *testing.T, path string, perm os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != perm {
		t.Fatalf("%s has mode %v, want %v", path, st.Mode().Perm(), perm)
	}
}

// verifyUnit runs systemd-analyze verify on a copy of the unit whose
// /usr/local/bin/croft is the one installed under root (verify checks the
// binary exists), and fails on any complaint.
func verifyUnit(t *testing.T, root, unit string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("SKIP: systemd-analyze is not installed (Debian package systemd): the unit is not verified by systemd")
		return
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/systemd/system", unit))
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte("=/usr/local/bin/croft "), []byte("="+filepath.Join(root, "usr/local/bin/croft")+" "))
	copyPath := writeFile(t, t.TempDir(), unit, string(b), 0o644)
	out, err := exec.Command("systemd-analyze", "verify", copyPath).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s\n%s", unit, err, out, b)
	}
}

func TestInstallAgentScript(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := fakeBinary(t, dir)
	token := writeFile(t, dir, "agent.token", "croft_agentsecret\n", 0o644)
	ca := writeFile(t, dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n", 0o644)
	args := []string{"--root", root, "--no-start", "--binary", bin, "--token-file", token,
		"--coordinator", "https://10.0.0.1:19211,https://10.0.0.2:19211", "--name", "render 042",
		"--affinity", `linux,gpu $HOME 100%`, "--slots", "4", "--data-dir", "/srv/croft-agent", "--ca-cert", ca}
	if out, code := runScript(t, "install-agent.sh", args...); code != 0 {
		t.Fatalf("install-agent.sh: exit %d\n%s", code, out)
	}
	unit := filepath.Join(root, "etc/systemd/system/croft-agent.service")
	s := unitSettings(t, unit)
	want := []string{"/usr/local/bin/croft", "agent", "--coordinator", "https://10.0.0.1:19211,https://10.0.0.2:19211",
		"--data-dir", "/srv/croft-agent", "--token-file", "/etc/croft/agent.token", "--ca-cert", "/etc/croft/agent-ca.pem",
		"--name", "render 042", "--affinity", `linux,gpu $HOME 100%`, "--slots", "4"}
	if got := execArgs(t, s["ExecStart"]); !reflect.DeepEqual(got, want) {
		t.Fatalf("ExecStart\n got %q\nwant %q", got, want)
	}
	// KillMode=process: a stop or restart signals the agent only, not the
	// supervisors of its jobs in the same cgroup.
	for k, v := range map[string]string{"KillMode": "process", "User": "croft", "Restart": "on-failure", "WantedBy": "multi-user.target"} {
		if s[k] != v {
			t.Errorf("%s=%q, want %q", k, s[k], v)
		}
	}
	checkMode(t, unit, 0o644)
	checkMode(t, filepath.Join(root, "usr/local/bin/croft"), 0o755)
	checkMode(t, filepath.Join(root, "etc/croft/agent.token"), 0o600)
	checkMode(t, filepath.Join(root, "srv/croft-agent"), 0o750)
	if b, _ := os.ReadFile(filepath.Join(root, "etc/croft/agent.token")); string(b) != "croft_agentsecret\n" {
		t.Fatalf("installed token %q", b)
	}
	verifyUnit(t, root, "croft-agent.service")

	// Installing again (new flags) replaces the unit.
	if out, code := runScript(t, "install-agent.sh", "--root", root, "--no-start", "--binary", bin, "--token-file", token,
		"--coordinator", "http://10.0.0.1:19211", "--kill-on-stop"); code != 0 {
		t.Fatalf("second install: exit %d\n%s", code, out)
	}
	want = []string{"/usr/local/bin/croft", "agent", "--coordinator", "http://10.0.0.1:19211",
		"--data-dir", "/var/lib/croft-agent", "--token-file", "/etc/croft/agent.token", "--kill-on-stop"}
	if got := execArgs(t, unitSettings(t, unit)["ExecStart"]); !reflect.DeepEqual(got, want) {
		t.Fatalf("ExecStart after reinstall\n got %q\nwant %q", got, want)
	}

	// Mistakes are refused before anything is written.
	for _, bad := range [][]string{
		{"--token-file", token},         // no coordinator
		{"--coordinator", "http://x:1"}, // no token
		{"--coordinator", "http://x:1", "--token-file", filepath.Join(dir, "none")},
		{"--coordinator", "http://x:1", "--token-file", token, "--slots", "0"},
		{"--coordinator", "http://x:1", "--token-file", token, "--data-dir", "relative"},
		{"--coordinator", "http://x:1", "--token-file", token, "--bogus"},
	} {
		empty := t.TempDir()
		out, code := runScript(t, "install-agent.sh", append([]string{"--root", empty, "--no-start", "--binary", bin}, bad...)...)
		if code != 2 || !strings.Contains(out, "install-agent: ") {
			t.Errorf("install-agent.sh %q: exit %d, want 2\n%s", bad, code, out)
		}
		if ents, _ := os.ReadDir(empty); len(ents) != 0 {
			t.Errorf("install-agent.sh %q wrote into the root", bad)
		}
	}

	// --uninstall removes the unit, the token, the CA copy and the binary,
	// and keeps the data directory (--purge removes it).
	if out, code := runScript(t, "install-agent.sh", "--root", root, "--no-start", "--uninstall", "--data-dir", "/srv/croft-agent"); code != 0 {
		t.Fatalf("--uninstall: exit %d\n%s", code, out)
	}
	for _, p := range []string{"etc/systemd/system/croft-agent.service", "etc/croft/agent.token", "etc/croft/agent-ca.pem", "usr/local/bin/croft", "etc/croft"} {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s left after --uninstall (%v)", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "srv/croft-agent")); err != nil {
		t.Fatalf("data directory removed without --purge: %v", err)
	}
	if out, code := runScript(t, "install-agent.sh", "--root", root, "--no-start", "--uninstall", "--purge", "--data-dir", "/srv/croft-agent"); code != 0 {
		t.Fatalf("--uninstall --purge: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(root, "srv/croft-agent")); !os.IsNotExist(err) {
		t.Fatalf("data directory left after --purge (%v)", err)
	}
}

func TestInstallCoordinatorScript(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := fakeBinary(t, dir)
	token := writeFile(t, dir, "admin.token", "croft_adminsecret\n", 0o644)
	unit := filepath.Join(root, "etc/systemd/system/croft-coordinator.service")
	base := []string{"--root", root, "--no-start", "--binary", bin, "--token-file", token,
		"--node-id", "c1", "--http-addr", "10.0.0.1:19211", "--raft-addr", "10.0.0.1:19212"}

	// The first coordinator bootstraps with the provisioned admin token.
	if out, code := runScript(t, "install-coordinator.sh", append(base, "--bootstrap")...); code != 0 {
		t.Fatalf("install-coordinator.sh --bootstrap: exit %d\n%s", code, out)
	}
	s := unitSettings(t, unit)
	want := []string{"/usr/local/bin/croft", "coordinator", "--node-id", "c1", "--data-dir", "/var/lib/croft",
		"--http-addr", "10.0.0.1:19211", "--raft-addr", "10.0.0.1:19212", "--bootstrap", "--bootstrap-token-file", "/etc/croft/admin.token"}
	if got := execArgs(t, s["ExecStart"]); !reflect.DeepEqual(got, want) {
		t.Fatalf("ExecStart\n got %q\nwant %q", got, want)
	}
	if s["User"] != "croft" || s["Restart"] != "on-failure" || s["KillSignal"] != "SIGTERM" {
		t.Fatalf("unit settings %v", s)
	}
	checkMode(t, unit, 0o644)
	checkMode(t, filepath.Join(root, "etc/croft/admin.token"), 0o600)
	checkMode(t, filepath.Join(root, "var/lib/croft"), 0o750)
	verifyUnit(t, root, "croft-coordinator.service")

	// Another joins, with TLS for the API and Raft.
	pem := writeFile(t, dir, "c2.pem", "cert", 0o644)
	key := writeFile(t, dir, "c2.key", "key", 0o600)
	ca := writeFile(t, dir, "ca.pem", "ca", 0o644)
	args := append(base[:len(base):len(base)], "--join", "https://10.0.0.1:19211", "--tls-cert", pem, "--tls-key", key, "--ca-cert", ca,
		"--raft-tls-cert", pem, "--raft-tls-key", key, "--raft-tls-ca", ca, "--data-dir", "/srv/croft")
	if out, code := runScript(t, "install-coordinator.sh", args...); code != 0 {
		t.Fatalf("install-coordinator.sh --join: exit %d\n%s", code, out)
	}
	want = []string{"/usr/local/bin/croft", "coordinator", "--node-id", "c1", "--data-dir", "/srv/croft",
		"--http-addr", "10.0.0.1:19211", "--raft-addr", "10.0.0.1:19212", "--join", "https://10.0.0.1:19211", "--token-file", "/etc/croft/admin.token",
		"--tls-cert", "/etc/croft/tls/tls-cert.pem", "--tls-key", "/etc/croft/tls/tls-key.pem", "--ca-cert", "/etc/croft/tls/ca-cert.pem",
		"--raft-tls-cert", "/etc/croft/tls/raft-tls-cert.pem", "--raft-tls-key", "/etc/croft/tls/raft-tls-key.pem", "--raft-tls-ca", "/etc/croft/tls/raft-tls-ca.pem"}
	if got := execArgs(t, unitSettings(t, unit)["ExecStart"]); !reflect.DeepEqual(got, want) {
		t.Fatalf("ExecStart\n got %q\nwant %q", got, want)
	}
	checkMode(t, filepath.Join(root, "etc/croft/tls/tls-key.pem"), 0o600)
	checkMode(t, filepath.Join(root, "etc/croft/tls/raft-tls-key.pem"), 0o600)
	checkMode(t, filepath.Join(root, "etc/croft/tls/tls-cert.pem"), 0o644)
	verifyUnit(t, root, "croft-coordinator.service")

	for _, bad := range [][]string{
		{},                                 // neither --bootstrap nor --join
		{"--bootstrap", "--join", "x"},     // both
		{"--bootstrap", "--tls-cert", pem}, // cert without key
		{"--join", "x", "--raft-tls-cert", pem, "--raft-tls-key", key},
	} {
		empty := t.TempDir()
		args := append([]string{"--root", empty, "--no-start", "--binary", bin, "--token-file", token,
			"--node-id", "c1", "--http-addr", "10.0.0.1:19211", "--raft-addr", "10.0.0.1:19212"}, bad...)
		out, code := runScript(t, "install-coordinator.sh", args...)
		if code != 2 || !strings.Contains(out, "install-coordinator: ") {
			t.Errorf("install-coordinator.sh %q: exit %d, want 2\n%s", bad, code, out)
		}
		if ents, _ := os.ReadDir(empty); len(ents) != 0 {
			t.Errorf("install-coordinator.sh %q wrote into the root", bad)
		}
	}

	// An agent installed on the same host keeps the shared binary.
	agentToken := writeFile(t, dir, "agent.token", "croft_a\n", 0o600)
	if out, code := runScript(t, "install-agent.sh", "--root", root, "--no-start", "--binary", bin, "--token-file", agentToken, "--coordinator", "http://10.0.0.1:19211"); code != 0 {
		t.Fatalf("install-agent.sh: exit %d\n%s", code, out)
	}
	if out, code := runScript(t, "install-coordinator.sh", "--root", root, "--no-start", "--uninstall", "--purge", "--data-dir", "/srv/croft"); code != 0 {
		t.Fatalf("--uninstall: exit %d\n%s", code, out)
	}
	for _, p := range []string{"etc/systemd/system/croft-coordinator.service", "etc/croft/admin.token", "etc/croft/tls", "srv/croft"} {
		if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
			t.Errorf("%s left after --uninstall --purge (%v)", p, err)
		}
	}
	checkMode(t, filepath.Join(root, "usr/local/bin/croft"), 0o755)
	checkMode(t, filepath.Join(root, "var/lib/croft"), 0o750) // the bootstrap's, not purged
}
