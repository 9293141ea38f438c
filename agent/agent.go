// Package agent is Croft's render-node agent: it registers with the
// coordinators, heartbeats with its host's load, long-polls for work and
// runs each assignment in its own process group, streaming the output and
// the result back until they are acknowledged. See DESIGN.md.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/mem"

	"github.com/croftfarm/croft/api/client"
)

// registerTimeout bounds one registration attempt.
const registerTimeout = 10 * time.Second

// Defaults of Config's zero fields.
const (
	DefaultSlots             = 1
	DefaultHeartbeatInterval = time.Second
	DefaultPullWait          = 30 * time.Second
)

var (
	// ErrNoCoordinator means Config.Coordinators is empty.
	ErrNoCoordinator = errors.New("no coordinator URL")
	// ErrDataDirBusy means another agent holds the data directory.
	ErrDataDirBusy = errors.New("data directory in use by another agent")
)

// Config configures an Agent.
type Config struct {
	// Coordinators are the coordinators' base URLs; the client finds the
	// leader among them.
	Coordinators []string
	// Name is the worker name, os.Hostname() by default.
	Name string
	// Affinity is the worker's affinity lines, sent only if SetAffinity.
	Affinity    string
	SetAffinity bool
	// DataDir is the agent's state directory, created if needed. Default:
	// croft-agent-<name> in the temporary directory.
	DataDir string
	// Slots is how many attempts run at once. Default 1.
	Slots int
	// HeartbeatInterval defaults to 1 s.
	HeartbeatInterval time.Duration
	// PullWait is how long a pull waits for work. Default 30 s.
	PullWait time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Executor runs the attempts; its zero value uses the defaults.
	Executor Executor
}

// Agent is a render node: see Run.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	client *client.Client

	mu      sync.Mutex
	running map[int64]*Process
	slotOf  map[int64]string // attempt id -> the slot's worker name
}

// SlotName is the worker name of slot i (0-based): the agent's name for the
// first slot, "name/2", "name/3"... for the others. Each slot is its own
// worker for the coordinator, which fences one attempt per worker.
func SlotName(name string, i int) string {
	if i == 0 {
		return name
	}
	return fmt.Sprintf("%s/%d", name, i+1)
}

// New checks cfg and fills in its defaults.
func New(cfg Config) (*Agent, error) {
	if len(cfg.Coordinators) == 0 {
		return nil, ErrNoCoordinator
	}
	if cfg.Name == "" {
		name, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent name: %w", err)
		}
		cfg.Name = name
	}
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(os.TempDir(), "croft-agent-"+filepath.Base(cfg.Name))
	}
	cfg.Slots = positive(cfg.Slots, DefaultSlots)
	cfg.HeartbeatInterval = positive(cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	cfg.PullWait = positive(cfg.PullWait, DefaultPullWait)
	cfg.Logger = orDefault(cfg.Logger, slog.Default())
	cfg.Executor.Logger = orDefault(cfg.Executor.Logger, cfg.Logger)
	return &Agent{
		cfg:     cfg,
		log:     cfg.Logger.With("agent", cfg.Name),
		client:  client.New(cfg.Coordinators...),
		running: map[int64]*Process{},
		slotOf:  map[int64]string{},
	}, nil
}

// Name returns the worker name the agent uses.
func (a *Agent) Name() string { return a.cfg.Name }

// Running returns the ids of the attempts the agent runs or still reports
// on, in order.
func (a *Agent) Running() []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]int64, 0, len(a.running))
	for id := range a.running {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Run registers the agent, then heartbeats and runs assignments until ctx
// ends. Before it returns it kills its running process groups and waits
// for them to be reaped. It returns nil when ctx ends, or an error if the
// agent cannot start.
func (a *Agent) Run(ctx context.Context) error {
	unlock, err := lockDataDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	a.log.Info("agent starting", "coordinators", a.client.URLs(), "slots", a.cfg.Slots, "data_dir", a.cfg.DataDir)
	b := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	for {
		// Bounded, so an unreachable cluster shows in the log.
		rctx, cancel := context.WithTimeout(ctx, registerTimeout)
		err := a.register(rctx)
		cancel()
		if err == nil {
			break
		}
		a.log.Warn("register failed, retrying", "err", err)
		if b.wait(ctx) != nil {
			return nil
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.heartbeats(ctx) })
	for i := range a.cfg.Slots {
		wg.Go(func() { a.slot(ctx, SlotName(a.cfg.Name, i)) })
	}
	wg.Wait()
	a.log.Info("agent stopped")
	return nil
}

// lockDataDir creates dir and locks it for this agent, so that two agents
// never share one state directory.
func lockDataDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrDataDirBusy, dir)
		}
		return nil, fmt.Errorf("data directory: lock: %w", err)
	}
	return func() { f.Close() }, nil
}

