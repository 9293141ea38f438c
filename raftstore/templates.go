package raftstore

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/google/btree"

	"github.com/croftfarm/croft/farm"
)

// Templates and executions (DESIGN.md, "Templates and executions"): a
// template is a saved job of a project, its command a farm command
// template (farm.ExpandCommand); an execution runs it once, as one job of
// that project, with arguments, parameters (the job's environment) and a
// pool. The execution's state is its job's: the farm's rules (retry,
// timeout, cancel) run it; this file only links the two.

// Errors of templates and executions. The API edge maps them to statuses
// (api/apierr); a dialect may answer them in its own words (Sahara:
// DELETION_FAILED for ErrTemplateInUse).
var (
	// ErrTemplateInUse means a template still has executions: it cannot
	// be deleted until they are.
	ErrTemplateInUse = errors.New("template in use by executions")
	// ErrProtected means a protected template cannot be changed or
	// deleted; an update that clears Protected may change it.
	ErrProtected = errors.New("template is protected")
	// ErrExecutionActive means an execution's job has not ended yet: it
	// cannot be deleted until it ends or is canceled.
	ErrExecutionActive = errors.New("execution has not ended")
	// ErrNoCommand means the template has no command, so nothing can run
	// it (a type the farm cannot execute). It is also an ErrInvalid.
	ErrNoCommand = fmt.Errorf("%w: the template has no command to run", ErrInvalid)
)

// JobDefaults are the job fields a template gives its executions' jobs.
type JobDefaults struct {
	_struct struct{} `codec:",toarray"`

	Retry    int
	Timeout  int64 // seconds, 0 = none
	Priority int
	// Affinity is the job's affinity names, comma separated; an
	// execution's pool is added to them.
	Affinity string
	// Env is the environment of every execution's job; the execution's
	// parameters are added over it.
	Env map[string]string
}

// TemplateSpec is what a template's author sets.
type TemplateSpec struct {
	// Encoded as an array; fields are appended at the end only.
	_struct struct{} `codec:",toarray"`

	// Name is unique in the template's project.
	Name string
	// Type is a free word the dialect gives meaning to ("Shell",
	// "Spark", "Pig", "Java", ...).
	Type string
	// Command is a farm command template ({main}, {args}); "" for a
	// template that the farm cannot run (ErrNoCommand on execute).
	Command string
	// Main is what {main} stands for: an inline script, a path, a binary.
	Main     string
	Defaults JobDefaults
	// Public templates are visible to every project's readers;
	// Protected ones are not changed nor deleted until an update clears
	// the flag.
	Public    bool
	Protected bool
	// Doc is the dialect's own document of the template (opaque here),
	// Labels its key-value tags.
	Doc    []byte
	Labels map[string]string
}

// Template is a saved job of a project. Times are unix nanoseconds
// stamped by the leader.
type Template struct {
	// Snapshots encode it as an array. Fields are appended at the end only.
	_struct struct{} `codec:",toarray"`

	// ID is 32 lowercase hex digits drawn by the leader.
	ID      string
	Project string
	Spec    TemplateSpec
	Created int64
	Updated int64
	// Revision counts the changes of the template: 1 when created, one
	// more for each update or docs write. 0 is unknown (a template of an
	// older snapshot): the next change makes it 1.
	Revision int64
}

// Execution is one run of a template: one job of the template's project.
// It lives as long as its job: deleting the job (by any route, or its
// expiry) forgets the execution.
type Execution struct {
	// Snapshots encode it as an array. Fields are appended at the end only.
	_struct struct{} `codec:",toarray"`

	// ID is 32 lowercase hex digits drawn by the leader.
	ID       string
	Template string
	Project  string
	// Pool is the affinity name the job needed besides the template's
	// ("": none): a pool of hosts is the workers whose affinity lines
	// name it.
	Pool   string
	JobID  int64
	Args   []string
	Params map[string]string
	Doc    []byte
	// Created is when it was executed.
	Created int64
	// Host, when not "", is the host the job is pinned to: it runs only
	// on a slot of that host (see Execute.Host).
	Host string
	// Revision counts the writes of its Doc (DocsWrite), from 1 at execute.
	Revision int64
}

