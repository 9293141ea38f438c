package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
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
// (re-adopted after a restart): it has no pipe to it, and cannot wait for
// a process that is not its child. Its own supervisors tell it.
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

// supervisor is a supervisor process this agent started (its child): it
// runs one attempt at a time, as the agent's messages ask.
type supervisor struct {
	cmd   *exec.Cmd
	ident procIdent
	// ended is closed once the process ended and was reaped, and the
	// attempt it ran, if any, finished.
	ended chan struct{}

	mu   sync.Mutex
	w    *os.File // its descriptor 3; nil once closed
	cur  *process // the attempt it runs
	gone bool     // it ended (its events did): it takes no more work
}

func (s *supervisor) pid() int { return s.cmd.Process.Pid }

// spawn starts a supervisor, idle until it gets work.
func (r *runner) spawn() (*supervisor, error) {
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		cmdR.Close()
		cmdW.Close()
		return nil, err
	}
	args := []string{SuperviseCommand}
	if r.lease != "" {
		args = append(args, "-lease", r.lease, "-lease-timeout", r.leaseTimeout.String())
	}
	cmd := exec.Command(r.supervisor, args...)
	cmd.Dir = "/" // it holds no directory busy; the job's is in its spec
	cmd.Env = supervisorEnv()
	cmd.ExtraFiles = []*os.File{cmdR, evW}
	// A session of its own, out of reach of signals meant for the
	// agent's (a terminal's ^C, a kill of the agent's group), so its job
	// can outlive the agent.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	cmdR.Close()
	evW.Close()
	if err != nil {
		cmdW.Close()
		evR.Close()
		return nil, err
	}
	s := &supervisor{cmd: cmd, w: cmdW, ended: make(chan struct{})}
	// Cannot fail while it is our unreaped child; a failure leaves a
	// zero identity, which only a re-adopting agent uses.
	s.ident, _ = identify(s.pid())
	// Wait until it handles signals: until then SIGUSR1 or SIGUSR2 from
	// a re-adopting agent (it journals this pid before the job starts)
	// would kill it without a result.
	sc := bufio.NewScanner(evR)
	if err := awaitReady(evR, sc); err != nil {
		cmdW.Close()
		evR.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("supervisor did not start: %w", err)
	}
	go s.events(evR, sc)
	return s, nil
}

// supervisorStartTimeout bounds how long a new supervisor may take to be
// ready: a Go binary starts in milliseconds, unless the host is swamped.
const supervisorStartTimeout = 30 * time.Second

// awaitReady reads the supervisor's first event, which must be Ready.
func awaitReady(r *os.File, sc *bufio.Scanner) error {
	if err := r.SetReadDeadline(time.Now().Add(supervisorStartTimeout)); err != nil {
		return err
	}
	defer r.SetReadDeadline(time.Time{})
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return err
		}
		return errors.New("it exited before it was ready")
	}
	var ev superviseEvent
	if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || !ev.Ready {
		return fmt.Errorf("unexpected first event %q", sc.Bytes())
	}
	return nil
}

// events reads what the supervisor says until it ends, then finishes the
// attempt it ran, if any. sc reads r past the Ready event.
func (s *supervisor) events(r *os.File, sc *bufio.Scanner) {
	for sc.Scan() {
		var ev superviseEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			break
		}
		switch {
		case ev.Started != 0:
			// Nothing to do: the job runs. (Its group is the shell's
			// pid; the agent never signals it, the supervisor does.)
		case ev.Done != 0:
			s.mu.Lock()
			p := s.cur
			if p != nil && p.id == ev.Done {
				s.cur = nil
			} else {
				p = nil
			}
			s.mu.Unlock()
			switch {
			case p == nil:
			case ev.Result != nil && ev.Result.AttemptID == p.id:
				p.finish(*ev.Result) // also on disk, for a restarted agent
			default:
				p.finishFromDisk("the supervisor sent no result")
			}
		}
	}
	r.Close()
	// It ended, or closed its events: it takes no more work.
	s.mu.Lock()
	s.gone = true
	p := s.cur
	s.cur = nil
	s.mu.Unlock()
	reaped := waitExited(s.pid()) != nil // not available here: reap now
	if reaped {
		_ = s.cmd.Wait()
	}
	if p != nil {
		res, err := readResult(p.dir, p.id)
		if err != nil {
			// Killed from outside before it recorded a result. Not
			// reaped, its pid is still the session id of what it left:
			// take that down.
			if !reaped {
				killSession(s.pid())
			}
			res = lost(p.id, fmt.Sprintf("the supervisor ended without a result (%v)", err))
		}
		p.finish(res)
	}
	if !reaped {
		_ = s.cmd.Wait()
	}
	close(s.ended)
}

// alive reports whether the supervisor still takes work.
func (s *supervisor) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.gone && s.w != nil
}

// send writes a message to the supervisor.
func (s *supervisor) send(m superviseMsg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return os.ErrClosed
	}
	_, err = s.w.Write(append(b, '\n'))
	return err
}

