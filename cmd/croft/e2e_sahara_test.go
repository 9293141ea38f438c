package main

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/native"
)

// saharaClientScript drives the Sahara v1.1 routes with Debian's
// python3-saharaclient, unmodified: a token and the endpoint with the
// tenant (<url>/v1.1/<tenant>, as the Keystone catalog would give it),
// no Keystone. It uploads a script, makes a Shell job of it, pages the
// jobs, runs the job on the pool "edp" and waits for it, cancels a long
// one, and prints what it saw.
const saharaClientScript = `
import sys, time
from keystoneauth1 import session as ksession
from keystoneauth1 import token_endpoint
from saharaclient.api import client
from saharaclient.api.base import APIException
url, tok = sys.argv[1], sys.argv[2]
c = client.Client(session=ksession.Session(auth=token_endpoint.Token(url, tok)), sahara_url=url + "/v1.1/default")
def wait(eid, states):
    deadline = time.time() + 60
    while time.time() < deadline:
        e = c.job_executions.get(eid)
        if e.info["status"] in states:
            return e
        time.sleep(0.1)
    return e
jbi = c.job_binary_internals.create("hello.sh", 'echo "hello $1 $GREETING from $CROFT_PROJECT"')
jb = c.job_binaries.create("hello.sh", "internal-db://" + jbi.id, "the script")
job = c.jobs.create("hello", "Shell", mains=[jb.id], description="e2e")
print("job", job.type, len(job.id), job.mains[0]["url"] == "internal-db://" + jbi.id)
c.jobs.update(job.id, description="e2e-2")
print("updated", c.jobs.get(job.id).description)
for n in ("b-job", "c-job"):
    c.jobs.create(n, "Shell", mains=[jb.id])
page = c.jobs.list(limit=2, sort_by="name", reverse=True)
print("page", [j.name for j in page], page.next == page[1].id)
cl = [x for x in c.clusters.list() if x.name == "edp"][0]
print("cluster", cl.status, c.clusters.get(cl.id).name)
ex = c.job_executions.create(job.id, cl.id, configs={"args": ["world"], "params": {"GREETING": "hi"}})
print("exec", ex.info["status"] in ("PENDING", "RUNNING"))
e = wait(ex.id, ("SUCCEEDED", "FAILED", "DONEWITHERROR", "KILLED"))
print("ran", e.info["status"], e.return_code, e.info.get("croft_worker"))
log = c.job_executions.api.get(url + sys.argv[3] + "/" + e.oozie_job_id + "/log?format=json").json()
print("output", [l["text"] for l in log["lines"] if l["text"].startswith("hello")])
jbi2 = c.job_binary_internals.create("sleep.sh", "sleep 600")
job2 = c.jobs.create("sleeper", "Shell", mains=[c.job_binaries.create("sleep.sh", "internal-db://" + jbi2.id).id])
ex2 = c.job_executions.create(job2.id, cl.id)
print("running", wait(ex2.id, ("RUNNING",)).info["status"])
r = c.job_executions.api.get("/job-executions/%s/cancel" % ex2.id)
print("cancel", r.status_code, r.json()["job_execution"]["info"]["status"], c.job_executions.get(ex2.id).info["status"])
try:
    c.jobs.delete(job.id)
except APIException as err:
    print("in use", err.error_code, err.error_name)
c.job_executions.delete(ex.id)
c.job_executions.delete(ex2.id)
c.jobs.delete(job.id)
print("left", sorted(j.name for j in c.jobs.list()))
`

// TestSaharaClientRunsShellJob: the real python-saharaclient makes a
// Shell job from an uploaded script and runs it on the pool "edp": it
// really runs on the agent in that pool, with its args and params, and
// reaches SUCCEEDED; a long one is KILLED by cancel. .ci/run installs
// python3-saharaclient; without it the test says so and skips.
func TestSaharaClientRunsShellJob(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import saharaclient.api.client, keystoneauth1.token_endpoint").Run(); err != nil {
		t.Skipf("python3-saharaclient is not installed (apt-get install python3-saharaclient; .ci/run does): %v", err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dev := start(t, "dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	token := adminToken(t, data)
	startProc(t, false, "agent", "--coordinator", dev.url, "--name", "edp-1", "--affinity", "edp", "--data-dir", filepath.Join(dir, "edp-1"),
		"--token-file", filepath.Join(data, AdminTokenFile))
	// The pool exists once its agent registered.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var body map[string]any
		code := nativeCall(t, dev.url, token, http.MethodGet, "/v1.1/default/clusters", "", &body)
		if cs, _ := body["clusters"].([]any); code == http.StatusOK && len(cs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cluster: %d %v", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", saharaClientScript, dev.url, token, native.PathJobs).CombinedOutput()
	if err != nil {
		t.Fatalf("saharaclient: %v\n%s", err, out)
	}
	got := string(out)
	want := `job Shell 36 True
updated e2e-2
page ['hello', 'c-job'] True
cluster Active edp
exec True
ran SUCCEEDED 0 edp-1
output ['hello world hi from default\n']
running RUNNING
cancel 200 KILLED KILLED
in use 400 DELETION_FAILED
left ['b-job', 'c-job', 'sleeper']
`
	if !strings.HasSuffix(got, want) {
		t.Fatalf("saharaclient printed\n%s\nwant\n%s", got, want)
	}
}
