package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/internal/localcluster"
)

// The attacks of the security issue, each against a real croft process
// (`croft dev`: a coordinator and an agent, access control on by default).
// Each request must get a clear 4xx or 5xx, leave the state as it was where
// it is refused, and leave the process alive, its memory and disk bounded.

// attackFarm is a dev farm under attack and the tokens of its tenants.
type attackFarm struct {
	t       *testing.T
	dev     *proc
	dataDir string
	admin   *client.Client
	tokens  map[string]string // name -> secret
}

func newAttackFarm(t *testing.T, extra ...string) *attackFarm {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	args := append([]string{"dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--name", "w1"}, extra...)
	f := &attackFarm{t: t, dev: start(t, args...), dataDir: data, tokens: map[string]string{}}
	f.tokens["admin"] = adminToken(t, data)
	f.admin = f.as("admin")
	ctx := f.ctx()
	if err := f.admin.Do(ctx, http.MethodPost, client.PathProjects, client.ProjectRequest{Name: "b"}, nil); err != nil {
		t.Fatal(err)
	}
	for _, req := range []client.TokenRequest{
		{Name: "user", Role: "user", Projects: []string{"default"}},
		{Name: "reader", Role: "read", Projects: []string{"default"}},
		{Name: "agent-w2", Role: "agent", Projects: []string{"*"}, Workers: []string{"w2"}},
	} {
		var tok client.Token
		if err := f.admin.Do(ctx, http.MethodPost, client.PathTokens, req, &tok); err != nil {
			t.Fatal(err)
		}
		f.tokens[req.Name] = tok.Secret
	}
	// The farm's own agent registers once the farm is up: wait for it, so
	// its registration is not taken for a change an attack made.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ws, err := f.admin.Workers(ctx)
		if err == nil && len(ws) == 1 && ws[0].Name == "w1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dev agent did not register: %+v %v", ws, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return f
}

func (f *attackFarm) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	f.t.Cleanup(cancel)
	return ctx
}

func (f *attackFarm) as(name string) *client.Client {
	return client.NewWith(client.Options{Token: f.tokens[name]}, f.dev.url)
}

// send sends one raw request as the named token ("" for none) and returns
// the status and the start of the body.
func (f *attackFarm) send(token, method, path, contentType string, body io.Reader) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.dev.url+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+f.tokens[token])
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	return resp.StatusCode, string(b)
}

// expect sends a request and checks its status.
func (f *attackFarm) expect(want int, token, method, path, body string) string {
	f.t.Helper()
	ct := ""
	if strings.HasPrefix(path, "/workers/") {
		ct = "application/x-www-form-urlencoded"
	}
	code, out := f.send(token, method, path, ct, strings.NewReader(body))
	if code != want {
		f.t.Fatalf("%s %s %.80s as %q: %d %s, want %d", method, path, body, token, code, out, want)
	}
	return out
}

// digest is the state's hash: equal before and after means unchanged.
func (f *attackFarm) digest() string {
	f.t.Helper()
	var st client.ClusterStatus
	if err := f.admin.Do(f.ctx(), http.MethodGet, "/cluster/status?digest=1", nil, &st); err != nil {
		f.t.Fatalf("the farm does not answer: %v\n%s", err, f.dev.stderr())
	}
	return st.Digest
}

// unchanged runs attack and checks that the state is as it was and the
// process still answers.
func (f *attackFarm) unchanged(what string, attack func()) {
	f.t.Helper()
	before := f.digest()
	attack()
	if after := f.digest(); after != before {
		f.t.Fatalf("%s changed the state", what)
	}
}

// rss is the dev process's resident memory in bytes.
func (f *attackFarm) rss() int64 {
	_, rss, err := localcluster.ProcStats(f.dev.cmd.Process.Pid)
	if err != nil {
		f.t.Fatal(err)
	}
	return rss
}

