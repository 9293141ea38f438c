package freezer

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/croftfarm/croft/raftstore"
)

// jobBody is a job for client h1 whose one exec action prints word.
func jobBody(word, event string) string {
	return `{"description":"` + word + `","client_id":"h1","job_schedule":{"event":"` + event + `"},
		"job_actions":[{"max_retries":2,"max_retries_interval":0,"freezer_action":{"action":"exec","command":"echo ` + word + `"}}]}`
}

func (f *farm) createJob(token, project, body string) string {
	f.t.Helper()
	r := f.want(f.do(token, http.MethodPost, "/v2/"+project+"/jobs", body), http.StatusCreated)
	return decodeTo[map[string]string](f.t, r.body)["job_id"]
}

func (f *farm) job(project, id string) map[string]any {
	f.t.Helper()
	return decodeTo[map[string]any](f.t, f.want(f.do("read-"+project, http.MethodGet, "/v2/"+project+"/jobs/"+id, ""), http.StatusOK).body)
}

func sched(d map[string]any) map[string]any { m, _ := d["job_schedule"].(map[string]any); return m }

// apply applies a command as the leader would, failing the test on error.
func (f *farm) apply(cmd raftstore.Command) any {
	f.t.Helper()
	res, err := f.store.Apply(context.Background(), cmd)
	if err != nil {
		f.t.Fatalf("%T: %v", cmd, err)
	}
	return res
}

// agent registers worker name on host, as an agent's slot does.
func (f *farm) agent(name, host string) {
	f.apply(&raftstore.WorkerRegister{Now: now, Name: name, Host: &raftstore.HostInfo{Name: host, Slots: 1, CPUs: 1, TotalMemory: 1}})
}

// pick lets worker take its next job; nil when there is none.
func (f *farm) pick(worker string) *raftstore.Assignment {
	f.t.Helper()
	a, _ := f.apply(&raftstore.Pick{Now: now + 1, Worker: worker}).(*raftstore.Assignment)
	return a
}

func (f *farm) finish(worker string, a *raftstore.Assignment, exit int) {
	f.apply(&raftstore.Report{Now: now + 2, Worker: worker, JobID: a.JobID, AttemptID: a.AttemptID, Done: true, ExitCode: exit})
}

