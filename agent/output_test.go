package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testSpool opens a spool on stdout and stderr files the test writes; end
// is the stdout size it reports once done is closed (stderr: -1).
func testSpool(t *testing.T, from int64, size int, interval time.Duration, pattern string, done <-chan struct{}, end int64) (*spool, *os.File) {
	t.Helper()
	sp, files := testSpools(t, [numStreams]int64{from, 0}, size, interval, pattern, done, [numStreams]int64{end, -1})
	return sp, files[streamOut]
}

// testSpools is testSpool for both streams.
func testSpools(t *testing.T, from [numStreams]int64, size int, interval time.Duration, pattern string, done <-chan struct{}, end [numStreams]int64) (*spool, [numStreams]*os.File) {
	t.Helper()
	dir := t.TempDir()
	var files [numStreams]*os.File
	for i, name := range streamFiles {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		files[i] = f
	}
	progress, _ := newProgressParser(pattern)
	sp, err := openSpool(dir, from, size, interval, progress, done, func() [numStreams]int64 { return end })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.close)
	return sp, files
}

func TestSpoolCutsAtSize(t *testing.T) {
	done := make(chan struct{})
	sp, f := testSpool(t, 0, 4, time.Hour, "", done, -1)
	f.WriteString("abcdefghij")
	ctx := context.Background()
	// Full chunks at once, and a first short one.
	for _, want := range []struct {
		off  int64
		data string
	}{{0, "abcd"}, {4, "efgh"}, {8, "ij"}} {
		ch, err := sp.next(ctx)
		if err != nil || ch.offset[streamOut] != want.off || string(ch.data[streamOut]) != want.data {
			t.Fatalf("next = %d %q %v, want %d %q", ch.offset[streamOut], ch.data[streamOut], err, want.off, want.data)
		}
	}
	// The next short one waits for the interval, or for the end.
	f.WriteString("kl")
	short, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sp.next(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("next with 2 bytes written and an hour to wait = %v, want context.Canceled", err)
	}
	close(done)
	if ch, err := sp.next(ctx); err != nil || ch.offset[streamOut] != 10 || string(ch.data[streamOut]) != "kl" {
		t.Fatalf("next after the end = %d %q %v", ch.offset[streamOut], ch.data[streamOut], err)
	}
	if _, err := sp.next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("next at the end = %v, want io.EOF", err)
	}
}

func TestSpoolFlushesAfterInterval(t *testing.T) {
	sp, f := testSpool(t, 0, 1<<20, 5*time.Millisecond, "", make(chan struct{}), -1)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	go func() {
		f.WriteString("one\n")
		f.WriteString("two\n")
	}()
	var got string
	for got != "one\ntwo\n" {
		ch, err := sp.next(ctx) // returns before the end: the interval flushed it
		if err != nil {
			t.Fatalf("next: %v (got %q so far)", err, got)
		}
		if ch.offset[streamOut] != int64(len(got)) {
			t.Fatalf("chunk at %d, want %d", ch.offset[streamOut], len(got))
		}
		got += string(ch.data[streamOut])
	}
}

func TestSpoolStopsAtOutputSize(t *testing.T) {
	// Bytes written after the job ended (by a process that left its
	// group) are not sent.
	done := make(chan struct{})
	close(done)
	sp, f := testSpool(t, 0, 1<<20, time.Hour, "", done, 3)
	f.WriteString("abcdef")
	if ch, err := sp.next(context.Background()); err != nil || string(ch.data[streamOut]) != "abc" {
		t.Fatalf("next = %q %v, want abc", ch.data[streamOut], err)
	}
	if _, err := sp.next(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("next at the output size = %v, want io.EOF", err)
	}
}

