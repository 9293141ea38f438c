package sahara

import (
	"encoding/json"
	"errors"
	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/ids"
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/raftstore"
)

// Sahara's job types (utils/edp.py).
const (
	TypeHive      = "Hive"
	TypeJava      = "Java"
	TypeMapReduce = "MapReduce"
	TypeStreaming = "MapReduce.Streaming"
	TypePig       = "Pig"
	TypeShell     = "Shell"
	TypeSpark     = "Spark"
	TypeStorm     = "Storm"
	TypePyleus    = "Storm.Pyleus"
)

// jobTypes are Sahara's job types: a template of another type (a Freezer
// job, a native template, a binary) is not a Sahara job.
var jobTypes = map[string]bool{TypeHive: true, TypeJava: true, TypeMapReduce: true, TypeStreaming: true, TypePig: true,
	TypeShell: true, TypeSpark: true, TypeStorm: true, TypePyleus: true}

// IsJobType reports whether typ is one of Sahara's job types.
func IsJobType(typ string) bool { return jobTypes[typ] }

// Shell jobs run without configuration: an internal-db:// script inline
// (its args after it), a file:// script by its path.
const (
	ShellCommand     = "/bin/sh -c {main} sh {args}"
	ShellFileCommand = "/bin/sh {main} {args}"
)

// jobDoc is a Sahara job's Doc: what the template's own fields do not
// hold. Mains and Libs are core ids of job binaries.
type jobDoc struct {
	Description string   `json:"description"`
	Mains       []string `json:"mains"`
	Libs        []string `json:"libs"`
	Interface   []any    `json:"interface"`
	Streaming   bool     `json:"streaming,omitempty"`
}

func jobDocOf(t *raftstore.Template) jobDoc {
	var d jobDoc
	_ = json.Unmarshal(t.Spec.Doc, &d) // our own documents; a bad one shows empty
	return d
}

var jobSorts = map[string]string{"id": "id", "name": "name", "type": "type", "created_at": "created_at", "updated_at": "updated_at"}

// jobView renders a job, its mains and libs expanded to their binaries.
func (h *Handler) jobView(t *raftstore.Template) obj {
	d := jobDocOf(t)
	st := h.store.State()
	expand := func(binaries []string) []obj {
		out := []obj{}
		for _, id := range binaries {
			if b, ok := st.Template(id); ok {
				out = append(out, binaryView(&b))
			} else {
				out = append(out, obj{"id": ids.Dashed(id)})
			}
		}
		return out
	}
	iface := d.Interface
	if iface == nil {
		iface = []any{}
	}
	return obj{"id": ids.Dashed(t.ID), "tenant_id": t.Project, "name": t.Spec.Name, "description": d.Description, "type": t.Spec.Type,
		"mains": expand(d.Mains), "libs": expand(d.Libs), "interface": iface,
		"is_public": t.Spec.Public, "is_protected": t.Spec.Protected,
		"created_at": timeOf(t.Created, templateTime), "updated_at": updatedAt(t)}
}

// findJob returns the Sahara job an id names, if tenant pid sees it.
func (h *Handler) findJob(pid, id string) (raftstore.Template, bool) {
	cid, ok := coreID(id)
	if !ok {
		return raftstore.Template{}, false
	}
	t, ok := h.store.State().Template(cid)
	if !ok || !jobTypes[t.Spec.Type] || t.Project != pid && !t.Spec.Public {
		return raftstore.Template{}, false
	}
	return t, true
}

func (h *Handler) listJobs(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	q, err := parseList(c, jobSorts)
	if err != nil {
		Abort(c, err)
		return
	}
	l := lister{q: q}
	h.eachVisible(pid, func(typ string) bool { return jobTypes[typ] }, func(t *raftstore.Template) bool { return l.add(h.jobView(t)) })
	l.answer(c, "jobs")
}

func (h *Handler) showJob(c *gin.Context) {
	pid, ok := project(c, false)
	if !ok {
		return
	}
	id := param(c, "id")
	t, ok := h.findJob(pid, id)
	if !ok {
		Abort(c, notFound(id))
		return
	}
	c.JSON(http.StatusOK, gin.H{"job": h.jobView(&t)})
}

