package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// Defaults of an Executor's zero fields.
const (
	DefaultKillGrace     = 2 * time.Second
	DefaultFlushInterval = 250 * time.Millisecond
	DefaultChunkSize     = 64 << 10
)

// Exit codes the agent reports when the process gave none of its own. A
// process killed by signal N reports 128+N, as shells do.
const (
	// ExitNotStarted: the command could not be started (e.g. its
	// directory does not exist). The reason is in the attempt's log.
	ExitNotStarted = -1
	// ExitTimedOut: the attempt timed out yet its process exited 0 (it
	// caught SIGTERM); a timed-out attempt never reports success. Same
	// code as timeout(1).
	ExitTimedOut = 124
)

// ErrNotDir means an assignment's Dir is not a directory.
var ErrNotDir = errors.New("not a directory")

// Executor starts attempts. The zero value is ready to use; it is safe for
// concurrent use.
type Executor struct {
	// KillGrace is how long Kill waits between SIGTERM and SIGKILL, and
	// how long an attempt whose shell exited still waits for its output
	// pipe to close (a process that left the job's process group may hold
	// it open). Default DefaultKillGrace.
	KillGrace time.Duration
	// FlushInterval is how long output may wait before it is sent while
	// less than ChunkSize accumulated. Default DefaultFlushInterval.
	FlushInterval time.Duration
	// ChunkSize is the most output bytes in one chunk. Default
	// DefaultChunkSize.
	ChunkSize int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// orDefault returns v, or def if v is the zero value.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// positive returns v, or def if v is not positive.
func positive[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Result is how an attempt ended.
type Result struct {
	// ExitCode is the process's exit code, 128+N if signal N killed it,
	// ExitNotStarted or ExitTimedOut.
	ExitCode int
	// TimedOut: the attempt ran past its Timeout and was killed.
	TimedOut bool
	// Killed: Kill stopped the attempt.
	Killed bool
	// Progress is the last progress (0..1) found in the output, nil if none.
	Progress *float64
	// Err says why the command could not be started or waited for.
	Err error
}

// Process is one running attempt: a shell in its own process group whose
// merged stdout and stderr is read with Next.
type Process struct {
	grace time.Duration
	out   *chunker
	cmd   *exec.Cmd // nil when the command could not be started
	timer *time.Timer
	done  chan struct{}

	mu       sync.Mutex
	exited   bool // the shell was waited for: its group id may be reused
	killing  bool
	killed   bool
	timedOut bool
	result   Result // set before done is closed
}

// Start runs an assignment's command through /bin/sh -c. It does not fail:
// a command that cannot start is a finished Process with ExitNotStarted
// and the reason in its output.
func (e *Executor) Start(a client.Assignment) *Process {
	log := orDefault(e.Logger, slog.Default()).With("attempt", a.AttemptID, "job", a.JobID)
	progress, err := newProgressParser(a.ProgressPattern)
	if err != nil {
		log.Warn("invalid progress pattern, progress disabled", "pattern", a.ProgressPattern, "err", err)
	}
	if a.User != "" {
		log.Debug("assignment names a user; the agent runs jobs as itself", "user", a.User)
	}
	p := &Process{
		grace: positive(e.KillGrace, DefaultKillGrace),
		out:   newChunker(positive(e.ChunkSize, DefaultChunkSize), positive(e.FlushInterval, DefaultFlushInterval), progress),
		done:  make(chan struct{}),
	}
	if err := p.start(a); err != nil {
		log.Warn("attempt could not start", "err", err)
		fmt.Fprintf(p.out, "croft agent: cannot run attempt %d: %v\n", a.AttemptID, err)
		p.finish(Result{ExitCode: ExitNotStarted, Err: err})
		return p
	}
	go p.watch()
	return p
}

func (p *Process) start(a client.Assignment) error {
	dir := a.Dir
	if dir == "." {
		dir = ""
	}
	if dir != "" {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("working directory %s: %w", dir, ErrNotDir)
		}
	}
	cmd := exec.Command("/bin/sh", "-c", a.Command)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), ParseEnvironment(a.Environment)...)
	cmd.Stdout, cmd.Stderr = p.out, p.out // the same writer: one pipe, one stream
	// Its own group, so Kill reaches the shell's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Wait returns even if a process outside the group keeps the pipe open.
	cmd.WaitDelay = p.grace
	if err := cmd.Start(); err != nil {
		return err
	}
	p.cmd = cmd
	if a.Timeout > 0 {
		secs := min(a.Timeout, int64(math.MaxInt64/time.Second)) // no overflow into the past
		p.timer = time.AfterFunc(time.Duration(secs)*time.Second, func() { p.kill(true) })
	}
	return nil
}

