package sas

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/joblog"
	"github.com/croftfarm/croft/raftstore"
)

// Job states (§5.3).
const (
	jobPending   = "pending"
	jobRunning   = "running"
	jobCompleted = "completed"
	jobError     = "error"
	jobCanceled  = "canceled"
)

// emptyJobID is the job of whitespace-only code (saspy's start-up check
// posts {"code": ["\n"]}): nothing to run, so no core job; it reads as a
// completed job with an empty log in every session (core job ids start
// at 1).
const emptyJobID = 0

// jobState maps a core job state: waiting, blocked or paused is pending;
// finished (exit 0) completed; failed (a non-zero exit, a signal, a
// timeout) error; canceled canceled. Croft has no SAS warning level: no
// job ends in "warning".
func jobState(j *raftstore.Job) string {
	switch j.Reported() {
	case raftstore.StateRunning:
		return jobRunning
	case raftstore.StateFinished:
		return jobCompleted
	case raftstore.StateFailed:
		return jobError
	case raftstore.StateCanceled:
		return jobCanceled
	default:
		return jobPending
	}
}

// conditionCode is a job's jobConditionCode: its exit code once it
// failed or was canceled (1 when it failed without one: a timeout, a lost
// process), 0 otherwise.
func conditionCode(j *raftstore.Job) int64 {
	switch j.State {
	case raftstore.StateFailed, raftstore.StateCanceled:
		if j.ExitCode != 0 {
			return int64(j.ExitCode)
		}
		if j.State == raftstore.StateFailed {
			return 1
		}
	}
	return 0
}

func jobETag(j *raftstore.Job) string {
	return fmt.Sprintf(`"%d-%s-%d"`, j.ID, jobState(j), j.Tries)
}

// Job is SAS's job representation (version 1).
type Job struct {
	ID                 string     `json:"id"`
	SessionID          string     `json:"sessionId"`
	Name               string     `json:"name"`
	Description        string     `json:"description"`
	State              string     `json:"state"`
	StateElapsedTime   int64      `json:"stateElapsedTime"`
	CreationTimeStamp  string     `json:"creationTimeStamp"`
	CompletedTimeStamp string     `json:"completedTimeStamp,omitempty"`
	JobConditionCode   int64      `json:"jobConditionCode"`
	LogStatistics      Statistics `json:"logStatistics"`
	ListingStatistics  Statistics `json:"listingStatistics"`
	Links              []Link     `json:"links"`
	Version            int        `json:"version"`
}

func jobLinks(session, job string) []Link {
	s := Prefix + "/sessions/" + session
	self := s + "/jobs/" + job
	cancel := link(http.MethodPut, "cancel", self+"/state?value=canceled", "")
	cancel.Type = jsonNull{}
	del := link(http.MethodDelete, "delete", self, "")
	del.Type = jsonNull{}
	return []Link{
		link(http.MethodGet, "self", self, "application/vnd.sas.compute.job"),
		link(http.MethodGet, "state", self+"/state", "text/plain"),
		cancel,
		del,
		collLink("log", self+"/log", "application/vnd.sas.compute.log.line"),
		link(http.MethodGet, "logAsText", self+"/log", "text/plain"),
		collLink("listing", self+"/listing", "application/vnd.sas.compute.log.line"),
		link(http.MethodGet, "listingAsText", self+"/listing", "text/plain"),
		collLink("results", self+"/results", "application/vnd.sas.compute.result"),
		link(http.MethodGet, "up", s, "application/vnd.sas.compute.session"),
	}
}

func (h *Handler) renderJob(st *raftstore.State, x *raftstore.SessionView, j *raftstore.Job) Job {
	sid := sessionID(x.ID)
	id := strconv.FormatInt(j.ID, 10)
	out := Job{ID: id, SessionID: sid, Name: j.Title, State: jobState(j), CreationTimeStamp: isoTime(j.Created),
		JobConditionCode: conditionCode(j), Links: jobLinks(sid, id), Version: 1}
	since, modified := j.Created, max(j.Created, j.StartTime, j.EndTime)
	switch out.State {
	case jobRunning:
		since = max(since, j.StartTime)
	case jobCompleted, jobError, jobCanceled:
		if end := endTime(j); end > 0 {
			out.CompletedTimeStamp = isoTime(end)
			since, modified = end, max(modified, end)
		}
	}
	budget := MaxScan
	out.LogStatistics = Statistics{LineCount: int64(j.LogLines), ModifiedTimeStamp: isoTime(modified)}
	out.ListingStatistics = Statistics{LineCount: countListing(st, j, &budget), ModifiedTimeStamp: isoTime(modified)}
	out.StateElapsedTime = max(0, (h.now().UnixNano()-since)/int64(time.Second))
	return out
}

