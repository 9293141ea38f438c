package raftstore

// Structural validation: parents, groups, dependencies and depth. Every
// command that changes the shape of the job tree or the dependency graph is
// checked against the state as it will be after the whole command, before
// anything changes. Checking each edit of a batch against the state before
// the batch let two moves that are fine alone build a parent cycle together:
// the next walk up the tree never ended, on every replica, at every replay.
//
// The entry points are checkEditStructure (JobEdit), checkCreateStructure
// (JobCreate) and checkDepsStructure (JobSetDeps). The checks read through an
// overlay and never mutate the state; they visit what the command touches
// (moved subtrees, changed dependency edges, the ancestor lines above them,
// what the new edges reach), not the whole farm, and always in command or id
// order, so that every replica refuses with the same error.

// MaxDepth is the deepest a job may sit in the tree: a root job has depth 1,
// its children depth 2. Creates and moves that would put any job deeper are
// refused. Trees built before the limit existed may be deeper; they keep
// working (reads, deletes, resets, moves that do not deepen them) but do not
// grow deeper.
const MaxDepth = 64

// overlay is a read-only view of the state with one command's structural
// changes applied: the final parent of moved jobs, the final dependencies
// and command of edited jobs. Jobs the command does not touch read through
// to the state.
type overlay struct {
	s *State

	parent    map[int64]int64   // final parent of each moved job
	movers    []int64           // moved jobs, in command order
	incoming  map[int64]int     // moved jobs arriving under each parent
	deps      map[int64][]int64 // final dependencies of jobs whose list is set
	depJobs   []int64           // those jobs, in command order
	command   map[int64]string  // final command of jobs whose command changes
	commanded []int64           // those jobs, in command order

	depth map[int64]int // final depths found so far (memo of finalDepth)
}

// move records that job id ends under parent.
func (o *overlay) move(id, parent int64) {
	if o.parent == nil {
		o.parent = make(map[int64]int64)
		o.incoming = make(map[int64]int)
	}
	o.parent[id] = parent
	o.incoming[parent]++
	o.movers = append(o.movers, id)
}

// setDeps records job id's final dependency list (without duplicates).
func (o *overlay) setDeps(id int64, deps []int64) {
	if o.deps == nil {
		o.deps = make(map[int64][]int64)
	}
	o.deps[id] = deps
	o.depJobs = append(o.depJobs, id)
}

// setCommand records job id's final command.
func (o *overlay) setCommand(id int64, cmd string) {
	if o.command == nil {
		o.command = make(map[int64]string)
	}
	o.command[id] = cmd
	o.commanded = append(o.commanded, id)
}

// parentOf returns id's final parent, and false if id does not exist.
func (o *overlay) parentOf(id int64) (int64, bool) {
	if p, ok := o.parent[id]; ok {
		return p, true
	}
	j := o.s.jobs[id]
	if j == nil {
		return 0, false
	}
	return j.Parent, true
}

// depsOf returns id's final dependencies.
func (o *overlay) depsOf(id int64) []int64 {
	if d, ok := o.deps[id]; ok {
		return d
	}
	if j := o.s.jobs[id]; j != nil {
		return j.Dependencies
	}
	return nil
}

// isGroup reports whether id is a group (no command) in the final state.
// The root (0) is a group.
func (o *overlay) isGroup(id int64) bool {
	if id == 0 {
		return true
	}
	if c, ok := o.command[id]; ok {
		return c == ""
	}
	j := o.s.jobs[id]
	return j != nil && j.IsGroup()
}

// becomesGroup reports whether the command clears id's command.
func (o *overlay) becomesGroup(id int64) bool {
	c, ok := o.command[id]
	return ok && c == ""
}

// keepsChildren reports whether id has children in the final state. It
// stops at the first child that stays, so it costs at most one step per
// moved job.
func (o *overlay) keepsChildren(id int64) bool {
	if o.incoming[id] > 0 {
		return true
	}
	j := o.s.jobs[id]
	if j == nil {
		return false
	}
	for _, c := range j.Children {
		if np, moved := o.parent[c]; !moved || np == id {
			return true
		}
	}
	return false
}

