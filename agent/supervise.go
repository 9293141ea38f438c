package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SuperviseCommand is the hidden subcommand of the croft binary that runs
// SuperviseMain. The agent starts one "SupervisorPath agent-supervise" per
// slot, which runs that slot's attempts one after another.
const SuperviseCommand = "agent-supervise"

// Signals a re-adopting agent sends a supervisor whose agent died (it has
// no pipe to it): they stop the one attempt such a supervisor still runs.
// The agent that started a supervisor sends it messages instead, which
// name the attempt.
const (
	// sigKill: the coordinator asked for the attempt to be killed.
	sigKill = syscall.SIGUSR2
	// sigLost: the agent stops the attempt for a reason that is not the
	// job's (it is shutting down, or lost its coordinators). SIGTERM,
	// SIGINT and SIGHUP mean the same, and the supervisor exits after the
	// job: a service manager or a shutdown stopping everything.
	sigLost = syscall.SIGUSR1
)

// The supervisor's descriptors (exec.Cmd.ExtraFiles): the agent's
// messages come in on cmdFD, the supervisor's events go out on eventFD.
const (
	cmdFD   = 3
	eventFD = 4
)

// superviseSpec is one attempt the agent hands a supervisor.
type superviseSpec struct {
	// ID is the attempt's id: kill messages and events name it.
	ID int64 `json:"id"`
	// Dir is the slot's directory: stdout is appended to Dir/output,
	// stderr to Dir/stderr, and the result written to Dir/result.json.
	Dir     string `json:"dir"`
	Command string `json:"command"`
	WorkDir string `json:"work_dir"`
	// Env is the job's own environment (os.Environ form), added to the
	// supervisor's, which it inherited from the agent.
	Env []string `json:"env"`
	// Deadline ends the attempt as timed out (Unix ns); 0: none.
	Deadline int64         `json:"deadline,omitempty"`
	Grace    time.Duration `json:"grace"`
}

// superviseMsg is a message from the agent to its supervisor, one JSON
// object per line: Run an attempt, or Kill one (Lost: for a reason that
// is not the job's). A kill names its attempt, so a late one never hits
// the next job.
type superviseMsg struct {
	Run  *superviseSpec `json:"run,omitempty"`
	Kill int64          `json:"kill,omitempty"`
	Lost bool           `json:"lost,omitempty"`
	// Delivered: the coordinator is done with this attempt's result, which
	// need not reach the disk any more (see resultSyncDelay).
	Delivered int64 `json:"delivered,omitempty"`
}

// resultSyncDelay is how long a result written by a supervisor may stay
// out of the disk, in the page cache, waiting for its agent to say the
// coordinator acknowledged it. Nearly every result is acknowledged within
// milliseconds and is never synced: only a power loss in that window loses
// one (and the job runs again, as when the host dies just before a job
// ends). A result still waiting then is synced, as is any when the agent
// goes away.
const resultSyncDelay = 2 * time.Second

// superviseEvent is a message from a supervisor to its agent, one JSON
// object per line: attempt ID Started (Pid: the job's shell, which leads
// its process group), or Done with its Result (written to the slot's
// result.json first; synced only if not delivered, see resultSyncDelay).
type superviseEvent struct {
	// Ready is the first event: the signal handlers are installed, so a
	// signal from now on is a request, never the default death.
	Ready   bool    `json:"ready,omitempty"`
	Started int64   `json:"started,omitempty"`
	Pid     int     `json:"pid,omitempty"`
	Done    int64   `json:"done,omitempty"`
	Result  *result `json:"result,omitempty"`
}

