package service

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service/dispatch"
	"github.com/croftfarm/croft/service/liveness"
)

// fsmStore encodes every command, as Raft would, and applies it to a real
// FSM: results and refusals are the replicated state's own. It records
// the entries, so tests can tell what went to the log.
type fsmStore struct {
	mu      sync.Mutex
	fsm     *raftstore.FSM
	entries []raftstore.Command // decoded, as a follower would see them
}

func (s *fsmStore) Apply(_ context.Context, cmd raftstore.Command) (any, error) {
	buf, err := raftstore.Encode(cmd)
	if err != nil {
		return nil, err
	}
	dec, err := raftstore.Decode(buf)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.entries = append(s.entries, dec)
	res := s.fsm.Apply(&raft.Log{Index: uint64(len(s.entries)), Type: raft.LogCommand, Data: buf})
	s.mu.Unlock()
	if err, ok := res.(error); ok {
		return nil, err
	}
	return res, nil
}

func (s *fsmStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

func (s *fsmStore) last() raftstore.Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entries[len(s.entries)-1]
}

// clock is a settable leader clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

type testFarm struct {
	t      *testing.T
	store  *fsmStore
	clock  *clock
	pings  *liveness.Tracker
	offers *dispatch.Offers
	svc    *Service
}

func newFarm(t *testing.T, logCap int64) *testFarm {
	fsm, err := raftstore.NewFSM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsm.Close() })
	f := &testFarm{t: t, store: &fsmStore{fsm: fsm}, clock: &clock{t: time.Unix(1_700_000_000, 0)},
		pings: liveness.New(time.Hour), offers: &dispatch.Offers{}}
	f.svc = New(Config{Applier: Single(f.store), State: f.store.fsm.State, Clock: f.clock.now,
		Pings: f.pings, Offers: f.offers, LogCap: logCap})
	return f
}

func (f *testFarm) ctx() context.Context { return context.Background() }

// jobs creates leaf jobs with these commands.
func (f *testFarm) jobs(cmds ...string) []int64 {
	f.t.Helper()
	var specs []raftstore.JobSpec
	for _, c := range cmds {
		specs = append(specs, raftstore.JobSpec{Title: c, Command: c, Priority: 1})
	}
	ids, err := f.svc.CreateJobs(f.ctx(), specs)
	if err != nil || len(ids) != len(cmds) {
		f.t.Fatalf("create: %v %v", ids, err)
	}
	return ids
}

func (f *testFarm) register(name string) {
	f.t.Helper()
	if err := f.svc.RegisterWorker(f.ctx(), Registration{Name: name, IP: "10.0.0.1"}); err != nil {
		f.t.Fatal(err)
	}
}

// pick pulls without waiting and wants a job.
func (f *testFarm) pick(worker string) *raftstore.Assignment {
	f.t.Helper()
	a, err := f.svc.Pull(f.ctx(), Pull{Worker: worker, IP: "10.0.0.1"})
	if err != nil || a == nil {
		f.t.Fatalf("pull %s: %+v %v", worker, a, err)
	}
	return a
}

func (f *testFarm) job(id int64) raftstore.Job {
	f.t.Helper()
	j, ok := f.store.fsm.State().Job(id)
	if !ok {
		f.t.Fatalf("job %d is gone", id)
	}
	return j
}

func (f *testFarm) log(id int64) string {
	s, _ := f.store.fsm.State().Log(id)
	return s
}

