package jsonstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/internal/farmtest"
)

// testContext is a gin context over w for a GET of target.
func testContext(w http.ResponseWriter, target string) *gin.Context {
	gin.SetMode(gin.TestMode)
	c, _ := gin.CreateTestContext(w)
	c.Request = httptest.NewRequest(http.MethodGet, target, nil)
	return c
}

// aborts runs f and reports whether it panicked with http.ErrAbortHandler
// (how a handler tells net/http to cut the connection); another panic is
// passed on.
func aborts(f func()) (aborted bool) {
	defer func() {
		if r := recover(); r != nil {
			if r != http.ErrAbortHandler {
				panic(r)
			}
			aborted = true
		}
	}()
	f()
	return false
}

func TestArrayIsWellFormed(t *testing.T) {
	for _, tc := range []struct {
		items []any
		want  string
	}{
		{nil, `[]`},
		{[]any{1}, `[1]`},
		{[]any{1, "a\"b<", map[string]int{"k": 2}, nil, []int{}}, `[1,"a\"b\u003c",{"k":2},null,[]]`},
	} {
		w := httptest.NewRecorder()
		c := testContext(w, "/x")
		a := Start(c)
		for _, it := range tc.items {
			if err := a.Add(it); err != nil {
				t.Fatal(err)
			}
		}
		if a.Len() != len(tc.items) || a.Err() != nil {
			t.Fatalf("Len %d Err %v, want %d nil", a.Len(), a.Err(), len(tc.items))
		}
		if aborts(func() { a.Close(nil) }) {
			t.Fatal("Close(nil) of a good array aborted")
		}
		if w.Code != http.StatusOK || w.Body.String() != tc.want || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("%d %q %q, want 200 %q JSON", w.Code, w.Body.String(), w.Header().Get("Content-Type"), tc.want)
		}
	}
}

// A failure once the status is sent cuts the connection: the client must
// see a truncated reply, never a well-formed but incomplete array.
func TestArrayAbortsOnFailure(t *testing.T) {
	t.Run("the caller fails", func(t *testing.T) {
		w := httptest.NewRecorder()
		a := Start(testContext(w, "/x"))
		_ = a.Add(1)
		if !aborts(func() { a.Close(errors.New("the store failed")) }) {
			t.Fatal("Close(err) did not abort the connection")
		}
		if strings.HasSuffix(w.Body.String(), "]") {
			t.Fatalf("an abandoned array was closed: %q", w.Body.String())
		}
	})
	t.Run("an item cannot be encoded", func(t *testing.T) {
		w := httptest.NewRecorder()
		a := Start(testContext(w, "/x"))
		_ = a.Add(1)
		err := a.Add(make(chan int))
		var ute *json.UnsupportedTypeError
		if !errors.As(err, &ute) || !errors.Is(a.Err(), err) {
			t.Fatalf("Add(chan): %v (Err %v), want an UnsupportedTypeError", err, a.Err())
		}
		if err2 := a.Add(2); !errors.Is(err2, err) || a.Len() != 1 {
			t.Fatalf("Add after a failure: %v, Len %d; want the first error and nothing added", err2, a.Len())
		}
		if !aborts(func() { a.Close(nil) }) {
			t.Fatal("Close(nil) after a failed Add did not abort")
		}
		if strings.HasSuffix(w.Body.String(), "]") {
			t.Fatalf("an array with a failed item was closed: %q", w.Body.String())
		}
	})
}

