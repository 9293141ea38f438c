// Package joblog keeps each job's output on a coordinator's disk as typed,
// numbered lines: the replicated state holds only a few counters per job
// (a Tail), the text lives in a bbolt file that the FSM writes while it
// applies entries. The file is a cache of applied state: it is created
// fresh at every start and rebuilt from the snapshot and the Raft log.
// See DESIGN.md.
package joblog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stream says who wrote a line.
type Stream uint8

// The streams. Their numbers are stored on disk and in snapshots: append
// only.
const (
	Stdout Stream = 0 // the job's standard output (and untyped output)
	Stderr Stream = 1 // the job's standard error
	Farm   Stream = 2 // the farm's own lines: tries, exit codes, timeouts
	// NumStreams is the number of streams, for filters indexed by stream.
	NumStreams = 3
)

var streamNames = [NumStreams]string{"stdout", "stderr", "farm"}

// String returns the stream's name: stdout, stderr or farm.
func (s Stream) String() string {
	if int(s) < len(streamNames) {
		return streamNames[s]
	}
	return fmt.Sprintf("stream(%d)", uint8(s))
}

// ParseStream reads a stream's name.
func ParseStream(name string) (Stream, bool) {
	for i, n := range streamNames {
		if n == name {
			return Stream(i), true
		}
	}
	return 0, false
}

// MaxLine is the longest line kept: longer output is split into lines of
// this size (none of which ends in a newline but the last; a farm line
// may end a full line with one more byte, its newline).
const MaxLine = 64 << 10

// flushBytes bounds the text one write transaction holds before it is
// committed: bbolt keeps a transaction's dirty pages in memory.
const flushBytes = 32 << 20

// ErrLost means this coordinator's copy of the logs missed writes (a disk
// error, such as a full disk) since it was created: lines are missing.
// The replicated counters are right; the next restart rebuilds the file.
var ErrLost = errors.New("job logs incomplete on this coordinator")

// Tail is what the replicated state keeps per job to append without reading
// the log back: its size, its line count and its open (unfinished) last
// line. Appends change it alike on every replica, whatever the disk does.
type Tail struct {
	Bytes      int64  // bytes of all lines
	Lines      int64  // lines, the open one included
	Open       int64  // length of the open last line; 0 once it ended
	OpenStream Stream // the open line's stream
}

// Line is one line of a job's output.
type Line struct {
	Number int64 // 1-based, in the job's order
	Stream Stream
	Offset int64 // byte offset of the line in the job's whole text
	// Text is the line's bytes, its newline included. A line without one
	// was split (MaxLine), cut by another stream's output, or is still
	// open.
	Text []byte
}

// Store is one coordinator's file of job logs.
type Store struct {
	db   *bolt.DB
	path string
	lost atomic.Pointer[error]
}

var bucketJobs = []byte("jobs")

// Create makes a new, empty store at path, replacing any file there: the
// store is rebuilt from Raft at every start, so an old file is stale.
// Writes are not synced (NoSync): a crash loses nothing that Raft does not
// replay.
func Create(path string) (*Store, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("joblog: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        5 * time.Second, // a file still locked is an error, not a hang
		NoSync:         true,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return nil, fmt.Errorf("joblog: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket(bucketJobs)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("joblog: %w", err)
	}
	return &Store{db: db, path: path}, nil
}

// Path returns the store's file.
func (s *Store) Path() string { return s.path }

// Size returns the size in bytes of the store's file (0 if it cannot be
// read): the job log text this coordinator holds on disk, with bolt's
// free pages.
func (s *Store) Size() int64 {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Close closes the store and removes its file.
func (s *Store) Close() error {
	err := s.db.Close()
	if rerr := os.Remove(s.path); err == nil && rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = rerr
	}
	return err
}

// Err returns ErrLost (wrapping the first disk error) once a write failed.
func (s *Store) Err() error {
	if p := s.lost.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Store) fail(err error) {
	e := fmt.Errorf("%w: %v", ErrLost, err)
	s.lost.CompareAndSwap(nil, &e)
}

func jobKey(id int64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(id))
	return k[:]
}

func lineKey(n int64) []byte { return jobKey(n) }

// encodeLine is a line's stored value: stream, offset, text.
func encodeLine(st Stream, off int64, text []byte) []byte {
	v := make([]byte, 1+binary.MaxVarintLen64, 1+binary.MaxVarintLen64+len(text))
	v[0] = byte(st)
	n := binary.PutUvarint(v[1:], uint64(off))
	return append(v[:1+n], text...)
}

