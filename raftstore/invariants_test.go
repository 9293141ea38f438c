package raftstore

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"testing"
)

// checkInvariants recomputes from scratch what the FSM keeps incrementally
// (group counters and state, h_* caches, the ready index, worker and attempt
// links) and reports the first difference.
func checkInvariants(s *State) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	reached := 0
	var walk func(id int64) (contrib, error)
	walk = func(id int64) (contrib, error) {
		j := s.jobs[id]
		if reached++; reached > len(s.jobs) {
			return contrib{}, fmt.Errorf("the tree reaches more jobs than there are: a cycle through %d", id)
		}
		var sum contrib
		var fin, errs, work int32
		var start int64
		for _, c := range j.Children {
			cj := s.jobs[c]
			if cj == nil {
				return sum, fmt.Errorf("job %d lists missing child %d", id, c)
			}
			if cj.Parent != id {
				return sum, fmt.Errorf("child %d of %d has parent %d", c, id, cj.Parent)
			}
			cc, err := walk(c)
			if err != nil {
				return sum, err
			}
			sum.leaves += cc.leaves
			sum.fin += cc.fin
			sum.errs += cc.errs
			sum.work += cc.work
			sum.canceled += cc.canceled
			sum.dur += cc.dur
			fin += b2i(cc.isFin)
			errs += b2i(cc.isErr)
			work += b2i(cc.isWork)
			if cj.StartTime != 0 && (start == 0 || cj.StartTime < start) {
				start = cj.StartTime
			}
		}
		if j.IsGroup() && len(j.Children) > 0 {
			got := [8]int32{j.Total, j.TotalFinished, j.TotalErrors, j.TotalWorking, j.Finished, j.Errors, j.Working, j.TotalCanceled}
			want := [8]int32{sum.leaves, sum.fin, sum.errs, sum.work, fin, errs, work, sum.canceled}
			if got != want {
				return sum, fmt.Errorf("group %d counters %v, recomputed %v", id, got, want)
			}
			if j.Duration != sum.dur {
				return sum, fmt.Errorf("group %d duration %d, recomputed %d", id, j.Duration, sum.dur)
			}
			if start != 0 && j.StartTime > start {
				return sum, fmt.Errorf("group %d start %d after its earliest child %d", id, j.StartTime, start)
			}
			if want := s.groupState(j); j.State != want {
				return sum, fmt.Errorf("group %d state %s, derived %s", id, j.State, want)
			}
		}
		if !j.IsGroup() && (j.State == StateWaiting || j.State == StateBlocked) && j.State != s.depState(j) {
			return sum, fmt.Errorf("job %d is %s but its dependencies say %s", id, j.State, s.depState(j))
		}
		p := s.node(j.Parent)
		depth := p.HDepth + 1
		wantH := [2]uint64{p.HAffinity | j.AffinityBits, uint64(b2i(p.HPaused || j.Paused || j.State == StateBlocked))}
		if gotH := [2]uint64{j.HAffinity, uint64(b2i(j.HPaused))}; gotH != wantH || j.HDepth != depth {
			return sum, fmt.Errorf("job %d h_* %v depth %d, recomputed %v depth %d", id, gotH, j.HDepth, wantH, depth)
		}
		wantPath := p.ready.hprio
		level := min(depth, PriorityLevels) - 1
		wantPath[level] += int32(j.Priority)
		if j.ready.hprio != wantPath {
			return sum, fmt.Errorf("job %d priority path %v, recomputed %v", id, j.ready.hprio, wantPath)
		}
		want := readyKey{in: s.runnable(j), mask: j.HAffinity, hprio: wantPath}
		if j.ready != want {
			return sum, fmt.Errorf("job %d ready key %+v, want %+v", id, j.ready, want)
		}
		if host, pinned := s.pins[j.ID]; want.in && pinned {
			if ix := s.hostPinned[host]; ix == nil || ix.buckets[bucketKey{j.Project, want.mask}] == nil ||
				!ix.buckets[bucketKey{j.Project, want.mask}].Has(j.ID) {
				return sum, fmt.Errorf("runnable job %d pinned to %s missing from its index", id, host)
			}
		} else if want.in {
			if b := s.ready.buckets[bucketKey{j.Project, want.mask}]; b == nil || !b.Has(want.item(j.ID)) {
				return sum, fmt.Errorf("runnable job %d missing from the index", id)
			}
		}
		if j.State == StateRunning {
			w := s.workers[j.Worker]
			if j.IsGroup() {
				return contribution(j), nil
			}
			if w == nil || w.CurrentEvent != j.Attempt {
				return sum, fmt.Errorf("working job %d: worker %q does not run attempt %d", id, j.Worker, j.Attempt)
			}
		}
		return contribution(j), nil
	}
	for _, id := range s.root.Children {
		if s.jobs[id] == nil || s.jobs[id].Parent != 0 {
			return fmt.Errorf("root lists bad child %d", id)
		}
		if _, err := walk(id); err != nil {
			return err
		}
	}
	// Every job hangs from the root exactly once: no parent cycle, no
	// orphan.
	if reached != len(s.jobs) {
		return fmt.Errorf("%d of %d jobs are reachable from the root", reached, len(s.jobs))
	}
	indexed := 0
	for _, b := range s.ready.buckets {
		indexed += b.Len()
	}
	runnable, pinned := 0, map[string]int{}
	for _, j := range s.jobs {
		if host, ok := s.pins[j.ID]; ok && s.runnable(j) {
			pinned[host]++
		} else if s.runnable(j) {
			runnable++
		}
	}
	if indexed != runnable {
		return fmt.Errorf("index holds %d jobs, %d are runnable", indexed, runnable)
	}
	if err := checkPins(s, pinned); err != nil {
		return err
	}
	// The per-project, per-state counts (metrics) match a recount.
	counts := map[jobCountKey]int{}
	for _, j := range s.jobs {
		counts[jobCountKey{j.Project, j.State}]++
	}
	if !maps.Equal(counts, s.jobCounts) {
		return fmt.Errorf("job counts %v, recounted %v", s.jobCounts, counts)
	}
	if err := checkGraph(s); err != nil {
		return err
	}
	for name, w := range s.workers {
		if w.CurrentEvent != 0 {
			if j := s.jobOfAttempt(w.CurrentEvent); j == nil || j.Worker != name {
				return fmt.Errorf("worker %s runs attempt %d whose job is not WORKING on it", name, w.CurrentEvent)
			}
		}
	}
	// A run is open (WORKING, no end) exactly while it is its job's
	// current attempt, and carries the job's latest try number.
	for id, r := range s.runByID {
		j := s.jobOfAttempt(id)
		switch {
		// (A run started under release 0's rules has try 0, and so has
		// its job, until its next start under the new rules.)
		case j != nil && (r.State != StateRunning || r.End != 0 || (s.release >= 1 && r.Try != int(j.Tries))):
			return fmt.Errorf("running run %+v of job %d (tries %d)", *r, j.ID, j.Tries)
		case j == nil && r.State == StateRunning:
			return fmt.Errorf("run %d is WORKING but not its job's current attempt", id)
		}
	}
	if err := checkHosts(s); err != nil {
		return err
	}
	if err := checkSessions(s); err != nil {
		return err
	}
	return checkTemplates(s)
}