// refs reads a job's mains or libs: unique non-empty strings, each a job
// binary the tenant sees; the answer is their core ids and binaries.
func (h *Handler) refs(pid string, m map[string]any, k string) ([]string, []raftstore.Template, error) {
	v, ok := m[k]
	if !ok || v == nil {
		return nil, nil, nil
	}
	list, ok := v.([]any)
	if !ok || len(list) > MaxRefs {
		return nil, nil, validation("%s: an array of at most %d job binary ids expected", k, MaxRefs)
	}
	var ids []string
	var bins []raftstore.Template
	seen := map[string]bool{}
	for _, e := range list {
		s, ok := e.(string)
		if !ok || s == "" {
			return nil, nil, validation("%s: non-empty strings expected", k)
		}
		if seen[s] {
			return nil, nil, validation("%s: '%s' is not unique", k, apierr.Truncate(s, 64))
		}
		seen[s] = true
		b, ok := h.findTyped(pid, s, typeBinary)
		if !ok {
			return nil, nil, invalidRef("JobBinary with id '%s' not found", apierr.Truncate(s, 64))
		}
		ids, bins = append(ids, b.ID), append(bins, b)
	}
	return ids, bins, nil
}

// createJob answers POST /jobs (JOB_SCHEMA and check_mains_libs): 202
// and the job. Its command and main are fixed here from its binaries.
func (h *Handler) createJob(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	spec, err := h.readJob(c, pid)
	if err != nil {
		Abort(c, err)
		return
	}
	if _, exists := h.store.State().TemplateByName(pid, spec.Name); exists {
		Abort(c, saharaErr(http.StatusConflict, "NAME_ALREADY_EXISTS", "Job with name '%s' already exists", apierr.Truncate(spec.Name, 64)))
		return
	}
	t, err := h.ops.CreateTemplate(c, pid, spec)
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"job": h.jobView(&t)})
}

// readJob reads and checks a job's body into a template spec.
func (h *Handler) readJob(c *gin.Context, pid string) (raftstore.TemplateSpec, error) {
	var sp raftstore.TemplateSpec
	m, err := readJSON(c)
	if err != nil {
		return sp, err
	}
	if err := onlyKeys(m, "name", "type", "description", "mains", "libs", "streaming", "interface", "is_public", "is_protected"); err != nil {
		return sp, err
	}
	if _, ok := m["name"]; !ok {
		return sp, validation("'name' is a required property")
	}
	if _, ok := m["type"]; !ok {
		return sp, validation("'type' is a required property")
	}
	var d jobDoc
	if sp.Name, err = optString(m, "name", 4*MaxNameChars); err != nil {
		return sp, err
	}
	if err := checkName("name", sp.Name); err != nil {
		return sp, err
	}
	if sp.Type, err = optString(m, "type", 64); err != nil {
		return sp, err
	}
	if !jobTypes[sp.Type] {
		return sp, validation("'%s' is not one of %s", apierr.Truncate(sp.Type, 64), typeList())
	}
	if d.Description, err = optString(m, "description", MaxDescriptionBytes); err != nil {
		return sp, err
	}
	if s, ok := m["streaming"]; ok {
		if _, isBool := s.(bool); !isBool {
			return sp, validation("streaming: a boolean expected")
		}
		d.Streaming = s.(bool)
	}
	if v, ok := m["interface"]; ok && v != nil {
		list, ok := v.([]any)
		if !ok {
			return sp, validation("interface: an array expected")
		}
		d.Interface = list
	}
	for _, k := range []string{"is_public", "is_protected"} {
		b, err := optBool(m, k)
		if err != nil {
			return sp, err
		}
		if b != nil && k == "is_public" {
			sp.Public = *b
		} else if b != nil {
			sp.Protected = *b
		}
	}
	var mains, libs []raftstore.Template
	if d.Mains, mains, err = h.refs(pid, m, "mains"); err != nil {
		return sp, err
	}
	if d.Libs, libs, err = h.refs(pid, m, "libs"); err != nil {
		return sp, err
	}
	if err := checkMainsLibs(sp.Type, d.Mains, d.Libs); err != nil {
		return sp, err
	}
	if sp.Command, sp.Main, err = h.commandOf(sp.Type, mains, libs); err != nil {
		return sp, err
	}
	sp.Doc, _ = json.Marshal(d)
	if err := raftstore.CheckTemplateSpec(&sp); err != nil {
		return sp, err
	}
	return sp, nil
}

