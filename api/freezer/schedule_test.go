package freezer

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/raftstore"
)

func TestInterval(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"1 days": 24 * time.Hour, "5 minutes": 5 * time.Minute, "2  weeks": 14 * 24 * time.Hour, "30 seconds": 30 * time.Second, "3 hours": 3 * time.Hour,
	} {
		if got, cont, ok := interval(document{"schedule_interval": s}); !ok || cont || got != want {
			t.Errorf("%q: %v %v %v", s, got, cont, ok)
		}
	}
	if _, cont, ok := interval(document{"schedule_interval": "continuous"}); !ok || !cont {
		t.Error("continuous")
	}
	for _, s := range []string{"", "0 days", "-1 days", "1 fortnights", "days", "99999999999999999999 seconds", "999999 weeks"} {
		if _, _, ok := interval(document{"schedule_interval": s}); ok {
			t.Errorf("%q taken", s)
		}
	}
}

// TestDue: when Tick starts a job whose event is start.
func TestDue(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ended := func(at time.Time) *raftstore.ExecutionStatus {
		return &raftstore.ExecutionStatus{Execution: raftstore.Execution{Created: at.UnixNano()}, Ended: true}
	}
	running := &raftstore.ExecutionStatus{Execution: raftstore.Execution{Created: t0.UnixNano()}}
	iso := func(t time.Time) string { return t.Format("2006-01-02T15:04:05") }
	for _, c := range []struct {
		name  string
		sched document
		last  *raftstore.ExecutionStatus
		now   time.Time
		want  bool
	}{
		{"no schedule", document{"event": "start"}, nil, t0, false},
		{"stopped", document{"event": "stop", "schedule_interval": "1 hours"}, nil, t0, false},
		{"interval, never ran", document{"event": "start", "schedule_interval": "1 hours"}, nil, t0, true},
		{"interval, too soon", document{"event": "start", "schedule_interval": "1 hours"}, ended(t0), t0.Add(59 * time.Minute), false},
		{"interval, due", document{"event": "start", "schedule_interval": "1 hours"}, ended(t0), t0.Add(time.Hour), true},
		{"interval, running", document{"event": "start", "schedule_interval": "1 hours"}, running, t0.Add(2 * time.Hour), false},
		{"continuous", document{"event": "start", "schedule_interval": "continuous"}, ended(t0), t0, true},
		{"date to come", document{"event": "start", "schedule_date": iso(t0.Add(time.Hour))}, nil, t0, false},
		{"date come", document{"event": "start", "schedule_date": iso(t0.Add(time.Hour))}, nil, t0.Add(time.Hour), true},
		{"date done", document{"event": "start", "schedule_date": iso(t0)}, ended(t0.Add(time.Second)), t0.Add(time.Hour), false},
		{"start date to come", document{"event": "start", "schedule_interval": "1 hours", "schedule_start_date": iso(t0.Add(time.Hour))}, nil, t0, false},
		{"start date come, no interval", document{"event": "start", "schedule_start_date": iso(t0)}, nil, t0, true},
		{"start date come, ran since", document{"event": "start", "schedule_start_date": iso(t0)}, ended(t0.Add(time.Second)), t0.Add(time.Hour), false},
		{"end date passed", document{"event": "start", "schedule_interval": "1 hours", "schedule_end_date": iso(t0)}, nil, t0, false},
		{"zone", document{"event": "start", "schedule_date": "2026-11-30T13:00:00+01:00"}, nil, t0, true},
	} {
		if got := due(c.sched, c.last, c.now); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// runs returns the executions of job id of project a.
func (f *farm) runs(id string) []raftstore.ExecutionStatus {
	f.t.Helper()
	tmpl, ok := f.store.State().TemplateByName("a", id)
	if !ok {
		f.t.Fatalf("no job %s", id)
	}
	page, _, _ := f.store.State().ExecutionsAfter("", 100, tmpl.ID)
	return page
}

// TestTickRunsBySchedule: an interval job runs when started and again
// after its interval; a job for a date to come waits for it, then runs
// once.
func TestTickRunsBySchedule(t *testing.T) {
	f := newFarm(t)
	f.agent("h1", "h1")
	ctx := context.Background()
	tick := func(d time.Duration) {
		t.Helper()
		f.advance(d)
		if err := f.h.Tick(ctx, f.now()); err != nil {
			t.Fatal(err)
		}
	}
	hourly := f.createJob("user-a", "a", strings.Replace(jobBody("hourly", "start"), `"job_schedule":{`, `"job_schedule":{"schedule_interval":"1 hours",`, 1))
	if n := len(f.runs(hourly)); n != 1 {
		t.Fatalf("started: %d runs", n)
	}
	tick(2 * time.Hour)
	if n := len(f.runs(hourly)); n != 1 {
		t.Fatalf("a tick while the run goes on: %d runs", n)
	}
	f.finish("h1", f.pick("h1"), 0)
	tick(0)
	if n := len(f.runs(hourly)); n != 2 {
		t.Fatalf("two hours after the first run's start: %d runs", n)
	}
	f.finish("h1", f.pick("h1"), 0)
	tick(59 * time.Minute)
	if n := len(f.runs(hourly)); n != 2 {
		t.Fatal("ran again before its interval")
	}
	tick(time.Minute)
	if n := len(f.runs(hourly)); n != 3 {
		t.Fatalf("after its interval: %d runs", n)
	}
	// Stopped (its waiting run taken back): no more runs.
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+hourly+"/event", `{"stop":null}`), http.StatusAccepted)
	tick(5 * time.Hour)
	if n := len(f.runs(hourly)); n != 3 {
		t.Fatalf("a stopped job ran: %d runs", n)
	}

	at := f.now().Add(time.Hour).UTC().Format("2006-01-02T15:04:05Z")
	dated := f.createJob("user-a", "a", strings.Replace(jobBody("dated", "start"), `"job_schedule":{`, `"job_schedule":{"schedule_date":"`+at+`",`, 1))
	if n := len(f.runs(dated)); n != 0 || sched(f.job("a", dated))["event"] != "start" {
		t.Fatalf("a job for a date to come ran at once: %d runs", n)
	}
	r := f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+dated+"/event", `{"start":null}`), http.StatusAccepted)
	if r.body != `{"result":"success"}` || len(f.runs(dated)) != 0 {
		t.Fatalf("start before its date: %s, %d runs", r.body, len(f.runs(dated)))
	}
	tick(59 * time.Minute)
	if len(f.runs(dated)) != 0 {
		t.Fatal("ran before its date")
	}
	tick(time.Minute)
	if len(f.runs(dated)) != 1 {
		t.Fatal("did not run at its date")
	}
	f.finish("h1", f.pick("h1"), 0)
	tick(time.Hour)
	if len(f.runs(dated)) != 1 {
		t.Fatal("a dated job ran twice")
	}
}