// TemplateCreate adds a template to a project. The result is nil.
type TemplateCreate struct {
	Now     int64
	ID      string
	Project string
	Spec    TemplateSpec
}

// TemplatePatch holds the template fields to change; nil means unchanged.
type TemplatePatch struct {
	Name      *string
	Type      *string
	Command   *string
	Main      *string
	Defaults  *JobDefaults
	Public    *bool
	Protected *bool
	Doc       *[]byte
	Labels    *map[string]string
}

// TemplateUpdate changes a template's fields. The result is nil.
type TemplateUpdate struct {
	Now   int64
	ID    string
	Patch TemplatePatch
	// IfRevision, when not 0, refuses the update with ErrConflict unless
	// the template is at this revision (compare-and-set).
	IfRevision int64
}

// TemplateDelete removes a template without executions. The result is nil.
type TemplateDelete struct {
	Now int64
	ID  string
}

// Execute runs a template once: it creates the execution and its job in
// one step, all or nothing. The result is the job's id (int64).
type Execute struct {
	Now int64
	// ID is the new execution's, 32 lowercase hex digits.
	ID       string
	Template string
	Pool     string
	Args     []string
	Params   map[string]string
	Doc      []byte
	// User is the job's user (who executed it).
	User string
	// MaxProjectJobs is the leader's job quota, as in JobCreate.
	MaxProjectJobs int
	// Host, when not "", pins the job to a host: it runs only on a slot
	// of that host (a worker registered with that HostInfo.Name), and
	// there only where its affinity lets it, as anywhere. The host need
	// not exist yet: the job waits for one of its agents. At most
	// MaxHostPinned executions are pinned to one host.
	Host string
}

// ExecutionCancel cancels an execution's job. The result is nil.
type ExecutionCancel struct {
	Now int64
	ID  string
}

// ExecutionDelete forgets an execution whose job ended, and deletes the
// job. The result is nil.
type ExecutionDelete struct {
	Now int64
	ID  string
}

func (TemplateCreate) Type() MessageType  { return MsgTemplateCreate }
func (TemplateUpdate) Type() MessageType  { return MsgTemplateUpdate }
func (TemplateDelete) Type() MessageType  { return MsgTemplateDelete }
func (Execute) Type() MessageType         { return MsgExecute }
func (ExecutionCancel) Type() MessageType { return MsgExecutionCancel }
func (ExecutionDelete) Type() MessageType { return MsgExecutionDelete }

// templateStore holds the templates and executions of a state, and their
// derived indexes (rebuilt on restore by add).
type templateStore struct {
	byID  map[string]*Template
	execs map[string]*Execution

	// derived
	byName     map[string]string     // project "\x00" name -> id
	order      *btree.BTreeG[string] // template ids
	execOrder  *btree.BTreeG[string] // execution ids
	perProject map[string]int        // templates of each project
	uses       map[string]int        // executions of each template
	execByJob  map[int64]string      // job id -> its execution's id
}

func newTemplateStore() templateStore {
	return templateStore{
		byID:       make(map[string]*Template),
		execs:      make(map[string]*Execution),
		byName:     make(map[string]string),
		order:      btree.NewOrderedG[string](32),
		execOrder:  btree.NewOrderedG[string](32),
		perProject: make(map[string]int),
		uses:       make(map[string]int),
		execByJob:  make(map[int64]string),
	}
}

func nameKey(project, name string) string { return project + "\x00" + name }

func (t *templateStore) addTemplate(x *Template) {
	t.byID[x.ID] = x
	t.byName[nameKey(x.Project, x.Spec.Name)] = x.ID
	t.order.ReplaceOrInsert(x.ID)
	t.perProject[x.Project]++
}

