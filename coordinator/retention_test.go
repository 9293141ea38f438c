package coordinator

import (
	"testing"
	"time"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/raftstore"
)

func TestRetention(t *testing.T) {
	s := startServerWith(t, ServerConfig{WorkerTTL: time.Hour, Auth: auth.Config{Insecure: true},
		Retention: Retention{EventMaxCount: 2, WorkerExpiry: time.Hour, Interval: time.Hour}})
	ctx := s.ctx(t)
	if err := s.c.Register(ctx, client.RegisterRequest{Name: "a1"}); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for range 3 {
		id, err := s.c.CreateJob(ctx, client.NewJob{Title: "j", Command: "true"})
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.c.Pull(ctx, client.PullRequest{Name: "a1"})
		if err != nil || a == nil {
			t.Fatalf("pull %+v %v", a, err)
		}
		if _, err := s.c.Report(ctx, client.ReportRequest{Name: "a1", JobID: a.JobID, AttemptID: a.AttemptID, Done: true}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	st := s.srv.Node().FSM().State()
	now := time.Now()
	// Events past the count go, oldest first.
	if err := s.srv.retainOnce(now); err != nil {
		t.Fatal(err)
	}
	if evs := st.Runs(nil); len(evs) != 2 || evs[0].JobID != ids[1] {
		t.Fatalf("events after pruning to 2: %+v", evs)
	}
	// A worker lost for longer than the expiry is forgotten, with its pings.
	if _, err := s.srv.Node().Apply(ctx, &raftstore.WorkerLost{Now: now.UnixNano(), Names: []string{"a1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.srv.retainOnce(now.Add(30 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Worker("a1"); !ok {
		t.Fatal("a worker lost for 30 min expired with a 1 h expiry")
	}
	if err := s.srv.retainOnce(now.Add(2 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Worker("a1"); ok {
		t.Fatal("a worker lost for 2 h is still there")
	}
	if _, ok := s.srv.pings.Get("a1"); ok {
		t.Fatal("the expired worker's pings are still kept")
	}
	// Finished top-level jobs expire only when asked to, after their age.
	if err := s.srv.retainOnce(now.Add(48 * time.Hour)); err != nil || st.JobCount() != 3 {
		t.Fatalf("jobs expired with no job expiry set: %d left, %v", st.JobCount(), err)
	}
	s.srv.cfg.Retention.JobExpiry = 24 * time.Hour
	if err := s.srv.retainOnce(now.Add(48 * time.Hour)); err != nil || st.JobCount() != 0 || st.RunCount() != 0 {
		t.Fatalf("after job expiry: %d jobs, %d events, %v", st.JobCount(), st.RunCount(), err)
	}
}