// run hands the supervisor attempt p. If it cannot take it, the attempt
// ends as lost.
func (s *supervisor) run(p *process, spec *superviseSpec) {
	b, err := json.Marshal(superviseMsg{Run: spec})
	if err != nil {
		p.finish(result{AttemptID: p.id, ExitCode: ExitNotStarted, Note: err.Error(), Err: err}.unknownSizes())
		return
	}
	s.mu.Lock()
	switch {
	case s.gone || s.w == nil:
		err = errors.New("the supervisor ended before it took the attempt")
	case s.cur != nil:
		err = errors.New("the supervisor is busy") // a bug: one attempt per slot
	default:
		s.cur = p
		// From here its events finish p: a failed write means it is
		// dying, and then ends the attempt as lost.
		_, _ = s.w.Write(append(b, '\n'))
	}
	s.mu.Unlock()
	if err != nil {
		p.finish(lost(p.id, err.Error()))
	}
}

// close ends the supervisor's work: it finishes the attempt it runs, if
// any, and exits. It does not wait.
func (s *supervisor) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		s.w.Close()
		s.w = nil
	}
}

// stop closes the supervisor and waits for it to end, up to wait; then
// it gets SIGKILL.
func (s *supervisor) stop(wait time.Duration) {
	if s == nil {
		return
	}
	s.close()
	select {
	case <-s.ended:
		return
	case <-time.After(wait):
	}
	s.mu.Lock()
	_ = s.cmd.Process.Kill() // not reaped before ended: still ours
	s.mu.Unlock()
	<-s.ended
}

// start runs j's assignment in slot directory dir (created), under
// supervisor s, or under a supervisor of its own if s is nil (it exits
// after the attempt). The journal names the supervisor before the job
// runs. start does not fail: an attempt that cannot start is a finished
// process with ExitNotStarted, the reason in its stderr.
func (r *runner) start(dir string, j *journal, s *supervisor) *process {
	log := r.log.With("attempt", j.Assignment.AttemptID, "job", j.Assignment.JobID)
	if j.Assignment.User != "" {
		log.Debug("assignment names a user; the agent runs jobs as itself", "user", j.Assignment.User)
	}
	p := &process{id: j.Assignment.AttemptID, dir: dir, grace: r.grace, done: make(chan struct{})}
	var err error
	if s == nil {
		if s, err = r.spawn(); err == nil {
			go func() { <-p.done; s.close() }()
		} else {
			err = fmt.Errorf("cannot start the supervisor %s: %w", r.supervisor, err)
		}
	}
	var spec *superviseSpec
	if err == nil {
		spec, err = r.prepare(dir, j, s)
	}
	if err != nil {
		log.Warn("attempt could not start", "err", err)
		j.Pid, j.Ident = 0, procIdent{}
		res := result{AttemptID: p.id, ExitCode: ExitNotStarted, Note: err.Error(), Err: err}.unknownSizes()
		// On disk too, so that a restarted agent still delivers it.
		if werr := errors.Join(
			os.MkdirAll(dir, 0o755),
			newOutput(dir),
			appendNote(dir, fmt.Sprintf("croft agent: cannot run attempt %d: %v\n", j.Assignment.AttemptID, err)),
			writeJournal(dir, j),
			writeResult(dir, res, true),
		); werr != nil {
			log.Error("cannot record the attempt", "err", werr)
		}
		p.finish(res)
		return p
	}
	p.pid, p.ident, p.sup = s.pid(), s.ident, s
	s.run(p, spec)
	return p
}

// prepare prepares slot directory dir for the attempt (new output files,
// which the spool reads as soon as start returns), journals s as the
// attempt's supervisor, and returns the attempt's spec.
func (r *runner) prepare(dir string, j *journal, s *supervisor) (*superviseSpec, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := newOutput(dir); err != nil {
		return nil, err
	}
	wd, err := workDir(j.Assignment.Dir)
	if err != nil {
		return nil, err
	}
	j.Pid, j.Ident = s.pid(), s.ident
	// Before the job runs: an agent that dies from now on leaves a
	// journal that finds the job.
	if err := writeJournal(dir, j); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	a := j.Assignment
	return &superviseSpec{
		ID:       a.AttemptID,
		Dir:      dir,
		Command:  a.Command,
		WorkDir:  wd,
		Env:      append(ParseEnvironment(a.Environment), JobEnv(a)...),
		Deadline: timeoutAt(j.Started, a.Timeout),
		Grace:    r.grace,
	}, nil
}

// The variables Croft sets in each job's environment (see JobEnv).
const (
	EnvJobID     = "CROFT_JOB_ID"
	EnvAttemptID = "CROFT_ATTEMPT_ID"
	EnvTry       = "CROFT_TRY"
	EnvProject   = "CROFT_PROJECT"
	EnvSession   = "CROFT_SESSION_ID"
)

