package freezer

import (
	"encoding/json"
	"testing"
)

// vectorSession is test_sessions.py's session: tag 5, started at 999,
// hold-off 30, with member job "j".
func vectorSession(t *testing.T) document {
	t.Helper()
	d, err := decode([]byte(`{"session_tag":5,"time_start":999,"hold_off":30,"status":"running",
		"jobs":{"j":{"client_id":"c","status":"completed","result":"success","time_started":1,"time_ended":2}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestStartActionVectors are freezer-api's unit-test vectors of the start
// action (§1.5).
func TestStartActionVectors(t *testing.T) {
	const inside, outside = 999 + 10, 999 + 1000
	for _, c := range []struct {
		name       string
		tag, now   int64
		result     string
		sessionTag int64
		running    bool // the member marked running
	}{
		{"current tag outside hold-off", 5, outside, resultSuccess, 6, true},
		{"older tag inside hold-off", 4, inside, resultSuccess, 5, true},
		{"current tag inside hold-off", 5, inside, resultHoldOff, 5, false},
		{"older tag outside hold-off", 2, outside, resultOutOfSync, 5, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := vectorSession(t)
			result, tag, err := startAction(d, "j", c.tag, c.now)
			if err != nil || result != c.result || tag != c.sessionTag {
				t.Fatalf("got %q %d %v, want %q %d", result, tag, err, c.result, c.sessionTag)
			}
			if stored, _ := integer(d["session_tag"]); stored != c.sessionTag {
				t.Fatalf("stored tag %d, want %d", stored, c.sessionTag)
			}
			m := d["jobs"].(document)["j"].(document)
			if got := m["status"] == statusRunning; got != c.running {
				t.Fatalf("member %v, running %v want %v", m, got, c.running)
			}
			if c.running {
				if started, _ := integer(m["time_started"]); started != c.now {
					t.Fatalf("time_started %v, want %d", m["time_started"], c.now)
				}
			}
			if c.sessionTag == 6 {
				if ts, _ := integer(d["time_start"]); ts != c.now || d["status"] != statusRunning {
					t.Fatalf("a new run of the session: time_start %v status %v", d["time_start"], d["status"])
				}
			}
		})
	}
	t.Run("tag too high", func(t *testing.T) {
		if _, _, err := startAction(vectorSession(t), "j", 6, outside); err == nil {
			t.Fatal("a tag above the session's was taken")
		}
	})
	t.Run("not a member", func(t *testing.T) {
		if _, _, err := startAction(vectorSession(t), "other", 5, outside); err == nil {
			t.Fatal("a job outside the session was started")
		}
	})
	t.Run("no hold-off: freezer-api's 60", func(t *testing.T) {
		d := vectorSession(t)
		delete(d, "hold_off")
		if r, _, _ := startAction(d, "j", 5, 999+59); r != resultHoldOff {
			t.Fatalf("59 s after the start: %q, want hold-off", r)
		}
	})
}

// TestEndAction: the end vector (success, the tag unchanged) and the
// session completing with the overall result once every member did.
func TestEndAction(t *testing.T) {
	d := vectorSession(t)
	d["jobs"].(document)["k"] = document{"status": statusRunning}
	result, tag, err := endAction(d, "j", resultSuccess, 2000)
	if err != nil || result != resultSuccess || tag != 5 {
		t.Fatalf("end: %q %d %v", result, tag, err)
	}
	if d["status"] != statusRunning {
		t.Fatalf("completed with a member running: %v", d)
	}
	if _, _, err := endAction(d, "k", resultFail, 2001); err != nil {
		t.Fatal(err)
	}
	if d["status"] != statusCompleted || d["result"] != resultFail {
		t.Fatalf("status %v result %v, want completed fail", d["status"], d["result"])
	}
	if end, _ := integer(d["time_end"]); end != 2001 {
		t.Fatalf("time_end %v", d["time_end"])
	}
	if _, _, err := endAction(d, "nobody", resultSuccess, 1); err == nil {
		t.Fatal("ended a job outside the session")
	}
}

func TestReadAction(t *testing.T) {
	for body, want := range map[string]string{
		`{"start":{"job_id":"j","current_tag":3}}`:                  "start j 3",
		`{"end":{"job_id":"j","current_tag":3,"result":"success"}}`: "end j 3",
		`{"start":{"job_id":"j"},"end":{"job_id":"j"}}`:             "400",
		`{"start":"j"}`:              "400",
		`{"restart":{"job_id":"j"}}`: "405",
	} {
		d, err := decode([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		kind, job, tag, _, err := readAction(d)
		got := kind + " " + job + " " + json.Number(itoa(tag)).String()
		switch {
		case err == errNotImplemented:
			got = "405"
		case err != nil:
			got = "400"
		}
		if got != want {
			t.Errorf("%s: %q, want %q", body, got, want)
		}
	}
}

func itoa(n int64) string { return string(num(n)) }