func TestFreezerJobsCRUD(t *testing.T) {
	f := newFarm(t)
	id := f.createJob("user-a", "a", jobBody("one", ""))
	if !hexID.MatchString(id) {
		t.Fatalf("job_id %q", id)
	}
	d := f.job("a", id)
	if d["job_id"] != id || d["project_id"] != "a" || d["user_id"] != "user-a" || d["client_id"] != "h1" || d["_version"] != 1.0 {
		t.Fatalf("document %v", d)
	}
	if _, hidden := d[hiddenRuns]; hidden {
		t.Fatalf("bookkeeping shown: %v", d)
	}
	action := d["job_actions"].([]any)[0].(map[string]any)
	if !hexID.MatchString(fmt.Sprint(action["action_id"])) || sched(d)["time_created"] == nil || sched(d)["time_started"] != -1.0 {
		t.Fatalf("create did not fill the action id and times: %v", d)
	}
	// A given job_id, and the same one again: 409.
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/", strings.Replace(jobBody("two", ""), `{`, `{"job_id":"backup-2",`, 1)), http.StatusCreated)
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs", strings.Replace(jobBody("two", ""), `{`, `{"job_id":"backup-2",`, 1)), http.StatusConflict)
	// The §1.7 sample has no client_id: 400; malformed JSON: 753.
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs", sampleJob), http.StatusBadRequest)
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs", `{"client_id":`), StatusMalformed)
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs", ``), http.StatusBadRequest)
	// An oversized body, a NUL byte, and ids that are no job's.
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs", strings.Replace(jobBody("big", ""), `"big"`, `"`+strings.Repeat("x", MaxBody)+`"`, 1)), http.StatusRequestEntityTooLarge)
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs", strings.Replace(jobBody("x", ""), `"client_id":"h1"`, `"client_id":"h\u0000"`, 1)), http.StatusBadRequest)
	nul := strings.Replace(jobBody("x", "start"), `echo x`, `echo \u0000`, 1)
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs", strings.Replace(nul, `{`, `{"job_id":"nul",`, 1)), http.StatusBadRequest)
	f.want(f.do("read-a", http.MethodGet, "/v2/a/jobs/nul", ""), http.StatusNotFound) // refused whole, not half made
	f.want(f.do("read-a", http.MethodGet, "/v2/a/jobs/..%2f..%2fetc", ""), http.StatusNotFound)
	f.want(f.do("read-a", http.MethodGet, "/v2/a/jobs/"+strings.Repeat("j", MaxJobIDBytes+1), ""), http.StatusNotFound)
	// List with the search body, limit and offset.
	list := func(q, body string) []string {
		r := f.want(f.do("read-a", http.MethodGet, "/v2/a/jobs"+q, body), http.StatusOK)
		var ids []string
		for _, j := range decodeTo[map[string][]map[string]any](t, r.body)["jobs"] {
			ids = append(ids, fmt.Sprint(j["job_id"]))
		}
		return ids
	}
	if got := list("", `{"match":[{"description":"one"}]}`); len(got) != 1 || got[0] != id {
		t.Fatalf("search: %v", got)
	}
	if got := list("?limit=1&offset=1", `{"match":[{"client_id":"h1"}]}`); len(got) != 1 {
		t.Fatalf("paged: %v", got)
	}
	if got := list("", ""); len(got) != 2 {
		t.Fatalf("list: %v", got)
	}
	if r := f.do("user-b", http.MethodGet, "/v2/b/jobs", ""); r.body != `{"jobs":[]}` {
		t.Fatalf("project b sees %s", r.body)
	}
	// Patch: top level replaced, job_schedule merged, version grows.
	r := f.want(f.do("user-a", http.MethodPatch, "/v2/a/jobs/"+id, `{"description":"uno","job_schedule":{"schedule_interval":"2 days"}}`), http.StatusOK)
	if v := decodeTo[map[string]any](t, r.body); v["version"] != 2.0 || v["job_id"] != id {
		t.Fatalf("patch answer %s", r.body)
	}
	d = f.job("a", id)
	if d["description"] != "uno" || sched(d)["schedule_interval"] != "2 days" || sched(d)["time_created"] == nil || d["user_id"] != "user-a" {
		t.Fatalf("patched %v", d)
	}
	f.want(f.do("user-a", http.MethodPatch, "/v2/a/jobs/"+id, `{"colour":"red"}`), http.StatusBadRequest)
	f.want(f.do("user-a", http.MethodPatch, "/v2/a/jobs/"+id, `{"job_id":"other"}`), http.StatusOK)
	if d := f.job("a", id); d["job_id"] != id {
		t.Fatalf("a patch changed the id: %v", d)
	}
	// Replace: 201 with the version; of an unknown id: created with it.
	r = f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id, jobBody("eins", "")), http.StatusCreated)
	if v := decodeTo[map[string]any](t, r.body); v["version"] != 4.0 {
		t.Fatalf("replace answer %s", r.body)
	}
	if d := f.job("a", id); d["description"] != "eins" || d["job_id"] != id {
		t.Fatalf("replaced %v", d)
	}
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/given-id", jobBody("three", "")), http.StatusCreated)
	f.job("a", "given-id")
	// Another project's token, and reads by a read token.
	f.want(f.do("user-b", http.MethodGet, "/v2/a/jobs/"+id, ""), http.StatusForbidden)
	f.want(f.do("read-a", http.MethodDelete, "/v2/a/jobs/"+id, ""), http.StatusForbidden)
	f.want(f.do("user-b", http.MethodGet, "/v2/b/jobs/"+id, ""), http.StatusNotFound)
	f.want(f.do("", http.MethodGet, "/v2/a/jobs", ""), http.StatusUnauthorized)
	// Delete: 204, then 404; again 204.
	f.want(f.do("user-a", http.MethodDelete, "/v2/a/jobs/"+id, ""), http.StatusNoContent)
	f.want(f.do("read-a", http.MethodGet, "/v2/a/jobs/"+id, ""), http.StatusNotFound)
	f.want(f.do("user-a", http.MethodDelete, "/v2/a/jobs/"+id, ""), http.StatusNoContent)
}