// checkSessions checks the sessions against a recomputation: their jobs
// exist and name them, in ascending order; the running count, the cursor,
// the hosts' open context sessions and the projects' counts. The caller
// holds the read lock.
func checkSessions(s *State) error {
	if s.sessionOrder.Len() != len(s.sessions) {
		return fmt.Errorf("%d sessions in order, %d in the map", s.sessionOrder.Len(), len(s.sessions))
	}
	hosts, projects, tagged := map[string][]string{}, map[string]int{}, 0
	for _, id := range sortedKeys(keysOf(s.sessions)) {
		x := s.sessions[id]
		projects[x.Project]++
		if x.State == SessionStateOpen && x.Kind == SessionContext {
			hosts[x.Host] = append(hosts[x.Host], id)
		}
		if !slices.IsSorted(x.Jobs) {
			return fmt.Errorf("session %s: jobs %v not in order", id, x.Jobs)
		}
		running, next := 0, -1
		for i, jid := range x.Jobs {
			j := s.jobs[jid]
			if j == nil || j.Session != id {
				return fmt.Errorf("session %s: job %d is gone or not its", id, jid)
			}
			if j.State == StateRunning && !j.IsGroup() {
				running++
			}
			if next < 0 && !sessionJobEnded(j) {
				next = i
			}
		}
		if next < 0 {
			next = len(x.Jobs)
		}
		if running != x.running || next != x.next {
			return fmt.Errorf("session %s: running %d next %d, recomputed %d %d", id, x.running, x.next, running, next)
		}
	}
	for _, j := range s.jobs {
		if j.Session != "" {
			tagged++
			if s.sessions[j.Session] == nil {
				return fmt.Errorf("job %d names session %s, which is gone", j.ID, j.Session)
			}
		}
	}
	n := 0
	for _, x := range s.sessions {
		n += len(x.Jobs)
	}
	if n != tagged {
		return fmt.Errorf("%d jobs name a session, sessions hold %d", tagged, n)
	}
	if len(hosts) != len(s.hostSessions) {
		return fmt.Errorf("open context sessions on %d hosts, the index has %d", len(hosts), len(s.hostSessions))
	}
	for host, ids := range hosts {
		if !slices.Equal(ids, s.hostSessions[host]) {
			return fmt.Errorf("host %s: open context sessions %v, the index has %v", host, ids, s.hostSessions[host])
		}
	}
	for name, p := range s.projects {
		if p.sessions != projects[name] {
			return fmt.Errorf("project %s counts %d sessions, holds %d", name, p.sessions, projects[name])
		}
	}
	return nil
}