// An agent report (with its attempt id and offset) and a Coalition worker
// report (neither) reach the same attempt: the service names it in the
// entry, so the FSM never has to guess it.
func TestAgentAndCoalitionReportsResolveTheSameAttempt(t *testing.T) {
	f := newFarm(t, 0)
	id := f.jobs("render")[0]
	a := f.pick("w1")
	if !f.svc.AttemptLive("w1", id, 0) || !f.svc.AttemptLive("w1", 0, a.AttemptID) || f.svc.AttemptLive("w2", 0, a.AttemptID) {
		t.Fatal("AttemptLive disagrees between the two ways of naming the attempt")
	}
	// Coalition: output only, no attempt id, no offset.
	res, err := f.svc.Report(f.ctx(), Report{Worker: "w1", JobID: id, LogOffset: -1, Log: []byte("one "), OutputOnly: true})
	if err != nil || !res.Applied {
		t.Fatalf("coalition report: %+v %v", res, err)
	}
	if r, ok := f.store.last().(*raftstore.Report); !ok || r.AttemptID != a.AttemptID {
		t.Fatalf("the entry is %#v, want a report for attempt %d", f.store.last(), a.AttemptID)
	}
	// Agent: the same attempt by id; the retried chunk is not appended twice.
	for range 2 {
		if _, err := f.svc.Report(f.ctx(), Report{Worker: "w1", JobID: id, AttemptID: a.AttemptID, LogOffset: 4, Log: []byte("two ")}); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.log(id); !strings.Contains(got, "one two ") || strings.Contains(got, "two two") {
		t.Fatalf("log %q", got)
	}
	// Coalition's end finishes the attempt the agent reported on.
	if _, err := f.svc.Report(f.ctx(), Report{Worker: "w1", JobID: id, LogOffset: -1, Done: true}); err != nil {
		t.Fatal(err)
	}
	if j := f.job(id); j.State != raftstore.StateFinished {
		t.Fatalf("job %s after the end", j.State)
	}
	if f.svc.AttemptLive("w1", id, 0) || f.svc.AttemptLive("w1", 0, a.AttemptID) {
		t.Fatal("a finished attempt is still live")
	}
}

func TestStaleAttemptIsRefused(t *testing.T) {
	f := newFarm(t, 0)
	id := f.jobs("render")[0]
	old := f.pick("w1")
	if err := f.svc.ActOnJobs(f.ctx(), raftstore.ActionReset, []int64{id}); err != nil {
		t.Fatal(err)
	}
	cur := f.pick("w1")
	if cur.AttemptID == old.AttemptID || cur.JobID != id {
		t.Fatalf("re-pick %+v after %+v", cur, old)
	}
	_, err := f.svc.Report(f.ctx(), Report{Worker: "w1", JobID: id, AttemptID: old.AttemptID, LogOffset: 0, Log: []byte("late"), Done: true})
	if !errors.Is(err, raftstore.ErrStaleAttempt) {
		t.Fatalf("a report of the reset attempt: %v", err)
	}
	if j := f.job(id); j.State != raftstore.StateRunning || j.Attempt != cur.AttemptID {
		t.Fatalf("the stale report changed the job: %+v", j)
	}
	kill, err := f.svc.Heartbeat(f.ctx(), Beat{Name: "w1", Running: []int64{old.AttemptID, cur.AttemptID}})
	if err != nil || len(kill) != 1 || kill[0] != old.AttemptID {
		t.Fatalf("heartbeat kills %v (%v), want only %d", kill, err, old.AttemptID)
	}
	// A Coalition worker that runs nothing is refused before Raft.
	f.register("idle")
	n := f.store.count()
	_, err = f.svc.Report(f.ctx(), Report{Worker: "idle", JobID: id, LogOffset: -1, Done: true})
	if !errors.Is(err, raftstore.ErrStaleAttempt) || f.store.count() != n {
		t.Fatalf("an end from a worker that runs nothing: %v, %d entries", err, f.store.count()-n)
	}
	// Another worker's attempt is not this worker's, even by its id.
	_, err = f.svc.Report(f.ctx(), Report{Worker: "idle", JobID: id, AttemptID: cur.AttemptID, LogOffset: 0})
	if !errors.Is(err, raftstore.ErrStaleAttempt) {
		t.Fatalf("a report on another worker's attempt: %v", err)
	}
}

func TestLogCapTrimsBeforeRaft(t *testing.T) {
	const logCap = 64
	f := newFarm(t, logCap)
	id := f.jobs("render")[0]
	a := f.pick("w1")
	report := func(off int64, text string, coalition bool) ReportResult {
		t.Helper()
		r := Report{Worker: "w1", JobID: id, AttemptID: a.AttemptID, LogOffset: off, Log: []byte(text)}
		if coalition {
			r.AttemptID, r.LogOffset, r.OutputOnly = 0, -1, true
		}
		res, err := f.svc.Report(f.ctx(), r)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := report(0, "0123456789", false); res.LogFull {
		t.Fatal("10 bytes filled a 64-byte log")
	}
	if res := report(10, strings.Repeat("x", 100), false); !res.LogFull {
		t.Fatal("a chunk past the cap did not say the log is full")
	}
	n, truncated, _ := f.store.fsm.State().LogSize(id)
	if !truncated || n > logCap+200 { // the cap, plus the note that says where it was cut
		t.Fatalf("log of %d bytes, truncated %v", n, truncated)
	}
	// A full log takes nothing more: an agent's report still goes to Raft
	// (it may end the attempt), its output does not.
	entries := f.store.count()
	if res := report(110, "more", false); !res.LogFull || !res.Applied {
		t.Fatalf("report to a full log: %+v", res)
	}
	if r := f.store.last().(*raftstore.Report); f.store.count() != entries+1 || len(r.Log) != 0 {
		t.Fatalf("the output of a full log went to Raft: %q", r.Log)
	}
	// A Coalition heartbeat that only carried output writes nothing.
	entries = f.store.count()
	if res := report(0, "more", true); !res.LogFull || res.Applied || f.store.count() != entries {
		t.Fatalf("coalition output to a full log: %+v, %d entries", res, f.store.count()-entries)
	}
	if m, _, _ := f.store.fsm.State().LogSize(id); m != n {
		t.Fatalf("the full log grew from %d to %d bytes", n, m)
	}
}

func TestFinalReportPicksTheNextJob(t *testing.T) {
	f := newFarm(t, 0)
	ids := f.jobs("first", "second")
	a := f.pick("w1")
	entries := f.store.count()
	res, err := f.svc.Report(f.ctx(), Report{Worker: "w1", JobID: a.JobID, AttemptID: a.AttemptID, LogOffset: 0, Done: true, Next: true})
	if err != nil || res.Next == nil {
		t.Fatalf("report+next: %+v %v", res, err)
	}
	if f.store.count() != entries+1 {
		t.Fatalf("%d entries for report+next", f.store.count()-entries)
	}
	other := ids[0]
	if a.JobID == other {
		other = ids[1]
	}
	if res.Next.JobID != other || f.job(a.JobID).State != raftstore.StateFinished || f.job(other).State != raftstore.StateRunning {
		t.Fatalf("next %+v; first %s, second %s", res.Next, f.job(a.JobID).State, f.job(other).State)
	}
	// Nothing left: the final report is accepted and picks nothing.
	res, err = f.svc.Report(f.ctx(), Report{Worker: "w1", JobID: other, AttemptID: res.Next.AttemptID, LogOffset: 0, Done: true, ExitCode: 3, Next: true})
	if err != nil || res.Next != nil || !res.Done || f.job(other).State != raftstore.StateFailed {
		t.Fatalf("last report+next: %+v %v, job %s", res, err, f.job(other).State)
	}
	if _, err := f.svc.Report(f.ctx(), Report{Worker: "w1", JobID: other, AttemptID: 1, Next: true}); !errors.Is(err, raftstore.ErrInvalid) {
		t.Fatalf("next without done: %v", err)
	}
}

// A create hands a waiting pull its job in the create's own entry.
func TestCreateJobsClaimsAWaitingPull(t *testing.T) {
	f := newFarm(t, 0)
	f.register("w1")
	type pulled struct {
		a   *raftstore.Assignment
		err error
	}
	done := make(chan pulled, 1)
	go func() {
		a, err := f.svc.Pull(f.ctx(), Pull{Worker: "w1", IP: "10.0.0.1", Wait: time.Minute})
		done <- pulled{a, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for f.offers.Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pull never waited")
		}
		time.Sleep(time.Millisecond)
	}
	entries := f.store.count()
	id := f.jobs("render")[0]
	got := <-done
	if got.err != nil || got.a == nil || got.a.JobID != id {
		t.Fatalf("the waiting pull got %+v, %v", got.a, got.err)
	}
	if f.store.count() != entries+1 {
		t.Fatalf("%d entries for the create and its pick, want 1", f.store.count()-entries)
	}
	if b, ok := f.store.last().(*raftstore.Batch); !ok || len(b.Entries) != 2 {
		t.Fatalf("the entry is %T, want a create and a pick together", f.store.last())
	}
	if f.offers.Len() != 0 {
		t.Fatalf("%d pulls still wait", f.offers.Len())
	}
}

func TestPullWithoutWaitWritesNothingWhenIdle(t *testing.T) {
	f := newFarm(t, 0)
	f.register("w1")
	entries := f.store.count()
	for range 3 {
		if a, err := f.svc.Pull(f.ctx(), Pull{Worker: "w1"}); a != nil || err != nil {
			t.Fatalf("idle pull: %+v %v", a, err)
		}
	}
	if f.store.count() != entries {
		t.Fatalf("%d entries for idle pulls", f.store.count()-entries)
	}
	ctx, cancel := context.WithCancel(f.ctx())
	cancel()
	if _, err := f.svc.Pull(ctx, Pull{Worker: "w1", Wait: time.Minute}); !errors.Is(err, context.Canceled) {
		t.Fatalf("a pull whose caller left: %v", err)
	}
}

func TestSweepTimesOutAndLosesWorkers(t *testing.T) {
	f := newFarm(t, 0)
	const ttl = 10 * time.Second
	start := f.clock.now()
	term := &Term{Since: start}
	ids, err := f.svc.CreateJobs(f.ctx(), []raftstore.JobSpec{{Command: "slow", Timeout: 5}, {Command: "quiet"}})
	if err != nil {
		t.Fatal(err)
	}
	slow := f.pick("w1")
	quiet := f.pick("w2")
	if slow.JobID != ids[0] {
		slow, quiet = quiet, slow
	}
	// Within the timeout and the failover grace, nothing happens.
	f.clock.set(start.Add(4 * time.Second))
	if s, err := f.svc.Sweep(f.ctx(), term, ttl); err != nil || len(s.TimedOut)+len(s.Lost) != 0 {
		t.Fatalf("early sweep: %+v %v", s, err)
	}
	// w1 keeps pinging; w2 goes silent.
	f.clock.set(start.Add(6 * time.Second))
	if _, err := f.svc.Heartbeat(f.ctx(), Beat{Name: "nobody", Running: []int64{slow.AttemptID}}); err == nil {
		t.Fatal("a heartbeat of an unknown worker was taken")
	}
	if kill, err := f.svc.Heartbeat(f.ctx(), Beat{Name: "w1", Running: []int64{slow.AttemptID}}); err != nil || len(kill) != 0 {
		t.Fatalf("heartbeat: %v %v", kill, err)
	}
	s, err := f.svc.Sweep(f.ctx(), term, ttl)
	if err != nil || len(s.TimedOut) != 1 || s.TimedOut[0] != slow.AttemptID || len(s.Lost) != 0 {
		t.Fatalf("sweep past the timeout: %+v %v", s, err)
	}
	if j := f.job(slow.JobID); j.State == raftstore.StateRunning {
		t.Fatal("the timed-out job still runs")
	}
	f.clock.set(start.Add(ttl + 7*time.Second))
	if _, err := f.svc.Heartbeat(f.ctx(), Beat{Name: "w1"}); err != nil {
		t.Fatal(err)
	}
	s, err = f.svc.Sweep(f.ctx(), term, ttl)
	if err != nil || len(s.Lost) != 1 || s.Lost[0] != "w2" {
		t.Fatalf("sweep past w2's TTL: %+v %v", s, err)
	}
	if w, _ := f.store.fsm.State().Worker("w2"); w.State != raftstore.WorkerStateLost {
		t.Fatalf("w2 is %s", w.State)
	}
	if j := f.job(quiet.JobID); j.State != raftstore.StateWaiting {
		t.Fatalf("the lost worker's job is %s, want it requeued", j.State)
	}
	// The lost worker comes back with a heartbeat, and is told to kill
	// the attempt it lost.
	kill, err := f.svc.Heartbeat(f.ctx(), Beat{Name: "w2", Running: []int64{quiet.AttemptID}})
	if err != nil || len(kill) != 1 || kill[0] != quiet.AttemptID {
		t.Fatalf("comeback heartbeat: %v %v", kill, err)
	}
	if w, _ := f.store.fsm.State().Worker("w2"); w.State == raftstore.WorkerStateLost {
		t.Fatal("w2 is still lost after its heartbeat")
	}
}

func TestRetainForgetsOldRecords(t *testing.T) {
	f := newFarm(t, 0)
	for range 3 {
		f.jobs("x")
		a := f.pick("w1")
		if _, err := f.svc.Report(f.ctx(), Report{Worker: "w1", JobID: a.JobID, AttemptID: a.AttemptID, Done: true}); err != nil {
			t.Fatal(err)
		}
	}
	now := f.clock.now()
	r, err := f.svc.Retain(f.ctx(), now, Retention{EventMaxCount: 1})
	if err != nil || !r.Pruned || f.store.fsm.State().RunCount() != 1 {
		t.Fatalf("retain: %+v %v, %d events", r, err, f.store.fsm.State().RunCount())
	}
	r, err = f.svc.Retain(f.ctx(), now.Add(2*time.Hour), Retention{JobExpiry: time.Hour})
	if err != nil || len(r.ExpiredJobs) != 3 || f.store.fsm.State().JobCount() != 0 {
		t.Fatalf("job expiry: %+v %v, %d jobs left", r, err, f.store.fsm.State().JobCount())
	}
	if err := f.svc.DeleteWorkers(f.ctx(), []string{"w1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.pings.Get("w1"); ok {
		t.Fatal("a deleted worker's pings are kept")
	}
}
