package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/native"
)

// freezerClientScript drives the Freezer v2 sessions routes with Debian's
// python3-freezerclient, unmodified: a token and an endpoint, no Keystone
// (keystoneauth's token_endpoint plugin). It prints what it saw.
const freezerClientScript = `
import sys
from keystoneauth1 import session as ksession
from keystoneauth1 import token_endpoint
from freezerclient.v2 import client
url, tok = sys.argv[1], sys.argv[2]
c = client.Client(session=ksession.Session(auth=token_endpoint.Token(url, tok)), endpoint=url, project_id='default')
sid = c.sessions.create({"description": "nightly", "schedule": {"schedule_interval": "1 days"}})
print("created", len(sid))
print("listed", [s["session_id"] for s in c.sessions.list()] == [sid])
s = c.sessions.get(sid)
print("got", s["description"], s["hold_off"], s["status"], s["schedule"]["schedule_interval"])
c.sessions.update(sid, {"description": "nightly-2"})
print("updated", c.sessions.get(sid)["description"])
c.sessions.delete(sid)
print("deleted", c.sessions.get(sid))
`

// freezerPython is the Python that has Debian's python3-freezerclient
// (python3 on PATH may be another one).
const freezerPython = "/usr/bin/python3"

// freezerDev skips the test when python3-freezerclient is missing, else
// starts croft dev: its directory, data directory, process and admin token.
func freezerDev(t *testing.T) (dir, data string, dev *proc, token string) {
	t.Helper()
	if err := exec.Command(freezerPython, "-c", "import freezerclient.v2.client, keystoneauth1.token_endpoint").Run(); err != nil {
		t.Skipf("python3-freezerclient is not installed (apt-get install python3-freezerclient; .ci/run does): %v", err)
	}
	dir = t.TempDir()
	data = filepath.Join(dir, "data")
	dev = start(t, "dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	return dir, data, dev, adminToken(t, data)
}

// TestFreezerClientDrivesSessions runs the real OpenStack Freezer client
// against croft dev. .ci/run installs python3-freezerclient; without it
// (no apt here) the test says so and skips.
func TestFreezerClientDrivesSessions(t *testing.T) {
	_, _, dev, token := freezerDev(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, freezerPython, "-c", freezerClientScript, dev.url, token).CombinedOutput()
	if err != nil {
		t.Fatalf("freezerclient: %v\n%s", err, out)
	}
	want := "created 32\nlisted True\ngot nightly 30 active 1 days\nupdated nightly-2\ndeleted None\n"
	if got := string(out); !strings.HasSuffix(got, want) {
		t.Fatalf("freezerclient printed\n%s\nwant\n%s", got, want)
	}
}

// freezerSessionScript makes two Freezer jobs, one for each of two
// agents, puts them in a session whose schedule starts them, waits for
// the session to complete, and drives the tag protocol through the
// client. It prints what it saw.
const freezerSessionScript = `
import sys, time
from keystoneauth1 import session as ksession
from keystoneauth1 import token_endpoint
from freezerclient.v2 import client
url, tok, a, b = sys.argv[1:5]
c = client.Client(session=ksession.Session(auth=token_endpoint.Token(url, tok)), endpoint=url, project_id='default')
def job(host, word):
    return {"description": "e2e " + word, "client_id": host, "job_schedule": {},
            "job_actions": [{"max_retries": 2, "max_retries_interval": 1,
                             "freezer_action": {"action": "exec", "command": "echo ran " + word + " in $CROFT_PROJECT"}}]}
j1 = c.jobs.create(job(a, "one"))
j2 = c.jobs.create(job(b, "two"))
print("jobs", len(j1), len(j2), c.jobs.get(j1)["job_schedule"].get("status", "-"))
sid = c.sessions.create({"description": "pair", "hold_off": 600, "schedule": {"event": "start", "status": "scheduled"}})
c.sessions.add_job(sid, j1)
c.sessions.add_job(sid, j2)
deadline = time.time() + 60
while time.time() < deadline:
    s = c.sessions.get(sid)
    if s["status"] == "completed":
        break
    time.sleep(0.1)
print("session", s["session_tag"], s["status"], s["result"])
print("members", sorted((m["client_id"], m["status"], m["result"]) for m in s["jobs"].values()))
for j in (j1, j2):
    d = c.jobs.get(j)
    sch = d["job_schedule"]
    print("job", d["session_id"] == sid, d["session_tag"], sch["status"], sch["result"], sch["event"], sch["time_ended"] >= sch["time_started"] > 0)
r = c.sessions.start_session(sid, j1, 1)
print("again", r["result"], r["session_tag"])
r = c.sessions.end_session(sid, j1, 1, "success")
print("end", r["result"], r["session_tag"])
print("search", [x["job_id"] for x in c.jobs.list_all(search={"match": [{"client_id": a}]})] == [j1])
c.sessions.remove_job(sid, j2)
print("removed", sorted(c.sessions.get(sid)["jobs"]) == [j1], c.jobs.get(j2)["session_id"] == "", c.jobs.get(j2)["job_schedule"]["event"])
print("event", c.jobs.abort_job(j1)["result"], c.jobs.abort_job(j1)["result"])
c.jobs.delete(j2)
print("deleted", c.jobs.get(j2))
`

// TestFreezerSessionRunsJobsOnTwoAgents: a Freezer session with two jobs
// on two agents is started by its schedule; both jobs really run, each on
// the agent its client_id names, and the session's tag and results follow
// the protocol, all through the real python-freezerclient.
func TestFreezerSessionRunsJobsOnTwoAgents(t *testing.T) {
	dir, data, dev, token := freezerDev(t)
	tokenFile := filepath.Join(data, AdminTokenFile)
	for _, name := range []string{"fz-a", "fz-b"} {
		startProc(t, false, "agent", "--coordinator", dev.url, "--name", name, "--data-dir", filepath.Join(dir, name), "--token-file", tokenFile)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, freezerPython, "-c", freezerSessionScript, dev.url, token, "fz-a", "fz-b").CombinedOutput()
	if err != nil {
		t.Fatalf("freezerclient: %v\n%s", err, out)
	}
	want := `jobs 32 32 -
session 1 completed success
members [('fz-a', 'completed', 'success'), ('fz-b', 'completed', 'success')]
job True 1 completed success start True
job True 1 completed success start True
again hold-off 1
end success 1
search True
removed True True stop
event success abort already requested
deleted None
`
	if got := string(out); !strings.HasSuffix(got, want) {
		t.Fatalf("freezerclient printed\n%s\nwant\n%s", got, want)
	}
	// Each job ran once, on the agent its client_id names, and its
	// output is its run's log.
	var execs []client.Execution
	if code := nativeCall(t, dev.url, token, http.MethodGet, client.PathExecutions, "", &execs); code != http.StatusOK {
		t.Fatalf("executions: %d", code)
	}
	ran := map[string]string{}
	for _, e := range execs {
		var log native.LogReply
		if code := nativeCall(t, dev.url, token, http.MethodGet, fmt.Sprintf("%s/%d/log?format=json", native.PathJobs, e.JobID), "", &log); code != http.StatusOK {
			t.Fatalf("log of %d: %d", e.JobID, code)
		}
		for _, l := range log.Lines {
			if strings.HasPrefix(l.Text, "ran ") {
				ran[e.Worker] += l.Text
			}
		}
	}
	if ran["fz-a"] != "ran one in default\n" || ran["fz-b"] != "" {
		t.Fatalf("runs by worker: %q (fz-b's job was deleted with its runs)", ran)
	}
}
