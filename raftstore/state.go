package raftstore

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/btree"

	"github.com/croftfarm/croft/joblog"
)

// MaxAffinityID is the highest affinity id; ids 1..63 map to mask bits 0..62,
// as in Coalition.
const MaxAffinityID = 63

// MaxLogBytes caps the stored log of one job. A runaway job cannot exhaust
// the coordinators' memory; what is cut is said in the log itself.
const MaxLogBytes = 64 << 20

// State is the whole replicated state. It is changed only by apply (the FSM)
// and read through the exported methods, which take the read lock.
type State struct {
	mu sync.RWMutex

	jobs        map[int64]*Job
	root        *Job // pseudo job 0: holds the root jobs as children
	workers     map[string]*Worker
	runByID     map[int64]*Run
	affinities  [MaxAffinityID + 1]string
	nodes       map[string]NodeMeta
	tokens      map[string]*Token // by hash of the secret
	tokenByID   map[string]*Token
	projects    map[string]*Project
	lastJobID   int64
	lastAttempt int64
	applied     uint64
	// release is the release whose apply rules are in force (SetRelease):
	// 0 for a state built by replaying the log from its start or restored
	// from a snapshot of release 0.
	release int

	// hosts are the agents' hosts; slotHost (derived) names each slot's.
	hosts        map[string]*Host
	interpreters map[string]*Interpreter // configured, by name
	sessions     map[string]*Session     // by id

	sessionOrder *btree.BTreeG[string] // session ids
	hostSessions map[string][]string   // host -> its open context sessions' ids, ascending

	// tpl holds the templates and executions (templates.go).
	tpl templateStore

	// Executions pinned to a host (pins.go), derived from their
	// Execution.Host: pins names each pinned job's host, pinCount counts
	// them per host (MaxHostPinned), hostPinned holds each host's
	// runnable ones (where the shared index would hold them).
	pins       map[int64]string
	pinCount   map[string]int
	hostPinned map[string]*pinnedIndex

	// derived indexes, rebuilt on restore
	jobOrder    *btree.BTreeG[int64]  // job ids, for paged reads in id order
	runOrder    *btree.BTreeG[int64]  // run ids
	workerOrder *btree.BTreeG[string] // worker names
	jobRuns     map[int64][]int64     // a job's runs in try order, to read and delete them
	hostOrder   *btree.BTreeG[string] // host names
	slotHost    map[string]string     // worker name -> its host's name
	dependents  map[int64]map[int64]struct{}
	ready       *readyIndex
	notify      chan struct{} // closed when runnable work may have appeared
	readyGrew   bool

	wakeNesting int // wakeDependents calls in progress; see maxWakeNesting

	// The jobs' log text lives on this coordinator's disk, not in the
	// state: lines is the store, lw its writer (one transaction per
	// applied batch). logNotify is closed when a log grew or a job ended
	// or went away (logChanged), for readers that follow a log.
	lines      *joblog.Store
	lw         *joblog.Writer
	logNotify  chan struct{}
	logChanged bool
	// logWatched is set when a reader took logNotify (under the read
	// lock, hence atomic): only then is it worth closing and renewing,
	// an allocation per attempt end otherwise.
	logWatched atomic.Bool
	// changeNotify is closed after every applied batch that a reader
	// watched (changeWatched, as logWatched): readers that wait for a
	// change of something derived (a session's state, a job's) check
	// it again then (see Changed).
	changeNotify  chan struct{}
	changeWatched atomic.Bool

	// jobCounts counts the jobs by project and state (derived: kept by
	// changed and dropJob, rebuilt on restore) for the metrics.
	jobCounts map[jobCountKey]int
	// obs is told of dispatches and run ends (metrics); shared with the
	// FSM, so a restore keeps it. nil: nobody listens.
	obs *observerBox
}

