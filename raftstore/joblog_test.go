package raftstore

import (
	"bytes"
	"io"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/croftfarm/croft/joblog"
)

func allLines(t *testing.T, s *State, id int64) []joblog.Line {
	t.Helper()
	lines, _, err := s.LogLines(id, joblog.Page{From: 1, MaxLines: 1000, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestReportLinesAreTypedNumberedAndNotDuplicated(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "c", Retry: 1})[0]
	h.ok(&WorkerRegister{Now: h.now, Name: "w"})
	a := h.pick("w")
	rep := &Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, Log: []byte("out 1\nout"), Stderr: []byte("err 1\n")}
	h.ok(rep)
	h.ok(rep) // a retried report: both streams are duplicates
	h.ok(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: a.AttemptID, LogOffset: 9, Log: []byte(" 2\n"), StderrOffset: 6, Done: true, ExitCode: 0})
	h.ok(&JobAction{Now: h.now, Action: ActionReset, IDs: []int64{id}})
	lines := allLines(t, h.st(), id)
	want := []struct {
		st   joblog.Stream
		text string
	}{{joblog.Stdout, "out 1\n"}, {joblog.Stdout, "out"}, {joblog.Stderr, "err 1\n"}, {joblog.Stdout, " 2\n"}}
	if len(lines) < len(want) {
		t.Fatalf("%d lines", len(lines))
	}
	var off int64
	for i, l := range lines {
		if l.Number != int64(i+1) || l.Offset != off {
			t.Fatalf("line %d: number %d offset %d", i, l.Number, l.Offset)
		}
		off += int64(len(l.Text))
		if i < len(want) && (l.Stream != want[i].st || string(l.Text) != want[i].text) {
			t.Errorf("line %d: %v %q, want %v %q", i+1, l.Stream, l.Text, want[i].st, want[i].text)
		}
	}
	info, _, _ := h.st().LogInfo(id)
	if info.Lines != int64(len(lines)) || info.Bytes != off {
		t.Fatalf("tail %+v for %d lines of %d bytes", info, len(lines), off)
	}
	// A refused report (an offset past what was received) changes nothing.
	b := h.pick("w")
	before := h.st().Digest()
	h.fails(&Report{Now: h.now, Worker: "w", JobID: id, AttemptID: b.AttemptID, Log: []byte("x"), Stderr: []byte("y"), StderrOffset: 5}, ErrInvalid)
	if h.st().Digest() != before {
		t.Fatal("a refused report changed the state")
	}
}

func TestSnapshotRoundTripWithLogs(t *testing.T) {
	h := newHarness(t)
	ids := h.create(JobSpec{Command: "a", Retry: 1}, JobSpec{Command: "b", Retry: 1})
	h.ok(&WorkerRegister{Now: h.now, Name: "w"})
	for range ids {
		a := h.pick("w")
		h.ok(&Report{Now: h.now, Worker: "w", JobID: a.JobID, AttemptID: a.AttemptID, Log: bytes.Repeat([]byte("0123456789"), 10_000), Stderr: []byte("warn\n")})
		h.ok(&Report{Now: h.now, Worker: "w", JobID: a.JobID, AttemptID: a.AttemptID, LogOffset: 100_000, Done: true, ExitCode: 3})
	}
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	restored := testFSM(t)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got, want := restored.State().Digest(), h.st().Digest(); got != want {
		t.Fatalf("digest after restore %s, want %s", got, want)
	}
	for _, id := range ids {
		a, _ := h.st().Log(id)
		b, _ := restored.State().Log(id)
		if a != b || len(a) < 100_000 {
			t.Fatalf("job %d: %d bytes restored, %d before", id, len(b), len(a))
		}
	}
	// The restored replica goes on like the original.
	h2 := &harness{t: t, fsm: restored, index: h.index, now: h.now}
	for _, hh := range []*harness{h, h2} {
		hh.ok(&JobDelete{Now: hh.now, IDs: ids[:1]})
	}
	if h.st().Digest() != h2.st().Digest() {
		t.Fatal("replicas diverged after a delete")
	}
	if lines := allLines(t, h2.st(), ids[0]); len(lines) != 0 {
		t.Fatalf("a deleted job keeps %d lines", len(lines))
	}
}

// TestVersion2SnapshotWithLogsRestores writes a snapshot as the previous
// release did (version 2, logs as one byte slice per job) and restores it.
func TestVersion2SnapshotWithLogsRestores(t *testing.T) {
	h := newHarness(t)
	id := h.create(JobSpec{Command: "a", Retry: 1})[0]
	d := h.st().snapshotLocked()
	d.Version = snapshotVersionV2
	old := "frame 1\n[croft] attempt 1 on w ended: requeued\nframe 2 partial"
	d.Logs = map[int64][]byte{id: []byte(old)}
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, msgpackHandle).Encode(&d); err != nil {
		t.Fatal(err)
	}
	f := testFSM(t)
	if err := f.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.State().Log(id); got != old {
		t.Fatalf("log %q, want %q", got, old)
	}
	lines := allLines(t, f.State(), id)
	if len(lines) != 3 || lines[1].Stream != joblog.Farm || lines[2].Stream != joblog.Stdout {
		t.Fatalf("converted lines %+v", lines)
	}
	info, _, _ := f.State().LogInfo(id)
	if !info.Open || info.Bytes != int64(len(old)) {
		t.Fatalf("tail %+v", info)
	}
}

// TestChangedIsClosedByTheNextApply: a reader's Changed channel is closed
// by the next applied entry, and a new one is open after it.
func TestChangedIsClosedByTheNextApply(t *testing.T) {
	h := newHarness(t)
	ch := h.st().Changed()
	select {
	case <-ch:
		t.Fatal("closed before any apply")
	default:
	}
	h.ok(&WorkerRegister{Now: h.now, Name: "w"})
	select {
	case <-ch:
	default:
		t.Fatal("not closed by an apply")
	}
	select {
	case <-h.st().Changed():
		t.Fatal("the next channel is closed already")
	default:
	}
}