// endTime is when an ended job ended: its EndTime when it finished, the
// end of its last attempt when it failed or was canceled while running;
// 0 when unknown (canceled before it ran).
func endTime(j *raftstore.Job) int64 {
	if j.EndTime > 0 {
		return j.EndTime
	}
	if j.StartTime > 0 && j.Duration > 0 {
		return j.StartTime + j.Duration
	}
	return 0
}

// countListing counts a job's listing lines (its standard output),
// looking at no more than *budget lines (counted down).
func countListing(st *raftstore.State, j *raftstore.Job, budget *int) int64 {
	var n int64
	from := int64(1)
	for from <= int64(j.LogLines) && *budget > 0 {
		page := min(*budget, 4096)
		lines, next, err := st.LogLines(j.ID, joblog.Page{From: from, Last: int64(j.LogLines), MaxLines: page, MaxBytes: 1 << 20})
		if err != nil || next.Line <= from {
			break
		}
		for _, l := range lines {
			if l.Stream == joblog.Stdout {
				n++
			}
		}
		*budget -= int(next.Line - from)
		from = next.Line
	}
	return n
}

// findJob finds the request's :job in session x: 404 when it is not one
// of the session's.
func (h *Handler) findJob(c *gin.Context, st *raftstore.State, x *raftstore.SessionView) (raftstore.Job, bool) {
	raw := c.Param("job")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err == nil && id == emptyJobID {
		return raftstore.Job{ID: emptyJobID, State: raftstore.StateFinished, Session: x.ID, Created: x.Created, EndTime: x.Created}, true
	}
	if err == nil && id > 0 {
		if j, ok := st.Job(id); ok && j.Session == x.ID {
			return j, true
		}
	}
	Abort(c, &Error{Status: http.StatusNotFound, Msg: fmt.Sprintf("No job %q exists in the session.", apierr.Truncate(raw, 32))})
	return raftstore.Job{}, false
}

// jobRequest is the body of a job's submission (version 3).
type jobRequest struct {
	Name    string   `json:"name"`
	Code    []string `json:"code"`
	CodeURI *string  `json:"codeUri"`
}

// submit runs the body's code lines, joined by newlines, in the session
// after its earlier jobs, on its host with its interpreter: 201, the job
// pending.
func (h *Handler) submit(c *gin.Context) {
	_, x, ok := h.lookup(c, true)
	if !ok {
		return
	}
	body, err := apierr.ReadBody(c, MaxBody)
	if err != nil {
		Abort(c, err)
		return
	}
	var req jobRequest
	if err := json.Unmarshal(body, &req); err != nil {
		Abort(c, apierr.Bad("malformed JSON: %v", err))
		return
	}
	if req.CodeURI != nil && len(req.Code) == 0 {
		Abort(c, apierr.Bad("codeUri is not supported: send the code lines in code"))
		return
	}
	if len(req.Code) == 0 {
		Abort(c, &Error{Status: http.StatusBadRequest, Code: CodeNoCode, Msg: "No SAS code was submitted."})
		return
	}
	if len(req.Code) > MaxCodeLines {
		Abort(c, fmt.Errorf("%w: %d code lines, the limit is %d", raftstore.ErrTooLarge, len(req.Code), MaxCodeLines))
		return
	}
	if err := raftstore.CheckName("name", req.Name); err != nil {
		Abort(c, err)
		return
	}
	code := strings.Join(req.Code, "\n")
	var id int64 = emptyJobID
	if strings.TrimSpace(code) != "" {
		if err := raftstore.CheckCode(code); err != nil {
			Abort(c, err)
			return
		}
		if id, err = h.ops.SubmitCode(c, x.ID, req.Name, code); err != nil {
			Abort(c, err)
			return
		}
	}
	st := h.store.State()
	j, ok := st.Job(id)
	if id == emptyJobID || !ok {
		j = raftstore.Job{ID: id, State: raftstore.StateFinished, Session: x.ID, Created: x.Created, EndTime: x.Created, Title: req.Name}
		if id != emptyJobID { // deleted meanwhile
			j.State = raftstore.StateCanceled
		}
	}
	c.Header("Location", Prefix+"/sessions/"+sessionID(x.ID)+"/jobs/"+strconv.FormatInt(id, 10))
	c.Header("ETag", jobETag(&j))
	send(c, http.StatusCreated, "application/vnd.sas.compute.job", 1, h.renderJob(st, &x, &j))
}

