package chaos

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/croftfarm/croft/internal/testbin"
)

// TestMain removes the binary the tests built, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// croftBin is the binary under test (testbin.Croft).
func croftBin(t testing.TB) string { return testbin.Croft(t) }

// proc is one croft process (a coordinator or an agent) across its
// restarts. Its stdout and stderr of every start go to one log file. Each
// start runs in a process group of its own, so the test can stop the
// process by its pid and group id.
type proc struct {
	name    string
	bin     string
	logPath string
	env     []string // added to the test's environment

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
}

// startTimeout bounds how long a start may take to announce itself.
const startTimeout = 30 * time.Second

var urlLine = regexp.MustCompile(`http://127\.0\.0\.1:\d+`)

// errExited is returned by start when the process ended before it was up;
// it carries what the process wrote.
type errExited struct{ output string }

func (e *errExited) Error() string { return "exited during start:\n" + e.output }

// start runs the binary with args. It waits (bounded) until the process
// announces its URL on stdout (coordinators) or writes ready on stderr
// (agents: "agent starting"), and returns the announced URL, if any.
func (p *proc) start(args []string, ready string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		return "", fmt.Errorf("%s is already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	p.starts++
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer f.Close()
	off, err := f.Seek(0, 2)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(f, "=== %s %s start #%d: croft %s\n", stamp(time.Now()), p.name, p.starts, strings.Join(args, " "))
	r, w, err := os.Pipe()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(p.bin, args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout = w
	cmd.Stderr = f
	// Pdeathsig: should the test binary die without its cleanups (go
	// test's -timeout panic), its processes die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		return "", err
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	fmt.Fprintf(f, "=== %s pid %d\n", p.name, cmd.Process.Pid)
	found := make(chan string, 1)
	go func() { // copy stdout into the log, watching for the URL line
		defer r.Close()
		lf, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			defer lf.Close()
		}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if lf != nil {
				fmt.Fprintf(lf, "stdout: %s\n", sc.Text())
			}
			if u := urlLine.FindString(sc.Text()); u != "" {
				select {
				case found <- u:
				default:
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(done) }()

	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready == "" {
			select {
			case u := <-found:
				return u, nil
			default:
			}
		} else if bytes.Contains(readFrom(p.logPath, off), []byte(ready)) {
			return "", nil
		}
		select {
		case <-done:
			return "", &errExited{output: string(readFrom(p.logPath, off))}
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			p.killLocked(true)
			return "", fmt.Errorf("%s not up within %v:\n%s", p.name, startTimeout, readFrom(p.logPath, off))
		}
	}
}

// running reports whether the process is up.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.done)
}

// pid returns the pid of the current (or last) start.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// kill sends SIGKILL and waits until the process is reaped. With group set
// it signals the whole process group the test gave it; without, only the
// process itself (an agent's jobs run in process groups of their own and
// are not touched either way).
func (p *proc) kill(group bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.killLocked(group)
}

func (p *proc) killLocked(group bool) {
	if p.cmd == nil || isClosed(p.done) {
		return
	}
	pid := p.cmd.Process.Pid
	if group {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	} else {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func readFrom(path string, off int64) []byte {
	data, err := os.ReadFile(path)
	if err != nil || off > int64(len(data)) {
		return nil
	}
	return data[off:]
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// grepFiles returns up to max lines of the files that contain any of words.
func grepFiles(paths []string, words []string, max int) string {
	var out []string
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			for _, w := range words {
				if strings.Contains(line, w) {
					out = append(out, filepath.Base(path)+": "+line)
					break
				}
			}
		}
	}
	if len(out) > max {
		out = append(out[:max], fmt.Sprintf("... (%d more lines)", len(out)-max))
	}
	return strings.Join(out, "\n")
}

func stamp(t time.Time) string { return t.Format("15:04:05.000") }

// jobProcesses returns the pids of the live processes whose command line
// contains marker: the shells of the test's jobs.
func jobProcesses(marker string) []int {
	return scanProc("cmdline", marker)
}

// scanProc returns the pids of the live processes (not the test itself)
// whose /proc/PID/<file> contains marker.
func scanProc(file, marker string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), file))
		if err != nil || !bytes.Contains(data, []byte(marker)) {
			continue
		}
		if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && isZombie(st) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// descendants returns which of pids run under ancestor (its children, or
// their children: an agent runs each job directly or under a supervisor).
func descendants(ancestor int, pids []int) []int {
	var out []int
	for _, pid := range pids {
		p := pid
		for depth := 0; depth < 8 && p > 1; depth++ {
			p = parentOf(p)
			if p == ancestor {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// parentOf returns the parent pid of pid, or 0.
func parentOf(pid int) int {
	st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid ...": comm may hold spaces, so parse after ')'.
	i := bytes.LastIndexByte(st, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(st[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// isZombie reads the state field of /proc/PID/stat ("pid (comm) S ...").
func isZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// killMarked kills, with their process groups, the processes whose
// environment holds marker (the test gives it to its agents, and their
// job processes inherit it): whatever killed agents left running. It
// retries briefly, since a dying group may still start a process, and
// returns the pids it found.
func killMarked(marker string) []int {
	own := syscall.Getpgrp()
	var found []int
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := scanProc("environ", marker)
		if len(pids) == 0 || time.Now().After(deadline) {
			return found
		}
		found = append(found, pids...)
		for _, pid := range pids {
			if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != own {
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// addrInUse reports whether a start failed because a port was taken.
func addrInUse(err error) bool {
	var ee *errExited
	return errors.As(err, &ee) && strings.Contains(ee.output, "address already in use")
}
