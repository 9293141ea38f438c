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

// testSpool opens a spool on an output file the test writes; end is the
// output size it reports once done is closed.
func testSpool(t *testing.T, from int64, size int, interval time.Duration, pattern string, done <-chan struct{}, end int64) (*spool, *os.File) {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, outputName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	progress, _ := newProgressParser(pattern)
	sp, err := openSpool(dir, from, size, interval, progress, done, func() int64 { return end })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.close)
	return sp, f
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
		if err != nil || ch.offset != want.off || string(ch.data) != want.data {
			t.Fatalf("next = %d %q %v, want %d %q", ch.offset, ch.data, err, want.off, want.data)
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
	if ch, err := sp.next(ctx); err != nil || ch.offset != 10 || string(ch.data) != "kl" {
		t.Fatalf("next after the end = %d %q %v", ch.offset, ch.data, err)
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
		if ch.offset != int64(len(got)) {
			t.Fatalf("chunk at %d, want %d", ch.offset, len(got))
		}
		got += string(ch.data)
	}
}

func TestSpoolStopsAtOutputSize(t *testing.T) {
	// Bytes written after the job ended (by a process that left its
	// group) are not sent.
	done := make(chan struct{})
	close(done)
	sp, f := testSpool(t, 0, 1<<20, time.Hour, "", done, 3)
	f.WriteString("abcdef")
	if ch, err := sp.next(context.Background()); err != nil || string(ch.data) != "abc" {
		t.Fatalf("next = %q %v, want abc", ch.data, err)
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
	progress, _ := newProgressParser("")
	sp, err := openSpool(dir, int64(len(out)), 1<<20, time.Hour, progress, done, func() int64 { return -1 })
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	ch, err := sp.next(context.Background())
	if err != nil || ch.offset != int64(len(out)) || string(ch.data) != "RESS:30\nrest" {
		t.Fatalf("next = %d %q %v", ch.offset, ch.data, err)
	}
	if ch.progress == nil || *ch.progress != 0.3 {
		t.Errorf("progress %v, want 0.3: the line began before the offset", ch.progress)
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
