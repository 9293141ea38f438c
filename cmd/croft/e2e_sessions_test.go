package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/native"
)

// TestDevContextSessionRunsCodeInOrder opens a context session on the sh
// interpreter of croft dev's agent, submits two pieces of code and sees
// them run in order on that host: the first prints (with the session id
// the agent puts in CROFT_SESSION_ID), the second exits 3, which its runs
// and the session's jobs show.
func TestDevContextSessionRunsCodeInOrder(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dev := start(t, "dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	token := adminToken(t, data)

	// The agent registers its host and interpreters shortly after start.
	var s native.Session
	deadline := time.Now().Add(30 * time.Second)
	for {
		code := nativeCall(t, dev.url, token, http.MethodPost, native.PathSessions, `{"kind":"context","interpreter":"sh","name":"e2e"}`, &s)
		if code == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("open a context session on sh: %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s.Host == "" || s.Interpreter != "sh" || s.State != "open" {
		t.Fatalf("opened %+v", s)
	}
	path := native.PathSessions + "/" + s.ID + "/jobs"
	var first, second native.SessionJob
	if code := nativeCall(t, dev.url, token, http.MethodPost, path, `{"code":"sleep 0.3; echo one $CROFT_SESSION_ID","title":"first"}`, &first); code != http.StatusCreated {
		t.Fatalf("submit first: %d", code)
	}
	if code := nativeCall(t, dev.url, token, http.MethodPost, path, `{"code":"echo two; exit 3","title":"second"}`, &second); code != http.StatusCreated {
		t.Fatalf("submit second: %d", code)
	}
	a := waitNative(t, dev.url, token, first.ID, "finished")
	b := waitNative(t, dev.url, token, second.ID, "failed")
	if b.ExitCode == nil || *b.ExitCode != 3 {
		t.Fatalf("second job %+v", b)
	}
	// In order, one at a time: the second started after the first ended.
	if a.Ended == nil || b.Started == nil {
		t.Fatalf("times: first %+v, second %+v", a, b)
	}
	ended, err1 := time.Parse(time.RFC3339Nano, *a.Ended)
	started, err2 := time.Parse(time.RFC3339Nano, *b.Started)
	if err1 != nil || err2 != nil || started.Before(ended) {
		t.Fatalf("the second started at %s, the first ended at %s (%v %v)", *b.Started, *a.Ended, err1, err2)
	}
	if a.Worker == "" || !strings.HasPrefix(a.Worker, s.Host) || !strings.HasPrefix(b.Worker, s.Host) {
		t.Fatalf("ran on %q and %q, the session's host is %q", a.Worker, b.Worker, s.Host)
	}
	var runs []native.Run
	if code := nativeCall(t, dev.url, token, http.MethodGet, fmt.Sprintf("%s/%d/runs", native.PathJobs, second.ID), "", &runs); code != http.StatusOK ||
		len(runs) != 1 || runs[0].ExitCode == nil || *runs[0].ExitCode != 3 {
		t.Fatalf("runs of the second job: %d %+v", code, runs)
	}
	var log native.LogReply
	if code := nativeCall(t, dev.url, token, http.MethodGet, fmt.Sprintf("%s/%d/log?format=json", native.PathJobs, first.ID), "", &log); code != http.StatusOK {
		t.Fatalf("log: %d", code)
	}
	if len(log.Lines) == 0 || log.Lines[0].Text != "one "+s.ID+"\n" || log.Lines[0].Stream != "stdout" {
		t.Fatalf("log of the first job %+v", log)
	}
	var jobs []native.SessionJob
	if code := nativeCall(t, dev.url, token, http.MethodGet, path, "", &jobs); code != http.StatusOK || len(jobs) != 2 ||
		jobs[0].State != "finished" || jobs[1].State != "failed" || jobs[1].ExitCode == nil || *jobs[1].ExitCode != 3 {
		t.Fatalf("session jobs: %+v", jobs)
	}
}