func (t *templateStore) dropTemplate(x *Template) {
	delete(t.byID, x.ID)
	delete(t.byName, nameKey(x.Project, x.Spec.Name))
	t.order.Delete(x.ID)
	if t.perProject[x.Project]--; t.perProject[x.Project] <= 0 {
		delete(t.perProject, x.Project)
	}
	delete(t.uses, x.ID)
}

// replace puts y (the same id, a new record) in x's place, keeping its
// executions' count.
func (t *templateStore) replace(x, y *Template) {
	uses := t.uses[x.ID]
	t.dropTemplate(x)
	t.addTemplate(y)
	if uses > 0 {
		t.uses[y.ID] = uses
	}
}

func (t *templateStore) addExecution(e *Execution) {
	t.execs[e.ID] = e
	t.execOrder.ReplaceOrInsert(e.ID)
	t.uses[e.Template]++
	t.execByJob[e.JobID] = e.ID
}

// dropJob forgets the execution of job id, if it has one: an execution
// lives as long as its job (State.dropJob calls it).
func (t *templateStore) dropJob(id int64) {
	eid, ok := t.execByJob[id]
	if !ok {
		return
	}
	delete(t.execByJob, id)
	e := t.execs[eid]
	delete(t.execs, eid)
	t.execOrder.Delete(eid)
	if e != nil {
		if t.uses[e.Template]--; t.uses[e.Template] <= 0 {
			delete(t.uses, e.Template)
		}
	}
}

// ---------------------------------------------------------------------------
// Checks

// CheckHexID checks a template's or an execution's id: 32 lowercase hex
// digits.
func CheckHexID(field, id string) error {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return invalid("%s %q: 32 lowercase hex digits are expected", field, truncate(id, 40))
	}
	return nil
}

// checkWord checks a one-word field (a template's type, a label's key):
// 1 to MaxWordBytes letters, digits, '.', '_', '+', '-' or ':'.
func checkWord(field, v string) error {
	if v == "" || len(v) > MaxWordBytes {
		return fmt.Errorf("%w: %s %q: 1 to %d bytes", ErrInvalid, field, truncate(v, 40), MaxWordBytes)
	}
	for _, r := range v {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("._+-:", r):
		default:
			return fmt.Errorf("%w: %s %q: only letters, digits, '.', '_', '+', '-' and ':'", ErrInvalid, field, truncate(v, 40))
		}
	}
	return nil
}

// checkPool checks an execution's pool: "" or one affinity name.
func checkPool(pool string) error {
	if pool == "" {
		return nil
	}
	if err := CheckName("pool", pool); err != nil {
		return err
	}
	if len(pool) > MaxAffinityName {
		return fmt.Errorf("%w: pool %q is %d bytes, the limit is %d", ErrTooLarge, truncate(pool, 40), len(pool), MaxAffinityName)
	}
	if strings.TrimSpace(pool) != pool || strings.ContainsAny(pool, ",#") {
		return invalid("pool %q: one affinity name, without ',', '#' or surrounding space", truncate(pool, 40))
	}
	return nil
}

// checkTemplateName checks a template's name: one line of 1 to
// MaxNameBytes bytes, not only spaces.
func checkTemplateName(name string) error {
	if err := CheckName("template name", name); err != nil {
		return err
	}
	if strings.TrimSpace(name) == "" {
		return invalid("template name is empty")
	}
	return nil
}