// NewState returns an empty state whose job logs go to lines.
func NewState(lines *joblog.Store) *State {
	return &State{
		lines:        lines,
		lw:           lines.Writer(),
		logNotify:    make(chan struct{}),
		changeNotify: make(chan struct{}),
		jobs:         make(map[int64]*Job),
		jobCounts:    make(map[jobCountKey]int),
		root:         &Job{State: StateWaiting},
		workers:      make(map[string]*Worker),
		runByID:      make(map[int64]*Run),
		jobOrder:     btree.NewOrderedG[int64](32),
		runOrder:     btree.NewOrderedG[int64](32),
		workerOrder:  btree.NewOrderedG[string](32),
		jobRuns:      make(map[int64][]int64),
		nodes:        make(map[string]NodeMeta),
		tokens:       make(map[string]*Token),
		tokenByID:    make(map[string]*Token),
		projects:     map[string]*Project{DefaultProject: {Name: DefaultProject}},
		dependents:   make(map[int64]map[int64]struct{}),
		ready:        newReadyIndex(),
		notify:       make(chan struct{}),

		hosts:        make(map[string]*Host),
		interpreters: make(map[string]*Interpreter),
		hostOrder:    btree.NewOrderedG[string](32),
		slotHost:     make(map[string]string),
		sessions:     make(map[string]*Session),
		sessionOrder: btree.NewOrderedG[string](32),
		hostSessions: make(map[string][]string),

		tpl: newTemplateStore(),

		pins:       make(map[int64]string),
		pinCount:   make(map[string]int),
		hostPinned: make(map[string]*pinnedIndex),
	}
}

// addJob puts a new job in the state's maps and indexes (not in its
// parent's children: callers do that).
func (s *State) addJob(j *Job) {
	s.jobs[j.ID] = j
	s.jobOrder.ReplaceOrInsert(j.ID)
	if p := s.projects[j.Project]; p != nil {
		p.jobs++
	}
}

// dropJob takes a job out of the state's maps and indexes, with its log
// and its runs.
func (s *State) dropJob(j *Job) {
	delete(s.jobs, j.ID)
	s.jobOrder.Delete(j.ID)
	if j.LogLines > 0 {
		s.lw.Delete(j.ID)
	}
	s.logChanged = true
	if p := s.projects[j.Project]; p != nil {
		p.jobs--
	}
	s.countMove(j.Project, j.State, "")
	if j.Session != "" {
		s.sessionJobGone(j)
	}
	for _, id := range s.jobRuns[j.ID] {
		delete(s.runByID, id)
		s.runOrder.Delete(id)
	}
	delete(s.jobRuns, j.ID)
	s.unpin(j)
	s.tpl.dropJob(j.ID)
}

// addRun records an attempt.
func (s *State) addRun(e *Run) {
	s.runByID[e.ID] = e
	s.runOrder.ReplaceOrInsert(e.ID)
	s.jobRuns[e.JobID] = append(s.jobRuns[e.JobID], e.ID)
}

// dropRun forgets an attempt's record (retention).
func (s *State) dropRun(e *Run) {
	delete(s.runByID, e.ID)
	s.runOrder.Delete(e.ID)
	ids := s.jobRuns[e.JobID]
	for i, id := range ids {
		if id == e.ID {
			ids = append(ids[:i:i], ids[i+1:]...)
			break
		}
	}
	if len(ids) == 0 {
		delete(s.jobRuns, e.JobID)
	} else {
		s.jobRuns[e.JobID] = ids
	}
}

// addWorker puts a new worker in the state.
func (s *State) addWorker(w *Worker) {
	s.workers[w.Name] = w
	s.workerOrder.ReplaceOrInsert(w.Name)
}

// dropWorker forgets a worker, and its host if it was the last slot.
func (s *State) dropWorker(name string) {
	delete(s.workers, name)
	s.workerOrder.Delete(name)
	s.unlinkSlot(name)
}

// node returns job id, or the root for id 0.
func (s *State) node(id int64) *Job {
	if id == 0 {
		return s.root
	}
	return s.jobs[id]
}

// ---------------------------------------------------------------------------
// Scheduler index upkeep