// TestArrayStopsWhenTheClientLeaves: once the request's context ends, Add
// fails, so the producer stops instead of rendering rows for nobody.
func TestArrayStopsWhenTheClientLeaves(t *testing.T) {
	w := httptest.NewRecorder()
	c := testContext(w, "/x")
	ctx, cancel := context.WithCancel(context.Background())
	c.Request = c.Request.WithContext(ctx)
	a := Start(c)
	if err := a.Add(1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := a.Add(2); !errors.Is(err, context.Canceled) {
		t.Fatalf("Add after the client left: %v, want context.Canceled", err)
	}
	if err := a.Add(3); !errors.Is(err, context.Canceled) || a.Len() != 2 {
		t.Fatalf("Add again: %v, Len %d", err, a.Len())
	}
	if !aborts(func() { a.Close(nil) }) {
		t.Fatal("Close after the client left did not abort")
	}
}

func TestPagingTake(t *testing.T) {
	type take struct{ in, more bool }
	for _, tc := range []struct {
		p    Paging
		want []take // for rows 0, 1, 2, 3
	}{
		{Paging{Limit: -1}, []take{{true, true}, {true, true}, {true, true}, {true, true}}},
		{Paging{Offset: 2, Limit: -1}, []take{{false, true}, {false, true}, {true, true}, {true, true}}},
		{Paging{Offset: 1, Limit: 2}, []take{{false, true}, {true, true}, {true, false}, {false, false}}},
		{Paging{Limit: 1}, []take{{true, false}, {false, false}, {false, false}, {false, false}}},
		{Paging{Offset: 1, Limit: 0}, []take{{false, true}, {false, false}, {false, false}, {false, false}}},
	} {
		for i, w := range tc.want {
			if in, more := tc.p.Take(int64(i)); in != w.in || more != w.more {
				t.Errorf("%+v.Take(%d) = %v %v, want %v %v", tc.p, i, in, more, w.in, w.more)
			}
		}
	}
}

func TestParsePaging(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  Paging
		bad   bool
	}{
		{"", Paging{Limit: -1}, false},
		{"?offset=&limit=", Paging{Limit: -1}, false},
		{"?offset=5", Paging{Offset: 5, Limit: -1}, false},
		{"?limit=0", Paging{Limit: 0}, false},
		{"?offset=3&limit=7", Paging{Offset: 3, Limit: 7}, false},
		{"?offset=9223372036854775807", Paging{Offset: 1<<63 - 1, Limit: -1}, false},
		{"?limit=-1", Paging{}, true},
		{"?offset=-3", Paging{}, true},
		{"?offset=x", Paging{}, true},
		{"?limit=1.5", Paging{}, true},
		{"?limit=9223372036854775808", Paging{}, true},
	} {
		p, err := ParsePaging(testContext(httptest.NewRecorder(), "/x"+tc.query))
		if tc.bad {
			if !errors.Is(err, apierr.ErrBadInput) {
				t.Errorf("%q: %+v %v, want a 400 error", tc.query, p, err)
			}
			continue
		}
		if err != nil || p != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.query, p, err, tc.want)
		}
	}
}

// pager yields the ints 0..n-1 a page of size at a time, counting the
// pages asked for.
type pager struct {
	n, size, next, calls int
}

func (p *pager) page() ([]int, bool) {
	p.calls++
	var out []int
	for ; p.next < p.n && len(out) < p.size; p.next++ {
		out = append(out, p.next)
	}
	return out, p.next < p.n
}

func TestPagesWindow(t *testing.T) {
	for _, tc := range []struct {
		win   Paging
		want  []int
		pages int // asked for: none past the window
	}{
		{Paging{Limit: -1}, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 4},
		{Paging{Offset: 4, Limit: 2}, []int{4, 5}, 2},
		{Paging{Limit: 3}, []int{0, 1, 2}, 1},
		{Paging{Offset: 8, Limit: 5}, []int{8, 9}, 4},
		{Paging{Offset: 20, Limit: -1}, []int{}, 4},
		{Paging{Limit: 0}, []int{}, 1},
	} {
		w := httptest.NewRecorder()
		p := &pager{n: 10, size: 3}
		Pages(testContext(w, "/x"), tc.win, p.page, func(i *int) any { return *i })
		var got []int
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got == nil {
			t.Fatalf("%+v: body %q: %v", tc.win, w.Body.String(), err)
		}
		if !slices.Equal(got, tc.want) || p.calls != tc.pages {
			t.Errorf("%+v: %v after %d pages, want %v after %d", tc.win, got, p.calls, tc.want, tc.pages)
		}
	}
	// An empty source is an empty array.
	w := httptest.NewRecorder()
	Pages(testContext(w, "/x"), Paging{Limit: -1}, func() ([]int, bool) { return nil, false }, func(i *int) any { return *i })
	if w.Body.String() != "[]" {
		t.Fatalf("empty: %q", w.Body.String())
	}
}

