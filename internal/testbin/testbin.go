// Package testbin gives end-to-end tests the croft binary: $CROFT_BIN when
// set (the Makefile builds bin/croft and sets it), otherwise one build per
// test process into a temporary directory.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	once  sync.Once
	built string
	err   error
)

// Croft returns the path of the croft binary, building it on first use.
// It skips the test in -short mode: end-to-end tests are the slow tier.
func Croft(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	if bin := os.Getenv("CROFT_BIN"); bin != "" {
		return bin
	}
	once.Do(func() {
		dir, derr := os.MkdirTemp("", "croft-test-bin")
		if derr != nil {
			err = derr
			return
		}
		built = filepath.Join(dir, "croft")
		out, berr := exec.Command("go", "build", "-o", built, "github.com/croftfarm/croft/cmd/croft").CombinedOutput()
		if berr != nil {
			err = fmt.Errorf("go build: %v\n%s", berr, out)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return built
}

// Cleanup removes a binary Croft built; call it from TestMain after m.Run.
func Cleanup() {
	if built != "" {
		os.RemoveAll(filepath.Dir(built))
	}
}