// SuperviseMain is a slot's supervisor: the agent starts it in a session
// of its own, out of reach of signals meant for the agent, and sends it
// attempts to run on descriptor 3, one at a time; it answers on
// descriptor 4. It runs each attempt's command with /bin/sh -c in a
// process group of its own (the shell leads it), its stdout and stderr
// appended to the slot's two output files, and waits for it. It stops the
// group (SIGTERM, SIGKILL after the grace) when asked, at the attempt's
// deadline, or when the agent's lease is older than the lease timeout: a
// job never runs on unsupervised once its agent is gone, because the
// coordinator then runs it elsewhere. When the shell ended, whatever the
// job left in its group gets SIGKILL, and the result is written
// atomically to the attempt directory.
//
// When descriptor 3 ends (the agent died or stops) it finishes the attempt
// it runs, if any, and exits. SIGUSR2 (kill, as the coordinator asked) and
// SIGUSR1 (lost) stop that attempt: a re-adopting agent has no pipe to it.
// SIGTERM, SIGINT and SIGHUP stop it as lost and end the supervisor. An
// idle supervisor whose lease is stale exits.
//
// cmd/croft calls it for the hidden subcommand SuperviseCommand; args are
// the arguments after it. It returns the process exit code.
func SuperviseMain(args []string) int {
	fs := flag.NewFlagSet(SuperviseCommand, flag.ContinueOnError)
	lease := fs.String("lease", "", "the agent's lease file; empty: not watched")
	leaseTimeout := fs.Duration("lease-timeout", DefaultLeaseTimeout, "stop the job, or exit when idle, once the lease is older")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "croft %s: the agent starts it\n", SuperviseCommand)
		return 2
	}
	// One thing at a time: a second P would only spin looking for work,
	// and an agent runs one supervisor per slot.
	runtime.GOMAXPROCS(1)
	// Its jobs' groups live in its session: a supervisor that dies
	// without a result has them killed by session.
	if sid, err := unix.Getsid(0); err != nil || sid != os.Getpid() {
		fmt.Fprintf(os.Stderr, "croft %s: not a session leader: the agent starts it\n", SuperviseCommand)
		return 2
	}
	// Before any work arrives, so that a signal sent as soon as it did is
	// a request, not the default death.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, sigKill, sigLost, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// Inherited without close-on-exec: the jobs must not hold them.
	syscall.CloseOnExec(cmdFD)
	syscall.CloseOnExec(eventFD)
	in := os.NewFile(cmdFD, "agent")
	out := os.NewFile(eventFD, "events")
	defer out.Close()
	s := &superviser{lease: *lease, leaseTimeout: *leaseTimeout, events: out, sigs: sigs}
	s.send(superviseEvent{Ready: true})
	return s.loop(readMessages(in))
}

// readMessages delivers the agent's messages until its pipe ends (or
// holds garbage: the agent died while writing), then closes the channel.
func readMessages(in *os.File) <-chan superviseMsg {
	ch := make(chan superviseMsg)
	go func() {
		defer close(ch)
		defer in.Close()
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 64<<20) // an environment can be large
		for sc.Scan() {
			var m superviseMsg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				return
			}
			ch <- m
		}
	}()
	return ch
}

// superviser is the state of a running supervisor.
type superviser struct {
	lease        string
	leaseTimeout time.Duration
	events       io.Writer
	sigs         <-chan os.Signal
	cur          *job // the attempt running; nil when idle
	// pending is a stop signalled while idle: it applies to the attempt
	// that comes next (a re-adopting agent may signal before the dead
	// agent's last message is read).
	pending string
	// quit: take no more work (the agent is gone, or someone stops
	// everything).
	quit bool
	// unsynced is the last attempt whose result is written but not synced
	// nor delivered; syncAt syncs it.
	unsynced *superviseSpec
	syncAt   *time.Timer
}

// job is an attempt a supervisor runs.
type job struct {
	spec     *superviseSpec
	cmd      *exec.Cmd
	out      *os.File      // its stdout
	errOut   *os.File      // its stderr, where the supervisor's notes go too
	started  int64         // leaseClock() when it started
	exited   chan struct{} // closed when the shell exited
	reaped   bool          // the shell was reaped already (no waitid): its group id may be reused
	werr     error         // from cmd.Wait when reaped
	deadline *time.Timer
	grace    *time.Timer
	reason   string
}

// Why a supervisor stopped its job.
const (
	stopKilled  = "killed"
	stopLost    = "lost"
	stopFenced  = "fenced"
	stopTimeout = "timeout"
)

// leaseCheckPeriod is how often a supervisor reads the lease: often
// enough that a stale lease is noticed well before the coordinator gives
// up on the agent.
func leaseCheckPeriod(timeout time.Duration) time.Duration {
	return min(max(timeout/4, 10*time.Millisecond), time.Second)
}

