package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DrainSignal asks an agent run with Config.Control to drain (see
// Agent.Drain): take no more work, and exit once its running jobs are over
// and reported. SIGTERM and SIGINT, by contrast, stop the agent at once
// and leave its jobs running for the next start.
const DrainSignal = syscall.SIGUSR1

// pidName is the file, in DataDir, that names the agent running there
// (Config.Control): a second invocation reaches it through the data
// directory, never through a network port.
const pidName = "agent.pid"

var (
	// ErrNotRunning means no agent runs on the data directory.
	ErrNotRunning = errors.New("no agent runs on this data directory")
	// ErrNoPidFile means an agent holds the data directory but has not
	// named itself there (it is starting, or runs without Config.Control).
	ErrNoPidFile = errors.New("the agent on this data directory does not take signals (starting, or embedded)")
)

// pidRecord is the pid file's content: the agent's pid and what tells it
// from a later process with that pid.
type pidRecord struct {
	Pid   int       `json:"pid"`
	Ident procIdent `json:"ident"`
}

// writePidFile names this process as the agent of dir (which it locked).
func writePidFile(dir string) error {
	id, err := identify(os.Getpid())
	if err != nil {
		return err
	}
	b, err := json.Marshal(pidRecord{Pid: os.Getpid(), Ident: id})
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, pidName), b)
}

func removePidFile(dir string) { _ = os.Remove(filepath.Join(dir, pidName)) }

// RequestDrain asks the agent running on data directory dir to drain
// (DrainSignal) and waits until it exited, or ctx ended. It returns the
// agent's pid; ErrNotRunning if no agent runs there, ErrNoPidFile if the
// agent there cannot be signalled.
func RequestDrain(ctx context.Context, dir string) (int, error) {
	// The agent holds the lock as long as it runs (its supervisors do not
	// inherit it): taking it says whether one runs, and when it exited.
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrNotRunning, dir)
	}
	if err != nil {
		return 0, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		f.Close()
		return 0, fmt.Errorf("%w: %s", ErrNotRunning, dir)
	} else if !errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return 0, fmt.Errorf("lock: %w", err)
	}
	pid, err := runningAgent(dir)
	if err == nil {
		err = syscall.Kill(pid, DrainSignal)
	}
	if err != nil {
		f.Close()
		return pid, err
	}
	exited := make(chan error, 1)
	go func() {
		// Unblocked when the agent exits; if ctx ended before, the lock
		// is then released at once.
		err := flockWait(f)
		f.Close()
		exited <- err
	}()
	select {
	case err := <-exited:
		return pid, err
	case <-ctx.Done():
		return pid, ctx.Err()
	}
}

// runningAgent returns the pid the pid file of dir names, if that process
// still runs.
func runningAgent(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, pidName))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %s", ErrNoPidFile, dir)
	}
	if err != nil {
		return 0, err
	}
	var r pidRecord
	if err := json.Unmarshal(b, &r); err != nil || r.Pid <= 0 {
		return 0, fmt.Errorf("%w: %s: malformed", ErrNoPidFile, filepath.Join(dir, pidName))
	}
	// A file left by an agent that died: the one holding the lock now has
	// not written its own yet.
	if r.Ident.state(r.Pid) != procAlive {
		return 0, fmt.Errorf("%w: %s names a process that is gone", ErrNoPidFile, filepath.Join(dir, pidName))
	}
	return r.Pid, nil
}

// flockWait blocks until it holds f's lock.
func flockWait(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
