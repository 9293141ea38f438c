package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sasCall is one request as saspy's HTTP mode sends it (Authorization:
// Bearer, its Accept and Content-Type), answering the status, the
// headers and the body.
func sasCall(t *testing.T, url, token, method, path, body string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if body != "" {
		req.Header.Set("Content-Type", "application/vnd.sas.compute.job.request+json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// sasLink is a link as saspy reads it: by rel and method.
type sasLink struct {
	Method string `json:"method"`
	Rel    string `json:"rel"`
	Href   string `json:"href"`
	URI    string `json:"uri"`
}

func linkOf(t *testing.T, links []sasLink, method, rel string) string {
	t.Helper()
	for _, l := range links {
		if l.Method == method && l.Rel == rel {
			if l.Href != l.URI || !strings.HasPrefix(l.Href, "/compute/") {
				t.Fatalf("link %+v: href must equal uri, root-relative under /compute", l)
			}
			return l.Href
		}
	}
	t.Fatalf("no %s link %q in %+v", method, rel, links)
	return ""
}

// TestDevSASSaspySequence performs saspy's HTTP-mode sequence against croft
// dev, the code run by the dev agent with the sh context: list contexts,
// follow createSession, read the session's links, post jobs as code
// lines, poll each job's state with ?wait= and the first ETag, page the
// log until an empty page, ask the results with includeTypes=ODS, HEAD
// the USER libref, cancel a sleeping job with a stale If-Match, and
// delete the session (204, then 404).
func TestDevSASSaspySequence(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dev := start(t, "dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	token := adminToken(t, data)
	call := func(method, path, body string, hdr map[string]string) (int, http.Header, []byte) {
		return sasCall(t, dev.url, token, method, path, body, hdr)
	}

	// Contexts: the agent advertises its interpreters shortly after start.
	type context struct {
		ID    string    `json:"id"`
		Name  string    `json:"name"`
		Links []sasLink `json:"links"`
	}
	var ctx *context
	deadline := time.Now().Add(30 * time.Second)
	for ctx == nil {
		code, _, body := call(http.MethodGet, "/compute/contexts?limit=999999", "", nil)
		var coll struct {
			Items []context `json:"items"`
			Count int       `json:"count"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &coll) != nil {
			t.Fatalf("contexts: %d %s", code, body)
		}
		for i := range coll.Items {
			if coll.Items[i].Name == "sh" {
				ctx = &coll.Items[i]
			}
		}
		if ctx == nil {
			if time.Now().After(deadline) {
				t.Fatalf("no sh context in time: %s", body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	create := linkOf(t, ctx.Links, http.MethodPost, "createSession")
	code, hdr, body := call(http.MethodPost, create, `{"name":"saspy","attributes":{"sessionInactiveTimeout":600}}`, nil)
	var sess struct {
		ID         string         `json:"id"`
		State      string         `json:"state"`
		Owner      string         `json:"owner"`
		Attributes map[string]any `json:"attributes"`
		Links      []sasLink      `json:"links"`
	}
	if code != http.StatusCreated || json.Unmarshal(body, &sess) != nil || !strings.HasSuffix(sess.ID, "-ses0000") ||
		hdr.Get("Location") != "/compute/sessions/"+sess.ID || hdr.Get("ETag") == "" || sess.Attributes["sessionInactiveTimeout"] != float64(600) {
		t.Fatalf("create session: %d %v %s", code, hdr, body)
	}
	execute := linkOf(t, sess.Links, http.MethodPost, "execute")
	sessLog := linkOf(t, sess.Links, http.MethodGet, "log")
	linkOf(t, sess.Links, http.MethodGet, "listing")
	linkOf(t, sess.Links, http.MethodGet, "results")
	linkOf(t, sess.Links, http.MethodGet, "state")
	linkOf(t, sess.Links, http.MethodPut, "cancel")
	del := linkOf(t, sess.Links, http.MethodDelete, "delete")
	linkOf(t, sess.Links, http.MethodGet, "files")

	type job struct {
		ID    string    `json:"id"`
		State string    `json:"state"`
		Links []sasLink `json:"links"`
	}
	// submit posts code lines and waits as saspy does: the state with the
	// first ETag, then ?wait=1 with If-None-Match, until it is terminal.
	submit := func(lines ...string) job {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"code": lines})
		code, hdr, body := call(http.MethodPost, execute, string(b), nil)
		var j job
		if code != http.StatusCreated || json.Unmarshal(body, &j) != nil || hdr.Get("Location") == "" || hdr.Get("ETag") == "" {
			t.Fatalf("submit %q: %d %v %s", lines, code, hdr, body)
		}
		state := linkOf(t, j.Links, http.MethodGet, "state")
		code, hdr, body = call(http.MethodGet, state, "", map[string]string{"Accept": "text/plain"})
		etag := hdr.Get("ETag")
		if code != http.StatusOK || etag == "" || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
			t.Fatalf("job state: %d %v %s", code, hdr, body)
		}
		deadline := time.Now().Add(60 * time.Second)
		for s := string(body); s == "pending" || s == "running"; {
			if time.Now().After(deadline) {
				t.Fatalf("job %s still %s", j.ID, s)
			}
			code, _, body = call(http.MethodGet, state+"?wait=1", "", map[string]string{"Accept": "text/plain", "If-None-Match": etag})
			if code != http.StatusOK && code != http.StatusNotModified {
				t.Fatalf("job state wait: %d %s", code, body)
			}
			if code == http.StatusOK {
				s = string(body)
			}
		}
		j.State = string(body)
		return j
	}
	// saspy's start-up: an empty program, then SAS options (an error in sh).
	if j := submit("\n"); j.State != "completed" {
		t.Fatalf("empty code: %+v", j)
	}
	if j := submit("options svgtitle='svgtitle';"); j.State != "error" {
		t.Fatalf("SAS options in sh: %+v", j)
	}
	// Two jobs in order: the second sees the first's file.
	first := submit("echo one > " + filepath.Join(dir, "f"))
	second := submit("cat "+filepath.Join(dir, "f"), "echo two")
	if first.State != "completed" || second.State != "completed" {
		t.Fatalf("jobs: %+v %+v", first, second)
	}
	// Page the job's log as saspy does, until an empty page.
	var lines []string
	jobLog := linkOf(t, second.Links, http.MethodGet, "log")
	for start := 0; ; {
		code, _, body := call(http.MethodGet, jobLog+"?start="+itoa(start)+"&limit=1", "", nil)
		var page struct {
			Items []struct {
				Line string `json:"line"`
				Type string `json:"type"`
			} `json:"items"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &page) != nil {
			t.Fatalf("log page: %d %s", code, body)
		}
		if len(page.Items) == 0 {
			break
		}
		for _, it := range page.Items {
			if it.Type == "normal" {
				lines = append(lines, it.Line)
			}
		}
		start += len(page.Items)
		if start > 100 {
			t.Fatalf("the log never ends: %q", lines)
		}
	}
	if strings.Join(lines, ",") != "one,two" {
		t.Fatalf("log lines %q", lines)
	}
	// The session's log holds its jobs' lines in order.
	code, _, body = call(http.MethodGet, sessLog+"?start=0&limit=1000", "", map[string]string{"Accept": "text/plain"})
	if code != http.StatusOK || !strings.Contains(string(body), "one\ntwo\n") {
		t.Fatalf("session log: %d %s", code, body)
	}
	results := linkOf(t, second.Links, http.MethodGet, "results")
	if code, _, body := call(http.MethodGet, results+"?includeTypes=ODS", "", nil); code != http.StatusOK || !strings.Contains(string(body), `"items":[]`) {
		t.Fatalf("results: %d %s", code, body)
	}
	if code, _, _ := call(http.MethodHead, "/compute/sessions/"+sess.ID+"/data/USER", "", nil); code != http.StatusOK {
		t.Fatalf("HEAD data/USER: %d", code)
	}
	// Cancel a sleeping job with the ETag of its first state read (stale).
	b, _ := json.Marshal(map[string]any{"code": []string{"sleep 60"}})
	code, _, body = call(http.MethodPost, execute, string(b), nil)
	var sleeper job
	if code != http.StatusCreated || json.Unmarshal(body, &sleeper) != nil {
		t.Fatalf("submit sleep: %d %s", code, body)
	}
	state := linkOf(t, sleeper.Links, http.MethodGet, "state")
	_, hdr, _ = call(http.MethodGet, state, "", map[string]string{"Accept": "text/plain"})
	first0 := hdr.Get("ETag")
	for deadline := time.Now().Add(30 * time.Second); ; { // until it runs
		_, _, body := call(http.MethodGet, state, "", nil)
		if string(body) == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep never ran: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel := linkOf(t, sleeper.Links, http.MethodPut, "cancel")
	if code, _, body := call(http.MethodPut, cancel, "", map[string]string{"If-Match": first0}); code != http.StatusOK || string(body) != "canceled" {
		t.Fatalf("cancel: %d %s", code, body)
	}
	if code, _, _ := call(http.MethodDelete, del, "", nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	code, _, body = call(http.MethodGet, "/compute/sessions/"+sess.ID, "", nil)
	if code != http.StatusNotFound || !strings.Contains(string(body), `"errorCode":5837`) {
		t.Fatalf("after delete: %d %s", code, body)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