// ancestors calls fn with id's final proper ancestors, nearest first, until
// fn returns false. The walk stops after as many steps as there are jobs:
// only a parent cycle (refused by checkMoves, or a corrupt state) goes on.
func (o *overlay) ancestors(id int64, fn func(int64) bool) {
	p, ok := o.parentOf(id)
	for steps := 0; ok && p != 0 && steps <= len(o.s.jobs); steps++ {
		if !fn(p) {
			return
		}
		p, ok = o.parentOf(p)
	}
}

// isAncestor reports whether a is a final proper ancestor of id.
func (o *overlay) isAncestor(a, id int64) bool {
	found := false
	o.ancestors(id, func(p int64) bool {
		found = p == a
		return !found
	})
	return found
}

// finalDepth returns id's depth in the final tree (1 for a root job). It
// walks up the final parent line until a job whose final depth is known,
// and returns false if the line runs into itself (a parent cycle) or into a
// missing job.
func (o *overlay) finalDepth(id int64) (int, bool) {
	if d, ok := o.depth[id]; ok {
		return d, true
	}
	if o.depth == nil {
		o.depth = make(map[int64]int)
	}
	var path []int64
	onPath := map[int64]bool{}
	base, x := 0, id
	for x != 0 {
		if d, ok := o.depth[x]; ok {
			base = d
			break
		}
		if onPath[x] || len(path) > len(o.s.jobs) {
			return 0, false
		}
		onPath[x] = true
		path = append(path, x)
		p, ok := o.parentOf(x)
		if !ok {
			return 0, false
		}
		x = p
	}
	for i := len(path) - 1; i >= 0; i-- {
		base++
		o.depth[path[i]] = base
	}
	return o.depth[id], true
}

// ownPart is a moved job and the descendants that move with it: its subtree
// without the subtrees of other moved jobs (they are parts of their own).
// Relative depths inside a part do not change, so every job in it gets
// deeper or shallower by the same amount as the moved job.
type ownPart struct {
	ids    []int64 // walk order
	in     map[int64]bool
	height int // levels below the moved job
}

// own collects mover m's part. The walk uses an explicit stack and visits
// each job at most once.
func (o *overlay) own(m int64) ownPart {
	type item struct {
		id  int64
		rel int
	}
	part := ownPart{in: map[int64]bool{}}
	stack := []item{{id: m}}
	for len(stack) > 0 && len(part.ids) <= len(o.s.jobs) {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if part.in[it.id] {
			continue // a corrupt state listing a job twice
		}
		part.in[it.id] = true
		part.ids = append(part.ids, it.id)
		part.height = max(part.height, it.rel)
		j := o.s.jobs[it.id]
		if j == nil {
			continue
		}
		for i := len(j.Children) - 1; i >= 0; i-- {
			c := j.Children[i]
			if _, moved := o.parent[c]; !moved {
				stack = append(stack, item{id: c, rel: it.rel + 1})
			}
		}
	}
	return part
}

// checkEditStructure validates the structural side of a JobEdit (parents,
// commands that make or unmake groups, dependencies, depth) against the
// state after all its edits. It returns the overlay, which editJobs uses to
// apply the moves in a safe order.
func (s *State) checkEditStructure(edits []JobEditItem) (*overlay, error) {
	o := &overlay{s: s}
	seen := make(map[int64]struct{}, len(edits))
	for _, e := range edits {
		j := s.jobs[e.ID]
		if j == nil {
			return nil, notFound("job %d", e.ID)
		}
		// One patch per job keeps "the final state" well defined: two
		// patches of one job would each see the other half applied.
		if _, dup := seen[e.ID]; dup {
			return nil, invalid("job %d is edited twice in one command", e.ID)
		}
		seen[e.ID] = struct{}{}
		p := e.Patch
		if p.Parent != nil && *p.Parent != j.Parent {
			o.move(e.ID, *p.Parent)
		}
		if p.Command != nil && *p.Command != j.Command {
			o.setCommand(e.ID, *p.Command)
		}
		if p.Dependencies != nil {
			o.setDeps(e.ID, uniq(*p.Dependencies))
		}
	}
	if err := o.checkParents(); err != nil {
		return nil, err
	}
	if err := o.checkCommands(); err != nil {
		return nil, err
	}
	if err := o.checkCycles(); err != nil {
		return nil, err
	}
	if err := o.checkDeps(); err != nil {
		return nil, err
	}
	if err := o.checkMovedParts(); err != nil {
		return nil, err
	}
	return o, nil
}

