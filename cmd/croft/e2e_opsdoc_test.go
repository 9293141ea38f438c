package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// docs/OPERATIONS.md: every ```sh block is preceded by an
// "<!-- ops-test: NAME -->" line, and TestOperationsDoc runs each by its
// name, as written, but for these mappings: the 10.0.0.N addresses become
// free ports of 127.0.0.1; the scripts get --root (one directory per
// machine) and --binary; /usr/local/bin, /etc/croft and /var/lib/croft are
// those of the machine's root; and systemctl is a stand-in that starts a
// unit's ExecStart (its paths mapped the same way) and stops it with
// SIGTERM, as systemd does.

var opsMarker = regexp.MustCompile(`^<!-- ops-test: ([a-z0-9-]+) -->$`)

// opsUnmarked are the sh blocks not run from the doc, by their first line,
// and where they are tested instead.
var opsUnmarked = map[string]string{
	"croft coordinator --node-id c2 --data-dir /var/lib/croft/c2 \\":                                    "the --recover and TLS examples: TestRecoverLostQuorumEndToEnd, TestTLSClusterEndToEnd",
	"croft agent --coordinator https://10.0.0.1:19211,https://10.0.0.2:19211,https://10.0.0.3:19211 \\": "TestTLSClusterEndToEnd",
}

// opsBlocks reads the marked sh blocks of docs/OPERATIONS.md.
func opsBlocks(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "OPERATIONS.md"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(doc), "\n")
	blocks := map[string]string{}
	inTLS := false
	for i := 0; i < len(lines); i++ {
		switch {
		case strings.HasPrefix(lines[i], "<!-- begin: tls-pki"):
			inTLS = true
		case strings.HasPrefix(lines[i], "<!-- end: tls-pki"):
			inTLS = false
		}
		if strings.TrimSpace(lines[i]) != "```sh" {
			continue
		}
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) != "```" {
			j++
		}
		body := strings.Join(lines[i+1:j], "\n")
		m := opsMarker.FindStringSubmatch(strings.TrimSpace(lines[i-1]))
		switch {
		case m != nil:
			if _, dup := blocks[m[1]]; dup {
				t.Fatalf("OPERATIONS.md: two blocks named %s", m[1])
			}
			blocks[m[1]] = body
		case inTLS: // run by TestTLSOpenSSL... (tlsOpenSSLCluster)
		case opsUnmarked[strings.TrimSpace(lines[i+1])] != "":
		default:
			t.Errorf("OPERATIONS.md line %d: a sh block with no ops-test marker (every command must be tested):\n%s", i+1, body)
		}
		i = j
	}
	return blocks
}

// TestOperationsDocBlocksAreMarked is the fast half: every sh block of the
// doc is run by TestOperationsDoc or named in opsUnmarked.
func TestOperationsDocBlocksAreMarked(t *testing.T) {
	if len(opsBlocks(t)) == 0 {
		t.Fatal("no ops-test blocks in docs/OPERATIONS.md")
	}
}

