package joblog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Create(filepath.Join(t.TempDir(), "joblog.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// all reads every line of job, one line per page to exercise paging.
func all(t *testing.T, s *Store, job int64) []Line {
	t.Helper()
	var out []Line
	for from := int64(1); ; {
		page, next, err := s.Lines(job, Page{From: from, MaxLines: 2, MaxBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		from = next.Line
	}
}

func text(lines []Line) string {
	var b strings.Builder
	for _, l := range lines {
		b.Write(l.Text)
	}
	return b.String()
}

// check verifies numbering, offsets and the tail against the lines.
func check(t *testing.T, lines []Line, tail Tail) {
	t.Helper()
	var off int64
	for i, l := range lines {
		if l.Number != int64(i+1) || l.Offset != off {
			t.Fatalf("line %d: number %d offset %d, want %d %d", i, l.Number, l.Offset, i+1, off)
		}
		off += int64(len(l.Text))
	}
	if tail.Bytes != off || tail.Lines != int64(len(lines)) {
		t.Fatalf("tail %+v, lines hold %d bytes in %d lines", tail, off, len(lines))
	}
}

func TestAppendPartialLinesAndStreams(t *testing.T) {
	s := newStore(t)
	w := s.Writer()
	var tail Tail
	w.Append(7, &tail, Stdout, []byte("hello "))
	w.Append(7, &tail, Stdout, []byte("world\nsecond"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if tail.Open != int64(len("second")) {
		t.Fatalf("open line length %d", tail.Open)
	}
	w.Append(7, &tail, Stderr, []byte("oops\n")) // ends stdout's open line where it is
	w.Append(7, &tail, Stdout, []byte("third"))
	w.EndLine(7, &tail)
	w.Append(7, &tail, Farm, []byte("[croft] exit code 3\n"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	lines := all(t, s, 7)
	check(t, lines, tail)
	want := []struct {
		st   Stream
		text string
	}{{Stdout, "hello world\n"}, {Stdout, "second"}, {Stderr, "oops\n"}, {Stdout, "third\n"}, {Farm, "[croft] exit code 3\n"}}
	if len(lines) != len(want) {
		t.Fatalf("%d lines: %q", len(lines), text(lines))
	}
	for i, l := range lines {
		if l.Stream != want[i].st || string(l.Text) != want[i].text {
			t.Errorf("line %d: %v %q, want %v %q", i+1, l.Stream, l.Text, want[i].st, want[i].text)
		}
	}
	if tail.Open != 0 {
		t.Fatalf("open %d after a farm line", tail.Open)
	}
}

func TestLongLinesAreSplit(t *testing.T) {
	s := newStore(t)
	w := s.Writer()
	var tail Tail
	long := bytes.Repeat([]byte("x"), 2*MaxLine+10)
	w.Append(1, &tail, Stdout, long[:100])
	w.Append(1, &tail, Stdout, long[100:])
	w.Append(1, &tail, Stdout, []byte("\n"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	lines := all(t, s, 1)
	check(t, lines, tail)
	if len(lines) != 3 || len(lines[0].Text) != MaxLine || len(lines[1].Text) != MaxLine || string(lines[2].Text) != "xxxxxxxxxx\n" {
		t.Fatalf("%d lines, sizes %d", len(lines), len(lines[0].Text))
	}
}

func TestRangesFilterAndOffsets(t *testing.T) {
	s := newStore(t)
	w := s.Writer()
	var tail Tail
	for i := 0; i < 100; i++ {
		st := Stdout
		if i%3 == 0 {
			st = Stderr
		}
		w.Append(5, &tail, st, []byte(strings.Repeat("a", i)+"\n"))
	}
	w.Append(6, new(Tail), Stdout, []byte("other job\n"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	lines := all(t, s, 5)
	check(t, lines, tail)

	page, next, err := s.Lines(5, Page{From: 10, MaxLines: 5, MaxBytes: 1 << 20})
	if err != nil || len(page) != 5 || page[0].Number != 10 || next.Line != 15 || next.Offset != lines[14].Offset {
		t.Fatalf("range: %d lines from %v, next %d, %v", len(page), page, next, err)
	}
	page, _, _ = s.Lines(5, Page{From: 1, MaxLines: 10, MaxBytes: 1 << 20, Keep: func(st Stream) bool { return st == Stderr }})
	for _, l := range page {
		if l.Stream != Stderr || (l.Number-1)%3 != 0 {
			t.Fatalf("filter kept line %d (%v)", l.Number, l.Stream)
		}
	}
	if len(page) != 10 {
		t.Fatalf("filter: %d lines", len(page))
	}
	page, _, _ = s.Lines(5, Page{From: 1, MaxLines: 100, MaxBytes: 50})
	if len(page) == 0 || len(page) == 100 {
		t.Fatalf("byte bound: %d lines", len(page))
	}
	page, next, _ = s.Lines(5, Page{From: 1, Last: 3, MaxLines: 100, MaxBytes: 1 << 20})
	if len(page) != 3 || next.Line != 4 {
		t.Fatalf("line bound: %d lines, next %d", len(page), next.Line)
	}
	page, next, _ = s.Lines(5, Page{From: 101, MaxLines: 100, MaxBytes: 1 << 20})
	if len(page) != 0 || next != (Pos{101, tail.Bytes}) {
		t.Fatalf("at the end: %d lines, next %+v", len(page), next)
	}

	for _, l := range lines {
		for _, off := range []int64{l.Offset, l.Offset + int64(len(l.Text)) - 1} {
			n, err := s.LineAt(5, off, tail.Lines)
			if err != nil || n != l.Number {
				t.Fatalf("LineAt(%d) = %d, %v; want %d", off, n, err, l.Number)
			}
		}
	}
	if n, _ := s.LineAt(5, tail.Bytes, tail.Lines); n != tail.Lines+1 {
		t.Fatalf("LineAt(end) = %d", n)
	}
}

func TestDeleteAndEach(t *testing.T) {
	s := newStore(t)
	w := s.Writer()
	for job := int64(1); job <= 3; job++ {
		var tail Tail
		w.Append(job, &tail, Stdout, []byte("a\nb\n"))
	}
	w.Delete(2)
	w.Delete(42) // no lines: nothing to do
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := all(t, s, 2); len(got) != 0 {
		t.Fatalf("deleted job has %d lines", len(got))
	}
	var seen []int64
	err := s.Each(func(job int64, l Line) error {
		seen = append(seen, job*10+l.Number)
		return nil
	})
	if err != nil || len(seen) != 4 || seen[0] != 11 || seen[3] != 32 {
		t.Fatalf("Each saw %v, %v", seen, err)
	}
}

func TestCreateStartsFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "joblog.db")
	s, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := s.Writer()
	w.Append(1, new(Tail), Stdout, []byte("old run\n"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Close(); err != nil { // a crash: the file stays
		t.Fatal(err)
	}
	s, err = Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := all(t, s, 1); len(got) != 0 {
		t.Fatalf("a new store holds %q", text(got))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left the file: %v", err)
	}
}

func TestDiskErrorMarksLostAndKeepsCounting(t *testing.T) {
	s := newStore(t)
	w := s.Writer()
	var tail Tail
	w.Append(1, &tail, Stdout, []byte("kept\n"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	s.db.Close() // every later write fails
	w.Append(1, &tail, Stdout, []byte("lost\n"))
	if err := w.Commit(); !errors.Is(err, ErrLost) {
		t.Fatalf("commit after a failure: %v", err)
	}
	if tail.Lines != 2 || tail.Bytes != 10 {
		t.Fatalf("the tail must advance as on other replicas: %+v", tail)
	}
	if _, _, err := s.Lines(1, Page{From: 1, MaxLines: 10, MaxBytes: 100}); !errors.Is(err, ErrLost) {
		t.Fatalf("read of a lost store: %v", err)
	}
}

func TestParseStream(t *testing.T) {
	for st := Stream(0); st < NumStreams; st++ {
		if got, ok := ParseStream(st.String()); !ok || got != st {
			t.Fatalf("%v does not round-trip", st)
		}
	}
	if _, ok := ParseStream("stdin"); ok {
		t.Fatal("stdin parsed")
	}
}
