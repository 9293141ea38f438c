package raftstore

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/croftfarm/croft/joblog"
)

// apply runs one decoded command against the state under the write lock.
// It returns the command's result or an error; on error nothing changed.
func (s *State) apply(index uint64, cmd Command) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := s.applyLocked(index, cmd)
	s.endApply()
	return res
}

// applyBatch applies several entries under one lock, with one write
// transaction of the log store for all of them. A nil command (an entry
// that is not a command) gets a nil result; an error, itself.
func (s *State) applyBatch(indexes []uint64, cmds []any) []any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]any, len(cmds))
	for i, c := range cmds {
		switch c := c.(type) {
		case Command:
			out[i] = s.applyLocked(indexes[i], c)
		default:
			out[i] = c
		}
	}
	s.endApply()
	return out
}

func (s *State) applyLocked(index uint64, cmd Command) any {
	if index > s.applied {
		s.applied = index
	}
	if b, ok := cmd.(*Batch); ok {
		out := make([]any, len(b.Entries))
		for i, e := range b.Entries {
			sub, err := Decode(e)
			if err != nil {
				// FSM.Apply halted before an unknown type it may not
				// skip; one it may skip has no effect (nil result).
				if !errors.Is(err, ErrUnknownType) {
					out[i] = err
				}
				continue
			}
			out[i] = s.applyOne(sub)
		}
		return out
	}
	return s.applyOne(cmd)
}

// endApply commits the log lines written and wakes waiters. A failed
// commit (a full disk) loses text on this coordinator only: the
// replicated state, log tails included, moved on as on every replica, and
// the store reports joblog.ErrLost to readers until the next start
// rebuilds it (see joblog/DESIGN.md).
func (s *State) endApply() {
	_ = s.lw.Commit()
	if s.readyGrew {
		s.readyGrew = false
		close(s.notify)
		s.notify = make(chan struct{})
	}
	if s.logChanged {
		s.logChanged = false
		if s.logWatched.Swap(false) {
			close(s.logNotify)
			s.logNotify = make(chan struct{})
		}
	}
	if s.changeWatched.Swap(false) {
		close(s.changeNotify)
		s.changeNotify = make(chan struct{})
	}
}

// skip records that the entry at index was applied without effect (an
// unknown type that may be skipped).
func (s *State) skip(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if index > s.applied {
		s.applied = index
	}
}

func (s *State) applyOne(cmd Command) (res any) {
	// A bug that panics here would panic on every node for the same entry,
	// and again on every restart while replaying it: the whole cluster would
	// be down for good. Every node recovers alike, so they stay identical.
	defer func() {
		if r := recover(); r != nil {
			res = fmt.Errorf("%w: %T panicked: %v", ErrInternal, cmd, r)
		}
	}()
	s.wakeNesting = 0 // a recovered panic may have left it raised
	switch c := cmd.(type) {
	case *NodeMeta:
		s.nodes[c.ID] = *c
		return nil
	case *NodeRemove:
		delete(s.nodes, c.ID)
		return nil
	case *JobCreate:
		return result(s.createJobs(c))
	case *JobEdit:
		return errOrNil(s.editJobs(upgradeEdit(c)))
	case *JobDelete:
		return errOrNil(s.deleteJobs(c))
	case *JobAction:
		return errOrNil(s.jobAction(c))
	case *JobSetDeps:
		return errOrNil(s.setDeps(c))
	case *AffinitySet:
		return errOrNil(s.setAffinities(c))
	case *WorkerRegister:
		return errOrNil(s.registerWorker(c))
	case *WorkerEdit:
		return errOrNil(s.editWorkers(c))
	case *WorkerDelete:
		return errOrNil(s.deleteWorkers(c))
	case *WorkerAction:
		return errOrNil(s.workerAction(c))
	case *Pick:
		return s.pick(c)
	case *Report:
		return result(s.report(c))
	case *JobTimeout:
		s.timeoutJobs(c)
		return nil
	case *WorkerLost:
		s.loseWorkers(c)
		return nil
	case *ReportPick:
		return result(s.reportPick(c))
	case *EventPrune:
		s.pruneRuns(c)
		return nil
	case *WorkerExpire:
		s.expireWorkers(c)
		return nil
	case *JobExpire:
		return errOrNil(s.deleteJobs(&JobDelete{Now: c.Now, IDs: s.expiredJobs(c)}))
	case *TokenCreate:
		return errOrNil(s.createToken(c))
	case *TokenRevoke:
		return errOrNil(s.revokeToken(c))
	case *ProjectCreate:
		return errOrNil(s.createProject(c))
	case *ProjectDelete:
		return errOrNil(s.deleteProject(c))
	case *SetRelease:
		s.release = max(s.release, c.Release)
		return nil
	case *InterpreterSet:
		return errOrNil(s.setInterpreter(c))
	case *InterpreterDelete:
		return errOrNil(s.deleteInterpreter(c))
	case *SessionOpen:
		return result(s.openSession(c))
	case *SessionUpdate:
		return errOrNil(s.updateSession(c))
	case *SessionClose:
		return errOrNil(s.closeSession(c))
	case *SessionDelete:
		return errOrNil(s.deleteSession(c))
	case *SessionSubmit:
		return result(s.submitCode(c))
	case *SessionStart:
		return errOrNil(s.startSession(c))
	case *SessionExpire:
		s.expireSessions(c)
		return nil
	case *TemplateCreate:
		return errOrNil(s.createTemplate(c))
	case *TemplateUpdate:
		return errOrNil(s.updateTemplate(c))
	case *TemplateDelete:
		return errOrNil(s.deleteTemplate(c))
	case *Execute:
		return result(s.execute(c))
	case *ExecutionCancel:
		return errOrNil(s.cancelExecution(c))
	case *ExecutionDelete:
		return errOrNil(s.deleteExecution(c))
	case *DocsWrite:
		return errOrNil(s.writeDocs(c))
	default:
		return fmt.Errorf("%w: %T cannot be applied here", ErrBadEntry, cmd)
	}
}

