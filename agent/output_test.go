package agent

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestChunkerCutsAtSize(t *testing.T) {
	c := newChunker(4, time.Hour, nil)
	c.Write([]byte("abcdefghij"))
	ctx := context.Background()
	for _, want := range []struct {
		off  int64
		data string
	}{{0, "abcd"}, {4, "efgh"}} {
		ch, err := c.Next(ctx)
		if err != nil || ch.Offset != want.off || string(ch.Data) != want.data {
			t.Fatalf("Next = %d %q %v, want %d %q", ch.Offset, ch.Data, err, want.off, want.data)
		}
	}
	// The rest waits for the interval, or for Close.
	short, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Next(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with 2 bytes buffered and an hour to wait = %v, want context.Canceled", err)
	}
	c.Close()
	if ch, err := c.Next(ctx); err != nil || ch.Offset != 8 || string(ch.Data) != "ij" {
		t.Fatalf("Next after Close = %d %q %v", ch.Offset, ch.Data, err)
	}
	if _, err := c.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("Next at the end = %v, want io.EOF", err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
}

func TestChunkerFlushesAfterInterval(t *testing.T) {
	c := newChunker(1<<20, 5*time.Millisecond, nil)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	go func() {
		c.Write([]byte("one\n"))
		c.Write([]byte("two\n"))
	}()
	var got string
	for got != "one\ntwo\n" {
		ch, err := c.Next(ctx) // returns without Close: the interval flushed it
		if err != nil {
			t.Fatalf("Next: %v (got %q so far)", err, got)
		}
		if ch.Offset != int64(len(got)) {
			t.Fatalf("chunk at %d, want %d", ch.Offset, len(got))
		}
		got += string(ch.Data)
	}
}

func TestChunkerCopiesWrites(t *testing.T) {
	c := newChunker(3, time.Hour, nil)
	b := []byte("abc")
	c.Write(b)
	copy(b, "xyz") // exec reuses its read buffer
	c.Close()
	if ch, _ := c.Next(context.Background()); string(ch.Data) != "abc" {
		t.Errorf("chunk = %q, want abc", ch.Data)
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
