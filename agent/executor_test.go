package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/croftfarm/croft/api/client"
)

// deadline bounds every wait in these tests; it only guards against hangs.
const deadline = 30 * time.Second

// fastExecutor keeps the tests quick without changing what they check.
func fastExecutor() *Executor {
	return &Executor{KillGrace: 200 * time.Millisecond, FlushInterval: 10 * time.Millisecond}
}

func start(t *testing.T, e *Executor, a client.Assignment) *Process {
	t.Helper()
	p := e.Start(a)
	t.Cleanup(func() {
		p.Kill()
		<-p.Done()
	})
	return p
}

// drain reads p's output to the end.
func drain(t *testing.T, p *Process) []Chunk {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var chunks []Chunk
	for {
		ch, err := p.Next(ctx)
		if errors.Is(err, io.EOF) {
			return chunks
		}
		if err != nil {
			t.Fatalf("reading output: %v", err)
		}
		chunks = append(chunks, ch)
	}
}

func joined(chunks []Chunk) string {
	var b bytes.Buffer
	for _, c := range chunks {
		b.Write(c.Data)
	}
	return b.String()
}

// run runs a command to the end and returns its output and result.
func run(t *testing.T, a client.Assignment) (string, Result) {
	t.Helper()
	p := start(t, fastExecutor(), a)
	out := joined(drain(t, p))
	return out, waitResult(t, p)
}

func waitResult(t *testing.T, p *Process) Result {
	t.Helper()
	select {
	case <-p.Done():
		return p.Result()
	case <-time.After(deadline):
		t.Fatal("attempt did not end")
		return Result{}
	}
}

// readPIDs reads n pids, one per line, from the start of p's output.
func readPIDs(t *testing.T, p *Process, n int) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var out string
	for strings.Count(out, "\n") < n {
		ch, err := p.Next(ctx)
		if err != nil {
			t.Fatalf("reading pids from %q: %v", out, err)
		}
		out += string(ch.Data)
	}
	var pids []int
	for _, f := range strings.Fields(out)[:n] {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("bad pid %q", f)
		}
		pids = append(pids, pid)
	}
	return pids
}

// waitGone waits until pid has exited; a zombie left for init to reap
// counts as gone. A pidfd is readable once its process has terminated.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(deadline/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			t.Fatalf("process %d still alive (%v)", pid, err)
		}
		return
	}
}

func TestKillKillsProcessGroup(t *testing.T) {
	p := start(t, fastExecutor(), client.Assignment{
		AttemptID: 1,
		Command:   `sleep 300 & echo $!; sleep 300 & echo $!; wait`,
	})
	kids := readPIDs(t, p, 2)
	for _, pid := range kids {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("child %d not running before Kill: %v", pid, err)
		}
	}
	p.Kill()
	res := waitResult(t, p)
	if !res.Killed || res.ExitCode != 128+int(syscall.SIGTERM) {
		t.Errorf("result = %+v, want Killed with exit code %d", res, 128+int(syscall.SIGTERM))
	}
	for _, pid := range append(kids, p.Pid()) {
		waitGone(t, pid)
	}
}

func TestKillEscalatesToSIGKILL(t *testing.T) {
	// The shell and its child ignore SIGTERM: only the SIGKILL after the
	// grace period stops them.
	p := start(t, fastExecutor(), client.Assignment{
		AttemptID: 1,
		Command:   `trap '' TERM; sleep 300 & echo $!; wait`,
	})
	kids := readPIDs(t, p, 1)
	p.Kill()
	res := waitResult(t, p)
	if res.ExitCode != 128+int(syscall.SIGKILL) {
		t.Errorf("exit code = %d, want %d", res.ExitCode, 128+int(syscall.SIGKILL))
	}
	waitGone(t, kids[0])
}

func TestLeftoverChildrenKilledAtExit(t *testing.T) {
	// The shell ends at once but leaves a child holding the output pipe.
	p := start(t, fastExecutor(), client.Assignment{AttemptID: 1, Command: `sleep 300 & echo $!`})
	kids := readPIDs(t, p, 1)
	if res := waitResult(t, p); res.ExitCode != 0 || res.Killed {
		t.Errorf("result = %+v, want exit 0", res)
	}
	waitGone(t, kids[0])
}