// TestPagesStopsWhenTheClientLeaves: no page is read after the client
// went away, and the reply is cut (not closed as if complete).
func TestPagesStopsWhenTheClientLeaves(t *testing.T) {
	w := httptest.NewRecorder()
	c := testContext(w, "/x")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	p := &pager{n: 1000, size: 10}
	page := func() ([]int, bool) {
		items, more := p.page()
		if p.calls == 2 {
			cancel() // the client leaves while the second page is read
		}
		return items, more
	}
	if !aborts(func() { Pages(c, Paging{Limit: -1}, page, func(i *int) any { return *i }) }) {
		t.Fatal("Pages did not cut the reply of a client that left")
	}
	if p.calls != 2 {
		t.Fatalf("%d pages read, want 2: none after the client left", p.calls)
	}
}

// row is an item of the memory test: about 1 KiB of JSON.
type row struct {
	ID    int    `json:"id"`
	Title string `json:"title"`
	Note  string `json:"note"`
}

// TestPagesStreamsInBoundedMemory streams 10,000 rows (about 10 MiB) from a
// source that makes them a page at a time, as the state's scans do: the
// live heap while the reply is written grows by a small fraction of the
// reply, and the reply reaches the connection in buffer-sized writes as it
// is produced. The same rows marshalled whole, as a handler without
// jsonstream would, are seen by the same meter: the measure can fail.
func TestPagesStreamsInBoundedMemory(t *testing.T) {
	const n, pageSize = 10000, 256
	// Each row owns its strings, as rows copied out of the state do:
	// holding the rows costs as much as holding the reply.
	mk := func(i int) row {
		return row{ID: i, Title: "row " + strings.Repeat("t", i%64), Note: strings.Repeat(string(rune('a'+i%26)), 900)}
	}
	next := 0
	page := func() ([]row, bool) {
		out := make([]row, 0, pageSize)
		for ; next < n && len(out) < pageSize; next++ {
			out = append(out, mk(next))
		}
		return out, next < n
	}

	m := farmtest.NewStreamMeter(1 << 20)
	Pages(testContext(m, "/rows"), Paging{Limit: -1}, page, func(r *row) any { return r })
	items, err := m.Close()
	if err != nil || items != n || m.Code != http.StatusOK {
		t.Fatalf("reply: %d items, status %d, %v; want %d items", items, m.Code, err, n)
	}
	if m.Bytes < 8<<20 {
		t.Fatalf("the reply is %d bytes: too small for the test to mean anything", m.Bytes)
	}
	// Written as produced, a buffer at a time.
	if m.MaxWrite > flushEvery || int64(m.Writes) < m.Bytes/flushEvery {
		t.Fatalf("%d bytes in %d writes (largest %d): want writes of at most %d", m.Bytes, m.Writes, m.MaxWrite, flushEvery)
	}
	// One page of rows and the buffer are live at once: well under 2 MiB;
	// 1/8 of the reply leaves room for a noisy collector.
	if g := m.Growth(); g > uint64(m.Bytes)/8 {
		t.Fatalf("the live heap grew by %d bytes for a reply of %d: the rows or the reply are held, not streamed", g, m.Bytes)
	}
	t.Logf("streamed %d bytes in %d writes; live heap growth %d bytes", m.Bytes, m.Writes, m.Growth())

	// The control: the whole reply built before it is written.
	whole := farmtest.NewStreamMeter(1 << 20)
	c := testContext(whole, "/rows")
	all := make([]row, n)
	for i := range all {
		all[i] = mk(i)
	}
	c.JSON(http.StatusOK, all)
	if items, err := whole.Close(); err != nil || items != n {
		t.Fatalf("control: %d items, %v", items, err)
	}
	if g := whole.Growth(); g < uint64(whole.Bytes)/2 {
		t.Fatalf("the meter saw a growth of %d bytes for a reply of %d built whole: it cannot tell streaming apart", g, whole.Bytes)
	}
}