// opsSystemctl stands for systemctl: units are started from
// $CROFT_OPS_ROOT/etc/systemd/system, detached in a session of their own,
// their pid in $CROFT_OPS_ROOT/NAME.pid.
const opsSystemctl = `#!/usr/bin/env bash
set -euo pipefail
root=${CROFT_OPS_ROOT:?}
args=()
for a in "$@"; do case $a in -*) ;; *) args+=("$a") ;; esac; done
verb=${args[0]}
unit=${args[1]:-}; unit=${unit%.service}
alive() { [ -s "$root/$unit.pid" ] && kill -0 "$(cat "$root/$unit.pid")" 2>/dev/null &&
  ! grep -q '^State:.*Z' "/proc/$(cat "$root/$unit.pid")/status" 2>/dev/null; }
stop() {
  alive || return 0
  kill -TERM "$(cat "$root/$unit.pid")"
  for _ in $(seq 300); do alive || { rm -f "$root/$unit.pid"; return 0; }; sleep 0.1; done
  echo "systemctl: $unit did not stop" >&2; exit 1
}
start() {
  alive && return 0
  line=$(sed -n 's/^ExecStart=//p' "$root/etc/systemd/system/$unit.service")
  line=${line//\$\$/\\\$}; line=${line//%%/%}
  line=$(sed -e "s#^/usr/local/bin/#$root/usr/local/bin/#" -e "s#\"/etc/croft/#\"$root/etc/croft/#g" -e "s#\"/var/lib/#\"$root/var/lib/#g" <<<"$line")
  eval "cmd=($line)"
  setsid "${cmd[@]}" >>"$root/$unit.log" 2>&1 </dev/null &
  echo $! >"$root/$unit.pid"
}
case $verb in
  daemon-reload | enable | status) ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  *) echo "systemctl stand-in: $verb is not supported" >&2; exit 1 ;;
esac
`

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestOperationsDoc runs the commands of docs/OPERATIONS.md: install three
// coordinators and an agent with the scripts, a rolling upgrade (followers
// first) while jobs are submitted, a backup, replacing a dead coordinator,
// the membership commands, and a restore of the backup into a new node.
// (Lost-quorum recovery: TestRecoverLostQuorumEndToEnd.)
func TestOperationsDoc(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "tar", "setsid", "sed", "install"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s is not installed, so the commands of docs/OPERATIONS.md are not run", tool)
		}
	}
	blocks := opsBlocks(t)
	ran := map[string]bool{}
	dir := t.TempDir()
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	bin := croftBin(t)
	shims := filepath.Join(dir, "shims")
	work := filepath.Join(dir, "work")
	for _, d := range []string{shims, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, shims, "systemctl", opsSystemctl, 0o755)
	if err := os.Symlink(bin, filepath.Join(shims, "croft")); err != nil {
		t.Fatal(err)
	}
	root := func(machine string) string { return filepath.Join(dir, "m", machine) }
	// Stop every unit the stand-in started (by the pids it recorded).
	t.Cleanup(func() {
		pids, _ := filepath.Glob(filepath.Join(dir, "m", "*", "*.pid"))
		for _, f := range pids {
			if b, err := os.ReadFile(f); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
					_ = syscall.Kill(-pid, syscall.SIGKILL)
				}
			}
		}
	})
	httpPort, raftPort := map[int]int{}, map[int]int{}
	for n := 1; n <= 5; n++ {
		httpPort[n], raftPort[n] = freePort(t), freePort(t)
	}
	addr := func(n int) string { return fmt.Sprintf("127.0.0.1:%d", httpPort[n]) }
	url := func(n int) string { return "http://" + addr(n) }

	// run runs block name on machine (its root; "" for the admin machine)
	// with the mappings, the doc's 10.0.0.N first mapped to node as[N].
	run := func(name, machine string, as map[int]int) string {
		t.Helper()
		script, ok := blocks[name]
		if !ok {
			t.Fatalf("OPERATIONS.md has no block %s", name)
		}
		ran[name] = true
		for n := 1; n <= 5; n++ {
			to := n
			if m, ok := as[n]; ok {
				to = m
			}
			script = strings.ReplaceAll(script, fmt.Sprintf("10.0.0.%d:19211", n), "@H"+strconv.Itoa(to)+"@")
			script = strings.ReplaceAll(script, fmt.Sprintf("10.0.0.%d:19212", n), "@R"+strconv.Itoa(to)+"@")
		}
		for n := 1; n <= 5; n++ {
			script = strings.ReplaceAll(script, "@H"+strconv.Itoa(n)+"@", addr(n))
			script = strings.ReplaceAll(script, "@R"+strconv.Itoa(n)+"@", fmt.Sprintf("127.0.0.1:%d", raftPort[n]))
		}
		r := root(machine)
		if machine != "" {
			script = strings.NewReplacer(
				"scripts/install-coordinator.sh ", filepath.Join(repo, "scripts/install-coordinator.sh")+" --root "+r+" --binary "+bin+" ",
				"scripts/install-agent.sh ", filepath.Join(repo, "scripts/install-agent.sh")+" --root "+r+" --binary "+bin+" ",
				"/usr/local/bin/", r+"/usr/local/bin/",
				"/etc/croft/", r+"/etc/croft/",
				"/var/lib/croft", r+"/var/lib/croft",
			).Replace(script)
			if err := os.MkdirAll(r, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = work
		tok, _ := os.ReadFile(filepath.Join(work, "admin.token"))
		cmd.Env = append(os.Environ(), "PATH="+shims+":"+os.Getenv("PATH"), "CROFT_OPS_ROOT="+r, "CROFT_TOKEN="+strings.TrimSpace(string(tok)))
		out, err := cmd.CombinedOutput()
		if err != nil {
			logs, _ := filepath.Glob(filepath.Join(dir, "m", "*", "*.log"))
			var tail strings.Builder
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				fmt.Fprintf(&tail, "--- %s\n%s\n", l, lastLines(string(b), 15))
			}
			t.Fatalf("block %s on %q failed: %v\n%s\n--- script:\n%s\n%s", name, machine, err, out, script, tail.String())
		}
		return string(out)
	}
	pidOf := func(machine, unit string) int {
		b, err := os.ReadFile(filepath.Join(root(machine), unit+".pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return pid
	}

	// Install.
	run("install-token", "", nil)
	run("install-c1", "c1", nil)
	run("install-c2", "c2", nil)
	run("install-c3", "c3", nil)
	run("install-check", "", nil)
	token := adminToken(t, work)
	c := client.NewWith(client.Options{Token: token}, url(1), url(2), url(3))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	run("install-agent-token", "", nil)
	run("install-agent", "render", nil)
	// Monitoring: the health routes, and a read token for Prometheus,
	// which scrapes /metrics with it.
	run("monitoring-health", "", nil)
	if out := run("monitoring-token", "", nil); !strings.Contains(out, "prometheus") {
		t.Fatalf("the Prometheus token:\n%s", out)
	}
	mreq, _ := http.NewRequestWithContext(ctx, http.MethodGet, url(1)+"/metrics", nil)
	mreq.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "croft_raft_leader") {
		t.Fatalf("/metrics: %d %.300s", resp.StatusCode, b)
	}
	first, err := c.CreateJob(ctx, client.NewJob{Title: "installed", Command: "echo installed", Affinity: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, first, "FINISHED")
	var acked []int64
	for i := range 5 {
		id, err := c.CreateJob(ctx, client.NewJob{Title: fmt.Sprint("kept ", i), Command: "true", State: "PAUSED"})
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, id)
	}

	// Backup (restored at the end).
	run("backup", "c1", nil)

	// Rolling upgrade, followers first, while a writer submits jobs.
	out := run("upgrade-leader", "", nil)
	st, err := c.Status(ctx, url(1))
	if err != nil || st.LeaderID == "" || !strings.Contains(out, "leader: "+st.LeaderID) {
		t.Fatalf("status: %+v %v (the doc's command printed %q)", st, err, out)
	}
	leader := st.LeaderID
	order := []int{}
	for n := 1; n <= 3; n++ {
		if fmt.Sprint("c", n) != leader {
			order = append(order, n)
		}
	}
	order = append(order, int(leader[1]-'0'))
	if err := os.WriteFile(filepath.Join(work, "croft"), mustRead(t, bin), 0o755); err != nil {
		t.Fatal(err)
	}
	// Writes go on throughout: only while the leader's own process stops
	// may one fail (below); one refused while the leadership moves is a
	// 503 that the client retries.
	var leaderStep atomic.Bool
	writes := make(chan error, 1)
	stopWriting := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case <-stopWriting:
				if n == 0 {
					writes <- fmt.Errorf("no write during the upgrade")
					return
				}
				writes <- nil
				return
			default:
			}
			wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
			_, err := c.CreateJob(wctx, client.NewJob{Title: fmt.Sprint("during upgrade ", n), Command: "true", State: "PAUSED"})
			wcancel()
			switch {
			case err == nil:
				n++
			case leaderStep.Load():
				// The leader's own process stops: a request in flight on
				// it can end with its connection (outcome unknown, so the
				// client does not replay it). A refusal while the
				// leadership moves is a 503 the client retries by itself.
				time.Sleep(20 * time.Millisecond)
			default:
				writes <- fmt.Errorf("write %d during the upgrade (leader step %v): %w", n, leaderStep.Load(), err)
				return
			}
		}
	}()
	for i, n := range order {
		before := pidOf(fmt.Sprint("c", n), "croft-coordinator")
		leaderStep.Store(i == len(order)-1)
		run("upgrade-node", fmt.Sprint("c", n), map[int]int{2: n})
		leaderStep.Store(false)
		if pidOf(fmt.Sprint("c", n), "croft-coordinator") == before {
			t.Fatalf("c%d was not restarted", n)
		}
	}
	close(stopWriting)
	if err := <-writes; err != nil {
		t.Fatal(err)
	}

	// Replace a dead coordinator: c3 dies (kill -9).
	_ = syscall.Kill(-pidOf("c3", "croft-coordinator"), syscall.SIGKILL)
	c = client.NewWith(client.Options{Token: token}, url(1), url(2))
	run("replace", "", nil)
	run("replace-c4", "c4", nil)
	c = client.NewWith(client.Options{Token: token}, url(1), url(2), url(4))
	if _, err := c.CreateJob(ctx, client.NewJob{Title: "after replace", Command: "true", State: "PAUSED"}); err != nil {
		t.Fatal(err)
	}
	// The membership commands: joining c4 again changes nothing; remove it.
	run("membership-join", "", nil)
	run("membership-remove", "", nil)

	// Restore the backup into a new coordinator c5, a farm of its own.
	run("restore", "c5", nil)
	rc := client.NewWith(client.Options{Token: token}, url(5))
	for _, id := range append([]int64{first}, acked...) {
		if j, err := rc.Job(ctx, id); err != nil || j.ID != id {
			t.Fatalf("job %d after restore: %+v %v", id, j, err)
		}
	}
	if _, err := rc.CreateJob(ctx, client.NewJob{Title: "after restore", Command: "true", State: "PAUSED"}); err != nil {
		t.Fatal(err)
	}

	var missed []string
	for name := range blocks {
		if !ran[name] {
			missed = append(missed, name)
		}
	}
	sort.Strings(missed)
	if len(missed) > 0 {
		t.Fatalf("blocks of OPERATIONS.md this test does not run: %v", missed)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
