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

// report sends an attempt's output, then its result, to the coordinator:
// strictly in order, each report retried until acknowledged, the result
// only after every chunk before it. It returns when the result was
// delivered, when the attempt turned out stale (it kills p then), or when
// ctx ended.
func (a *Agent) report(ctx context.Context, log *slog.Logger, worker string, as client.Assignment, p *Process) {
	base := client.ReportRequest{Name: worker, JobID: as.JobID, AttemptID: as.AttemptID}
	var (
		end     int64 // output bytes so far
		dropped int64 // of which the coordinator refused to store
	)
	for {
		ch, err := p.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return
		}
		end = ch.Offset + int64(len(ch.Data))
		req := base
		// The coordinator's log lacks what was dropped: shift the offsets
		// so they still follow what it has (and stay stable on retry).
		req.LogOffset, req.Log, req.Progress = ch.Offset-dropped, ch.Data, ch.Progress
		switch err := a.deliver(ctx, log, req); {
		case err == nil:
		case errors.Is(err, errRejected):
			log.Error("log chunk refused, dropped", "offset", ch.Offset, "bytes", len(ch.Data), "err", err)
			dropped += int64(len(ch.Data))
		case errors.Is(err, errStale):
			log.Warn("attempt is stale, killing it", "err", err)
			p.Kill()
			return
		default:
			return // ctx ended
		}
	}
	res := p.Result()
	if res.Err != nil {
		log.Warn("attempt failed", "err", res.Err)
	}
	req := base
	req.LogOffset, req.Progress = end-dropped, res.Progress
	req.Done, req.ExitCode, req.TimedOut = true, res.ExitCode, res.TimedOut
	switch err := a.deliver(ctx, log, req); {
	case err == nil:
		log.Info("attempt done", "exit_code", res.ExitCode, "timed_out", res.TimedOut, "killed", res.Killed)
	case errors.Is(err, errStale), errors.Is(err, errRejected):
		log.Error("attempt result refused", "exit_code", res.ExitCode, "err", err)
	}
}

// deliver sends one report until the coordinator acknowledges it. It
// returns nil, errStale, errRejected, or ctx's error.
func (a *Agent) deliver(ctx context.Context, log *slog.Logger, req client.ReportRequest) error {
	b := backoff{min: 50 * time.Millisecond, max: 2 * time.Second}
	for {
		cctx, cancel := context.WithTimeout(ctx, reportCallTimeout)
		resp, err := a.client.Report(cctx, req)
		cancel()
		switch {
		case resp.Kill || client.IsStatus(err, http.StatusConflict):
			return fmt.Errorf("%w: %v", errStale, err)
		case err == nil:
			return nil
		case permanent(err):
			return fmt.Errorf("%w: %v", errRejected, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn("report not acknowledged, retrying", "offset", req.LogOffset, "done", req.Done, "err", err)
		if err := b.wait(ctx); err != nil {
			return err
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