// checkTemplates checks the templates and executions against their
// derived indexes, recomputed: names unique per project, counts, each
// execution's job exists, is in its project and links back to it, and
// its template exists. The caller holds the read lock.
func checkTemplates(s *State) error {
	t := &s.tpl
	if t.order.Len() != len(t.byID) || len(t.byName) != len(t.byID) || t.execOrder.Len() != len(t.execs) || len(t.execByJob) != len(t.execs) {
		return fmt.Errorf("template indexes: %d ids, %d ordered, %d names; %d executions, %d ordered, %d by job",
			len(t.byID), t.order.Len(), len(t.byName), len(t.execs), t.execOrder.Len(), len(t.execByJob))
	}
	perProject, uses := map[string]int{}, map[string]int{}
	for id, x := range t.byID {
		if t.byName[nameKey(x.Project, x.Spec.Name)] != id || s.projects[x.Project] == nil {
			return fmt.Errorf("template %s (%q in %q) is not indexed by name, or its project is gone", id, x.Spec.Name, x.Project)
		}
		perProject[x.Project]++
	}
	for id, e := range t.execs {
		j := s.jobs[e.JobID]
		switch {
		case t.byID[e.Template] == nil:
			return fmt.Errorf("execution %s: template %s is gone", id, e.Template)
		case j == nil || j.Project != e.Project:
			return fmt.Errorf("execution %s: job %d missing or in another project", id, e.JobID)
		case t.execByJob[e.JobID] != id:
			return fmt.Errorf("execution %s: job %d links to %q", id, e.JobID, t.execByJob[e.JobID])
		}
		uses[e.Template]++
	}
	if !maps.Equal(perProject, t.perProject) || !maps.Equal(uses, t.uses) {
		return fmt.Errorf("template counts %v / %v, recomputed %v / %v", t.perProject, t.uses, perProject, uses)
	}
	return nil
}