// watch reaps the shell and finishes the Process.
func (p *Process) watch() {
	pid := p.cmd.Process.Pid
	if err := waitExited(pid); err == nil {
		p.mu.Lock()
		// The shell is a zombie until Wait reaps it, so its group id cannot
		// have been reused: this reaches only what the job left behind.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		p.exited = true
		p.mu.Unlock()
	}
	werr := p.cmd.Wait()
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Lock()
	p.exited = true
	res := Result{ExitCode: exitCode(p.cmd.ProcessState), TimedOut: p.timedOut, Killed: p.killed}
	p.mu.Unlock()
	var ee *exec.ExitError
	switch {
	case errors.Is(werr, exec.ErrWaitDelay):
		fmt.Fprintf(p.out, "croft agent: output still open %v after the command ended (a process left its group?); stopped reading\n", p.grace)
	case werr != nil && !errors.As(werr, &ee):
		res.Err = werr
	}
	if res.TimedOut && res.ExitCode == 0 {
		res.ExitCode = ExitTimedOut
	}
	p.finish(res)
}

func (p *Process) finish(res Result) {
	p.out.Close()
	res.Progress = p.out.lastProgress()
	p.result = res
	close(p.done)
}

// exitCode returns ps's exit code, 128+N for a process killed by signal N.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return ExitNotStarted
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// Pid returns the shell's process id, which is also its process group id;
// 0 if it did not start.
func (p *Process) Pid() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Next returns the next chunk of output, waiting for one; io.EOF after the
// last. Only one goroutine may call it.
func (p *Process) Next(ctx context.Context) (Chunk, error) { return p.out.Next(ctx) }

// Kill stops the attempt: SIGTERM to its process group, SIGKILL after the
// grace period. It returns at once; Done tells when the attempt ended.
func (p *Process) Kill() { p.kill(false) }

func (p *Process) kill(timedOut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exited || p.killing {
		return
	}
	p.killing = true
	p.timedOut, p.killed = timedOut, !timedOut
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	time.AfterFunc(p.grace, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.exited {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
}

// Done is closed when the process was reaped and its output closed.
func (p *Process) Done() <-chan struct{} { return p.done }

// Result waits for the attempt to end and returns how it ended.
func (p *Process) Result() Result {
	<-p.done
	return p.result
}

// envRef is a $(VAR) reference in a Coalition environment value.
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// ParseEnvironment parses a Coalition job environment: KEY=VALUE entries
// separated by the two characters `\n` (as Coalition stores them) or by
// newlines. Spaces around an entry and its key are dropped, entries
// without "=" or with an empty key are ignored, and $(VAR) in a value is
// replaced by the agent's VAR (empty if unset). The result is in the
// os.Environ form, later entries overriding earlier ones.
func ParseEnvironment(s string) []string {
	var env []string
	for _, entry := range strings.Split(strings.ReplaceAll(s, `\n`, "\n"), "\n") {
		key, value, ok := strings.Cut(strings.TrimSpace(entry), "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			continue
		}
		value = envRef.ReplaceAllStringFunc(value, func(ref string) string {
			return os.Getenv(envRef.FindStringSubmatch(ref)[1])
		})
		env = append(env, key+"="+value)
	}
	return env
}
