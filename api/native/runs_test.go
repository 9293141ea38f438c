package native

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
)

// runsStore applies commands straight to an FSM: the routes are tested
// without Raft (the coordinator tests cover the replicated path).
type runsStore struct {
	mu    sync.Mutex
	fsm   *raftstore.FSM
	index uint64
}

func (s *runsStore) apply(t *testing.T, cmd raftstore.Command) any {
	t.Helper()
	buf, err := raftstore.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.index++
	res := s.fsm.Apply(&raft.Log{Index: s.index, Type: raft.LogCommand, Data: buf})
	s.mu.Unlock()
	if err, ok := res.(error); ok {
		t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

func (s *runsStore) State() *raftstore.State { return s.fsm.State() }

// runsFarm serves the native routes with access control, projects a and b and
// a token per role; now is the leader's clock the commands are stamped with.
type runsFarm struct {
	t     *testing.T
	srv   *httptest.Server
	store *runsStore
	now   time.Time
}

func newRunsFarm(t *testing.T) *runsFarm {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	fsm, err := raftstore.NewFSM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsm.Close() })
	st := &runsStore{fsm: fsm}
	f := &runsFarm{t: t, store: st, now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	st.apply(t, &raftstore.SetRelease{Release: raftstore.Release}) // as a leader does first
	for _, p := range []string{"a", "b"} {
		st.apply(t, &raftstore.ProjectCreate{Name: p})
	}
	for _, tok := range []raftstore.Token{
		{Name: "admin", Role: raftstore.RoleAdmin},
		{Name: "read-a", Role: raftstore.RoleRead, Projects: []string{"a"}},
		{Name: "agent", Role: raftstore.RoleAgent, Projects: []string{"*"}},
	} {
		tok.ID, tok.Hash = "id-"+tok.Name, auth.Hash("secret-"+tok.Name)
		st.apply(t, &raftstore.TokenCreate{Token: tok})
	}
	a := auth.New(auth.Config{}, func() auth.Tokens { return st.State() }, nil)
	h := New(st)
	h.now = func() time.Time { return f.now }
	h.Register(auth.Mount{Router: e, Auth: a})
	f.srv = httptest.NewServer(e)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *runsFarm) ns() int64 { return f.now.UnixNano() }

// as sends a GET with a token (by name; "" sends none).
func (f *runsFarm) as(token, path string) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer secret-"+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *runsFarm) runs(token, path string) []Run {
	f.t.Helper()
	code, body := f.as(token, path)
	if code != http.StatusOK {
		f.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var out []Run
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		f.t.Fatalf("GET %s: %q: %v", path, body, err)
	}
	return out
}

func (f *runsFarm) pick(worker string) *raftstore.Assignment {
	f.t.Helper()
	return f.store.apply(f.t, &raftstore.Pick{Now: f.ns(), Worker: worker}).(*raftstore.Assignment)
}

func runsPath(id int64) string { return Prefix + "/jobs/" + strconv.FormatInt(id, 10) + "/runs" }