// checkPins checks the pins against a recomputation from the executions
// (Execution.Host), and each host's pinned index against its runnable
// pinned jobs (runnable counts them per host): the indexes of a restored
// state are those of the state it was taken from. The caller holds the
// read lock.
func checkPins(s *State, runnable map[string]int) error {
	pins, count := map[int64]string{}, map[string]int{}
	for _, e := range s.tpl.execs {
		if e.Host != "" {
			pins[e.JobID] = e.Host
			count[e.Host]++
		}
	}
	if !maps.Equal(pins, s.pins) || !maps.Equal(count, s.pinCount) {
		return fmt.Errorf("pins %v (counts %v), recomputed from the executions %v (%v)", s.pins, s.pinCount, pins, count)
	}
	for host, n := range count {
		if n > MaxHostPinned {
			return fmt.Errorf("host %s has %d pinned jobs", host, n)
		}
	}
	for host, ix := range s.hostPinned {
		if ix.len() == 0 || ix.len() != runnable[host] {
			return fmt.Errorf("host %s: %d jobs in its pinned index, %d runnable", host, ix.len(), runnable[host])
		}
		for bk, b := range ix.buckets {
			if b.Len() == 0 {
				return fmt.Errorf("host %s: empty bucket %+v", host, bk)
			}
		}
	}
	for host, n := range runnable {
		if s.hostPinned[host] == nil {
			return fmt.Errorf("host %s: %d runnable pinned jobs and no index", host, n)
		}
	}
	return nil
}

// checkHosts checks the hosts: each has a slot, each slot is a worker that
// names the host in the derived index, and the index has no other entry.
// The caller holds the read lock.
func checkHosts(s *State) error {
	if s.hostOrder.Len() != len(s.hosts) {
		return fmt.Errorf("%d hosts in order, %d in the map", s.hostOrder.Len(), len(s.hosts))
	}
	slots := 0
	for name, h := range s.hosts {
		if len(h.Slots) == 0 || len(h.Slots) > MaxHostSlots {
			return fmt.Errorf("host %s has %d slots", name, len(h.Slots))
		}
		if !slices.IsSorted(h.Slots) {
			return fmt.Errorf("host %s: slots %v not sorted", name, h.Slots)
		}
		for _, w := range h.Slots {
			if s.workers[w] == nil {
				return fmt.Errorf("host %s: slot %s is no worker", name, w)
			}
			if s.slotHost[w] != name {
				return fmt.Errorf("host %s: slot %s is indexed under %q", name, w, s.slotHost[w])
			}
		}
		slots += len(h.Slots)
	}
	if slots != len(s.slotHost) {
		return fmt.Errorf("%d slots in hosts, %d in the index", slots, len(s.slotHost))
	}
	return nil
}

// checkGraph checks the rules that structural validation keeps: only groups
// have children, every dependency exists and is in the reverse index, no job
// depends on itself, its ancestor or its descendant, and the dependency
// graph has no cycle. The caller holds the read lock.
func checkGraph(s *State) error {
	ids := sortedJobIDs(s.jobs)
	for _, id := range ids {
		j := s.jobs[id]
		if !j.IsGroup() && len(j.Children) > 0 {
			return fmt.Errorf("job %d has a command and children %v", id, j.Children)
		}
		for _, d := range j.Dependencies {
			dj := s.jobs[d]
			if dj == nil {
				return fmt.Errorf("job %d depends on missing job %d", id, d)
			}
			if _, ok := s.dependents[d][id]; !ok {
				return fmt.Errorf("job %d depends on %d, missing from the reverse index", id, d)
			}
			if d == id || s.isAncestor(d, j) || s.isAncestor(id, dj) {
				return fmt.Errorf("job %d depends on %d, itself or in its own line", id, d)
			}
		}
	}
	for d, m := range s.dependents {
		for id := range m {
			if j := s.jobs[id]; j == nil || !slices.Contains(j.Dependencies, d) {
				return fmt.Errorf("the reverse index says %d depends on %d", id, d)
			}
		}
	}
	// Depth-first search with colours: grey on the stack, black done.
	colour := make(map[int64]int, len(ids))
	for _, root := range ids {
		if colour[root] != 0 {
			continue
		}
		type frame struct {
			id   int64
			next int
		}
		stack := []frame{{id: root}}
		colour[root] = 1
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			deps := s.jobs[top.id].Dependencies
			if top.next == len(deps) {
				colour[top.id] = 2
				stack = stack[:len(stack)-1]
				continue
			}
			d := deps[top.next]
			top.next++
			switch colour[d] {
			case 1:
				return fmt.Errorf("dependency cycle through %d -> %d", top.id, d)
			case 0:
				colour[d] = 1
				stack = append(stack, frame{id: d})
			}
		}
	}
	return nil
}