func result[T any](v T, err error) any {
	if err != nil {
		return err
	}
	return v
}

func errOrNil(err error) any {
	if err != nil {
		return err
	}
	return nil
}

// ---------------------------------------------------------------------------
// Jobs

func (s *State) createJobs(c *JobCreate) ([]int64, error) {
	// Check everything first: a create is all or nothing.
	if err := s.checkCreateStructure(c.Jobs); err != nil {
		return nil, err
	}
	newNames := map[string]bool{}
	projects := make([]string, len(c.Jobs)) // each job's project
	added := map[string]int{}               // new jobs per project
	for i, spec := range c.Jobs {
		// The structure (parents, ParentRef, dependencies) was checked
		// above; here the projects: a child is in its parent's, and a
		// job depends only on jobs of its own.
		parentProject := "" // a root job's
		switch {
		case spec.ParentRef != 0:
			parentProject = projects[spec.ParentRef-1]
		case spec.Parent != 0:
			parentProject = s.jobs[spec.Parent].Project
		}
		project := spec.Project
		switch {
		case project == "" && parentProject != "":
			project = parentProject
		case project == "":
			project = DefaultProject
		case parentProject != "" && project != parentProject:
			return nil, invalid("job %d: project %q differs from its parent's %q", i, project, parentProject)
		}
		if s.projects[project] == nil {
			return nil, notFound("project %q", project)
		}
		projects[i] = project
		added[project]++
		for _, d := range spec.Dependencies {
			if dj := s.jobs[d]; dj.Project != project {
				return nil, invalid("job %d: dependency %d is in project %q, not %q", i, d, dj.Project, project)
			}
		}
		if spec.Affinity != "" {
			if err := s.unknownAffinities(spec.Affinity, newNames); err != nil {
				return nil, err
			}
		}
	}
	if len(newNames) > s.freeAffinities() {
		return nil, invalid("%d new affinity names, only %d of %d affinity ids are free", len(newNames), s.freeAffinities(), MaxAffinityID)
	}
	if c.MaxProjectJobs > 0 {
		for _, name := range sortedKeys(keysOf(added)) {
			if have := s.projects[name].jobs; have+added[name] > c.MaxProjectJobs {
				return nil, fmt.Errorf("%w: project %q holds %d jobs; %d more would pass its limit of %d", ErrTooLarge, name, have, added[name], c.MaxProjectJobs)
			}
		}
	}
	ids := make([]int64, 0, len(c.Jobs))
	for i, spec := range c.Jobs {
		s.lastJobID++
		bits, _ := s.affinityMask(spec.Affinity, false)
		parent := spec.Parent
		if spec.ParentRef != 0 {
			parent = ids[spec.ParentRef-1]
		}
		j := &Job{
			ID:              s.lastJobID,
			Parent:          parent,
			Title:           spec.Title,
			Command:         spec.Command,
			Dir:             spec.Dir,
			Environment:     spec.Environment,
			Env:             envOf(spec.Env, spec.Environment),
			State:           StateWaiting,
			Paused:          spec.Paused,
			Retry:           spec.Retry,
			Timeout:         spec.Timeout,
			Priority:        clampPriority(spec.Priority),
			Affinity:        spec.Affinity,
			AffinityBits:    bits,
			User:            spec.User,
			URL:             spec.URL,
			ProgressPattern: spec.ProgressPattern,
			Created:         c.Now,
			Project:         projects[i],
		}
		s.addJob(j)
		p := s.node(j.Parent)
		// A new id is the largest: appending keeps Children sorted, and
		// readers' copies never look past their own length.
		p.Children = append(p.Children, j.ID)
		s.setDepsRaw(j, uniq(spec.Dependencies))
		j.State = s.depState(j)
		s.refreshH(j, true)
		s.changed(j, contrib{}, "", c.Now)
		ids = append(ids, j.ID)
	}
	return ids, nil
}

