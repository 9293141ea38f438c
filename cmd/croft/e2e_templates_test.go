package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// waitExecution polls until execution id ended.
func waitExecution(t *testing.T, c *client.Client, id string) client.Execution {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e, err := c.GetExecution(ctx, id)
		cancel()
		if err == nil && e.Ended {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("execution %s did not end in time: %+v (err %v)", id, e, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDevRunsATemplate runs croft dev: a Shell template whose inline main
// script echoes its arguments and exits with $CODE runs on the dev agent;
// its execution ends finished with return code 0, one executed with
// CODE=3 ends failed with return code 3; the template cannot be deleted
// until its executions are.
func TestDevRunsATemplate(t *testing.T) {
	dir := t.TempDir()
	dev := start(t, "dev", "--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	c := adminClient(t, filepath.Join(dir, "data"), dev.url)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tmpl, err := c.CreateTemplate(ctx, client.TemplateRequest{Name: "echo", Type: "Shell", Command: "sh -c {main} sh {args}",
		Main: `echo "args: $*"; exit "${CODE:-0}"`, Defaults: client.TemplateDefaults{Retry: 1, Env: map[string]string{"CODE": "0"}}})
	if err != nil {
		t.Fatal(err)
	}
	ok, err := c.Execute(ctx, tmpl.ID, client.ExecuteRequest{Args: []string{"hello world", "it's"}})
	if err != nil {
		t.Fatal(err)
	}
	e := waitExecution(t, c, ok.ID)
	if e.State != "finished" || e.ReturnCode == nil || *e.ReturnCode != 0 || e.Tries != 1 || e.Worker == "" {
		t.Fatalf("the execution ended as %+v", e)
	}
	j, err := c.Job(ctx, e.JobID)
	if err != nil || j.State != "FINISHED" || !strings.Contains(j.Command, `'hello world' 'it'\''s'`) {
		t.Fatalf("its job %+v %v", j, err)
	}
	bad, err := c.Execute(ctx, tmpl.ID, client.ExecuteRequest{Args: []string{"x"}, Params: map[string]string{"CODE": "3"}})
	if err != nil {
		t.Fatal(err)
	}
	e = waitExecution(t, c, bad.ID)
	if e.State != "failed" || e.ReturnCode == nil || *e.ReturnCode != 3 || e.Reason != "" {
		t.Fatalf("the failing execution ended as %+v", e)
	}
	if err := c.DeleteTemplate(ctx, tmpl.ID); err == nil {
		t.Fatal("a template with executions was deleted")
	}
	for _, id := range []string{ok.ID, bad.ID} {
		if err := c.DeleteExecution(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteTemplate(ctx, tmpl.ID); err != nil {
		t.Fatal(err)
	}
	dev.stop()
}