// CheckTemplateSpec checks a template's fields against the limits.
func CheckTemplateSpec(sp *TemplateSpec) error {
	if err := checkTemplateName(sp.Name); err != nil {
		return err
	}
	if err := checkWord("template type", sp.Type); err != nil {
		return err
	}
	if sp.Command != "" {
		if len(sp.Command) > farm.MaxCommandTemplateBytes {
			return fmt.Errorf("%w: command is %d bytes, the limit is %d", ErrTooLarge, len(sp.Command), farm.MaxCommandTemplateBytes)
		}
		if err := farm.CheckCommandTemplate(sp.Command); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	if err := checkText("main", sp.Main, MaxMainBytes); err != nil {
		return err
	}
	d := &sp.Defaults
	p := JobPatch{Timeout: &d.Timeout, Retry: &d.Retry, Priority: &d.Priority, Affinity: &d.Affinity}
	if d.Env != nil {
		p.Env = &d.Env
	}
	if err := CheckPatch(&p); err != nil {
		return err
	}
	if err := checkDoc(sp.Doc); err != nil {
		return err
	}
	return checkLabels(sp.Labels)
}

func checkDoc(doc []byte) error {
	if len(doc) > MaxDocBytes {
		return fmt.Errorf("%w: doc is %d bytes, the limit is %d", ErrTooLarge, len(doc), MaxDocBytes)
	}
	return nil
}

func checkLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%w: %d labels, the limit is %d", ErrTooLarge, len(labels), MaxLabels)
	}
	for _, k := range sortedKeys(keysOf(labels)) {
		if err := checkWord("label", k); err != nil {
			return err
		}
		if err := checkText("label "+k, labels[k], MaxLabelValueBytes); err != nil {
			return err
		}
	}
	return nil
}

// CheckExecute checks an execution's own fields (its id, pool, arguments,
// parameters and doc) against the limits; what depends on the template
// is checked when it applies.
func CheckExecute(c *Execute) error {
	if err := CheckHexID("execution id", c.ID); err != nil {
		return err
	}
	if err := checkPool(c.Pool); err != nil {
		return err
	}
	if len(c.Args) > MaxArgs {
		return fmt.Errorf("%w: %d arguments, the limit is %d", ErrTooLarge, len(c.Args), MaxArgs)
	}
	size := 0
	for _, a := range c.Args {
		size += len(a)
		if strings.IndexByte(a, 0) >= 0 {
			return invalid("an argument contains a NUL byte")
		}
	}
	if size > MaxArgsBytes {
		return fmt.Errorf("%w: arguments are %d bytes, the limit is %d", ErrTooLarge, size, MaxArgsBytes)
	}
	if len(c.Params) > MaxParams {
		return fmt.Errorf("%w: %d parameters, the limit is %d", ErrTooLarge, len(c.Params), MaxParams)
	}
	if err := checkEnv(c.Params); err != nil {
		return fmt.Errorf("parameters: %w", err)
	}
	if err := CheckName("user", c.User); err != nil {
		return err
	}
	if c.Host != "" {
		if err := CheckHostName(c.Host); err != nil {
			return err
		}
	}
	return checkDoc(c.Doc)
}

// ---------------------------------------------------------------------------
// Apply

func (s *State) createTemplate(c *TemplateCreate) error {
	if err := CheckHexID("template id", c.ID); err != nil {
		return err
	}
	if err := CheckTemplateSpec(&c.Spec); err != nil {
		return err
	}
	switch {
	case s.tpl.byID[c.ID] != nil:
		return invalid("template id %s is taken", c.ID)
	case s.projects[c.Project] == nil:
		return notFound("project %q", c.Project)
	case s.tpl.byName[nameKey(c.Project, c.Spec.Name)] != "":
		return invalid("project %q has a template named %q", c.Project, truncate(c.Spec.Name, 40))
	case s.tpl.perProject[c.Project] >= MaxProjectTemplates:
		return fmt.Errorf("%w: project %q has %d templates, the limit", ErrTooLarge, c.Project, MaxProjectTemplates)
	}
	x := &Template{ID: c.ID, Project: c.Project, Spec: cloneSpec(c.Spec), Created: c.Now, Updated: c.Now}
	s.revise(&x.Revision) // 1, from release 2 on
	s.tpl.addTemplate(x)
	return nil
}

// cloneSpec copies sp's maps and slices: a template is replaced whole,
// never changed in place, so readers may share it.
func cloneSpec(sp TemplateSpec) TemplateSpec {
	sp.Defaults.Env = maps.Clone(sp.Defaults.Env)
	sp.Labels = maps.Clone(sp.Labels)
	sp.Doc = append([]byte(nil), sp.Doc...)
	return sp
}

