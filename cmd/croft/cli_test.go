package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

func TestParseSubmitFields(t *testing.T) {
	f, cf, err := parseSubmit([]string{"--title", "t", "--dir", "/w", "--env", "A=1", "--env", "B=x=y", "--priority", "5",
		"--affinity", "gpu,linux", "--retry", "3", "--run-timeout", "90s", "--parent", "7", "--after", "1,2", "--after", "3",
		"--project", "p", "--user", "ann", "--paused", "--wait", "--json", "--", "sh", "-c", "echo 'a b'"})
	if err != nil {
		t.Fatal(err)
	}
	s := f.spec
	if s.Title != "t" || s.Dir != "/w" || s.Env["A"] != "1" || s.Env["B"] != "x=y" || s.Priority != 5 || s.Affinity != "gpu,linux" ||
		s.Retry != 3 || s.TimeoutS != 90 || s.Parent != 7 || len(s.Dependencies) != 3 || s.Dependencies[2] != 3 ||
		s.Project != "p" || s.User != "ann" || !s.Paused || !f.wait || !cf.asJSON {
		t.Fatalf("spec %+v flags %+v", s, f)
	}
	if want := `sh -c 'echo '\''a b'\'''`; s.Command != want {
		t.Fatalf("command %q, want %q", s.Command, want)
	}
	// One word is a command line as it is; the title defaults to it.
	f, _, err = parseSubmit([]string{"echo hi && true"})
	if err != nil || f.spec.Command != "echo hi && true" || f.spec.Title != "echo hi && true" {
		t.Fatalf("%+v %v", f, err)
	}
	f, _, err = parseSubmit([]string{"--group", "--title", "shot"})
	if err != nil || f.spec.Command != "" {
		t.Fatalf("group: %+v %v", f, err)
	}
	for _, bad := range [][]string{
		{},                      // no command
		{"--group", "true"},     // a group with a command
		{"--command", "a", "b"}, // the command twice
		{"--env", "noequals", "x"},
		{"--after", "x", "true"},
		{"--bogus", "true"},
	} {
		if _, _, err := parseSubmit(bad); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v, want a usage error", bad, err)
		}
	}
}

func TestParseArgsFlagsAnywhereAndDashes(t *testing.T) {
	fs := newFlagSet("x", "x")
	j := fs.Bool("json", false, "")
	rest, err := parseArgs(fs, []string{"12", "--json", "13", "--", "--json", "-f"})
	if err != nil || !*j || strings.Join(rest, " ") != "12 13 --json -f" {
		t.Fatalf("%q %v %v", rest, *j, err)
	}
	var out bytes.Buffer
	helpOut = &out
	defer func() { helpOut = os.Stdout }()
	if _, err := parseArgs(fs, []string{"--help"}); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "Usage: x") {
		t.Fatalf("help: %v %q", err, out.String())
	}
	if _, err := parseArgs(fs, []string{"--nope"}); !errors.Is(err, errUsage) || strings.Count(err.Error(), "-nope") != 1 {
		t.Fatalf("unknown flag: %v", err)
	}
}

