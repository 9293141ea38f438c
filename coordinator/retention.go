package coordinator

import (
	"context"
	"time"

	"github.com/croftfarm/croft/service"
)

// Retention says how long the leader keeps what would otherwise pile up
// forever. Zero fields take the Default* values; a negative one turns that
// rule off.
type Retention struct {
	// EventMaxAge forgets attempt records (Coalition's events) older than
	// this (default 7 days).
	EventMaxAge time.Duration
	// EventMaxCount keeps at most this many attempt records, the newest
	// (default 100,000).
	EventMaxCount int
	// WorkerExpiry forgets workers marked lost for this long (default 24
	// h): a render node retired, or a registration that never heartbeat.
	// An agent that comes back registers again.
	WorkerExpiry time.Duration
	// JobExpiry deletes root jobs FINISHED for this long, with their
	// subtrees, logs and events (default 0: never).
	JobExpiry time.Duration
	// Interval is how often the leader checks (default 1 min).
	Interval time.Duration
}

// Retention defaults.
const (
	DefaultEventMaxAge   = 7 * 24 * time.Hour
	DefaultEventMaxCount = 100_000
	DefaultWorkerExpiry  = 24 * time.Hour
	DefaultRetainEvery   = time.Minute
)

func (r *Retention) defaults() {
	if r.EventMaxAge == 0 {
		r.EventMaxAge = DefaultEventMaxAge
	}
	if r.EventMaxCount == 0 {
		r.EventMaxCount = DefaultEventMaxCount
	}
	if r.WorkerExpiry == 0 {
		r.WorkerExpiry = DefaultWorkerExpiry
	}
	if r.Interval <= 0 {
		r.Interval = DefaultRetainEvery
	}
}

// retain runs the retention rules (service.Retain) while this node leads.
func (s *Server) retain() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Retention.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if leader, _ := s.node.Leadership(); !leader {
			continue
		}
		if err := s.retainOnce(time.Now()); err != nil {
			s.log.Warn("retention", "err", err)
		}
	}
}

func (s *Server) retainOnce(clock time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := s.cfg.Retention
	done, err := s.svc.Retain(ctx, clock, service.Retention{EventMaxAge: r.EventMaxAge, EventMaxCount: r.EventMaxCount,
		WorkerExpiry: r.WorkerExpiry, JobExpiry: r.JobExpiry})
	if n := len(done.ExpiredJobs); n > 0 {
		s.log.Info("deleted jobs finished long ago", "jobs", n, "finished_for", r.JobExpiry)
	}
	if n := len(done.ForgottenWorkers); n > 0 {
		s.log.Info("forgot workers lost long ago", "workers", n, "lost_for", r.WorkerExpiry)
	}
	return err
}