func TestSpoolResumesWithProgress(t *testing.T) {
	// A restarted agent reads from the acknowledged offset on, with the
	// progress found before it.
	done := make(chan struct{})
	close(done)
	const out = "PROGRESS:10\nPROG"
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, outputName), []byte(out+"RESS:30\nrest"), 0o644); err != nil {
		t.Fatal(err)
	}
	const errOut = "PROGRESS:90\nE"
	if err := os.WriteFile(filepath.Join(dir, stderrName), []byte(errOut+"RR\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	progress, _ := newProgressParser("")
	sp, err := openSpool(dir, [numStreams]int64{int64(len(out)), int64(len(errOut))}, 1<<20, time.Hour, progress, done, func() [numStreams]int64 { return [numStreams]int64{-1, -1} })
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	ch, err := sp.next(context.Background())
	if err != nil || ch.offset != [numStreams]int64{int64(len(out)), int64(len(errOut))} || string(ch.data[streamOut]) != "RESS:30\nrest" || string(ch.data[streamErr]) != "RR\n" {
		t.Fatalf("next = %d %q %q %v", ch.offset, ch.data[streamOut], ch.data[streamErr], err)
	}
	if ch.progress == nil || *ch.progress != 0.3 {
		t.Errorf("progress %v, want 0.3: the line began before the offset, and stdout's value wins", ch.progress)
	}
}

func TestSpoolSharesAChunkBetweenStreams(t *testing.T) {
	// Both streams in one report, each its own offsets; ChunkSize bounds
	// them together, and a busy stream does not starve the other.
	done := make(chan struct{})
	sp, files := testSpools(t, [numStreams]int64{}, 8, time.Hour, "", done, [numStreams]int64{-1, -1})
	files[streamOut].WriteString("0123456789abcdef")
	files[streamErr].WriteString("ABCDEFGHIJ")
	ctx := context.Background()
	for _, want := range []struct {
		off      [numStreams]int64
		out, err string
	}{
		{[numStreams]int64{0, 0}, "0123", "ABCD"},
		{[numStreams]int64{4, 4}, "4567", "EFGH"},
		{[numStreams]int64{8, 8}, "89abcd", "IJ"}, // stderr has less: stdout takes the room
		{[numStreams]int64{14, 10}, "ef", ""},     // a short chunk at once: the one before was full
	} {
		ch, err := sp.next(ctx)
		if err != nil || ch.offset != want.off || string(ch.data[streamOut]) != want.out || string(ch.data[streamErr]) != want.err {
			t.Fatalf("next = %v %q %q %v, want %v %q %q", ch.offset, ch.data[streamOut], ch.data[streamErr], err, want.off, want.out, want.err)
		}
	}
	files[streamErr].WriteString("only stderr, and more than a chunk")
	if ch, err := sp.next(ctx); err != nil || ch.offset[streamErr] != 10 || string(ch.data[streamErr]) != "only std" || len(ch.data[streamOut]) != 0 {
		t.Fatalf("next = %v %q %q %v", ch.offset, ch.data[streamOut], ch.data[streamErr], err)
	}
	close(done)
	var rest string
	for {
		ch, err := sp.next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rest += string(ch.data[streamErr])
	}
	if rest != "err, and more than a chunk" {
		t.Errorf("rest of stderr %q", rest)
	}
}

func TestSpoolStopsEachStreamAtItsSize(t *testing.T) {
	done := make(chan struct{})
	close(done)
	sp, files := testSpools(t, [numStreams]int64{}, 1<<20, time.Hour, "", done, [numStreams]int64{2, 3})
	files[streamOut].WriteString("abcdef")
	files[streamErr].WriteString("ABCDEF")
	if ch, err := sp.next(context.Background()); err != nil || string(ch.data[streamOut]) != "ab" || string(ch.data[streamErr]) != "ABC" {
		t.Fatalf("next = %q %q %v, want ab ABC", ch.data[streamOut], ch.data[streamErr], err)
	}
	if _, err := sp.next(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("next at the output sizes = %v, want io.EOF", err)
	}
}

func TestSpoolWithoutStderrFile(t *testing.T) {
	// An attempt of a supervisor from before the streams were separated
	// (re-adopted after an upgrade) has its whole output in one file.
	done := make(chan struct{})
	close(done)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, outputName), []byte("both\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sp, err := openSpool(dir, [numStreams]int64{}, 1<<20, time.Hour, nil, done, func() [numStreams]int64 { return [numStreams]int64{-1, 0} })
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	if ch, err := sp.next(context.Background()); err != nil || string(ch.data[streamOut]) != "both\n" || len(ch.data[streamErr]) != 0 {
		t.Fatalf("next = %q %q %v", ch.data[streamOut], ch.data[streamErr], err)
	}
	if _, err := sp.next(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("next at the end = %v, want io.EOF", err)
	}
}

func TestSpoolProgressFromStderrOnlyWithoutStdout(t *testing.T) {
	// No wait for a short chunk: each next returns what was written.
	sp, files := testSpools(t, [numStreams]int64{}, 1<<20, 0, "", make(chan struct{}), [numStreams]int64{-1, -1})
	files[streamErr].WriteString("PROGRESS:40\n")
	files[streamOut].WriteString("no progress here\n")
	if ch, err := sp.next(context.Background()); err != nil || ch.progress == nil || *ch.progress != 0.4 {
		t.Fatalf("progress %v (%v), want 0.4 from stderr: stdout has none", ch.progress, err)
	}
	files[streamOut].WriteString("PROGRESS:10\n")
	files[streamErr].WriteString("PROGRESS:80\n")
	if ch, err := sp.next(context.Background()); err != nil || ch.progress == nil || *ch.progress != 0.1 {
		t.Fatalf("progress %v (%v), want 0.1: stdout's value wins", ch.progress, err)
	}
}

func TestProgressParserLines(t *testing.T) {
	p, err := newProgressParser("")
	if err != nil {
		t.Fatal(err)
	}
	p.feed([]byte("PROGRESS:1"))
	p.feed([]byte("5\nPROGR"))
	if v := p.latest(); v == nil || *v != 0.15 {
		t.Fatalf("after a line split across writes: %v, want 0.15", v)
	}
	p.feed([]byte("ESS:30")) // no newline yet: not parsed
	if v := p.latest(); *v != 0.15 {
		t.Fatalf("unfinished line parsed: %v", *v)
	}
	p.end()
	if v := p.latest(); *v != 0.3 {
		t.Fatalf("last line at the end: %v, want 0.3", *v)
	}
	p.feed([]byte(strings.Repeat("x", 3*maxProgressLine) + " PROGRESS:90\n"))
	if v := p.latest(); *v != 0.3 {
		t.Errorf("progress past the kept part of a long line: %v", *v)
	}
	if _, err := newProgressParser("%nothing"); err == nil {
		t.Error("pattern without placeholder accepted")
	}
	var disabled *progressParser
	disabled.feed([]byte("PROGRESS:50\n"))
	disabled.end()
	if disabled.latest() != nil {
		t.Error("disabled parser found progress")
	}
}
