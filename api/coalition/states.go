package coalition

import (
	"fmt"

	"github.com/croftfarm/croft/raftstore"
)

// Coalition's names for the farm's neutral states (raftstore/DESIGN.md,
// "States"). They are mapped here and nowhere else: job rows, events,
// workers, where_clause and the distinct-value lists all see what these
// functions return.
var (
	toCoalitionJob = map[string]string{
		raftstore.StateWaiting:  "WAITING",
		raftstore.StateBlocked:  "PENDING",
		raftstore.StateRunning:  "WORKING",
		raftstore.StateFinished: "FINISHED",
		raftstore.StateFailed:   "ERROR",
		// Coalition has no canceled state: a canceled job is an error
		// to its clients (reset or reseterror runs it again).
		raftstore.StateCanceled: "ERROR",
		raftstore.StatePaused:   "PAUSED",
	}
	toCoalitionWorker = map[string]string{
		raftstore.WorkerStateIdle: "WAITING",
		raftstore.WorkerStateBusy: "WORKING",
		raftstore.WorkerStateLost: "TIMEOUT",
	}
	// fromCoalitionJob holds the states a Coalition client may set.
	fromCoalitionJob = map[string]string{
		"WAITING":  raftstore.StateWaiting,
		"PENDING":  raftstore.StateBlocked,
		"PAUSED":   raftstore.StatePaused,
		"FINISHED": raftstore.StateFinished,
		"ERROR":    raftstore.StateFailed,
	}
)

// coalitionState is the state a job shows to Coalition clients.
func coalitionState(j *raftstore.Job) string { return coalitionJobState(j.Reported()) }

// coalitionJobState names a neutral job (or event) state in Coalition's
// words; a value it does not know passes unchanged.
func coalitionJobState(s string) string { return mapName(toCoalitionJob, s) }

// coalitionWorkerState names a neutral worker state in Coalition's words.
func coalitionWorkerState(s string) string { return mapName(toCoalitionWorker, s) }

func mapName(m map[string]string, s string) string {
	if n, ok := m[s]; ok {
		return n
	}
	return s
}

// fromCoalitionState turns a state a Coalition client sets (upper-cased)
// into the neutral one. Only WAITING, PENDING, PAUSED, FINISHED and ERROR
// can be set; anything else is refused with the message Coalition clients
// have always seen.
func fromCoalitionState(s string) (string, error) {
	if n, ok := fromCoalitionJob[s]; ok {
		return n, nil
	}
	return "", fmt.Errorf("%w: state %q cannot be set (use WAITING, PAUSED, FINISHED or ERROR)", raftstore.ErrInvalid, s)
}
