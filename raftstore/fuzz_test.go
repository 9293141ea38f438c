package raftstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzApply runs the fuzz input as a program of commands (see the op*
// constants) through the real encode -> FSM.Apply path, on two replicas,
// and checks after every step that nothing panicked (a recovered panic,
// ErrInternal, counts as a failure), that the state keeps its invariants
// (checkInvariants: counters, caches, ready index, worker links, every job
// reachable from the root once, only groups with children, no dependency
// cycle or dependency in a job's own line), that no job is deeper than
// MaxDepth, that a refused command changed nothing, that an accepted
// structural command did what it asked, and that both replicas agree. A
// fatal error (a stack overflow) or a hang fails the fuzzer itself.
//
//	go test -run '^$' -fuzz FuzzApply -fuzztime 2m ./raftstore/
func FuzzApply(f *testing.F) {
	// The seed corpus is testdata/fuzz/FuzzApply (see fuzzSeedPrograms).
	f.Fuzz(func(t *testing.T, data []byte) {
		p := newFuzzProgram(t, data)
		p.run()
	})
}

// Fuzz program opcodes: each step reads an opcode byte (modulo opCount),
// then the operands that opcode needs. Reading past the end yields zeros,
// so every input is a valid program.
const (
	opCreate     = iota // count, then per job: parent mode, [parent], flags, [deps], [timeout], priority, affinity
	opChain             // parent id, length, leaf flag: nested groups through ParentRef
	opEdit              // count, then per edit: id, field mask, the fields
	opSetDeps           // id, count, ids
	opDelete            // count, ids
	opAction            // action, count, ids
	opPick              // worker
	opReport            // worker, attempt, job, offset, log length, progress, flags
	opReportPick        // as opReport
	opTimeout           // selector: running attempts, or a raw attempt id
	opWorker            // sub-command, worker, operands
	opAffinity          // id, name
	opRaw               // length (2 bytes, little endian), bytes: a raw entry, decoded by FSM.Apply
	opBatch             // count, then that many non-raw steps in one Batch entry
	opTick              // seconds
	opSnapshot          // snapshot, restore, compare
	opNode              // add or remove a coordinator's metadata
	opOddNow            // 8 bytes: the Now of the next command
	opWalk              // 8-byte seed, count: that many commands of the random walk (randomCommand)
	opCount
)

// Id bytes. A byte b below idNext names job b itself when it exists (so
// seeds can name ids) or b is 0 (the root), and otherwise one of the jobs
// that exist; the bytes from idNext up name unusual ids.
const (
	idNext    = 0xE0 // the next id, which does not exist yet (0xE0..0xEF)
	idLast    = 0xF0 // the last job id
	idBack    = 0xF1 // the last job id minus the next byte
	idMinus1  = 0xF2
	idMaxInt  = 0xF3
	idLiteral = 0xF4 // an 8-byte id follows (also 0xF5..0xFF)
)

var (
	fuzzAffinities = []string{"", "", "", "", "linux", "linux", "gpu", "linux,gpu", "#3", "a,b,c", " ,", "", "linux", "gpu", "", "#64"}
	fuzzStates     = []string{StateWaiting, StatePaused, StateFinished, StateFailed, StateBlocked, StateRunning, StateCanceled}
	fuzzActions    = []string{ActionReset, ActionResetError, ActionStart, ActionPause, "bogus", ActionCancel}
	fuzzWorkers    = []string{"w0", "w1", "w2", ""}
)

// fuzzProgram interprets a fuzz input against two FSM replicas.
type fuzzProgram struct {
	t      *testing.T
	data   []byte
	pos    int
	a, b   *harness
	oddNow *int64
	steps  int

	observe func(entry []byte, res any) // tests of the seeds watch replica a
	known   []int64                     // job ids of replica a, sorted; nil after a change
}

func newFuzzProgram(t *testing.T, data []byte) *fuzzProgram {
	return &fuzzProgram{t: t, data: data, a: newHarness(t), b: newHarness(t)}
}

func (p *fuzzProgram) byte() byte {
	if p.pos >= len(p.data) {
		return 0
	}
	b := p.data[p.pos]
	p.pos++
	return b
}

func (p *fuzzProgram) int64() int64 {
	var buf [8]byte
	for i := range buf {
		buf[i] = p.byte()
	}
	return int64(binary.BigEndian.Uint64(buf[:]))
}

func (p *fuzzProgram) bool() bool { return p.byte()&1 == 1 }

func (p *fuzzProgram) id() int64 {
	last := p.a.st().lastJobID
	switch b := p.byte(); {
	case b < idNext:
		if b == 0 || p.a.st().jobs[int64(b)] != nil {
			return int64(b)
		}
		if p.known == nil {
			p.known = sortedJobIDs(p.a.st().jobs)
		}
		if len(p.known) == 0 {
			return 0
		}
		return p.known[int(b)%len(p.known)]
	case b < idLast:
		return last + 1
	case b == idLast:
		return last
	case b == idBack:
		return last - int64(p.byte())
	case b == idMinus1:
		return -1
	case b == idMaxInt:
		return math.MaxInt64
	default:
		return p.int64()
	}
}

func (p *fuzzProgram) ids(max byte) []int64 {
	out := make([]int64, p.byte()%max)
	for i := range out {
		out[i] = p.id()
	}
	return out
}

// now is the time of the next command: the leader clock, or an odd value
// once after opOddNow.
func (p *fuzzProgram) now() int64 {
	if p.oddNow != nil {
		n := *p.oddNow
		p.oddNow = nil
		return n
	}
	return p.a.now
}

func (p *fuzzProgram) run() {
	for p.pos < len(p.data) && p.steps < 256 {
		p.steps++
		p.step(p.byte() % opCount)
	}
	if da, db := p.a.st().Digest(), p.b.st().Digest(); da != db {
		p.t.Fatalf("the replicas diverged: %s vs %s", da, db)
	}
}

func (p *fuzzProgram) step(op byte) {
	switch op {
	case opRaw:
		n := int(p.byte()) | int(p.byte())<<8
		end := min(p.pos+n, len(p.data))
		raw := p.data[p.pos:end]
		p.pos = end
		p.applyRaw(raw)
		if err := p.a.fsm.HaltErr(); err != nil {
			// An unknown type that may not be skipped: both replicas
			// stop at it alike, and apply nothing more.
			if errb := p.b.fsm.HaltErr(); errb == nil || errb.Error() != err.Error() {
				p.t.Fatalf("step %d: replica a halted (%v), b: %v", p.steps, err, errb)
			}
			p.pos = len(p.data)
		}
	case opBatch:
		var entries [][]byte
		for range 1 + p.byte()%4 {
			op := p.byte() % opCount
			if op == opRaw || op == opBatch || op == opSnapshot || op == opTick || op == opOddNow || op == opWalk {
				op = opPick
			}
			if cmd := p.command(op); cmd != nil {
				buf, err := Encode(cmd)
				if err != nil {
					p.t.Fatal(err)
				}
				entries = append(entries, buf)
			}
		}
		if p.bool() {
			entries = append(entries, []byte{byte(MsgBatch)}, nil) // nested and empty: refused
		}
		buf, err := EncodeBatch(entries)
		if err != nil {
			p.t.Fatal(err)
		}
		p.applyRaw(buf)
	case opTick:
		p.a.tick(int64(p.byte()))
		p.b.now = p.a.now
	case opOddNow:
		n := p.int64()
		p.oddNow = &n
	case opSnapshot:
		p.roundTrip()
	case opWalk:
		// Deep states are hard to reach byte by byte: a stretch of the
		// random walk gets there, and the ops around it poke at them.
		r := rand.New(rand.NewSource(p.int64()))
		for n := p.byte() % 64; n > 0; n-- {
			p.a.tick(int64(r.Intn(2)))
			p.b.now = p.a.now
			buf, err := Encode(randomCommand(r, p.a))
			if err != nil {
				p.t.Fatal(err)
			}
			p.applyRaw(buf)
		}
	default:
		if cmd := p.command(op); cmd != nil {
			buf, err := Encode(cmd)
			if err != nil {
				p.t.Fatal(err)
			}
			p.applyRaw(buf)
		}
	}
}

// command reads one command's operands.
func (p *fuzzProgram) command(op byte) Command {
	h := p.a
	switch op {
	case opCreate:
		if h.st().JobCount() > 3000 {
			return nil
		}
		c := &JobCreate{Now: p.now()}
		for i := range 1 + int(p.byte()%4) {
			c.Jobs = append(c.Jobs, p.spec(i))
		}
		return c
	case opChain:
		if h.st().JobCount() > 3000 {
			return nil
		}
		parent, n, leaf := p.id(), 1+int(p.byte()%(MaxDepth+8)), p.bool()
		c := &JobCreate{Now: p.now(), Jobs: []JobSpec{{Parent: parent, Title: "level"}}}
		for i := 1; i < n; i++ {
			c.Jobs = append(c.Jobs, JobSpec{ParentRef: i, Title: "level"})
		}
		if leaf {
			c.Jobs = append(c.Jobs, JobSpec{ParentRef: n, Command: "x", Retry: 2})
		}
		return c
	case opEdit:
		c := &JobEdit{Now: p.now()}
		for range 1 + p.byte()%4 {
			c.Edits = append(c.Edits, JobEditItem{ID: p.id(), Patch: p.patch()})
		}
		return c
	case opSetDeps:
		return &JobSetDeps{Now: p.now(), ID: p.id(), Deps: p.ids(4)}
	case opDelete:
		return &JobDelete{Now: p.now(), IDs: p.ids(3)}
	case opAction:
		return &JobAction{Now: p.now(), Action: fuzzActions[int(p.byte())%len(fuzzActions)], IDs: p.ids(3)}
	case opPick:
		return &Pick{Now: p.now(), Worker: fuzzWorkers[int(p.byte())%len(fuzzWorkers)]}
	case opReport:
		r := p.report()
		return &r
	case opReportPick:
		r := p.report()
		r.Done = true
		return &ReportPick{Report: r, IP: "10.0.0.1"}
	case opTimeout:
		c := &JobTimeout{Now: p.now()}
		if p.bool() {
			c.Attempts = append(c.Attempts, p.int64())
		}
		for _, ra := range h.st().Running() {
			c.Attempts = append(c.Attempts, ra.AttemptID)
		}
		return c
	case opWorker:
		name := fuzzWorkers[int(p.byte())%len(fuzzWorkers)]
		aff := fuzzAffinities[int(p.byte())%len(fuzzAffinities)] + "\n" + fuzzAffinities[int(p.byte())%len(fuzzAffinities)]
		switch p.byte() % 6 {
		case 0:
			return &WorkerRegister{Now: p.now(), Name: name, IP: "10.0.0.2", SetAffinity: p.bool(), Affinity: aff}
		case 1:
			active := p.bool()
			return &WorkerEdit{Now: p.now(), Edits: []WorkerEditItem{{Name: name, Patch: WorkerPatch{Affinity: &aff, Active: &active}}}}
		case 2:
			return &WorkerDelete{Now: p.now(), Names: []string{name}}
		case 3:
			return &WorkerAction{Now: p.now(), Action: []string{ActionWorkerStart, ActionWorkerStop, ActionWorkerDrain, "bogus"}[p.byte()%4], Names: []string{name}}
		default:
			return &WorkerLost{Now: p.now(), Names: []string{name}}
		}
	case opAffinity:
		return &AffinitySet{Names: map[int]string{int(int8(p.byte())): []string{"linux", "gpu", "", "mac", "x,y"}[p.byte()%5]}}
	case opNode:
		if p.bool() {
			return &NodeRemove{ID: "n1"}
		}
		return p.accessOrRetention()
	}
	return nil
}

// accessOrRetention reads one of the commands of projects, tokens,
// retention, hosts and interpreters (or a coordinator's metadata): their
// rules must hold whatever the state, like the others'.
func (p *fuzzProgram) accessOrRetention() Command {
	projects := []string{DefaultProject, "a", "b", "bad name", ""}
	project := projects[int(p.byte())%len(projects)]
	now := p.now()
	switch p.byte() % 14 {
	case 11:
		return p.templateCommand(project, now)
	case 12:
		return p.sessionCommand(project, now)
	case 0:
		return &ProjectCreate{Now: now, Name: project}
	case 1:
		return &ProjectDelete{Now: now, Name: project}
	case 2:
		id := fmt.Sprintf("t%d", p.byte()%4)
		return &TokenCreate{Now: now, Token: Token{ID: id, Name: id, Role: Roles[int(p.byte())%len(Roles)],
			Projects: []string{project}, Hash: fmt.Sprintf("%064x", p.byte()%4)}}
	case 3:
		return &TokenRevoke{Now: now, ID: fmt.Sprintf("t%d", p.byte()%4)}
	case 4:
		return &EventPrune{Now: now, Before: now - int64(p.byte())*1e9, Keep: int(p.byte() % 8)}
	case 5:
		return &WorkerExpire{Now: now, Before: now - int64(p.byte())*1e9, Names: []string{fuzzWorkers[int(p.byte())%len(fuzzWorkers)]}}
	case 6:
		return &JobExpire{Now: now, Before: now - int64(p.byte())*1e9, IDs: p.ids(3)}
	case 7:
		return &WorkerRegister{Now: now, Name: fuzzWorkers[int(p.byte())%len(fuzzWorkers)], Projects: []string{project}}
	case 8:
		c := &WorkerRegister{Now: now, Name: fuzzWorkers[int(p.byte())%len(fuzzWorkers)], Host: p.hostInfo()}
		if p.bool() {
			c.Projects = []string{project}
		}
		return c
	case 9:
		names := []string{"sh", "py", "bad name", ""}
		templates := []string{"{interpreter} {file}", "{interpreter} -c {code}", "{bogus}", "", "run {file"}
		return &InterpreterSet{Now: now, Name: names[int(p.byte())%len(names)], Uses: names[int(p.byte())%len(names)],
			Template: templates[int(p.byte())%len(templates)]}
	case 10:
		return &InterpreterDelete{Now: now, Name: []string{"sh", "py", ""}[p.byte()%3]}
	}
	return &NodeMeta{ID: "n1", RaftAddr: "r", HTTPAddr: "h"}
}

// fuzzTemplateIDs and fuzzExecIDs are the ids the fuzzer uses, a bad one
// among them.
var (
	fuzzTemplateIDs = []string{hexID("1"), hexID("2"), hexID("3"), "NOTHEX"}
	fuzzExecIDs     = []string{hexID("e1"), hexID("e2"), hexID("e3"), hexID("e4"), ""}
)

// templateCommand reads one of the commands of templates and executions,
// now and then out of bounds or aimed at nothing.
func (p *fuzzProgram) templateCommand(project string, now int64) Command {
	tid := fuzzTemplateIDs[int(p.byte())%len(fuzzTemplateIDs)]
	eid := fuzzExecIDs[int(p.byte())%len(fuzzExecIDs)]
	commands := []string{"sh -c {main} sh {args}", "", "{args} {args}", "run {bogus}", "echo {main"}
	switch p.byte() % 8 {
	case 6:
		return p.docsWrite(now)
	case 7:
		doc := []byte{p.byte()}
		return &TemplateUpdate{Now: now, ID: tid, Patch: TemplatePatch{Doc: &doc}, IfRevision: int64(p.byte() % 4)}
	case 0:
		sp := TemplateSpec{Name: []string{"a", "b", "", " "}[p.byte()%4], Type: []string{"Shell", "Pig", "bad type"}[p.byte()%3],
			Command: commands[int(p.byte())%len(commands)], Main: "echo hi", Protected: p.bool(),
			Defaults: JobDefaults{Retry: int(int8(p.byte())), Affinity: []string{"", "linux", "gpu"}[p.byte()%3]}}
		if p.bool() {
			sp.Defaults.Env = map[string]string{"A": "1", []string{"B", "=", ""}[p.byte()%3]: "2"}
		}
		return &TemplateCreate{Now: now, ID: tid, Project: project, Spec: sp}
	case 1:
		var patch TemplatePatch
		if p.bool() {
			name := []string{"a", "b", ""}[p.byte()%3]
			patch.Name = &name
		}
		if p.bool() {
			cmd := commands[int(p.byte())%len(commands)]
			patch.Command = &cmd
		}
		if p.bool() {
			prot := p.bool()
			patch.Protected = &prot
		}
		return &TemplateUpdate{Now: now, ID: tid, Patch: patch}
	case 2:
		return &TemplateDelete{Now: now, ID: tid}
	case 3:
		c := &Execute{Now: now, ID: eid, Template: tid, Pool: []string{"", "gpu", "a,b"}[p.byte()%3], MaxProjectJobs: int(p.byte() % 8),
			Host: fuzzHosts[int(p.byte())%len(fuzzHosts)]}
		for range p.byte() % 3 {
			c.Args = append(c.Args, []string{"x", "it's", "a\x00"}[p.byte()%3])
		}
		if p.bool() {
			c.Params = map[string]string{[]string{"P", "A", "=x"}[p.byte()%3]: "v"}
		}
		return c
	case 4:
		return &ExecutionCancel{Now: now, ID: eid}
	}
	return &ExecutionDelete{Now: now, ID: eid}
}

// docsWrite reads a DocsWrite of up to 9 writes (one past the limit) of
// the walk's sessions and the fuzzer's templates, with revisions 0..3,
// names now and then, and now and then a doc past its limit.
func (p *fuzzProgram) docsWrite(now int64) *DocsWrite {
	c := &DocsWrite{Now: now}
	names := []string{"a", "b", "c", " ", "a\nb"}
	for n := p.byte() % (MaxDocWrites + 2); n > 0; n-- {
		flags := p.byte()
		w := DocWrite{IfRevision: int64(flags & 3), Doc: []byte{p.byte()}}
		if flags&4 != 0 {
			name := names[int(p.byte())%len(names)]
			w.Name = &name
		}
		if flags&8 != 0 {
			w.Doc = make([]byte, MaxSessionDoc+1)
		}
		switch {
		case flags&32 != 0:
			w.ID = fuzzExecIDs[int(p.byte())%len(fuzzExecIDs)]
			c.Executions = append(c.Executions, w)
		case flags&16 != 0:
			w.ID = fuzzTemplateIDs[int(p.byte())%len(fuzzTemplateIDs)]
			c.Templates = append(c.Templates, w)
		default:
			w.ID = fmt.Sprintf("%032x", p.byte()%5) // the walk opens 1..4; 0 is none
			c.Sessions = append(c.Sessions, w)
		}
	}
	return c
}

// sessionCommand reads one of the session commands on the sessions
// 1..4 (0 is none): opens of either kind (interpreters offered, not, or
// invalid), updates (a kernel change among them, guarded or not),
// submits, starts, closes, expiries and deletes.
func (p *fuzzProgram) sessionCommand(project string, now int64) Command {
	id := fmt.Sprintf("%032x", p.byte()%5)
	interpreters := []string{"sh", "py", "ruby", "bad name", ""}
	switch p.byte() % 8 {
	case 0:
		kind := []string{SessionGroup, SessionContext, "bogus"}[p.byte()%3]
		interp := ""
		if kind != SessionGroup || p.bool() {
			interp = interpreters[int(p.byte())%len(interpreters)]
		}
		return &SessionOpen{Now: now, ID: id, Project: project, Kind: kind, Interpreter: interp, InactiveTimeout: int64(p.byte() % 3)}
	case 1:
		c := &SessionUpdate{Now: now, ID: id, IfRevision: int64(p.byte() % 4)}
		if p.bool() {
			name := []string{"n", "a\nb", ""}[p.byte()%3]
			c.Name = &name
		}
		if p.bool() {
			c.Interpreter = &interpreters[int(p.byte())%len(interpreters)]
		}
		return c
	case 2, 3:
		return &SessionSubmit{Now: now, ID: id, Title: "t", Code: []string{"echo hi", "", "a\x00"}[p.byte()%3], MaxProjectJobs: int(p.byte() % 8)}
	case 4:
		return &SessionStart{Now: now, ID: id}
	case 5:
		return &SessionClose{Now: now, ID: id}
	case 6:
		return &SessionExpire{Now: now + int64(p.byte())*1e9, IDs: []string{id}}
	}
	return &SessionDelete{Now: now, ID: id}
}

// fuzzHosts are the host names the fuzzer registers slots under.
var fuzzHosts = []string{"h0", "h1", "w0", "", "bad\nname"}

// hostInfo reads what an agent advertises of its host: now and then
// out of bounds.
func (p *fuzzProgram) hostInfo() *HostInfo {
	hi := &HostInfo{Name: fuzzHosts[int(p.byte())%len(fuzzHosts)], Slots: int(int8(p.byte())), CPUs: int(p.byte()), TotalMemory: int64(int8(p.byte()))}
	for range p.byte() % 4 {
		hi.Interpreters = append(hi.Interpreters, []HostInterpreter{
			{Name: "sh", Path: "/bin/sh"}, {Name: "py", Path: "/usr/bin/python3"}, {Name: "x y", Path: "/x"}, {Name: "rel", Path: "bin/rel"},
		}[p.byte()%4])
	}
	return hi
}

// spec reads the i-th job of a create.
func (p *fuzzProgram) spec(i int) JobSpec {
	var s JobSpec
	switch p.byte() % 3 {
	case 1:
		s.Parent = p.id()
	case 2:
		switch b := p.byte(); b {
		case 0xFF:
			s.ParentRef = math.MinInt
		case 0xFE:
			s.ParentRef = i + 1 // itself
		default:
			s.ParentRef = int(b) % (i + 1) // an earlier job, or none (0)
		}
	}
	flags := p.byte()
	if flags&1 != 0 {
		s.Command = "x"
	}
	s.Paused = flags&2 != 0
	if flags&4 != 0 {
		s.Dependencies = p.ids(3)
	}
	if flags&8 != 0 {
		s.Timeout = p.int64()
	} else {
		s.Timeout = int64(p.byte() % 4)
	}
	s.Retry = int(flags>>4) % 4
	s.Priority = int(int8(p.byte())) * 3
	s.Affinity = fuzzAffinities[int(p.byte())%len(fuzzAffinities)]
	return s
}

func (p *fuzzProgram) patch() JobPatch {
	var j JobPatch
	mask := p.byte()
	if mask&1 != 0 {
		v := p.id()
		j.Parent = &v
	}
	if mask&2 != 0 {
		v := []string{"", "x", "y"}[p.byte()%3]
		j.Command = &v
	}
	if mask&4 != 0 {
		v := p.ids(4)
		j.Dependencies = &v
	}
	if mask&8 != 0 {
		v := fuzzStates[int(p.byte())%len(fuzzStates)]
		j.State = &v
	}
	if mask&16 != 0 {
		v := p.bool()
		j.Paused = &v
	}
	if mask&32 != 0 {
		v := int(int8(p.byte())) * 3
		j.Priority = &v
	}
	if mask&64 != 0 {
		v := fuzzAffinities[int(p.byte())%len(fuzzAffinities)]
		j.Affinity = &v
	}
	if mask&128 != 0 {
		v := p.int64()
		j.Timeout = &v
		r := int(int8(p.byte()))
		j.Retry = &r
	}
	return j
}

func (p *fuzzProgram) report() Report {
	st := p.a.st()
	r := Report{Now: p.now(), Worker: fuzzWorkers[int(p.byte())%len(fuzzWorkers)]}
	running := st.Running()
	switch b := p.byte(); {
	case b%4 < 2 && len(running) > 0:
		ra := running[int(b>>2)%len(running)]
		r.AttemptID, r.Worker = ra.AttemptID, ra.Worker
	case b%4 == 2:
		r.AttemptID = st.lastAttempt - int64(b>>2)%4
	case b%4 == 3:
		r.AttemptID = p.int64()
	}
	if p.byte() == 0xFF {
		r.JobID = p.id()
	}
	switch b := p.byte(); b % 4 {
	case 0:
		r.LogOffset = -1
	case 1:
		r.LogOffset = int64(b >> 2)
	default:
		r.LogOffset = p.int64()
	}
	r.Log = bytes.Repeat([]byte("o"), int(p.byte()%8))
	switch b := p.byte(); {
	case b == 0xFF:
		v := math.NaN()
		r.Progress = &v
	case b > 0x80:
		v := float64(b-0x80) / 100
		r.Progress = &v
	}
	flags := p.byte()
	r.Done, r.TimedOut, r.Lost = flags&1 != 0, flags&2 != 0, flags&4 != 0
	r.ExitCode = int(flags>>3) % 3
	switch flags >> 6 {
	case 2:
		r.Signal = 9
	case 3:
		r.Signal = MaxSignal + 1 // refused
	}
	return r
}

// applyRaw applies one entry to both replicas and checks what it did.
func (p *fuzzProgram) applyRaw(entry []byte) {
	p.t.Helper()
	before := p.a.st().Digest()
	ra, rb := p.applyTo(p.a, entry), p.applyTo(p.b, entry)
	p.known = nil
	if da, db := describe(ra), describe(rb); da != db {
		p.t.Fatalf("step %d: the replicas disagree:\n%s\n%s", p.steps, da, db)
	}
	cmd, _ := Decode(entry)
	if err := failure(ra); err != nil {
		p.t.Fatalf("step %d: %T: %v", p.steps, cmd, err)
	}
	if err, refused := ra.(error); refused {
		if after := p.a.st().Digest(); after != before {
			p.t.Fatalf("step %d: %T was refused (%v) but changed the state", p.steps, cmd, err)
		}
	}
	if err := checkInvariants(p.a.st()); err != nil {
		p.t.Fatalf("step %d: after %T %s: %v", p.steps, cmd, describe(cmd), err)
	}
	if err := checkEffect(p.a.st(), cmd, ra); err != nil {
		p.t.Fatalf("step %d: after %T %s: %v", p.steps, cmd, describe(cmd), err)
	}
	if err := checkDepth(p.a.st()); err != nil {
		p.t.Fatalf("step %d: after %T %s: %v", p.steps, cmd, describe(cmd), err)
	}
}

func (p *fuzzProgram) applyTo(h *harness, entry []byte) any {
	h.index++
	res := h.fsm.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: entry})
	if p.observe != nil && h == p.a {
		p.observe(entry, res)
	}
	return res
}

