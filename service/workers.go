package service

import (
	"context"
	"fmt"

	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service/liveness"
)

// Registration is a worker announcing itself.
type Registration struct {
	Name string
	IP   string
	// SetAffinity replaces the worker's affinity with Affinity.
	SetAffinity bool
	Affinity    string
	// Projects restricts the worker to these projects (nil: the whole
	// farm): those of the token it registers with.
	Projects []string
	// Ping is what the worker measured; its Time is stamped here.
	Ping liveness.Ping
	// Host is the agent's host (its slots, CPUs, memory, interpreters);
	// nil leaves the worker's link to its host as it is.
	Host *raftstore.HostInfo
}

// RegisterWorker creates the worker if it is unknown and updates its
// address, projects and (SetAffinity) affinity, then records its ping.
func (s *Service) RegisterWorker(ctx context.Context, r Registration) error {
	now := s.stamp()
	cmd := &raftstore.WorkerRegister{Now: now, Name: r.Name, IP: r.IP, SetAffinity: r.SetAffinity, Affinity: r.Affinity, Projects: r.Projects, Host: r.Host}
	if _, err := s.apply(ctx, cmd); err != nil {
		return err
	}
	r.Ping.Time = now
	s.pings.Seen(r.Name, r.Ping)
	return nil
}

// Beat is an agent's heartbeat.
type Beat struct {
	Name string
	IP   string
	// Ping is what the agent measured; its Time is stamped here.
	Ping liveness.Ping
	// Running lists the attempts the agent runs.
	Running []int64
}

// Heartbeat records a registered worker's ping, brings it back if it was
// marked lost (the only case that writes to Raft) and returns the attempts
// of Running that are no longer its own: the agent must kill them.
func (s *Service) Heartbeat(ctx context.Context, b Beat) (kill []int64, err error) {
	st := s.state()
	w, ok := st.Worker(b.Name)
	if !ok {
		return nil, fmt.Errorf("%w: worker %q: register first", raftstore.ErrNotFound, b.Name)
	}
	now := s.stamp()
	b.Ping.Time = now
	s.pings.Seen(b.Name, b.Ping)
	if w.State == raftstore.WorkerStateLost {
		if _, err := s.apply(ctx, &raftstore.WorkerRegister{Now: now, Name: b.Name, IP: b.IP, Projects: w.Projects}); err != nil {
			return nil, err
		}
	}
	for _, a := range b.Running {
		if !s.AttemptLive(b.Name, 0, a) {
			kill = append(kill, a)
		}
	}
	return kill, nil
}

// Touch records a sign of life (and measurements) of a worker the state
// knows; it reports whether it did. Made-up names are not tracked, so they
// cannot grow the leader's memory.
func (s *Service) Touch(name string, p liveness.Ping) bool {
	if _, ok := s.state().Worker(name); !ok {
		return false
	}
	p.Time = s.stamp()
	s.pings.Seen(name, p)
	return true
}

// EditWorkers applies patches to workers, all or none (none: no entry).
func (s *Service) EditWorkers(ctx context.Context, edits []raftstore.WorkerEditItem) error {
	if len(edits) == 0 {
		return nil
	}
	_, err := s.apply(ctx, &raftstore.WorkerEdit{Now: s.stamp(), Edits: edits})
	return err
}

// DeleteWorkers forgets workers, in the state and in the heartbeat record;
// their running jobs go back to waiting (none: no entry).
func (s *Service) DeleteWorkers(ctx context.Context, names []string) error {
	if len(names) == 0 {
		return nil
	}
	if _, err := s.apply(ctx, &raftstore.WorkerDelete{Now: s.stamp(), Names: names}); err != nil {
		return err
	}
	for _, n := range names {
		s.pings.Forget(n)
	}
	return nil
}

// ActOnWorkers runs raftstore.ActionWorkerStart or ActionWorkerStop on
// workers (none: no entry).
func (s *Service) ActOnWorkers(ctx context.Context, action string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	_, err := s.apply(ctx, &raftstore.WorkerAction{Now: s.stamp(), Action: action, Names: names})
	return err
}

// SetInterpreter configures interpreter name (or replaces its template):
// how code runs with it, through template, on the hosts that offer uses
// ("" means name).
func (s *Service) SetInterpreter(ctx context.Context, name, template, uses string) error {
	_, err := s.apply(ctx, &raftstore.InterpreterSet{Now: s.stamp(), Name: name, Template: template, Uses: uses})
	return err
}

// DeleteInterpreter removes configured interpreter name.
func (s *Service) DeleteInterpreter(ctx context.Context, name string) error {
	_, err := s.apply(ctx, &raftstore.InterpreterDelete{Now: s.stamp(), Name: name})
	return err
}
