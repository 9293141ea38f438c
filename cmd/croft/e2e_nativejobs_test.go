package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/native"
)

// nativeCall sends one request to a native route with the admin token
// and decodes the reply into out; it returns the status.
func nativeCall(t *testing.T, url, token, method, path, body string, out any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

// waitNative polls GET /croft/v1/jobs/{id} until the job is in state want.
func waitNative(t *testing.T, url, token string, id int64, want string) native.JobView {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var v native.JobView
		code := nativeCall(t, url, token, http.MethodGet, fmt.Sprintf("%s/%d", native.PathJobs, id), "", &v)
		if code == http.StatusOK && v.State == want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d not %s in time: %d %+v", id, want, code, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDevNativeJobRoutes submits through POST /croft/v1/jobs on croft dev,
// sees the job finish with exit code 0 through GET, and cancels a
// sleeping one.
func TestDevNativeJobRoutes(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dev := start(t, "dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	token := adminToken(t, data)

	var created native.CreateReply
	if code := nativeCall(t, dev.url, token, http.MethodPost, native.PathJobs,
		`{"title":"hello","command":"test \"$GREETING\" = hi","env":{"GREETING":"hi"}}`, &created); code != http.StatusCreated || len(created.IDs) != 1 {
		t.Fatalf("create: %d %+v", code, created)
	}
	v := waitNative(t, dev.url, token, created.IDs[0], "finished")
	if v.ExitCode == nil || *v.ExitCode != 0 || v.Progress != 1 || v.Tries != 1 || v.Ended == nil || v.Worker == "" || v.Env["GREETING"] != "hi" {
		t.Fatalf("finished job %+v", v)
	}

	if code := nativeCall(t, dev.url, token, http.MethodPost, native.PathJobs, `{"title":"sleeper","command":"sleep 600"}`, &created); code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	id := created.IDs[0]
	waitNative(t, dev.url, token, id, "running")
	if code := nativeCall(t, dev.url, token, http.MethodPost, fmt.Sprintf("%s/%d/cancel", native.PathJobs, id), "", &v); code != http.StatusOK || v.State != "canceled" {
		t.Fatalf("cancel: %d %+v", code, v)
	}
	v = waitNative(t, dev.url, token, id, "canceled")
	if v.Reason == nil || *v.Reason != "canceled" || v.ExitCode != nil {
		t.Fatalf("canceled job %+v", v)
	}
	var list []native.JobView
	if code := nativeCall(t, dev.url, token, http.MethodGet, native.PathJobs+"?state=canceled", "", &list); code != http.StatusOK || len(list) != 1 || list[0].ID != id {
		t.Fatalf("canceled jobs: %d %+v", code, list)
	}
	dev.stop()
}