// patched returns sp with p applied.
func patched(sp TemplateSpec, p *TemplatePatch) TemplateSpec {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&sp.Name, p.Name)
	set(&sp.Type, p.Type)
	set(&sp.Command, p.Command)
	set(&sp.Main, p.Main)
	if p.Defaults != nil {
		sp.Defaults = *p.Defaults
	}
	if p.Public != nil {
		sp.Public = *p.Public
	}
	if p.Protected != nil {
		sp.Protected = *p.Protected
	}
	if p.Doc != nil {
		sp.Doc = *p.Doc
	}
	if p.Labels != nil {
		sp.Labels = *p.Labels
	}
	return sp
}

func (s *State) updateTemplate(c *TemplateUpdate) error {
	x := s.tpl.byID[c.ID]
	if x == nil {
		return notFound("template %s", truncate(c.ID, 40))
	}
	if err := checkRevision("template", x.ID, x.Revision, c.IfRevision); err != nil {
		return err
	}
	if x.Spec.Protected && (c.Patch.Protected == nil || *c.Patch.Protected) {
		return fmt.Errorf("%w: %s: clear protected in the same update to change it", ErrProtected, c.ID)
	}
	sp := patched(x.Spec, &c.Patch)
	if err := CheckTemplateSpec(&sp); err != nil {
		return err
	}
	if id := s.tpl.byName[nameKey(x.Project, sp.Name)]; id != "" && id != x.ID {
		return invalid("project %q has a template named %q", x.Project, truncate(sp.Name, 40))
	}
	// Replaced whole: readers hold copies of the old one.
	y := &Template{ID: x.ID, Project: x.Project, Spec: cloneSpec(sp), Created: x.Created, Updated: c.Now, Revision: x.Revision}
	s.revise(&y.Revision)
	s.tpl.replace(x, y)
	return nil
}

func (s *State) deleteTemplate(c *TemplateDelete) error {
	x := s.tpl.byID[c.ID]
	switch {
	case x == nil:
		return notFound("template %s", truncate(c.ID, 40))
	case x.Spec.Protected:
		return fmt.Errorf("%w: %s: clear protected first", ErrProtected, c.ID)
	case s.tpl.uses[c.ID] > 0:
		return fmt.Errorf("%w: %s has %d executions", ErrTemplateInUse, c.ID, s.tpl.uses[c.ID])
	}
	s.tpl.dropTemplate(x)
	return nil
}