// register announces every slot of the agent as a worker.
func (a *Agent) register(ctx context.Context) error {
	res := measure()
	for i := range a.cfg.Slots {
		err := a.client.Register(ctx, client.RegisterRequest{
			Name:        SlotName(a.cfg.Name, i),
			Affinity:    a.cfg.Affinity,
			SetAffinity: a.cfg.SetAffinity,
			Resources:   res,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// runningOn returns the attempts slot worker runs, in order.
func (a *Agent) runningOn(worker string) []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []int64
	for id, w := range a.slotOf {
		if w == worker {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// measure returns the host's load. A failed measurement leaves its fields
// empty: it must not stop the heartbeat.
func measure() client.Resources {
	var r client.Resources
	if cpus, err := cpu.Percent(0, true); err == nil {
		r.CPU = cpus
	}
	if vm, err := mem.VirtualMemory(); err == nil {
		r.FreeMemory, r.TotalMemory = int64(vm.Available>>20), int64(vm.Total>>20)
	}
	return r
}

// heartbeats sends a heartbeat every interval until ctx ends.
func (a *Agent) heartbeats(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.heartbeat(ctx)
	}
}

// heartbeat sends one heartbeat per slot and kills the attempts the
// coordinator no longer counts as ours. Failures wait for the next tick.
func (a *Agent) heartbeat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(a.cfg.HeartbeatInterval, 5*time.Second))
	defer cancel()
	res := measure()
	for i := range a.cfg.Slots {
		if !a.heartbeatSlot(ctx, SlotName(a.cfg.Name, i), res) {
			return
		}
	}
}

// heartbeatSlot heartbeats one slot; false means stop this round.
func (a *Agent) heartbeatSlot(ctx context.Context, worker string, res client.Resources) bool {
	resp, err := a.client.Heartbeat(ctx, client.HeartbeatRequest{Name: worker, Resources: res, Running: a.runningOn(worker)})
	switch {
	case client.IsStatus(err, http.StatusNotFound):
		a.log.Warn("coordinator does not know this agent, registering again")
		if err := a.register(ctx); err != nil {
			a.log.Warn("register failed", "err", err)
		}
		return false
	case err != nil:
		if ctx.Err() == nil {
			a.log.Warn("heartbeat failed", "err", err)
		}
		return false
	}
	for _, id := range resp.Kill {
		a.kill(id)
	}
	return true
}

// kill stops a running attempt; its reporter still sends what it printed
// and its result.
func (a *Agent) kill(id int64) {
	a.mu.Lock()
	p := a.running[id]
	a.mu.Unlock()
	if p != nil {
		a.log.Info("coordinator asked to kill attempt", "attempt", id)
		p.Kill()
	}
}

// pullSlack is how much longer than the asked wait a pull may take before
// the agent gives up on the connection.
const pullSlack = 10 * time.Second

// slot pulls and runs one assignment at a time, as worker, until ctx ends.
func (a *Agent) slot(ctx context.Context, worker string) {
	b := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, a.cfg.PullWait+pullSlack)
		as, err := a.client.Pull(pctx, client.PullRequest{Name: worker, WaitMillis: int(a.cfg.PullWait / time.Millisecond)})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("pull failed", "err", err)
				_ = b.wait(ctx)
			}
			continue
		}
		b.reset()
		if as != nil && ctx.Err() == nil {
			a.runAttempt(ctx, worker, *as)
		}
	}
}

// runAttempt runs an assignment and reports on it. It returns once the
// process is reaped and its result delivered (or dropped), so the slot
// never asks for work while the coordinator still counts it busy.
func (a *Agent) runAttempt(ctx context.Context, worker string, as client.Assignment) {
	log := a.log.With("attempt", as.AttemptID, "job", as.JobID, "worker", worker)
	log.Info("attempt starting", "title", as.Title, "command", as.Command, "dir", as.Dir)
	p := a.cfg.Executor.Start(as)
	a.mu.Lock()
	a.running[as.AttemptID] = p
	a.slotOf[as.AttemptID] = worker
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.running, as.AttemptID)
		delete(a.slotOf, as.AttemptID)
		a.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, p.Kill) // the agent stops: leave no orphans
	defer stop()
	a.report(ctx, log, worker, as, p)
	<-p.Done()
}
