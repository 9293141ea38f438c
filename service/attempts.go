package service

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/croftfarm/croft/farm"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service/dispatch"
	"github.com/croftfarm/croft/service/liveness"
)

// Pull asks for a worker's next job.
type Pull struct {
	Worker string
	IP     string
	// Projects restricts a worker the pick creates (a Coalition
	// worker's first call) to these projects; a known one keeps its own.
	Projects []string
	// Ping is what the worker measured, if anything; Time is stamped.
	Ping liveness.Ping
	// Wait is how long to wait for a job when there is none now (0: do
	// not wait, as Coalition's pickjob).
	Wait time.Duration
}

// Pull gives the worker a job, waiting up to p.Wait for one; nil when there
// is none. It proposes a Pick only when one would change something
// (State.WorkFor), so idle workers cost no Raft entries. While it waits, a
// create may claim it and pick for it in the create's own entry. When ctx
// ends during the wait, the error is ctx's.
func (s *Service) Pull(ctx context.Context, p Pull) (*raftstore.Assignment, error) {
	var timer *time.Timer
	if p.Wait > 0 {
		timer = time.NewTimer(p.Wait)
		defer timer.Stop()
	}
	for {
		work, changed := s.state().WorkFor(p.Worker)
		if work {
			a, err := s.pick(ctx, p)
			if err != nil || a != nil {
				return a, err
			}
			// Another worker took it first: wait for the next change.
		}
		if timer == nil {
			return nil, nil
		}
		w := s.offers.Wait(p.Worker, p.IP)
		var offer dispatch.Result
		claimed, expired := false, false
		select {
		case offer = <-w.C():
			claimed = true
		case <-changed:
		case <-timer.C:
			expired = true
		case <-ctx.Done():
		}
		if !claimed && !s.offers.Cancel(w) {
			offer, claimed = <-w.C(), true // a create claimed it meanwhile
		}
		if claimed && offer.Err == nil && offer.Assignment != nil {
			s.pings.Seen(p.Worker, liveness.Ping{Time: s.stamp()})
			return offer.Assignment, nil
		}
		// A claim that gave nothing (or failed) is a wake-up: look again.
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case expired:
			return nil, nil
		}
	}
}

