package native

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/joblog"
	"github.com/croftfarm/croft/raftstore"
)

// PathJobLog is the route of a job's log lines (docs/api/native-log.md).
const PathJobLog = "/croft/v1/jobs/:id/log"

// Bounds of a log read.
const (
	// DefaultLogLimit and MaxLogLimit bound the lines of one reply.
	DefaultLogLimit = 1000
	MaxLogLimit     = 10_000
	// MaxLogReplyBytes bounds the text of one reply (at least one line
	// is sent, and a line is at most joblog.MaxLine+1 bytes).
	MaxLogReplyBytes = 4 << 20
	// DefaultLogWait and MaxLogWait bound a follow request's wait.
	DefaultLogWait = 30 * time.Second
	MaxLogWait     = 60 * time.Second
)

// States gives the current replicated state: the log route reads job log
// tails from it and lines from its store.
type States interface {
	State() *raftstore.State
}

// LogHandler serves GET /croft/v1/jobs/{id}/log.
type LogHandler struct {
	states States
}

// NewLog returns the log route's handler.
func NewLog(states States) *LogHandler { return &LogHandler{states: states} }

// Register mounts the route; reads need PermRead and the job's project.
func (h *LogHandler) Register(m auth.Mount) {
	m.Handle(http.MethodGet, PathJobLog, auth.PermRead, h.serve)
}

// LogLine is one line of a reply.
type LogLine struct {
	Number int64  `json:"number"`
	Stream string `json:"stream"`
	Offset int64  `json:"offset"`
	// Text is the line with its newline, if it has one.
	Text string `json:"text"`
}

// LogReply is the JSON reply: the lines, where to read on, and whether
// the log is complete (no attempt runs and every line was read).
type LogReply struct {
	JobID      int64     `json:"job_id"`
	Lines      []LogLine `json:"lines"`
	NextLine   int64     `json:"next_line"`
	NextOffset int64     `json:"next_offset"`
	Done       bool      `json:"done"`
	Truncated  bool      `json:"truncated"`
}

// logQuery is a parsed request.
type logQuery struct {
	id       int64
	from     int64 // 0: use offset
	offset   int64
	limit    int
	keep     func(joblog.Stream) bool
	follow   bool
	wait     time.Duration
	textMode bool
}

func parseLogQuery(c *gin.Context) (logQuery, error) {
	q := logQuery{limit: DefaultLogLimit, wait: DefaultLogWait, from: 1}
	var err error
	if q.id, err = strconv.ParseInt(c.Param("id"), 10, 64); err != nil || q.id <= 0 {
		return q, apierr.Bad("job id %q is not a positive integer", c.Param("id"))
	}
	_, hasFrom := c.GetQuery("from_line")
	if v, ok := c.GetQuery("offset"); ok {
		if hasFrom {
			return q, apierr.Bad("from_line and offset exclude each other")
		}
		if q.offset, err = strconv.ParseInt(v, 10, 64); err != nil || q.offset < 0 {
			return q, apierr.Bad("offset %q is not a byte offset (an integer >= 0)", v)
		}
		q.from = 0
	}
	if hasFrom {
		v := c.Query("from_line")
		if q.from, err = strconv.ParseInt(v, 10, 64); err != nil || q.from < 1 {
			return q, apierr.Bad("from_line %q is not a line number (an integer >= 1)", v)
		}
	}
	if v, ok := c.GetQuery("limit"); ok {
		if q.limit, err = strconv.Atoi(v); err != nil || q.limit < 1 || q.limit > MaxLogLimit {
			return q, apierr.Bad("limit %q is not 1..%d", v, MaxLogLimit)
		}
	}
	if v, ok := c.GetQuery("stream"); ok {
		var want [joblog.NumStreams]bool
		for _, name := range strings.Split(v, ",") {
			st, ok := joblog.ParseStream(strings.TrimSpace(name))
			if !ok {
				return q, apierr.Bad("stream %q is none of stdout, stderr, farm", name)
			}
			want[st] = true
		}
		q.keep = func(st joblog.Stream) bool { return int(st) < len(want) && want[st] }
	}
	if v, ok := c.GetQuery("follow"); ok {
		if q.follow, err = strconv.ParseBool(v); err != nil {
			return q, apierr.Bad("follow %q is not true or false", v)
		}
	}
	if v, ok := c.GetQuery("wait"); ok {
		if q.wait, err = time.ParseDuration(v); err != nil || q.wait < 0 || q.wait > MaxLogWait {
			return q, apierr.Bad("wait %q is not a duration of at most %s", v, MaxLogWait)
		}
	}
	switch f := c.DefaultQuery("format", "json"); f {
	case "json":
	case "text":
		q.textMode = true
	default:
		return q, apierr.Bad("format %q is neither json nor text", f)
	}
	return q, nil
}