func uniq(ids []int64) []int64 {
	seen := make(map[int64]struct{}, len(ids))
	out := make([]int64, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

// setDepsRaw replaces j's dependency list and the reverse index.
func (s *State) setDepsRaw(j *Job, deps []int64) {
	for _, d := range j.Dependencies {
		if m := s.dependents[d]; m != nil {
			delete(m, j.ID)
			if len(m) == 0 {
				delete(s.dependents, d)
			}
		}
	}
	if len(deps) == 0 {
		deps = nil
	}
	j.Dependencies = deps
	for _, d := range deps {
		m := s.dependents[d]
		if m == nil {
			m = make(map[int64]struct{})
			s.dependents[d] = m
		}
		m[j.ID] = struct{}{}
	}
}

func (s *State) setDeps(c *JobSetDeps) error {
	j := s.jobs[c.ID]
	if j == nil {
		return notFound("job %d", c.ID)
	}
	deps := uniq(c.Deps)
	if err := s.checkDepsStructure(j.ID, deps); err != nil {
		return err
	}
	s.setDepsRaw(j, deps)
	s.evalDeps(j, c.Now)
	return nil
}

var validEditStates = map[string]bool{
	StateWaiting: true, StateBlocked: true, StatePaused: true, StateFinished: true, StateFailed: true,
	StateCanceled: true,
}

func (s *State) editJobs(c *JobEdit) error {
	// Parents, commands, dependencies and depth are checked on the state
	// after the whole edit (structure.go); the rest edit by edit.
	o, err := s.checkEditStructure(c.Edits)
	if err != nil {
		return err
	}
	var newNames map[string]bool
	for _, e := range c.Edits {
		p := e.Patch
		if p.State != nil {
			if !validEditStates[*p.State] {
				return invalid("state %q cannot be set (use waiting, paused, finished, failed or canceled)", *p.State)
			}
			if (*p.State == StateFinished || *p.State == StateFailed) && o.isGroup(e.ID) {
				return invalid("the state of group %d derives from its children", e.ID)
			}
		}
		if p.Affinity != nil {
			// Counted across the edits: each may name new affinities.
			if newNames == nil {
				newNames = map[string]bool{}
			}
			if err := s.unknownAffinities(*p.Affinity, newNames); err != nil {
				return err
			}
		}
	}
	if len(newNames) > s.freeAffinities() {
		return invalid("%d new affinity names, only %d of %d affinity ids are free", len(newNames), s.freeAffinities(), MaxAffinityID)
	}
	// Jobs that become groups drop their command (and running attempt)
	// first, and jobs that become leaves get theirs after the moves: no
	// job ever holds children and a command at once, even in between.
	for _, id := range o.commanded {
		if o.becomesGroup(id) {
			s.becomeGroup(s.jobs[id], c.Now)
		}
	}
	s.applyMoves(o, c.Now)
	for _, e := range c.Edits {
		s.editJob(s.jobs[e.ID], e.Patch, c.Now)
	}
	return nil
}

// becomeGroup clears a leaf's command. A running attempt ends first (the
// job is requeued, as for a lost worker): a group never runs. Its own run
// time goes too: a group's duration and start are its children's, and a
// leftover would stay in the sums once children arrive.
func (s *State) becomeGroup(j *Job, now int64) {
	if j.State == StateRunning {
		s.endAttempt(j, StateWaiting, stopped(ReasonCanceled, "the job became a group (its command was cleared)").was("the job became a group (its command was cleared)"), now)
	}
	before, old := contribution(j), j.State
	j.Command = ""
	j.Duration, j.StartTime = 0, 0
	s.changed(j, before, old, now)
}

// applyMoves re-parents the moved jobs of a validated edit. The final tree
// has no cycle, but moving the jobs one by one in command order could make
// one in between (swap a parent and its child: the parent goes first, under
// its child). A move whose target is, at that moment, inside the moved
// subtree parks the job at the root instead; parked jobs go to their final
// parents last. Then every parent link in place is a link of the final
// tree, so no step can close a cycle.
func (s *State) applyMoves(o *overlay, now int64) {
	var parked []int64
	for _, id := range o.movers {
		j, target := s.jobs[id], o.parent[id]
		if target == id || target != 0 && s.isAncestor(id, s.jobs[target]) {
			if j.Parent != 0 {
				s.move(j, 0, now)
			}
			parked = append(parked, id)
			continue
		}
		s.move(j, target, now)
	}
	for _, id := range parked {
		j, target := s.jobs[id], o.parent[id]
		if target == id || target != 0 && s.isAncestor(id, s.jobs[target]) {
			continue // cannot happen after checkCycles; never make a cycle
		}
		s.move(j, target, now)
	}
}

func (s *State) editJob(j *Job, p JobPatch, now int64) {
	before, old := contribution(j), j.State
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&j.Title, p.Title)
	set(&j.Dir, p.Dir)
	set(&j.Environment, p.Environment)
	if p.Env != nil || p.Environment != nil {
		j.Env = envOfPatch(p)
		if p.Environment == nil {
			j.Environment = "" // the text no longer says what the map holds
		}
	}
	set(&j.User, p.User)
	set(&j.URL, p.URL)
	set(&j.ProgressPattern, p.ProgressPattern)
	if p.Command != nil {
		j.Command = *p.Command
	}
	if p.Timeout != nil {
		j.Timeout = *p.Timeout
	}
	if p.Retry != nil {
		j.Retry = *p.Retry
	}
	if p.Priority != nil {
		j.Priority = clampPriority(*p.Priority)
	}
	if p.Affinity != nil {
		j.Affinity = *p.Affinity
		j.AffinityBits, _ = s.affinityMask(*p.Affinity, false)
	}
	s.changed(j, before, old, now)
	// The parent is already in place: editJobs moved it (applyMoves).
	if p.Dependencies != nil {
		s.setDepsRaw(j, uniq(*p.Dependencies))
		s.evalDeps(j, now)
	}
	if p.Paused != nil {
		if *p.Paused {
			s.pauseJob(j, now)
		} else {
			s.startJob(j, now)
		}
	}
	if p.State != nil {
		switch *p.State {
		case StatePaused:
			s.pauseJob(j, now)
		case StateWaiting, StateBlocked:
			s.uncancel(j, now)
			s.startJob(j, now)
		case StateCanceled:
			s.cancelJob(j, now)
		default:
			s.forceState(j, *p.State, now)
		}
	}
	s.refreshH(j, false)
}

// move re-parents j; counters move from the old parent to the new one.
func (s *State) move(j *Job, parent int64, now int64) {
	c := contribution(j)
	old := s.node(j.Parent)
	old.Children = without(old.Children, j.ID)
	s.carry(j.Parent, c, contrib{}, now)
	if j.Parent != 0 {
		s.recomputeGroupStart(s.jobs[j.Parent])
	}
	j.Parent = parent
	np := s.node(parent)
	np.Children = insertSorted(np.Children, j.ID)
	s.refreshH(j, true)
	s.carry(parent, contrib{}, contribution(j), now)
}

// forceState sets FINISHED or ERROR on a leaf by hand.
func (s *State) forceState(j *Job, st string, now int64) {
	if j.State == StateRunning {
		s.endAttempt(j, st, stopped(ReasonCanceled, "state set to "+st+" by a user").was("state set to "+legacyName(st)+" by a user"), now)
		return
	}
	before, old := contribution(j), j.State
	j.State = st
	j.RunDone++
	s.changed(j, before, old, now)
}

func (s *State) pauseJob(j *Job, now int64) {
	if !j.Paused {
		before, old := contribution(j), j.State
		j.Paused = true
		s.refreshH(j, false)
		s.changed(j, before, old, now)
	}
	s.stopPausedWork(j, now)
}

// stopPausedWork ends the attempts running under a paused subtree; the
// agents are told to kill them on their next report or heartbeat. Like every
// walk of a subtree in Apply, it uses an explicit stack (see refreshH).
func (s *State) stopPausedWork(j *Job, now int64) {
	stack := []*Job{j}
	for budget := len(s.jobs) + 1; len(stack) > 0 && budget > 0; budget-- {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if x.IsGroup() {
			if x.TotalWorking == 0 && x.State != StateRunning {
				continue
			}
			stack = s.pushChildren(stack, x)
			continue
		}
		if x.State == StateRunning && x.HPaused {
			s.endAttempt(x, StateWaiting, stopped(ReasonCanceled, "job paused").was("job paused"), now)
		}
	}
}

func (s *State) startJob(j *Job, now int64) {
	before, old := contribution(j), j.State
	j.Paused = false
	if !j.IsGroup() && (j.State == StateWaiting || j.State == StateBlocked) {
		j.State = s.depState(j)
	}
	s.refreshH(j, false)
	s.changed(j, before, old, now)
}

func (s *State) deleteJobs(c *JobDelete) error {
	for _, id := range c.IDs {
		if s.jobs[id] == nil {
			return notFound("job %d", id)
		}
	}
	for _, id := range c.IDs {
		j := s.jobs[id]
		if j == nil {
			continue // inside a subtree deleted earlier in this command
		}
		before := contribution(j)
		parent := j.Parent
		// Two phases: remove the whole subtree first, then wake the jobs
		// that depended on it. A dependent woken mid-removal could walk
		// into half-deleted children.
		var gone []int64
		s.removeSubtree(j, c.Now, &gone)
		p := s.node(parent)
		p.Children = without(p.Children, id)
		s.carry(parent, before, contrib{}, c.Now)
		if parent != 0 {
			s.recomputeGroupStart(s.jobs[parent])
		}
		for _, g := range gone {
			for _, d := range sortedKeys(s.dependents[g]) {
				if dj := s.jobs[d]; dj != nil {
					dj.Dependencies = without(dj.Dependencies, g)
					if len(dj.Dependencies) == 0 {
						dj.Dependencies = nil
					}
					s.evalDeps(dj, c.Now)
				}
			}
			delete(s.dependents, g)
		}
	}
	return nil
}

// removeSubtree takes j and its descendants out of the state, ending their
// attempts, and appends their ids to gone: children before their parent, in
// ascending id order.
func (s *State) removeSubtree(j *Job, now int64, gone *[]int64) {
	type frame struct {
		j    *Job
		next int // index of the next child to visit
	}
	stack := []frame{{j: j}}
	budget := len(s.jobs) // a corrupt state with a cycle cannot loop
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.next < len(top.j.Children) && budget > 0 {
			c := s.jobs[top.j.Children[top.next]]
			top.next++
			if c != nil {
				budget--
				stack = append(stack, frame{j: c})
			}
			continue
		}
		x := top.j
		stack = stack[:len(stack)-1]
		if x.State == StateRunning && !x.IsGroup() {
			s.closeRun(x, StateWaiting, stopped(ReasonDeleted, "job deleted"), now)
		}
		s.unindex(x)
		s.setDepsRaw(x, nil)
		s.dropJob(x)
		*gone = append(*gone, x.ID)
	}
}