// pick proposes one Pick. The worker's ping is recorded before it when the
// worker is known (so the sweeper does not lose a worker that is asking
// for work), and after it in any case once the pick made the worker exist.
func (s *Service) pick(ctx context.Context, p Pull) (*raftstore.Assignment, error) {
	now := s.stamp()
	p.Ping.Time = now
	_, known := s.state().Worker(p.Worker)
	if known {
		s.pings.Seen(p.Worker, p.Ping)
	}
	cmd := &raftstore.Pick{Now: now, Worker: p.Worker, IP: p.IP, Projects: p.Projects}
	res, err := s.apply(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if !known {
		s.pings.Seen(p.Worker, p.Ping)
	}
	return resultOf[*raftstore.Assignment](res, cmd)
}

// Report is what a worker tells of an attempt: output, progress, result.
// The agent protocol and the Coalition worker protocol both come here.
type Report struct {
	Worker string
	IP     string
	JobID  int64
	// AttemptID fences the report. 0 means the worker's current attempt
	// (the Coalition worker protocol has no attempt ids): it is resolved
	// here, from the state, before the command is built.
	AttemptID int64
	// LogOffset is Log's byte offset in the attempt's output, so a retried
	// report is not appended twice; -1 appends without that check.
	LogOffset int64
	Log       []byte
	// Stderr is the attempt's standard error output from StderrOffset,
	// de-duplicated like Log on its own offset.
	Stderr       []byte
	StderrOffset int64
	Progress     *float64
	// ProgressFromLog takes the progress from the output kept, with the
	// job's progress pattern (workers that send raw output only).
	ProgressFromLog bool
	// OutputOnly marks a report that carries nothing but output: when the
	// log cap leaves none of it, nothing is applied.
	OutputOnly bool
	Done       bool
	ExitCode   int
	// Signal is the signal that killed the process, 0 if it exited.
	Signal   int
	TimedOut bool
	// Lost (with Done): the worker lost the process without a result;
	// the job is requeued, not failed.
	Lost bool
	// Next (with Done) also picks the worker's next job, in the same entry.
	Next bool
}

// ReportResult is the outcome of an accepted report.
type ReportResult struct {
	// Applied is false when nothing went to Raft (OutputOnly and no
	// output left).
	Applied bool
	// Duplicate: the report had been applied already (a retry).
	Duplicate bool
	// Done: the attempt has ended, by this report or an earlier one.
	Done bool
	// LogFull: the job's log reached its cap; send no more output.
	LogFull bool
	// Next is the worker's next job (Report.Next), nil when none.
	Next *raftstore.Assignment
}

// Report applies a worker's report. The job's output is capped before
// Raft: a chunk past the cap is cut (the log says where) and LogFull set.
// A report from an attempt that is no longer the job's current one is
// refused with raftstore.ErrStaleAttempt: its process must be killed.
func (s *Service) Report(ctx context.Context, r Report) (ReportResult, error) {
	if r.Next && !r.Done {
		return ReportResult{}, fmt.Errorf("%w: next is only for a final report (done)", raftstore.ErrInvalid)
	}
	st := s.state()
	var out ReportResult
	if n, truncated, ok := st.LogSize(r.JobID); ok && len(r.Log)+len(r.Stderr) > 0 {
		switch {
		case truncated:
			r.Log, r.Stderr, out.LogFull = nil, nil, true
		case n >= s.logCap:
			// One byte past the cap, which the FSM cuts: the log then
			// says where it was cut.
			if len(r.Log) > 0 {
				r.Log, r.Stderr = r.Log[:1], nil
			} else {
				r.Stderr = r.Stderr[:1]
			}
			out.LogFull = true
		case int64(len(r.Log)+len(r.Stderr)) > s.logCap-n:
			out.LogFull = true // the FSM keeps what fits and notes the cut
		}
	}
	if r.OutputOnly && len(r.Log)+len(r.Stderr) == 0 {
		return out, nil
	}
	attempt := r.AttemptID
	if attempt == 0 {
		w, ok := st.Worker(r.Worker)
		if !ok || w.CurrentEvent == 0 {
			return ReportResult{}, fmt.Errorf("%w: worker %q runs nothing", raftstore.ErrStaleAttempt, r.Worker)
		}
		attempt = w.CurrentEvent
	}
	progress := r.Progress
	if r.ProgressFromLog && len(r.Log) > 0 {
		if j, ok := st.Job(r.JobID); ok {
			progress = lastProgress(j.ProgressPattern, r.Log)
		}
	}
	now := s.stamp()
	if _, ok := st.Worker(r.Worker); ok {
		s.pings.Seen(r.Worker, liveness.Ping{Time: now})
	}
	rep := raftstore.Report{
		Now: now, Worker: r.Worker, JobID: r.JobID, AttemptID: attempt,
		LogOffset: r.LogOffset, Log: r.Log, Progress: progress,
		Done: r.Done, ExitCode: r.ExitCode, TimedOut: r.TimedOut, Lost: r.Lost,
		LogCap: s.logCap, Stderr: r.Stderr, StderrOffset: r.StderrOffset, Signal: r.Signal,
	}
	if r.Next {
		cmd := &raftstore.ReportPick{Report: rep, IP: r.IP}
		res, err := s.apply(ctx, cmd)
		if err != nil {
			return ReportResult{}, err
		}
		rp, err := resultOf[raftstore.ReportPickResult](res, cmd)
		if err != nil {
			return ReportResult{}, err
		}
		out.Applied, out.Duplicate, out.Done, out.Next = true, rp.Report.Duplicate, rp.Report.Done, rp.Next
		return out, nil
	}
	res, err := s.apply(ctx, &rep)
	if err != nil {
		return ReportResult{}, err
	}
	rr, err := resultOf[raftstore.ReportResult](res, &rep)
	if err != nil {
		return ReportResult{}, err
	}
	out.Applied, out.Duplicate, out.Done = true, rr.Duplicate, rr.Done
	return out, nil
}

// AttemptLive reports whether attempt is still worker's running attempt
// (of job jobID, when not 0). Attempt 0 means the worker's current one.
func (s *Service) AttemptLive(worker string, jobID, attempt int64) bool {
	st := s.state()
	if attempt == 0 {
		w, ok := st.Worker(worker)
		if !ok || w.CurrentEvent == 0 {
			return false
		}
		attempt = w.CurrentEvent
	}
	ev, ok := st.RunByID(attempt)
	if !ok || ev.Worker != worker || (jobID != 0 && ev.JobID != jobID) {
		return false
	}
	return st.AttemptLive(attempt)
}

// lastProgress returns the last progress value the pattern finds in text.
func lastProgress(pattern string, text []byte) *float64 {
	re, scale, err := farm.ProgressRegexp(pattern)
	if err != nil {
		return nil
	}
	m := re.FindAllSubmatch(text, -1)
	if len(m) == 0 {
		return nil
	}
	v, err := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	if err != nil {
		return nil
	}
	v *= scale
	return &v
}