// randomCommand builds a plausible command over a small id space, so that
// the random walk hits trees, dependencies, attempts and their collisions.
func randomCommand(r *rand.Rand, h *harness) Command {
	id := func() int64 { return int64(r.Intn(int(h.st().lastJobID)+2)) + 1 }
	ids := func() []int64 {
		out := make([]int64, r.Intn(3)+1)
		for i := range out {
			out[i] = id()
		}
		return out
	}
	worker := func() string { return fmt.Sprintf("w%d", r.Intn(3)) }
	affs := []string{"", "", "linux", "gpu", "linux,gpu"}
	now := h.now
	switch k := r.Intn(23); {
	case k >= 20:
		return randomBatchEdit(r, h, id, ids)
	case k < 5:
		var parent int64
		if r.Intn(2) == 0 {
			parent = id()
		}
		spec := JobSpec{Parent: parent, Title: "t", Retry: r.Intn(3), Priority: r.Intn(300), Affinity: affs[r.Intn(len(affs))],
			Paused: r.Intn(5) == 0, Timeout: int64(r.Intn(3))}
		if r.Intn(3) > 0 {
			spec.Command = "x"
		}
		if r.Intn(4) == 0 {
			spec.Dependencies = ids()
		}
		return &JobCreate{Now: now, Jobs: []JobSpec{spec}}
	case k < 10:
		return &Pick{Now: now, Worker: worker()}
	case k < 13:
		var attempt int64
		if h.st().lastAttempt > 0 {
			attempt = h.st().lastAttempt - int64(r.Intn(2))
		}
		rep := Report{Now: now, Worker: worker(), AttemptID: attempt, LogOffset: -1, Log: []byte("out"), Done: r.Intn(2) == 0, ExitCode: r.Intn(2)}
		if rep.Done && r.Intn(2) == 0 {
			return &ReportPick{Report: rep}
		}
		return &rep
	case k == 13:
		actions := []string{ActionReset, ActionResetError, ActionStart, ActionPause, ActionCancel}
		return &JobAction{Now: now, Action: actions[r.Intn(len(actions))], IDs: ids()}
	case k == 14:
		return &JobSetDeps{Now: now, ID: id(), Deps: ids()}
	case k == 15:
		p := JobPatch{}
		switch r.Intn(5) {
		case 0:
			parent := id()
			if r.Intn(2) == 0 {
				parent = 0
			}
			p.Parent = &parent
		case 1:
			prio := r.Intn(256)
			p.Priority = &prio
		case 2:
			a := affs[r.Intn(len(affs))]
			p.Affinity = &a
		case 3:
			st := []string{StateWaiting, StatePaused, StateFinished, StateFailed, StateCanceled}[r.Intn(5)]
			p.State = &st
		case 4:
			paused := r.Intn(2) == 0
			p.Paused = &paused
		}
		return &JobEdit{Now: now, Edits: []JobEditItem{{ID: id(), Patch: p}}}
	case k == 16:
		switch r.Intn(9) {
		case 0:
			return &JobDelete{Now: now, IDs: []int64{id()}}
		case 1:
			return &AffinitySet{Names: map[int]string{1 + r.Intn(3): []string{"linux", "gpu", "mac", ""}[r.Intn(4)]}}
		case 2:
			a := affs[r.Intn(len(affs))]
			active := r.Intn(3) > 0
			return &WorkerEdit{Now: now, Edits: []WorkerEditItem{{Name: worker(), Patch: WorkerPatch{Affinity: &a, Active: &active}}}}
		case 3:
			return &WorkerDelete{Now: now, Names: []string{worker()}}
		case 6, 7, 8:
			return randomTemplateCommand(r, h)
		case 4:
			host := []string{"h0", "h1"}[r.Intn(2)]
			return &WorkerRegister{Now: now, Name: worker(), Host: &HostInfo{Name: host, Slots: 3, CPUs: 4,
				Interpreters: []HostInterpreter{{Name: "sh", Path: "/bin/sh"}}}}
		}
		return &WorkerRegister{Now: now, Name: worker(), SetAffinity: true, Affinity: affs[r.Intn(len(affs))] + "\nlinux"}
	case k == 17:
		acts := []string{ActionWorkerStart, ActionWorkerStop, ActionWorkerDrain}
		return &WorkerAction{Now: now, Action: acts[r.Intn(3)], Names: []string{worker()}}
	case k == 18:
		var attempts []int64
		for _, ra := range h.st().Running() {
			attempts = append(attempts, ra.AttemptID)
		}
		return &JobTimeout{Now: now, Attempts: attempts}
	default:
		if r.Intn(30) == 0 {
			// Switch to a release's rules midway (never past this code's:
			// that halts, tested on its own).
			return &SetRelease{Release: r.Intn(Release + 1)}
		}
		switch r.Intn(3) {
		case 0:
			return randomSessionCommand(r, h)
		case 1:
			return randomTemplateCommand(r, h)
		}
		return &WorkerLost{Now: now, Names: []string{worker()}}
	}
}