func (s *State) runnable(j *Job) bool {
	if j.IsGroup() || j.HPaused || j.Session != "" && s.pinned(j) {
		return false
	}
	return j.State == StateWaiting || (j.State == StateFailed && j.RunDone < j.Retry)
}

// reindex brings j's entry in the ready index in line with its fields.
func (s *State) reindex(j *Job) { s.place(j, j.ready.hprio) }

// place is reindex with a new priority path for j. A job pinned to a
// host goes to its host's pinned index instead of the shared one; the
// check costs other jobs one map length test while nothing is pinned.
func (s *State) place(j *Job, hprio PriorityPath) {
	if len(s.pins) > 0 {
		if host, ok := s.pins[j.ID]; ok {
			s.placePinned(j, host, hprio)
			return
		}
	}
	want := readyKey{in: s.runnable(j), mask: j.HAffinity, hprio: hprio}
	if want == j.ready {
		return
	}
	if j.ready.in {
		s.ready.remove(j.Project, j.ID, j.ready)
	}
	if want.in {
		s.ready.insert(j.Project, j.ID, want)
		s.readyGrew = true
	}
	j.ready = want
}

// ---------------------------------------------------------------------------
// Hierarchy caches (h_*), counters and derived group state

// refreshH recomputes the hierarchy caches of j from its parent, and of its
// subtree where they changed (everywhere when force is set). It walks with
// an explicit stack, not recursion: a legacy tree may be deeper than
// MaxDepth, and a Go stack overflow is fatal, beyond applyOne's recover.
func (s *State) refreshH(j *Job, force bool) {
	if !s.refreshOne(j) && !force || len(j.Children) == 0 {
		return // the common case (a leaf) allocates nothing
	}
	stack := s.pushChildren(nil, j)
	// A tree holds each job once: more visits than jobs means a corrupt
	// state with a cycle, and the walk stops rather than loop.
	for budget := len(s.jobs); len(stack) > 0 && budget > 0; budget-- {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s.refreshOne(x) || force {
			stack = s.pushChildren(stack, x)
		}
	}
}

// refreshOne recomputes j's own caches from its parent's, and reindexes
// it. It reports whether the caches changed.
func (s *State) refreshOne(j *Job) bool {
	p := s.node(j.Parent)
	if p == nil {
		p = s.root // only in a corrupt state: never dereference nil
	}
	depth := int(p.HDepth) + 1
	haff := p.HAffinity | j.AffinityBits
	hprio := p.ready.hprio.below(depth, j.Priority)
	hpaused := p.HPaused || j.Paused || j.State == StateBlocked
	changed := haff != j.HAffinity || hprio != j.ready.hprio || hpaused != j.HPaused || clamp32(depth) != j.HDepth
	j.HAffinity, j.HPaused, j.HDepth = haff, hpaused, clamp32(depth)
	s.place(j, hprio)
	return changed
}

// pushChildren appends j's children to a walk stack, last child first, so
// that popping visits them in ascending id order.
func (s *State) pushChildren(stack []*Job, j *Job) []*Job {
	for i := len(j.Children) - 1; i >= 0; i-- {
		if c := s.jobs[j.Children[i]]; c != nil {
			stack = append(stack, c)
		}
	}
	return stack
}

// contrib is what a job adds to its parent's counters.
type contrib struct {
	leaves, fin, errs, work, canceled int32
	isFin, isErr, isWork              bool
	dur                               int64
	start                             int64
}

