package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
