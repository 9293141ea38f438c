package raftstore

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestEnvFromTextReadsLikeTheAgent(t *testing.T) {
	// The cases of agent.TestParseEnvironment, without the $(VAR)
	// expansion, which the agent does when it runs the job.
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{"", nil},
		{`A=1\nB=2`, map[string]string{"A": "1", "B": "2"}},
		{"A=1\nB=2\r\n", map[string]string{"A": "1", "B": "2"}},
		{`A=1\n\n  B = 2 \nnoequals\n=x\nC=`, map[string]string{"A": "1", "B": " 2", "C": ""}},
		{`X=a=b`, map[string]string{"X": "a=b"}},
		{`P=$(HOME)/bin\nP=2`, map[string]string{"P": "2"}},
		{"noequals", nil},
	} {
		if got := EnvFromText(tc.in); !maps.Equal(got, tc.want) {
			t.Errorf("EnvFromText(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestEnvTextRoundTrips(t *testing.T) {
	env := map[string]string{"B": " leading space", "A": "x=y", "PATH": "$(PATH):/opt", "EMPTY": "", "CR": "a\rb"}
	if err := checkEnv(env); err != nil {
		t.Fatal(err)
	}
	text := EnvText(env)
	if want := "A=x=y\nB= leading space\nCR=a\rb\nEMPTY=\nPATH=$(PATH):/opt"; text != want {
		t.Fatalf("EnvText = %q, want %q", text, want)
	}
	if back := EnvFromText(text); !maps.Equal(back, env) {
		t.Fatalf("EnvFromText(EnvText(env)) = %v, want %v", back, env)
	}
	// What a Coalition text parses to always passes the checks.
	if err := checkEnv(EnvFromText(`A=1\n\n  B = 2 \nnoequals\n=x\nC=\nMY KEY=v\r`)); err != nil {
		t.Fatal(err)
	}
}

func TestEnvLimits(t *testing.T) {
	for _, env := range []map[string]string{
		{"": "x"}, {"A=B": "x"}, {" A": "x"}, {"A\x00": "x"}, {"A\nB": "x"}, {`A\nB`: "x"},
		{"A": "x\ny"}, {"A": `x\ny`}, {"A": "x\x00"}, {"A": "x "}, {"A": "x\t"},
	} {
		if err := CheckPatch(&JobPatch{Env: &env}); !errors.Is(err, ErrInvalid) {
			t.Errorf("environment %q: %v, want ErrInvalid", env, err)
		}
	}
	big := map[string]string{"A": strings.Repeat("x", MaxEnvironmentBytes)}
	if err := CheckSpec(&JobSpec{Env: big}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a large environment: %v, want ErrTooLarge", err)
	}
	// A text at the limit gives a map within it.
	text := strings.Repeat("A=1\n", MaxEnvironmentBytes/4-1) + "ZZ=1"
	if env := EnvFromText(text); len(text) != MaxEnvironmentBytes || CheckSpec(&JobSpec{Environment: text, Env: env}) != nil {
		t.Errorf("a text of %d bytes: %v", len(text), CheckSpec(&JobSpec{Environment: text, Env: env}))
	}
}

func TestEnvOfSpecsAndPatches(t *testing.T) {
	h := newHarness(t)
	ids := h.create(
		JobSpec{Command: "text only (an old entry)", Environment: `A=1\nA=2`},
		JobSpec{Command: "map only", Env: map[string]string{"M": "1"}},
		JobSpec{Command: "both", Environment: "T=1", Env: map[string]string{"T": "1"}},
		JobSpec{Command: "empty map", Env: map[string]string{}},
	)
	for i, want := range []map[string]string{{"A": "2"}, {"M": "1"}, {"T": "1"}, nil} {
		if j := h.job(ids[i]); !maps.Equal(j.Env, want) || (want == nil) != (j.Env == nil) {
			t.Errorf("job %d env %v, want %v", ids[i], j.Env, want)
		}
	}
	if j := h.job(ids[0]); j.Environment != `A=1\nA=2` {
		t.Errorf("text not kept: %q", j.Environment)
	}
	// A map alone replaces the text; a text alone (old entry) the map.
	env := map[string]string{"N": "2"}
	h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: ids[0], Patch: JobPatch{Env: &env}}}})
	if j := h.job(ids[0]); j.Environment != "" || !maps.Equal(j.Env, env) {
		t.Errorf("after a map edit: %q %v", j.Environment, j.Env)
	}
	text := "OLD=1"
	h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: ids[1], Patch: JobPatch{Environment: &text}}}})
	if j := h.job(ids[1]); j.Environment != text || !maps.Equal(j.Env, map[string]string{"OLD": "1"}) {
		t.Errorf("after a text edit: %q %v", j.Environment, j.Env)
	}
	none := map[string]string{} // (a nil map is no patch once encoded)
	h.ok(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: ids[1], Patch: JobPatch{Env: &none}}}})
	if j := h.job(ids[1]); j.Environment != "" || j.Env != nil {
		t.Errorf("after clearing: %q %v", j.Environment, j.Env)
	}
	// The agent gets the map with its assignment.
	h.ok(&JobAction{Now: h.now, Action: ActionPause, IDs: ids[1:]})
	if a := h.pick("w"); a == nil || a.JobID != ids[0] || !maps.Equal(a.Env, env) {
		t.Fatalf("assignment %+v", a)
	}
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
}
