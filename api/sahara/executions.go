package sahara

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/ids"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
)

// A job execution is a core execution of the job's template, on the
// cluster's pool; what Sahara keeps besides (the cluster, data sources,
// job_configs, the flags) is the execution's Doc, written once at
// execute.

// Sahara's execution statuses (utils/edp.py) that Croft shows.
const (
	StatusPending       = "PENDING"
	StatusRunning       = "RUNNING"
	StatusSucceeded     = "SUCCEEDED"
	StatusFailed        = "FAILED"
	StatusDoneWithError = "DONEWITHERROR"
	StatusKilled        = "KILLED"
	StatusSuspended     = "SUSPENDED"
)

// execDoc is an execution's Doc.
type execDoc struct {
	ClusterID   string         `json:"cluster_id"`
	InputID     any            `json:"input_id"`
	OutputID    any            `json:"output_id"`
	JobConfigs  map[string]any `json:"job_configs"`
	Interface   map[string]any `json:"interface"`
	IsPublic    bool           `json:"is_public"`
	IsProtected bool           `json:"is_protected"`
}

// sections are the job_configs sections each type takes (check_job_execution).
var sections = map[string][]string{
	TypeHive: {"configs", "params"}, TypePig: {"configs", "params", "args"},
	TypeMapReduce: {"configs"}, TypeStreaming: {"configs"}, TypeJava: {"configs", "args"},
	TypeShell: {"configs", "params", "args"}, TypeSpark: {"configs", "args"}, TypeStorm: {"args"}, TypePyleus: {},
}

// statusOf maps an execution's core state to Sahara's status: queued is
// PENDING, a failure with an exit code DONEWITHERROR (the program ran and
// said no), one without (timed out, lost, could not start) FAILED, and a
// failure with a retry due PENDING again.
func statusOf(e *raftstore.ExecutionStatus) string {
	switch e.State {
	case raftstore.StateRunning:
		return StatusRunning
	case raftstore.StatePaused:
		return StatusSuspended
	case raftstore.StateFinished:
		return StatusSucceeded
	case raftstore.StateCanceled:
		return StatusKilled
	case raftstore.StateFailed:
		if !e.Ended {
			return StatusPending
		}
		if e.ExitCode != raftstore.NoExitCode && e.ExitCode != 0 {
			return StatusDoneWithError
		}
		return StatusFailed
	}
	return StatusPending
}

func execDocOf(e *raftstore.ExecutionStatus) execDoc {
	var d execDoc
	_ = json.Unmarshal(e.Doc, &d) // our own documents; a bad one shows empty
	return d
}

// execView renders an execution.
func execView(e *raftstore.ExecutionStatus) obj {
	d := execDocOf(e)
	info := obj{"status": statusOf(e), "croft_job_id": e.JobID}
	if e.Worker != "" {
		info["croft_worker"] = e.Worker
	}
	if e.Reason != "" {
		info["croft_reason"] = e.Reason
	}
	var rc any
	if e.Ended && e.ExitCode != raftstore.NoExitCode {
		rc = e.ExitCode
	}
	configs := d.JobConfigs
	if configs == nil {
		configs = obj{}
	}
	iface := d.Interface
	if iface == nil {
		iface = obj{}
	}
	return obj{"id": ids.Dashed(e.ID), "tenant_id": e.Project, "job_id": ids.Dashed(e.Template), "cluster_id": d.ClusterID,
		"input_id": d.InputID, "output_id": d.OutputID, "job_configs": configs, "interface": iface, "data_source_urls": obj{},
		"info": info, "oozie_job_id": strconv.FormatInt(e.JobID, 10), "return_code": rc, "extra": obj{},
		"start_time": timeOf(e.StartTime, executionTime), "end_time": timeOf(e.EndTime, executionTime),
		"created_at": timeOf(e.Created, executionTime), "updated_at": timeOf(max(e.EndTime, e.StartTime), executionTime),
		"is_public": d.IsPublic, "is_protected": d.IsProtected}
}

// findExec returns an execution of a Sahara job that tenant pid sees.
func (h *Handler) findExec(pid, id string) (raftstore.ExecutionStatus, bool) {
	cid, ok := coreID(id)
	if !ok {
		return raftstore.ExecutionStatus{}, false
	}
	st := h.store.State()
	e, ok := st.Execution(cid)
	if !ok || !h.isSahara(e.Template) {
		return raftstore.ExecutionStatus{}, false
	}
	return e, e.Project == pid || execDocOf(&e).IsPublic
}

func (h *Handler) isSahara(tid string) bool {
	t, ok := h.store.State().Template(tid)
	return ok && jobTypes[t.Spec.Type]
}

