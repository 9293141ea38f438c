package raftstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
)

func hashOf(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

func TestTokensAndProjects(t *testing.T) {
	h := newHarness(t)
	if _, ok := h.st().Project(DefaultProject); !ok {
		t.Fatal("a new state has no default project")
	}
	h.ok(&ProjectCreate{Now: h.now, Name: "film"})
	h.fails(&ProjectCreate{Now: h.now, Name: "film"}, ErrInvalid)
	h.fails(&ProjectCreate{Now: h.now, Name: "bad name"}, ErrInvalid)
	h.fails(&ProjectCreate{Now: h.now, Name: ""}, ErrInvalid)

	tok := Token{ID: "t1", Name: "alice", Role: RoleUser, Projects: []string{"film"}, Hash: hashOf("s1")}
	h.ok(&TokenCreate{Now: h.now, Token: tok})
	if got, ok := h.st().TokenByHash(hashOf("s1")); !ok || got.Name != "alice" || got.Created != h.now {
		t.Fatalf("token by hash: %+v %v", got, ok)
	}
	dup := tok
	dup.ID, dup.Hash = "t2", hashOf("s2")
	h.fails(&TokenCreate{Now: h.now, Token: dup}, ErrInvalid) // same name
	for _, bad := range []Token{
		{ID: "t3", Name: "x", Role: "root", Hash: hashOf("s3")},
		{ID: "t3", Name: "x", Role: RoleUser, Projects: []string{"nope"}, Hash: hashOf("s3")},
		{ID: "t3", Name: "x", Role: RoleUser, Workers: []string{"w"}, Hash: hashOf("s3")},
		{ID: "t3", Name: "x", Role: RoleUser, Hash: "short"},
		{ID: "t3", Name: "x\x00y", Role: RoleUser, Hash: hashOf("s3")},
		{ID: "t1", Name: "y", Role: RoleUser, Hash: hashOf("s3")}, // id taken
		{ID: "t3", Name: "y", Role: RoleUser, Hash: hashOf("s1")}, // secret taken
	} {
		res := h.apply(&TokenCreate{Now: h.now, Token: bad})
		if _, isErr := res.(error); !isErr {
			t.Errorf("token %+v accepted", bad)
		}
	}
	// A project a token grants, or that holds jobs, cannot go.
	h.fails(&ProjectDelete{Now: h.now, Name: "film"}, ErrInvalid)
	h.fails(&ProjectDelete{Now: h.now, Name: DefaultProject}, ErrInvalid)
	h.ok(&TokenRevoke{Now: h.now, ID: "t1"})
	if _, ok := h.st().TokenByHash(hashOf("s1")); ok {
		t.Fatal("a revoked token is still found")
	}
	h.fails(&TokenRevoke{Now: h.now, ID: "t1"}, ErrNotFound)
	ids := h.create(JobSpec{Title: "g", Project: "film"})
	h.fails(&ProjectDelete{Now: h.now, Name: "film"}, ErrInvalid)
	h.ok(&JobDelete{Now: h.now, IDs: ids})
	h.ok(&ProjectDelete{Now: h.now, Name: "film"})
	h.fails(&ProjectDelete{Now: h.now, Name: "film"}, ErrNotFound)
}

func TestJobsStayInTheirProject(t *testing.T) {
	h := newHarness(t)
	h.ok(&ProjectCreate{Now: h.now, Name: "a"})
	h.ok(&ProjectCreate{Now: h.now, Name: "b"})
	ga := h.create(JobSpec{Title: "group a", Project: "a"})[0]
	gb := h.create(JobSpec{Title: "group b", Project: "b"})[0]
	// Children inherit; a different project under a parent is refused.
	kids := h.create(JobSpec{Parent: ga, Title: "layer"}, JobSpec{ParentRef: 1, Title: "frame", Command: "x"})
	for _, id := range kids {
		if p := h.job(id).Project; p != "a" {
			t.Fatalf("child %d in project %q", id, p)
		}
	}
	if p := h.job(h.create(JobSpec{Title: "root"})[0]).Project; p != DefaultProject {
		t.Fatalf("a root job without a project is in %q", p)
	}
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Parent: ga, Title: "x", Project: "b"}}}, ErrInvalid)
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Title: "x", Project: "nope"}}}, ErrNotFound)
	// Dependencies and moves stay within a project.
	h.fails(&JobCreate{Now: h.now, Jobs: []JobSpec{{Title: "x", Project: "b", Dependencies: []int64{kids[1]}}}}, ErrInvalid)
	h.fails(&JobSetDeps{Now: h.now, ID: gb, Deps: []int64{ga}}, ErrInvalid)
	parent := gb
	h.fails(&JobEdit{Now: h.now, Edits: []JobEditItem{{ID: kids[0], Patch: JobPatch{Parent: &parent}}}}, ErrInvalid)
	// The quota counts a project's jobs.
	h.fails(&JobCreate{Now: h.now, MaxProjectJobs: 3, Jobs: []JobSpec{{Title: "x", Project: "a"}}}, ErrTooLarge)
	h.ok(&JobCreate{Now: h.now, MaxProjectJobs: 2, Jobs: []JobSpec{{Title: "x", Project: "b"}}})
	if p, _ := h.st().Project("a"); p.Jobs != 3 {
		t.Fatalf("project a counts %d jobs, want 3", p.Jobs)
	}
}