func typeList() string {
	var ts []string
	for t := range jobTypes {
		ts = append(ts, "'"+t+"'")
	}
	sort.Strings(ts)
	return "[" + strings.Join(ts, ", ") + "]"
}

// checkMainsLibs is Sahara's check_mains_libs.
func checkMainsLibs(typ string, mains, libs []string) error {
	switch typ {
	case TypePig, TypeHive, TypeShell:
		if len(mains) == 0 {
			return invalidData("%s flow requires main script", typ)
		}
	case TypeSpark, TypeStorm, TypePyleus:
		if len(mains) == 0 {
			return invalidData("%s job requires main application jar", typ)
		}
	case TypeJava, TypeMapReduce:
		if len(libs) == 0 {
			return invalidData("%s flow requires libs", typ)
		}
		if len(mains) > 0 {
			return invalidData("%s flow does not use mains", typ)
		}
	case TypeStreaming:
		if len(mains) > 0 {
			return invalidData("%s flow does not use mains", typ)
		}
	}
	for _, a := range mains {
		for _, b := range libs {
			if a == b {
				return invalidData("'mains' and 'libs' overlap")
			}
		}
	}
	return nil
}

// commandOf fixes a job's command and main from its binaries: a Shell
// job runs its first main (the script inline, or its file); another
// type runs its configured command ("" when none: refused at execute)
// with {main} its first main's file, or for Java its libs' files joined
// by ':' (a class path).
func (h *Handler) commandOf(typ string, mains, libs []raftstore.Template) (cmd, main string, err error) {
	st := h.store.State()
	if typ == TypeShell {
		u := docOf(&mains[0]).URL
		if strings.HasPrefix(u, schemeFile) {
			return ShellFileCommand, filePath(u), nil
		}
		cid, _ := coreID(strings.TrimPrefix(u, schemeInternal))
		in, ok := st.Template(cid)
		if !ok {
			return "", "", invalidRef("JobBinaryInternal of '%s' doesn't exist", apierr.Truncate(u, 64))
		}
		return ShellCommand, in.Spec.Main, nil
	}
	files := mains
	if typ == TypeJava {
		files = libs
	}
	var paths []string
	for _, b := range files {
		u := docOf(&b).URL
		if !strings.HasPrefix(u, schemeFile) {
			return "", "", invalidData("Croft runs a %s job's binaries from file:// paths on the agents; internal-db:// scripts run as Shell jobs", typ)
		}
		paths = append(paths, filePath(u))
	}
	if len(paths) > 0 {
		if typ == TypeJava {
			main = strings.Join(paths, ":")
		} else {
			main = paths[0]
		}
	}
	return h.cfg.JobTypes[typ], main, nil
}

