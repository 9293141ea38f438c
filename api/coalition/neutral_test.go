package coalition

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/raftstore"
)

// The farm keeps neutral states, plain-integer priorities and environment
// maps; these tests check that Coalition clients still see their own words.

func (f *farm) apply(cmd raftstore.Command) any {
	f.t.Helper()
	res, err := f.store.Apply(context.Background(), cmd)
	if err != nil {
		f.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

func TestCoalitionSeesItsPrioritiesAndHPriority(t *testing.T) {
	f := newFarm(t)
	g := f.create(`{"title":"g","priority":200}`)
	kid := f.create(`{"title":"k","command":"x","priority":10,"parent":` + itoa(g) + `}`)
	if j := f.job(kid); j.Priority != 10 || j.HPriority != 0xc80a0000000000 {
		t.Fatalf("child priority %d h_priority %#x", j.Priority, j.HPriority)
	}
	big := f.create(`{"title":"big","command":"x","priority":1000}`)
	if j := f.job(big); j.Priority != 255 || j.HPriority != 0xff000000000000 {
		t.Fatalf("priority 1000 reads %d, h_priority %#x", j.Priority, j.HPriority)
	}
	// Jobs another dialect wrote, outside 0..255, show clamped.
	ids := f.apply(&raftstore.JobCreate{Jobs: []raftstore.JobSpec{
		{Command: "x", Priority: -5}, {Command: "x", Priority: 5000},
	}}).([]int64)
	if lo, hi := f.job(ids[0]), f.job(ids[1]); lo.Priority != 0 || lo.HPriority != 0 || hi.Priority != 255 || hi.HPriority != 0xff000000000000 {
		t.Fatalf("priorities %d/%#x and %d/%#x", lo.Priority, lo.HPriority, hi.Priority, hi.HPriority)
	}
}

func TestCoalitionSeesCanceledAsError(t *testing.T) {
	f := newFarm(t)
	id := f.create(`{"title":"c","command":"x"}`)
	if got := f.worker("pickjob", url.Values{"hostname": {"w"}}); !strings.Contains(got, "x") {
		t.Fatalf("pickjob %q", got)
	}
	var ws []client.Worker
	f.ok("GET", "/api/workers", "", &ws)
	if len(ws) != 1 || ws[0].State != "WORKING" {
		t.Fatalf("workers %+v", ws)
	}
	f.apply(&raftstore.JobAction{Action: raftstore.ActionCancel, IDs: []int64{id}})
	if j := f.job(id); j.State != "ERROR" {
		t.Fatalf("canceled job shows %q", j.State)
	}
	var n int
	f.ok("GET", "/api/jobs/count/where/?where_clause="+url.QueryEscape("state='ERROR'"), "", &n)
	if n != 1 {
		t.Fatalf("count of ERROR jobs %d", n)
	}
	var states []map[string]string
	f.ok("GET", "/api/jobs/states/", "", &states)
	if len(states) != 1 || states[0]["state"] != "ERROR" {
		t.Fatalf("states %v", states)
	}
	var evs []client.Event
	f.ok("GET", "/api/events?howlong=3600", "", &evs)
	if len(evs) != 1 || evs[0].State != "ERROR" {
		t.Fatalf("events %+v", evs)
	}
	f.ok("GET", "/api/workers", "", &ws)
	if len(ws) != 1 || ws[0].State != "WAITING" {
		t.Fatalf("workers %+v", ws)
	}
	f.apply(&raftstore.WorkerLost{Names: []string{"w"}})
	f.ok("GET", "/api/workers", "", &ws)
	if len(ws) != 1 || ws[0].State != "TIMEOUT" {
		t.Fatalf("workers %+v", ws)
	}
	// Coalition's reset runs it again.
	f.ok("POST", "/api/resetjobs", "["+itoa(id)+"]", nil)
	if j := f.job(id); j.State != "WAITING" {
		t.Fatalf("reset job shows %q", j.State)
	}
}

func TestCoalitionStateEdits(t *testing.T) {
	f := newFarm(t)
	id := f.create(`{"title":"s","command":"x","state":"PAUSED"}`)
	f.ok("POST", "/api/jobs", `{"`+itoa(id)+`":{"state":"finished"}}`, nil)
	if j, _ := f.store.State().Job(id); j.State != raftstore.StateFinished || f.job(id).State != "PAUSED" {
		t.Fatalf("stored %q, shown %q", j.State, f.job(id).State)
	}
	for _, bad := range []string{"WORKING", "CANCELED", "canceled", "nonsense"} {
		code, body := f.call("POST", "/api/jobs", `{"`+itoa(id)+`":{"state":"`+bad+`"}}`)
		want := `state \"` + strings.ToUpper(bad) + `\" cannot be set (use WAITING, PAUSED, FINISHED or ERROR)`
		if code != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Fatalf("state %q: %d %s", bad, code, body)
		}
	}
}

func TestCoalitionEnvironmentRoundTrips(t *testing.T) {
	f := newFarm(t)
	odd := `X=1\\nX=2\n noequals \\nA = b `
	id := f.create(`{"title":"e","command":"x","environment":"` + odd + `"}`)
	want := strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(odd)
	if j := f.job(id); j.Environment != want {
		t.Fatalf("environment %q, want %q", j.Environment, want)
	}
	j, _ := f.store.State().Job(id)
	if !maps.Equal(j.Env, map[string]string{"X": "2", "A": " b"}) {
		t.Fatalf("stored map %v", j.Env)
	}
	f.ok("POST", "/api/jobs", `{"`+itoa(id)+`":{"environment":""}}`, nil)
	if j, _ := f.store.State().Job(id); j.Env != nil || f.job(id).Environment != "" {
		t.Fatalf("cleared environment: %v %q", j.Env, f.job(id).Environment)
	}
	// A map another dialect wrote shows as sorted KEY=VALUE lines, and the
	// Coalition worker gets the same text.
	env := map[string]string{"B": "2", "A": "1"}
	f.apply(&raftstore.JobEdit{Edits: []raftstore.JobEditItem{{ID: id, Patch: raftstore.JobPatch{Env: &env}}}})
	if got := f.job(id).Environment; got != "A=1\nB=2" {
		t.Fatalf("map shows as %q", got)
	}
	if got := f.worker("pickjob", url.Values{"hostname": {"w"}}); !strings.Contains(got, `'A=1\nB=2'`) {
		t.Fatalf("pickjob %q", got)
	}
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }
