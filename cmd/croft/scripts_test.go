package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/internal/testwait"
)

// TestE2EDockerSkips runs scripts/e2e-docker.sh (`make e2e-docker`) with a
// stand-in docker first on PATH: without a Docker engine, and with one but
// no busybox-static, it prints SKIP and exits 0 without building anything.
func TestE2EDockerSkips(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("SKIP: bash is not installed")
	}
	for _, tc := range []struct {
		name, dockerInfo, busybox, want string
	}{
		{"no engine", "exit 1", "/bin/busybox", "SKIP: no Docker engine answers"},
		{"no busybox", "exit 0", "/nonexistent/busybox", "SKIP: busybox-static is not installed (apt-get install busybox-static)"},
		{"dynamic busybox", "exit 0", "", "SKIP: busybox-static is not installed (apt-get install busybox-static)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			calls := filepath.Join(dir, "calls")
			// docker records its arguments; "docker info" answers as the case says.
			writeFile(t, dir, "docker", "#!/bin/sh\necho \"$*\" >> "+calls+"\ncase \"$1\" in info) "+tc.dockerInfo+" ;; esac\nexit 1\n", 0o755)
			busybox := tc.busybox
			if busybox == "" {
				// A dynamically linked stand-in: it names the ELF interpreter.
				busybox = writeFile(t, dir, "busybox", "#!/bin/sh\n# /lib64/ld-linux-x86-64.so.2\n", 0o755)
			}
			cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "e2e-docker.sh"))
			cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "BUSYBOX="+busybox, "CROFT_BIN=/nonexistent/croft")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("e2e-docker.sh: %v, want exit 0 and %q:\n%s", err, tc.want, out)
			}
			b, _ := os.ReadFile(calls)
			if got := strings.TrimSpace(string(b)); got != "info" {
				t.Fatalf("docker was called with %q, want only \"info\"", got)
			}
		})
	}
}

// TestLocalClusterScript starts scripts/local-cluster.sh on a fresh data
// directory: it picks a free block of ports, prints them, and its three
// coordinators and agent form a farm with a leader; stopping the script
// stops them all, and the ports are kept for a restart.
func TestLocalClusterScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("SKIP: bash is not installed")
	}
	data := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "local-cluster.sh"), data)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its processes in one group, stopped by the test
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var printed strings.Builder
	deadline := time.After(90 * time.Second)
	for !strings.Contains(printed.String(), "Ctrl-C to stop.") {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the script ended:\n%s", printed.String())
			}
			printed.WriteString(l + "\n")
		case <-deadline:
			t.Fatalf("the script did not start the farm:\n%s", printed.String())
		}
	}
	base, err := os.ReadFile(filepath.Join(data, "ports"))
	if err != nil {
		t.Fatal(err)
	}
	c1 := "http://127.0.0.1:" + strings.TrimSpace(string(base))
	if !strings.Contains(printed.String(), "c1: pid") || !strings.Contains(printed.String(), c1) {
		t.Fatalf("the ports it printed are not those it kept (%s):\n%s", c1, printed.String())
	}
	token, err := os.ReadFile(filepath.Join(data, "c1", AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	c := client.NewWith(client.Options{Token: strings.TrimSpace(string(token))}, c1)
	testwait.Until(t, 30*time.Second, "three members and a leader", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := c.Status(ctx, c1)
		return err == nil && st.LeaderID != "" && len(st.Members) == 3, fmt.Sprintf("%+v %v", st, err)
	})
	// Stopping the script (Ctrl-C) stops what it started.
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Status(ctx, c1); err == nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		t.Fatal("c1 still answers after the script stopped")
	}
}