func TestWorkersServeTheirProjects(t *testing.T) {
	h := newHarness(t)
	h.ok(&ProjectCreate{Now: h.now, Name: "a"})
	h.ok(&ProjectCreate{Now: h.now, Name: "b"})
	ja := h.create(JobSpec{Title: "a", Command: "x", Project: "a", Priority: 1})[0]
	jb := h.create(JobSpec{Title: "b", Command: "x", Project: "b", Priority: 200})[0]
	h.ok(&WorkerRegister{Now: h.now, Name: "wa", Projects: []string{"a"}})
	h.fails(&WorkerRegister{Now: h.now, Name: "wx", Projects: []string{"nope"}}, ErrNotFound)
	// wa may not take b's job, however urgent it is.
	if as := h.pick("wa"); as == nil || as.JobID != ja {
		t.Fatalf("restricted worker picked %+v, want job %d", as, ja)
	}
	if work, _ := h.st().WorkFor("wa2"); !work {
		t.Fatal("an unknown worker has work (its pick creates it)")
	}
	// A worker a pick creates serves the projects the pick names.
	if as := h.ok(&Pick{Now: h.now, Worker: "wb", Projects: []string{"b"}}).(*Assignment); as == nil || as.JobID != jb {
		t.Fatalf("new worker for b picked %+v", as)
	}
	if w, _ := h.st().Worker("wb"); len(w.Projects) != 1 || w.Projects[0] != "b" {
		t.Fatalf("worker wb serves %v", w.Projects)
	}
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
}

func TestEventsAreDeletedWithTheirJobAndPruned(t *testing.T) {
	h := newHarness(t)
	a := h.create(JobSpec{Title: "a", Command: "x"})[0]
	b := h.create(JobSpec{Title: "b", Command: "x", Retry: 5})[0]
	h.finish(h.pick("w"), "w", 0)
	h.tick(10)
	for range 3 {
		h.finish(h.pick("w"), "w", 1) // b fails thrice: three events
		h.tick(10)
	}
	if n := h.st().RunCount(); n != 4 {
		t.Fatalf("%d events, want 4", n)
	}
	h.ok(&JobDelete{Now: h.now, IDs: []int64{a}})
	if evs := h.st().Runs(func(e *Run) bool { return e.JobID == a }); len(evs) != 0 {
		t.Fatalf("events of a deleted job remain: %+v", evs)
	}
	// b runs again: its running attempt's record is never pruned.
	run := h.pick("w")
	h.ok(&EventPrune{Now: h.now, Before: h.now + 1, Keep: 1})
	evs := h.st().Runs(nil)
	if len(evs) != 1 || evs[0].ID != run.AttemptID {
		t.Fatalf("after pruning: %+v, want only the running attempt %d", evs, run.AttemptID)
	}
	h.finish(run, "w", 0)
	h.wantState(b, StateFinished)
	// Count only: the newest stay.
	c := h.create(JobSpec{Title: "c", Command: "x"})[0]
	h.finish(h.pick("w"), "w", 0)
	h.ok(&EventPrune{Now: h.now, Keep: 1})
	if evs := h.st().Runs(nil); len(evs) != 1 || evs[0].JobID != c {
		t.Fatalf("after keeping one: %+v", evs)
	}
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
}

func TestLostWorkersExpire(t *testing.T) {
	h := newHarness(t)
	h.ok(&WorkerRegister{Now: h.now, Name: "gone"})
	h.ok(&WorkerRegister{Now: h.now, Name: "back"})
	h.ok(&WorkerLost{Now: h.now, Names: []string{"gone", "back"}})
	lostAt := h.now
	h.tick(100)
	h.ok(&WorkerRegister{Now: h.now, Name: "back"}) // it spoke again
	h.ok(&WorkerExpire{Now: h.now, Before: lostAt + 1, Names: []string{"gone", "back", "unknown"}})
	if _, ok := h.st().Worker("gone"); ok {
		t.Fatal("a worker lost long ago is still there")
	}
	if _, ok := h.st().Worker("back"); !ok {
		t.Fatal("a worker that came back was forgotten")
	}
}