// ExecutionSpec is the job an execution of template x with the fields of
// c runs: the template's command expanded with c's arguments, its
// defaults, c's parameters over its environment, and c's pool added to
// its affinity. The same for the FSM and an edge that checks first.
func ExecutionSpec(x *Template, c *Execute) (JobSpec, error) {
	sp := &x.Spec
	if sp.Command == "" {
		return JobSpec{}, fmt.Errorf("%w: template %q (type %s)", ErrNoCommand, truncate(sp.Name, 40), sp.Type)
	}
	n, err := farm.ExpandedCommandBytes(sp.Command, sp.Main, c.Args)
	if err != nil {
		return JobSpec{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if n > MaxCommandBytes {
		return JobSpec{}, fmt.Errorf("%w: the expanded command is %d bytes, the limit is %d", ErrTooLarge, n, MaxCommandBytes)
	}
	cmd, err := farm.ExpandCommand(sp.Command, sp.Main, c.Args)
	if err != nil {
		return JobSpec{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var env map[string]string
	if len(sp.Defaults.Env)+len(c.Params) > 0 {
		env = make(map[string]string, len(sp.Defaults.Env)+len(c.Params))
		for k, v := range sp.Defaults.Env {
			env[k] = v
		}
		for k, v := range c.Params {
			env[k] = v
		}
	}
	aff := sp.Defaults.Affinity
	if c.Pool != "" {
		if strings.TrimSpace(aff) != "" {
			aff += ","
		}
		aff += c.Pool
	}
	js := JobSpec{
		Title: sp.Name, Command: cmd, Env: env, Retry: sp.Defaults.Retry, Timeout: sp.Defaults.Timeout,
		Priority: sp.Defaults.Priority, Affinity: aff, User: c.User, Project: x.Project,
	}
	if err := CheckSpec(&js); err != nil {
		return JobSpec{}, err
	}
	return js, nil
}

func (s *State) execute(c *Execute) (int64, error) {
	if err := CheckExecute(c); err != nil {
		return 0, err
	}
	x := s.tpl.byID[c.Template]
	if x == nil {
		return 0, notFound("template %s", truncate(c.Template, 40))
	}
	if s.tpl.execs[c.ID] != nil {
		return 0, invalid("execution id %s is taken", c.ID)
	}
	js, err := ExecutionSpec(x, c)
	if err != nil {
		return 0, err
	}
	if c.Host != "" {
		if err := s.checkPinRoom(c.Host); err != nil {
			return 0, err
		}
	}
	// createJobs checks everything before it changes anything, and
	// nothing below can fail: the execution and its job come together.
	ids, err := s.createJobs(&JobCreate{Now: c.Now, Jobs: []JobSpec{js}, MaxProjectJobs: c.MaxProjectJobs})
	if err != nil {
		return 0, err
	}
	e := &Execution{
		ID: c.ID, Template: x.ID, Project: x.Project, Pool: c.Pool, JobID: ids[0],
		Args: append([]string(nil), c.Args...), Params: maps.Clone(c.Params), Doc: append([]byte(nil), c.Doc...), Created: c.Now,
		Host: c.Host,
	}
	s.revise(&e.Revision) // 1 from release 2 on: an older entry replays as it did
	s.tpl.addExecution(e)
	if c.Host != "" {
		s.pinJob(s.jobs[ids[0]], c.Host)
	}
	return ids[0], nil
}

// executionJob returns execution id and its job.
func (s *State) executionJob(id string) (*Execution, *Job, error) {
	e := s.tpl.execs[id]
	if e == nil {
		return nil, nil, notFound("execution %s", truncate(id, 40))
	}
	j := s.jobs[e.JobID]
	if j == nil {
		// An execution goes with its job (dropJob): only a corrupt
		// state gets here.
		return nil, nil, fmt.Errorf("%w: execution %s has no job %d", ErrInternal, id, e.JobID)
	}
	return e, j, nil
}

func (s *State) cancelExecution(c *ExecutionCancel) error {
	_, j, err := s.executionJob(c.ID)
	if err != nil {
		return err
	}
	return s.jobAction(&JobAction{Now: c.Now, Action: ActionCancel, IDs: []int64{j.ID}})
}

func (s *State) deleteExecution(c *ExecutionDelete) error {
	_, j, err := s.executionJob(c.ID)
	if err != nil {
		return err
	}
	if !ended(j) {
		return fmt.Errorf("%w: %s: its job %d is %s; cancel it first", ErrExecutionActive, c.ID, j.ID, j.Reported())
	}
	// The job goes, and the execution with it (dropJob).
	return s.deleteJobs(&JobDelete{Now: c.Now, IDs: []int64{j.ID}})
}

// ended reports whether job j will not run again by itself: finished,
// canceled, or failed with no retry left.
func ended(j *Job) bool {
	switch j.State {
	case StateFinished, StateCanceled:
		return true
	case StateFailed:
		return j.RunDone >= j.Retry
	}
	return false
}

// ---------------------------------------------------------------------------
// Reads

// ExecutionStatus is an execution with its job's state: the execution's.
type ExecutionStatus struct {
	Execution
	// State is the job's (its reported state: paused when paused).
	State string
	// Ended is true once the job will not run again by itself.
	Ended bool
	// ExitCode is the return code of the job's last run once it ended,
	// NoExitCode before, or when that run reported none (Reason says
	// why); Signal is the signal that killed it, 0 if none.
	ExitCode int
	Signal   int
	Reason   string
	// Tries is how many times the job started; Worker runs or ran it.
	Tries     int
	Worker    string
	StartTime int64
	EndTime   int64
}

func (s *State) status(e *Execution) ExecutionStatus {
	out := ExecutionStatus{Execution: *e, ExitCode: NoExitCode}
	j := s.jobs[e.JobID]
	if j == nil {
		return out
	}
	out.State, out.Ended, out.Tries, out.Worker, out.StartTime = j.Reported(), ended(j), int(j.Tries), j.Worker, j.StartTime
	if out.Ended && j.Tries > 0 {
		out.ExitCode, out.Signal, out.Reason, out.EndTime = int(j.ExitCode), int(j.Signal), j.Reason.String(), j.EndTime
	}
	return out
}

// Template returns a template by id.
func (s *State) Template(id string) (Template, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	x := s.tpl.byID[id]
	if x == nil {
		return Template{}, false
	}
	return *x, true
}

// TemplateByName returns project's template of this name.
func (s *State) TemplateByName(project, name string) (Template, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	x := s.tpl.byID[s.tpl.byName[nameKey(project, name)]]
	if x == nil {
		return Template{}, false
	}
	return *x, true
}

// TemplateUses returns how many executions template id has.
func (s *State) TemplateUses(id string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tpl.uses[id]
}

// TemplatesAfter returns up to n templates whose ids sort after after,
// in id order, looking at no more than ScanLimit; next and more are as for
// JobsAfter. The maps and slices inside are shared: read them only.
func (s *State) TemplatesAfter(after string, n int) (page []Template, next string, more bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	next = after
	n = min(n, ScanLimit)
	s.tpl.order.AscendGreaterOrEqual(after, func(id string) bool {
		if id == after && after != "" {
			return true
		}
		if len(page) >= n {
			more = true
			return false
		}
		page = append(page, *s.tpl.byID[id])
		next = id
		return true
	})
	return page, next, more
}

// Execution returns an execution by id, with its job's state.
func (s *State) Execution(id string) (ExecutionStatus, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.tpl.execs[id]
	if e == nil {
		return ExecutionStatus{}, false
	}
	return s.status(e), true
}

// ExecutionOfJob returns the id of job id's execution, if it has one.
func (s *State) ExecutionOfJob(id int64) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	eid, ok := s.tpl.execByJob[id]
	return eid, ok
}

// ExecutionsAfter returns up to n executions whose ids sort after after,
// in id order, of template tmpl only when it is not "", looking at no
// more than ScanLimit; next and more are as for JobsAfter (a page may be
// empty while more is true, when none of the executions looked at
// matched). The maps and slices inside are shared: read them only.
func (s *State) ExecutionsAfter(after string, n int, tmpl string) (page []ExecutionStatus, next string, more bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	next = after
	n = min(n, ScanLimit)
	seen := 0
	s.tpl.execOrder.AscendGreaterOrEqual(after, func(id string) bool {
		if id == after && after != "" {
			return true
		}
		if len(page) >= n || seen >= ScanLimit {
			more = true
			return false
		}
		seen++
		next = id
		if e := s.tpl.execs[id]; tmpl == "" || e.Template == tmpl {
			page = append(page, s.status(e))
		}
		return true
	})
	return page, next, more
}

// snapshot lists the templates and executions in id order.
func (t *templateStore) snapshot() (tpls []*Template, execs []*Execution) {
	t.order.Ascend(func(id string) bool {
		tpls = append(tpls, t.byID[id])
		return true
	})
	t.execOrder.Ascend(func(id string) bool {
		execs = append(execs, t.execs[id])
		return true
	})
	return tpls, execs
}

// restore fills a new store from a snapshot's lists, rebuilding the
// derived indexes.
func (t *templateStore) restore(tpls []*Template, execs []*Execution) {
	for _, x := range tpls {
		t.addTemplate(x)
	}
	for _, e := range execs {
		t.addExecution(e)
	}
}
