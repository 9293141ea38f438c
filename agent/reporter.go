package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/croftfarm/croft/api/client"
)

var (
	// errStale: the coordinator no longer counts the attempt as running
	// (409 with Kill): stop it and send nothing more for it.
	errStale = errors.New("stale attempt")
	// errRejected: the coordinator refused a report for good (another
	// 4xx); sending it again would be refused again.
	errRejected = errors.New("report rejected")
)

// reportCallTimeout bounds one report call, so a connection to a dead
// coordinator does not hold the attempt's reports.
const reportCallTimeout = 30 * time.Second

// backoff is a doubling wait between retries.
type backoff struct {
	min, max, next time.Duration
}

// wait sleeps for the current delay, doubled for the next call, or until
// ctx ends.
func (b *backoff) wait(ctx context.Context) error {
	d := max(b.next, b.min)
	b.next = min(2*d, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *backoff) reset() { b.next = b.min }

// report sends an attempt's output from its spool, then its result, to
// the coordinator: strictly in order, each report retried until
// acknowledged, the result only after every chunk before it. The journal
// records what was acknowledged, so an agent restarted later resumes from
// there. It returns true once the coordinator is done with the attempt:
// the result was acknowledged or refused for good, or the attempt turned
// out stale (it kills the process then). False means ctx ended first: the
// attempt stays on disk for the next start.
//
// With next, the result asks for the worker's next job, unless the attempt
// was lost, the agent is cut off (then the slot decides again) or it
// drains: the
// assignment given, if any, is returned, and the worker now runs it.
func (a *Agent) report(ctx context.Context, at *attempt, next bool) (bool, *client.Assignment) {
	j, log := at.j, at.log
	base := client.ReportRequest{Name: j.Worker, JobID: j.Assignment.JobID, AttemptID: j.Assignment.AttemptID}
	progress, err := newProgressParser(j.Assignment.ProgressPattern)
	if err != nil {
		log.Warn("invalid progress pattern, progress disabled", "pattern", j.Assignment.ProgressPattern, "err", err)
	}
	sp, err := openSpool(at.dir, [numStreams]int64{j.Acked, j.ErrAcked}, a.run.chunk, a.run.flush, progress, at.p.done, func() [numStreams]int64 { return at.p.res.sizes() })
	if err != nil {
		log.Error("output unreadable, sending the result only", "err", err)
	} else {
		defer sp.close()
	}
	for sp != nil {
		ch, err := sp.next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return false, nil
			}
			log.Error("output unreadable, sending the result only", "err", err)
			break
		}
		if j.LogFull {
			// The log is full: read on (the progress is parsed from
			// the output) but send nothing until the result.
			j.Acked, j.ErrAcked = ch.end(streamOut), ch.end(streamErr)
			continue
		}
		req := base
		// The coordinator's log lacks what was dropped: shift the offsets
		// so they still follow what it has (and stay stable on retry).
		// Each stream has its own.
		req.LogOffset, req.Log = ch.offset[streamOut]-j.Dropped, ch.data[streamOut]
		req.StderrOffset, req.Stderr = ch.offset[streamErr]-j.ErrDropped, ch.data[streamErr]
		req.Progress = ch.progress
		switch resp, err := a.deliver(ctx, log, req); {
		case err == nil:
			if resp.LogFull {
				log.Warn("the job's output reached the farm's cap: no more is sent (the job runs on; the rest stays in the agent's spool until the attempt ends)")
				j.LogFull = true
			}
		case errors.Is(err, errRejected):
			log.Error("log chunk refused, dropped", "offset", ch.offset[streamOut], "bytes", len(ch.data[streamOut]),
				"stderr_offset", ch.offset[streamErr], "stderr_bytes", len(ch.data[streamErr]), "err", err)
			j.Dropped += int64(len(ch.data[streamOut]))
			j.ErrDropped += int64(len(ch.data[streamErr]))
		case errors.Is(err, errStale):
			log.Warn("attempt is stale, killing it", "err", err)
			at.p.kill()
			return true, nil
		default:
			return false, nil // ctx ended
		}
		j.Acked, j.ErrAcked = ch.end(streamOut), ch.end(streamErr)
		if err := writeJournal(at.dir, j); err != nil {
			log.Warn("journal not updated", "err", err) // a restart sends some output again: harmless
		}
	}
	select {
	case <-at.p.done:
	case <-ctx.Done():
		return false, nil
	}
	res := at.p.outcome()
	if res.Err != nil {
		log.Warn("attempt failed", "err", res.Err)
	}
	req := base
	req.LogOffset, req.StderrOffset = j.Acked-j.Dropped, j.ErrAcked-j.ErrDropped
	if sp != nil {
		req.Progress = sp.progress()
	}
	if j.LogFull {
		// The result carries no output: its offsets are not checked.
		req.LogOffset, req.StderrOffset = 0, 0
	}
	req.Done, req.ExitCode, req.TimedOut, req.Lost = true, res.ExitCode, res.TimedOut, res.Lost
	if res.Signal != "" && res.ExitCode > 128 {
		req.Signal = res.ExitCode - 128 // exitCode: 128+N when signal N killed the shell
	}
	req.Next = next && !res.Lost && a.silence() <= a.cfg.LeaseTimeout && !isClosed(a.draining)
	resp, err := a.deliver(ctx, log, req)
	switch {
	case err == nil:
		log.Info("attempt done", "exit_code", res.ExitCode, "timed_out", res.TimedOut, "killed", res.Killed, "lost", res.Lost, "fenced", res.Fenced, "note", res.Note)
	case errors.Is(err, errStale), errors.Is(err, errRejected):
		log.Error("attempt result refused", "exit_code", res.ExitCode, "lost", res.Lost, "err", err)
	default:
		return false, nil
	}
	return true, resp.Assignment
}

// deliver sends one report until the coordinator acknowledges it. It
// returns the acknowledgement, or errStale, errRejected, or ctx's error.
func (a *Agent) deliver(ctx context.Context, log *slog.Logger, req client.ReportRequest) (client.ReportResponse, error) {
	b := backoff{min: 50 * time.Millisecond, max: 2 * time.Second}
	for {
		cctx, cancel := context.WithTimeout(ctx, reportCallTimeout)
		resp, err := a.client.Report(cctx, req)
		cancel()
		switch {
		case resp.Kill || client.IsStatus(err, http.StatusConflict):
			return client.ReportResponse{}, fmt.Errorf("%w: %v", errStale, err)
		case err == nil:
			return resp, nil
		case permanent(err):
			return client.ReportResponse{}, fmt.Errorf("%w: %v", errRejected, err)
		}
		if ctx.Err() != nil {
			return client.ReportResponse{}, ctx.Err()
		}
		log.Warn("report not acknowledged, retrying", "offset", req.LogOffset, "done", req.Done, "err", err)
		if err := b.wait(ctx); err != nil {
			return client.ReportResponse{}, err
		}
	}
}

// permanent reports whether err is a refusal that a retry cannot change:
// a 4xx other than timeouts and rate limits.
func permanent(err error) bool {
	var se *client.StatusError
	if !errors.As(err, &se) || se.Code < 400 || se.Code >= 500 {
		return false
	}
	switch se.Code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, 499: // 499: the coordinator saw the call give up
		return false
	}
	return true
}