func TestParseIDs(t *testing.T) {
	ids, err := parseIDs([]string{"1,2", "#3"}, "u")
	if err != nil || len(ids) != 3 || ids[2] != 3 {
		t.Fatalf("%v %v", ids, err)
	}
	for _, bad := range [][]string{{}, {"0"}, {"-1"}, {"x"}} {
		if _, err := parseIDs(bad, "u"); !errors.Is(err, errUsage) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "config")
	tokenFile := filepath.Join(dir, "tok")
	if err := os.WriteFile(tokenFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	resolve := func(args ...string) settings {
		t.Helper()
		fs := newFlagSet("t", "t")
		var cf cliFlags
		cf.register(fs)
		if _, err := parseArgs(fs, append([]string{"--config", conf}, args...)); err != nil {
			t.Fatal(err)
		}
		s, err := cf.resolve()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Setenv("CROFT_COORDINATOR", "")
	t.Setenv("CROFT_TOKEN", "")
	t.Setenv("CROFT_CA_CERT", "")
	write("# croft\ncoordinator = http://conf:1\ntoken_file = \"" + tokenFile + "\"\ntimeout = 3s\n")
	if s := resolve(); s.coordinator != "http://conf:1" || s.token != "from-file" || s.timeout != 3*time.Second {
		t.Fatalf("file: %+v", s)
	}
	t.Setenv("CROFT_COORDINATOR", "http://env:2")
	t.Setenv("CROFT_TOKEN", "from-env")
	if s := resolve(); s.coordinator != "http://env:2" || s.token != "from-env" {
		t.Fatalf("env over file: %+v", s)
	}
	if s := resolve("--coordinator", "http://flag:3", "--token", "from-flag", "--timeout", "1s"); s.coordinator != "http://flag:3" || s.token != "from-flag" || s.timeout != time.Second {
		t.Fatalf("flag over env: %+v", s)
	}
	write(`{"coordinator": "http://json:4", "token": "json-token"}`)
	t.Setenv("CROFT_COORDINATOR", "")
	t.Setenv("CROFT_TOKEN", "")
	if s := resolve(); s.coordinator != "http://json:4" || s.token != "json-token" || s.timeout != defaultTimeout {
		t.Fatalf("json: %+v", s)
	}
	for _, bad := range []string{"coordinatr = x", "no equals sign", `{"token": 5, "x": [1]}`, "{"} {
		if _, err := parseConfig([]byte(bad)); err == nil {
			t.Errorf("config %q accepted", bad)
		}
	}
}

func TestTablesShowLocalTimesAndRuns(t *testing.T) {
	created := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	code, sig, reason := 3, 0, ""
	j := client.NativeJob{ID: 12, Title: "frame\t1", State: "failed", Project: "default", Tries: 1, ExitCode: &code, Signal: &sig,
		Reason: &reason, Worker: "render-1", Created: &created}
	var b bytes.Buffer
	printJobs(&b, []client.NativeJob{j})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], "frame 1") ||
		!strings.Contains(lines[1], created.Local().Format(timeLayout)) || strings.Contains(lines[1], "1740830400") {
		t.Fatalf("jobs table:\n%s", b.String())
	}
	end := created.Add(1500 * time.Millisecond)
	b.Reset()
	printJob(&b, j, []client.Run{{Try: 1, AttemptID: 40, Worker: "render-1", State: "failed", Start: created, End: &end, DurationMS: 1500, ExitCode: &code}})
	out := b.String()
	for _, want := range []string{"exit      3", "TRY", "render-1  failed  " + created.Local().Format(timeLayout) + "  1.5s      3"} {
		if !strings.Contains(out, want) {
			t.Errorf("job view lacks %q:\n%s", want, out)
		}
	}
	if fmtUnix(0) != "-" || fmtTimePtr(nil) != "-" || progressBar(0.5, 4) != "[##..]" || progressBar(2, 2) != "[##]" {
		t.Fatal("formatting helpers")
	}
	if exitText(nil, 9, "") != "signal 9" || exitText(&code, 0, "timeout") != "timeout" {
		t.Fatal("exitText")
	}
}

func TestStatusMarksUnreachableMembers(t *testing.T) {
	st := client.ClusterStatus{NodeID: "a", State: "Leader", LeaderID: "a", Members: []client.ClusterMember{
		{ID: "a", HTTPAddr: "h:1", Suffrage: "Voter", Leader: true}, {ID: "b", HTTPAddr: "h:2", Suffrage: "Voter"}}}
	var b bytes.Buffer
	printStatus(&b, st, map[string]string{"b": "connection refused"})
	out := b.String()
	if !strings.Contains(out, "REACHABLE") || !strings.Contains(out, "UNREACHABLE b: connection refused") || strings.Count(out, " NO ") != 1 {
		t.Fatalf("status:\n%s", out)
	}
}

func TestMatchWorkers(t *testing.T) {
	ws := []client.Worker{{Name: "r1"}, {Name: "r1/2"}, {Name: "r10"}, {Name: "r1/x"}}
	got, err := matchWorkers(ws, []string{"r1", "r1/2"})
	if err != nil || strings.Join(got, " ") != "r1 r1/2" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := matchWorkers(ws, []string{"nope"}); err == nil {
		t.Fatal("unknown worker accepted")
	}
}
