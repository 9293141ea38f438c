package agent

import (
	"bytes"
	"context"
	"io"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/croftfarm/croft/raftstore"
)

// Chunk is a piece of an attempt's output, sent in one report.
type Chunk struct {
	// Offset is the byte offset of Data within the attempt's output. It
	// never changes for a given byte, so a retried report is recognised by
	// the coordinator and not stored twice.
	Offset int64
	// Data is raw output bytes.
	Data []byte
	// Progress is the last progress (0..1) parsed from the output up to
	// this chunk, nil while none was found.
	Progress *float64
}

// chunker collects an attempt's output (stdout and stderr write to it) and
// cuts it into chunks: one when ChunkSize bytes accumulate, and whatever
// is there once the oldest byte waited the flush interval. A report per
// line would cost a Raft entry per line.
//
// Writers never block on the reader: what the reader has not taken yet
// stays in memory, so a coordinator outage does not stall the job.
type chunker struct {
	size     int
	interval time.Duration
	progress *progressParser // nil: progress disabled

	mu      sync.Mutex
	buf     []byte    // not cut yet
	since   time.Time // when buf's oldest byte arrived
	offset  int64     // offset of buf[0] in the output
	pending []Chunk   // cut, not taken yet
	closed  bool
	wake    chan struct{} // signalled when pending or buf grows, or on close
}

func newChunker(size int, interval time.Duration, progress *progressParser) *chunker {
	return &chunker{size: size, interval: interval, progress: progress, wake: make(chan struct{}, 1)}
}

// Write adds output. It never blocks for long and never fails before Close.
func (c *chunker) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, os.ErrClosed
	}
	c.add(p)
	return len(p), nil
}

// Close ends the output: the rest is cut and Next returns io.EOF after it.
func (c *chunker) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.progress.end()
	c.closed = true
	c.signal()
}

func (c *chunker) add(p []byte) {
	if len(p) == 0 {
		return
	}
	c.progress.feed(p)
	if len(c.buf) == 0 {
		c.since = time.Now()
	}
	c.buf = append(c.buf, p...)
	for len(c.buf) >= c.size {
		c.cut(c.size)
	}
	c.signal()
}

// cut moves the first n bytes of buf to a pending chunk.
func (c *chunker) cut(n int) {
	c.pending = append(c.pending, Chunk{Offset: c.offset, Data: bytes.Clone(c.buf[:n]), Progress: c.progress.latest()})
	c.offset += int64(n)
	c.buf = c.buf[:copy(c.buf, c.buf[n:])]
	c.since = time.Now()
}

// lastProgress returns the last progress found, nil if none.
func (c *chunker) lastProgress() *float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.progress.latest()
}

func (c *chunker) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Next returns the next chunk, waiting for one; io.EOF once the output is
// closed and fully taken. It is meant for a single reader.
func (c *chunker) Next(ctx context.Context) (Chunk, error) {
	for {
		c.mu.Lock()
		if len(c.pending) == 0 && len(c.buf) > 0 && (c.closed || time.Since(c.since) >= c.interval) {
			c.cut(len(c.buf))
		}
		if len(c.pending) > 0 {
			ch := c.pending[0]
			c.pending[0] = Chunk{}
			c.pending = c.pending[1:]
			c.mu.Unlock()
			return ch, nil
		}
		if c.closed {
			c.mu.Unlock()
			return Chunk{}, io.EOF
		}
		wait := time.Duration(-1) // nothing to flush: wait for a write
		if len(c.buf) > 0 {
			wait = c.interval - time.Since(c.since)
		}
		c.mu.Unlock()
		if err := c.sleep(ctx, wait); err != nil {
			return Chunk{}, err
		}
	}
}

// sleep waits for a signal, for d (if d >= 0), or for ctx to end.
func (c *chunker) sleep(ctx context.Context, d time.Duration) error {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-c.wake:
	case <-timeout:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// maxProgressLine bounds the memory kept for one line; progress lines are
// short, and a longer line is matched on its first bytes only.
const maxProgressLine = 4 << 10

// progressParser finds the last progress value in an attempt's output. A
// nil parser (progress disabled) accepts every call and finds nothing.
type progressParser struct {
	re    *regexp.Regexp
	scale float64
	line  []byte
	value float64
	found bool
}

// newProgressParser compiles a Coalition progress pattern (empty means
// PROGRESS:%percent) with the coordinator's own rule.
func newProgressParser(pattern string) (*progressParser, error) {
	re, scale, err := raftstore.ProgressRegexp(pattern)
	if err != nil {
		return nil, err
	}
	return &progressParser{re: re, scale: scale}, nil
}

// feed parses complete lines. Both \n and \r end a line: renderers redraw
// their progress line with \r.
func (p *progressParser) feed(data []byte) {
	if p == nil {
		return
	}
	for len(data) > 0 {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			p.appendLine(data)
			return
		}
		p.appendLine(data[:i])
		p.parseLine()
		data = data[i+1:]
	}
}

func (p *progressParser) appendLine(b []byte) {
	if room := maxProgressLine - len(p.line); room > 0 {
		p.line = append(p.line, b[:min(len(b), room)]...)
	}
}

// end parses a last line that has no newline.
func (p *progressParser) end() {
	if p != nil {
		p.parseLine()
	}
}

func (p *progressParser) parseLine() {
	defer func() { p.line = p.line[:0] }()
	m := p.re.FindAllSubmatch(p.line, -1)
	if len(m) == 0 {
		return
	}
	v, err := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	if err != nil {
		return
	}
	p.value, p.found = min(max(v*p.scale, 0), 1), true
}

// latest returns the last value found, nil if none.
func (p *progressParser) latest() *float64 {
	if p == nil || !p.found {
		return nil
	}
	v := p.value
	return &v
}