func (s *State) jobAction(c *JobAction) error {
	switch c.Action {
	case ActionReset, ActionResetError, ActionStart, ActionPause, ActionCancel:
	default:
		return invalid("unknown job action %q", c.Action)
	}
	for _, id := range c.IDs {
		if s.jobs[id] == nil {
			return notFound("job %d", id)
		}
	}
	for _, id := range c.IDs {
		j := s.jobs[id]
		switch c.Action {
		case ActionReset:
			s.resetJob(j, false, c.Now)
		case ActionResetError:
			s.resetJob(j, true, c.Now)
		case ActionStart:
			s.uncancel(j, c.Now)
			s.startJob(j, c.Now)
		case ActionPause:
			s.pauseJob(j, c.Now)
		case ActionCancel:
			s.cancelJob(j, c.Now)
		}
	}
	return nil
}

// resetJob puts a subtree back to WAITING (or PENDING); onlyErrors limits it
// to jobs in ERROR. run_done is kept, as in Coalition. A group is updated
// after its children (post-order), with an explicit stack (see refreshH).
func (s *State) resetJob(j *Job, onlyErrors bool, now int64) {
	type frame struct {
		j    *Job
		post bool // the children are done: update the group itself
	}
	stack := []frame{{j: j}}
	for budget := 2*len(s.jobs) + 2; len(stack) > 0 && budget > 0; budget-- {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		x := f.j
		switch {
		case !x.IsGroup():
			s.resetLeaf(x, onlyErrors, now)
		case f.post:
			before, old := contribution(x), x.State
			s.recomputeGroupStart(x)
			if x.Total == 0 {
				x.State = s.depState(x)
			}
			s.changed(x, before, old, now)
		case onlyErrors && x.TotalErrors == 0 && x.State != StateFailed && x.State != StateCanceled:
		default:
			stack = append(stack, frame{j: x, post: true})
			for i := len(x.Children) - 1; i >= 0; i-- {
				if c := s.jobs[x.Children[i]]; c != nil {
					stack = append(stack, frame{j: c})
				}
			}
		}
	}
}

