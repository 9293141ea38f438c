package freezer

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/raftstore"
)

// A session's members: adding a job records it in the session's jobs map
// and gives the job the session's id, tag and schedule, in one write of
// both documents (freezer-api writes them one after the other).

// memberEntry is a session's record of job d: its client and where its
// schedule stands.
func memberEntry(st *raftstore.State, d document) document {
	sched := schedule(jobView(st, d), "job_schedule")
	m := document{"client_id": d["client_id"]}
	for _, k := range []string{"status", "result", "time_started", "time_ended"} {
		m[k] = sched[k]
		if m[k] == nil {
			m[k] = ""
			if k == "time_started" || k == "time_ended" {
				m[k] = num(unsetTime)
			}
		}
	}
	return m
}

// addJob answers PUT .../sessions/{sid}/jobs/{job_id}: 204. A session
// whose schedule's event is start starts the job, as the client's
// scheduler would once the job has the session's schedule.
func (h *Handler) addJob(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	sid, jobID := c.Param("session"), c.Param("job")
	st := h.store.State()
	startIt := false
	_, err := h.writeJob(c, pid, jobID, func(_ *raftstore.Template, d document) ([]raftstore.DocWrite, error) {
		x, ok := h.lookup(pid, sid)
		if !ok {
			return nil, notFound(sid)
		}
		sd := docOf(&x)
		jobs, _ := sd["jobs"].(document)
		if jobs == nil {
			jobs = document{}
		}
		if _, member := jobs[jobID]; !member && len(jobs) >= MaxSessionJobs {
			return nil, apierr.Bad("session %s has %d jobs, the limit", sid, MaxSessionJobs)
		}
		jobs[jobID] = memberEntry(st, d)
		sd["jobs"] = jobs
		sched := copyDoc(schedule(sd, "schedule"))
		d["session_id"], d["session_tag"], d["job_schedule"] = x.ID, sd["session_tag"], sched
		startIt = str(sched, "event") == "start"
		w, _, err := sessionWrite(&x, sd)
		if err != nil {
			return nil, err
		}
		return []raftstore.DocWrite{w}, nil
	})
	if err == nil && startIt {
		_, err = h.start(c, pid, jobID, false, false)
	}
	if err != nil {
		Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// removeJob answers DELETE .../sessions/{sid}/jobs/{job_id}: 204. The
// job leaves the session's jobs map, and gets no session and the stop
// event (a run that has not started is taken back).
func (h *Handler) removeJob(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	sid, jobID := c.Param("session"), c.Param("job")
	_, err := h.writeJob(c, pid, jobID, func(_ *raftstore.Template, d document) ([]raftstore.DocWrite, error) {
		x, ok := h.lookup(pid, sid)
		if !ok {
			return nil, notFound(sid)
		}
		sd := docOf(&x)
		if jobs, _ := sd["jobs"].(document); jobs != nil {
			delete(jobs, jobID)
		}
		d["session_id"], d["session_tag"], d["job_schedule"] = "", num(0), document{"event": statusStop}
		w, _, err := sessionWrite(&x, sd)
		if err != nil {
			return nil, err
		}
		return []raftstore.DocWrite{w}, nil
	})
	if err == nil {
		err = h.takeBack(c, pid, jobID, false)
	}
	if err != nil {
		Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// action answers POST .../sessions/{sid}/action (and /actions): the
// start and end actions of the session's tag protocol, 202 with the
// result and the session's tag. Croft is the scheduler of every job, so
// a start that succeeds also runs the job, unless its run goes on.
func (h *Handler) action(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	d, err := readDoc(c)
	if err == nil && d == nil {
		err = apierr.Bad("Bad action request format")
	}
	var kind, jobID, result string
	var tag int64
	if err == nil {
		kind, jobID, tag, result, err = readAction(d)
	}
	if err == nil && kind == "end" && result != resultSuccess && result != resultFail && result != resultAborted {
		err = apierr.Bad("end: result must be success, fail or aborted")
	}
	if err != nil {
		Abort(c, err)
		return
	}
	sid := c.Param("session")
	var answer string
	var newTag int64
	_, err = h.writeSession(c, pid, sid, func(sd document) error {
		var err error
		now := h.clock().Unix()
		if kind == "start" {
			answer, newTag, err = startAction(sd, jobID, tag, now)
		} else {
			answer, newTag, err = endAction(sd, jobID, result, now)
		}
		return err
	})
	if err == nil && kind == "start" && answer == resultSuccess {
		if _, _, isJob := h.findJob(pid, jobID); isJob {
			_, err = h.start(c, pid, jobID, true, false)
		}
	}
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"result": answer, "session_tag": newTag})
}
