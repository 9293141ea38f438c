package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/croftfarm/croft/farm"
)

// The streams of an attempt's output, each in a file of its slot
// (streamFiles) with its own byte offsets: the coordinator stores them as
// typed lines.
const (
	streamOut  = 0 // the job's standard output: the report's Log
	streamErr  = 1 // its standard error: the report's Stderr
	numStreams = 2
)

// streamFiles names each stream's file in the slot's directory. Stdout
// keeps the name of the file that held both streams before they were
// separated: a supervisor of that time, re-adopted after an upgrade,
// writes both there, and its attempt has no stderr file.
var streamFiles = [numStreams]string{outputName, stderrName}

// chunk is a piece of an attempt's output, sent in one report: the next
// bytes of each stream (either may be empty).
type chunk struct {
	// offset is the byte offset of each stream's data within that stream.
	// It never changes for a given byte, so a retried report is recognised
	// by the coordinator and not stored twice.
	offset [numStreams]int64
	// data is raw output bytes, per stream.
	data [numStreams][]byte
	// progress is the last progress (0..1) parsed from the output up to
	// this chunk, nil while none was found (see spool.progress).
	progress *float64
}

// end returns the offset after the chunk's bytes of stream i.
func (c chunk) end(i int) int64 { return c.offset[i] + int64(len(c.data[i])) }

// size returns the chunk's bytes, both streams together.
func (c chunk) size() int { return len(c.data[streamOut]) + len(c.data[streamErr]) }

// spool reads an attempt's output files for the reporter and cuts them
// into chunks: ChunkSize bytes (both streams together) as soon as they are
// there, and what there is once per flush interval (a report per line
// would cost a Raft entry per line). Output waits on disk, never in
// memory: the job writes to the files and never waits for the coordinator.
type spool struct {
	streams  [numStreams]spoolStream
	size     int
	interval time.Duration
	done     <-chan struct{}          // closed when the job ended
	end      func() [numStreams]int64 // the output sizes once done; -1: the whole file
	last     time.Time                // when the last short chunk was cut
}

// spoolStream is one stream of a spool.
type spoolStream struct {
	f        *os.File // nil: no file (an attempt of a supervisor that mixed the streams)
	off      int64    // the next byte to send
	progress *progressParser
}

// openSpool opens the output of the attempt in slot directory dir, each
// stream to be read from its offset in from on. Progress (parsed with a
// copy of progress per stream; nil: disabled) is parsed from the start of
// the output, so an agent restarted mid-attempt finds the value the first
// one had.
func openSpool(dir string, from [numStreams]int64, size int, interval time.Duration, progress *progressParser, done <-chan struct{}, end func() [numStreams]int64) (*spool, error) {
	s := &spool{size: size, interval: interval, done: done, end: end}
	for i, name := range streamFiles {
		st := &s.streams[i]
		st.off, st.progress = from[i], progress.fresh()
		f, err := os.Open(filepath.Join(dir, name))
		if i == streamErr && errors.Is(err, fs.ErrNotExist) {
			continue // an older supervisor's attempt: all of it is in the output
		}
		if err != nil {
			s.close()
			return nil, err
		}
		st.f = f
		if st.progress != nil && from[i] > 0 {
			if _, err := io.Copy(progressWriter{st.progress}, io.NewSectionReader(f, 0, from[i])); err != nil {
				s.close()
				return nil, err
			}
		}
	}
	return s, nil
}

func (s *spool) close() {
	for _, st := range s.streams {
		if st.f != nil {
			st.f.Close()
		}
	}
}

// next returns the next chunk, waiting for one; io.EOF once the job ended
// and its output was all read.
func (s *spool) next(ctx context.Context) (chunk, error) {
	for {
		ended := isClosed(s.done)
		ends := [numStreams]int64{-1, -1}
		if ended {
			ends = s.end()
		}
		var avail [numStreams]int64
		var total int64
		for i := range s.streams {
			n, err := s.streams[i].avail(ends[i])
			if err != nil {
				return chunk{}, err
			}
			avail[i], total = n, total+n
		}
		if total >= int64(s.size) || (total > 0 && (ended || time.Since(s.last) >= s.interval)) {
			return s.read(avail)
		}
		if ended {
			for _, st := range s.streams {
				st.progress.end()
			}
			return chunk{}, io.EOF
		}
		wait := s.interval // no output: look again then
		if total > 0 {
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

// avail returns how many bytes of the stream are there to send, up to
// end (the file's size when the job ended; -1: the whole file).
func (st *spoolStream) avail(end int64) (int64, error) {
	if st.f == nil {
		return 0, nil
	}
	fi, err := st.f.Stat()
	if err != nil {
		return 0, err
	}
	limit := fi.Size()
	if end >= 0 {
		limit = min(limit, end) // later bytes come from a process that left the group
	}
	return max(limit-st.off, 0), nil
}

// read cuts the next chunk from avail bytes per stream: at most size in
// all, each stream getting at least half of it when both have that much,
// so that neither waits behind the other.
func (s *spool) read(avail [numStreams]int64) (chunk, error) {
	size := int64(s.size)
	n := [numStreams]int64{}
	n[streamErr] = min(avail[streamErr], max(size/2, size-avail[streamOut]))
	n[streamOut] = min(avail[streamOut], size-n[streamErr])
	var ch chunk
	for i := range s.streams {
		st := &s.streams[i]
		ch.offset[i] = st.off
		if n[i] == 0 {
			continue
		}
		b := make([]byte, n[i])
		if _, err := st.f.ReadAt(b, st.off); err != nil {
			return chunk{}, err
		}
		st.progress.feed(b)
		ch.data[i] = b
		st.off += n[i]
	}
	ch.progress = s.progress()
	if ch.size() < s.size {
		s.last = time.Now()
	}
	return ch, nil
}

// progress returns the job's progress: the last value found on stdout,
// or, when stdout has none, on stderr. Renderers that report progress on
// stdout keep their value whatever they print on stderr, and those that
// report it on stderr only (as ffmpeg does) still have one. Each stream is
// parsed from its own start, so a restarted agent finds the same value.
func (s *spool) progress() *float64 {
	if v := s.streams[streamOut].progress.latest(); v != nil {
		return v
	}
	return s.streams[streamErr].progress.latest()
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

// fresh returns a parser of the same pattern with nothing parsed yet
// (nil for a nil parser).
func (p *progressParser) fresh() *progressParser {
	if p == nil {
		return nil
	}
	return &progressParser{re: p.re, scale: p.scale}
}

// latest returns the last value found, nil if none.
func (p *progressParser) latest() *float64 {
	if p == nil || !p.found {
		return nil
	}
	v := p.value
	return &v
}
