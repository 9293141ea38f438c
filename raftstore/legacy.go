package raftstore

// Compatibility with what the previous release wrote: its snapshots and Raft
// entries spell states with Coalition's upper-case names. They are turned
// into the neutral model here, in one place, when a snapshot is restored
// and when an old entry is applied.

// legacyJobStates maps the previous release's job (and event) states to the
// neutral ones.
var legacyJobStates = map[string]string{
	"WAITING":  StateWaiting,
	"PENDING":  StatePending,
	"WORKING":  StateWorking,
	"FINISHED": StateFinished,
	"ERROR":    StateError,
	"PAUSED":   StatePaused,
}

// legacyWorkerStates maps the previous release's worker states.
var legacyWorkerStates = map[string]string{
	"WAITING": WorkerWaiting,
	"WORKING": WorkerWorking,
	"TIMEOUT": WorkerTimeout,
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
// the neutral model: job, event and worker states, and the packed
// h_priority that PriorityPath replaced. A current snapshot passes through
// unchanged.
func upgradeSnapshot(d *snapshotData) {
	for _, j := range d.Jobs {
		j.State = upgrade(legacyJobStates, j.State)
		j.HPriority = 0
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