func contribution(j *Job) contrib {
	// A canceled job counts as an error in its parent's counters, and
	// in TotalCanceled besides.
	c := contrib{
		isFin:  j.State == StateFinished,
		isErr:  j.State == StateFailed || j.State == StateCanceled,
		isWork: j.State == StateRunning,
		start:  j.StartTime,
	}
	if j.Total == 0 {
		c.leaves = 1
		c.fin, c.errs, c.work = b2i(c.isFin), b2i(c.isErr), b2i(c.isWork)
		c.canceled = b2i(j.State == StateCanceled)
		if c.isFin || c.isErr {
			c.dur = j.Duration
		}
		if !j.IsGroup() {
			return c
		}
	} else {
		c.leaves, c.fin, c.errs, c.work = j.Total, j.TotalFinished, j.TotalErrors, j.TotalWorking
		c.canceled = j.TotalCanceled
	}
	c.dur = j.Duration
	return c
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// depState is WAITING, or PENDING while a dependency is not FINISHED.
func (s *State) depState(j *Job) string {
	for _, d := range j.Dependencies {
		if dj := s.jobs[d]; dj != nil && dj.State != StateFinished {
			return StateBlocked
		}
	}
	return StateWaiting
}

// groupState derives a group's state from its counters, as Coalition does.
func (s *State) groupState(g *Job) string {
	switch {
	case g.Total == 0:
		if g.State == StateFinished || g.State == StateFailed || g.State == StateCanceled {
			return g.State
		}
		return s.depState(g)
	case g.TotalErrors > 0 && g.TotalErrors == g.TotalCanceled:
		return StateCanceled
	case g.TotalErrors > 0:
		return StateFailed
	case g.TotalFinished == g.Total:
		return StateFinished
	case g.TotalWorking > 0:
		return StateRunning
	default:
		return s.depState(g)
	}
}

// changed must follow every change to j: it re-derives a group's state,
// updates the index, wakes dependents and carries counter deltas up the tree.
// before and oldState are j's contribution and state before the change.
func (s *State) changed(j *Job, before contrib, oldState string, now int64) {
	if j.Session != "" {
		s.sessionJobChanged(j, oldState, now)
	}
	// A loop up the ancestor line, not recursion through carry: see
	// refreshH. A line longer than the job count is a cycle (a corrupt
	// state), where it stops.
	for steps := 0; ; steps++ {
		if j.IsGroup() {
			j.State = s.groupState(j)
			if j.Total > 0 {
				j.Progress = float64(j.TotalFinished) / float64(j.Total)
			}
		}
		s.countMove(j.Project, oldState, j.State)
		if (oldState == StateBlocked) != (j.State == StateBlocked) {
			s.refreshH(j, false)
		} else {
			s.reindex(j)
		}
		if (oldState == StateFinished) != (j.State == StateFinished) {
			j.EndTime = 0
			if j.State == StateFinished {
				j.EndTime = now
			}
			s.wakeDependents(j.ID, now)
		}
		if j.Parent == 0 || steps > len(s.jobs) {
			return
		}
		p := s.jobs[j.Parent]
		if p == nil {
			return
		}
		pBefore, pOld := contribution(p), p.State
		addDelta(p, before, contribution(j))
		j, before, oldState = p, pBefore, pOld
	}
}

// carry applies a child's counter delta to parent pid and to the ancestors
// above it.
func (s *State) carry(pid int64, before, after contrib, now int64) {
	if pid == 0 {
		return
	}
	p := s.jobs[pid]
	if p == nil {
		return
	}
	pBefore, pOld := contribution(p), p.State
	addDelta(p, before, after)
	s.changed(p, pBefore, pOld, now)
}

// addDelta applies to group p the change of one child's contribution.
func addDelta(p *Job, before, after contrib) {
	p.Total += after.leaves - before.leaves
	p.TotalFinished += after.fin - before.fin
	p.TotalErrors += after.errs - before.errs
	p.TotalWorking += after.work - before.work
	p.TotalCanceled += after.canceled - before.canceled
	p.Finished += b2i(after.isFin) - b2i(before.isFin)
	p.Errors += b2i(after.isErr) - b2i(before.isErr)
	p.Working += b2i(after.isWork) - b2i(before.isWork)
	p.Duration += after.dur - before.dur
	if after.start != 0 && (p.StartTime == 0 || after.start < p.StartTime) {
		p.StartTime = after.start
	}
}

// maxWakeNesting bounds how deeply waking dependents may nest. Only a
// FINISHED flip wakes dependents, and a woken job only moves between
// WAITING and PENDING, which changes no counter above it: in a consistent
// state a wake never nests in another. The bound guards a corrupt state.
const maxWakeNesting = 16

// wakeDependents re-evaluates the jobs that depend on id, in id order.
func (s *State) wakeDependents(id int64, now int64) {
	if len(s.dependents[id]) == 0 || s.wakeNesting >= maxWakeNesting {
		return
	}
	s.wakeNesting++
	for _, d := range sortedKeys(s.dependents[id]) {
		if dj := s.jobs[d]; dj != nil {
			s.evalDeps(dj, now)
		}
	}
	s.wakeNesting--
}

// evalDeps moves a waiting or blocked job between WAITING and PENDING.
func (s *State) evalDeps(j *Job, now int64) {
	if !j.IsGroup() && j.State != StateWaiting && j.State != StateBlocked {
		return
	}
	before, old := contribution(j), j.State
	if !j.IsGroup() {
		j.State = s.depState(j)
	}
	s.changed(j, before, old, now)
}

// recomputeGroupStart resets a group's start time to its children's minimum.
func (s *State) recomputeGroupStart(g *Job) {
	var start int64
	for _, c := range g.Children {
		if cj := s.jobs[c]; cj != nil && cj.StartTime != 0 && (start == 0 || cj.StartTime < start) {
			start = cj.StartTime
		}
	}
	g.StartTime = start
}

// ---------------------------------------------------------------------------
// Affinities

// affinityMask turns "linux,gpu" (or "#3") into a bit mask, naming unknown
// affinities with the lowest free ids. With dry set it only checks.
func (s *State) affinityMask(aff string, dry bool) (uint64, error) {
	var mask uint64
	pending := 0
	for _, name := range strings.Split(aff, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if strings.HasPrefix(name, "#") {
			n, err := strconv.Atoi(name[1:])
			if err != nil || n < 1 || n > MaxAffinityID {
				return 0, invalid("affinity %q: raw ids are #1..#%d", name, MaxAffinityID)
			}
			mask |= 1 << uint(n-1)
			continue
		}
		id := s.affinityID(name)
		if id == 0 {
			if dry {
				pending++
				if s.freeAffinities() < pending {
					return 0, invalid("affinity %q: all %d affinity ids are in use", name, MaxAffinityID)
				}
				continue
			}
			id = s.freeAffinityID()
			if id == 0 {
				return 0, invalid("affinity %q: all %d affinity ids are in use", name, MaxAffinityID)
			}
			s.affinities[id] = name
		}
		mask |= 1 << uint(id-1)
	}
	return mask, nil
}

// unknownAffinities adds to names the affinity names of aff that have no
// id yet, and checks the raw "#N" forms.
func (s *State) unknownAffinities(aff string, names map[string]bool) error {
	for _, name := range strings.Split(aff, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
		case strings.HasPrefix(name, "#"):
			if n, err := strconv.Atoi(name[1:]); err != nil || n < 1 || n > MaxAffinityID {
				return invalid("affinity %q: raw ids are #1..#%d", name, MaxAffinityID)
			}
		case s.affinityID(name) == 0:
			names[name] = true
		}
	}
	return nil
}