// resetLeaf is resetJob for a job with a command.
func (s *State) resetLeaf(j *Job, onlyErrors bool, now int64) {
	if onlyErrors && j.State != StateFailed && j.State != StateCanceled {
		return
	}
	if j.State == StateRunning {
		s.endAttempt(j, StateWaiting, stopped(ReasonCanceled, "job reset").was("job reset"), now)
	}
	before, old := contribution(j), j.State
	j.State = s.depState(j)
	j.StartTime, j.Duration, j.Progress = 0, 0, 0
	s.changed(j, before, old, now)
}

// ---------------------------------------------------------------------------
// Affinities and workers

func (s *State) setAffinities(c *AffinitySet) error {
	ids := make([]int, 0, len(c.Names))
	for id, name := range c.Names {
		if id < 1 || id > MaxAffinityID {
			return invalid("affinity id %d is outside 1..%d", id, MaxAffinityID)
		}
		if strings.ContainsAny(name, ",\n") {
			return invalid("affinity name %q may not contain a comma or a newline", name)
		}
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		s.affinities[id] = strings.TrimSpace(c.Names[id])
	}
	// Names moved: every mask that was computed from a name is recomputed.
	for _, name := range sortedKeys(keysOf(s.workers)) {
		w := s.workers[name]
		w.lines, _ = s.workerLines(w.Affinity, false)
	}
	for _, id := range sortedJobIDs(s.jobs) {
		if j := s.jobs[id]; j.Affinity != "" {
			j.AffinityBits, _ = s.affinityMask(j.Affinity, false)
		}
	}
	// Forced: a job's own bits may have changed under a parent whose caches
	// did not, so pruning at unchanged parents would miss it.
	for _, id := range s.root.Children {
		s.refreshH(s.jobs[id], true)
	}
	return nil
}

func keysOf[V any](m map[string]V) map[string]struct{} {
	out := make(map[string]struct{}, len(m))
	for k := range m {
		out[k] = struct{}{}
	}
	return out
}

