package freezer

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/croftfarm/croft/raftstore"
)

// Croft is the freezer-scheduler of every client: a job whose event is
// start runs when started, and again as its job_schedule says, as the
// scheduler's APScheduler triggers do:
//   - schedule_date: once, at that date;
//   - schedule_interval "N weeks|days|hours|minutes|seconds": every N
//     units after the start of the previous run; "continuous": again as
//     soon as the previous run ended;
//   - schedule_start_date / schedule_end_date: no run before the one,
//     none from the other on.
// Tick, called on the leader (coordinator's dialect duties), starts the
// runs that are due.

// scheduleTime reads a schedule's ISO-8601 date (checkSchedule's
// pattern; no zone is UTC); zero when absent or unreadable.
func scheduleTime(sched document, k string) time.Time {
	s := str(sched, k)
	if s == "" {
		return time.Time{}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}

// interval reads schedule_interval: its period, or continuous; ok is
// false when there is none (or it does not parse).
func interval(sched document) (period time.Duration, continuous, ok bool) {
	s := str(sched, "schedule_interval")
	if s == "continuous" {
		return 0, true, true
	}
	n, unit, found := strings.Cut(strings.Join(strings.Fields(s), " "), " ")
	count, err := strconv.ParseInt(n, 10, 64)
	if !found || err != nil || count <= 0 {
		return 0, false, false
	}
	per := map[string]time.Duration{"weeks": 7 * 24 * time.Hour, "days": 24 * time.Hour, "hours": time.Hour, "minutes": time.Minute, "seconds": time.Second}[unit]
	if per == 0 || count > int64(100*365*24*time.Hour/per) {
		return 0, false, false // over a century: never again
	}
	return time.Duration(count) * per, false, true
}

// later reports whether a start at now must wait for the schedule: its
// date or start date is to come, or its end date has passed.
func later(sched document, now time.Time) bool {
	if date := scheduleTime(sched, "schedule_date"); !date.IsZero() && now.Before(date) {
		return true
	}
	if start := scheduleTime(sched, "schedule_start_date"); !start.IsZero() && now.Before(start) {
		return true
	}
	end := scheduleTime(sched, "schedule_end_date")
	return !end.IsZero() && !now.Before(end)
}

// due reports whether a job whose event is start must run at now, its
// newest run last (nil: none): not while a run goes on, nor outside the
// start and end dates; at its schedule_date once; by its interval. A job
// without a schedule runs when it is started, not by Tick (one that
// waited for its start date runs then, once).
func due(sched document, last *raftstore.ExecutionStatus, now time.Time) bool {
	if str(sched, "event") != "start" || last != nil && !last.Ended {
		return false
	}
	start := scheduleTime(sched, "schedule_start_date")
	if !start.IsZero() && now.Before(start) {
		return false
	}
	if end := scheduleTime(sched, "schedule_end_date"); !end.IsZero() && !now.Before(end) {
		return false
	}
	var lastStart time.Time
	if last != nil {
		lastStart = time.Unix(0, last.Created)
	}
	if date := scheduleTime(sched, "schedule_date"); !date.IsZero() {
		return !now.Before(date) && lastStart.Before(date)
	}
	period, continuous, ok := interval(sched)
	switch {
	case !ok: // a start that waited for its start date runs once then
		return !start.IsZero() && lastStart.Before(start)
	case continuous || last == nil:
		return true
	}
	return !now.Before(lastStart.Add(period))
}

// scheduled is a cheap test before decoding a document: only a job with
// one of these has runs Tick may start.
var scheduled = [][]byte{[]byte(`"schedule_interval"`), []byte(`"schedule_date"`), []byte(`"schedule_start_date"`)}

// Tick starts the runs of the farm's Freezer jobs that are due at now. It
// is a leader duty: the coordinator calls it on the leader, every few
// seconds. It reads every Freezer job a page at a time; a start that
// fails is tried again at the next tick.
func (h *Handler) Tick(ctx context.Context, now time.Time) error {
	st, after := h.store.State(), ""
	var firstErr error
	for {
		page, next, more := st.TemplatesAfter(after, raftstore.ScanLimit)
		for i := range page {
			t := &page[i]
			if t.Spec.Type != templateType || !hasAny(t.Spec.Doc, scheduled) {
				continue
			}
			d, err := decode(t.Spec.Doc)
			if err != nil {
				continue
			}
			var last *raftstore.ExecutionStatus
			if e, ok := lastRun(st, d); ok {
				last = &e
			}
			if !due(schedule(d, "job_schedule"), last, now) {
				continue
			}
			if _, err := h.start(ctx, t.Project, t.Spec.Name, false, true); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		if !more || ctx.Err() != nil {
			return firstErr
		}
		after = next
	}
}

func hasAny(b []byte, subs [][]byte) bool {
	for _, s := range subs {
		if bytes.Contains(b, s) {
			return true
		}
	}
	return false
}
