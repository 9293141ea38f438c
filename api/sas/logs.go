package sas

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/joblog"
	"github.com/croftfarm/croft/raftstore"
)

// LogLine is a line of a log or a listing.
type LogLine struct {
	Line    string `json:"line"`
	Type    string `json:"type"`
	Version int    `json:"version"`
}

// lineTypes are SAS's log line types (§5.3).
var lineTypes = map[string]bool{"normal": true, "hilighted": true, "source": true, "title": true, "byline": true,
	"footnote": true, "error": true, "warning": true, "note": true, "message": true}

// lineType maps a job's log line to a SAS type: standard output is
// normal, but for the lines that start as SAS's own do ("ERROR:",
// "WARNING:", "NOTE:"); standard error is error, but for lines that start
// with "warning" (any case); the farm's lines (tries, exit codes) notes.
func lineType(l *joblog.Line) string {
	switch l.Stream {
	case joblog.Farm:
		return "note"
	case joblog.Stderr:
		if len(l.Text) >= 7 && strings.EqualFold(string(l.Text[:7]), "warning") {
			return "warning"
		}
		return "error"
	}
	switch {
	case hasPrefix(l.Text, "ERROR:"), hasPrefix(l.Text, "ERROR "):
		return "error"
	case hasPrefix(l.Text, "WARNING:"):
		return "warning"
	case hasPrefix(l.Text, "NOTE:"):
		return "note"
	}
	return "normal"
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// logQuery is a parsed log or listing request.
type logQuery struct {
	start, limit int
	listing      bool
	types        map[string]bool // nil: every type
	timeout      time.Duration
	hasTimeout   bool
	text         bool
}

func parseLogQuery(c *gin.Context, listing bool) (logQuery, error) {
	q := logQuery{listing: listing}
	var err error
	if q.start, q.limit, err = paging(c, DefaultLogLimit, MaxLogLimit); err != nil {
		return q, err
	}
	if v, ok := c.GetQuery("type"); ok {
		if len(v) > 256 {
			return q, apierr.Bad("type is %d bytes, the limit is 256", len(v))
		}
		q.types = map[string]bool{}
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			if !lineTypes[t] {
				return q, apierr.Bad("type %q is not a log line type", apierr.Truncate(t, 32))
			}
			q.types[t] = true
		}
	}
	if q.timeout, q.hasTimeout, err = seconds(c, "timeout"); err != nil {
		return q, err
	}
	q.text = strings.Contains(c.GetHeader("Accept"), "text/plain")
	return q, nil
}

// available is how many of a job's lines may be read: all once it ended;
// while it runs, all but an open last line (it may still grow).
func available(j *raftstore.Job) int64 {
	n := int64(j.LogLines)
	if j.State == raftstore.StateRunning && j.LogOpen > 0 {
		n--
	}
	return max(n, 0)
}

// readLog reads a page of the log (or listing) of jobs, in order: the
// limit lines kept from the start-th on. Without a filter (the log, no
// type) it skips whole jobs by their line counts; with one it looks at
// the lines from the first, no more than MaxScan of them.
func readLog(st *raftstore.State, jobs []int64, q *logQuery) ([]LogLine, error) {
	out := []LogLine{}
	skip := int64(q.start)
	size, scanned := 0, 0
	filtered := q.listing || q.types != nil
	for _, id := range jobs {
		j, ok := st.Job(id)
		if !ok || j.LogLines == 0 {
			continue
		}
		avail := available(&j)
		from := int64(1)
		if !filtered {
			if skip >= avail {
				skip -= avail
				continue
			}
			from, skip = skip+1, 0
		}
		for from <= avail && len(out) < q.limit && size < MaxLogReplyBytes {
			if filtered && scanned >= MaxScan {
				if len(out) == 0 {
					return nil, fmt.Errorf("%w: this page needs more than %d log lines looked at: read the log without a type", raftstore.ErrTooLarge, MaxScan)
				}
				return out, nil
			}
			n := q.limit - len(out)
			if filtered {
				n = min(4096, MaxScan-scanned)
			}
			lines, next, err := st.LogLines(id, joblog.Page{From: from, Last: avail, MaxLines: n, MaxBytes: MaxLogReplyBytes - size})
			if err != nil {
				return nil, fmt.Errorf("%w: %v", apierr.ErrUnavailable, err)
			}
			if next.Line <= from {
				break
			}
			scanned += int(next.Line - from)
			from = next.Line
			for i := range lines {
				l := &lines[i]
				if q.listing && l.Stream != joblog.Stdout {
					continue
				}
				t := "normal"
				if !q.listing {
					t = lineType(l)
				}
				if q.types != nil && !q.types[t] {
					continue
				}
				if skip > 0 {
					skip--
					continue
				}
				if len(out) >= q.limit {
					break
				}
				text := strings.TrimSuffix(strings.TrimSuffix(string(l.Text), "\n"), "\r")
				size += len(text)
				out = append(out, LogLine{Line: text, Type: t, Version: 1})
			}
		}
		if len(out) >= q.limit || size >= MaxLogReplyBytes {
			break
		}
	}
	return out, nil
}

