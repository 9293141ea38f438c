package freezer

import (
	"strings"
	"testing"
)

// sampleJob is §1.7's job-create-request.json.
const sampleJob = `{
    "description": "Test-0001",
    "job_schedule": {"schedule_interval": "5 minutes", "status": "scheduled", "event": "start"},
    "job_actions": [
        {
            "max_retries": 5,
            "max_retries_interval": 6,
            "freezer_action": {
                "backup_name": "test0001_backup", "container": "test0001_container",
                "no_incremental": true, "path_to_backup": "/etc/",
                "log_file": "/home/saad/job0001.log", "snapshot": true,
                "action": "backup", "remove_older_than": 365
            }
        }
    ]
}`

func mustDecode(t *testing.T, s string) document {
	t.Helper()
	d, err := decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCheckJobSample: the sample has no client_id, which the schema
// requires (Croft needs it: it names the agent): 400 until it has one.
func TestCheckJobSample(t *testing.T) {
	d := mustDecode(t, sampleJob)
	if err := checkJob(d, false); err == nil || !strings.Contains(err.Error(), "client_id is required") {
		t.Fatalf("the sample without client_id: %v", err)
	}
	d["client_id"] = "752d8bd43d654e7a840bbfda77ce41af_szaher"
	if err := checkJob(d, false); err != nil {
		t.Fatalf("the sample with client_id: %v", err)
	}
}

func TestCheckJobRefuses(t *testing.T) {
	base := `"client_id":"h","job_schedule":{},`
	for name, body := range map[string]string{
		"unknown property":      `{` + base + `"job_actions":[],"colour":"red"}`,
		"actions not a list":    `{` + base + `"job_actions":{}}`,
		"action not an object":  `{` + base + `"job_actions":[1]}`,
		"no freezer_action":     `{` + base + `"job_actions":[{}]}`,
		"exec without command":  `{` + base + `"job_actions":[{"freezer_action":{"action":"exec"}}]}`,
		"flag name":             `{` + base + `"job_actions":[{"freezer_action":{"action":"backup","--x y":1}}]}`,
		"nested value":          `{` + base + `"job_actions":[{"freezer_action":{"action":"backup","x":{"y":1}}}]}`,
		"retries negative":      `{` + base + `"job_actions":[{"max_retries":-1,"freezer_action":{}}]}`,
		"retries huge":          `{` + base + `"job_actions":[{"max_retries":1e30,"freezer_action":{}}]}`,
		"interval huge":         `{` + base + `"job_actions":[{"max_retries_interval":999999999,"freezer_action":{}}]}`,
		"mandatory not boolean": `{` + base + `"job_actions":[{"mandatory":"yes","freezer_action":{}}]}`,
		"bad schedule":          `{"client_id":"h","job_actions":[],"job_schedule":{"event":"go"}}`,
		"client_id pattern":     `{"client_id":"a b","job_actions":[],"job_schedule":{}}`,
		"job_id pattern":        `{` + base + `"job_actions":[],"job_id":"a/b"}`,
		"action pattern":        `{` + base + `"job_actions":[{"freezer_action":{"action":"rm -rf"}}]}`,
		"no job_actions":        `{"client_id":"h","job_schedule":{}}`,
		"session_tag string":    `{` + base + `"job_actions":[],"session_tag":"1"}`,
	} {
		if err := checkJob(mustDecode(t, body), false); err == nil {
			t.Errorf("%s: accepted %s", name, body)
		}
	}
	many := `{` + base + `"job_actions":[` + strings.Repeat(`{"freezer_action":{}},`, MaxActions) + `{"freezer_action":{}}]}`
	if err := checkJob(mustDecode(t, many), false); err == nil {
		t.Errorf("%d actions accepted", MaxActions+1)
	}
	if err := checkJob(mustDecode(t, `{"description":"x"}`), true); err != nil {
		t.Errorf("a patch needs no required field: %v", err)
	}
}

// TestNewJobDoc: what JobDoc.create adds: times, action ids, the
// action_defaults copied into each action that lacks them.
func TestNewJobDoc(t *testing.T) {
	d := mustDecode(t, `{"client_id":"h","job_schedule":{"event":"stop"},
		"action_defaults":{"storage":"local","container":"dflt"},
		"job_actions":[{"freezer_action":{"action":"backup","container":"mine"}},{"action_id":"given","freezer_action":{"action":"exec","command":"true"}}]}`)
	n := 0
	if err := newJobDoc(d, "job1", "p", "u", 1234, func() (string, error) { n++; return "id" + itoa(int64(n)), nil }); err != nil {
		t.Fatal(err)
	}
	if _, ok := d["action_defaults"]; ok {
		t.Fatal("action_defaults kept")
	}
	a0 := d["job_actions"].([]any)[0].(document)
	a1 := d["job_actions"].([]any)[1].(document)
	fa0, fa1 := a0["freezer_action"].(document), a1["freezer_action"].(document)
	if fa0["container"] != "mine" || fa0["storage"] != "local" || fa1["container"] != "dflt" {
		t.Fatalf("defaults: %v %v", fa0, fa1)
	}
	if a0["action_id"] != "id1" || a1["action_id"] != "given" || a0["project_id"] != "p" || a0["user_id"] != "u" {
		t.Fatalf("ids: %v %v", a0, a1)
	}
	sched := d["job_schedule"].(document)
	if c, _ := integer(sched["time_created"]); c != 1234 {
		t.Fatalf("time_created %v", sched["time_created"])
	}
	if s, _ := integer(sched["time_started"]); s != -1 || sched["event"] != "stop" {
		t.Fatalf("schedule %v", sched)
	}
	if d["job_id"] != "job1" || d["project_id"] != "p" || d["user_id"] != "u" {
		t.Fatalf("identity %v", d)
	}
}