// execute answers POST /jobs/{id}/execute (JOB_EXEC_SCHEMA and
// check_job_execution): 202 and the execution, which runs on a host of
// the cluster's pool.
func (h *Handler) execute(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	e, err := h.executeJob(c, pid)
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"job_execution": execView(&e)})
}

func (h *Handler) executeJob(c *gin.Context, pid string) (raftstore.ExecutionStatus, error) {
	var none raftstore.ExecutionStatus
	m, err := readJSON(c)
	if err != nil {
		return none, err
	}
	if err := onlyKeys(m, "cluster_id", "input_id", "output_id", "interface", "job_configs", "is_public", "is_protected"); err != nil {
		return none, err
	}
	var d execDoc
	cluster, ok := m["cluster_id"].(string)
	if !ok {
		return none, validation("'cluster_id' is a required property (a uuid)")
	}
	if _, ok := coreID(cluster); !ok {
		return none, validation("cluster_id: '%s' is not a 'uuid'", apierr.Truncate(cluster, 64))
	}
	d.ClusterID = cluster
	if v, ok := m["interface"]; ok && v != nil {
		if d.Interface, ok = v.(map[string]any); !ok {
			return none, validation("interface: an object expected")
		}
	}
	for _, k := range []string{"is_public", "is_protected"} {
		b, err := optBool(m, k)
		if err != nil {
			return none, err
		}
		if b != nil && k == "is_public" {
			d.IsPublic = *b
		} else if b != nil {
			d.IsProtected = *b
		}
	}
	id := param(c, "id")
	t, ok := h.findJob(pid, id)
	if !ok {
		return none, invalidRef("Job with id '%s' doesn't exist", apierr.Truncate(id, 64))
	}
	if t.Project != pid {
		return none, invalidData("Croft runs an execution in its job's tenant: execute another tenant's public job from that tenant")
	}
	for _, k := range []string{"input_id", "output_id"} {
		if v, ok := m[k]; ok && v != nil {
			s, _ := v.(string)
			if _, ok := coreID(s); !ok {
				return none, validation("%s: '%s' is not a 'uuid'", k, apierr.Truncate(fmt.Sprint(v), 64))
			}
			// Croft has no data sources: none exists.
			return none, invalidRef("DataSource with id '%s' doesn't exist", apierr.Truncate(s, 64))
		}
	}
	switch t.Spec.Type {
	case TypeMapReduce, TypePig, TypeHive:
		return none, invalidData("%s job requires 'input_id' and 'output_id'", t.Spec.Type)
	}
	args, params, err := jobConfigs(t.Spec.Type, m, &d)
	if err != nil {
		return none, err
	}
	p, ok := h.findPool(pid, cluster)
	if !ok {
		return none, invalidRef("Cluster with id '%s' doesn't exist", apierr.Truncate(cluster, 64))
	}
	if t.Spec.Command == "" {
		cmd := h.cfg.JobTypes[t.Spec.Type]
		if cmd == "" {
			return none, invalidData("Cluster with id '%s' does not support job type %s: no command is configured for it on this farm", apierr.Truncate(cluster, 64), t.Spec.Type)
		}
		if t, err = h.ops.UpdateTemplateIf(c, t.ID, t.Revision, raftstore.TemplatePatch{Command: &cmd}); err != nil {
			if !errors.Is(err, raftstore.ErrConflict) {
				return none, err
			}
			// Another write got there first (another execute, say):
			// run whatever the template holds now.
			if t, ok = h.findJob(pid, id); !ok {
				return none, invalidRef("Job with id '%s' doesn't exist", apierr.Truncate(id, 64))
			}
		}
	}
	doc, _ := json.Marshal(d)
	if len(doc) > raftstore.MaxDocBytes {
		return none, saharaErr(http.StatusRequestEntityTooLarge, "REQUEST_ENTITY_TOO_LARGE", "the execution's document is %d bytes, the limit is %d", len(doc), raftstore.MaxDocBytes)
	}
	req := service.ExecuteRequest{Template: t.ID, Pool: p.name, Args: args, Params: params, Doc: doc, User: auth.From(c).Name}
	check := raftstore.Execute{ID: "00000000000000000000000000000000", Template: t.ID, Pool: req.Pool, Args: req.Args, Params: req.Params, Doc: req.Doc, User: req.User}
	if err := raftstore.CheckExecute(&check); err != nil {
		return none, invalidData("%v", err)
	}
	return h.ops.Execute(c, req)
}