// progress is what a log long poll waits on: the lines readable and
// whether every job ended.
func progress(st *raftstore.State, jobs []int64) (lines int64, done bool) {
	done = true
	for _, id := range jobs {
		if j, ok := st.Job(id); ok {
			lines += available(&j)
			if !ended(j.State) {
				done = false
			}
		}
	}
	return lines, done
}

// serveLog answers a page of the log of jobs. An empty page with
// ?timeout=N waits up to N s for lines while a job has not ended (200
// with no items on expiry; at once when every job ended).
func (h *Handler) serveLog(c *gin.Context, jobs func(*raftstore.State) ([]int64, bool), q *logQuery) {
	st := h.store.State()
	ids, ok := jobs(st)
	if !ok {
		Abort(c, sessionNotFound())
		return
	}
	lines, err := readLog(st, ids, q)
	if err != nil {
		Abort(c, err)
		return
	}
	if len(lines) == 0 && q.hasTimeout && q.timeout > 0 {
		deadline := h.now().Add(q.timeout)
		for {
			seen, done := progress(st, ids)
			left := deadline.Sub(h.now())
			if done || left <= 0 {
				break
			}
			h.waitChange(c, left, func(st *raftstore.State) bool {
				ids, ok := jobs(st)
				n, d := progress(st, ids)
				return !ok || n != seen || d
			})
			if c.Request.Context().Err() != nil {
				return
			}
			st = h.store.State()
			if ids, ok = jobs(st); !ok {
				Abort(c, sessionNotFound())
				return
			}
			if lines, err = readLog(st, ids, q); err != nil {
				Abort(c, err)
				return
			}
			if len(lines) > 0 {
				break
			}
		}
	}
	if q.text {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(l.Line)
			b.WriteByte('\n')
		}
		c.Data(http.StatusOK, "text/plain;charset=utf-8", []byte(b.String()))
		return
	}
	name := "log"
	if q.listing {
		name = "listing"
	}
	// The count is of the lines up to this page: Croft does not count a
	// whole log to answer a page (a log may hold millions of lines).
	count := q.start + len(lines)
	coll := collection(c, name, "application/vnd.sas.compute.log.line", lines, q.start, q.limit, count)
	links := coll.Links[:0]
	for _, l := range coll.Links {
		if l.Rel != "last" { // unknown without counting the whole log
			links = append(links, l)
		}
	}
	coll.Links = links
	if len(lines) == q.limit { // there may be more
		coll.Links = append(coll.Links, collLink("next", pageHref(c, q.start+q.limit, q.limit), "application/vnd.sas.compute.log.line"))
	}
	send(c, http.StatusOK, "application/vnd.sas.collection", 2, coll)
}

func pageHref(c *gin.Context, start, limit int) string {
	q := c.Request.URL.Query()
	q.Set("start", fmt.Sprint(start))
	q.Set("limit", fmt.Sprint(limit))
	return c.Request.URL.Path + "?" + q.Encode()
}

// sessionLog serves a session's log (listing): its jobs', in order.
func (h *Handler) sessionLog(listing bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		_, x, ok := h.lookup(c, false)
		if !ok {
			return
		}
		q, err := parseLogQuery(c, listing)
		if err != nil {
			Abort(c, err)
			return
		}
		h.serveLog(c, func(st *raftstore.State) ([]int64, bool) {
			v, ok := st.Session(x.ID)
			if !ok || v.State != raftstore.SessionStateOpen {
				return nil, false
			}
			return v.Jobs, true
		}, &q)
	}
}

// jobLog serves a job's log (listing).
func (h *Handler) jobLog(listing bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		st, x, ok := h.lookup(c, false)
		if !ok {
			return
		}
		j, ok := h.findJob(c, st, &x)
		if !ok {
			return
		}
		q, err := parseLogQuery(c, listing)
		if err != nil {
			Abort(c, err)
			return
		}
		h.serveLog(c, func(st *raftstore.State) ([]int64, bool) {
			if j.ID == emptyJobID {
				return nil, true
			}
			if _, ok := st.Job(j.ID); !ok {
				return nil, false
			}
			return []int64{j.ID}, true
		}, &q)
	}
}
