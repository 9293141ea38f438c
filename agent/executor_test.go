package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// TestMain lets the test binary be the supervisor too: the agent starts
// os.Executable() with SuperviseCommand, as it starts croft.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == SuperviseCommand {
		os.Exit(SuperviseMain(os.Args[2:]))
	}
	// Under -race, a supervisor that exits would first sleep a second.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// deadline bounds every wait in these tests; it only guards against hangs.
const deadline = 30 * time.Second

// testRunner keeps the tests quick without changing what they check; no
// lease unless a test sets one.
func testRunner(t *testing.T) *runner {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return newRunner(Executor{KillGrace: 200 * time.Millisecond, FlushInterval: 10 * time.Millisecond}, exe, "", 0)
}

// testAttempt is an attempt started by a test, with its output spool.
type testAttempt struct {
	dir string
	p   *process
	sp  *spool
}

func start(t *testing.T, r *runner, a client.Assignment) *testAttempt {
	t.Helper()
	dir := filepath.Join(t.TempDir(), strconv.FormatInt(a.AttemptID, 10))
	p := r.start(dir, &journal{Assignment: a, Worker: "w", Started: time.Now().UnixNano()}, nil)
	t.Cleanup(func() {
		p.kill()
		<-p.done
		// Its supervisor may still be syncing the result in dir: wait
		// for it to exit before TempDir's cleanup removes dir (else a
		// note it writes about the vanished file races the removal).
		p.sup.stop(deadline)
	})
	return &testAttempt{dir: dir, p: p, sp: spoolOf(t, r, dir, p, a.ProgressPattern)}
}

func spoolOf(t *testing.T, r *runner, dir string, p *process, pattern string) *spool {
	t.Helper()
	progress, _ := newProgressParser(pattern)
	sp, err := openSpool(dir, [numStreams]int64{}, r.chunk, r.flush, progress, p.done, func() [numStreams]int64 { return p.res.sizes() })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.close)
	return sp
}

// drain reads the output to the end.
func drain(t *testing.T, sp *spool) []chunk {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var chunks []chunk
	for {
		ch, err := sp.next(ctx)
		if errors.Is(err, io.EOF) {
			return chunks
		}
		if err != nil {
			t.Fatalf("reading output: %v", err)
		}
		chunks = append(chunks, ch)
	}
}

// joined returns the stdout of chunks.
func joined(chunks []chunk) string { return joinedStream(chunks, streamOut) }

// joinedErr returns the stderr of chunks.
func joinedErr(chunks []chunk) string { return joinedStream(chunks, streamErr) }

func joinedStream(chunks []chunk, stream int) string {
	var b bytes.Buffer
	for _, c := range chunks {
		b.Write(c.data[stream])
	}
	return b.String()
}

// run runs a command to the end and returns its stdout and result.
func run(t *testing.T, a client.Assignment) (string, result) {
	t.Helper()
	at := start(t, testRunner(t), a)
	out := joined(drain(t, at.sp))
	return out, waitResult(t, at.p)
}

func waitResult(t *testing.T, p *process) result {
	t.Helper()
	select {
	case <-p.done:
		return p.outcome()
	case <-time.After(deadline):
		t.Fatal("attempt did not end")
		return result{}
	}
}

// readLines reads stdout until it holds n lines.
func readLines(t *testing.T, sp *spool, n int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var out string
	for strings.Count(out, "\n") < n {
		ch, err := sp.next(ctx)
		if err != nil {
			t.Fatalf("reading %d lines from %q: %v", n, out, err)
		}
		out += string(ch.data[streamOut])
	}
	return out
}

// readPIDs reads n pids, one per line, from the start of the output.
func readPIDs(t *testing.T, sp *spool, n int) []int {
	t.Helper()
	var pids []int
	for _, f := range strings.Fields(readLines(t, sp, n))[:n] {
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
	at := start(t, testRunner(t), client.Assignment{
		AttemptID: 1,
		Command:   `sleep 300 & echo $!; sleep 300 & echo $!; wait`,
	})
	kids := readPIDs(t, at.sp, 2)
	for _, pid := range kids {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("child %d not running before kill: %v", pid, err)
		}
	}
	at.p.kill()
	res := waitResult(t, at.p)
	if !res.Killed || res.Lost || res.ExitCode != 128+int(syscall.SIGTERM) {
		t.Errorf("result = %+v, want Killed with exit code %d", res, 128+int(syscall.SIGTERM))
	}
	for _, pid := range append(kids, at.p.pid) {
		waitGone(t, pid)
	}
}