func TestLogCapAndFieldLimits(t *testing.T) {
	h := newHarness(t)
	h.create(JobSpec{Title: "chatty", Command: "x"})
	a := h.pick("w")
	h.ok(&Report{Now: h.now, Worker: "w", AttemptID: a.AttemptID, Log: bytes.Repeat([]byte("x"), 100), LogCap: 64})
	n, full, _ := h.st().LogSize(a.JobID)
	if !full || n > 64+100 {
		t.Fatalf("log of %d bytes, truncated %v; want cut at 64", n, full)
	}
	log, _ := h.st().Log(a.JobID)
	if !strings.HasPrefix(log, strings.Repeat("x", 64)+"\n[croft] log truncated at 64 bytes") {
		t.Fatalf("log %q", log)
	}
	// Cut right after a newline: a blank line before the note, as the
	// log has always read (Coalition's /log is unchanged).
	h.create(JobSpec{Title: "lines", Command: "x"})
	b := h.pick("w2")
	h.ok(&Report{Now: h.now, Worker: "w2", AttemptID: b.AttemptID, Log: []byte(strings.Repeat("y", 63) + "\nzzz"), LogCap: 64})
	if log, _ := h.st().Log(b.JobID); log != strings.Repeat("y", 63)+"\n\n[croft] log truncated at 64 bytes\n" {
		t.Fatalf("log cut after a newline %q", log)
	}
	for _, spec := range []JobSpec{
		{Title: strings.Repeat("t", MaxTitleBytes+1)},
		{Command: strings.Repeat("c", MaxCommandBytes+1)},
		{Environment: strings.Repeat("e", MaxEnvironmentBytes+1)},
		{Affinity: strings.Repeat("a", MaxAffinityName+1)},
		{Dependencies: make([]int64, MaxDependencies+1)},
	} {
		if err := CheckSpec(&spec); err == nil || !strings.Contains(err.Error(), ErrTooLarge.Error()) {
			t.Errorf("CheckSpec of an oversized spec: %v", err)
		}
	}
	for _, spec := range []JobSpec{
		{Command: "echo \x00"},
		{Environment: "A=\x00"},
		{Timeout: MaxTimeout + 1},
		{Timeout: -1},
		{Retry: MaxRetry + 1},
		{User: "two\nlines"},
		{Dependencies: []int64{0}},
	} {
		if err := CheckSpec(&spec); err == nil || !strings.Contains(err.Error(), ErrInvalid.Error()) {
			t.Errorf("CheckSpec of %+v: %v", spec, err)
		}
	}
}

func TestAccessSurvivesSnapshot(t *testing.T) {
	h := newHarness(t)
	h.ok(&ProjectCreate{Now: h.now, Name: "film"})
	h.ok(&TokenCreate{Now: h.now, Token: Token{ID: "t1", Name: "a", Role: RoleAgent, Projects: []string{"film"}, Workers: []string{"r-*"}, Hash: hashOf("s")}})
	h.create(JobSpec{Title: "j", Command: "x", Project: "film"})
	h.ok(&WorkerRegister{Now: h.now, Name: "r-1", Projects: []string{"film"}})
	var buf bytes.Buffer
	if err := h.st().WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	before := h.st().Digest()
	if err := h.fsm.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if h.st().Digest() != before {
		t.Fatal("restore changed the digest")
	}
	if tok, ok := h.st().TokenByHash(hashOf("s")); !ok || tok.Workers[0] != "r-*" {
		t.Fatalf("token after restore: %+v %v", tok, ok)
	}
	if p, _ := h.st().Project("film"); p.Jobs != 1 {
		t.Fatalf("project after restore: %+v", p)
	}
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
}

func TestFinishedRootJobsExpire(t *testing.T) {
	h := newHarness(t)
	done := h.create(JobSpec{Title: "done", Command: "x"})[0]
	h.finish(h.pick("w"), "w", 0)
	finishedAt := h.now
	failed := h.create(JobSpec{Title: "failed", Command: "x", Retry: 1})[0]
	h.finish(h.pick("w"), "w", 1)
	group := h.create(JobSpec{Title: "group"})[0]
	h.create(JobSpec{Parent: group, Title: "frame", Command: "x"})
	h.finish(h.pick("w"), "w", 0)
	if j := h.job(group); j.State != StateFinished || j.EndTime != h.now {
		t.Fatalf("finished group %+v", j)
	}
	h.tick(100)
	// A job reset since it finished is no longer expired.
	h.ok(&JobAction{Now: h.now, Action: ActionReset, IDs: []int64{group}})
	h.ok(&JobExpire{Now: h.now, Before: finishedAt + 1, IDs: []int64{done, failed, group, 999}})
	if _, ok := h.st().Job(done); ok {
		t.Fatal("a job finished before the cut is still there")
	}
	for _, id := range []int64{failed, group} {
		if _, ok := h.st().Job(id); !ok {
			t.Fatalf("job %d, not finished before the cut, was deleted", id)
		}
	}
	if err := checkInvariants(h.st()); err != nil {
		t.Fatal(err)
	}
}
