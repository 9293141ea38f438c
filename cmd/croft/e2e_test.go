package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/internal/testbin"
)

// End-to-end tests drive the built binary (internal/testbin: $CROFT_BIN,
// set by `make test`, or one build per test run).

func croftBin(t testing.TB) string { return testbin.Croft(t) }

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// proc is a croft process started by a test and stopped by it, by pid.
type proc struct {
	t    testing.TB
	cmd  *exec.Cmd
	url  string
	done chan struct{}
	logs *strings.Builder
	out  strings.Builder // what it printed on stdout
	mu   sync.Mutex
}

var urlLine = regexp.MustCompile(`https?://127\.0\.0\.1:\d+`)

// start runs the binary and waits for the line that announces its URL.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	return startProc(t, true, args...)
}

// startProc runs the binary; with announces set it waits for its URL line.
func startProc(t testing.TB, announces bool, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(croftBin(t), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, done: make(chan struct{}), logs: &strings.Builder{}}
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.logs.Write(b)
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if u := urlLine.FindString(sc.Text()); u != "" {
				select {
				case found <- u:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	if !announces {
		return p
	}
	select {
	case p.url = <-found:
	case <-p.done:
		t.Fatalf("croft %v exited early:\n%s", args, p.stderr())
	case <-time.After(30 * time.Second):
		t.Fatalf("croft %v did not announce its URL:\n%s", args, p.stderr())
	}
	return p
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func (p *proc) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *proc) stdout() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// kill sends SIGKILL to the process group and reaps it.
func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// stop asks the process to shut down and waits for it.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Errorf("croft did not stop on SIGTERM:\n%s", p.stderr())
		p.kill()
	}
}

