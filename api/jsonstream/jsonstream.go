// Package jsonstream writes JSON arrays item by item, so that a reply of a
// million rows costs the memory of one row, not of the whole array.
//
// The status is sent with the first write; an error found later cannot
// change it, so callers check what can fail before they start, and a
// failure mid-stream aborts the connection (the client sees a truncated
// reply, never a well-formed but incomplete one).
package jsonstream

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
)

// flushEvery is how many bytes are buffered before they go to the client.
const flushEvery = 32 << 10

// Array streams a JSON array as the reply of a request.
type Array struct {
	c   *gin.Context
	w   *bufio.Writer
	n   int
	err error
}

// Start sends status 200 and the array's opening bracket.
func Start(c *gin.Context) *Array {
	c.Header("Content-Type", "application/json; charset=utf-8")
	c.Status(http.StatusOK)
	a := &Array{c: c, w: bufio.NewWriterSize(c.Writer, flushEvery)}
	a.err = a.w.WriteByte('[')
	return a
}

// Add appends one item.
func (a *Array) Add(v any) error {
	if a.err != nil {
		return a.err
	}
	b, err := json.Marshal(v)
	if err != nil {
		a.err = err
		return err
	}
	if a.n > 0 {
		if a.err = a.w.WriteByte(','); a.err != nil {
			return a.err
		}
	}
	a.n++
	_, a.err = a.w.Write(b)
	if a.err == nil && a.c.Request.Context().Err() != nil {
		a.err = a.c.Request.Context().Err() // the client went away: stop producing
	}
	return a.err
}

// Len returns the number of items added.
func (a *Array) Len() int { return a.n }

// Err returns the first error met (a write to a client that went away).
func (a *Array) Err() error { return a.err }

// Close ends the array. With a non-nil fail, the array is abandoned and
// the connection aborted instead: the reply must not look complete.
func (a *Array) Close(fail error) {
	if fail != nil || a.err != nil {
		_ = a.w.Flush()
		panic(http.ErrAbortHandler) // net/http closes the connection quietly
	}
	if err := a.w.WriteByte(']'); err == nil {
		_ = a.w.Flush()
	}
}

// Pages streams, as the reply, the items that page yields a page at a
// time (more false on the last one), rendered by render, within the
// window win. It stops early once the window is full or the client left.
func Pages[T any](c *gin.Context, win Paging, page func() (items []T, more bool), render func(*T) any) {
	arr := Start(c)
	var i int64
	for more := true; more; {
		var items []T
		items, more = page()
		for k := range items {
			in, next := win.Take(i)
			i++
			if (in && arr.Add(render(&items[k])) != nil) || !next {
				arr.Close(nil)
				return
			}
		}
	}
	arr.Close(nil)
}

// Paging is a request's window over a list: skip Offset rows, then send at
// most Limit (-1: no limit). Croft's extension to every list route;
// without it a client gets the whole list, streamed.
type Paging struct {
	Offset int64
	Limit  int64
}

// ParsePaging reads ?limit= and ?offset=.
func ParsePaging(c *gin.Context) (Paging, error) {
	p := Paging{Limit: -1}
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"offset", &p.Offset}, {"limit", &p.Limit}} {
		s, ok := c.GetQuery(f.name)
		if !ok || s == "" {
			continue
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return p, apierr.Bad("%s: a non-negative integer is expected, got %q", f.name, s)
		}
		*f.dst = v
	}
	return p, nil
}

// Take reports whether the row at position i (0-based, among the rows
// that match) is in the window, and whether rows after it may still be.
func (p Paging) Take(i int64) (in, more bool) {
	if i < p.Offset {
		return false, true
	}
	if p.Limit >= 0 && i >= p.Offset+p.Limit {
		return false, false
	}
	return true, p.Limit < 0 || i+1 < p.Offset+p.Limit
}
