package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// coord is one coordinator. Its first start takes ephemeral ports; every
// restart reuses the HTTP and Raft addresses it got (the Raft address is
// its identity in the cluster, and the agents know it by its URL) and its
// data directory.
type coord struct {
	*proc
	id       string
	dataDir  string
	httpAddr string // host:port, known after the first start
	raftAddr string // host:port, known once the cluster formed
}

func (c *coord) url() string { return "http://" + c.httpAddr }

// agentProc is one agent; it restarts with the same name and data dir.
type agentProc struct {
	*proc
	name    string
	dataDir string
	slots   int
}

// cluster is the farm under test.
type cluster struct {
	t      *testing.T
	dir    string
	logDir string
	bin    string
	coords []*coord
	agents []*agentProc
	hc     *http.Client // status reads, each sent to exactly the node asked
	logf   func(format string, args ...any)
	token  string // the admin token c1 created at bootstrap
}

// client returns a client of urls with the admin token.
func (cl *cluster) client(urls ...string) *client.Client {
	return client.NewWith(client.Options{Token: cl.token}, urls...)
}

func newCluster(t *testing.T, logf func(string, ...any)) *cluster {
	dir := t.TempDir()
	cl := &cluster{
		t:      t,
		dir:    dir,
		logDir: filepath.Join(dir, "logs"),
		bin:    croftBin(t),
		hc: &http.Client{Transport: &http.Transport{
			Proxy:       nil,
			DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		}},
		logf: logf,
	}
	if err := os.MkdirAll(cl.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return cl
}

func (cl *cluster) newProc(name string) *proc {
	return &proc{name: name, bin: cl.bin, logPath: filepath.Join(cl.logDir, name+".log")}
}

// marker is the environment entry the agents (and so their jobs) get.
func (cl *cluster) marker() string { return "CROFT_CHAOS_RUN=" + cl.dir }

// logFiles returns every process log.
func (cl *cluster) logFiles() []string {
	var out []string
	for _, c := range cl.coords {
		out = append(out, c.logPath)
	}
	for _, a := range cl.agents {
		out = append(out, a.logPath)
	}
	return out
}

// stopAll kills every process the test started (by process group) and the
// job shells the agents left behind.
func (cl *cluster) stopAll() {
	for _, a := range cl.agents {
		a.kill(true)
	}
	for _, c := range cl.coords {
		c.kill(true)
	}
	if pids := killMarked(cl.marker()); len(pids) > 0 {
		cl.t.Logf("cleanup: killed leftover job processes %v", pids)
	}
	cl.hc.CloseIdleConnections()
}

// urls returns the coordinator URLs.
func (cl *cluster) urls() []string {
	var out []string
	for _, c := range cl.coords {
		out = append(out, c.url())
	}
	return out
}

// start forms the cluster: c1 bootstraps, c2 and c3 join it, then the
// agents start.
func (cl *cluster) start(ctx context.Context, nCoords, nAgents, slots int) error {
	for i := 1; i <= nCoords; i++ {
		c := &coord{proc: cl.newProc(fmt.Sprintf("c%d", i)), id: fmt.Sprintf("c%d", i)}
		c.dataDir = filepath.Join(cl.dir, "data", c.id)
		args := []string{"coordinator", "--node-id", c.id, "--data-dir", c.dataDir,
			"--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}
		if i == 1 {
			args = append(args, "--bootstrap")
		} else {
			args = append(args, "--join", cl.coords[0].url())
		}
		cl.coords = append(cl.coords, c)
		if i > 1 {
			c.env = []string{"CROFT_TOKEN=" + cl.token}
		}
		u, err := c.start(args, "")
		if err != nil {
			return fmt.Errorf("start %s: %w", c.id, err)
		}
		c.httpAddr = strings.TrimPrefix(u, "http://")
		cl.logf("started %s (pid %d) at %s", c.id, c.pid(), u)
		if i == 1 {
			if err := cl.waitToken(ctx, c.dataDir); err != nil {
				return err
			}
		}
	}
	// Wait until every coordinator is a voter, and learn the Raft address
	// each one got.
	var st client.ClusterStatus
	for {
		var err error
		st, err = cl.status(ctx, cl.coords[0], false)
		if err == nil && st.LeaderID != "" && len(st.Members) == nCoords {
			voters := 0
			for _, m := range st.Members {
				if m.Suffrage == "Voter" && m.HTTPAddr != "" {
					voters++
				}
			}
			if voters == nCoords {
				break
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cluster did not form: %+v (%v)", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range cl.coords {
		for _, m := range st.Members {
			if m.ID == c.id {
				c.raftAddr = m.RaftAddr
				if m.HTTPAddr != c.httpAddr {
					return fmt.Errorf("%s: member http address %s, announced %s", c.id, m.HTTPAddr, c.httpAddr)
				}
			}
		}
		if c.raftAddr == "" {
			return fmt.Errorf("%s is not a member: %+v", c.id, st.Members)
		}
		cl.logf("%s: http %s raft %s", c.id, c.httpAddr, c.raftAddr)
	}
	for i := 1; i <= nAgents; i++ {
		a := &agentProc{proc: cl.newProc(fmt.Sprintf("a%d", i)), name: fmt.Sprintf("chaos-a%d", i), slots: slots}
		a.env = []string{cl.marker(), "CROFT_TOKEN=" + cl.token}
		a.dataDir = filepath.Join(cl.dir, "data", a.name)
		cl.agents = append(cl.agents, a)
		if err := cl.startAgent(a); err != nil {
			return err
		}
		cl.logf("started agent %s (pid %d)", a.name, a.pid())
	}
	return nil
}

func (cl *cluster) startAgent(a *agentProc) error {
	_, err := a.start([]string{"agent", "--coordinator", strings.Join(cl.urls(), ","),
		"--name", a.name, "--data-dir", a.dataDir, "--slots", strconv.Itoa(a.slots)}, "agent starting")
	if err != nil {
		return fmt.Errorf("start agent %s: %w", a.name, err)
	}
	return nil
}

// waitToken waits for the admin token the bootstrap coordinator writes
// into its data directory.
func (cl *cluster) waitToken(ctx context.Context, dataDir string) error {
	for {
		if b, err := os.ReadFile(filepath.Join(dataDir, "admin.token")); err == nil && len(b) > 0 {
			cl.token = strings.TrimSpace(string(b))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no admin token in %s: %w", dataDir, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// restartCoord starts a coordinator again on its addresses and data dir.
// Re-binding a port freed a moment ago can fail (another socket may have
// taken it meanwhile): that is retried a few times.
func (cl *cluster) restartCoord(c *coord) error {
	args := []string{"coordinator", "--node-id", c.id, "--data-dir", c.dataDir,
		"--http-addr", c.httpAddr, "--raft-addr", c.raftAddr}
	var err error
	for attempt := 1; attempt <= 10; attempt++ {
		if _, err = c.start(args, ""); err == nil {
			return nil
		}
		if !addrInUse(err) {
			return err
		}
		cl.logf("restart %s: address in use (attempt %d), retrying", c.id, attempt)
		time.Sleep(time.Duration(attempt) * 300 * time.Millisecond)
	}
	return fmt.Errorf("another socket on this machine holds %s's port (%s / %s), not a Croft failure: %w", c.id, c.httpAddr, c.raftAddr, err)
}

// status reads GET /cluster/status from exactly this coordinator.
func (cl *cluster) status(ctx context.Context, c *coord, digest bool) (client.ClusterStatus, error) {
	var st client.ClusterStatus
	path := "/cluster/status"
	if digest {
		path += "?digest=1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url()+path, nil)
	if err != nil {
		return st, err
	}
	req.Header.Set("Authorization", "Bearer "+cl.token)
	resp, err := cl.hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: %s: %s", c.id, resp.Status, body)
	}
	return st, json.Unmarshal(body, &st)
}

// leader returns the running coordinator that says it leads (the highest
// term wins if two do during an election), or nil.
func (cl *cluster) leader(ctx context.Context) *coord {
	var best *coord
	var term uint64
	for _, c := range cl.coords {
		if !c.running() {
			continue
		}
		st, err := cl.status(ctx, c, false)
		if err == nil && st.State == "Leader" && st.Term >= term {
			best, term = c, st.Term
		}
	}
	return best
}

// waitKnowsLeader polls c until it reports a leader, within d.
func (cl *cluster) waitKnowsLeader(ctx context.Context, c *coord, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		st, err := cl.status(ctx, c, false)
		if err == nil && st.LeaderID != "" && st.LeaderHTTP != "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s knows no leader after %v: %+v (%v)", c.id, d, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