func TestRunsRouteShowsEachTry(t *testing.T) {
	f := newRunsFarm(t)
	ids := f.store.apply(t, &raftstore.JobCreate{Now: f.ns(), Jobs: []raftstore.JobSpec{
		{Title: "frame", Command: "render", Retry: 3, Timeout: 60, Project: "a"},
	}}).([]int64)
	id := ids[0]

	a := f.pick("w1")
	f.now = f.now.Add(1500 * time.Millisecond)
	f.store.apply(t, &raftstore.Report{Now: f.ns(), Worker: "w1", AttemptID: a.AttemptID, Done: true, ExitCode: 3})
	b := f.pick("w2")
	f.now = f.now.Add(2 * time.Second)
	f.store.apply(t, &raftstore.Report{Now: f.ns(), Worker: "w2", AttemptID: b.AttemptID, Done: true, ExitCode: 137, Signal: 9})
	c := f.pick("w1")
	f.now = f.now.Add(61 * time.Second)
	f.store.apply(t, &raftstore.JobTimeout{Now: f.ns(), Attempts: []int64{c.AttemptID}})
	f.store.apply(t, &raftstore.JobAction{Now: f.ns(), Action: raftstore.ActionReset, IDs: []int64{id}})
	p := 0.25
	d := f.pick("w2")
	f.store.apply(t, &raftstore.Report{Now: f.ns(), Worker: "w2", AttemptID: d.AttemptID, Progress: &p})
	f.now = f.now.Add(time.Second)

	got := f.runs("read-a", runsPath(id))
	if len(got) != 4 {
		t.Fatalf("%d runs: %+v", len(got), got)
	}
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, want := range []struct {
		attempt  int64
		worker   string
		state    string
		start    time.Time
		end      string
		ms       int64
		exit     *int
		signal   int
		reason   string
		progress float64
	}{
		{a.AttemptID, "w1", raftstore.StateFailed, start, "2025-03-01T12:00:01.5Z", 1500, intp(3), 0, "", 0},
		{b.AttemptID, "w2", raftstore.StateFailed, start.Add(1500 * time.Millisecond), "2025-03-01T12:00:03.5Z", 2000, intp(137), 9, "", 0},
		{c.AttemptID, "w1", raftstore.StateFailed, start.Add(3500 * time.Millisecond), "2025-03-01T12:01:04.5Z", 61000, nil, 0, raftstore.ReasonTimeout, 0},
		{d.AttemptID, "w2", raftstore.StateRunning, start.Add(64500 * time.Millisecond), "", 1000, nil, 0, "", 0.25},
	} {
		r := got[i]
		end := ""
		if r.End != nil {
			end = *r.End
		}
		if r.Try != i+1 || r.AttemptID != want.attempt || r.JobID != id || r.Project != "a" || r.Worker != want.worker ||
			r.State != want.state || r.Start != want.start.Format(time.RFC3339Nano) || end != want.end || r.DurationMS != want.ms ||
			!sameInt(r.ExitCode, want.exit) || r.Signal != want.signal || r.Reason != want.reason || r.Progress != want.progress {
			t.Errorf("run %d = %+v (end %q), want %+v", i, r, end, want)
		}
	}

	// The reply's names, as documented.
	_, body := f.as("read-a", runsPath(id)+"?limit=1")
	var raw []map[string]any
	if err := json.Unmarshal([]byte(body), &raw); err != nil || len(raw) != 1 {
		t.Fatalf("raw reply %q %v", body, err)
	}
	for _, k := range []string{"try", "attempt_id", "job_id", "project", "worker", "state", "start", "end", "duration_ms", "exit_code", "signal", "reason", "progress"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("reply lacks %q: %s", k, body)
		}
	}

	// Paged in try order.
	if page := f.runs("admin", runsPath(id)+"?offset=1&limit=2"); len(page) != 2 || page[0].Try != 2 || page[1].Try != 3 {
		t.Fatalf("page %+v", page)
	}
	if page := f.runs("admin", runsPath(id)+"?offset=9"); len(page) != 0 {
		t.Fatalf("page past the end %+v", page)
	}
}

func TestRunsRouteRefusals(t *testing.T) {
	f := newRunsFarm(t)
	ids := f.store.apply(t, &raftstore.JobCreate{Now: f.ns(), Jobs: []raftstore.JobSpec{
		{Command: "a", Project: "a"}, {Command: "b", Project: "b"},
	}}).([]int64)
	for _, c := range []struct {
		token, path string
		want        int
	}{
		{"", runsPath(ids[0]), http.StatusUnauthorized},
		{"agent", runsPath(ids[0]), http.StatusForbidden}, // an agent token reads no jobs
		{"read-a", runsPath(ids[1]), http.StatusForbidden},
		{"read-a", runsPath(999), http.StatusNotFound},
		{"admin", runsPath(999), http.StatusNotFound},
		{"admin", Prefix + "/jobs/abc/runs", http.StatusBadRequest},
		{"admin", Prefix + "/jobs/0/runs", http.StatusBadRequest},
		{"admin", Prefix + "/jobs/-3/runs", http.StatusBadRequest},
		{"admin", Prefix + "/jobs/99999999999999999999/runs", http.StatusBadRequest},
		{"admin", runsPath(ids[0]) + "?limit=-1", http.StatusBadRequest},
		{"admin", runsPath(ids[0]) + "?offset=x", http.StatusBadRequest},
	} {
		if code, body := f.as(c.token, c.path); code != c.want {
			t.Errorf("GET %s as %q: %d %s, want %d", c.path, c.token, code, body, c.want)
		} else if code != http.StatusOK && !strings.Contains(body, `"error"`) {
			t.Errorf("GET %s as %q: body %q has no error", c.path, c.token, body)
		}
	}
	if got := f.runs("admin", runsPath(ids[1])); len(got) != 0 {
		t.Fatalf("runs of a job never started: %+v", got)
	}
}

func intp(v int) *int { return &v }

func sameInt(a, b *int) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
