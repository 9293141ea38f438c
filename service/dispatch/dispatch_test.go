package dispatch

import (
	"errors"
	"testing"

	"github.com/croftfarm/croft/raftstore"
)

func TestClaimTakesTheOldestOnePerWorker(t *testing.T) {
	var o Offers
	a := o.Wait("a", "10.0.0.1")
	b := o.Wait("b", "10.0.0.2")
	a2 := o.Wait("a", "10.0.0.1") // a second pull of the same worker
	c := o.Wait("c", "10.0.0.3")
	if o.Len() != 4 {
		t.Fatalf("%d waiting", o.Len())
	}
	got := o.Claim(3)
	if len(got) != 3 || got[0] != a || got[1] != b || got[2] != c {
		t.Fatalf("claimed %v", names(got))
	}
	if o.Len() != 1 {
		t.Fatalf("%d left waiting, want the second pull of a", o.Len())
	}
	// Claimed: cancelling is refused, the result is coming.
	if o.Cancel(a) {
		t.Error("a claimed waiter was cancelled")
	}
	a.Deliver(Result{Assignment: &raftstore.Assignment{AttemptID: 7}})
	if r := <-a.C(); r.Assignment == nil || r.Assignment.AttemptID != 7 {
		t.Errorf("result %+v", r)
	}
	// Not claimed: cancelled, and never claimed afterwards.
	if !o.Cancel(a2) || !o.Cancel(a2) {
		t.Error("cancelling a waiting pull failed")
	}
	if got := o.Claim(5); len(got) != 0 || o.Len() != 0 {
		t.Errorf("claimed %v after every pull left", names(got))
	}
	if got := o.Claim(0); got != nil {
		t.Errorf("claim of 0: %v", names(got))
	}
	b.Deliver(Result{Err: errors.New("no leader")})
	if r := <-b.C(); r.Err == nil {
		t.Error("error not delivered")
	}
}

func names(ws []*Waiter) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.Worker)
	}
	return out
}

func TestStartableCountsJobsThatCanRunAtOnce(t *testing.T) {
	c := &raftstore.JobCreate{Jobs: []raftstore.JobSpec{
		{Title: "runs", Command: "x"},
		{Title: "group"}, // no command
		{Title: "paused", Command: "x", Paused: true},
		{Title: "waits", Command: "x", Dependencies: []int64{1}},
		{Title: "paused group", Paused: true},
		{Title: "child of the paused group", Command: "x", ParentRef: 5},
		{Title: "child of the group", Command: "x", ParentRef: 2},
	}}
	if n := Startable(c); n != 2 {
		t.Errorf("Startable = %d, want 2", n)
	}
}

func TestClaimWhereTakesOnlyTheWorkersKept(t *testing.T) {
	var o Offers
	o.Wait("other", "10.0.0.1")
	a := o.Wait("h/1", "10.0.0.2")
	o.Wait("h/1", "10.0.0.2")
	b := o.Wait("h/2", "10.0.0.3")
	slot := func(w string) bool { return w == "h/1" || w == "h/2" }
	if got := o.ClaimWhere(1, slot); len(got) != 1 || got[0] != a {
		t.Fatalf("claimed %v", names(got))
	}
	if got := o.ClaimWhere(5, slot); len(got) != 2 || got[0].Worker != "h/1" || got[1] != b {
		t.Fatalf("claimed %v", names(got))
	}
	if got := o.ClaimWhere(5, slot); len(got) != 0 || o.Len() != 1 {
		t.Fatalf("claimed %v, %d left (want the other worker's pull)", names(got), o.Len())
	}
}