// updateJob answers PATCH /jobs/{id} (JOB_UPDATE_SCHEMA): 202 and the job.
// A protected job changes only when the patch clears is_protected.
func (h *Handler) updateJob(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	id := param(c, "id")
	m, err := readJSON(c)
	if err == nil {
		err = onlyKeys(m, "name", "description", "is_public", "is_protected")
	}
	if err != nil {
		Abort(c, err)
		return
	}
	t, ok := h.findJob(pid, id)
	if !ok {
		Abort(c, notFound(id))
		return
	}
	if t.Project != pid {
		Abort(c, saharaErr(http.StatusBadRequest, "UPDATE_FAILED", "Job %s belongs to another tenant", ids.Dashed(t.ID)))
		return
	}
	var patch raftstore.TemplatePatch
	if _, ok := m["name"]; ok {
		name, err := optString(m, "name", 4*MaxNameChars)
		if err == nil {
			err = checkName("name", name)
		}
		if err != nil {
			Abort(c, err)
			return
		}
		patch.Name = &name
	}
	if _, ok := m["description"]; ok {
		desc, err := optString(m, "description", MaxDescriptionBytes)
		if err != nil {
			Abort(c, err)
			return
		}
		d := jobDocOf(&t)
		d.Description = desc
		doc, _ := json.Marshal(d)
		patch.Doc = &doc
	}
	if patch.Public, err = optBool(m, "is_public"); err == nil {
		patch.Protected, err = optBool(m, "is_protected")
	}
	if err != nil {
		Abort(c, err)
		return
	}
	t, err = h.ops.UpdateTemplateIf(c, t.ID, t.Revision, patch)
	switch {
	case errors.Is(err, raftstore.ErrProtected):
		err = saharaErr(http.StatusBadRequest, "UPDATE_FAILED", "Job %s is protected and cannot be updated", ids.Dashed(t.ID))
	case errors.Is(err, raftstore.ErrConflict):
		err = saharaErr(http.StatusConflict, "CONFLICT", "Job %s changed meanwhile or the name is taken; try again", apierr.Truncate(id, 64))
	}
	if err != nil {
		Abort(c, err)
		return
	}
	c.JSON(http.StatusAccepted, gin.H{"job": h.jobView(&t)})
}

// deleteJob answers DELETE /jobs/{id}: 204; 400 DELETION_FAILED while
// executions reference it or it is protected.
func (h *Handler) deleteJob(c *gin.Context) {
	pid, ok := project(c, true)
	if !ok {
		return
	}
	id := param(c, "id")
	t, ok := h.findJob(pid, id)
	if !ok {
		Abort(c, notFound(id))
		return
	}
	if t.Project != pid {
		Abort(c, saharaErr(http.StatusBadRequest, "DELETION_FAILED", "Job %s belongs to another tenant", ids.Dashed(t.ID)))
		return
	}
	err := h.ops.DeleteTemplate(c, t.ID)
	switch {
	case errors.Is(err, raftstore.ErrTemplateInUse):
		err = saharaErr(http.StatusBadRequest, "DELETION_FAILED", "Job deletion failed on foreign key constraint")
	case errors.Is(err, raftstore.ErrProtected):
		err = saharaErr(http.StatusBadRequest, "DELETION_FAILED", "Job %s is protected and cannot be deleted", ids.Dashed(t.ID))
	case errors.Is(err, raftstore.ErrNotFound):
		err = nil
	}
	if err != nil {
		Abort(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// configHints answers GET /jobs/config-hints/{type}: Croft has no
// plugin hints, so every type's are empty.
func (h *Handler) configHints(c *gin.Context) {
	if _, ok := project(c, false); !ok {
		return
	}
	typ := param(c, "type")
	if !jobTypes[typ] {
		Abort(c, invalidData("Job type '%s' is not supported", apierr.Truncate(typ, 64)))
		return
	}
	c.JSON(http.StatusOK, gin.H{"job_config": gin.H{"configs": []any{}, "params": gin.H{}, "args": []any{}}})
}

// listJobTypes answers GET /job-types: the types the farm runs (Shell, and
// those with a configured command), each offered by the "croft" plugin;
// ?type= keeps one.
func (h *Handler) listJobTypes(c *gin.Context) {
	if _, ok := project(c, false); !ok {
		return
	}
	want := c.Query("type")
	out := []obj{}
	for _, typ := range h.runnable() {
		if want != "" && typ != want {
			continue
		}
		out = append(out, obj{"name": typ, "plugins": []obj{{"name": "croft", "title": "Croft farm",
			"description": "Runs the job on a host of a Croft pool", "versions": obj{"1": obj{}}}}})
	}
	c.JSON(http.StatusOK, gin.H{"job_types": out})
}

// runnable lists the types the farm runs, sorted.
func (h *Handler) runnable() []string {
	out := []string{TypeShell}
	for typ, cmd := range h.cfg.JobTypes {
		if jobTypes[typ] && typ != TypeShell && cmd != "" {
			out = append(out, typ)
		}
	}
	sort.Strings(out)
	return out
}
