package freezer

import (
	"github.com/croftfarm/croft/api/apierr"
)

// Results of a session action (freezer-api's Session.start).
const (
	resultSuccess   = "success"
	resultHoldOff   = "hold-off"
	resultOutOfSync = "out-of-sync"
)

// Job results and statuses of job_schedule and of a session's members.
const (
	statusScheduled = "scheduled"
	statusRunning   = "running"
	statusCompleted = "completed"
	statusStop      = "stop"
	resultFail      = "fail"
	resultAborted   = "aborted"
)

// defaultActionHoldOff is the hold-off Session.start assumes when the
// session has none.
const defaultActionHoldOff = 60

// startAction is freezer-api's Session.start for member jobID asking with
// tag at now (epoch seconds), applied to session document d in place:
// the result and the session's tag after it. A tag above the session's,
// or a job that is not a member, is a 400.
//
// Inside the hold-off window after the last start a late member of that
// start (an older tag) joins it (success) and the current tag is told to
// hold off; outside it the current tag starts a new run of the session
// (the tag grows by one) and an older one is out of sync.
func startAction(d document, jobID string, tag, now int64) (string, int64, error) {
	sessionTag, _ := integer(d["session_tag"])
	if tag > sessionTag {
		return "", 0, apierr.Bad("requested tag value too high")
	}
	jobs, _ := d["jobs"].(document)
	member, ok := jobs[jobID].(document)
	if !ok {
		return "", 0, apierr.Bad("job_id not found in session")
	}
	holdOff, ok := integer(d["hold_off"])
	if !ok {
		holdOff = defaultActionHoldOff
	}
	start, ok := integer(d["time_start"])
	if !ok {
		start = 0
	}
	markRunning := func() {
		member["status"], member["result"], member["time_started"] = statusRunning, "", num(now)
	}
	if now-start <= holdOff {
		if tag < sessionTag {
			markRunning()
			return resultSuccess, sessionTag, nil
		}
		return resultHoldOff, sessionTag, nil
	}
	if tag == sessionTag {
		sessionTag++
		d["session_tag"], d["time_start"] = num(sessionTag), num(now)
		d["status"], d["result"] = statusRunning, ""
		markRunning()
		return resultSuccess, sessionTag, nil
	}
	return resultOutOfSync, sessionTag, nil
}

// endAction is freezer-api's Session.end: member jobID completed with
// result at now; once every member completed, the session completes
// with the overall result (fail if any member's is not success). The
// answer is success with the session's tag.
func endAction(d document, jobID, result string, now int64) (string, int64, error) {
	jobs, _ := d["jobs"].(document)
	member, ok := jobs[jobID].(document)
	if !ok {
		return "", 0, apierr.Bad("job_id not found in session")
	}
	member["status"], member["result"], member["time_ended"] = statusCompleted, result, num(now)
	if overall := overallResult(jobs); overall != statusRunning && str(d, "status") != statusCompleted {
		d["time_end"], d["result"], d["status"] = num(now), overall, statusCompleted
	}
	tag, _ := integer(d["session_tag"])
	return resultSuccess, tag, nil
}

// overallResult is a session's result across its members: running while
// one has not completed, else fail when one did not succeed, else
// success.
func overallResult(jobs document) string {
	overall := resultSuccess
	for _, v := range jobs {
		m, _ := v.(document)
		if str(m, "status") != statusCompleted {
			return statusRunning
		}
		if str(m, "result") != resultSuccess {
			overall = resultFail
		}
	}
	return overall
}

// readAction reads an action request: one key, start or end, whose value
// is an object with job_id, current_tag and (end) result. Another key is
// MethodNotImplemented (405), another shape a 400.
func readAction(d document) (kind, jobID string, tag int64, result string, err error) {
	if len(d) != 1 {
		return "", "", 0, "", apierr.Bad("Bad action request format")
	}
	for k, v := range d {
		kind = k
		body, ok := v.(document)
		if !ok {
			return "", "", 0, "", apierr.Bad("Bad action request format")
		}
		jobID = str(body, "job_id")
		tag, _ = integer(body["current_tag"])
		result = str(body, "result")
	}
	switch kind {
	case "start", "end":
		return kind, jobID, tag, result, nil
	}
	return "", "", 0, "", errNotImplemented
}