func (s *State) affinityID(name string) int {
	for id := 1; id <= MaxAffinityID; id++ {
		if s.affinities[id] == name {
			return id
		}
	}
	return 0
}

func (s *State) freeAffinityID() int {
	for id := 1; id <= MaxAffinityID; id++ {
		if s.affinities[id] == "" {
			return id
		}
	}
	return 0
}

func (s *State) freeAffinities() int {
	n := 0
	for id := 1; id <= MaxAffinityID; id++ {
		if s.affinities[id] == "" {
			n++
		}
	}
	return n
}

// workerLines parses a worker's newline-separated affinity lines.
func (s *State) workerLines(aff string, dry bool) ([]uint64, error) {
	var lines []uint64
	for _, line := range strings.Split(aff, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		m, err := s.affinityMask(line, dry)
		if err != nil {
			return nil, err
		}
		lines = append(lines, m)
	}
	return lines, nil
}

// ---------------------------------------------------------------------------
// Small helpers

// clampPriority keeps a priority of any entry in MinPriority..MaxPriority
// (the API edge refuses values outside; an entry may hold anything).
func clampPriority(p int) int {
	return min(max(p, MinPriority), MaxPriority)
}

func sortedKeys[K int64 | string](m map[K]struct{}) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// insertSorted returns a new slice with id inserted in ascending order.
func insertSorted(ids []int64, id int64) []int64 {
	i := sort.Search(len(ids), func(i int) bool { return ids[i] >= id })
	out := make([]int64, 0, len(ids)+1)
	out = append(out, ids[:i]...)
	out = append(out, id)
	return append(out, ids[i:]...)
}

