package freezer

import (
	"github.com/croftfarm/croft/raftstore"
)

// A job's runs are core executions of its template (one per start). What
// freezer-scheduler would write back into the documents as a run goes,
// Croft reads from the run itself when a document is shown: the job's
// job_schedule status, result and times, a session member's entry, and
// a session's completion. The stored documents keep what clients wrote.

// runState maps a run's core state to job_schedule's status and result.
func runState(e *raftstore.ExecutionStatus) (status, result string) {
	switch e.State {
	case raftstore.StateRunning:
		return statusRunning, ""
	case raftstore.StatePaused:
		return statusStop, ""
	case raftstore.StateFinished:
		return statusCompleted, resultSuccess
	case raftstore.StateCanceled:
		return statusCompleted, resultAborted
	case raftstore.StateFailed:
		if e.Ended {
			return statusCompleted, resultFail
		}
		return statusScheduled, "" // a retry is due
	}
	return statusScheduled, ""
}

// seconds converts unix nanoseconds to freezer's epoch seconds, -1 for
// never.
func seconds(ns int64) int64 {
	if ns == 0 {
		return unsetTime
	}
	return ns / 1e9
}

// lastRun returns the newest run of a stored job document, if it still
// exists.
func lastRun(st *raftstore.State, d document) (raftstore.ExecutionStatus, bool) {
	runs := runsOf(d)
	if len(runs) == 0 {
		return raftstore.ExecutionStatus{}, false
	}
	return st.Execution(runs[len(runs)-1])
}

// runFields are a run's status, result and times as job_schedule and a
// session member show them.
func runFields(e *raftstore.ExecutionStatus) document {
	status, result := runState(e)
	started := seconds(e.StartTime)
	if started == unsetTime {
		started = seconds(e.Created)
	}
	out := document{"status": status, "result": result, "time_started": num(started), "time_ended": num(unsetTime)}
	if e.Ended {
		out["time_ended"] = num(seconds(e.EndTime))
		if e.EndTime == 0 {
			out["time_ended"] = num(started)
		}
	}
	return out
}

// jobView is a stored job document as clients see it: without Croft's
// bookkeeping, its job_schedule following its newest run.
func jobView(st *raftstore.State, stored document) document {
	d := copyDoc(stored)
	delete(d, hiddenRuns)
	if e, ok := lastRun(st, stored); ok {
		sched := schedule(d, "job_schedule")
		for k, v := range runFields(&e) {
			sched[k] = v
		}
	}
	return d
}

// sessionView is a stored session document as clients see it: each
// member's entry follows the member's newest run when that run started
// after what the entry records, and a session whose run (status running)
// has every member completed is completed, with the overall result, as
// the members' end actions would have made it.
func sessionView(st *raftstore.State, d document) document {
	jobs, _ := d["jobs"].(document)
	if len(jobs) == 0 {
		return d
	}
	project := str(d, "project_id")
	merged := document{}
	latest := int64(unsetTime)
	for id, v := range jobs {
		m, _ := v.(document)
		m = copyDoc(m)
		if t, ok := st.TemplateByName(project, id); ok && t.Spec.Type == templateType {
			if stored, err := decode(t.Spec.Doc); err == nil {
				if e, ok := lastRun(st, stored); ok {
					since, _ := integer(m["time_started"])
					if f := runFields(&e); seconds(e.Created) >= since {
						for k, x := range f {
							m[k] = x
						}
					}
				}
			}
		}
		if end, ok := integer(m["time_ended"]); ok && end > latest {
			latest = end
		}
		merged[id] = m
	}
	d["jobs"] = merged
	if str(d, "status") == statusRunning {
		if overall := overallResult(merged); overall != statusRunning {
			d["status"], d["result"], d["time_end"] = statusCompleted, overall, num(latest)
		}
	}
	return d
}

// copyDoc copies a document's top level and its nested objects, so a
// view can change them without touching what another reader holds.
func copyDoc(d document) document {
	out := make(document, len(d))
	for k, v := range d {
		if m, ok := v.(document); ok {
			v = copyDoc(m)
		}
		out[k] = v
	}
	return out
}
