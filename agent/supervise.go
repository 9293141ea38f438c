package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// SuperviseCommand is the hidden subcommand of the croft binary that runs
// SuperviseMain. The agent starts "SupervisorPath agent-supervise" for
// every attempt.
const SuperviseCommand = "agent-supervise"

// Signals the agent sends a supervisor.
const (
	// sigKill: the coordinator asked for the attempt to be killed.
	sigKill = syscall.SIGUSR2
	// sigLost: the agent stops the attempt for a reason that is not the
	// job's (it is shutting down, or lost its coordinators). SIGTERM,
	// SIGINT and SIGHUP mean the same: a service manager or a shutdown
	// stopping everything, not the job failing.
	sigLost = syscall.SIGUSR1
)

// specFD is the supervisor's descriptor on which the agent writes its
// superviseSpec (exec.Cmd.ExtraFiles[0]).
const specFD = 3

// superviseSpec is the work the agent hands a supervisor.
type superviseSpec struct {
	// Dir is the attempt directory: output is appended to Dir/output and
	// the result written to Dir/result.json.
	Dir     string   `json:"dir"`
	Command string   `json:"command"`
	WorkDir string   `json:"work_dir"`
	Env     []string `json:"env"`
	// Deadline ends the attempt as timed out (Unix ns); 0: none.
	Deadline int64 `json:"deadline,omitempty"`
	// Lease is the agent's lease file; "": not watched.
	Lease        string        `json:"lease,omitempty"`
	LeaseTimeout time.Duration `json:"lease_timeout,omitempty"`
	Grace        time.Duration `json:"grace"`
}

// SuperviseMain is the supervisor of one attempt: the agent starts it in a
// session of its own, so it leads the job's process group, and writes its
// work on descriptor 3. It runs the command with /bin/sh -c, its output
// appended to the attempt's output file, and waits for it. It stops the
// group (SIGTERM, SIGKILL after the grace) when asked, at the attempt's
// deadline, or when the agent's lease is older than the lease timeout: a
// job never runs on unsupervised once its agent is gone, because the
// coordinator then runs it elsewhere. SIGUSR2 asks for a kill the
// coordinator wanted (the result says Killed); SIGUSR1, SIGTERM, SIGINT
// and SIGHUP for a stop that is not the job's doing (Lost: requeued
// without counting a run). It writes the result atomically to the attempt
// directory and ends with SIGKILL to its group, which takes whatever the
// job left behind.
//
// If descriptor 3 ends without work (the agent went away first) nothing
// runs. cmd/croft calls it for the hidden subcommand SuperviseCommand; args
// are the arguments after it (none). It returns the process exit code.
func SuperviseMain(args []string) int {
	if len(args) > 0 {
		fmt.Fprintf(os.Stderr, "croft %s: no arguments expected: the agent starts it\n", SuperviseCommand)
		return 2
	}
	// It ends by killing its whole group: that must be the job's.
	if syscall.Getpgrp() != os.Getpid() {
		fmt.Fprintf(os.Stderr, "croft %s: not a process group leader: the agent starts it\n", SuperviseCommand)
		return 2
	}
	// Before the work arrives, so that a signal sent as soon as it did is
	// a request, not the default death.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, sigKill, sigLost, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	in := os.NewFile(specFD, "spec")
	data, err := io.ReadAll(in)
	in.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "croft %s: reading the work on descriptor %d: %v\n", SuperviseCommand, specFD, err)
		return 2
	}
	if len(data) == 0 {
		return 0 // the agent went away before handing over work: nothing ran
	}
	var spec superviseSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return 2 // cut short: the agent died while writing
	}
	supervise(&spec, sigs)
	return 0
}

// supervise runs spec's command to the end, records its result and kills
// its process group (this process included).
func supervise(spec *superviseSpec, sigs <-chan os.Signal) {
	out, err := os.OpenFile(filepath.Join(spec.Dir, outputName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		_ = writeResult(spec.Dir, result{ExitCode: ExitNotStarted, OutputSize: -1, Note: err.Error()})
		return
	}
	res := runSupervised(spec, out, sigs)
	res.OutputSize = -1
	if fi, err := out.Stat(); err == nil {
		res.OutputSize = fi.Size()
	}
	if err := writeResult(spec.Dir, res); err != nil {
		fmt.Fprintf(out, "croft: cannot record the result: %v\n", err)
	}
	// Whatever the job left in its group ends with its supervisor.
	_ = syscall.Kill(0, syscall.SIGKILL)
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

// runSupervised runs the command and returns how it ended.
func runSupervised(spec *superviseSpec, out *os.File, sigs <-chan os.Signal) result {
	started := leaseClock()
	cmd := exec.Command("/bin/sh", "-c", spec.Command)
	cmd.Dir, cmd.Env = spec.WorkDir, spec.Env
	cmd.Stdout, cmd.Stderr = out, out // one file: the log keeps the order the job wrote in
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(out, "croft: cannot run the command: %v\n", err)
		return result{ExitCode: ExitNotStarted, Note: err.Error()}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var deadline, leaseTick, grace <-chan time.Time
	if spec.Deadline != 0 {
		t := time.NewTimer(time.Until(time.Unix(0, spec.Deadline)))
		defer t.Stop()
		deadline = t.C
	}
	if spec.Lease != "" {
		t := time.NewTicker(leaseCheckPeriod(spec.LeaseTimeout))
		defer t.Stop()
		leaseTick = t.C
	}
	reason := ""
	stop := func(why string) {
		if reason != "" {
			return
		}
		reason = why
		// The whole group, this process too: it takes SIGTERM for a
		// request, ignored now that one is under way.
		_ = syscall.Kill(0, syscall.SIGTERM)
		grace = time.After(spec.Grace)
	}
	var werr error
wait:
	for {
		select {
		case werr = <-exited:
			break wait
		case sig := <-sigs:
			if sig == sigKill {
				stop(stopKilled)
			} else {
				stop(stopLost)
			}
		case <-deadline:
			stop(stopTimeout)
		case <-leaseTick:
			age, err := leaseAge(spec.Lease, started)
			if reason == "" && (err != nil || age > spec.LeaseTimeout) {
				fmt.Fprintf(out, "croft: no word from the agent for %v (it died or lost its coordinators): stopping the job, it will run again\n", age.Round(time.Millisecond))
				stop(stopFenced)
			}
		case <-grace:
			// The shell; the rest of the group dies with the supervisor.
			_ = cmd.Process.Kill()
		}
	}
	res := result{ExitCode: exitCode(cmd.ProcessState)}
	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = ws.Signal().String()
		}
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		res.Note = werr.Error()
	}
	switch reason {
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
	return res
}