// without returns a new slice without id.
func without(ids []int64, id int64) []int64 {
	out := make([]int64, 0, len(ids))
	for _, x := range ids {
		if x != id {
			out = append(out, x)
		}
	}
	return out
}

// isAncestor reports whether a is a (strict) ancestor of j. The walk up
// stops after as many steps as there are jobs: only a corrupt state with a
// parent cycle gets that far.
func (s *State) isAncestor(a int64, j *Job) bool {
	p := j.Parent
	for steps := 0; p != 0 && steps <= len(s.jobs); steps++ {
		if p == a {
			return true
		}
		pj := s.jobs[p]
		if pj == nil {
			return false
		}
		p = pj.Parent
	}
	return false
}

// tail returns j's log tail; setTail stores it back.
func tail(j *Job) joblog.Tail {
	return joblog.Tail{Bytes: int64(j.LogBytes), Lines: int64(j.LogLines), Open: int64(j.LogOpen), OpenStream: joblog.Stream(j.LogOpenStream)}
}

// The counts fit 32 bits: a log holds at most its cap, 64 MiB
// (MaxLogBytes); they saturate rather than wrap all the same.
func setTail(j *Job, t joblog.Tail) {
	j.LogBytes, j.LogLines, j.LogOpen, j.LogOpenStream = sat32(t.Bytes), sat32(t.Lines), sat32(t.Open), uint8(t.OpenStream)
}

// sat32 is v within int32.
func sat32(v int64) int32 { return int32(min(max(v, math.MinInt32), math.MaxInt32)) }

// appendLog adds output of stream st to a job's log, within logCap bytes
// (0 or more than MaxLogBytes: MaxLogBytes). Past the cap the log says
// where it was cut and takes nothing more.
func (s *State) appendLog(j *Job, st joblog.Stream, text []byte, logCap int64) {
	if len(text) == 0 || j.LogTruncated {
		return
	}
	if logCap <= 0 || logCap > MaxLogBytes {
		logCap = MaxLogBytes
	}
	room := logCap - int64(j.LogBytes)
	if int64(len(text)) > room {
		text = text[:max(room, 0)]
		j.LogTruncated = true
	}
	t := tail(j)
	s.lw.Append(j.ID, &t, st, text)
	if j.LogTruncated {
		// "\n" then the note, as the log has always read (a log cut
		// right after a newline shows a blank line): an open line ends,
		// an ended one is followed by an empty one (stdout, as the
		// snapshots of the first release convert it).
		if t.Open > 0 {
			s.lw.EndLine(j.ID, &t)
		} else {
			s.lw.Append(j.ID, &t, joblog.Stdout, []byte{'\n'})
		}
		s.lw.Append(j.ID, &t, joblog.Farm, fmt.Appendf(nil, "[croft] log truncated at %d bytes\n", logCap))
	}
	setTail(j, t)
	s.logChanged = true
}

// note appends a line written by the farm itself to a job's log: every
// note is one farm line. A line the job left open ends first.
func (s *State) note(j *Job, format string, args ...any) {
	if j.LogTruncated {
		return // as any output past the cap
	}
	t := tail(j)
	s.lw.EndLine(j.ID, &t)
	setTail(j, t)
	s.appendLog(j, joblog.Farm, []byte("[croft] "+fmt.Sprintf(format, args...)+"\n"), 0)
}