// randomSessionCommand opens, feeds, starts, closes, expires and deletes
// a few sessions (of hosts h0 and h1, which offer sh).
func randomSessionCommand(r *rand.Rand, h *harness) Command {
	id := fmt.Sprintf("%032x", r.Intn(4)+1)
	now := h.now
	switch r.Intn(10) {
	case 8:
		doc := []byte{byte(r.Intn(256))}
		u := &SessionUpdate{Now: now, ID: id, Doc: &doc, IfRevision: randomRevision(r, h.st().sessionRevision(id))}
		if r.Intn(3) == 0 { // a kernel change: to the one the hosts offer, or one none does
			u.Interpreter = ptr([]string{"sh", "ruby"}[r.Intn(2)])
		}
		return u
	case 9:
		return randomDocsWrite(r, h)
	case 0:
		if r.Intn(2) == 0 {
			return &SessionOpen{Now: now, ID: id, Kind: SessionGroup, InactiveTimeout: int64(r.Intn(2))}
		}
		return &SessionOpen{Now: now, ID: id, Kind: SessionContext, Interpreter: "sh", InactiveTimeout: int64(r.Intn(2))}
	case 1, 2, 3:
		return &SessionSubmit{Now: now, ID: id, Code: "echo x"}
	case 4:
		return &SessionStart{Now: now, ID: id}
	case 5:
		return &SessionClose{Now: now, ID: id}
	case 6:
		return &SessionExpire{Now: now + int64(r.Intn(3))*1e9, IDs: []string{id}}
	}
	return &SessionDelete{Now: now, ID: id}
}

