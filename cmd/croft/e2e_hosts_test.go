package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// TestDevAgentHostShowsItsInterpreters runs croft dev with two slots: once a
// job ran, the agent's host lists both slots, the sh it detected on its
// PATH (an absolute path) and its measurements; a configured interpreter
// that uses sh is offered by that host.
func TestDevAgentHostShowsItsInterpreters(t *testing.T) {
	dir := t.TempDir()
	dev := start(t, "dev", "--data-dir", filepath.Join(dir, "data"), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--slots", "2")
	c := adminClient(t, filepath.Join(dir, "data"), dev.url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The slots register before either asks for work: once a job ran,
	// the host is complete.
	id, err := c.CreateJob(ctx, client.NewJob{Title: "hello", Command: "true"})
	if err != nil {
		t.Fatal(err)
	}
	worker := waitJob(t, c, id, "FINISHED").Worker
	hosts, err := c.Hosts(ctx)
	if err != nil || len(hosts) != 1 {
		t.Fatalf("hosts %+v %v", hosts, err)
	}
	h, err := c.Host(ctx, hosts[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Slots) != 2 || h.SlotCount != 2 || h.CPUs < 1 || h.TotalMemory <= 0 || h.Live == nil {
		t.Fatalf("host %+v", h)
	}
	if h.Slots[0].Name != worker && h.Slots[1].Name != worker {
		t.Fatalf("the job ran on %s, not a slot of %+v", worker, h.Slots)
	}
	var sh string
	for _, in := range h.Interpreters {
		if in.Name == "sh" {
			sh = in.Path
		}
	}
	if !strings.HasPrefix(sh, "/") || !strings.HasSuffix(sh, "/sh") {
		t.Fatalf("the host's sh is %q: %+v", sh, h.Interpreters)
	}
	if err := c.SetInterpreter(ctx, "sh-x", client.InterpreterRequest{Template: "{interpreter} -x {file}", Uses: "sh"}); err != nil {
		t.Fatal(err)
	}
	list, err := c.Interpreters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, in := range list {
		if in.Name == "sh-x" {
			found = in.Configured && in.HostCount == 1 && len(in.Hosts) == 1 && in.Hosts[0] == h.Name
		}
	}
	if !found {
		t.Fatalf("sh-x is not offered by %s: %+v", h.Name, list)
	}
	dev.stop()
}
