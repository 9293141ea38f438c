package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestFreezerClientDrivesSessions runs the real OpenStack Freezer client
// against croft dev. .ci/run installs python3-freezerclient; without it
// (no apt here) the test says so and skips.
func TestFreezerClientDrivesSessions(t *testing.T) {
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import freezerclient.v2.client, keystoneauth1.token_endpoint").Run(); err != nil {
		t.Skipf("python3-freezerclient is not installed (apt-get install python3-freezerclient; .ci/run does): %v", err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	dev := start(t, "dev", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	token := adminToken(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", freezerClientScript, dev.url, token).CombinedOutput()
	if err != nil {
		t.Fatalf("freezerclient: %v\n%s", err, out)
	}
	want := "created 32\nlisted True\ngot nightly 30 active 1 days\nupdated nightly-2\ndeleted None\n"
	if got := string(out); !strings.HasSuffix(got, want) {
		t.Fatalf("freezerclient printed\n%s\nwant\n%s", got, want)
	}
}
