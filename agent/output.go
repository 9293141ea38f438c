package agent

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/croftfarm/croft/farm"
)

// chunk is a piece of an attempt's output, sent in one report.
type chunk struct {
	// offset is the byte offset of data within the attempt's output. It
	// never changes for a given byte, so a retried report is recognised by
	// the coordinator and not stored twice.
	offset int64
	// data is raw output bytes.
	data []byte
	// progress is the last progress (0..1) parsed from the output up to
	// this chunk, nil while none was found.
	progress *float64
}

// spool reads an attempt's output file for the reporter and cuts it into
// chunks: ChunkSize bytes as soon as they are there, and what there is
// once per flush interval (a report per line would cost a Raft entry per
// line). Output waits on disk, never in memory: the job writes to the
// file and never waits for the coordinator.
type spool struct {
	f        *os.File
	size     int
	interval time.Duration
	progress *progressParser // nil: progress disabled
	off      int64           // the next byte to send
	done     <-chan struct{} // closed when the job ended
	end      func() int64    // the output size once done; -1: the whole file
	last     time.Time       // when the last short chunk was cut
}

// openSpool opens attempt directory dir's output to be read from offset
// from on. Progress is parsed from the start of the output, so an agent
// restarted mid-attempt finds the value the first one had.
func openSpool(dir string, from int64, size int, interval time.Duration, progress *progressParser, done <-chan struct{}, end func() int64) (*spool, error) {
	f, err := os.Open(filepath.Join(dir, outputName))
	if err != nil {
		return nil, err
	}
	s := &spool{f: f, size: size, interval: interval, progress: progress, off: from, done: done, end: end}
	if progress != nil && from > 0 {
		if _, err := io.Copy(progressWriter{progress}, io.NewSectionReader(f, 0, from)); err != nil {
			f.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *spool) close() { s.f.Close() }

// next returns the next chunk, waiting for one; io.EOF once the job ended
// and its output was all read.
func (s *spool) next(ctx context.Context) (chunk, error) {
	for {
		ended := isClosed(s.done)
		fi, err := s.f.Stat()
		if err != nil {
			return chunk{}, err
		}
		limit := fi.Size()
		if ended {
			if n := s.end(); n >= 0 {
				limit = min(limit, n) // later bytes come from a process that left the group
			}
		}
		avail := limit - s.off
		if avail >= int64(s.size) || (avail > 0 && (ended || time.Since(s.last) >= s.interval)) {
			return s.read(int(min(avail, int64(s.size))))
		}
		if ended {
			s.progress.end()
			return chunk{}, io.EOF
		}
		wait := s.interval // no output: look again then
		if avail > 0 {
			wait -= time.Since(s.last)
		}
		t := time.NewTimer(wait)
		select {
		case <-s.done:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return chunk{}, ctx.Err()
		}
		t.Stop()
	}
}

func (s *spool) read(n int) (chunk, error) {
	b := make([]byte, n)
	if _, err := s.f.ReadAt(b, s.off); err != nil {
		return chunk{}, err
	}
	s.progress.feed(b)
	ch := chunk{offset: s.off, data: b, progress: s.progress.latest()}
	s.off += int64(n)
	if n < s.size {
		s.last = time.Now()
	}
	return ch, nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
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
	re, scale, err := farm.ProgressRegexp(pattern)
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

// progressWriter feeds a parser through io.Copy.
type progressWriter struct{ p *progressParser }

func (w progressWriter) Write(b []byte) (int, error) {
	w.p.feed(b)
	return len(b), nil
}

// latest returns the last value found, nil if none.
func (p *progressParser) latest() *float64 {
	if p == nil || !p.found {
		return nil
	}
	v := p.value
	return &v
}
