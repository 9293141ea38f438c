package native

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
)

// logFarm is an FSM applied to directly, served by the log route with
// access control on.
type logFarm struct {
	t     *testing.T
	mu    sync.Mutex
	fsm   *raftstore.FSM
	index uint64
	srv   *httptest.Server
}

func (f *logFarm) State() *raftstore.State { return f.fsm.State() }

func (f *logFarm) apply(cmd raftstore.Command) any {
	f.t.Helper()
	buf, err := raftstore.Encode(cmd)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.index++
	res := f.fsm.Apply(&raft.Log{Index: f.index, Type: raft.LogCommand, Data: buf})
	f.mu.Unlock()
	if err, ok := res.(error); ok {
		f.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

func newLogFarm(t *testing.T) *logFarm {
	fsm, err := raftstore.NewFSM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsm.Close() })
	f := &logFarm{t: t, fsm: fsm}
	for _, p := range []string{"a", "b"} {
		f.apply(&raftstore.ProjectCreate{Name: p})
	}
	for _, tok := range []raftstore.Token{
		{Name: "read-a", Role: raftstore.RoleRead, Projects: []string{"a"}},
	} {
		tok.ID, tok.Hash = "id-"+tok.Name, auth.Hash("secret-"+tok.Name)
		f.apply(&raftstore.TokenCreate{Token: tok})
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	a := auth.New(auth.Config{}, func() auth.Tokens { return f.State() }, nil)
	NewLog(f).Register(auth.Mount{Router: e, Auth: a, Abort: apierr.Abort})
	f.srv = httptest.NewServer(e)
	t.Cleanup(f.srv.Close)
	return f
}

// running creates a job in project p and starts an attempt on it.
func (f *logFarm) running(p string) *raftstore.Assignment {
	f.apply(&raftstore.JobCreate{Now: 1, Jobs: []raftstore.JobSpec{{Title: "t", Command: "c", Retry: 1, Project: p}}})
	return f.apply(&raftstore.Pick{Now: 2, Worker: "w-" + p}).(*raftstore.Assignment)
}

func (f *logFarm) get(path string) (int, string, http.Header) {
	f.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer secret-read-a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (f *logFarm) read(path string) LogReply {
	f.t.Helper()
	code, body, _ := f.get(path)
	if code != http.StatusOK {
		f.t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var r LogReply
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		f.t.Fatal(err)
	}
	return r
}

func texts(r LogReply) string {
	var b strings.Builder
	for _, l := range r.Lines {
		fmt.Fprintf(&b, "%d:%s:%d:%s", l.Number, l.Stream, l.Offset, l.Text)
	}
	return b.String()
}

func TestLogRangesOffsetsAndStreams(t *testing.T) {
	f := newLogFarm(t)
	a := f.running("a")
	f.apply(&raftstore.Report{Now: 3, Worker: "w-a", JobID: a.JobID, AttemptID: a.AttemptID,
		Log: []byte("one\ntwo\nthr"), Stderr: []byte("err\n")})
	path := fmt.Sprintf("/croft/v1/jobs/%d/log", a.JobID)

	r := f.read(path)
	// "thr" is open while the attempt runs... but stderr ended it.
	if got := texts(r); got != "1:stdout:0:one\n2:stdout:4:two\n3:stdout:8:thr4:stderr:11:err\n" || r.NextLine != 5 || r.NextOffset != 15 || r.Done {
		t.Fatalf("whole log: %q next %d/%d done %v", got, r.NextLine, r.NextOffset, r.Done)
	}
	if r := f.read(path + "?from_line=2&limit=1"); texts(r) != "2:stdout:4:two\n" || r.NextLine != 3 || r.NextOffset != 8 {
		t.Fatalf("range: %q %d %d", texts(r), r.NextLine, r.NextOffset)
	}
	if r := f.read(path + "?offset=5&limit=2"); texts(r) != "2:stdout:4:two\n3:stdout:8:thr" {
		t.Fatalf("offset: %q", texts(r))
	}
	if r := f.read(path + "?stream=stderr"); texts(r) != "4:stderr:11:err\n" || r.NextLine != 5 {
		t.Fatalf("stderr: %q", texts(r))
	}
	f.apply(&raftstore.Report{Now: 4, Worker: "w-a", JobID: a.JobID, AttemptID: a.AttemptID, LogOffset: 11, Log: []byte("open"), Done: true, ExitCode: 3})
	if r := f.read(path + "?from_line=5"); !strings.HasPrefix(texts(r), "5:stdout:15:open") || !r.Done {
		t.Fatalf("after the end: %q done %v", texts(r), r.Done)
	}
	code, body, h := f.get(path + "?format=text&limit=2")
	if code != http.StatusOK || body != "one\ntwo\n" || h.Get("X-Croft-Next-Line") != "3" || h.Get("X-Croft-Next-Offset") != "8" {
		t.Fatalf("text: %d %q %v", code, body, h)
	}
}

func TestLogOpenLineWaitsWhileRunning(t *testing.T) {
	f := newLogFarm(t)
	a := f.running("a")
	f.apply(&raftstore.Report{Now: 3, Worker: "w-a", JobID: a.JobID, AttemptID: a.AttemptID, Log: []byte("done\nhalf")})
	r := f.read(fmt.Sprintf("/croft/v1/jobs/%d/log", a.JobID))
	if texts(r) != "1:stdout:0:done\n" || r.NextLine != 2 || r.NextOffset != 5 {
		t.Fatalf("an open line was sent: %q %d %d", texts(r), r.NextLine, r.NextOffset)
	}
}

func TestLogFollowReturnsWhenALineArrives(t *testing.T) {
	f := newLogFarm(t)
	a := f.running("a")
	path := fmt.Sprintf("/croft/v1/jobs/%d/log?follow=true&wait=60s", a.JobID)
	got := make(chan LogReply)
	go func() {
		code, body, _ := f.get(path)
		var r LogReply
		if code == http.StatusOK {
			_ = json.Unmarshal([]byte(body), &r)
		}
		got <- r
	}()
	// The reader waits: no line yet. Apply until it has the line; a reader
	// that started after the apply sees it at once, one that started
	// before is woken by it.
	f.apply(&raftstore.Report{Now: 3, Worker: "w-a", JobID: a.JobID, AttemptID: a.AttemptID, Log: []byte("hello\n")})
	select {
	case r := <-got:
		if texts(r) != "1:stdout:0:hello\n" {
			t.Fatalf("follow got %q", texts(r))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("follow did not return once the line arrived")
	}
	// A follow at the end of a finished job's log returns at once, done.
	f.apply(&raftstore.Report{Now: 4, Worker: "w-a", JobID: a.JobID, AttemptID: a.AttemptID, LogOffset: 6, Done: true})
	if r := f.read(fmt.Sprintf("/croft/v1/jobs/%d/log?follow=true&from_line=3", a.JobID)); !r.Done {
		t.Fatalf("follow of a finished log: %+v", r)
	}
}

func TestLogBadRequestsAndAccess(t *testing.T) {
	f := newLogFarm(t)
	a := f.running("a")
	b := f.running("b")
	for _, q := range []string{"from_line=0", "from_line=x", "limit=0", "limit=10001", "offset=-1",
		"offset=1&from_line=1", "stream=stdin", "follow=maybe", "wait=2m", "wait=-1s", "format=xml"} {
		if code, body, _ := f.get(fmt.Sprintf("/croft/v1/jobs/%d/log?%s", a.JobID, q)); code != http.StatusBadRequest {
			t.Errorf("?%s: %d %s, want 400", q, code, body)
		}
	}
	if code, _, _ := f.get("/croft/v1/jobs/x/log"); code != http.StatusBadRequest {
		t.Errorf("bad id: %d", code)
	}
	if code, _, _ := f.get("/croft/v1/jobs/999/log"); code != http.StatusNotFound {
		t.Errorf("unknown job: %d", code)
	}
	if code, _, _ := f.get(fmt.Sprintf("/croft/v1/jobs/%d/log", b.JobID)); code != http.StatusForbidden {
		t.Errorf("another project's job: %d", code)
	}
}
