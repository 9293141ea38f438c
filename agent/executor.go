package agent

import (
	"encoding/json"
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

// Executor tunes how attempts run and how their output is sent. The zero
// value uses the defaults.
type Executor struct {
	// KillGrace is how long a stopped job has between SIGTERM and SIGKILL.
	// Default DefaultKillGrace.
	KillGrace time.Duration
	// FlushInterval is how long output may wait before it is sent while
	// less than ChunkSize accumulated. Default DefaultFlushInterval.
	FlushInterval time.Duration
	// ChunkSize is the most output bytes in one report. Default
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

// adoptPoll is how often the agent looks at a supervisor it did not start
// (re-adopted after a restart): it cannot wait for a process that is not
// its child. The agent's own children are waited for, not polled.
const adoptPoll = 100 * time.Millisecond

// runner starts attempts under supervisors and re-adopts the ones an
// earlier agent started.
type runner struct {
	grace, flush time.Duration
	chunk        int
	log          *slog.Logger
	supervisor   string // the croft binary
	lease        string // the lease file supervisors watch; "": none
	leaseTimeout time.Duration
}

func newRunner(e Executor, supervisor, lease string, leaseTimeout time.Duration) *runner {
	return &runner{
		grace:        positive(e.KillGrace, DefaultKillGrace),
		flush:        positive(e.FlushInterval, DefaultFlushInterval),
		chunk:        positive(e.ChunkSize, DefaultChunkSize),
		log:          orDefault(e.Logger, slog.Default()),
		supervisor:   supervisor,
		lease:        lease,
		leaseTimeout: leaseTimeout,
	}
}

// supervisor is a started supervisor process, idle until handed its work.
type supervisor struct {
	cmd   *exec.Cmd
	spec  *os.File // the write end of its descriptor 3
	ident procIdent
}

func (s *supervisor) pid() int { return s.cmd.Process.Pid }

// spawn starts an idle supervisor.
func (r *runner) spawn() (*supervisor, error) {
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(r.supervisor, SuperviseCommand)
	cmd.Dir = "/" // it holds no directory busy; the job's is in its spec
	cmd.ExtraFiles = []*os.File{rd}
	// A session of its own: it leads the job's process group, out of
	// reach of signals meant for the agent's (a terminal's ^C, a kill of
	// the agent's group), so the job can outlive the agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	rd.Close()
	if err != nil {
		wr.Close()
		return nil, err
	}
	s := &supervisor{cmd: cmd, spec: wr}
	if s.ident, err = identify(s.pid()); err != nil {
		s.discard()
		return nil, err
	}
	return s, nil
}

// discard ends an idle supervisor: without work it exits at once.
func (s *supervisor) discard() {
	s.spec.Close()
	_ = s.cmd.Wait()
}

// handOver gives the supervisor its work; it starts the job at once.
func (s *supervisor) handOver(spec *superviseSpec) error {
	b, err := json.Marshal(spec)
	if err == nil {
		_, err = s.spec.Write(b)
	}
	return errors.Join(err, s.spec.Close())
}

// spare is a supervisor started ahead of the attempt that will use it: a
// Go binary takes milliseconds to start, a shell much less, and idle
// end-to-end latency is what a trivial job costs. nil: none.
type spare <-chan spawned

type spawned struct {
	s   *supervisor
	err error
}

// prepare starts a supervisor in the background for the next attempt.
func (r *runner) prepare() spare {
	ch := make(chan spawned, 1)
	go func() {
		s, err := r.spawn()
		ch <- spawned{s, err}
	}()
	return ch
}

// discard ends a spare that will not be used.
func (sp spare) discard() {
	if sp == nil {
		return
	}
	if got := <-sp; got.s != nil {
		got.s.discard()
	}
}

// take returns the spare if it is alive and well, else a new supervisor.
func (r *runner) take(sp spare) (*supervisor, error) {
	if sp != nil {
		got := <-sp
		if got.err == nil && got.s.ident.state(got.s.pid()) == procAlive {
			return got.s, nil
		}
		if got.s != nil {
			got.s.discard()
		}
	}
	return r.spawn()
}

// start runs j's assignment under a supervisor in attempt directory dir
// (created), using sp if it is not nil. The journal names the supervisor
// before the job runs. start does not fail: an attempt that cannot start
// is a finished process with ExitNotStarted, the reason in its output.
func (r *runner) start(dir string, j *journal, sp spare) *process {
	log := r.log.With("attempt", j.Assignment.AttemptID, "job", j.Assignment.JobID)
	if j.Assignment.User != "" {
		log.Debug("assignment names a user; the agent runs jobs as itself", "user", j.Assignment.User)
	}
	p := &process{dir: dir, grace: r.grace, child: true, done: make(chan struct{})}
	s, err := r.take(sp)
	if err == nil {
		if err = r.launch(log, dir, j, s); err != nil {
			s.discard()
		}
	} else {
		err = fmt.Errorf("cannot start the supervisor %s: %w", r.supervisor, err)
	}
	if err != nil {
		log.Warn("attempt could not start", "err", err)
		j.Pid, j.Ident = 0, procIdent{}
		res := result{ExitCode: ExitNotStarted, OutputSize: -1, Note: err.Error(), Err: err}
		// On disk too, so that a restarted agent still delivers it.
		if werr := errors.Join(
			os.MkdirAll(dir, 0o755),
			appendOutput(dir, fmt.Sprintf("croft agent: cannot run attempt %d: %v\n", j.Assignment.AttemptID, err)),
			writeJournal(dir, j),
			writeResult(dir, res),
		); werr != nil {
			log.Error("cannot record the attempt", "err", werr)
		}
		p.finish(res)
		return p
	}
	p.pid, p.ident = s.pid(), s.ident
	go p.watch(s.cmd)
	return p
}

// launch prepares dir, journals s as the attempt's supervisor, then hands
// it the work.
func (r *runner) launch(log *slog.Logger, dir string, j *journal, s *supervisor) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := appendOutput(dir, ""); err != nil { // the spool exists before anyone reads it
		return err
	}
	wd, err := workDir(j.Assignment.Dir)
	if err != nil {
		return err
	}
	j.Pid, j.Ident = s.pid(), s.ident
	// Before the job runs: an agent that dies from now on leaves a
	// journal that finds the job.
	if err := writeJournal(dir, j); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	a := j.Assignment
	spec := &superviseSpec{
		Dir:          dir,
		Command:      a.Command,
		WorkDir:      wd,
		Env:          append(os.Environ(), ParseEnvironment(a.Environment)...),
		Deadline:     timeoutAt(j.Started, a.Timeout),
		Lease:        r.lease,
		LeaseTimeout: r.leaseTimeout,
		Grace:        r.grace,
	}
	if err := s.handOver(spec); err != nil {
		// It died before it could run anything: no result, so the
		// attempt is reported lost.
		log.Warn("the supervisor did not take the attempt", "pid", s.pid(), "err", err)
	}
	return nil
}

// workDir checks an assignment's directory; "" and "." mean the agent's.
func workDir(dir string) (string, error) {
	if dir == "" || dir == "." {
		return os.Getwd()
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("working directory %s: %w", dir, ErrNotDir)
	}
	return dir, nil
}

// timeoutAt returns when an attempt started at started (Unix ns) times
// out; 0 for no timeout, or one too far to represent.
func timeoutAt(started, timeout int64) int64 {
	if timeout <= 0 || timeout > (math.MaxInt64-started)/int64(time.Second) {
		return 0
	}
	return started + timeout*int64(time.Second)
}

// adopt takes over an attempt an earlier agent started (journal j): it
// finishes at once if its result is there or its supervisor is gone,
// else it is polled until it ends.
func (r *runner) adopt(dir string, j *journal) *process {
	p := &process{dir: dir, pid: j.Pid, ident: j.Ident, grace: r.grace, done: make(chan struct{})}
	if !p.check() {
		go p.poll()
	}
	return p
}

// process is the agent's handle on one attempt's supervisor: started by
// this agent (its child) or re-adopted.
type process struct {
	dir   string
	pid   int // the supervisor's, which is the job's process group id; 0: none
	ident procIdent
	child bool // this agent started it and reaps it
	grace time.Duration
	done  chan struct{}
	res   result // set before done is closed

	mu    sync.Mutex
	gone  bool // the supervisor ended and was reaped or found gone: its pid is not ours
	asked bool // a stop was asked
}

// kill stops the attempt because the coordinator asked: its result says
// Killed.
func (p *process) kill() { p.stop(sigKill) }

// fence stops the attempt for a reason that is not the job's (the agent
// stops, or lost its coordinators): its result says Lost.
func (p *process) fence() { p.stop(sigLost) }

// stop asks the supervisor to stop the job; the first request wins. A
// supervisor that has not ended well after the grace (stuck, or not yet
// listening) gets SIGKILL with its whole group: the attempt then ends
// without a result, as lost.
func (p *process) stop(sig syscall.Signal) {
	p.mu.Lock()
	first := !p.asked
	p.asked = true
	p.mu.Unlock()
	if first && p.signal(sig, false) {
		time.AfterFunc(2*p.grace+time.Second, func() { p.signal(syscall.SIGKILL, true) })
	}
}

// signal sends sig to the supervisor, or to its whole group, if it is
// still the supervisor: a child not yet reaped, or an adopted process
// with the journaled identity.
func (p *process) signal(sig syscall.Signal, group bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone || p.pid <= 0 || (!p.child && p.ident.state(p.pid) != procAlive) {
		return false
	}
	target := p.pid
	if group {
		target = -p.pid
	}
	return syscall.Kill(target, sig) == nil
}

// watch waits for a supervisor this agent started and finishes p.
func (p *process) watch(cmd *exec.Cmd) {
	reaped := waitExited(p.pid) != nil // not available here: reap now
	if reaped {
		_ = cmd.Wait()
	}
	res, err := readResult(p.dir)
	if err != nil {
		// Killed from outside before it recorded a result. Not reaped,
		// its group id is still the job's: take down what it left.
		if !reaped {
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		}
		res = lost(fmt.Sprintf("the supervisor ended without a result (%v)", err))
	}
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
	if !reaped {
		_ = cmd.Wait()
	}
	p.finish(res)
}

// poll checks an adopted supervisor until it ends.
func (p *process) poll() {
	t := time.NewTicker(adoptPoll)
	defer t.Stop()
	for range t.C {
		if p.check() {
			return
		}
	}
}

// check looks once whether an adopted supervisor ended and, if it did,
// finishes p and returns true.
func (p *process) check() bool {
	st := p.ident.state(p.pid)
	// Read after the state: a supervisor writes its result before it ends.
	res, err := readResult(p.dir)
	switch {
	case err == nil:
	case st == procAlive:
		return false
	default:
		if st == procGone || st == procDead {
			// What it left in its group, if anything, must not outlive
			// the attempt.
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		}
		res = lost("the process ended without a result (the host restarted, or its supervisor was killed)")
	}
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
	p.finish(res)
	return true
}

func (p *process) finish(res result) {
	p.res = res
	close(p.done)
}

// outcome waits for the attempt to end and returns how it ended.
func (p *process) outcome() result {
	<-p.done
	return p.res
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
