// Package localcluster runs a Croft farm of real processes on loopback:
// coordinators and agents started from the croft binary on ephemeral ports,
// each in its own process group so it can be killed with everything it
// started. `croft bench` uses it; so can tests.
package localcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// ErrNotStarted means a process did not come up in time.
var ErrNotStarted = errors.New("process did not start")

// Proc is one croft process.
type Proc struct {
	Name string
	Args []string
	Log  string // path of its stderr log
	// Env is added to the inherited environment.
	Env []string

	bin  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

var announced = regexp.MustCompile(`http://127\.0\.0\.1:\d+`)

// start runs the process; with wantURL it waits for the URL it announces.
func (p *Proc) start(ctx context.Context, wantURL bool) (string, error) {
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(p.bin, p.Args...)
	if len(p.Env) > 0 {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return "", err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", err
	}
	done := make(chan struct{})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u := announced.FindString(sc.Text()); u != "" {
				select {
				case urls <- u:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	if !wantURL {
		return "", nil
	}
	select {
	case u := <-urls:
		return u, nil
	case <-done:
		return "", fmt.Errorf("%w: %s exited; see %s", ErrNotStarted, p.Name, p.Log)
	case <-ctx.Done():
		p.Kill()
		return "", fmt.Errorf("%w: %s: %v", ErrNotStarted, p.Name, ctx.Err())
	}
}

// Pid returns the process id, 0 when not running.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil || isDone(p.done) {
		return 0
	}
	return p.cmd.Process.Pid
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Stop sends SIGTERM and waits (up to grace) before killing.
func (p *Proc) Stop(grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Coordinator is one coordinator process of the cluster.
type Coordinator struct {
	Proc
	ID       string
	URL      string // http://127.0.0.1:port
	RaftAddr string
	DataDir  string
}

// Cluster is a set of coordinator processes and agents.
type Cluster struct {
	Bin    string
	Dir    string
	Coords []*Coordinator
	Agents []*Proc
	// CoordinatorArgs are added to every coordinator's command line.
	CoordinatorArgs []string
	// CoordinatorEnv is added to every coordinator's environment.
	CoordinatorEnv []string
	// Token is the admin token the bootstrap coordinator created; agents
	// and the cluster's own clients use it.
	Token string
}

// Client returns a client of urls (default: every coordinator) with the
// cluster's admin token.
func (c *Cluster) Client(urls ...string) *client.Client {
	if len(urls) == 0 {
		urls = c.URLs()
	}
	return client.NewWith(client.Options{Token: c.Token}, urls...)
}

// waitToken waits for the admin token a bootstrap writes into dataDir.
func waitToken(ctx context.Context, dataDir string) (string, error) {
	for {
		if b, err := os.ReadFile(filepath.Join(dataDir, "admin.token")); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b)), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no admin token in %s: %w", dataDir, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// CoordinatorProcs is the GOMAXPROCS each of n coordinators sharing this
// machine gets: its share of the cores, at least one, as a container with
// that CPU limit would set it (Go reads the cgroup quota). Without it each
// coordinator schedules goroutines on every core, and on a small machine
// shared by several, its idle processors spin for work the others' CPU
// time pays for: on the 2-core development VM a leader serving 10,000
// agents' heartbeats used a quarter more CPU. A GOMAXPROCS set in the
// environment wins.
func CoordinatorProcs(n int) int {
	return max(1, runtime.NumCPU()/max(n, 1))
}

// Start launches n coordinators (the first bootstraps, the others join it)
// and waits until all are voters with a leader. Each runs with its share
// of the machine's cores (CoordinatorProcs).
func Start(ctx context.Context, bin, dir string, n int, extra ...string) (*Cluster, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Bin: bin, Dir: dir, CoordinatorArgs: extra}
	if os.Getenv("GOMAXPROCS") == "" {
		c.CoordinatorEnv = []string{"GOMAXPROCS=" + strconv.Itoa(CoordinatorProcs(n))}
	}
	for i := 1; i <= n; i++ {
		id := "c" + strconv.Itoa(i)
		co := &Coordinator{ID: id, DataDir: filepath.Join(dir, id)}
		co.Proc = Proc{Name: id, Log: filepath.Join(dir, id+".log"), Env: c.CoordinatorEnv, bin: bin}
		args := []string{"coordinator", "--node-id", id, "--data-dir", co.DataDir,
			"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}
		if i == 1 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", c.Coords[0].URL)
		}
		co.Args = append(args, extra...)
		if i > 1 {
			// The token goes in the environment, not on a command line
			// anyone on the host can read.
			co.Env = append(append([]string{}, co.Env...), "CROFT_TOKEN="+c.Token)
		}
		u, err := co.start(ctx, true)
		if err != nil {
			c.Close()
			return nil, err
		}
		co.URL = u
		c.Coords = append(c.Coords, co)
		if i == 1 {
			if c.Token, err = waitToken(ctx, co.DataDir); err != nil {
				c.Close()
				return nil, err
			}
		}
	}
	if err := c.WaitMembers(ctx, n); err != nil {
		c.Close()
		return nil, err
	}
	// Record each node's real addresses, so a restart can reuse them.
	st, err := c.Client().Status(ctx, c.Coords[0].URL)
	if err != nil {
		c.Close()
		return nil, err
	}
	for _, co := range c.Coords {
		for _, m := range st.Members {
			if m.ID == co.ID {
				co.RaftAddr = m.RaftAddr
			}
		}
	}
	return c, nil
}

// URLs returns the coordinators' base URLs.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.Coords))
	for i, co := range c.Coords {
		out[i] = co.URL
	}
	return out
}

// WaitMembers waits until some coordinator reports n voters and a leader.
func (c *Cluster) WaitMembers(ctx context.Context, n int) error {
	_, err := c.untilStatus(ctx, func(st client.ClusterStatus) bool {
		// A joiner is a non-voter until the leader promotes it.
		voters := 0
		for _, m := range st.Members {
			if m.Suffrage == "Voter" {
				voters++
			}
		}
		return st.LeaderID != "" && len(st.Members) == n && voters == n
	})
	if err != nil {
		return fmt.Errorf("cluster of %d did not form: %w", n, err)
	}
	return nil
}

// Leader returns the coordinator the live members name as leader.
func (c *Cluster) Leader(ctx context.Context) (*Coordinator, error) {
	var leader *Coordinator
	_, err := c.untilStatus(ctx, func(st client.ClusterStatus) bool {
		for _, l := range c.Coords {
			if l.ID == st.LeaderID && l.Pid() != 0 {
				leader = l
				return true
			}
		}
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("no leader: %w", err)
	}
	return leader, nil
}

// untilStatus asks the live coordinators for their status until one
// satisfies ok, or ctx ends.
func (c *Cluster) untilStatus(ctx context.Context, ok func(client.ClusterStatus) bool) (client.ClusterStatus, error) {
	cl := c.Client()
	for {
		for _, co := range c.Coords {
			if co.Pid() == 0 {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := cl.Status(sctx, co.URL)
			cancel()
			if err == nil && ok(st) {
				return st, nil
			}
		}
		select {
		case <-ctx.Done():
			return client.ClusterStatus{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Restart starts a stopped coordinator again on its data dir and addresses.
// The ports were just freed, so binding is retried for a while.
func (c *Cluster) Restart(ctx context.Context, co *Coordinator) error {
	host := strings.TrimPrefix(co.URL, "http://")
	args := []string{"coordinator", "--node-id", co.ID, "--data-dir", co.DataDir,
		"--http-addr", host, "--raft-addr", co.RaftAddr}
	co.Args = append(args, c.CoordinatorArgs...)
	for {
		if _, err := co.start(ctx, true); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StartAgent starts a `croft agent` against every coordinator.
func (c *Cluster) StartAgent(ctx context.Context, name string, extra ...string) (*Proc, error) {
	p := &Proc{Name: name, Log: filepath.Join(c.Dir, name+".log"), bin: c.Bin, Env: []string{"CROFT_TOKEN=" + c.Token}}
	p.Args = append([]string{"agent", "--coordinator", strings.Join(c.URLs(), ","), "--name", name,
		"--data-dir", filepath.Join(c.Dir, "agent-"+name)}, extra...)
	if _, err := p.start(ctx, false); err != nil {
		return nil, err
	}
	c.Agents = append(c.Agents, p)
	return p, nil
}

// Close kills every process it started.
func (c *Cluster) Close() {
	for _, a := range c.Agents {
		a.Kill()
	}
	for _, co := range c.Coords {
		co.Kill()
	}
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ProcStats returns a process's CPU time (user+system) and resident memory,
// read from /proc.
func ProcStats(pid int) (cpu time.Duration, rssBytes int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 22 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	rssPages, _ := strconv.ParseInt(f[21], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	cpu = time.Duration(utime+stime) * time.Second / ticks
	return cpu, rssPages * int64(os.Getpagesize()), nil
}

// HostCPU returns the CPU time the whole host spent busy (user, nice,
// system, irq and softirq on every core; not idle, iowait or steal), read
// from /proc/stat. On a machine that runs only the farm, its growth over a
// run divided by the work done is the farm's CPU cost per unit of work, a
// figure less sensitive to a noisy machine than a rate.
func HostCPU() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("malformed /proc/stat")
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc/stat: %w", err)
		}
		ticks += v
	}
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(ticks) * time.Second / ticksPerSecond, nil
}