// checkDepsStructure validates a JobSetDeps: job id's dependencies become
// deps.
func (s *State) checkDepsStructure(id int64, deps []int64) error {
	o := &overlay{s: s}
	o.setDeps(id, deps)
	return o.checkDeps()
}

// checkParents refuses a move to a missing parent, under a job that has a
// command in the final state, or under the job itself.
func (o *overlay) checkParents() error {
	for _, m := range o.movers {
		t := o.parent[m]
		switch {
		case t != 0 && o.s.jobs[t] == nil:
			return notFound("parent %d", t)
		case !o.isGroup(t):
			return invalid("parent %d is not a group (it has a command)", t)
		case t == m:
			return invalid("job %d cannot move under itself", m)
		case t != 0 && o.s.jobs[t].Project != o.s.jobs[m].Project:
			return invalid("job %d cannot move under %d: it is in project %q, not %q", m, t, o.s.jobs[t].Project, o.s.jobs[m].Project)
		}
	}
	return nil
}

// checkCommands refuses a command on a job that has children in the final
// state: a job is a leaf or a group, never both.
func (o *overlay) checkCommands() error {
	for _, id := range o.commanded {
		if o.command[id] != "" && o.keepsChildren(id) {
			return invalid("job %d has children and cannot get a command", id)
		}
	}
	return nil
}

// checkCycles refuses moves that would make a parent cycle. Every cycle in
// the final tree runs through a moved job (the state has none), so walking
// up from each moved job finds them all; the walk also gives final depths.
func (o *overlay) checkCycles() error {
	for _, m := range o.movers {
		if _, ok := o.finalDepth(m); !ok {
			return invalid("job %d cannot move under %d: the parents would form a cycle", m, o.parent[m])
		}
	}
	return nil
}

// checkDeps checks the jobs whose dependency list is set: each dependency
// exists, is not the job, nor its ancestor or descendant in the final tree,
// and no new edge closes a cycle in the final dependency graph. A blocked
// line like these would leave jobs PENDING forever.
func (o *overlay) checkDeps() error {
	for _, id := range o.depJobs {
		deps := o.deps[id]
		var anc map[int64]bool
		for _, d := range deps {
			if o.s.jobs[d] == nil {
				return notFound("dependency %d", d)
			}
			if d == id {
				return invalid("job %d cannot depend on itself", d)
			}
			if dp, jp := o.s.jobs[d].Project, o.s.jobs[id].Project; dp != jp {
				return invalid("job %d cannot depend on %d: it is in project %q, not %q", id, d, dp, jp)
			}
			if anc == nil {
				anc = map[int64]bool{}
				o.ancestors(id, func(a int64) bool { anc[a] = true; return true })
			}
			if anc[d] || o.isAncestor(id, d) {
				return invalid("job %d cannot depend on its own ancestor or descendant %d", id, d)
			}
		}
		if err := o.checkDepCycle(id, deps); err != nil {
			return err
		}
	}
	return nil
}

// checkDepCycle refuses a new dependency of id that leads back to id in the
// final graph. Edges id already had cannot: the state has no cycle, so a
// new cycle runs through a new edge, and each job with new edges checks
// them. Searches from several new edges share what they visited: a job that
// does not reach id from one does not from another.
func (o *overlay) checkDepCycle(id int64, deps []int64) error {
	var old map[int64]bool
	if j := o.s.jobs[id]; j != nil && len(j.Dependencies) > 0 {
		old = make(map[int64]bool, len(j.Dependencies))
		for _, d := range j.Dependencies {
			old[d] = true
		}
	}
	seen := map[int64]bool{}
	for _, d := range deps {
		if old[d] {
			continue
		}
		stack := []int64{d}
		for len(stack) > 0 {
			x := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if x == id {
				return invalid("dependency %d -> %d would make a cycle", id, d)
			}
			if seen[x] {
				continue
			}
			seen[x] = true
			stack = append(stack, o.depsOf(x)...)
		}
	}
	return nil
}