// TestFreezerJobRuns: a start runs the job once on its client's host;
// job_schedule follows the run; events start, stop and abort.
func TestFreezerJobRuns(t *testing.T) {
	f := newFarm(t)
	f.agent("other", "elsewhere")
	f.agent("h1", "h1")
	id := f.createJob("user-a", "a", jobBody("one", "start"))
	if s := sched(f.job("a", id)); s["status"] != statusScheduled || s["event"] != "start" {
		t.Fatalf("created with event start: %v", s)
	}
	if a := f.pick("other"); a != nil {
		t.Fatalf("a run pinned to h1 went to another host: %+v", a)
	}
	a := f.pick("h1")
	if a == nil || !strings.Contains(a.Command, "echo one") {
		t.Fatalf("h1 got %+v", a)
	}
	if s := sched(f.job("a", id)); s["status"] != statusRunning {
		t.Fatalf("running: %v", s)
	}
	r := f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id+"/event", `{"start":null}`), http.StatusAccepted)
	if r.body != `{"result":"start already requested"}` {
		t.Fatalf("start while running: %s", r.body)
	}
	f.finish("h1", a, 0)
	s := sched(f.job("a", id))
	if s["status"] != statusCompleted || s["result"] != resultSuccess || s["time_started"].(float64) <= 0 {
		t.Fatalf("finished: %v", s)
	}
	// Start again: a new run, which fails.
	r = f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id+"/event", `{"start":null}`), http.StatusAccepted)
	if r.body != `{"result":"success"}` {
		t.Fatalf("start: %s", r.body)
	}
	a = f.pick("h1")
	f.finish("h1", a, 1)
	if s := sched(f.job("a", id)); s["status"] != statusCompleted || s["result"] != resultFail {
		t.Fatalf("failed run: %v", s)
	}
	// Stop takes back a run that has not started; abort cancels a running one.
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id+"/event", `{"start":null}`), http.StatusAccepted)
	r = f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id+"/event", `{"stop":null}`), http.StatusAccepted)
	if r.body != `{"result":"success"}` || sched(f.job("a", id))["result"] != resultAborted {
		t.Fatalf("stop: %s %v", r.body, sched(f.job("a", id)))
	}
	if a := f.pick("h1"); a != nil {
		t.Fatalf("a stopped run was picked: %+v", a)
	}
	r = f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id+"/event", `{"stop":null}`), http.StatusAccepted)
	if r.body != `{"result":"stop already requested"}` {
		t.Fatalf("stop again: %s", r.body)
	}
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id+"/event", `{"start":null}`), http.StatusAccepted)
	if a = f.pick("h1"); a == nil {
		t.Fatal("no run after a start")
	}
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id+"/event", `{"abort":null}`), http.StatusAccepted)
	if s := sched(f.job("a", id)); s["status"] != statusCompleted || s["result"] != resultAborted || s["event"] != "abort" {
		t.Fatalf("aborted: %v", s)
	}
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id+"/event", `{"restart":null}`), http.StatusBadRequest)
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id+"/event", `{"start":null,"stop":null}`), http.StatusBadRequest)
	f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/nope/event", `{"start":null}`), http.StatusNotFound)
	// Two more runs: the job keeps its newest MaxRuns; deleting it
	// forgets them all.
	for range 2 {
		f.want(f.do("user-a", http.MethodPost, "/v2/a/jobs/"+id+"/event", `{"start":null}`), http.StatusAccepted)
		f.finish("h1", f.pick("h1"), 0)
	}
	tmpl, _ := f.store.State().TemplateByName("a", id)
	runs := func() int {
		page, _, _ := f.store.State().ExecutionsAfter("", 100, tmpl.ID)
		return len(page)
	}
	if n := runs(); n != MaxRuns {
		t.Fatalf("%d runs kept, want %d", n, MaxRuns)
	}
	f.want(f.do("user-a", http.MethodDelete, "/v2/a/jobs/"+id, ""), http.StatusNoContent)
	if n := runs(); n != 0 {
		t.Fatalf("%d runs left after delete", n)
	}
}