// randomBatchEdit builds a JobEdit of several edits that move jobs, change
// dependencies and commands together: swaps of a group and its child,
// moves into subtrees that move away, dependency changes that are cycles
// only half-way through, and now and then a job edited twice.
func randomBatchEdit(r *rand.Rand, h *harness, id func() int64, ids func() []int64) *JobEdit {
	c := &JobEdit{Now: h.now}
	if r.Intn(3) == 0 {
		// A swap: a job goes under its child, the child takes its place.
		jid := id()
		if j, ok := h.st().Job(jid); ok && len(j.Children) > 0 {
			kid := j.Children[r.Intn(len(j.Children))]
			c.Edits = append(c.Edits,
				JobEditItem{ID: jid, Patch: JobPatch{Parent: &kid}},
				JobEditItem{ID: kid, Patch: JobPatch{Parent: &j.Parent}})
			if r.Intn(2) == 0 {
				c.Edits[0], c.Edits[1] = c.Edits[1], c.Edits[0]
			}
		}
	}
	used := map[int64]bool{}
	for _, e := range c.Edits {
		used[e.ID] = true
	}
	for n := 1 + r.Intn(3); n > 0; n-- {
		jid := id()
		if used[jid] && r.Intn(4) > 0 {
			jid = id() // mostly distinct: a job edited twice is refused
		}
		used[jid] = true
		var p JobPatch
		switch r.Intn(5) {
		case 0:
			parent := id()
			if r.Intn(4) == 0 {
				parent = 0
			}
			p.Parent = &parent
		case 1:
			deps := ids()
			if r.Intn(3) == 0 {
				deps = nil
			}
			p.Dependencies = &deps
		case 2:
			cmd := []string{"", "x"}[r.Intn(2)]
			p.Command = &cmd
		case 3:
			parent, deps := id(), ids()
			p.Parent, p.Dependencies = &parent, &deps
		default:
			paused := r.Intn(2) == 0
			deps := ids()
			p.Paused, p.Dependencies = &paused, &deps
		}
		c.Edits = append(c.Edits, JobEditItem{ID: jid, Patch: p})
	}
	return c
}

// TestRandomWalkKeepsInvariants applies random command sequences and checks
// after every step that the incrementally kept state equals a recomputation,
// and that snapshot and restore mid-walk changes nothing.
func TestRandomWalkKeepsInvariants(t *testing.T) {
	// CROFT_WALK_SEEDS=5000 searches deeper by hand; CI runs 40.
	seeds, steps := 40, 400
	if n, err := strconv.Atoi(os.Getenv("CROFT_WALK_SEEDS")); err == nil && n > 0 {
		seeds = n
	}
	if testing.Short() {
		seeds = 5
	}
	for seed := int64(1); seed <= int64(seeds); seed++ {
		r := rand.New(rand.NewSource(seed))
		h := newHarness(t)
		if seed%2 == 0 {
			// Half the walks start under release 0's rules, as a replica
			// replaying an old log does; randomCommand switches them.
			h.fsm = releaseZeroFSM(t)
		}
		for step := 0; step < steps; step++ {
			h.tick(int64(r.Intn(2)))
			cmd := randomCommand(r, h)
			h.apply(cmd)
			if err := checkInvariants(h.st()); err != nil {
				t.Fatalf("seed %d step %d after %T %+v: %v", seed, step, cmd, cmd, err)
			}
			if step%97 == 0 {
				var buf bytes.Buffer
				if err := h.st().WriteSnapshot(&buf); err != nil {
					t.Fatal(err)
				}
				before := h.st().Digest()
				if err := h.fsm.Restore(io.NopCloser(&buf)); err != nil {
					t.Fatal(err)
				}
				if h.st().Digest() != before {
					t.Fatalf("seed %d step %d: restore changed the digest", seed, step)
				}
				if err := checkInvariants(h.st()); err != nil {
					t.Fatalf("seed %d step %d after restore: %v", seed, step, err)
				}
			}
		}
	}
}