// JobEnv returns the variables that tell a job who it is, in os.Environ
// form: CROFT_JOB_ID, CROFT_ATTEMPT_ID, and CROFT_TRY (the 1-based try
// number), CROFT_PROJECT and CROFT_SESSION_ID when the coordinator sent
// them. They come
// after the job's own environment, so a job cannot be told otherwise.
func JobEnv(a client.Assignment) []string {
	env := []string{
		EnvJobID + "=" + strconv.FormatInt(a.JobID, 10),
		EnvAttemptID + "=" + strconv.FormatInt(a.AttemptID, 10),
	}
	if a.Try > 0 {
		env = append(env, EnvTry+"="+strconv.Itoa(a.Try))
	}
	if a.Project != "" {
		env = append(env, EnvProject+"="+a.Project)
	}
	if a.Session != "" {
		env = append(env, EnvSession+"="+a.Session)
	}
	return env
}

// supervisorEnv is the agent's environment without what a job must not
// inherit: the agent's own token, and the job variables of a job the
// agent itself may run in (a job without a try or project must not get
// its agent's).
func supervisorEnv() []string {
	env := os.Environ()
	return slices.DeleteFunc(env, func(kv string) bool {
		key, _, _ := strings.Cut(kv, "=")
		switch key {
		case "CROFT_TOKEN", "CROFT_BOOTSTRAP_TOKEN", EnvJobID, EnvAttemptID, EnvTry, EnvProject, EnvSession:
			return true
		}
		return false
	})
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
	p := &process{id: j.Assignment.AttemptID, dir: dir, pid: j.Pid, ident: j.Ident, grace: r.grace, done: make(chan struct{})}
	if !p.check() {
		go p.poll()
	}
	return p
}

// process is the agent's handle on one attempt: run by one of this
// agent's supervisors (sup), or re-adopted from an earlier agent's.
type process struct {
	id    int64
	dir   string
	pid   int // the supervisor's; 0: none
	ident procIdent
	sup   *supervisor // nil: re-adopted, reached by signals
	grace time.Duration
	done  chan struct{}
	res   result // set before done is closed

	mu    sync.Mutex
	ended bool // finish was called
	asked bool // a stop was asked
}

// delivered tells the attempt's supervisor that the coordinator is done
// with its result: it need not be synced to disk. (A re-adopted
// supervisor has no pipe: it synced already.)
func (p *process) delivered() {
	if p.sup != nil {
		_ = p.sup.send(superviseMsg{Delivered: p.id})
	}
}

// kill stops the attempt because the coordinator asked: its result says
// Killed.
func (p *process) kill() { p.stop(false) }

// fence stops the attempt for a reason that is not the job's (the agent
// stops, or lost its coordinators): its result says Lost.
func (p *process) fence() { p.stop(true) }

// stop asks the supervisor to stop the job; the first request wins. A
// supervisor that has not finished the attempt well after the grace
// (stuck) gets SIGKILL, and what it left in its session too: the attempt
// then ends without a result, as lost.
func (p *process) stop(lost bool) {
	p.mu.Lock()
	first := !p.asked && !p.ended
	p.asked = true
	p.mu.Unlock()
	if !first {
		return
	}
	var asked bool
	if p.sup != nil {
		asked = p.sup.send(superviseMsg{Kill: p.id, Lost: lost}) == nil
	} else {
		sig := sigKill
		if lost {
			sig = sigLost
		}
		asked = p.signal(sig)
	}
	if asked {
		time.AfterFunc(2*p.grace+time.Second, func() {
			if !isClosed(p.done) {
				p.signal(syscall.SIGKILL)
			}
		})
	}
}

// signal sends sig to the supervisor if it is still the attempt's: a
// child not yet reaped, or an adopted process with the journaled
// identity.
func (p *process) signal(sig syscall.Signal) bool {
	if s := p.sup; s != nil {
		select {
		case <-s.ended:
			return false
		default:
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		// Reaped only once ended is closed, after the attempt finished.
		return s.cur == p && s.cmd.Process.Signal(sig) == nil
	}
	if p.pid <= 0 || p.ident.state(p.pid) != procAlive {
		return false
	}
	return syscall.Kill(p.pid, sig) == nil
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

// check looks once whether an adopted attempt ended (its result is
// there, or its supervisor is gone) and, if it did, finishes p and
// returns true.
func (p *process) check() bool {
	st := p.ident.state(p.pid)
	// Read after the state: a supervisor writes the result before it
	// goes on.
	res, err := readResult(p.dir, p.id)
	switch {
	case err == nil:
	case st == procAlive:
		return false
	default:
		if st == procGone || st == procDead {
			// What it left in its session, if anything, must not
			// outlive the attempt.
			killSession(p.pid)
		}
		res = lost(p.id, "the process ended without a result (the host restarted, or its supervisor was killed)")
	}
	p.finish(res)
	return true
}

// finishFromDisk finishes p with the result its supervisor wrote, or as
// lost (with note) if there is none.
func (p *process) finishFromDisk(note string) {
	res, err := readResult(p.dir, p.id)
	if err != nil {
		res = lost(p.id, fmt.Sprintf("%s (%v)", note, err))
	}
	p.finish(res)
}

// finish records how the attempt ended; only the first call counts.
func (p *process) finish(res result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	p.ended = true
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