// TestFreezerSessionJobs: adding two jobs to a session whose schedule
// starts them runs both with the tag protocol; the session completes
// when both did; remove takes a job out.
func TestFreezerSessionJobs(t *testing.T) {
	f := newFarm(t)
	f.agent("h1", "h1")
	j1 := f.createJob("user-a", "a", jobBody("one", ""))
	j2 := f.createJob("user-a", "a", jobBody("two", ""))
	sid := f.create("user-a", "a", `{"hold_off":600,"schedule":{"event":"start","schedule_interval":"1 days"}}`)
	f.want(f.do("user-a", http.MethodPut, "/v2/a/sessions/"+sid+"/jobs/"+j1, ""), http.StatusNoContent)
	f.want(f.do("user-a", http.MethodPut, "/v2/a/sessions/"+sid+"/jobs/"+j2, ""), http.StatusNoContent)
	f.want(f.do("user-a", http.MethodPut, "/v2/a/sessions/"+sid+"/jobs/nope", ""), http.StatusNotFound)
	f.want(f.do("user-a", http.MethodPut, "/v2/a/sessions/"+strings.Repeat("0", 32)+"/jobs/"+j1, ""), http.StatusNotFound)
	s := f.show("read-a", "a", sid)
	if s["session_tag"] != 1.0 || s["status"] != statusRunning {
		t.Fatalf("the first member started a run of the session: %v", s)
	}
	for _, j := range []string{j1, j2} {
		d := f.job("a", j)
		if d["session_id"] != sid || d["session_tag"] != 1.0 || sched(d)["schedule_interval"] != "1 days" || sched(d)["event"] != "start" {
			t.Fatalf("member %s: %v", j, d)
		}
	}
	// Both run (on h1, one after the other), then the session completes.
	for range 2 {
		a := f.pick("h1")
		if a == nil {
			t.Fatal("a member did not run")
		}
		if members := f.show("read-a", "a", sid)["jobs"].(map[string]any); len(members) != 2 {
			t.Fatalf("members %v", members)
		}
		f.finish("h1", a, 0)
	}
	s = f.show("read-a", "a", sid)
	if s["status"] != statusCompleted || s["result"] != resultSuccess || s["time_end"].(float64) <= 0 {
		t.Fatalf("session after both: %v", s)
	}
	for j, m := range s["jobs"].(map[string]any) {
		if m := m.(map[string]any); m["status"] != statusCompleted || m["result"] != resultSuccess || m["client_id"] != "h1" {
			t.Fatalf("member %s: %v", j, m)
		}
	}
	// The list search sees the members' flattened keys.
	r := f.want(f.do("read-a", http.MethodGet, "/v2/a/sessions", `{"match":[{"client_id":"h1"},{"status":"completed"}]}`), http.StatusOK)
	if !strings.Contains(r.body, sid) {
		t.Fatalf("search by member: %s", r.body)
	}
	// Actions through the route: the vectors' shapes.
	act := func(body string, code int) string {
		return f.want(f.do("user-a", http.MethodPost, "/v2/a/sessions/"+sid+"/action", body), code).body
	}
	if got := act(`{"start":{"job_id":"`+j1+`","current_tag":1}}`, http.StatusAccepted); got != `{"result":"hold-off","session_tag":1}` {
		t.Fatalf("start inside hold-off: %s", got)
	}
	act(`{"start":{"job_id":"`+j1+`","current_tag":2}}`, http.StatusBadRequest)
	act(`{"start":{"job_id":"nope","current_tag":1}}`, http.StatusBadRequest)
	act(`{"restart":{"job_id":"`+j1+`"}}`, http.StatusMethodNotAllowed)
	act(`{"start":{},"end":{}}`, http.StatusBadRequest)
	act(`[1]`, http.StatusBadRequest)
	act(`{`, StatusMalformed)
	if got := f.want(f.do("user-a", http.MethodPost, "/v2/a/sessions/"+sid+"/actions", `{"end":{"job_id":"`+j1+`","current_tag":1,"result":"fail"}}`), http.StatusAccepted).body; got != `{"result":"success","session_tag":1}` {
		t.Fatalf("end: %s", got)
	}
	// Remove: out of the map, the job without session, event stop.
	f.want(f.do("user-a", http.MethodDelete, "/v2/a/sessions/"+sid+"/jobs/"+j2, ""), http.StatusNoContent)
	if members := f.show("read-a", "a", sid)["jobs"].(map[string]any); len(members) != 1 || members[j1] == nil {
		t.Fatalf("members after remove: %v", members)
	}
	if d := f.job("a", j2); d["session_id"] != "" || d["session_tag"] != 0.0 || sched(d)["event"] != statusStop {
		t.Fatalf("removed job: %v", d)
	}
	f.want(f.do("user-b", http.MethodPut, "/v2/a/sessions/"+sid+"/jobs/"+j2, ""), http.StatusForbidden)
	f.want(f.do("", http.MethodPost, "/v2/a/sessions/"+sid+"/action", `{}`), http.StatusUnauthorized)
}