// randomTemplateCommand makes one of the commands of templates and
// executions, on a few ids, mostly valid.
func randomTemplateCommand(r *rand.Rand, h *harness) Command {
	tid := hexID(fmt.Sprint(1 + r.Intn(2)))
	eid := hexID(fmt.Sprintf("e%d", r.Intn(8)))
	now := h.now
	switch r.Intn(8) {
	case 6:
		name := []string{"a", "b", "c"}[r.Intn(3)]
		return &TemplateUpdate{Now: now, ID: tid, Patch: TemplatePatch{Name: &name}, IfRevision: randomRevision(r, h.st().templateRevision(tid))}
	case 7:
		return randomDocsWrite(r, h)
	case 0:
		sp := shellSpec([]string{"a", "b"}[r.Intn(2)])
		sp.Defaults.Affinity = []string{"", "linux", "gpu"}[r.Intn(3)]
		return &TemplateCreate{Now: now, ID: tid, Project: DefaultProject, Spec: sp}
	case 1:
		name := []string{"a", "b", "c"}[r.Intn(3)]
		return &TemplateUpdate{Now: now, ID: tid, Patch: TemplatePatch{Name: &name}}
	case 2:
		return &TemplateDelete{Now: now, ID: tid}
	case 3, 4:
		// Pinned now and then: to a host of the walk's slots (h0, h1),
		// or to one no agent has.
		return &Execute{Now: now, ID: eid, Template: tid, Pool: []string{"", "gpu"}[r.Intn(2)], Args: []string{"x"},
			Host: []string{"", "", "h0", "h1", "h9"}[r.Intn(5)]}
	}
	if r.Intn(2) == 0 {
		return &ExecutionCancel{Now: now, ID: eid}
	}
	return &ExecutionDelete{Now: now, ID: eid}
}

// randomDocsWrite writes the docs of a few of the walk's sessions and
// templates, now and then renaming, with a revision that is any, the
// current one or a stale one.
func randomDocsWrite(r *rand.Rand, h *harness) *DocsWrite {
	c := &DocsWrite{Now: h.now}
	for n := r.Intn(4); n > 0; n-- {
		w := DocWrite{Doc: []byte{byte(r.Intn(256))}}
		if r.Intn(2) == 0 {
			w.ID = fmt.Sprintf("%032x", r.Intn(4)+1)
			w.IfRevision = randomRevision(r, h.st().sessionRevision(w.ID))
			if r.Intn(3) == 0 {
				w.Name = ptr("renamed")
			}
			c.Sessions = append(c.Sessions, w)
			continue
		}
		if r.Intn(3) == 0 { // an execution's doc (hexID as randomTemplateCommand names them)
			w.ID = hexID(fmt.Sprintf("e%d", r.Intn(8)))
			w.IfRevision = randomRevision(r, h.st().executionRevision(w.ID))
			c.Executions = append(c.Executions, w)
			continue
		}
		w.ID = hexID(fmt.Sprint(1 + r.Intn(2)))
		w.IfRevision = randomRevision(r, h.st().templateRevision(w.ID))
		if r.Intn(3) == 0 {
			w.Name = ptr([]string{"a", "b", "c"}[r.Intn(3)])
		}
		c.Templates = append(c.Templates, w)
	}
	return c
}

// randomRevision is a compare-and-set's revision: any (0), the current
// one, or a stale one.
func randomRevision(r *rand.Rand, current int64) int64 {
	switch r.Intn(3) {
	case 0:
		return 0
	case 1:
		return current
	}
	return max(current-1, 1)
}

// sessionRevision and templateRevision read a record's revision, 0 when
// there is none.
func (s *State) sessionRevision(id string) int64 {
	x, _ := s.Session(id)
	return x.Revision
}

func (s *State) executionRevision(id string) int64 {
	x, _ := s.Execution(id)
	return x.Revision
}

func (s *State) templateRevision(id string) int64 {
	x, _ := s.Template(id)
	return x.Revision
}