// jobConfigs checks job_configs for type typ and returns the run's
// arguments and environment; d keeps job_configs as given.
func jobConfigs(typ string, m map[string]any, d *execDoc) ([]string, map[string]string, error) {
	v, ok := m["job_configs"]
	if !ok || v == nil {
		if typ == TypeJava {
			return nil, nil, invalidData("%s job must specify edp.java.main_class", typ)
		}
		return nil, nil, nil
	}
	jc, ok := v.(map[string]any)
	if !ok {
		return nil, nil, validation("job_configs: an object expected")
	}
	if err := onlyKeys(jc, "configs", "params", "args", "job_execution_info"); err != nil {
		return nil, nil, err
	}
	d.JobConfigs = jc
	allowed := map[string]bool{"job_execution_info": true}
	for _, s := range sections[typ] {
		allowed[s] = true
	}
	for k, v := range jc {
		if v == nil {
			continue
		}
		if !allowed[k] {
			if s, ok := v.(map[string]any); ok && len(s) == 0 {
				continue
			}
			if s, ok := v.([]any); ok && len(s) == 0 {
				continue
			}
			return nil, nil, invalidData("%s job does not support '%s' in job_configs", typ, k)
		}
	}
	configs, err := simpleConfig(jc, "configs")
	if err != nil {
		return nil, nil, err
	}
	params, err := simpleConfig(jc, "params")
	if err != nil {
		return nil, nil, err
	}
	if info, ok := jc["job_execution_info"].(map[string]any); ok {
		if t, _ := info["job_execution_type"].(string); t == "scheduled" {
			return nil, nil, invalidData("scheduled job executions are not supported")
		}
	}
	var args []string
	if a, ok := jc["args"]; ok && a != nil {
		list, ok := a.([]any)
		if !ok {
			return nil, nil, validation("job_configs.args: an array of strings expected")
		}
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, nil, validation("job_configs.args: an array of strings expected")
			}
			args = append(args, s)
		}
	}
	switch typ {
	case TypeJava:
		main := configs["edp.java.main_class"]
		if main == "" {
			return nil, nil, invalidData("%s job must specify edp.java.main_class", typ)
		}
		args = append([]string{main}, args...)
	case TypeStreaming:
		if configs["edp.streaming.mapper"] == "" || configs["edp.streaming.reducer"] == "" {
			return nil, nil, invalidData("%s job must specify streaming mapper and reducer", typ)
		}
	}
	return args, params, nil
}

// simpleConfig reads a section of scalars (Sahara's simple_config) as
// strings.
func simpleConfig(jc map[string]any, k string) (map[string]string, error) {
	v, ok := jc[k]
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, validation("job_configs.%s: an object expected", k)
	}
	out := make(map[string]string, len(m))
	for key, x := range m {
		switch y := x.(type) {
		case string:
			out[key] = y
		case bool:
			out[key] = strconv.FormatBool(y)
		case float64:
			out[key] = strconv.FormatFloat(y, 'f', -1, 64)
		default:
			return nil, validation("job_configs.%s.%s: a string, number or boolean expected", k, apierr.Truncate(key, 64))
		}
	}
	return out, nil
}

var execSorts = map[string]string{"id": "id", "job_template": "job_id", "cluster": "cluster_id", "status": "info.status"}

// listExecutions answers the tenant's executions of Sahara jobs, and
// other tenants' public ones.
func (h *Handler) listExecutions(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	q, err := parseList(c, execSorts)
	if err != nil {
		Abort(c, err)
		return
	}
	st, after := h.store.State(), ""
	l := lister{q: q}
	for l.err == nil {
		page, next, more := st.ExecutionsAfter(after, raftstore.ScanLimit, "")
		for i := 0; i < len(page) && l.err == nil; i++ {
			e := &page[i]
			if h.isSahara(e.Template) && (e.Project == pid || execDocOf(e).IsPublic) {
				l.add(execView(e))
			}
		}
		if !more {
			break
		}
		after = next
	}
	l.answer(c, "job_executions")
}

// showExecution answers an execution (also refresh-status: the state is
// the farm's own, always current).
func (h *Handler) showExecution(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	id := param(c, "id")
	e, ok := h.findExec(pid, id)
	if !ok {
		Abort(c, notFound(id))
		return
	}
	c.JSON(http.StatusOK, gin.H{"job_execution": execView(&e)})
}

// cancelExecution answers GET .../cancel: the execution's job is
// canceled (its process killed), TOBEKILLED then KILLED at once in the
// farm; 200 and the execution. Another tenant's or a protected one is
// 400 CANCELING_FAILED; an ended one answers as it is.
func (h *Handler) cancelExecution(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	e, err := h.cancel(c, pid, param(c, "id"))
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"job_execution": execView(&e)})
}

