package service

import (
	"context"
	"time"

	"github.com/croftfarm/croft/raftstore"
)

// Term is the sweeper's record of one leadership: start a new one (with
// the time this node became leader) at every change of leader.
type Term struct {
	// Since is when this node became leader: the failover grace runs
	// from it, and workers that never pinged this leader count from it.
	Since time.Time
	// scanned is the last full liveness scan of this term.
	scanned time.Time
}

// Swept is what one sweep decided.
type Swept struct {
	// TimedOut are the attempts ended for running past their timeout.
	TimedOut []int64
	// Lost are the workers marked lost for their silence.
	Lost []string
	// ExpiredSessions are the sessions closed for their inactivity.
	ExpiredSessions []string
}

// Sweep runs the leader's periodic duties once: attempts past their job's
// timeout fail, sessions inactive past their timeout close, workers
// silent for longer than ttl are lost (their jobs requeued). Only decisions go to Raft; the FSM checks each condition
// again with the stamped time.
func (s *Service) Sweep(ctx context.Context, term *Term, ttl time.Duration) (Swept, error) {
	var out Swept
	clock := s.clock()
	now := clock.UnixNano()
	st := s.state()
	for _, r := range st.Running() {
		if r.Timeout > 0 && now-r.StartTime > r.Timeout*int64(time.Second) {
			out.TimedOut = append(out.TimedOut, r.AttemptID)
		}
	}
	if len(out.TimedOut) > 0 {
		if _, err := s.apply(ctx, &raftstore.JobTimeout{Now: now, Attempts: out.TimedOut}); err != nil {
			return Swept{}, err
		}
	}
	expired, err := s.ExpireSessions(ctx)
	if err != nil {
		return out, err
	}
	out.ExpiredSessions = expired
	// Silent workers: those whose TTL timer fired. Once the failover grace
	// is over, and every TTL after, all the workers of the state are
	// checked: some never pinged this leader, so have no timer.
	due := s.pings.TakeDue()
	var candidates []string
	switch {
	case clock.Sub(term.Since) <= ttl:
		return out, nil // the grace: nobody is late yet
	case term.scanned.IsZero() || clock.Sub(term.scanned) >= ttl:
		candidates, term.scanned = st.WatchedWorkers(), clock
	default:
		for _, name := range due {
			if w, ok := st.Worker(name); ok && w.State != raftstore.WorkerStateLost {
				candidates = append(candidates, name)
			}
		}
	}
	lost := s.pings.Expired(candidates, now, term.Since.UnixNano(), ttl.Nanoseconds())
	if len(lost) > 0 {
		if _, err := s.apply(ctx, &raftstore.WorkerLost{Now: now, Names: lost}); err != nil {
			return out, err
		}
		out.Lost = lost
	}
	return out, nil
}

// Retention says what the leader forgets; a zero or negative field turns
// its rule off.
type Retention struct {
	// EventMaxAge forgets attempt records older than this.
	EventMaxAge time.Duration
	// EventMaxCount keeps at most this many attempt records, the newest.
	EventMaxCount int
	// WorkerExpiry forgets workers marked lost for this long.
	WorkerExpiry time.Duration
	// JobExpiry deletes root jobs finished for this long, with their
	// subtrees.
	JobExpiry time.Duration
}

// Retained is what one retention round did.
type Retained struct {
	// Pruned is true when attempt records were pruned.
	Pruned bool
	// ExpiredJobs are the root jobs deleted for their age.
	ExpiredJobs []int64
	// ForgottenWorkers are the workers forgotten after being lost long.
	ForgottenWorkers []string
}

// MaxExpirePerRound bounds the jobs one retention round deletes (one Raft
// entry); the next round takes the rest.
const MaxExpirePerRound = 10_000

// Retain applies the retention rules r at now (the leader's clock, read by
// the caller). Only decisions go to Raft (EventPrune, JobExpire,
// WorkerExpire); the FSM checks each condition again with the stamped time.
// Forgotten workers leave the heartbeat record too.
func (s *Service) Retain(ctx context.Context, now time.Time, r Retention) (Retained, error) {
	var out Retained
	st, ns := s.state(), now.UnixNano()
	prune := raftstore.EventPrune{Now: ns}
	if r.EventMaxAge > 0 {
		prune.Before = ns - r.EventMaxAge.Nanoseconds()
	}
	if r.EventMaxCount > 0 {
		prune.Keep = r.EventMaxCount
	}
	oldest, ok := st.OldestRunStart()
	if ok && (oldest < prune.Before || (prune.Keep > 0 && st.RunCount() > prune.Keep)) {
		if _, err := s.apply(ctx, &prune); err != nil {
			return out, err
		}
		out.Pruned = true
	}
	if r.JobExpiry > 0 {
		ids, err := s.expireJobs(ctx, st, ns, r.JobExpiry)
		if err != nil {
			return out, err
		}
		out.ExpiredJobs = ids
	}
	if r.WorkerExpiry <= 0 {
		return out, nil
	}
	before := ns - r.WorkerExpiry.Nanoseconds()
	var names []string
	for after, more := "", true; more; {
		var page []raftstore.Worker
		page, after, more = st.WorkersAfter(after, raftstore.ScanLimit)
		for _, w := range page {
			if w.State == raftstore.WorkerStateLost && w.LostAt != 0 && w.LostAt < before && w.CurrentEvent == 0 {
				names = append(names, w.Name)
			}
		}
	}
	if len(names) == 0 {
		return out, nil
	}
	if _, err := s.apply(ctx, &raftstore.WorkerExpire{Now: ns, Before: before, Names: names}); err != nil {
		return out, err
	}
	for _, n := range names {
		s.pings.Forget(n)
	}
	out.ForgottenWorkers = names
	return out, nil
}

// expireJobs deletes the root jobs finished before the expiry age, at
// most MaxExpirePerRound.
func (s *Service) expireJobs(ctx context.Context, st *raftstore.State, now int64, age time.Duration) ([]int64, error) {
	before := now - age.Nanoseconds()
	keep := func(j *raftstore.Job) bool { return raftstore.Expired(j, before) }
	var ids []int64
	for after, more := int64(0), true; more && len(ids) < MaxExpirePerRound; {
		var page []raftstore.Job
		page, after, more, _ = st.ChildrenAfter(0, after, raftstore.ScanLimit, keep)
		for _, j := range page {
			ids = append(ids, j.ID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	ids = ids[:min(len(ids), MaxExpirePerRound)]
	if _, err := s.apply(ctx, &raftstore.JobExpire{Now: now, Before: before, IDs: ids}); err != nil {
		return nil, err
	}
	return ids, nil
}