// loop runs attempts as the agent's messages come, until the agent is
// gone and nothing runs.
func (s *superviser) loop(msgs <-chan superviseMsg) int {
	born := leaseClock()
	var leaseTick <-chan time.Time
	if s.lease != "" {
		t := time.NewTicker(leaseCheckPeriod(s.leaseTimeout))
		defer t.Stop()
		leaseTick = t.C
	}
	defer s.syncResult() // whatever way it exits
	for {
		if s.cur == nil && s.quit {
			return 0
		}
		var exited <-chan struct{}
		var syncAt <-chan time.Time
		if s.syncAt != nil {
			syncAt = s.syncAt.C
		}
		var deadline, grace <-chan time.Time
		if j := s.cur; j != nil {
			exited = j.exited
			if j.deadline != nil {
				deadline = j.deadline.C
			}
			if j.grace != nil {
				grace = j.grace.C
			}
		}
		select {
		case m, ok := <-msgs:
			if !ok {
				s.quit, msgs = true, nil // the agent is gone: finish, then exit
				s.syncResult()
				continue
			}
			s.handle(m)
		case <-syncAt:
			s.syncResult()
		case sig := <-s.sigs:
			why := stopLost
			switch sig {
			case sigKill:
				why = stopKilled
			case sigLost:
			default:
				s.quit = true
			}
			if s.cur != nil {
				s.cur.stop(why)
			} else if sig == sigKill || sig == sigLost {
				s.pending = why
			}
		case <-exited:
			s.end()
		case <-deadline:
			s.cur.stop(stopTimeout)
		case <-grace:
			// The whole group: its id is the shell's, not reaped yet.
			s.cur.signal(syscall.SIGKILL)
		case <-leaseTick:
			since := born
			if s.cur != nil {
				since = s.cur.started
			}
			age, err := leaseAge(s.lease, since)
			if err == nil && age <= s.leaseTimeout {
				continue
			}
			if s.cur == nil {
				return 0 // the agent is dead, hung or cut off: no work will come
			}
			if s.cur.reason == "" {
				fmt.Fprintf(s.cur.errOut, "croft: no word from the agent for %v (it died or lost its coordinators): stopping the job, it will run again\n", age.Round(time.Millisecond))
				s.cur.stop(stopFenced)
			}
		}
	}
}

// handle acts on one message of the agent.
func (s *superviser) handle(m superviseMsg) {
	switch {
	case m.Delivered != 0:
		if s.unsynced != nil && s.unsynced.ID == m.Delivered {
			s.syncAt.Stop()
			s.unsynced, s.syncAt = nil, nil
		}
	case m.Run != nil:
		// The slot's result file is rewritten by this attempt: one still
		// unsynced (never the case with a working agent, which waits for
		// the acknowledgement) goes to disk first.
		s.syncResult()
		if s.cur != nil || s.quit {
			// Not from a working agent: one attempt at a time.
			s.finish(m.Run, result{ExitCode: ExitNotStarted, Lost: true, Note: "the supervisor is busy or stopping"}.unknownSizes())
			return
		}
		j, res := startJob(m.Run)
		if j == nil {
			s.finish(m.Run, res)
			return
		}
		s.cur = j
		s.send(superviseEvent{Started: m.Run.ID, Pid: j.cmd.Process.Pid})
		if s.pending != "" {
			j.stop(s.pending)
			s.pending = ""
		}
	case m.Kill != 0:
		if s.cur != nil && s.cur.spec.ID == m.Kill {
			if m.Lost {
				s.cur.stop(stopLost)
			} else {
				s.cur.stop(stopKilled)
			}
		}
	}
}

// send tells the agent; it may be gone (EPIPE), which changes nothing.
func (s *superviser) send(ev superviseEvent) {
	b, err := json.Marshal(ev)
	if err == nil {
		_, _ = s.events.Write(append(b, '\n'))
	}
}

// finish records an attempt's result, then tells the agent. The result
// is synced only if the agent does not report it delivered in time.
func (s *superviser) finish(spec *superviseSpec, res result) {
	res.AttemptID = spec.ID
	if err := writeResult(spec.Dir, res, false); err != nil {
		_ = appendNote(spec.Dir, fmt.Sprintf("croft: cannot record the result: %v\n", err))
	} else {
		s.syncResult() // an earlier one, if any (same file: one sync)
		s.unsynced, s.syncAt = spec, time.NewTimer(resultSyncDelay)
	}
	s.send(superviseEvent{Done: spec.ID, Result: &res})
}

