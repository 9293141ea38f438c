package farmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
)

// StreamMeter is an http.ResponseWriter that keeps nothing of the body:
// it checks, as the bytes come, that they make a JSON array (counting its
// items), counts the writes, and samples the live heap (after a
// collection) as the reply grows. A test tells by it a reply streamed in
// bounded memory from one built whole before it is sent: the heap grows
// by the reply's size in the second case, by a page in the first.
//
// Heap samples are taken after runtime.GC, so they measure what is live,
// not what was allocated: they do not depend on timing or on the
// collector's pace, only on what the handler holds at once.
type StreamMeter struct {
	// Code is the status written (200 if only the body was).
	Code int
	// Bytes and Writes count the body and the Write calls; MaxWrite is
	// the largest one.
	Bytes, MaxWrite int64
	Writes          int
	// Base is the live heap when the meter was made; Peak the highest
	// sampled while the reply was written.
	Base, Peak uint64

	header    http.Header
	every     int64 // sample the heap every this many bytes
	next      int64
	pw        *io.PipeWriter
	done      chan struct{} // closed when decode has returned
	items     int           // set by decode, read after done
	decodeErr error
	closeOnce sync.Once
}

// NewStreamMeter returns a meter that samples the live heap every
// sampleEvery bytes of body (and at the first write). Call Close when the
// handler returned.
func NewStreamMeter(sampleEvery int64) *StreamMeter {
	pr, pw := io.Pipe()
	m := &StreamMeter{header: http.Header{}, every: sampleEvery, pw: pw, done: make(chan struct{})}
	go m.decode(pr)
	m.Base = liveHeap()
	m.Peak = m.Base
	return m
}

// decode reads the body as one JSON array, an item at a time.
func (m *StreamMeter) decode(r *io.PipeReader) {
	defer close(m.done)
	dec := json.NewDecoder(r)
	err := func() error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); !ok || d != '[' {
			return fmt.Errorf("the reply starts with %v, not an array", tok)
		}
		for dec.More() {
			var item json.RawMessage
			if err := dec.Decode(&item); err != nil {
				return err
			}
			m.items++
		}
		if tok, err = dec.Token(); err != nil {
			return err
		}
		if _, err := dec.Token(); err != io.EOF {
			return fmt.Errorf("bytes after the array (%v)", err)
		}
		return nil
	}()
	if err != nil {
		_, _ = io.Copy(io.Discard, r) // never block the handler
	}
	m.decodeErr = err
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Header returns the reply's header.
func (m *StreamMeter) Header() http.Header { return m.header }

// WriteHeader records the status.
func (m *StreamMeter) WriteHeader(code int) {
	if m.Code == 0 {
		m.Code = code
	}
}

// Write counts p, hands it to the decoder and samples the heap when due.
func (m *StreamMeter) Write(p []byte) (int, error) {
	m.WriteHeader(http.StatusOK)
	if m.Bytes >= m.next {
		if h := liveHeap(); h > m.Peak {
			m.Peak = h
		}
		m.next = m.Bytes + m.every
	}
	m.Bytes += int64(len(p))
	m.Writes++
	m.MaxWrite = max(m.MaxWrite, int64(len(p)))
	return m.pw.Write(p)
}

// Close ends the body and returns how many items the array held, or why
// the body was not one JSON array.
func (m *StreamMeter) Close() (items int, err error) {
	m.closeOnce.Do(func() { _ = m.pw.Close() })
	<-m.done
	if h := liveHeap(); h > m.Peak {
		m.Peak = h
	}
	return m.items, m.decodeErr
}

// Growth is how much the live heap grew at most while the reply was
// written (0 if it never grew).
func (m *StreamMeter) Growth() uint64 {
	if m.Peak < m.Base {
		return 0
	}
	return m.Peak - m.Base
}