func TestOutsideStopIsLost(t *testing.T) {
	// A service manager or a shutdown sends SIGTERM to everything: the
	// job did not fail, it is requeued.
	at := start(t, testRunner(t), client.Assignment{AttemptID: 1, Command: `echo started; sleep 300`})
	readLines(t, at.sp, 1)
	if err := syscall.Kill(at.p.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if res := waitResult(t, at.p); !res.Lost || res.Killed {
		t.Errorf("result = %+v, want Lost", res)
	}
}

func TestKillEscalatesToSIGKILL(t *testing.T) {
	// The shell and its child ignore SIGTERM: only the SIGKILL after the
	// grace period stops them.
	at := start(t, testRunner(t), client.Assignment{
		AttemptID: 1,
		Command:   `trap '' TERM; sleep 300 & echo $!; wait`,
	})
	kids := readPIDs(t, at.sp, 1)
	at.p.kill()
	res := waitResult(t, at.p)
	if res.ExitCode != 128+int(syscall.SIGKILL) || res.Signal != syscall.SIGKILL.String() {
		t.Errorf("result = %+v, want exit code %d", res, 128+int(syscall.SIGKILL))
	}
	waitGone(t, kids[0])
}

func TestLeftoverChildrenKilledAtExit(t *testing.T) {
	// The shell ends at once but leaves a child behind in its group.
	at := start(t, testRunner(t), client.Assignment{AttemptID: 1, Command: `sleep 300 & echo $!`})
	kids := readPIDs(t, at.sp, 1)
	if res := waitResult(t, at.p); res.ExitCode != 0 || res.Killed {
		t.Errorf("result = %+v, want exit 0", res)
	}
	waitGone(t, kids[0])
}

func TestProcessOutsideGroupDoesNotHoldAttempt(t *testing.T) {
	// setsid takes the child out of the group: it cannot be killed with
	// the job, and it keeps the output file open, but the attempt ends
	// with its shell and what it writes later is not sent.
	at := start(t, testRunner(t), client.Assignment{
		AttemptID: 1,
		Dir:       t.TempDir(),
		Command:   `setsid sh -c 'echo $$ >pid; exec sleep 300' & while [ ! -s pid ]; do sleep 0.01; done; cat pid`,
	})
	escaped := readPIDs(t, at.sp, 1)[0]
	t.Cleanup(func() {
		_ = syscall.Kill(escaped, syscall.SIGKILL) // it escaped the agent on purpose
		waitGone(t, escaped)
	})
	drain(t, at.sp)
	if res := waitResult(t, at.p); res.ExitCode != 0 {
		t.Errorf("result = %+v, want exit 0", res)
	}
	if err := syscall.Kill(escaped, 0); err != nil {
		t.Errorf("the escaped process is gone (%v); the test shows nothing", err)
	}
}

func TestTimeout(t *testing.T) {
	at := start(t, testRunner(t), client.Assignment{AttemptID: 1, Command: "sleep 30", Timeout: 1})
	select {
	case <-at.p.done:
	case <-time.After(20 * time.Second): // well before sleep 30 would end
		t.Fatal("timed-out attempt still running")
	}
	res := at.p.outcome()
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

func TestTimeoutCountsFromStart(t *testing.T) {
	// A re-adopted attempt keeps its deadline: it counts from when the
	// attempt started, not from when a supervisor got it.
	r := testRunner(t)
	dir := filepath.Join(t.TempDir(), "1")
	a := client.Assignment{AttemptID: 1, Command: "sleep 30", Timeout: 60}
	p := r.start(dir, &journal{Assignment: a, Started: time.Now().Add(-2 * time.Minute).UnixNano()}, nil)
	t.Cleanup(func() { p.kill(); <-p.done })
	if res := waitResult(t, p); !res.TimedOut {
		t.Errorf("result = %+v, want TimedOut at once", res)
	}
}

func TestChattyOutputArrivesWhole(t *testing.T) {
	r := testRunner(t)
	r.chunk = 16 << 10
	// Both streams, interleaved, each more than a chunk, the last lines
	// without a newline.
	at := start(t, r, client.Assignment{AttemptID: 1,
		Command: `seq 1 100000; seq 1 50000 | sed 's/^/e/' >&2; echo to-stderr >&2; seq 100001 200000; printf 'no newline'; printf 'err end' >&2`})
	chunks := drain(t, at.sp)

	var want, wantErr strings.Builder
	for i := 1; i <= 200000; i++ {
		want.WriteString(strconv.Itoa(i) + "\n")
	}
	want.WriteString("no newline")
	for i := 1; i <= 50000; i++ {
		wantErr.WriteString("e" + strconv.Itoa(i) + "\n")
	}
	wantErr.WriteString("to-stderr\nerr end")
	if got := joined(chunks); got != want.String() {
		t.Fatalf("stdout differs: got %d bytes, want %d", len(got), want.Len())
	}
	if got := joinedErr(chunks); got != wantErr.String() {
		t.Fatalf("stderr differs: got %d bytes, want %d", len(got), wantErr.Len())
	}
	if len(chunks) < 10 {
		t.Errorf("%d chunks; want the output split", len(chunks))
	}
	var off [numStreams]int64
	for i, c := range chunks {
		for s := range numStreams {
			if c.offset[s] != off[s] {
				t.Fatalf("chunk %d: stream %d at offset %d, want %d", i, s, c.offset[s], off[s])
			}
			off[s] += int64(len(c.data[s]))
		}
		if c.size() == 0 || c.size() > r.chunk {
			t.Fatalf("chunk %d has %d bytes", i, c.size())
		}
	}
	if res := waitResult(t, at.p); res.ExitCode != 0 || res.sizes() != off {
		t.Errorf("result = %+v, want exit 0 and output sizes %v", res, off)
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
			if _, res := run(t, client.Assignment{AttemptID: 1, Command: tc.cmd}); res.ExitCode != tc.want || res.Err != nil || res.Lost {
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
	at := start(t, testRunner(t), client.Assignment{AttemptID: 7, Command: "true", Dir: dir})
	out := joinedErr(drain(t, at.sp))
	if res := waitResult(t, at.p); res.ExitCode != ExitNotStarted || !errors.Is(res.Err, os.ErrNotExist) {
		t.Errorf("result = %+v, want ExitNotStarted and ErrNotExist", res)
	}
	if !strings.Contains(out, "cannot run attempt 7") || !strings.Contains(out, dir) {
		t.Errorf("stderr %q does not explain", out)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, res := run(t, client.Assignment{AttemptID: 8, Command: "true", Dir: file}); !errors.Is(res.Err, ErrNotDir) {
		t.Errorf("Dir is a file: result = %+v, want ErrNotDir", res)
	}
}

func TestMissingSupervisor(t *testing.T) {
	r := testRunner(t)
	r.supervisor = filepath.Join(t.TempDir(), "no-croft")
	at := start(t, r, client.Assignment{AttemptID: 9, Command: "true"})
	out := joinedErr(drain(t, at.sp))
	if res := waitResult(t, at.p); res.ExitCode != ExitNotStarted || !errors.Is(res.Err, os.ErrNotExist) {
		t.Errorf("result = %+v, want ExitNotStarted", res)
	}
	if !strings.Contains(out, "supervisor") {
		t.Errorf("stderr %q does not explain", out)
	}
	// Recorded, so that a restarted agent delivers it.
	if _, err := readResult(at.dir, 9); err != nil {
		t.Errorf("result not on disk: %v", err)
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
		at := start(t, testRunner(t), client.Assignment{AttemptID: 1, Command: "printf '%b' '" + tc.out + "'", ProgressPattern: tc.pattern})
		drain(t, at.sp)
		got := at.sp.progress()
		switch {
		case tc.want == nil && got != nil:
			t.Errorf("pattern %q on %q: progress %v, want none", tc.pattern, tc.out, *got)
		case tc.want != nil && (got == nil || *got != *tc.want):
			t.Errorf("pattern %q on %q: progress %v, want %v", tc.pattern, tc.out, got, *tc.want)
		}
	}
}

func TestProgressTravelsWithChunks(t *testing.T) {
	at := start(t, testRunner(t), client.Assignment{AttemptID: 1, Command: `echo PROGRESS:20; echo PROGRESS:60`})
	chunks := drain(t, at.sp)
	last := chunks[len(chunks)-1]
	if last.progress == nil || *last.progress != 0.6 {
		t.Errorf("last chunk progress = %v, want 0.6", last.progress)
	}
}

func ptr(v float64) *float64 { return &v }

func TestSupervisorFencesOnStaleLease(t *testing.T) {
	r := testRunner(t)
	r.lease, r.leaseTimeout = filepath.Join(t.TempDir(), "lease"), 300*time.Millisecond
	if err := writeLease(r.lease, leaseClock()); err != nil {
		t.Fatal(err)
	}
	// Nobody renews the lease: the supervisor stops the group on its own.
	at := start(t, r, client.Assignment{AttemptID: 1, Command: `sleep 300 & echo $!; wait`})
	kids := readPIDs(t, at.sp, 1)
	res := waitResult(t, at.p)
	if !res.Lost || !res.Fenced || res.Killed {
		t.Errorf("result = %+v, want Lost and Fenced", res)
	}
	waitGone(t, kids[0])
	if out := joinedErr(drain(t, at.sp)); !strings.Contains(out, "no word from the agent") {
		t.Errorf("stderr %q does not say why the job stopped", out)
	}
}

func TestSupervisorRunsOnWhileLeaseRenewed(t *testing.T) {
	r := testRunner(t)
	r.lease, r.leaseTimeout = filepath.Join(t.TempDir(), "lease"), 300*time.Millisecond
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			_ = writeLease(r.lease, leaseClock())
			select {
			case <-stop:
				return
			case <-tk.C:
			}
		}
	}()
	defer func() { close(stop); <-renewed }()
	// The job outlives several lease timeouts.
	if _, res := run(t, client.Assignment{AttemptID: 1, Command: `sleep 1.5`}); res.ExitCode != 0 || res.Lost {
		t.Errorf("result = %+v, want exit 0", res)
	}
}

func TestAdoptRunningProcess(t *testing.T) {
	// A second runner, as a restarted agent would, takes over an attempt
	// from its journal: it sees it end, and can kill it.
	r := testRunner(t)
	work := t.TempDir()
	first := start(t, r, client.Assignment{AttemptID: 1, Dir: work, Command: `echo started; while [ ! -e go ]; do sleep 0.02; done; exit 5`})
	second := start(t, r, client.Assignment{AttemptID: 2, Command: `echo started; sleep 300`})
	for _, at := range []*testAttempt{first, second} {
		j, err := readJournal(at.dir)
		if err != nil || j.Pid != at.p.pid || j.Ident.Start == 0 {
			t.Fatalf("journal %+v, %v; want pid %d", j, err, at.p.pid)
		}
	}
	adopt := func(at *testAttempt) *process {
		j, err := readJournal(at.dir)
		if err != nil {
			t.Fatal(err)
		}
		p := r.adopt(at.dir, j)
		if isClosed(p.done) {
			t.Fatalf("attempt %s not running: %+v", at.dir, p.res)
		}
		return p
	}
	p1, p2 := adopt(first), adopt(second)
	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := waitResult(t, p1); res.ExitCode != 5 || res.Lost {
		t.Errorf("adopted result = %+v, want exit 5", res)
	}
	p2.kill()
	if res := waitResult(t, p2); !res.Killed {
		t.Errorf("adopted and killed: result = %+v, want Killed", res)
	}
	waitGone(t, second.p.pid)
}

func TestAdoptGoneWithoutResult(t *testing.T) {
	r := testRunner(t)
	at := start(t, r, client.Assignment{AttemptID: 1, Command: `sleep 300 & echo $!; wait`})
	kid := readPIDs(t, at.sp, 1)[0]
	// The supervisor alone dies (OOM killer, say); its job runs on.
	if err := syscall.Kill(at.p.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	res := waitResult(t, at.p)
	if !res.Lost {
		t.Errorf("result = %+v, want Lost", res)
	}
	waitGone(t, kid) // the agent took down what the supervisor left

	j, err := readJournal(at.dir)
	if err != nil {
		t.Fatal(err)
	}
	if p := r.adopt(at.dir, j); !isClosed(p.done) || !p.res.Lost {
		t.Errorf("adopting a dead attempt: done %v, result %+v; want Lost at once", isClosed(p.done), p.res)
	}
}

func TestJournalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := &journal{
		Assignment: client.Assignment{AttemptID: 3, JobID: 4, Title: "t", Command: "echo hi", Dir: "/x", Environment: `A=1\nB=2`, Timeout: 9, ProgressPattern: "%one"},
		Worker:     "node/2",
		Started:    123,
		Pid:        456,
		Ident:      procIdent{Start: 789, Boot: "boot"},
		Acked:      1000,
		Dropped:    10,
	}
	if err := writeJournal(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readJournal(dir)
	if err != nil || *got != *want {
		t.Fatalf("journal read back %+v, %v; want %+v", got, err, want)
	}
	res := result{AttemptID: 3, ExitCode: 143, Signal: "terminated", Killed: true, OutputSize: 42, Note: "n"}
	if err := writeResult(dir, res, true); err != nil {
		t.Fatal(err)
	}
	if got, err := readResult(dir, 3); err != nil || got != res {
		t.Fatalf("result read back %+v, %v; want %+v", got, err, res)
	}
	// The slot's result file names its attempt: it is no other's result.
	if _, err := readResult(dir, 4); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("another attempt's result: %v, want ErrNotExist", err)
	}
	if _, err := readResult(t.TempDir(), 3); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("no result: %v, want ErrNotExist", err)
	}
	// Only the files themselves: no temporary file left behind.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries", len(entries))
	}
	// An emptied journal names no attempt: the slot is free.
	if err := clearJournal(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := readJournal(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cleared journal: %v, want ErrNotExist", err)
	}
}

func TestRecordsRewrittenInPlace(t *testing.T) {
	file := filepath.Join(t.TempDir(), "rec")
	long := []byte(`{"a":"` + strings.Repeat("x", 100) + `"}`)
	if err := writeRecord(file, long, true); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeRecord(file, []byte(`{"a":1}`), false); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Error("the record's file was replaced, not rewritten")
	}
	if got, err := readRecord(file); err != nil || string(got) != `{"a":1}` {
		t.Errorf("read %q, %v", got, err)
	}
	// Not truncated: the longer record's tail follows, and is ignored.
	if after.Size() != before.Size() {
		t.Errorf("the file shrank from %d to %d bytes", before.Size(), after.Size())
	}
	rec, _ := os.ReadFile(file)
	rec = rec[:bytes.IndexByte(rec, '\n')+10] // the short record alone

	// Cut short by a power loss: the checksum tells.
	for _, torn := range [][]byte{rec[:4], append([]byte(`{"a":2}`), rec[7:]...), rec[:len(rec)-1]} {
		if err := os.WriteFile(file, torn, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := readRecord(file); !errors.Is(err, errTorn) {
			t.Errorf("torn record %q: read %q, %v; want errTorn", torn, got, err)
		}
	}
	// A torn journal or result is no attempt's.
	dir := t.TempDir()
	for _, name := range []string{journalName, resultName} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(`{"attempt_id":1`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := readJournal(dir); !errors.Is(err, errTorn) {
		t.Errorf("torn journal: %v", err)
	}
	if _, err := readResult(dir, 1); !errors.Is(err, errTorn) {
		t.Errorf("torn result: %v", err)
	}
}

func TestProcIdent(t *testing.T) {
	id, err := identify(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st := id.state(os.Getpid()); st != procAlive {
		t.Errorf("own state %v, want alive", st)
	}
	if st := (procIdent{Start: id.Start + 1, Boot: id.Boot}).state(os.Getpid()); st != procOther {
		t.Errorf("other start time: state %v, want other", st)
	}
	if st := (procIdent{Start: id.Start, Boot: "another boot"}).state(os.Getpid()); st != procOther {
		t.Errorf("other boot: state %v, want other", st)
	}
	if st := id.state(0); st != procOther {
		t.Errorf("pid 0: state %v, want other", st)
	}
}

// slotSupervisor starts a long-lived supervisor for a test, as a slot
// does; it is stopped when the test ends.
func slotSupervisor(t *testing.T, r *runner) *supervisor {
	t.Helper()
	s, err := r.spawn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(deadline) })
	return s
}

// startOn starts an attempt under supervisor s.
func startOn(t *testing.T, r *runner, s *supervisor, a client.Assignment) *testAttempt {
	t.Helper()
	dir := filepath.Join(t.TempDir(), strconv.FormatInt(a.AttemptID, 10))
	p := r.start(dir, &journal{Assignment: a, Worker: "w", Started: time.Now().UnixNano()}, s)
	t.Cleanup(func() {
		p.kill()
		<-p.done
		// Its supervisor may still be syncing the result in dir: wait
		// for it to exit before TempDir's cleanup removes dir (else a
		// note it writes about the vanished file races the removal).
		p.sup.stop(deadline)
	})
	return &testAttempt{dir: dir, p: p, sp: spoolOf(t, r, dir, p, a.ProgressPattern)}
}

// procFields returns fields 4 (ppid), 5 (pgrp) and 6 (session) of a
// process's stat.
func procFields(t *testing.T, pid int) (ppid, pgrp, sid int) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ppid, _ = strconv.Atoi(f[1])
	pgrp, _ = strconv.Atoi(f[2])
	sid, _ = strconv.Atoi(f[3])
	return ppid, pgrp, sid
}

func TestSupervisorRunsAttemptsInTurn(t *testing.T) {
	// One supervisor runs a slot's attempts one after another; each job's
	// shell leads a process group of its own, in the supervisor's
	// session, the supervisor its parent.
	r := testRunner(t)
	s := slotSupervisor(t, r)
	for i := range 3 {
		id := int64(i + 1)
		at := startOn(t, r, s, client.Assignment{AttemptID: id, Command: fmt.Sprintf(`echo $$; sleep 0.1; exit %d`, i)})
		shell := readPIDs(t, at.sp, 1)[0]
		if ppid, pgrp, sid := procFields(t, shell); ppid != s.pid() || pgrp != shell || sid != s.pid() {
			t.Errorf("attempt %d: shell %d has parent %d, group %d, session %d; want parent %d, its own group, session %d", id, shell, ppid, pgrp, sid, s.pid(), s.pid())
		}
		if res := waitResult(t, at.p); res.ExitCode != i || res.Lost || res.Killed {
			t.Errorf("attempt %d: result = %+v, want exit %d", id, res, i)
		}
		if j, err := readJournal(at.dir); err != nil || j.Pid != s.pid() {
			t.Errorf("attempt %d: journal %+v, %v; want supervisor %d", id, j, err, s.pid())
		}
	}
	if !s.alive() {
		t.Error("the supervisor ended after its attempts")
	}
}

func TestLateKillMissesTheNextAttempt(t *testing.T) {
	r := testRunner(t)
	s := slotSupervisor(t, r)
	first := startOn(t, r, s, client.Assignment{AttemptID: 1, Command: `true`})
	waitResult(t, first.p)
	second := startOn(t, r, s, client.Assignment{AttemptID: 2, Command: `echo started; sleep 0.5; echo end`})
	readLines(t, second.sp, 1)
	// A kill for the first attempt comes late: the second one runs on.
	if err := s.send(superviseMsg{Kill: 1}); err != nil {
		t.Fatal(err)
	}
	if res := waitResult(t, second.p); res.ExitCode != 0 || res.Killed {
		t.Errorf("result = %+v, want exit 0", res)
	}
	if out := joined(drain(t, second.sp)); !strings.HasSuffix(out, "end\n") {
		t.Errorf("output %q", out)
	}
}

func TestSupervisorWithoutAgentFinishesItsJobThenExits(t *testing.T) {
	// The agent goes away (its pipe ends) mid-job: the job runs to its
	// end, its result is recorded, and the supervisor takes no more work.
	r := testRunner(t)
	s := slotSupervisor(t, r)
	work := t.TempDir()
	at := startOn(t, r, s, client.Assignment{AttemptID: 1, Dir: work, Command: `echo started; while [ ! -e go ]; do sleep 0.02; done; exit 4`})
	readLines(t, at.sp, 1)
	s.close()
	time.Sleep(100 * time.Millisecond)
	if isClosed(at.p.done) {
		t.Fatalf("the job ended with its agent: %+v", at.p.res)
	}
	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := waitResult(t, at.p); res.ExitCode != 4 || res.Lost {
		t.Errorf("result = %+v, want exit 4", res)
	}
	if res, err := readResult(at.dir, 1); err != nil || res.ExitCode != 4 {
		t.Errorf("result on disk %+v, %v", res, err)
	}
	waitGone(t, s.pid())
}

func TestIdleSupervisorExitsOnStaleLease(t *testing.T) {
	r := testRunner(t)
	r.lease, r.leaseTimeout = filepath.Join(t.TempDir(), "lease"), 300*time.Millisecond
	if err := writeLease(r.lease, leaseClock()); err != nil {
		t.Fatal(err)
	}
	s := slotSupervisor(t, r)
	select {
	case <-s.ended:
	case <-time.After(deadline):
		t.Fatal("an idle supervisor outlived its lease")
	}
	if s.alive() {
		t.Error("an ended supervisor still takes work")
	}
	// Work handed to it now ends as lost, at once.
	at := startOn(t, r, s, client.Assignment{AttemptID: 1, Command: `true`})
	if res := waitResult(t, at.p); !res.Lost {
		t.Errorf("result = %+v, want Lost", res)
	}
}

// BenchmarkSlotAttempt measures one trivial attempt (`true`) in a slot,
// under its supervisor, as the agent runs it: the journal, the job's
// shell, the result and the supervisor's messages, then the slot freed
// (the result delivered: never synced).
//
//	go test -run '^$' -bench SlotAttempt ./agent/
func BenchmarkSlotAttempt(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	r := newRunner(Executor{}, exe, "", 0)
	s, err := r.spawn()
	if err != nil {
		b.Fatal(err)
	}
	defer s.stop(deadline)
	slot := b.TempDir()
	b.ResetTimer()
	for i := range b.N {
		a := client.Assignment{AttemptID: int64(i + 1), Command: "true"}
		p := r.start(slot, &journal{Assignment: a, Started: time.Now().UnixNano()}, s)
		if res := p.outcome(); res.ExitCode != 0 {
			b.Fatalf("result %+v", res)
		}
		p.delivered()
		if err := errors.Join(clearOutput(slot), clearJournal(slot)); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSupervisorSyncsOnlyUndeliveredResults(t *testing.T) {
	// A result is written at once and synced only if its agent does not
	// report it delivered: a working agent spares the fsync.
	dir := t.TempDir()
	s := &superviser{events: io.Discard}
	spec := func(id int64) *superviseSpec { return &superviseSpec{ID: id, Dir: dir} }
	s.finish(spec(1), result{ExitCode: 3})
	if r, err := readResult(dir, 1); err != nil || r.ExitCode != 3 {
		t.Fatalf("result %+v, %v", r, err)
	}
	if s.unsynced == nil || s.unsynced.ID != 1 {
		t.Fatal("the result is not waiting for its delivery")
	}
	s.handle(superviseMsg{Delivered: 2}) // another attempt's: changes nothing
	if s.unsynced == nil {
		t.Fatal("another attempt's delivery cleared the result")
	}
	s.handle(superviseMsg{Delivered: 1})
	if s.unsynced != nil || s.syncAt != nil {
		t.Fatal("a delivered result still waits to be synced")
	}
	// Not delivered: synced when the timer fires (or the agent goes).
	s.finish(spec(2), result{})
	select {
	case <-s.syncAt.C:
		s.syncResult()
	case <-time.After(resultSyncDelay + deadline):
		t.Fatal("the sync timer did not fire")
	}
	if s.unsynced != nil {
		t.Fatal("the timer did not sync the result")
	}
	if r, err := readResult(dir, 2); err != nil || r.AttemptID != 2 {
		t.Fatalf("result %+v, %v", r, err)
	}
}