// failure returns the first ErrInternal in a result (a panic that
// applyOne recovered), looking inside batch results.
func failure(res any) error {
	switch r := res.(type) {
	case error:
		if errors.Is(r, ErrInternal) {
			return r
		}
	case []any:
		for _, x := range r {
			if err := failure(x); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkEffect checks that an accepted structural command did what it
// asked: the jobs of a create exist under the parents named, and each edit's
// parent, command and dependencies are in place.
func checkEffect(s *State, cmd Command, res any) error {
	if _, refused := res.(error); refused {
		return nil
	}
	switch c := cmd.(type) {
	case *WorkerRegister:
		if c.Host == nil {
			break
		}
		if h, ok := s.HostOf(c.Name); !ok || h != c.Host.Name {
			return fmt.Errorf("worker %s is a slot of %q, the registration said %q", c.Name, h, c.Host.Name)
		}
	case *InterpreterSet:
		if in, ok := s.ConfiguredInterpreter(c.Name); !ok || in.Template != c.Template {
			return fmt.Errorf("interpreter %s is %+v, the command said %q", c.Name, in, c.Template)
		}
	case *InterpreterDelete:
		if _, ok := s.ConfiguredInterpreter(c.Name); ok {
			return fmt.Errorf("interpreter %s is still configured", c.Name)
		}
	case *TemplateCreate:
		if x, ok := s.Template(c.ID); !ok || x.Project != c.Project || x.Spec.Name != c.Spec.Name {
			return fmt.Errorf("template %s is %+v after its create", c.ID, x)
		}
	case *DocsWrite:
		for _, w := range c.Sessions {
			if x, ok := s.Session(w.ID); !ok || !bytes.Equal(x.Doc, w.Doc) || (w.Name != nil && x.Name != *w.Name) || x.Revision < 1 {
				return fmt.Errorf("session %s is %+v after its docs write", w.ID, x)
			}
		}
		for _, w := range c.Templates {
			if x, ok := s.Template(w.ID); !ok || !bytes.Equal(x.Spec.Doc, w.Doc) || (w.Name != nil && x.Spec.Name != *w.Name) || x.Revision < 1 {
				return fmt.Errorf("template %s is %+v after its docs write", w.ID, x)
			}
		}
		for _, w := range c.Executions {
			if x, ok := s.Execution(w.ID); !ok || !bytes.Equal(x.Doc, w.Doc) || x.Revision < 1 {
				return fmt.Errorf("execution %s is %+v after its docs write", w.ID, x)
			}
		}
	case *TemplateDelete:
		if _, ok := s.Template(c.ID); ok {
			return fmt.Errorf("template %s is still there", c.ID)
		}
	case *Execute:
		e, ok := s.Execution(c.ID)
		if !ok || e.JobID != res.(int64) || e.Template != c.Template || e.Host != c.Host {
			return fmt.Errorf("execution %s is %+v, its job %v", c.ID, e, res)
		}
		if j, ok := s.Job(e.JobID); !ok || j.Project != e.Project {
			return fmt.Errorf("execution %s: job %+v", c.ID, j)
		}
	case *ExecutionCancel:
		// Canceled, unless it had finished; paused shows over canceled.
		if e, ok := s.Execution(c.ID); !ok || (e.State != StateCanceled && e.State != StateFinished && e.State != StatePaused) {
			return fmt.Errorf("execution %s is %+v after its cancel", c.ID, e)
		}
	case *ExecutionDelete:
		if _, ok := s.Execution(c.ID); ok {
			return fmt.Errorf("execution %s is still there", c.ID)
		}
	case *JobCreate:
		ids := res.([]int64)
		for i, spec := range c.Jobs {
			j, ok := s.Job(ids[i])
			want := spec.Parent
			if spec.ParentRef != 0 {
				want = ids[spec.ParentRef-1]
			}
			if !ok || j.Parent != want || !slices.Equal(j.Dependencies, nilIfEmpty(uniq(spec.Dependencies))) {
				return fmt.Errorf("created job %d is %+v, want parent %d", ids[i], j, want)
			}
		}
	case *JobEdit:
		for _, e := range c.Edits {
			j, _ := s.Job(e.ID)
			p := e.Patch
			if p.Parent != nil && j.Parent != *p.Parent {
				return fmt.Errorf("job %d has parent %d, the edit said %d", e.ID, j.Parent, *p.Parent)
			}
			if p.Command != nil && j.Command != *p.Command {
				return fmt.Errorf("job %d has command %q, the edit said %q", e.ID, j.Command, *p.Command)
			}
			if p.Dependencies != nil && !slices.Equal(j.Dependencies, nilIfEmpty(uniq(*p.Dependencies))) {
				return fmt.Errorf("job %d depends on %v, the edit said %v", e.ID, j.Dependencies, *p.Dependencies)
			}
		}
	case *JobAction:
		if c.Action != ActionCancel {
			return nil
		}
		// Every leaf below a canceled job is finished or canceled.
		stack := append([]int64(nil), c.IDs...)
		for n := 0; len(stack) > 0 && n < 1_000_000; n++ {
			j, _ := s.Job(stack[len(stack)-1])
			stack = append(stack[:len(stack)-1], j.Children...)
			if !j.IsGroup() && j.State != StateFinished && j.State != StateCanceled {
				return fmt.Errorf("job %d is %s after a cancel", j.ID, j.State)
			}
		}
	case *JobSetDeps:
		if j, _ := s.Job(c.ID); !slices.Equal(j.Dependencies, nilIfEmpty(uniq(c.Deps))) {
			return fmt.Errorf("job %d depends on %v, the command said %v", c.ID, j.Dependencies, c.Deps)
		}
	}
	return nil
}

func nilIfEmpty(ids []int64) []int64 {
	if len(ids) == 0 {
		return nil
	}
	return ids
}

// checkDepth fails when a job is deeper than MaxDepth: the fuzzer starts
// from an empty state, so every tree in it was built under the limit.
func checkDepth(s *State) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, id := range sortedJobIDs(s.jobs) {
		if d := s.jobs[id].HDepth; d > MaxDepth {
			return fmt.Errorf("job %d at depth %d", id, d)
		}
	}
	return nil
}

// roundTrip snapshots replica a and restores it in place: the digest and
// the invariants must hold, and the replicas must still agree.
func (p *fuzzProgram) roundTrip() {
	var buf bytes.Buffer
	if err := p.a.st().WriteSnapshot(&buf); err != nil {
		p.t.Fatal(err)
	}
	before := p.a.st().Digest()
	if err := p.a.fsm.Restore(io.NopCloser(&buf)); err != nil {
		p.t.Fatal(err)
	}
	if p.a.st().Digest() != before || before != p.b.st().Digest() {
		p.t.Fatalf("step %d: the snapshot round trip changed the state", p.steps)
	}
	if err := checkInvariants(p.a.st()); err != nil {
		p.t.Fatalf("step %d: after restore: %v", p.steps, err)
	}
}

// describe prints a result or command without pointer addresses, so the
// two replicas' results compare as text.
func describe(v any) string {
	switch r := v.(type) {
	case nil:
		return "nil"
	case error:
		return "error: " + r.Error()
	case *Assignment:
		if r == nil {
			return "no assignment"
		}
		return fmt.Sprintf("%+v", *r)
	case ReportPickResult:
		return fmt.Sprintf("%+v next %s", r.Report, describe(r.Next))
	case []any:
		parts := make([]string, len(r))
		for i, x := range r {
			parts[i] = describe(x)
		}
		return "[" + strings.Join(parts, "; ") + "]"
	case *JobEdit:
		var b strings.Builder
		for _, e := range r.Edits {
			fmt.Fprintf(&b, "{%d %s}", e.ID, describePatch(e.Patch))
		}
		return b.String()
	}
	return fmt.Sprintf("%+v", v)
}

func describePatch(p JobPatch) string {
	var parts []string
	if p.Parent != nil {
		parts = append(parts, fmt.Sprint("parent:", *p.Parent))
	}
	if p.Command != nil {
		parts = append(parts, fmt.Sprintf("command:%q", *p.Command))
	}
	if p.Dependencies != nil {
		parts = append(parts, fmt.Sprint("deps:", *p.Dependencies))
	}
	if p.State != nil {
		parts = append(parts, "state:"+*p.State)
	}
	if p.Paused != nil {
		parts = append(parts, fmt.Sprint("paused:", *p.Paused))
	}
	return strings.Join(parts, " ")
}

// Seeds. The corpus in testdata/fuzz/FuzzApply holds these programs (and
// inputs the fuzzer found interesting); TestFuzzSeeds checks that the files
// still say what the programs below say, and that the poison entries are
// refused.

// fuzzGroups is opCreate of n root groups (n <= 4).
func fuzzGroups(n int) []byte {
	out := []byte{opCreate, byte(n - 1)}
	for range n {
		out = append(out, 0, 0, 0, 0, 0) // root, group, timeout 0, priority 0, no affinity
	}
	return out
}

// fuzzLeaves is opCreate of n root jobs with a command (n <= 4).
func fuzzLeaves(n int) []byte {
	out := []byte{opCreate, byte(n - 1)}
	for range n {
		out = append(out, 0, 1, 0, 0, 0) // root, command, timeout 0, priority 0, no affinity
	}
	return out
}

// fuzzRawEntry is opRaw carrying cmd's encoding.
func fuzzRawEntry(cmd Command) []byte {
	buf, err := Encode(cmd)
	if err != nil {
		panic(err)
	}
	return append([]byte{opRaw, byte(len(buf)), byte(len(buf) >> 8)}, buf...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// poisonParents is {"1":{"parent":2},"2":{"parent":1}} as a JobEdit.
var poisonParents = &JobEdit{Now: 1, Edits: []JobEditItem{
	{ID: 1, Patch: JobPatch{Parent: ptr[int64](2)}},
	{ID: 2, Patch: JobPatch{Parent: ptr[int64](1)}},
}}

// poisonDeps is {"6":{"dependencies":[7]},"7":{"dependencies":[6]}}.
var poisonDeps = &JobEdit{Now: 1, Edits: []JobEditItem{
	{ID: 6, Patch: JobPatch{Dependencies: &[]int64{7}}},
	{ID: 7, Patch: JobPatch{Dependencies: &[]int64{6}}},
}}

// fuzzSeedPrograms are the named seeds. poison-* end with a command that
// must be refused with ErrInvalid.
var fuzzSeedPrograms = map[string][]byte{
	// Groups 1 and 2, then the parent swap through opEdit.
	"poison-parent-cycle": cat(fuzzGroups(2), []byte{opEdit, 1, 1, 1, 2, 2, 1, 1}),
	// The same edit as a raw entry, as the API edge encodes it.
	"poison-parent-cycle-raw": cat(fuzzGroups(2), fuzzRawEntry(poisonParents)),
	// The same inside a Batch entry (group commit).
	"poison-parent-cycle-batch": cat(fuzzGroups(2), []byte{opBatch, 0, opEdit, 1, 1, 1, 2, 2, 1, 1, 0}),
	// Jobs 1..7, then 6 -> 7 and 7 -> 6 through opEdit.
	"poison-dependency-cycle":     cat(fuzzLeaves(4), fuzzLeaves(3), []byte{opEdit, 1, 6, 4, 1, 7, 7, 4, 1, 6}),
	"poison-dependency-cycle-raw": cat(fuzzLeaves(4), fuzzLeaves(3), fuzzRawEntry(poisonDeps)),
	// A group with a child group; they swap places (valid at the end).
	"swap-parent-and-child": cat(fuzzGroups(2), []byte{opEdit, 0, 2, 1, 1}, []byte{opEdit, 1, 1, 1, 2, 2, 1, 0}),
	// A chain as deep as allowed, with a leaf at the bottom (refused:
	// depth 65), then without it, then a chain under its bottom.
	"depth-limit": {opChain, 0, MaxDepth - 1, 1, opChain, 0, MaxDepth - 1, 0, opChain, idLast, 1, 0, opPick, 0},
	// A chain as deep as allowed and a chain of three at the root, moved
	// under depth 62 (refused: its bottom would be at 65), then under 61.
	"depth-limit-move": {opChain, 0, MaxDepth - 1, 0, opChain, 0, 2, 0, opEdit, 0, 65, 1, 62, opEdit, 0, 65, 1, 61, opPick, 0},
	// A job finishes after 5 s, loses its command and gets a child: the
	// group's duration must be its children's (it kept the 5 s).
	"finished-leaf-becomes-group": cat(fuzzLeaves(1), []byte{opPick, 0, opTick, 5, opReport, 0, 0, 0, 0, 0, 0, 1, opEdit, 0, 1, 2, 0, opCreate, 0, 1, 1, 1, 0, 0, 0}),
	// Stretches of the random walk with targeted edits in between.
	"walk-then-swap": {opWalk, 0, 0, 0, 0, 0, 0, 0, 7, 63, opEdit, 1, 3, 1, 4, 4, 1, 0, opWalk, 0, 0, 0, 0, 0, 0, 0, 8, 63, opSnapshot, opEdit, 2, 5, 5, 2, 6, 5, 1, 7, 9, 6, 4, 2, 5, 6},
	// An entry of an unknown type that may be skipped, then more work.
	"unknown-type-skipped": cat(fuzzLeaves(2), []byte{opRaw, 3, 0, 100 | byte(IgnoreUnknownTypeFlag), 0x91, 0x01, opPick, 0, opSnapshot}),
	// An entry of an unknown type that may not be skipped: both replicas
	// halt there, and the program ends.
	"unknown-type-halts": cat(fuzzLeaves(2), []byte{opRaw, 3, 0, 100, 0x91, 0x01, opPick, 0, opSnapshot}),
	// Work in flight, then a command cleared, a pause and a timeout.
	"running-then-edited": cat(fuzzLeaves(2), []byte{opPick, 0, opPick, 1, opEdit, 0, 1, 2, 0, opTick, 200, opTimeout, 0, opReport, 1, 1, 0, 1, 3, 0, 1}),
}

func TestFuzzSeeds(t *testing.T) {
	for name, prog := range fuzzSeedPrograms {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzApply", name))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			quoted := strings.TrimSuffix(strings.TrimPrefix(lines[len(lines)-1], "[]byte("), ")")
			if got, err := strconv.Unquote(quoted); err != nil || got != string(prog) {
				t.Fatalf("the corpus file differs from the program (%v):\n%q\n%q", err, got, prog)
			}
			p := newFuzzProgram(t, prog)
			var last any
			p.observe = func(entry []byte, res any) { last = res }
			p.run()
			if !strings.HasPrefix(name, "poison") {
				return
			}
			if b, ok := last.([]any); ok {
				last = b[0]
			}
			if err, _ := last.(error); !errors.Is(err, ErrInvalid) {
				t.Fatalf("the poison entry gave %v, want ErrInvalid", last)
			}
		})
	}
}
