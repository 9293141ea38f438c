package raftstore

import (
	"sort"
	"strings"
)

// Compatibility with what the previous release wrote: its snapshots and Raft
// entries spell states with Coalition's upper-case names. They are turned
// into the neutral model here, in one place, when a snapshot is restored
// and when an old entry is applied.

// legacyJobStates maps the previous release's job (and event) states to the
// neutral ones.
var legacyJobStates = map[string]string{
	"WAITING":  StateWaiting,
	"PENDING":  StateBlocked,
	"WORKING":  StateRunning,
	"FINISHED": StateFinished,
	"ERROR":    StateFailed,
	"PAUSED":   StatePaused,
}

// legacyWorkerStates maps the previous release's worker states.
var legacyWorkerStates = map[string]string{
	"WAITING": WorkerStateIdle,
	"WORKING": WorkerStateBusy,
	"TIMEOUT": WorkerStateLost,
}

// upgrade returns v's neutral name when it is a name of the previous
// release, else v unchanged (neutral names are lower-case and never
// collide with the old ones, so upgrading twice changes nothing).
func upgrade(names map[string]string, v string) string {
	if n, ok := names[v]; ok {
		return n
	}
	return v
}

// upgradeSnapshot turns a decoded snapshot of the previous release into
// the neutral model: job, event and worker states, the packed h_priority
// that PriorityPath replaced, and environments held only as text. A current snapshot passes through
// unchanged.
func upgradeSnapshot(d *snapshotData) {
	for _, j := range d.Jobs {
		j.State = upgrade(legacyJobStates, j.State)
		j.Env = envOf(j.Env, j.Environment)
	}
	for _, e := range d.Events {
		e.State = upgrade(legacyJobStates, e.State)
	}
	for _, w := range d.Workers {
		w.State = upgrade(legacyWorkerStates, w.State)
	}
}

// upgradeEdit returns c with the states of its patches in neutral names (a
// Coalition edit of the previous release carries {"state":"WAITING"}). It
// copies what it changes: the command may be shared with its proposer.
func upgradeEdit(c *JobEdit) *JobEdit {
	var out *JobEdit
	for i, e := range c.Edits {
		if e.Patch.State == nil {
			continue
		}
		n, ok := legacyJobStates[*e.Patch.State]
		if !ok {
			continue
		}
		if out == nil {
			out = &JobEdit{Now: c.Now, Edits: append([]JobEditItem(nil), c.Edits...)}
		}
		out.Edits[i].Patch.State = &n
	}
	if out == nil {
		return c
	}
	return out
}

// envOf is the one conversion of environments: the map a job keeps, given
// the map and the text (Coalition's format) that a spec, a patch or a job of
// an older snapshot carries. The map wins; without one (the previous
// release wrote only the text) it is parsed from the text. An empty map is
// nil, so that equal states encode alike.
func envOf(env map[string]string, text string) map[string]string {
	if env == nil {
		env = EnvFromText(text)
	}
	if len(env) == 0 {
		return nil
	}
	return env
}

// envOfPatch is envOf for a patch that sets the map, the text or both.
func envOfPatch(p JobPatch) map[string]string {
	var env map[string]string
	if p.Env != nil {
		env = *p.Env
		if env == nil {
			env = map[string]string{} // set to empty: not parsed from the text
		}
	}
	text := ""
	if p.Environment != nil {
		text = *p.Environment
	}
	return envOf(env, text)
}

// EnvFromText parses an environment written as text, the format of
// Coalition and of the previous release: KEY=VALUE entries separated by
// newlines or by the two characters `\n`. Spaces around an entry and its
// key are dropped; entries without "=" or with an empty key are ignored; a
// later entry overrides an earlier one. This is what the agent has always
// made of such a text, so a job runs with the same variables whether it
// gets the text or EnvText of the map.
func EnvFromText(text string) map[string]string {
	if text == "" {
		return nil
	}
	var env map[string]string
	for _, entry := range strings.Split(strings.ReplaceAll(text, `\n`, "\n"), "\n") {
		key, value, ok := strings.Cut(strings.TrimSpace(entry), "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" {
			continue
		}
		if env == nil {
			env = map[string]string{}
		}
		env[key] = value
	}
	return env
}

// EnvText writes an environment as KEY=VALUE lines in key order: the text
// the agent protocol carries. EnvFromText reads it back to the same map
// for every environment CheckPatch accepts.
func EnvText(env map[string]string) string {
	if len(env) == 0 {
		return ""
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(env[k])
	}
	return b.String()
}

// legacyName returns the previous release's name of neutral job state st,
// for the log lines entries of that release still get (see Release).
func legacyName(st string) string {
	for old, n := range legacyJobStates {
		if n == st {
			return old
		}
	}
	return st
}