func decodeLine(num int64, v []byte) (Line, bool) {
	if len(v) < 2 {
		return Line{}, false
	}
	off, n := binary.Uvarint(v[1:])
	if n <= 0 {
		return Line{}, false
	}
	return Line{Number: num, Stream: Stream(v[0]), Offset: int64(off), Text: v[1+n:]}, true
}

// Writer groups writes into one bbolt transaction, begun at the first
// write and ended by Commit: the FSM uses one per applied batch of
// entries. Its methods update the Tail they are given exactly as on every
// other replica; a disk error only marks the store lost (see Err), so the
// replicated state never depends on this disk. A Writer is not safe for
// concurrent use.
type Writer struct {
	s       *Store
	tx      *bolt.Tx
	pending int
}

// Writer returns a writer on the store.
func (s *Store) Writer() *Writer { return &Writer{s: s} }

func (w *Writer) begin() bool {
	if w.tx != nil {
		return true
	}
	if w.s.Err() != nil {
		return false // lines are missing anyway until the rebuild
	}
	tx, err := w.s.db.Begin(true)
	if err != nil {
		w.s.fail(err)
		return false
	}
	w.tx = tx
	return true
}

// abort rolls the transaction back after a failed write.
func (w *Writer) abort(err error) {
	w.s.fail(err)
	if w.tx != nil {
		_ = w.tx.Rollback()
		w.tx = nil
	}
	w.pending = 0
}

// Commit ends the current transaction, if any. The error is also kept in
// the store (Err).
func (w *Writer) Commit() error {
	if w.tx == nil {
		return w.s.Err()
	}
	err := w.tx.Commit()
	w.tx, w.pending = nil, 0
	if err != nil {
		w.s.fail(err)
	}
	return w.s.Err()
}

// jobBucket returns job's bucket, creating it.
func (w *Writer) jobBucket(job int64) *bolt.Bucket {
	b, err := w.tx.Bucket(bucketJobs).CreateBucketIfNotExists(jobKey(job))
	if err != nil {
		w.abort(err)
		return nil
	}
	return b
}

// put stores line n of job with the given header and text.
func (w *Writer) put(job, n int64, st Stream, off int64, text []byte) {
	if !w.begin() {
		return
	}
	b := w.jobBucket(job)
	if b == nil {
		return
	}
	b.FillPercent = 0.9 // lines are appended in order
	if err := b.Put(lineKey(n), encodeLine(st, off, text)); err != nil {
		w.abort(err)
		return
	}
	w.pending += len(text)
	if w.pending >= flushBytes {
		_ = w.Commit()
	}
}

// extend appends more to open line n, of stream st at offset off.
func (w *Writer) extend(job, n int64, st Stream, off int64, more []byte) {
	if !w.begin() {
		return
	}
	b := w.jobBucket(job)
	if b == nil {
		return
	}
	var text []byte
	if l, ok := decodeLine(n, b.Get(lineKey(n))); ok {
		text = l.Text
	}
	w.put(job, n, st, off, append(text[:len(text):len(text)], more...))
}

// Append adds output of stream st to job's log. A chunk continues the
// job's open line if that line is of the same stream; output of another
// stream ends it where it is. Lines end at '\n' or after MaxLine bytes.
func (w *Writer) Append(job int64, t *Tail, st Stream, text []byte) {
	if t.Open > 0 && t.OpenStream != st {
		t.Open = 0
	}
	for len(text) > 0 {
		if t.Open >= MaxLine {
			// A full line stays open until more output comes, so that
			// EndLine can still end it with its newline.
			t.Open = 0
		}
		room := MaxLine - t.Open
		n := int64(len(text))
		if n > room {
			n = room
		}
		ended := false
		if i := bytes.IndexByte(text[:n], '\n'); i >= 0 {
			n, ended = int64(i+1), true
		}
		if t.Open > 0 {
			w.extend(job, t.Lines, st, t.Bytes-t.Open, text[:n])
			t.Open += n
		} else {
			t.Lines++
			w.put(job, t.Lines, st, t.Bytes, text[:n])
			t.Open, t.OpenStream = n, st
		}
		if ended {
			t.Open = 0
		}
		t.Bytes += n
		text = text[n:]
	}
}

// EndLine ends job's open line, if any, with a newline.
func (w *Writer) EndLine(job int64, t *Tail) {
	if t.Open > 0 {
		w.extend(job, t.Lines, t.OpenStream, t.Bytes-t.Open, []byte{'\n'})
		t.Bytes++
		t.Open = 0
	}
}

