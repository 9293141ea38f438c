package coordinator

import (
	"context"
	"time"

	"github.com/croftfarm/croft/raftstore"
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

// maxExpirePerRound bounds the jobs one retention round deletes (one Raft
// entry); the next round takes the rest.
const maxExpirePerRound = 10_000

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

// retain runs the retention rules while this node leads. Only decisions go
// to Raft (EventPrune, WorkerExpire); the FSM checks each condition again
// with the stamped time.
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

// expireJobs deletes the root jobs finished before the expiry age.
func (s *Server) expireJobs(ctx context.Context, st *raftstore.State, now int64) error {
	before := now - s.cfg.Retention.JobExpiry.Nanoseconds()
	keep := func(j *raftstore.Job) bool { return raftstore.Expired(j, before) }
	var ids []int64
	for after, more := int64(0), true; more && len(ids) < maxExpirePerRound; {
		var page []raftstore.Job
		page, after, more, _ = st.ChildrenAfter(0, after, raftstore.ScanLimit, keep)
		for _, j := range page {
			ids = append(ids, j.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	ids = ids[:min(len(ids), maxExpirePerRound)]
	s.log.Info("deleting jobs finished long ago", "jobs", len(ids), "finished_for", s.cfg.Retention.JobExpiry)
	_, err := s.node.Apply(ctx, &raftstore.JobExpire{Now: now, Before: before, IDs: ids})
	return err
}

func (s *Server) retainOnce(clock time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, st, now := s.cfg.Retention, s.node.FSM().State(), clock.UnixNano()
	prune := raftstore.EventPrune{Now: now}
	if r.EventMaxAge > 0 {
		prune.Before = now - r.EventMaxAge.Nanoseconds()
	}
	if r.EventMaxCount > 0 {
		prune.Keep = r.EventMaxCount
	}
	oldest, ok := st.OldestRunStart()
	if ok && (oldest < prune.Before || (prune.Keep > 0 && st.RunCount() > prune.Keep)) {
		if _, err := s.node.Apply(ctx, &prune); err != nil {
			return err
		}
	}
	if r.JobExpiry > 0 {
		if err := s.expireJobs(ctx, st, now); err != nil {
			return err
		}
	}
	if r.WorkerExpiry <= 0 {
		return nil
	}
	before := now - r.WorkerExpiry.Nanoseconds()
	var names []string
	for after, more := "", true; more; {
		var page []raftstore.Worker
		page, after, more = st.WorkersAfter(after, raftstore.ScanLimit)
		for _, w := range page {
			if w.State == raftstore.WorkerTimeout && w.LostAt != 0 && w.LostAt < before && w.CurrentEvent == 0 {
				names = append(names, w.Name)
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	s.log.Info("forgetting workers lost long ago", "workers", len(names), "lost_for", r.WorkerExpiry)
	if _, err := s.node.Apply(ctx, &raftstore.WorkerExpire{Now: now, Before: before, Names: names}); err != nil {
		return err
	}
	for _, n := range names {
		s.pings.Forget(n)
	}
	return nil
}