// checkMovedParts checks each moved job's part (see ownPart) in its new
// place: no job in it may end deeper than MaxDepth unless it was already
// that deep (a legacy tree), and no job in it may depend on one of its new
// ancestors, or be depended on by one. Every new ancestor relation in the
// final tree runs from an ancestor of some moved job to a job of its part,
// so checking each part against its moved job's final ancestors finds them
// all.
func (o *overlay) checkMovedParts() error {
	for _, m := range o.movers {
		t := o.parent[m]
		depth, _ := o.finalDepth(m) // known: checkCycles resolved it
		part := o.own(m)
		if grow := depth - int(o.s.jobs[m].HDepth); grow > 0 && depth+part.height > MaxDepth {
			return invalid("job %d cannot move under %d: its subtree would reach depth %d, past the limit of %d", m, t, depth+part.height, MaxDepth)
		}
		var line []int64
		above := map[int64]bool{}
		o.ancestors(m, func(a int64) bool {
			line = append(line, a)
			above[a] = true
			return true
		})
		for _, a := range line {
			for _, d := range o.depsOf(a) {
				if part.in[d] {
					return invalid("job %d cannot move under %d: %d depends on %d", m, t, a, d)
				}
			}
		}
		for _, x := range part.ids {
			for _, d := range o.depsOf(x) {
				if above[d] {
					return invalid("job %d cannot move under %d: %d depends on %d", m, t, x, d)
				}
			}
		}
	}
	return nil
}

// checkCreateStructure validates the structural side of a JobCreate: each
// job's parent exists (or is an earlier job of the same create, through
// ParentRef) and is a group, no job would be deeper than MaxDepth, and no
// job depends on a missing job or on its own ancestor. New jobs have no
// descendants and nothing depends on them yet, so they cannot close a
// dependency cycle.
func (s *State) checkCreateStructure(specs []JobSpec) error {
	depth := make([]int, len(specs))
	top := make([]int64, len(specs)) // the existing job each new line hangs from
	var lines map[int64]map[int64]bool
	for i, spec := range specs {
		if spec.ParentRef != 0 {
			if spec.ParentRef < 0 || spec.ParentRef > i {
				return invalid("job %d: parent_ref %d must name an earlier job of the same request", i, spec.ParentRef)
			}
			ref := spec.ParentRef - 1
			if specs[ref].Command != "" {
				return invalid("job %d: parent_ref %d is not a group (it has a command)", i, spec.ParentRef)
			}
			depth[i], top[i] = depth[ref]+1, top[ref]
		} else {
			p := s.node(spec.Parent)
			if p == nil {
				return notFound("job %d: parent %d", i, spec.Parent)
			}
			if !p.IsGroup() {
				return invalid("parent %d is not a group (it has a command)", spec.Parent)
			}
			// HDepth is the parent's depth, kept exact by refreshH.
			depth[i], top[i] = int(p.HDepth)+1, spec.Parent
		}
		if depth[i] > MaxDepth {
			return invalid("job %d would be at depth %d, past the limit of %d", i, depth[i], MaxDepth)
		}
		for _, d := range spec.Dependencies {
			if s.jobs[d] == nil {
				return notFound("dependency %d", d)
			}
			if top[i] == 0 {
				continue
			}
			// The existing ancestors of a new job are its top and the
			// top's ancestors; most creates share one or a few tops.
			line := lines[top[i]]
			if line == nil {
				if lines == nil {
					lines = make(map[int64]map[int64]bool)
				}
				line = map[int64]bool{top[i]: true}
				o := overlay{s: s}
				o.ancestors(top[i], func(a int64) bool { line[a] = true; return true })
				lines[top[i]] = line
			}
			if line[d] {
				return invalid("job %d cannot depend on its own ancestor %d", i, d)
			}
		}
	}
	return nil
}