func sortedJobIDs(m map[int64]*Job) []int64 {
	out := make([]int64, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (s *State) ensureWorker(name, ip string, projects []string, now int64) *Worker {
	w := s.workers[name]
	if w == nil {
		w = &Worker{Name: name, State: WorkerStateIdle, Active: true, StartTime: now, Projects: cloneStrings(projects)}
		s.addWorker(w)
	}
	if ip != "" {
		w.IP = ip
	}
	return w
}

func (s *State) registerWorker(c *WorkerRegister) error {
	if s.workers[c.Name] == nil {
		if err := s.canAddWorker(c.Name); err != nil {
			return err
		}
	}
	for _, p := range c.Projects {
		if s.projects[p] == nil {
			return notFound("project %q", p)
		}
	}
	if c.SetAffinity {
		if _, err := s.workerLines(c.Affinity, true); err != nil {
			return err
		}
	}
	if c.Host != nil {
		if err := s.checkHostRoom(c.Name, c.Host); err != nil {
			return err
		}
	}
	w := s.ensureWorker(c.Name, c.IP, c.Projects, c.Now)
	w.Projects = cloneStrings(c.Projects)
	if c.SetAffinity {
		w.Affinity = c.Affinity
		w.lines, _ = s.workerLines(c.Affinity, false)
	}
	if w.State == WorkerStateLost {
		w.State = WorkerStateIdle
		if w.CurrentEvent != 0 {
			w.State = WorkerStateBusy
		}
	}
	w.LostAt = 0
	if c.Host != nil {
		s.setHost(w.Name, c.Host, c.Projects, c.Now)
	}
	return nil
}

// canAddWorker checks that a new worker may be created: a name, and room.
func (s *State) canAddWorker(name string) error {
	if name == "" {
		return invalid("worker name is empty")
	}
	if len(s.workers) >= MaxWorkers {
		return fmt.Errorf("%w: the farm has %d workers, the limit", ErrTooLarge, MaxWorkers)
	}
	return nil
}

// cloneStrings copies a list, keeping nil as nil (nil means "all" for a
// worker's projects).
func cloneStrings(l []string) []string {
	if l == nil {
		return nil
	}
	return append([]string{}, l...)
}

func (s *State) editWorkers(c *WorkerEdit) error {
	for _, e := range c.Edits {
		if s.workers[e.Name] == nil {
			return notFound("worker %q", e.Name)
		}
		if e.Patch.Affinity != nil {
			if _, err := s.workerLines(*e.Patch.Affinity, true); err != nil {
				return err
			}
		}
	}
	for _, e := range c.Edits {
		w := s.workers[e.Name]
		if e.Patch.Affinity != nil {
			w.Affinity = *e.Patch.Affinity
			w.lines, _ = s.workerLines(w.Affinity, false)
			s.readyGrew = true // it may serve waiting jobs now: its pull looks again
		}
		if e.Patch.Active != nil {
			s.setActive(w, *e.Patch.Active, c.Now)
		}
	}
	return nil
}

func (s *State) setActive(w *Worker, active bool, now int64) {
	if active && !w.Active {
		// Its pull waits for a change: without this it slept until its
		// long poll ended, and took a waiting job 26 s late (issue 12).
		s.readyGrew = true
	}
	w.Active = active
	if !active && w.CurrentEvent != 0 {
		if j := s.jobOfAttempt(w.CurrentEvent); j != nil {
			s.endAttempt(j, StateWaiting, stopped(ReasonCanceled, "worker "+w.Name+" stopped; requeued").was("worker "+w.Name+" stopped"), now)
		}
	}
}

func (s *State) deleteWorkers(c *WorkerDelete) error {
	for _, n := range c.Names {
		if s.workers[n] == nil {
			return notFound("worker %q", n)
		}
	}
	for _, n := range c.Names {
		w := s.workers[n]
		if w == nil {
			continue
		}
		if w.CurrentEvent != 0 {
			if j := s.jobOfAttempt(w.CurrentEvent); j != nil {
				s.endAttempt(j, StateWaiting, stopped(ReasonDeleted, "worker "+n+" deleted; requeued").was("worker "+n+" deleted"), c.Now)
			}
		}
		s.dropWorker(n)
	}
	return nil
}

func (s *State) workerAction(c *WorkerAction) error {
	// Drain is release 2's: an older release refused it, and replays so.
	drain := c.Action == ActionWorkerDrain && s.release >= 2
	if c.Action != ActionWorkerStart && c.Action != ActionWorkerStop && !drain {
		return invalid("unknown worker action %q", c.Action)
	}
	for _, n := range c.Names {
		if s.workers[n] == nil {
			return notFound("worker %q", n)
		}
	}
	for _, n := range c.Names {
		if drain {
			s.workers[n].Active = false // what it runs goes on; pick gives it nothing more
			continue
		}
		s.setActive(s.workers[n], c.Action == ActionWorkerStart, c.Now)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Attempts: pick, report, timeouts, lost workers

// jobOfAttempt returns the job whose current attempt is id, or nil. A
// group is never one: a leaf that became a group keeps its last Attempt,
// and its state, WORKING from its children, must not revive that attempt.
func (s *State) jobOfAttempt(id int64) *Job {
	ev := s.runByID[id]
	if ev == nil {
		return nil
	}
	j := s.jobs[ev.JobID]
	if j == nil || j.Attempt != id || j.State != StateRunning || j.IsGroup() {
		return nil
	}
	return j
}

func (s *State) pick(c *Pick) any {
	if s.workers[c.Worker] == nil {
		if err := s.canAddWorker(c.Worker); err != nil {
			return err
		}
	}
	w := s.ensureWorker(c.Worker, c.IP, c.Projects, c.Now)
	if w.CurrentEvent != 0 {
		// The worker asks for work while we think it runs something: it
		// restarted and lost that process. Requeue it; not the job's fault.
		if j := s.jobOfAttempt(w.CurrentEvent); j != nil {
			s.endAttempt(j, StateWaiting, stopped(ReasonFenced, "worker "+w.Name+" asked for new work; requeued").was("worker "+w.Name+" asked for new work; attempt lost"), c.Now)
		}
		w.CurrentEvent = 0
		w.State = WorkerStateIdle
	}
	if w.State == WorkerStateLost {
		w.State = WorkerStateIdle
	}
	w.LostAt = 0
	if !w.Active {
		return (*Assignment)(nil)
	}
	j := s.pickFor(w)
	if j == nil {
		return (*Assignment)(nil)
	}
	if o := s.obs.get(); o != nil {
		o.Dispatched(c.Now - s.runnableSince(j))
	}
	s.lastAttempt++
	ev := &Run{ID: s.lastAttempt, Worker: w.Name, JobID: j.ID, JobTitle: j.Title, State: StateRunning, Start: c.Now, Project: j.Project}
	if s.release >= 1 {
		if j.Tries < math.MaxInt32 {
			j.Tries++
		}
		ev.Try = int(j.Tries)
	}
	s.addRun(ev)
	if s.release >= 1 && j.Tries > 1 {
		// From the second try on, the log holds several tries: each
		// starts with a line. A job that ran once has just its output.
		s.note(j, "%s started", tryLabel(j, w.Name))
	}

	before, old := contribution(j), j.State
	j.Worker = w.Name
	j.StartTime, j.Duration, j.Progress, j.PingTime = c.Now, 0, 0, c.Now
	j.State = StateRunning
	j.Attempt, j.AttemptLog, j.AttemptErrLog = ev.ID, 0, 0
	s.changed(j, before, old, c.Now)

	w.LastJob, w.CurrentEvent, w.State = j.ID, ev.ID, WorkerStateBusy
	return &Assignment{
		AttemptID:       ev.ID,
		JobID:           j.ID,
		Title:           j.Title,
		Command:         j.Command,
		Dir:             j.Dir,
		Environment:     j.Environment,
		Env:             j.Env,
		User:            j.User,
		ProgressPattern: j.ProgressPattern,
		Timeout:         j.Timeout,
		Try:             int(j.Tries),
		Project:         j.Project,
		Session:         j.Session,
	}
}

// tryLabel names j's current try for its log: "try 2 of 10 on w". The
// "of" is the try the job stops at if every try from now on fails: the
// retry rule (Coalition's) reruns a failed job while its completed runs
// (RunDone) are fewer than Retry, so Retry counts all runs, not extra
// ones, and tries that ended without a result (lost, canceled...) come
// on top. A job with Retry 0 or 1 is never rerun: no "of".
func tryLabel(j *Job, worker string) string {
	if j.Retry <= 1 {
		return fmt.Sprintf("try %d on %s", j.Tries, worker)
	}
	return fmt.Sprintf("try %d of %d on %s", j.Tries, int(j.Tries)-1+max(j.Retry-j.RunDone, 1), worker)
}

// ending is how a run ended; every place an attempt ends fills one in.
type ending struct {
	reason   string // a Reason*
	exitCode int    // the process's, or NoExitCode
	signal   int
	why      string // detail for the job's log line
	legacy   string // release 0's detail; none: no line (see was)
}

// stopped is the ending of a run the farm stopped (no exit reported), for
// reason; why goes to the job's log.
func stopped(reason, why string) ending {
	return ending{reason: reason, exitCode: NoExitCode, why: why}
}

// was sets the release 0 wording of the ending's log line ("attempt 8 on w
// ended: " then legacy), which entries written by release 0 still get.
func (e ending) was(legacy string) ending {
	e.legacy = legacy
	return e
}

// line is the farm line that ends a run in the job's log: "exit code 3",
// "killed by signal 9", "timed out after 60 s", "lost: ...". An exit 0
// gets none: the output says it all.
func (e ending) line(timeout int64) string {
	switch {
	case e.reason == ReasonTimeout && e.why != "":
		return fmt.Sprintf("timed out after %d s, %s", timeout, e.why)
	case e.reason == ReasonTimeout:
		return fmt.Sprintf("timed out after %d s", timeout)
	case e.reason != ReasonExit:
		return e.reason + ": " + e.why
	case e.signal != 0:
		return fmt.Sprintf("killed by signal %d", e.signal)
	case e.exitCode != 0:
		return fmt.Sprintf("exit code %d", e.exitCode)
	}
	return ""
}

// endAttempt closes j's running attempt with state st (WAITING or PENDING to
// requeue it, FINISHED or ERROR to complete it), says how in its log and
// frees its worker.
func (s *State) endAttempt(j *Job, st string, e ending, now int64) {
	switch line := e.line(j.Timeout); {
	case s.release < 1 && e.legacy != "":
		s.note(j, "attempt %d on %s ended: %s", j.Attempt, j.Worker, e.legacy)
	case s.release >= 1 && line != "":
		s.note(j, "%s", line)
	}
	s.closeRun(j, st, e, now)
	s.logChanged = true // a reader following the log sees the end
	before, old := contribution(j), j.State
	switch st {
	case StateFinished, StateFailed:
		j.State = st
		j.Duration = now - j.StartTime
		j.RunDone++
	case StateCanceled:
		j.State = st
		j.Duration = now - j.StartTime
	default:
		j.State = s.depState(j)
	}
	s.changed(j, before, old, now)
}

// closeRun records the end of j's attempt in its run (state st, ending e)
// and in the job (its last run's exit), and releases its worker.
func (s *State) closeRun(j *Job, st string, e ending, now int64) {
	if o := s.obs.get(); o != nil {
		o.RunEnded(runOutcome(st, e))
	}
	if r := s.runByID[j.Attempt]; r != nil {
		r.State = st
		if st == StateWaiting && j.HPaused {
			r.State = StatePaused
		}
		r.Duration = now - r.Start
		if s.release >= 1 {
			r.End = now
			r.ExitCode, r.Signal, r.Reason = e.exitCode, e.signal, e.reason
			r.Progress = j.Progress
			if st == StateFinished && e.reason == ReasonExit {
				r.Progress = 1
			}
		}
	}
	if s.release >= 1 {
		j.ExitCode, j.Signal, j.Reason = clamp32(e.exitCode), clamp32(e.signal), reasonCodeOf(e.reason)
	}
	if w := s.workers[j.Worker]; w != nil && w.CurrentEvent == j.Attempt {
		w.CurrentEvent = 0
		w.State = WorkerStateIdle
		switch st {
		case StateFinished:
			w.Finished++
		case StateFailed:
			w.Error++
		}
	}
}

func (s *State) report(c *Report) (ReportResult, error) {
	if c.Signal < 0 || c.Signal > MaxSignal {
		return ReportResult{}, invalid("signal %d is outside 0..%d", c.Signal, MaxSignal)
	}
	var j *Job
	attempt := c.AttemptID
	if attempt == 0 {
		w := s.workers[c.Worker]
		if w == nil || w.CurrentEvent == 0 {
			return ReportResult{}, stale("worker %q runs nothing", c.Worker)
		}
		attempt = w.CurrentEvent
	}
	ev := s.runByID[attempt]
	if ev == nil {
		return ReportResult{}, stale("attempt %d is unknown", attempt)
	}
	if c.JobID != 0 && ev.JobID != c.JobID {
		return ReportResult{}, stale("attempt %d belongs to job %d, not %d", attempt, ev.JobID, c.JobID)
	}
	if c.Worker != "" && ev.Worker != c.Worker {
		return ReportResult{}, stale("attempt %d runs on %s, not %s", attempt, ev.Worker, c.Worker)
	}
	j = s.jobs[ev.JobID]
	if j == nil || j.Attempt != attempt {
		return ReportResult{}, stale("attempt %d is no longer job %d's", attempt, ev.JobID)
	}
	if j.State != StateRunning || j.IsGroup() {
		// The attempt ended (a group's WORKING is its children's). A
		// retried final report is acknowledged again;
		// anything else from an attempt that was stopped is refused.
		if ev.State == StateFinished || ev.State == StateFailed {
			return ReportResult{Duplicate: true, Done: true}, nil
		}
		return ReportResult{}, stale("attempt %d was stopped (%s)", attempt, ev.State)
	}
	// Both streams are checked before either is applied: a refused
	// report changes nothing.
	if len(c.Log) > 0 && c.LogOffset > j.AttemptLog {
		return ReportResult{}, invalid("log offset %d is past the %d bytes received", c.LogOffset, j.AttemptLog)
	}
	if len(c.Stderr) > 0 && c.StderrOffset > int64(j.AttemptErrLog) {
		return ReportResult{}, invalid("stderr offset %d is past the %d bytes received", c.StderrOffset, j.AttemptErrLog)
	}
	dup := s.reportOutput(j, joblog.Stdout, c.Log, c.LogOffset, &j.AttemptLog, c.LogCap)
	errGot := int64(j.AttemptErrLog)
	dup = s.reportOutput(j, joblog.Stderr, c.Stderr, c.StderrOffset, &errGot, c.LogCap) || dup
	j.AttemptErrLog = sat32(errGot)
	if c.Progress != nil && *c.Progress >= 0 && *c.Progress <= 1 {
		j.Progress = *c.Progress
	}
	j.PingTime = c.Now
	if !c.Done {
		return ReportResult{Duplicate: dup}, nil
	}
	if c.Lost {
		s.endAttempt(j, StateWaiting, stopped(ReasonLost, "the agent lost the process; requeued").was("the agent lost the process (restart); requeued"), c.Now)
		return ReportResult{Done: true}, nil
	}
	e := ending{reason: ReasonExit, exitCode: c.ExitCode, signal: c.Signal}
	if c.TimedOut {
		e.reason, e.why = ReasonTimeout, "killed by the agent"
		e.legacy = fmt.Sprintf("timed out after %d s, killed by the agent", j.Timeout)
	}
	st := StateFinished
	if c.ExitCode != 0 || c.Signal != 0 || c.TimedOut {
		st = StateFailed
	}
	s.endAttempt(j, st, e, c.Now)
	return ReportResult{Done: true}, nil
}

// reportOutput appends an attempt's output of one stream, at byte offset
// off of that stream (-1: no de-duplication; report checked that it is not
// past the end); got counts the stream's bytes received. It reports
// whether the output had been received already.
func (s *State) reportOutput(j *Job, st joblog.Stream, text []byte, off int64, got *int64, logCap int64) bool {
	if len(text) == 0 {
		return false
	}
	if off >= 0 {
		// off is at most *got, so the sum cannot overflow whatever the
		// entry holds.
		if off+int64(len(text)) <= *got {
			return true
		}
		text = text[*got-off:]
	}
	*got += int64(len(text))
	s.appendLog(j, st, text, logCap)
	return false
}

// reportPick applies a final report, then picks the worker's next job.
func (s *State) reportPick(c *ReportPick) (ReportPickResult, error) {
	if !c.Report.Done {
		return ReportPickResult{}, invalid("a report that picks the next job must be final (done)")
	}
	r, err := s.report(&c.Report)
	if err != nil {
		return ReportPickResult{}, err
	}
	next, _ := s.pick(&Pick{Now: c.Report.Now, Worker: c.Report.Worker, IP: c.IP}).(*Assignment)
	return ReportPickResult{Report: r, Next: next}, nil
}

func (s *State) timeoutJobs(c *JobTimeout) {
	for _, a := range c.Attempts {
		j := s.jobOfAttempt(a)
		if j == nil || !overdue(c.Now, j.StartTime, j.Timeout) {
			continue
		}
		worker := s.workers[j.Worker]
		s.endAttempt(j, StateFailed, ending{reason: ReasonTimeout, exitCode: NoExitCode}.was(fmt.Sprintf("timed out after %d s", j.Timeout)), c.Now)
		if worker != nil {
			worker.State = WorkerStateLost
		}
	}
}

// overdue reports whether an attempt started at start (unix nanoseconds)
// has run for more than timeout seconds at now. An entry may hold any
// values: Timeout*1e9 and now-start must not overflow into a wrong answer.
func overdue(now, start, timeout int64) bool {
	if timeout <= 0 || now <= start {
		return false
	}
	elapsed := uint64(now) - uint64(start) // exact: now > start
	if uint64(timeout) > math.MaxUint64/uint64(1e9) {
		return false // longer than any elapsed time an int64 can hold
	}
	return elapsed > uint64(timeout)*1e9
}

func (s *State) loseWorkers(c *WorkerLost) {
	names := append([]string(nil), c.Names...)
	sort.Strings(names)
	for _, n := range names {
		w := s.workers[n]
		if w == nil {
			continue
		}
		if w.CurrentEvent != 0 {
			if j := s.jobOfAttempt(w.CurrentEvent); j != nil {
				s.endAttempt(j, StateWaiting, stopped(ReasonLost, "no heartbeat from worker "+n+"; requeued").was("worker "+n+" lost (no heartbeat)"), c.Now)
			}
			w.CurrentEvent = 0
		}
		w.State = WorkerStateLost
		if w.LostAt == 0 {
			w.LostAt = c.Now
		}
	}
}

// pruneRuns drops old attempt records, oldest first, but never the
// record of a running attempt.
func (s *State) pruneRuns(c *EventPrune) {
	excess := 0
	if c.Keep > 0 {
		excess = len(s.runByID) - c.Keep
	}
	var drop []*Run
	s.runOrder.Ascend(func(id int64) bool {
		e := s.runByID[id]
		if e.Start >= c.Before && excess <= 0 {
			return false
		}
		if s.jobOfAttempt(id) == nil {
			drop = append(drop, e)
			excess--
		}
		return true
	})
	for _, e := range drop {
		s.dropRun(e)
	}
}

// Expired reports whether root job j finished before before: the rule of
// job expiry, the same for the leader that proposes and the FSM that
// applies.
func Expired(j *Job, before int64) bool {
	return j.Parent == 0 && j.State == StateFinished && !j.Paused && j.EndTime != 0 && j.EndTime < before
}

// expiredJobs returns the jobs of c that are still expired, once each.
func (s *State) expiredJobs(c *JobExpire) []int64 {
	var out []int64
	seen := map[int64]bool{}
	for _, id := range c.IDs {
		if j := s.jobs[id]; j != nil && !seen[id] && Expired(j, c.Before) {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// expireWorkers forgets the named workers still lost since before Before.
func (s *State) expireWorkers(c *WorkerExpire) {
	names := append([]string(nil), c.Names...)
	sort.Strings(names)
	for _, n := range names {
		w := s.workers[n]
		if w == nil || w.State != WorkerStateLost || w.LostAt == 0 || w.LostAt >= c.Before || w.CurrentEvent != 0 {
			continue
		}
		s.dropWorker(n)
	}
}
