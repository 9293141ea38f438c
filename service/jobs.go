package service

import (
	"context"

	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service/dispatch"
)

// CreateJobs creates specs in one entry, all or none, within the project
// quota, and returns their ids in order. Pulls waiting for work are
// claimed for the jobs that can start at once: a pick for each goes into
// the create's own entry, and the pull gets its job when that is applied.
func (s *Service) CreateJobs(ctx context.Context, specs []raftstore.JobSpec) ([]int64, error) {
	c := &raftstore.JobCreate{Now: s.stamp(), Jobs: specs, MaxProjectJobs: s.maxProjectJobs}
	if s.offers.Len() > 0 {
		if ws := s.offers.Claim(min(dispatch.Startable(c), dispatch.MaxClaim)); len(ws) > 0 {
			return s.createAndOffer(ctx, c, ws)
		}
	}
	res, err := s.apply(ctx, c)
	if err != nil {
		return nil, err
	}
	return resultOf[[]int64](res, c)
}

// createAndOffer applies a create and, right after it in the same entry, a
// pick for each claimed waiter (applyAndOffer).
func (s *Service) createAndOffer(ctx context.Context, c *raftstore.JobCreate, ws []*dispatch.Waiter) ([]int64, error) {
	res, err := s.applyAndOffer(ctx, c, c.Now, ws)
	if err != nil {
		return nil, err
	}
	return resultOf[[]int64](res, c)
}

// applyAndOffer applies cmd (a command that makes jobs runnable) and, in
// the same entry, a pick at now for each claimed waiter; it hands each
// waiter its pick's result and returns cmd's.
func (s *Service) applyAndOffer(ctx context.Context, cmd raftstore.Command, now int64, ws []*dispatch.Waiter) (any, error) {
	cmds := make([]raftstore.Command, 0, 1+len(ws))
	cmds = append(cmds, cmd)
	for _, w := range ws {
		cmds = append(cmds, &raftstore.Pick{Now: now, Worker: w.Worker, IP: w.IP})
	}
	out, err := s.applier.ApplyGroup(ctx, cmds...)
	for i, w := range ws {
		r := dispatch.Result{Err: err}
		if err == nil {
			switch v := out[i+1].(type) {
			case *raftstore.Assignment:
				r.Assignment = v
			case error:
				r.Err = v
			}
		}
		w.Deliver(r)
	}
	if err != nil {
		return nil, err
	}
	if e, ok := out[0].(error); ok {
		return nil, e
	}
	return out[0], nil
}

// EditJobs applies patches to jobs, all or none (none: no entry).
func (s *Service) EditJobs(ctx context.Context, edits []raftstore.JobEditItem) error {
	if len(edits) == 0 {
		return nil
	}
	_, err := s.apply(ctx, &raftstore.JobEdit{Now: s.stamp(), Edits: edits})
	return err
}

// DeleteJobs deletes jobs with their subtrees (none: no entry).
func (s *Service) DeleteJobs(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.apply(ctx, &raftstore.JobDelete{Now: s.stamp(), IDs: ids})
	return err
}

// ActOnJobs runs one of raftstore's job verbs (raftstore.ActionReset,
// ActionResetError, ActionStart, ActionPause) on jobs (none: no entry).
func (s *Service) ActOnJobs(ctx context.Context, action string, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.apply(ctx, &raftstore.JobAction{Now: s.stamp(), Action: action, IDs: ids})
	return err
}

// SetDependencies replaces the dependencies of job id.
func (s *Service) SetDependencies(ctx context.Context, id int64, deps []int64) error {
	_, err := s.apply(ctx, &raftstore.JobSetDeps{Now: s.stamp(), ID: id, Deps: deps})
	return err
}

// NameAffinities names affinity ids; an empty name frees its id (none: no
// entry).
func (s *Service) NameAffinities(ctx context.Context, names map[int]string) error {
	if len(names) == 0 {
		return nil
	}
	_, err := s.apply(ctx, &raftstore.AffinitySet{Names: names})
	return err
}