func (h *LogHandler) serve(c *gin.Context) {
	q, err := parseLogQuery(c)
	if err != nil {
		apierr.Abort(c, err)
		return
	}
	p := auth.From(c)
	var deadline <-chan time.Time
	if q.follow {
		t := time.NewTimer(q.wait)
		defer t.Stop()
		deadline = t.C
	}
	for {
		st := h.states.State() // anew each time: a restore swaps it
		info, changed, ok := st.LogInfo(q.id)
		if !ok {
			apierr.Abort(c, apierr.NotFound("job %d", q.id))
			return
		}
		if !p.CanRead(info.Project) {
			apierr.Abort(c, apierr.Forbidden("token %q may not read project %q", p.Name, info.Project))
			return
		}
		if err := st.LogErr(); err != nil {
			apierr.Abort(c, fmt.Errorf("%w: %v", apierr.ErrUnavailable, err))
			return
		}
		if q.from == 0 {
			if q.from, err = st.LogLineAt(q.id, q.offset, info.Lines); err != nil {
				apierr.Abort(c, fmt.Errorf("%w: %v", apierr.ErrUnavailable, err))
				return
			}
		}
		// While an attempt runs, its open last line may still grow: it is
		// sent once it ended, so a line is never sent twice.
		last := info.Lines
		if info.Running && info.Open {
			last--
		}
		var lines []joblog.Line
		next := joblog.Pos{Line: q.from, Offset: info.Bytes}
		if q.from <= last {
			lines, next, err = st.LogLines(q.id, joblog.Page{From: q.from, Last: last, MaxLines: q.limit, MaxBytes: MaxLogReplyBytes, Keep: q.keep})
			if err != nil {
				apierr.Abort(c, fmt.Errorf("%w: %v", apierr.ErrUnavailable, err))
				return
			}
		} else if q.from <= info.Lines {
			// Only the open line is left: it starts at the end of the
			// lines before it.
			next.Offset = info.Bytes - openLength(st, q.id, info)
		}
		done := !info.Running && next.Line > info.Lines
		if !q.follow || next.Line != q.from || done {
			h.reply(c, q, LogReply{JobID: q.id, Lines: render(lines), NextLine: next.Line, NextOffset: next.Offset, Done: done, Truncated: info.Truncated})
			return
		}
		select {
		case <-changed:
		case <-deadline:
			q.follow = false // reply with what there is
		case <-c.Request.Context().Done():
			return // the client left
		}
	}
}

// openLength returns the length of a job's open last line.
func openLength(st *raftstore.State, id int64, info raftstore.LogInfo) int64 {
	j, ok := st.Job(id)
	if !ok {
		return 0
	}
	return min(int64(j.LogOpen), info.Bytes)
}

func render(lines []joblog.Line) []LogLine {
	out := make([]LogLine, len(lines))
	for i, l := range lines {
		out[i] = LogLine{Number: l.Number, Stream: l.Stream.String(), Offset: l.Offset, Text: string(l.Text)}
	}
	return out
}

// reply writes the lines as JSON, or as text/plain with the position in
// headers.
func (h *LogHandler) reply(c *gin.Context, q logQuery, r LogReply) {
	if !q.textMode {
		c.Header("Content-Type", "application/json; charset=utf-8")
		c.Status(http.StatusOK)
		_ = json.NewEncoder(c.Writer).Encode(r)
		return
	}
	c.Header("Content-Type", "text/plain; charset=utf-8")
	c.Header("X-Croft-Next-Line", strconv.FormatInt(r.NextLine, 10))
	c.Header("X-Croft-Next-Offset", strconv.FormatInt(r.NextOffset, 10))
	c.Header("X-Croft-Done", strconv.FormatBool(r.Done))
	c.Status(http.StatusOK)
	for _, l := range r.Lines {
		if _, err := c.Writer.WriteString(l.Text); err != nil {
			return
		}
	}
}
