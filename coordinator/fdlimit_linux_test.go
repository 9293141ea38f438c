//go:build linux

package coordinator

import (
	"syscall"
	"testing"
	"time"
)

// TestFileLimitIsRaisedToTheHardLimit lowers this process's soft
// open-file limit, as `ulimit -Sn 1024` in the shell that started it
// would, and checks that fileLimit raises it back to the hard limit and
// reports both; then that a coordinator does so when it starts.
func TestFileLimitIsRaisedToTheHardLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore the open-file limit %+v: %v", orig, err)
		}
	})
	low := uint64(1024)
	if orig.Max <= low {
		low = orig.Max / 2
	}
	if low < 64 {
		t.Skipf("the hard open-file limit is %d: too low to lower the soft one safely", orig.Max)
	}
	current := func() syscall.Rlimit {
		t.Helper()
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Fatal(err)
		}
		return rl
	}
	lower := func() {
		t.Helper()
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: low, Max: orig.Max}); err != nil {
			t.Fatalf("lower the soft limit to %d: %v", low, err)
		}
		if now := current(); now.Cur != low || now.Max != orig.Max {
			t.Fatalf("the soft limit was not lowered: %+v", now)
		}
	}

	lower()
	soft, hard, err := fileLimit()
	if err != nil {
		t.Fatal(err)
	}
	if now := current(); now.Cur != orig.Max || now.Max != orig.Max {
		t.Fatalf("after fileLimit the process's limit is %d/%d, want the soft limit raised to the hard %d", now.Cur, now.Max, orig.Max)
	}
	if soft != orig.Max || hard != orig.Max {
		t.Fatalf("fileLimit reported %d/%d, want %d/%d", soft, hard, orig.Max, orig.Max)
	}
	// Already at the hard limit: nothing to do, the same answer.
	if soft2, hard2, err := fileLimit(); err != nil || soft2 != soft || hard2 != hard {
		t.Fatalf("fileLimit again: %d/%d %v, want %d/%d", soft2, hard2, err, soft, hard)
	}

	// A coordinator raises it at start (NewServer), and sizes its
	// connection cap from the raised limit, not the low one.
	lower()
	s := startServer(t, time.Hour)
	if now := current(); now.Cur != orig.Max {
		t.Fatalf("after NewServer the soft limit is %d, want the hard %d", now.Cur, orig.Max)
	}
	if got, want := s.srv.cfg.HTTP.MaxConns, maxConnsFor(orig.Max); got != want {
		t.Fatalf("the connection cap is %d, want %d (from the raised limit; %d from the low one)", got, want, maxConnsFor(low))
	}
}
