package liveness

import (
	"reflect"
	"testing"
	"time"
)

func TestExpiredHonoursTheFailoverGrace(t *testing.T) {
	tr := New(time.Hour)
	const s = int64(1e9)
	tr.Seen("old", Ping{Time: 10 * s, CPU: "[1]", TotalMemory: 8})
	tr.Seen("fresh", Ping{Time: 95 * s})
	// Leadership began at 90 s, TTL 15 s: at 100 s nobody is expired, even
	// "old" (last seen under an earlier leader) and "never" (not seen).
	if got := tr.Expired([]string{"old", "fresh", "never"}, 100*s, 90*s, 15*s); len(got) != 0 {
		t.Fatalf("expired during the grace window: %v", got)
	}
	got := tr.Expired([]string{"old", "fresh", "never"}, 106*s, 90*s, 15*s)
	if want := []string{"never", "old"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("expired %v, want %v", got, want)
	}
	// A ping without measurements keeps the last ones.
	tr.Seen("old", Ping{Time: 107 * s})
	if p, _ := tr.Get("old"); p.CPU != "[1]" || p.TotalMemory != 8 || p.Time != 107*s {
		t.Fatalf("ping %+v", p)
	}
	tr.Forget("old")
	if _, ok := tr.Get("old"); ok {
		t.Fatal("forgotten worker still known")
	}
}

func TestTimersNameTheSilentWorkers(t *testing.T) {
	tr := New(20 * time.Millisecond)
	waitDue := func() []string {
		t.Helper()
		select {
		case <-tr.Due():
			return tr.TakeDue()
		case <-time.After(10 * time.Second):
			t.Fatal("no timer fired")
			return nil
		}
	}
	tr.Seen("quiet", Ping{Time: 1})
	tr.Seen("forgotten", Ping{Time: 1})
	tr.Forget("forgotten") // deleted: its timer is stopped
	if due := waitDue(); !reflect.DeepEqual(due, []string{"quiet"}) {
		t.Fatalf("due %v, want [quiet]", due)
	}
	if again := tr.TakeDue(); len(again) != 0 {
		t.Fatalf("taken twice: %v", again)
	}
	// A ping restarts the timer: it fires again after another TTL.
	tr.Seen("quiet", Ping{Time: 2})
	if due := waitDue(); !reflect.DeepEqual(due, []string{"quiet"}) {
		t.Fatalf("due %v after a new ping, want [quiet]", due)
	}
}