func TestProcessOutsideGroupDoesNotHoldAttempt(t *testing.T) {
	// setsid takes the child out of the group; it keeps the pipe open, so
	// the attempt ends only because the pipe is closed after the grace.
	// The inner shell writes its pid once it left the group.
	p := start(t, fastExecutor(), client.Assignment{
		AttemptID: 1,
		Dir:       t.TempDir(),
		Command:   `setsid sh -c 'echo $$ >pid; exec sleep 300' & while [ ! -s pid ]; do sleep 0.01; done; cat pid`,
	})
	escaped := readPIDs(t, p, 1)[0]
	t.Cleanup(func() {
		_ = syscall.Kill(escaped, syscall.SIGKILL) // it escaped the agent on purpose
		waitGone(t, escaped)
	})
	out := joined(drain(t, p))
	if res := waitResult(t, p); res.ExitCode != 0 {
		t.Errorf("result = %+v, want exit 0", res)
	}
	if !strings.Contains(out, "stopped reading") {
		t.Errorf("output %q does not say the pipe was closed", out)
	}
}

func TestTimeout(t *testing.T) {
	p := start(t, fastExecutor(), client.Assignment{AttemptID: 1, Command: "sleep 30", Timeout: 1})
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second): // well before sleep 30 would end
		t.Fatal("timed-out attempt still running")
	}
	res := p.Result()
	if !res.TimedOut || res.Killed || res.ExitCode == 0 {
		t.Errorf("result = %+v, want TimedOut with a non-zero exit code", res)
	}
}

func TestTimeoutNeverSucceeds(t *testing.T) {
	// The job exits 0 when told to stop: still not a success.
	_, res := run(t, client.Assignment{AttemptID: 1, Command: `trap 'exit 0' TERM; sleep 30 & wait`, Timeout: 1})
	if !res.TimedOut || res.ExitCode != ExitTimedOut {
		t.Errorf("result = %+v, want TimedOut with exit code %d", res, ExitTimedOut)
	}
}

func TestChattyOutputArrivesWhole(t *testing.T) {
	e := fastExecutor()
	e.ChunkSize = 16 << 10
	p := start(t, e, client.Assignment{AttemptID: 1, Command: `seq 1 200000; echo to-stderr >&2; printf 'no newline'`})
	chunks := drain(t, p)

	var want strings.Builder
	for i := 1; i <= 200000; i++ {
		want.WriteString(strconv.Itoa(i) + "\n")
	}
	want.WriteString("to-stderr\nno newline")
	if got := joined(chunks); got != want.String() {
		t.Fatalf("output differs: got %d bytes, want %d", len(got), want.Len())
	}
	if len(chunks) < 10 {
		t.Errorf("%d chunks; want the output split", len(chunks))
	}
	var off int64
	for i, c := range chunks {
		if c.Offset != off {
			t.Fatalf("chunk %d at offset %d, want %d", i, c.Offset, off)
		}
		if len(c.Data) == 0 || len(c.Data) > e.ChunkSize {
			t.Fatalf("chunk %d has %d bytes", i, len(c.Data))
		}
		off += int64(len(c.Data))
	}
	if res := waitResult(t, p); res.ExitCode != 0 {
		t.Errorf("result = %+v", res)
	}
}

func TestBinaryOutputKeepsEveryByte(t *testing.T) {
	out, _ := run(t, client.Assignment{AttemptID: 1, Command: `printf 'a\377\000b\303'`})
	if want := "a\xff\x00b\xc3"; out != want {
		t.Errorf("output = %q, want %q", out, want)
	}
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		want int
	}{
		{"true", 0},
		{"exit 3", 3},
		{"kill -9 $$", 128 + int(syscall.SIGKILL)},
		{"no-such-command-croft", 127},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			if _, res := run(t, client.Assignment{AttemptID: 1, Command: tc.cmd}); res.ExitCode != tc.want || res.Err != nil {
				t.Errorf("result = %+v, want exit code %d", res, tc.want)
			}
		})
	}
}