// jobs pages the session's jobs in submission order (?filter= on name,
// state, id).
func (h *Handler) jobs(c *gin.Context) {
	st, x, ok := h.lookup(c, false)
	if !ok {
		return
	}
	start, limit, err := paging(c, DefaultLimit, MaxLimit)
	if err != nil {
		Abort(c, err)
		return
	}
	var e *expr
	if f := c.Query("filter"); f != "" {
		if e, err = parseFilter(f); err != nil {
			Abort(c, err)
			return
		}
	}
	items := []Job{}
	count := 0
	for _, id := range x.Jobs {
		j, ok := st.Job(id)
		if !ok {
			continue
		}
		if e != nil && !e.match(fieldsOf{"name": j.Title, "state": jobState(&j), "id": strconv.FormatInt(id, 10)}) {
			continue
		}
		if count >= start && len(items) < limit {
			items = append(items, h.renderJob(st, &x, &j))
		}
		count++
	}
	send(c, http.StatusOK, "application/vnd.sas.collection", 2,
		collection(c, "jobs", "application/vnd.sas.compute.job", items, start, limit, count))
}

func (h *Handler) job(c *gin.Context) {
	st, x, ok := h.lookup(c, false)
	if !ok {
		return
	}
	j, ok := h.findJob(c, st, &x)
	if !ok {
		return
	}
	c.Header("ETag", jobETag(&j))
	send(c, http.StatusOK, "application/vnd.sas.compute.job", 1, h.renderJob(st, &x, &j))
}

// removeJob cancels the job if it has not ended and deletes it: 204.
func (h *Handler) removeJob(c *gin.Context) {
	st, x, ok := h.lookup(c, true)
	if !ok {
		return
	}
	j, ok := h.findJob(c, st, &x)
	if !ok {
		return
	}
	if j.ID != emptyJobID {
		if err := h.cancelJobs(c, []int64{j.ID}); err != nil {
			Abort(c, err)
			return
		}
		if err := h.ops.DeleteJobs(c, []int64{j.ID}); err != nil {
			Abort(c, err)
			return
		}
	}
	c.Status(http.StatusNoContent)
}

// jobState answers a job's state as text, with the long poll of
// waitState.
func (h *Handler) jobState(c *gin.Context) {
	st, x, ok := h.lookup(c, false)
	if !ok {
		return
	}
	j, ok := h.findJob(c, st, &x)
	if !ok {
		return
	}
	read := func(st *raftstore.State) (string, string, bool) {
		if j.ID == emptyJobID {
			return jobState(&j), jobETag(&j), true
		}
		v, ok := st.Job(j.ID)
		if !ok {
			return "", "", false
		}
		return jobState(&v), jobETag(&v), true
	}
	h.waitState(c, st, read, func() error {
		return &Error{Status: http.StatusNotFound, Msg: "The job no longer exists."}
	})
}

// setJobState cancels the job (value=canceled: 200 and its state, at
// once "canceled" unless it had ended, then 409) or deletes it
// (value=deleted). If-Match is not checked (see setState).
func (h *Handler) setJobState(c *gin.Context) {
	st, x, ok := h.lookup(c, true)
	if !ok {
		return
	}
	j, ok := h.findJob(c, st, &x)
	if !ok {
		return
	}
	v, err := stateValue(c)
	if err != nil {
		Abort(c, err)
		return
	}
	if v == "deleted" {
		if j.ID != emptyJobID {
			if err := h.cancelJobs(c, []int64{j.ID}); err == nil {
				err = h.ops.DeleteJobs(c, []int64{j.ID})
			}
			if err != nil {
				Abort(c, err)
				return
			}
		}
		c.Data(http.StatusOK, "text/plain;charset=utf-8", []byte("deleted"))
		return
	}
	if ended(j.State) {
		if j.State == raftstore.StateCanceled {
			c.Header("ETag", jobETag(&j))
			c.Data(http.StatusOK, "text/plain;charset=utf-8", []byte(jobCanceled))
			return
		}
		Abort(c, &Error{Status: http.StatusConflict, Msg: fmt.Sprintf("The job is %s: it cannot be canceled.", jobState(&j))})
		return
	}
	if err := h.cancelJobs(c, []int64{j.ID}); err != nil {
		Abort(c, err)
		return
	}
	if v, ok := h.store.State().Job(j.ID); ok {
		j = v
	}
	c.Header("ETag", jobETag(&j))
	c.Data(http.StatusOK, "text/plain;charset=utf-8", []byte(jobState(&j)))
}
