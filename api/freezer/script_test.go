package freezer

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/croftfarm/croft/raftstore"
)

// runScript renders the actions of a job document and runs the script
// as an agent runs a command (/bin/sh -c), with PATH set to path plus
// the system's; it returns the output and the exit code.
func runScript(t *testing.T, actionsJSON, path string) (string, int) {
	t.Helper()
	d, err := decode([]byte(`{"job_actions":` + actionsJSON + `}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkActions(d["job_actions"]); err != nil {
		t.Fatal(err)
	}
	sh, err := script("job1", d["job_actions"].([]any))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", sh)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + path + ":/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return string(out), 0
}

func TestScriptExec(t *testing.T) {
	out, code := runScript(t, `[{"freezer_action":{"action":"exec","command":"echo \"it's\" $((40+2))"}}]`, "")
	if code != 0 || !strings.Contains(out, "it's 42") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// TestScriptRetries: an action is tried max_retries times in all,
// max_retries_interval apart, until it succeeds.
func TestScriptRetries(t *testing.T) {
	// Fails twice (the counter file holds the tries), then succeeds.
	flaky := `n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]`
	out, code := runScript(t, `[{"max_retries":3,"max_retries_interval":0,"freezer_action":{"action":"exec","command":"`+flaky+`"}}]`, "")
	if code != 0 || !strings.Contains(out, "try 3 of 3") {
		t.Fatalf("exit %d: %s", code, out)
	}
	out, code = runScript(t, `[{"max_retries":2,"max_retries_interval":0,"freezer_action":{"action":"exec","command":"`+flaky+`"}}]`, "")
	if code != 1 || !strings.Contains(out, "action 1 (exec) failed") || strings.Contains(out, "try 3") {
		t.Fatalf("two tries of three needed: exit %d: %s", code, out)
	}
}

// TestScriptMandatory: after a failure the other actions are skipped,
// except the mandatory ones; the run fails.
func TestScriptMandatory(t *testing.T) {
	out, code := runScript(t, `[
		{"freezer_action":{"action":"exec","command":"exit 3"}},
		{"freezer_action":{"action":"exec","command":"echo second"}},
		{"mandatory":true,"freezer_action":{"action":"exec","command":"echo third"}}]`, "")
	if code != 1 || strings.Contains(out, "\nsecond") || !strings.Contains(out, "skipping action 2") || !strings.Contains(out, "third") {
		t.Fatalf("exit %d: %s", code, out)
	}
}

// TestScriptFreezerAgent: another action runs freezer-agent with its
// parameters as flags; without freezer-agent it fails, saying why.
func TestScriptFreezerAgent(t *testing.T) {
	action := `[{"max_retries":5,"max_retries_interval":0,"freezer_action":{"backup_name":"test0001_backup","container":"test0001_container",
		"no_incremental":true,"path_to_backup":"/etc/","snapshot":false,"action":"backup","remove_older_than":365,"log_file":"x'; touch pwned; '"}}]`
	out, code := runScript(t, action, "")
	if code != 1 || !strings.Contains(out, "needs freezer-agent, which is not installed on this host") || strings.Contains(out, "try") {
		t.Fatalf("without freezer-agent: exit %d: %s", code, out)
	}
	bin := t.TempDir()
	fake := "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done; echo\n"
	if err := os.WriteFile(filepath.Join(bin, FreezerAgent), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	out, code = runScript(t, action, bin)
	want := "[--action][backup][--backup-name][test0001_backup][--container][test0001_container][--log-file][x'; touch pwned; '][--no-incremental][--path-to-backup][/etc/][--remove-older-than][365]"
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("exit %d: %s\nwant %s", code, out, want)
	}
}

func TestScriptTooLarge(t *testing.T) {
	cmd := strings.Repeat("x", 2000)
	var b strings.Builder
	b.WriteString("[")
	for i := range MaxActions {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"freezer_action":{"action":"exec","command":"` + cmd + `"}}`)
	}
	b.WriteString("]")
	d, err := decode([]byte(`{"job_actions":` + b.String() + `}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := script("j", d["job_actions"].([]any)); !errors.Is(err, raftstore.ErrTooLarge) {
		t.Fatalf("a %d-byte script: %v", MaxActions*2000, err)
	}
}
