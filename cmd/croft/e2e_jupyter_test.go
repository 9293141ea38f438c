package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/jupyter"
	"github.com/croftfarm/croft/api/native"
)

// TestDevJupyterSessionRunsCode opens a Jupyter-style session on croft
// dev's `sh` kernel, runs code in it on the dev agent and reads its output
// through the job's log; a second create with the same path returns the
// same session, and a delete answers 204.
func TestDevJupyterSessionRunsCode(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dev := start(t, "dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	token := adminToken(t, data)

	body := `{"path":"work/a.ipynb","name":"a.ipynb","type":"notebook","kernel":{"name":"sh"}}`
	var s jupyter.Session
	deadline := time.Now().Add(30 * time.Second)
	for { // the agent advertises its interpreters shortly after start
		if code := nativeCall(t, dev.url, token, http.MethodPost, "/api/sessions", body, &s); code == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no sh kernel in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(s.ID) != 36 || s.Kernel.Name != "sh" || s.Kernel.ID == "" || s.Path != "work/a.ipynb" {
		t.Fatalf("session %+v", s)
	}
	var again jupyter.Session
	if code := nativeCall(t, dev.url, token, http.MethodPost, "/api/sessions", body, &again); code != http.StatusCreated || again.ID != s.ID {
		t.Fatalf("the same path gave %d %+v, want session %s", code, again, s.ID)
	}
	var job jupyter.Job
	if code := nativeCall(t, dev.url, token, http.MethodPost, "/api/sessions/"+s.ID+"/jobs", `{"code":"echo from-kernel"}`, &job); code != http.StatusCreated || job.ID == 0 {
		t.Fatalf("run code: %d %+v", code, job)
	}
	waitNative(t, dev.url, token, job.ID, "finished")
	var log native.LogReply
	if code := nativeCall(t, dev.url, token, http.MethodGet, fmt.Sprintf("%s/%d/log?format=json", native.PathJobs, job.ID), "", &log); code != http.StatusOK ||
		len(log.Lines) == 0 || log.Lines[0].Text != "from-kernel\n" {
		t.Fatalf("log %d %+v", code, log)
	}
	if code := nativeCall(t, dev.url, token, http.MethodDelete, "/api/sessions/"+s.ID, "", nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code := nativeCall(t, dev.url, token, http.MethodGet, "/api/sessions/"+s.ID, "", nil); code != http.StatusNotFound {
		t.Fatalf("get after delete: %d", code)
	}
}