// TestFreezerConcurrentWritesAllLand: patches of one session from many
// clients at once all land (each write is guarded by the revision it
// read, and retried when another got there first).
func TestFreezerConcurrentWritesAllLand(t *testing.T) {
	f := newFarm(t)
	sid := f.create("user-a", "a", `{"schedule":{}}`)
	const n = 8
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"jobs":{"j%d":{"client_id":"c%d"}}}`, i, i)
			codes[i] = f.do("user-a", http.MethodPatch, "/v2/a/sessions/"+sid, body).code
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("patch %d: %d", i, c)
		}
	}
	s := f.show("read-a", "a", sid)
	if jobs := s["jobs"].(map[string]any); len(jobs) != n || s["_version"] != float64(n+1) {
		t.Fatalf("%d of %d members landed, version %v", len(jobs), n, s["_version"])
	}
}

// TestFreezerJobSamples: §1.7's create sample (with a client_id) and its
// list search sample, sent as the GET's body.
func TestFreezerJobSamples(t *testing.T) {
	f := newFarm(t)
	const client = "752d8bd43d654e7a840bbfda77ce41af_szaher"
	withClient := strings.Replace(sampleJob, `{`, `{"client_id":"`+client+`",`, 1)
	wanted := f.createJob("user-a", "a", strings.Replace(withClient, `"event": "start"`, `"event": "stop"`, 1))
	f.createJob("user-a", "a", strings.NewReplacer(`"5 minutes"`, `"10 days"`, `"event": "start"`, `"event": "stop"`).Replace(withClient))
	f.createJob("user-a", "a", jobBody("other client", "stop"))
	r := f.want(f.do("read-a", http.MethodGet, "/v2/a/jobs", `{"match_not": [{"schedule_interval": "10 days"}], "match": [{"client_id": "`+client+`"}]}`), http.StatusOK)
	jobs := decodeTo[map[string][]map[string]any](t, r.body)["jobs"]
	if len(jobs) != 1 || jobs[0]["job_id"] != wanted {
		t.Fatalf("search sample: %s", r.body)
	}
	d := jobs[0]
	action := d["job_actions"].([]any)[0].(map[string]any)
	fa := action["freezer_action"].(map[string]any)
	if d["description"] != "Test-0001" || action["max_retries"] != 5.0 || action["max_retries_interval"] != 6.0 ||
		fa["backup_name"] != "test0001_backup" || fa["remove_older_than"] != 365.0 || sched(d)["schedule_interval"] != "5 minutes" {
		t.Fatalf("the sample as stored: %v", d)
	}
	// The sample's event start runs it on its client's host (the part
	// after the project prefix is not this project's, so the whole
	// client_id names the host).
	id := f.createJob("user-a", "a", withClient)
	tmpl, _ := f.store.State().TemplateByName("a", id)
	page, _, _ := f.store.State().ExecutionsAfter("", 10, tmpl.ID)
	if len(page) != 1 || page[0].Host != client || !strings.Contains(page[0].Args[0], "freezer-agent --action 'backup'") {
		t.Fatalf("the sample's run: %+v", page)
	}
	// freezer's default client_id, "<project>_<host>": the host after
	// this project's prefix.
	id = f.createJob("user-a", "a", strings.Replace(jobBody("x", "start"), `"client_id":"h1"`, `"client_id":"a_h9"`, 1))
	tmpl, _ = f.store.State().TemplateByName("a", id)
	if page, _, _ = f.store.State().ExecutionsAfter("", 10, tmpl.ID); len(page) != 1 || page[0].Host != "h9" {
		t.Fatalf("a_h9's run: %+v", page)
	}
}