// dirSize is the bytes of the files under dir.
func dirSize(t *testing.T, dir string) int64 {
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *attackFarm) create(c *client.Client, j client.NewJob) int64 {
	f.t.Helper()
	id, err := c.CreateJob(f.ctx(), j)
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

func TestAdversarial(t *testing.T) {
	f := newAttackFarm(t, "--max-job-output", strconv.Itoa(1<<20))
	user := f.as("user")
	ids := func(ids ...int64) []string {
		out := make([]string, len(ids))
		for i, id := range ids {
			out[i] = strconv.FormatInt(id, 10)
		}
		return out
	}

	t.Run("poison entry", func(t *testing.T) {
		// Two groups made each other's parent in one edit: a parent cycle
		// that overflowed the stack of every replica, for good.
		g := ids(f.create(user, client.NewJob{Title: "g1"}), f.create(user, client.NewJob{Title: "g2"}))
		f.unchanged("a parent cycle", func() {
			f.expect(400, "user", "POST", "/api/jobs", fmt.Sprintf(`{"%s":{"parent":%s},"%s":{"parent":%s}}`, g[0], g[1], g[1], g[0]))
		})
		j := ids(f.create(user, client.NewJob{Title: "j1", Command: "true", State: "PAUSED"}), f.create(user, client.NewJob{Title: "j2", Command: "true", State: "PAUSED"}))
		f.unchanged("a dependency cycle", func() {
			f.expect(400, "user", "POST", "/api/jobs", fmt.Sprintf(`{"%s":{"dependencies":[%s]},"%s":{"dependencies":[%s]}}`, j[0], j[1], j[1], j[0]))
		})
	})

	t.Run("quorum theft", func(t *testing.T) {
		join := `{"node_id":"evil","raft_addr":"127.0.0.1:1","http_addr":"127.0.0.1:2"}`
		f.unchanged("an anonymous join", func() { f.expect(401, "", "POST", "/cluster/join", join) })
		f.unchanged("a user's join", func() { f.expect(403, "user", "POST", "/cluster/join", join) })
		// Even an admin's mistake costs nothing: a non-voter that never
		// catches up is never promoted.
		f.expect(200, "admin", "POST", "/cluster/join", join)
		st, err := f.admin.Status(f.ctx(), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st.Members {
			if m.ID == "evil" && m.Suffrage == "Voter" {
				t.Fatalf("an unreachable node became a voter: %+v", st.Members)
			}
		}
		f.create(user, client.NewJob{Title: "after the join", State: "PAUSED"})
		f.expect(200, "admin", "POST", "/cluster/remove", `{"node_id":"evil"}`)
	})

	t.Run("no access without a token or with the wrong one", func(t *testing.T) {
		f.unchanged("anonymous requests", func() {
			for _, r := range []struct{ method, path, body string }{
				{"PUT", "/api/jobs", `{"title":"x","command":"id"}`},
				{"GET", "/api/jobs", ""},
				{"GET", "/api/events?howlong=3600", ""},
				{"POST", "/workers/pickjob", "hostname=evil"},
				{"POST", "/croft/v1/agent/register", `{"name":"evil"}`},
				{"POST", "/cluster/snapshot", ""},
				{"POST", "/cluster/remove", `{"node_id":"w1"}`},
				{"POST", "/croft/v1/tokens", `{"name":"mine","role":"admin"}`},
			} {
				f.expect(401, "", r.method, r.path, r.body)
			}
		})
		// A reader sees environment names, never their values.
		id := f.create(user, client.NewJob{Title: "secret env", Command: "true", Environment: "API_KEY=hunter2", State: "PAUSED"})
		if out := f.expect(200, "reader", "GET", "/api/jobs/"+ids(id)[0], ""); strings.Contains(out, "hunter2") {
			t.Fatalf("a read token sees the secret: %s", out)
		}
		f.unchanged("wrong roles", func() {
			f.expect(403, "reader", "PUT", "/api/jobs", `{"title":"x","command":"id"}`)
			f.expect(403, "user", "POST", "/cluster/snapshot", "")
			f.expect(403, "user", "POST", "/croft/v1/agent/register", `{"name":"w1"}`)
			f.expect(403, "agent-w2", "POST", "/croft/v1/agent/register", `{"name":"w1"}`)
			f.expect(403, "agent-w2", "GET", "/api/jobs", "")
			f.expect(403, "user", "PUT", "/api/jobs", `{"title":"x","project":"b"}`)
		})
		// A forged report for the running attempt of another worker, its
		// id read from the events: refused, the job untouched.
		run := f.create(user, client.NewJob{Title: "victim", Command: "sleep 30"})
		j := waitJob(t, f.admin, run, "WORKING")
		var evs []client.Event
		if err := f.admin.Do(f.ctx(), http.MethodGet, "/api/events?howlong=3600&job="+ids(run)[0], nil, &evs); err != nil || len(evs) == 0 {
			t.Fatalf("events %+v %v", evs, err)
		}
		attempt := evs[len(evs)-1].ID
		f.unchanged("forged reports", func() {
			for _, who := range []string{"agent-w2", "user"} {
				body := fmt.Sprintf(`{"name":"%s","job_id":%d,"attempt_id":%d,"log_offset":0,"log":"cHduZWQ=","done":true,"exit_code":1}`, j.Worker, run, attempt)
				f.expect(403, who, "POST", "/croft/v1/agent/report", body)
			}
			f.expect(403, "agent-w2", "POST", "/workers/endjob", fmt.Sprintf("hostname=%s&jobId=%d&errorCode=1", j.Worker, run))
		})
		if err := f.admin.Do(f.ctx(), http.MethodDelete, "/api/jobs", []int64{run}, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("where clauses are bounded", func(t *testing.T) {
		f.create(user, client.NewJob{Title: strings.Repeat("t", 4<<10), State: "PAUSED"})
		before := f.rss()
		concat := "length(title" + strings.Repeat("||title", 400) + ")>0"
		code, out := f.send("user", "GET", "/api/jobs/where/?where_clause="+url.QueryEscape(concat), "", nil)
		if code != 413 {
			t.Fatalf("a clause that builds huge strings: %d %.200s, want 413", code, out)
		}
		like := "title LIKE '%" + strings.Repeat("a", 1000) + " b'"
		if code, out := f.send("user", "GET", "/api/jobs/count/where/?where_clause="+url.QueryEscape(like), "", nil); code != 400 {
			t.Fatalf("a 1000-character LIKE pattern: %d %.200s", code, out)
		}
		if grown := f.rss() - before; grown > 256<<20 {
			t.Fatalf("the coordinator grew %d MiB answering where clauses", grown>>20)
		}
	})

	t.Run("output is capped before Raft", func(t *testing.T) {
		// 16 MiB of output against a 1 MiB cap: the log stops at the cap,
		// the job runs to its end, the Raft log does not take the rest.
		id := f.create(user, client.NewJob{Title: "chatty", Command: "head -c 16777216 /dev/zero | tr '\\0' 'x'; echo; echo done"})
		waitJob(t, f.admin, id, "FINISHED")
		log, err := f.admin.Log(f.ctx(), id)
		if err != nil || len(log) > 1<<20+200 || !strings.Contains(log, "truncated at 1048576 bytes") {
			t.Fatalf("log of %d bytes, %v", len(log), err)
		}
		if n := dirSize(t, f.dataDir); n > 64<<20 {
			t.Fatalf("the data directory holds %d MiB after a 16 MiB output capped at 1 MiB", n>>20)
		}
	})

	t.Run("smaller holes", func(t *testing.T) {
		f.unchanged("bad fields", func() {
			f.expect(400, "user", "PUT", "/api/jobs", `{"title":"x","command":"true","timeout":9223372037}`)
			f.expect(400, "user", "PUT", "/api/jobs", `{"title":"x","command":"echo \u0000"}`)
			f.expect(400, "user", "PUT", "/api/jobs", `{"title":"x","command":"true","environment":"A=\u0000"}`)
			f.expect(413, "user", "PUT", "/api/jobs", `{"title":"`+strings.Repeat("t", 10<<20)+`"}`)
			f.expect(413, "user", "PUT", "/api/jobs", `{"title":"x","affinity":"`+strings.Repeat("a", 1<<20)+`"}`)
			f.expect(413, "admin", "POST", "/workers/pickjob", "hostname="+strings.Repeat("h", 1<<20))
			kids := `{"title":"x"},`
			f.expect(413, "user", "PUT", "/api/jobs", `{"title":"g","children":[`+strings.Repeat(kids, 999_998)+`{"title":"x"}]}`)
		})
		// A 100 MB body is refused by its length, before it is read.
		conn, err := net.Dial("tcp", strings.TrimPrefix(f.dev.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "PUT /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", f.tokens["user"], 100<<20)
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		status, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || !strings.Contains(status, " 413 ") {
			t.Fatalf("a 100 MB body: %q %v", status, err)
		}
		// Deleting a job deletes its events.
		id := f.create(user, client.NewJob{Title: "short", Command: "echo marker-$((6*7))"})
		waitJob(t, f.admin, id, "FINISHED")
		if err := f.admin.Do(f.ctx(), http.MethodDelete, "/api/jobs", []int64{id}, nil); err != nil {
			t.Fatal(err)
		}
		var evs []client.Event
		if err := f.admin.Do(f.ctx(), http.MethodGet, "/api/events?howlong=3600&job="+ids(id)[0], nil, &evs); err != nil || len(evs) != 0 {
			t.Fatalf("events of a deleted job: %+v %v", evs, err)
		}
		// Commands are not logged at INFO: the process's log never shows
		// one (nor any token in it).
		if strings.Contains(f.dev.stderr(), "marker-$((6*7))") {
			t.Fatalf("a command appears in the log:\n%s", f.dev.stderr())
		}
	})

	t.Run("connections pile up", func(t *testing.T) {
		// 1,500 connections from another address (all of 127/8 is this
		// host): idle keep-alives and requests whose body never comes.
		// The farm's agent (on 127.0.0.1) still gets and runs a job.
		host := strings.TrimPrefix(f.dev.url, "http://")
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 2 * time.Second}
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := range 1500 {
			c, err := d.Dial("tcp", host)
			if err != nil {
				break // refused: the address is over its cap
			}
			conns = append(conns, c)
			if i%2 == 0 {
				fmt.Fprintf(c, "PUT /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n{", f.tokens["user"])
			}
		}
		id := f.create(user, client.NewJob{Title: "through the flood", Command: "echo fine"})
		waitJob(t, f.admin, id, "FINISHED")
	})

	if rss := f.rss(); rss > 512<<20 {
		t.Fatalf("the dev farm ends the attacks with %d MiB resident", rss>>20)
	}
	f.digest() // still alive
}