func (h *Handler) cancel(c *gin.Context, pid, id string) (raftstore.ExecutionStatus, error) {
	e, ok := h.findExec(pid, id)
	if !ok {
		return e, notFound(id)
	}
	if e.Project != pid || execDocOf(&e).IsProtected {
		return e, saharaErr(http.StatusBadRequest, "CANCELING_FAILED", "Job execution %s can't be cancelled: it is protected or belongs to another tenant", ids.Dashed(e.ID))
	}
	if !e.Ended {
		if err := h.ops.CancelExecution(c, e.ID); err != nil && !errors.Is(err, raftstore.ErrNotFound) {
			return e, err
		}
	}
	if now, ok := h.store.State().Execution(e.ID); ok {
		e = now
	}
	return e, nil
}

// updateExecution answers PATCH /job-executions/{id}: info {"status":
// "cancel"} alone cancels (202 and the execution); is_public and
// is_protected change the execution's flags (202), a protected one's only
// when the patch clears is_protected. Suspend is refused (400
// INVALID_DATA): the farm does not suspend a run.
func (h *Handler) updateExecution(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	m, err := readJSON(c)
	if err == nil {
		err = onlyKeys(m, "is_public", "is_protected", "info")
	}
	if err != nil {
		Abort(c, err)
		return
	}
	id := param(c, "id")
	if _, ok := h.findExec(pid, id); !ok {
		Abort(c, notFound(id))
		return
	}
	info, hasInfo := m["info"]
	if hasInfo && len(m) > 1 {
		Abort(c, invalidData("'info' must be the only field of the update"))
		return
	}
	if !hasInfo {
		e, err := h.setExecFlags(c, pid, id, m)
		if err != nil {
			Abort(c, err)
			return
		}
		c.JSON(http.StatusAccepted, gin.H{"job_execution": execView(&e)})
		return
	}
	im, ok := info.(map[string]any)
	if !ok || len(im) != 1 {
		Abort(c, validation("info: {\"status\": \"cancel\"} expected"))
		return
	}
	switch im["status"] {
	case "cancel":
		e, err := h.cancel(c, pid, id)
		if err != nil {
			Abort(c, err)
			return
		}
		c.JSON(http.StatusAccepted, gin.H{"job_execution": execView(&e)})
	case "suspend":
		Abort(c, invalidData("Croft does not suspend job executions"))
	default:
		Abort(c, validation("info.status: one of 'cancel', 'suspend' expected"))
	}
}

// setExecFlags writes is_public and is_protected of m into execution id's
// document, guarded by the revision it read (again when another write got
// there first), and returns the execution as it is then.
func (h *Handler) setExecFlags(c *gin.Context, pid, id string, m map[string]any) (raftstore.ExecutionStatus, error) {
	public, err := optBool(m, "is_public")
	if err != nil {
		return raftstore.ExecutionStatus{}, err
	}
	protected, err := optBool(m, "is_protected")
	if err != nil {
		return raftstore.ExecutionStatus{}, err
	}
	for try := 1; ; try++ {
		e, ok := h.findExec(pid, id)
		if !ok || e.Project != pid {
			return raftstore.ExecutionStatus{}, notFound(id)
		}
		d := execDocOf(&e)
		if d.IsProtected && (protected == nil || *protected) {
			return e, saharaErr(http.StatusBadRequest, "UPDATE_FAILED", "Job execution %s is protected and cannot be updated", ids.Dashed(e.ID))
		}
		if public != nil {
			d.IsPublic = *public
		}
		if protected != nil {
			d.IsProtected = *protected
		}
		body, err := json.Marshal(d)
		if err != nil {
			return e, err
		}
		err = h.ops.WriteExecutionDoc(c, e.ID, e.Revision, body)
		if errors.Is(err, raftstore.ErrConflict) && try < casTries {
			continue
		}
		if err != nil {
			return e, err
		}
		if now, ok := h.store.State().Execution(e.ID); ok {
			e = now
		}
		return e, nil
	}
}

// casTries bounds a read-modify-write of an execution's document.
const casTries = 16

// deleteExecution answers DELETE /job-executions/{id}: a running one is
// canceled first, as Sahara does; 204.
func (h *Handler) deleteExecution(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	id := param(c, "id")
	e, ok := h.findExec(pid, id)
	if !ok {
		Abort(c, notFound(id))
		return
	}
	if e.Project != pid || execDocOf(&e).IsProtected {
		Abort(c, saharaErr(http.StatusBadRequest, "DELETION_FAILED", "Job execution %s is protected or belongs to another tenant", ids.Dashed(e.ID)))
		return
	}
	if !e.Ended {
		if err := h.ops.CancelExecution(c, e.ID); err != nil && !errors.Is(err, raftstore.ErrNotFound) {
			Abort(c, err)
			return
		}
	}
	if err := h.ops.DeleteExecution(c, e.ID); err != nil && !errors.Is(err, raftstore.ErrNotFound) {
		Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
