// Package testwait waits in tests for a condition that other goroutines or
// processes bring about (a leader elected, a log replicated).
package testwait

import (
	"testing"
	"time"
)

// Until polls cond every 20 ms until it holds, and fails t with cond's
// last reason when timeout passes first.
func Until(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