// waitJob polls until the job reaches state want; a job waited on for
// FINISHED that ends in ERROR fails the test at once.
func waitJob(t testing.TB, c *client.Client, id int64, want string) client.Job {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		j, err := c.Job(ctx, id)
		cancel()
		if err == nil && (j.State == want || (want == "FINISHED" && j.State == "ERROR")) {
			if j.State != want {
				t.Fatalf("job %d is %s, want %s", id, j.State, want)
			}
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d not %s in time: %+v (err %v)", id, want, j, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

// adminToken waits for the admin token a bootstrap writes into its data
// directory, and returns it.
func adminToken(t testing.TB, dataDir string) string {
	t.Helper()
	file := filepath.Join(dataDir, AdminTokenFile)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(file); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin token in %s", file)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// adminClient is a client of urls with the admin token of dataDir.
func adminClient(t testing.TB, dataDir string, urls ...string) *client.Client {
	return client.NewWith(client.Options{Token: adminToken(t, dataDir)}, urls...)
}

// countVoters counts the voters in a status.
func countVoters(st client.ClusterStatus) int {
	n := 0
	for _, m := range st.Members {
		if m.Suffrage == "Voter" {
			n++
		}
	}
	return n
}

func TestDevRunsAJobEndToEnd(t *testing.T) {
	dir := t.TempDir()
	dev := start(t, "dev", "--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	c := adminClient(t, filepath.Join(dir, "data"), dev.url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The farm is closed without a token, as printed on start.
	if _, err := client.New(dev.url).CreateJob(ctx, client.NewJob{Title: "anonymous", Command: "true"}); !client.IsStatus(err, 401) {
		t.Fatalf("a create without a token: %v, want 401", err)
	}
	if !strings.Contains(dev.stdout(), "Authorization: Bearer $(cat ") {
		t.Fatalf("dev did not print a first job with its token:\n%s", dev.stdout())
	}

	id, err := c.CreateJob(ctx, client.NewJob{Title: "hi", Command: "echo hi"})
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, c, id, "FINISHED")
	if j.RunDone != 1 || j.Worker == "" {
		t.Fatalf("finished job %+v", j)
	}
	log, err := c.Log(ctx, id)
	if err != nil || !strings.Contains(log, "hi") {
		t.Fatalf("log %q, %v", log, err)
	}
	ws, err := c.Workers(ctx)
	if err != nil || len(ws) != 1 || ws[0].TotalMemory == 0 || ws[0].CPU == "" || ws[0].PingTime == 0 {
		t.Fatalf("workers %+v, %v", ws, err)
	}

	// A group of three children, then a chain that depends on the group.
	out := filepath.Join(dir, "order.txt")
	g, err := c.CreateJob(ctx, client.NewJob{Title: "group"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		cmd := fmt.Sprintf("sleep 0.2; echo child%d >> %s", i, out)
		if _, err := c.CreateJob(ctx, client.NewJob{Parent: ptr(g), Title: fmt.Sprint("child", i), Command: cmd}); err != nil {
			t.Fatal(err)
		}
	}
	d1, err := c.CreateJob(ctx, client.NewJob{Title: "after group", Command: "echo d1 >> " + out, Dependencies: []int64{g}})
	if err != nil {
		t.Fatal(err)
	}
	d2, err := c.CreateJob(ctx, client.NewJob{Title: "after d1", Command: "echo d2 >> " + out, Dependencies: []int64{d1}})
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, d2, "FINISHED")
	gj := waitJob(t, c, g, "FINISHED")
	if gj.Total != 3 || gj.TotalFinished != 3 || gj.Finished != 3 {
		t.Fatalf("group %+v", gj)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(data))
	if len(lines) != 5 || lines[3] != "d1" || lines[4] != "d2" {
		t.Fatalf("run order %v", lines)
	}

	// A failing job reports its exit code as ERROR and is retried per retry.
	bad, err := c.CreateJob(ctx, client.NewJob{Title: "fails", Command: "echo oops; exit 3", Retry: ptr(2)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		j, err := c.Job(ctx, bad)
		if err == nil && j.State == "ERROR" && j.RunDone == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("failing job %+v, %v", j, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Restarted on the same data dir, the farm has every job.
	dev.stop()
	dev2 := start(t, "dev", "--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	c2 := adminClient(t, filepath.Join(dir, "data"), dev2.url)
	for _, jid := range []int64{id, g, d1, d2} {
		waitJob(t, c2, jid, "FINISHED")
	}
	if log, err := c2.Log(ctx, id); err != nil || !strings.Contains(log, "hi") {
		t.Fatalf("log after restart %q, %v", log, err)
	}
	dev2.stop()
}

func TestClusterSurvivesKillOfLeader(t *testing.T) {
	dir := t.TempDir()
	coord := func(id string, extra ...string) *proc {
		args := append([]string{"coordinator", "--node-id", id, "--data-dir", filepath.Join(dir, id),
			"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}, extra...)
		return start(t, args...)
	}
	nodes := map[string]*proc{"c1": coord("c1", "--bootstrap")}
	tokenFile := filepath.Join(dir, "c1", AdminTokenFile)
	adminToken(t, filepath.Join(dir, "c1"))
	nodes["c2"] = coord("c2", "--join", nodes["c1"].url, "--token-file", tokenFile)
	nodes["c3"] = coord("c3", "--join", nodes["c1"].url, "--token-file", tokenFile)
	urls := []string{nodes["c1"].url, nodes["c2"].url, nodes["c3"].url}
	c := adminClient(t, filepath.Join(dir, "c1"), urls...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Wait until all three are voters (joiners are promoted once caught up).
	var st client.ClusterStatus
	for {
		var err error
		st, err = c.Status(ctx, nodes["c1"].url)
		if err == nil && countVoters(st) == 3 && st.LeaderID != "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("cluster did not form: %+v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Writes through a follower are forwarded to the leader.
	var follower string
	for id, p := range nodes {
		if id != st.LeaderID {
			follower = p.url
		}
	}
	fc := adminClient(t, filepath.Join(dir, "c1"), follower)
	var acked []int64
	for i := 0; i < 20; i++ {
		id, err := fc.CreateJob(ctx, client.NewJob{Title: fmt.Sprint("job ", i), Command: "true", State: "PAUSED"})
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, id)
	}
	// An agent runs a job across the failover: it must finish once, with
	// its output delivered to the new leader.
	marks := filepath.Join(dir, "runs.txt")
	startProc(t, false, "agent", "--coordinator", strings.Join(urls, ","), "--name", "e2e-agent", "--data-dir", filepath.Join(dir, "agent"), "--token-file", tokenFile)
	long, err := c.CreateJob(ctx, client.NewJob{Title: "across failover", Command: "echo run >> " + marks + "; echo started; sleep 2; echo done"})
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, long, "WORKING")

	leader := nodes[st.LeaderID]
	leader.kill() // kill -9 of the whole process group

	// The survivors elect a leader and have every acknowledged job.
	var rest []string
	for id, p := range nodes {
		if id != st.LeaderID {
			rest = append(rest, p.url)
		}
	}
	rc := adminClient(t, filepath.Join(dir, "c1"), rest...)
	for _, id := range acked {
		j, err := rc.Job(ctx, id)
		if err != nil || j.ID != id {
			t.Fatalf("job %d after leader kill: %+v %v", id, j, err)
		}
	}
	id, err := rc.CreateJob(ctx, client.NewJob{Title: "after failover", Command: "true"})
	if err != nil || id <= long {
		t.Fatalf("write after failover: id %d, %v", id, err)
	}
	lj := waitJob(t, rc, long, "FINISHED")
	if lj.RunDone != 1 {
		t.Fatalf("job across failover ran %d times", lj.RunDone)
	}
	if log, err := rc.Log(ctx, long); err != nil || !strings.Contains(log, "started") || !strings.Contains(log, "done") {
		t.Fatalf("log across failover %q, %v", log, err)
	}
	if data, _ := os.ReadFile(marks); string(data) != "run\n" {
		t.Fatalf("the job ran %q times", data)
	}
	st2, err := rc.Status(ctx, rest[0])
	if err != nil || st2.LeaderID == "" || st2.LeaderID == st.LeaderID {
		t.Fatalf("status after failover %+v %v", st2, err)
	}

	// The admin CLI removes the dead member and shows the new membership.
	out, err := exec.CommandContext(ctx, croftBin(t), "cluster", "remove", "--coordinator", rest[0], "--node-id", st.LeaderID, "--token-file", tokenFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "removed") {
		t.Fatalf("croft cluster remove: %v\n%s", err, out)
	}
	// The status names a leader (on a loaded machine an election may be
	// under way when it is asked: then it names none yet) and no longer
	// lists the removed member.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err = exec.CommandContext(ctx, croftBin(t), "cluster", "status", "--coordinator", rest[1], "--data-dir", filepath.Join(dir, "c1")).CombinedOutput()
		named := regexp.MustCompile(`leader: \S+ `).Match(out)
		if err == nil && named && !strings.Contains(string(out), st.LeaderID+" ") {
			break
		}
		if err != nil || strings.Contains(string(out), st.LeaderID+" ") || time.Now().After(deadline) {
			t.Fatalf("croft cluster status after remove: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDevSlotsRunConcurrently(t *testing.T) {
	dir := t.TempDir()
	barrier := filepath.Join(dir, "barrier")
	if err := os.Mkdir(barrier, 0o755); err != nil {
		t.Fatal(err)
	}
	dev := start(t, "dev", "--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--slots", "3")
	c := adminClient(t, filepath.Join(dir, "data"), dev.url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Each job succeeds only if all three are running at once: a barrier,
	// not a timing assertion. Bounded to 30 s.
	var ids []int64
	for i := 0; i < 3; i++ {
		cmd := fmt.Sprintf(`touch %[1]s/s%[2]d; n=0; while [ $(ls %[1]s | wc -l) -lt 3 ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done; [ $(ls %[1]s | wc -l) -ge 3 ]`, barrier, i)
		id, err := c.CreateJob(ctx, client.NewJob{Title: fmt.Sprint("slot job ", i), Command: cmd, Retry: ptr(0)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	workers := map[string]bool{}
	for _, id := range ids {
		workers[waitJob(t, c, id, "FINISHED").Worker] = true
	}
	if len(workers) != 3 {
		t.Fatalf("jobs ran on %v, want three slot workers", workers)
	}
	dev.stop()
}