// syncResult puts the undelivered result, if any, on disk.
func (s *superviser) syncResult() {
	if s.unsynced == nil {
		return
	}
	s.syncAt.Stop()
	if err := syncResult(s.unsynced.Dir); err != nil {
		_ = appendNote(s.unsynced.Dir, fmt.Sprintf("croft: cannot sync the result: %v\n", err))
	}
	s.unsynced, s.syncAt = nil, nil
}

// startJob runs spec's command in a process group of its own. nil and the
// result when it could not start.
func startJob(spec *superviseSpec) (*job, result) {
	var files [numStreams]*os.File
	for i, name := range streamFiles {
		f, err := os.OpenFile(filepath.Join(spec.Dir, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			if i > 0 {
				files[0].Close()
			}
			return nil, result{ExitCode: ExitNotStarted, Note: err.Error()}.unknownSizes()
		}
		files[i] = f
	}
	out, errOut := files[streamOut], files[streamErr]
	cmd := exec.Command("/bin/sh", "-c", spec.Command)
	cmd.Dir, cmd.Env = spec.WorkDir, append(os.Environ(), spec.Env...)
	// Two files, so the coordinator keeps the streams apart; the order in
	// which the job wrote to one and the other is lost (a job that wants
	// it writes 2>&1).
	cmd.Stdout, cmd.Stderr = out, errOut
	// The shell leads a group of its own: a kill takes the job's whole
	// group, and the supervisor stays out of it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	j := &job{spec: spec, cmd: cmd, out: out, errOut: errOut, started: leaseClock(), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(errOut, "croft: cannot run the command: %v\n", err)
		res := result{ExitCode: ExitNotStarted, Note: err.Error()}
		res.OutputSize, res.StderrSize = outputSize(out), outputSize(errOut)
		out.Close()
		errOut.Close()
		return nil, res
	}
	pid := cmd.Process.Pid
	go func() {
		// The shell stays a zombie, its pid and group id reserved, until
		// end reaps it: the group kill after it cannot reach another one.
		if waitExited(pid) != nil {
			j.werr, j.reaped = cmd.Wait(), true
		}
		close(j.exited)
	}()
	if spec.Deadline != 0 {
		j.deadline = time.NewTimer(time.Until(time.Unix(0, spec.Deadline)))
	}
	return j, result{}
}

func outputSize(f *os.File) int64 {
	if fi, err := f.Stat(); err == nil {
		return fi.Size()
	}
	return -1
}

// stop stops the job's group for reason; the first reason wins.
func (j *job) stop(why string) {
	if j.reason != "" {
		return
	}
	j.reason = why
	j.signal(syscall.SIGTERM)
	j.grace = time.NewTimer(j.spec.Grace)
}

// signal sends sig to the job's process group, while its id is the
// job's.
func (j *job) signal(sig syscall.Signal) {
	if !j.reaped {
		_ = syscall.Kill(-j.cmd.Process.Pid, sig)
	}
}

// end collects the job whose shell exited: what it left in its group is
// killed, the shell reaped, and the result recorded.
func (s *superviser) end() {
	j := s.cur
	s.cur = nil
	if j.deadline != nil {
		j.deadline.Stop()
	}
	if j.grace != nil {
		j.grace.Stop()
	}
	// Whatever the job left in its group ends with it.
	j.signal(syscall.SIGKILL)
	werr := j.werr
	if !j.reaped {
		werr = j.cmd.Wait()
	}
	ps := j.cmd.ProcessState
	res := result{ExitCode: exitCode(ps)}
	if ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal().String()
		}
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		res.Note = werr.Error()
	}
	switch j.reason {
	case stopKilled:
		res.Killed = true
	case stopLost:
		res.Lost = true
	case stopFenced:
		res.Lost, res.Fenced = true, true
	case stopTimeout:
		res.TimedOut = true
		if res.ExitCode == 0 {
			res.ExitCode = ExitTimedOut // a timed-out job never succeeds
		}
	}
	res.OutputSize, res.StderrSize = outputSize(j.out), outputSize(j.errOut)
	j.out.Close()
	j.errOut.Close()
	s.finish(j.spec, res)
}
