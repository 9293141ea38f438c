// Package service is the farm's service layer: typed operations (create
// jobs, pull, report, sweep, ...) that stamp the leader's time, build the
// Raft commands, apply them and return typed results. It is the only user
// of raftstore commands; the dialects under api/ call it through small
// interfaces of their own. Reads may go to the state directly (State).
// See DESIGN.md.
package service

import (
	"context"
	"fmt"
	"time"

	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service/dispatch"
	"github.com/croftfarm/croft/service/liveness"
)

// Applier proposes commands to the replicated state: the coordinator's
// Raft node adapter, which maps node errors to the API's (a command not
// applied is apierr.ErrUnavailable, ...). A command the FSM refuses comes
// back as its error (raftstore's sentinels).
type Applier interface {
	// Apply proposes cmd and returns its result once applied.
	Apply(ctx context.Context, cmd raftstore.Command) (any, error)
	// ApplyGroup proposes cmds in one entry, in order; the result holds
	// one value (or refusal error) per command.
	ApplyGroup(ctx context.Context, cmds ...raftstore.Command) ([]any, error)
}

// DefaultWorkerTTL is the silence after which a worker is lost, when the
// caller gives no tracker of its own.
const DefaultWorkerTTL = 15 * time.Second

// Config builds a Service. Applier and State are required.
type Config struct {
	Applier Applier
	// State returns the current replicated state (hold it for one read).
	State func() *raftstore.State
	// Clock is the leader's clock (default time.Now).
	Clock func() time.Time
	// Pings is the leader's heartbeat record (default: a new one with
	// DefaultWorkerTTL).
	Pings *liveness.Tracker
	// Offers holds the pulls waiting for work; a create picks for some
	// of them in its own entry (default: a new registry).
	Offers *dispatch.Offers
	// LogCap bounds the output kept of one job, in bytes (0 or more than
	// raftstore.MaxLogBytes: that).
	LogCap int64
	// MaxProjectJobs bounds the jobs of one project (0: no bound).
	MaxProjectJobs int
}

// Service runs the farm's operations on the leader. It is safe for
// concurrent use.
type Service struct {
	applier        Applier
	state          func() *raftstore.State
	clock          func() time.Time
	pings          *liveness.Tracker
	offers         *dispatch.Offers
	logCap         int64
	maxProjectJobs int
}

// New returns a service over cfg.
func New(cfg Config) *Service {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Pings == nil {
		cfg.Pings = liveness.New(DefaultWorkerTTL)
	}
	if cfg.Offers == nil {
		cfg.Offers = &dispatch.Offers{}
	}
	if cfg.LogCap <= 0 || cfg.LogCap > raftstore.MaxLogBytes {
		cfg.LogCap = raftstore.MaxLogBytes
	}
	return &Service{applier: cfg.Applier, state: cfg.State, clock: cfg.Clock, pings: cfg.Pings,
		offers: cfg.Offers, logCap: cfg.LogCap, maxProjectJobs: cfg.MaxProjectJobs}
}

// State returns the current replicated state, for reads.
func (s *Service) State() *raftstore.State { return s.state() }

// LogCap is the most output bytes kept of one job.
func (s *Service) LogCap() int64 { return s.logCap }

// stamp is the leader's clock, read before a command is proposed.
func (s *Service) stamp() int64 { return s.clock().UnixNano() }

// apply proposes cmd; a refusal the applier hands back as a result value
// is returned as the error.
func (s *Service) apply(ctx context.Context, cmd raftstore.Command) (any, error) {
	res, err := s.applier.Apply(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if e, ok := res.(error); ok {
		return nil, e
	}
	return res, nil
}

// resultOf types a command's result; a result of another type is a bug of
// this package, reported as raftstore.ErrInternal.
func resultOf[T any](res any, cmd raftstore.Command) (T, error) {
	v, ok := res.(T)
	if !ok {
		var zero T
		return zero, fmt.Errorf("%w: %T returned %T", raftstore.ErrInternal, cmd, res)
	}
	return v, nil
}

// Single makes an Applier of a store that applies each command as its own
// entry and has no group commit (tests, a single process): a group goes
// as one raftstore.Batch entry, which is what the FSM applies for a group.
func Single(a interface {
	Apply(ctx context.Context, cmd raftstore.Command) (any, error)
}) Applier {
	return single{a}
}

type single struct {
	a interface {
		Apply(ctx context.Context, cmd raftstore.Command) (any, error)
	}
}

func (s single) Apply(ctx context.Context, cmd raftstore.Command) (any, error) {
	return s.a.Apply(ctx, cmd)
}

func (s single) ApplyGroup(ctx context.Context, cmds ...raftstore.Command) ([]any, error) {
	b := &raftstore.Batch{Entries: make([][]byte, len(cmds))}
	for i, c := range cmds {
		data, err := raftstore.Encode(c)
		if err != nil {
			return nil, err
		}
		b.Entries[i] = data
	}
	res, err := s.a.Apply(ctx, b)
	if err != nil {
		return nil, err
	}
	out, ok := res.([]any)
	if !ok || len(out) != len(cmds) {
		return nil, fmt.Errorf("%w: a group of %d returned %T", raftstore.ErrInternal, len(cmds), res)
	}
	return out, nil
}