func TestDir(t *testing.T) {
	dir := t.TempDir()
	if out, _ := run(t, client.Assignment{AttemptID: 1, Command: "pwd -P", Dir: dir}); out != mustEval(t, dir)+"\n" {
		t.Errorf("pwd in %s = %q", dir, out)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", "."} {
		if out, _ := run(t, client.Assignment{AttemptID: 1, Command: "pwd -P", Dir: d}); out != mustEval(t, wd)+"\n" {
			t.Errorf("pwd with Dir %q = %q, want the agent's %s", d, out, wd)
		}
	}
}

func mustEval(t *testing.T, dir string) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	out, res := run(t, client.Assignment{AttemptID: 7, Command: "true", Dir: dir})
	if res.ExitCode != ExitNotStarted || !errors.Is(res.Err, os.ErrNotExist) {
		t.Errorf("result = %+v, want ExitNotStarted and ErrNotExist", res)
	}
	if !strings.Contains(out, "cannot run attempt 7") || !strings.Contains(out, dir) {
		t.Errorf("output %q does not explain", out)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, res := run(t, client.Assignment{AttemptID: 8, Command: "true", Dir: file}); !errors.Is(res.Err, ErrNotDir) {
		t.Errorf("Dir is a file: result = %+v, want ErrNotDir", res)
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("CROFT_TEST_ROOT", "/srv/show")
	out, _ := run(t, client.Assignment{
		AttemptID:   1,
		Command:     `printf '%s|%s|%s' "$SHOT" "$ROOT_DIR" "$PATH_SET"`,
		Environment: `SHOT=sq010\nROOT_DIR=$(CROFT_TEST_ROOT)/shots` + "\n" + `PATH_SET=${PATH:+yes}`,
	})
	if want := "sq010|/srv/show/shots|${PATH:+yes}"; out != want {
		t.Errorf("output = %q, want %q", out, want)
	}
}

func TestParseEnvironment(t *testing.T) {
	t.Setenv("CROFT_TEST_A", "alpha")
	t.Setenv("CROFT_TEST_EMPTY", "")
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{`A=1\nB=2`, []string{"A=1", "B=2"}},
		{"A=1\nB=2\r\n", []string{"A=1", "B=2"}},
		{`A=1\n\n  B = 2 \nnoequals\n=x\nC=`, []string{"A=1", "B= 2", "C="}},
		{`X=a=b`, []string{"X=a=b"}},
		{`P=$(CROFT_TEST_A)/bin:$(CROFT_TEST_UNSET_VAR):$(CROFT_TEST_EMPTY)$(CROFT_TEST_A)`, []string{"P=alpha/bin::alpha"}},
		{`Q=$CROFT_TEST_A $(not a var)`, []string{"Q=$CROFT_TEST_A $(not a var)"}},
	} {
		if got := ParseEnvironment(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("ParseEnvironment(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		pattern, out string
		want         *float64
	}{
		{"", `PROGRESS:10\nPROGRESS:42.5\nother line\n`, ptr(0.425)},
		{"%percent%", `render 12%\r render 50%\r render 75% done`, ptr(0.75)},
		{"frac=%one", `frac=0.25 frac=0.5\n`, ptr(0.5)},
		{"frac=%one", `frac=7\n`, ptr(1)},
		{"", `nothing here\n`, nil},
		{"no placeholder", `no placeholder 50\n`, nil},
	} {
		_, res := run(t, client.Assignment{AttemptID: 1, Command: "printf '%b' '" + tc.out + "'", ProgressPattern: tc.pattern})
		switch {
		case tc.want == nil && res.Progress != nil:
			t.Errorf("pattern %q on %q: progress %v, want none", tc.pattern, tc.out, *res.Progress)
		case tc.want != nil && (res.Progress == nil || *res.Progress != *tc.want):
			t.Errorf("pattern %q on %q: progress %v, want %v", tc.pattern, tc.out, res.Progress, *tc.want)
		}
	}
}

func TestProgressTravelsWithChunks(t *testing.T) {
	p := start(t, fastExecutor(), client.Assignment{AttemptID: 1, Command: `echo PROGRESS:20; echo PROGRESS:60`})
	chunks := drain(t, p)
	last := chunks[len(chunks)-1]
	if last.Progress == nil || *last.Progress != 0.6 {
		t.Errorf("last chunk progress = %v, want 0.6", last.Progress)
	}
}

func ptr(v float64) *float64 { return &v }