// Put stores a line as it is, for a restore: lines arrive in order.
func (w *Writer) Put(job int64, l Line) {
	w.put(job, l.Number, l.Stream, l.Offset, l.Text)
}

// Delete removes a job's lines.
func (w *Writer) Delete(job int64) {
	if !w.begin() {
		return
	}
	err := w.tx.Bucket(bucketJobs).DeleteBucket(jobKey(job))
	if err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
		w.abort(err)
	}
}

// Page bounds one read of lines.
type Page struct {
	From     int64 // first line number to look at (1-based)
	Last     int64 // last line number to look at; < 1: no bound
	MaxLines int   // most lines returned
	MaxBytes int   // most text returned (at least one line is)
	// Keep, when not nil, filters lines by stream; lines looked at but
	// not kept still count against MaxLines*scanFactor.
	Keep func(Stream) bool
}

// Pos is a position in a job's log: a line number and its byte offset.
type Pos struct {
	Line   int64
	Offset int64
}

// scanFactor bounds the lines a filtered read looks at, relative to the
// lines it may return, so one read transaction stays short.
const scanFactor = 16

// Lines reads a page of job's lines in one short read transaction (the
// text is copied out: a long reader would block the file's growth). It
// returns the lines and the position after the last line looked at.
func (s *Store) Lines(job int64, p Page) ([]Line, Pos, error) {
	from := max(p.From, 1)
	next := Pos{Line: from}
	if err := s.Err(); err != nil {
		return nil, next, err
	}
	var out []Line
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs).Bucket(jobKey(job))
		if b == nil {
			return nil
		}
		if from > 1 {
			if l, ok := decodeLine(from-1, b.Get(lineKey(from-1))); ok {
				next.Offset = l.Offset + int64(len(l.Text))
			}
		}
		c := b.Cursor()
		size, scanned := 0, 0
		for k, v := c.Seek(lineKey(from)); k != nil; k, v = c.Next() {
			n := int64(binary.BigEndian.Uint64(k))
			l, ok := decodeLine(n, v)
			if !ok {
				continue
			}
			if (p.Last >= 1 && n > p.Last) || len(out) >= p.MaxLines || scanned >= p.MaxLines*scanFactor ||
				(len(out) > 0 && size+len(l.Text) > p.MaxBytes) {
				break
			}
			scanned++
			next = Pos{Line: n + 1, Offset: l.Offset + int64(len(l.Text))}
			if p.Keep != nil && !p.Keep(l.Stream) {
				continue
			}
			l.Text = bytes.Clone(l.Text)
			size += len(l.Text)
			out = append(out, l)
		}
		return nil
	})
	return out, next, err
}

// LineAt returns the number of job's line that holds byte offset off,
// given that the job has lines lines; lines+1 when off is past the end.
func (s *Store) LineAt(job, off, lines int64) (int64, error) {
	if err := s.Err(); err != nil {
		return 0, err
	}
	if lines <= 0 || off < 0 {
		return max(lines, 0) + 1, nil
	}
	lo, hi := int64(1), lines
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketJobs).Bucket(jobKey(job))
		get := func(n int64) (Line, error) {
			var v []byte
			if b != nil {
				v = b.Get(lineKey(n))
			}
			l, ok := decodeLine(n, v)
			if !ok {
				return l, fmt.Errorf("%w: line %d of job %d is missing", ErrLost, n, job)
			}
			return l, nil
		}
		// Offsets grow with line numbers: find the last line that starts
		// at or before off.
		for lo < hi {
			mid := lo + (hi-lo+1)/2
			l, err := get(mid)
			if err != nil {
				return err
			}
			if l.Offset <= off {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		l, err := get(lo)
		if err == nil && off >= l.Offset+int64(len(l.Text)) {
			lo++ // past the last line
		}
		return err
	})
	return lo, err
}

// Each calls fn for every line of every job, in job then line order,
// within one read transaction: the caller must keep writers out
// meanwhile (the FSM's snapshot holds the state's lock). l.Text is valid
// only during the call.
func (s *Store) Each(fn func(job int64, l Line) error) error {
	if err := s.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		return jobs.ForEach(func(k, _ []byte) error {
			job := int64(binary.BigEndian.Uint64(k))
			b := jobs.Bucket(k)
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, v []byte) error {
				l, ok := decodeLine(int64(binary.BigEndian.Uint64(k)), v)
				if !ok {
					return fmt.Errorf("joblog: job %d line %x is corrupt", job, k)
				}
				return fn(job, l)
			})
		})
	})
}
