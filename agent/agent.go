// Package agent is Croft's render-node agent: it registers with the
// coordinators, heartbeats with its host's load, long-polls for work and
// runs each assignment in a process group of its own, under its slot's
// long-lived supervisor, its output spooled to disk and streamed back, with the result, until they
// are acknowledged. A job outlives its agent, whether it crashed or was
// stopped (Run's context ended): the next agent re-adopts it, or delivers
// its result, or reports it lost. Drain stops an agent for good, once its
// jobs are over. See DESIGN.md.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/mem"

	"github.com/croftfarm/croft/api/client"
)

// registerTimeout bounds one registration attempt.
const registerTimeout = 10 * time.Second

// firstRegisterTimeout bounds the first registration attempt.
const firstRegisterTimeout = 1500 * time.Millisecond

// Defaults of Config's zero fields.
const (
	DefaultSlots             = 1
	DefaultHeartbeatInterval = time.Second
	DefaultPullWait          = 30 * time.Second
	// DefaultLeaseTimeout leaves the coordinator's default WorkerTTL
	// (15 s) room for the lease check (1 s) and DefaultKillGrace (2 s),
	// with margin.
	DefaultLeaseTimeout = 8 * time.Second
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
	// Token authenticates the agent (a token of the agent role, bound to
	// its worker names); empty sends none.
	Token string
	// TLS configures https:// coordinator URLs; nil uses the system's roots.
	TLS *tls.Config
	// Name is the worker name, os.Hostname() by default.
	Name string
	// Affinity is the worker's affinity lines, sent only if SetAffinity.
	Affinity    string
	SetAffinity bool
	// DataDir is the agent's state directory, created if needed: the
	// running attempts' journals and output live there, so that a
	// restarted agent finishes them. Default: croft-agent-<name> in the
	// temporary directory.
	DataDir string
	// Slots is how many attempts run at once. Default 1.
	Slots int
	// HeartbeatInterval defaults to 1 s.
	HeartbeatInterval time.Duration
	// PullWait is how long a pull waits for work. Default 30 s.
	PullWait time.Duration
	// SupervisorPath is the croft binary that supervises each slot's attempts
	// (run as "SupervisorPath agent-supervise", see SuperviseMain).
	// Default: os.Executable().
	SupervisorPath string
	// LeaseTimeout is how long jobs run on without a successful heartbeat
	// round: past it, the agent stops its jobs and each supervisor stops
	// its own (the agent may be dead), to be reported lost. The
	// coordinator runs the job of a worker silent for its WorkerTTL
	// elsewhere, so LeaseTimeout + 1 s (the supervisors' lease check) +
	// KillGrace must stay below WorkerTTL, or a job could run twice at
	// once. Default DefaultLeaseTimeout.
	LeaseTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Executor tunes how attempts run; its zero value uses the defaults.
	Executor Executor
	// KillOnStop: when Run's context ends, stop the running jobs (they
	// are reported lost by the next start and run again) instead of
	// leaving them running for the next start to re-adopt.
	KillOnStop bool
	// Control: Run writes its pid to DataDir (see RequestDrain) and
	// drains on DrainSignal. Only for an agent that has its process to
	// itself: the signal reaches the whole process.
	Control bool
	// Interpreters are advertised besides those found on PATH
	// (DefaultInterpreters), replacing a found one of the same name: Name
	// at most client.MaxInterpreterName bytes of letters, digits, '.',
	// '_', '+' and '-'; Path absolute, or a command found on PATH.
	Interpreters []client.Interpreter
}

// Agent is a render node: see Run.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	client *client.Client
	run    *runner
	// contact is the leaseClock() reading at the start of the last
	// heartbeat round that reached the coordinators for every worker.
	contact atomic.Int64
	// detach: when Run's context ends, leave the jobs running and their
	// attempts on disk, as a kill -9 of the agent does (!KillOnStop).
	detach bool
	// draining is closed by Drain.
	draining  chan struct{}
	drainOnce sync.Once
	// interpreters are advertised when the slots register.
	interpreters []client.Interpreter

	mu       sync.Mutex
	attempts map[int64]*attempt // running, or still reporting
}

// attempt is one assignment the agent runs or reports on.
type attempt struct {
	dir string
	j   *journal // written by the attempt's own goroutine only
	p   *process
	log *slog.Logger
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
	// Supervisors run in other directories.
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	cfg.DataDir = dir
	if cfg.SupervisorPath == "" {
		if cfg.SupervisorPath, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
	}
	cfg.Slots = positive(cfg.Slots, DefaultSlots)
	cfg.HeartbeatInterval = positive(cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	cfg.PullWait = positive(cfg.PullWait, DefaultPullWait)
	cfg.LeaseTimeout = positive(cfg.LeaseTimeout, DefaultLeaseTimeout)
	cfg.Logger = orDefault(cfg.Logger, slog.Default())
	cfg.Executor.Logger = orDefault(cfg.Executor.Logger, cfg.Logger)
	log := cfg.Logger.With("agent", cfg.Name)
	interps, err := interpreters(os.Getenv("PATH"), DefaultInterpreters, cfg.Interpreters)
	if err != nil {
		return nil, err
	}
	return &Agent{
		cfg:          cfg,
		log:          log,
		client:       client.NewWith(client.Options{Token: cfg.Token, TLS: cfg.TLS}, cfg.Coordinators...),
		run:          newRunner(cfg.Executor, cfg.SupervisorPath, filepath.Join(dir, leaseName), cfg.LeaseTimeout),
		detach:       !cfg.KillOnStop,
		draining:     make(chan struct{}),
		interpreters: interps,
		attempts:     map[int64]*attempt{},
	}, nil
}

// Name returns the worker name the agent uses.
func (a *Agent) Name() string { return a.cfg.Name }

// Running returns the ids of the attempts the agent runs or still reports
// on, in order.
func (a *Agent) Running() []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]int64, 0, len(a.attempts))
	for id := range a.attempts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Drain makes the agent take no more work and Run return once the jobs it
// runs ended and their results were acknowledged (or refused for good). It
// may be called at any time, more than once.
func (a *Agent) Drain() {
	a.drainOnce.Do(func() { close(a.draining) })
}

// Run finishes the attempts an earlier agent left in the data directory,
// registers the agent, then heartbeats and runs assignments until ctx
// ends, or until it drained (see Drain). When ctx ends it leaves its
// running jobs running, their attempts on disk, for the next start to
// re-adopt, as after a crash; with KillOnStop it stops them and waits for
// them instead, and the next start reports them lost. It returns nil when
// ctx ends or the agent drained, or an error if the agent cannot start.
func (a *Agent) Run(ctx context.Context) error {
	unlock, err := lockDataDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	if a.cfg.Control {
		// Caught before the pid file names this process: its default
		// action would kill the agent.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, DrainSignal)
		defer signal.Stop(sigs)
		if err := writePidFile(a.cfg.DataDir); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		defer removePidFile(a.cfg.DataDir)
		returned := make(chan struct{})
		defer close(returned)
		go func() {
			select {
			case <-sigs:
				a.Drain()
			case <-returned:
			}
		}()
	}
	a.log.Info("agent starting", "coordinators", a.client.URLs(), "slots", a.cfg.Slots, "data_dir", a.cfg.DataDir,
		"lease_timeout", a.cfg.LeaseTimeout, "kill_on_stop", a.cfg.KillOnStop, "interpreters", len(a.interpreters))
	// Until a round succeeds, the last lease (an earlier agent's) says
	// when the coordinators were last heard.
	last, err := readLease(a.run.lease)
	if err != nil {
		last = leaseClock()
	}
	a.contact.Store(last)
	recovered, err := a.recover()
	if err != nil {
		return err
	}
	// pulls ends when the agent drains (or stops): no more work is taken.
	pulls, stopPulls := context.WithCancel(ctx)
	defer stopPulls()
	go func() {
		select {
		case <-a.draining:
			a.log.Info("draining: taking no more work, exiting once the running jobs are over and reported")
			stopPulls()
		case <-pulls.Done():
		}
	}()
	// bg (heartbeats, fencing) ends once the work did: a draining agent
	// heartbeats until its last result is acknowledged.
	bg, stopBg := context.WithCancel(ctx)
	defer stopBg()
	var work, bgWork sync.WaitGroup
	// A slot asks for work only once the attempts recovered in its
	// directory or under its worker name are over: it reuses the
	// directory, and the coordinator takes a pull from a busy worker for
	// a lost attempt.
	busy := map[string]*sync.WaitGroup{} // by slot directory and by worker
	for _, at := range recovered {
		done := make(chan struct{})
		for _, key := range []string{at.dir, at.j.Worker} {
			w := busy[key]
			if w == nil {
				w = &sync.WaitGroup{}
				busy[key] = w
			}
			w.Go(func() { <-done })
		}
		work.Go(func() {
			defer close(done)
			a.finish(ctx, at, false) // its slot, once free, pulls on its own
		})
	}
	bgWork.Go(func() { a.fenceWatch(bg) })
	// A drain ends the registration too: heartbeats register the workers
	// the coordinator does not know.
	a.registerAll(pulls)
	if ctx.Err() == nil {
		bgWork.Go(func() { a.heartbeats(bg) })
		for i := range a.cfg.Slots {
			name, dir := SlotName(a.cfg.Name, i), a.slotDir(i)
			work.Go(func() {
				for _, key := range []string{dir, name} {
					if w := busy[key]; w != nil {
						w.Wait()
					}
				}
				a.slot(ctx, pulls, name, dir)
			})
		}
	}
	work.Wait()
	stopBg()
	bgWork.Wait()
	switch {
	case ctx.Err() == nil:
		a.log.Info("agent drained: no job left, stopped")
	case a.detach:
		a.log.Info("agent stopped; running jobs run on, for the next start to re-adopt within the lease timeout", "lease_timeout", a.cfg.LeaseTimeout)
	default:
		a.log.Info("agent stopped")
	}
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

// slotDir is slot i's directory (0-based; named from 1, as SlotName).
func (a *Agent) slotDir(i int) string {
	return filepath.Join(a.cfg.DataDir, slotsDir, strconv.Itoa(i+1))
}

func (a *Agent) attemptLog(j *journal) *slog.Logger {
	return a.log.With("attempt", j.Assignment.AttemptID, "job", j.Assignment.JobID, "worker", j.Worker)
}

// recover takes over the attempts an earlier agent left in its slots'
// directories: each one's result is there (to deliver), or its supervisor
// still runs (re-adopted), or it is gone without a result (reported lost).
// It runs before any slot asks for work, and creates the slots'
// directories.
func (a *Agent) recover() ([]*attempt, error) {
	for i := range a.cfg.Slots {
		if err := os.MkdirAll(a.slotDir(i), 0o755); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
	}
	dirs, err := slotDirs(filepath.Join(a.cfg.DataDir, slotsDir))
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	var out []*attempt
	for _, dir := range dirs {
		j, err := readJournal(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a free slot
		}
		if err != nil {
			// Not reportable: the worker's next pull requeues it. Set
			// aside for a human to look at, so the slot can work.
			a.log.Error("attempt journal unreadable, setting it aside", "slot", dir, "err", err)
			if err := setJournalAside(dir); err != nil {
				return nil, fmt.Errorf("data directory: %w", err)
			}
			continue
		}
		at := &attempt{dir: dir, j: j, log: a.attemptLog(j)}
		at.p = a.run.adopt(dir, j)
		if isClosed(at.p.done) {
			at.log.Info("attempt ended while the agent was down", "lost", at.p.res.Lost, "note", at.p.res.Note)
		} else {
			at.log.Info("re-adopted a running attempt", "pid", j.Pid)
		}
		a.track(at)
		out = append(out, at)
	}
	return out, nil
}

func (a *Agent) track(at *attempt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.attempts[at.j.Assignment.AttemptID] = at
}

func (a *Agent) untrack(at *attempt) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.attempts, at.j.Assignment.AttemptID)
}

// tracked returns the attempts running or reporting.
func (a *Agent) tracked() []*attempt {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*attempt, 0, len(a.attempts))
	for _, at := range a.attempts {
		out = append(out, at)
	}
	return out
}

// slotNames returns the slots' worker names.
func (a *Agent) slotNames() []string {
	names := make([]string, 0, a.cfg.Slots)
	for i := range a.cfg.Slots {
		names = append(names, SlotName(a.cfg.Name, i))
	}
	return names
}

// workers returns the slots' worker names, then those of attempts under
// other names (left by an agent with more slots or another name): their
// heartbeats keep the coordinator from giving up on those attempts.
func (a *Agent) workers() []string {
	names := a.slotNames()
	var extra []string
	for _, at := range a.tracked() {
		if w := at.j.Worker; !slices.Contains(names, w) && !slices.Contains(extra, w) {
			extra = append(extra, w)
		}
	}
	slices.Sort(extra)
	return append(names, extra...)
}

// registerAll registers the slots, retrying until it works; false if ctx
// ended first.
func (a *Agent) registerAll(ctx context.Context) bool {
	b := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	a.log.Info("registering with the coordinators", "coordinators", a.client.URLs())
	// The first try is short, so an unreachable cluster shows in the log
	// at once, with why (it printed nothing for 8 s: issue 12); later
	// ones are longer, for a slow or busy cluster.
	timeout := firstRegisterTimeout
	for {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		err := a.register(rctx, a.slotNames()...)
		cancel()
		if err == nil {
			return true
		}
		timeout = min(2*timeout, registerTimeout)
		a.log.Warn("cannot register with the coordinators, retrying", "coordinators", a.client.URLs(), "err", err)
		if b.wait(ctx) != nil {
			return false
		}
	}
}

// register announces workers to the coordinator.
func (a *Agent) register(ctx context.Context, workers ...string) error {
	res := measure()
	for _, w := range workers {
		err := a.client.Register(ctx, client.RegisterRequest{
			Name:         w,
			Affinity:     a.cfg.Affinity,
			SetAffinity:  a.cfg.SetAffinity,
			Resources:    res,
			Slots:        a.cfg.Slots,
			CPUs:         runtime.NumCPU(),
			Interpreters: a.interpreters,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// runningOn returns the attempts of worker, in order.
func (a *Agent) runningOn(worker string) []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ids []int64
	for id, at := range a.attempts {
		if at.j.Worker == worker {
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

// heartbeats sends a heartbeat round at once (re-adopted jobs need their
// lease renewed), then every interval until ctx ends.
func (a *Agent) heartbeats(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		a.heartbeat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heartbeat sends one heartbeat per worker and kills the attempts the
// coordinator no longer counts as ours. When every worker was heard, it
// renews the lease. Failures wait for the next tick.
func (a *Agent) heartbeat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(a.cfg.HeartbeatInterval, 5*time.Second))
	defer cancel()
	// The coordinator heard each worker after this: a lease from here is
	// never later than its view.
	begun := leaseClock()
	res := measure()
	for _, w := range a.workers() {
		if !a.heartbeatWorker(ctx, w, res) {
			return
		}
	}
	a.contact.Store(begun)
	if err := writeLease(a.run.lease, begun); err != nil {
		a.log.Warn("lease not renewed: supervisors will stop their jobs", "err", err)
	}
}

// heartbeatWorker heartbeats one worker; false means stop this round.
func (a *Agent) heartbeatWorker(ctx context.Context, worker string, res client.Resources) bool {
	resp, err := a.client.Heartbeat(ctx, client.HeartbeatRequest{Name: worker, Resources: res, Running: a.runningOn(worker)})
	switch {
	case client.IsStatus(err, http.StatusNotFound):
		a.log.Warn("coordinator does not know this worker, registering again", "worker", worker)
		if err := a.register(ctx, worker); err != nil {
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
	at := a.attempts[id]
	a.mu.Unlock()
	if at != nil {
		at.log.Info("coordinator asked to kill attempt")
		at.p.kill()
	}
}

// silence is how long ago the last full heartbeat round began.
func (a *Agent) silence() time.Duration {
	return time.Duration(leaseClock() - a.contact.Load())
}

// fenceWatch stops every running job once no heartbeat round succeeded
// for the lease timeout: the coordinators may have given up on this agent
// and run the jobs elsewhere. They are reported lost when the agent can
// talk again (a 409 if the coordinator gave up on them, a requeue if not).
// The supervisors do the same on their own, in case the agent is dead.
func (a *Agent) fenceWatch(ctx context.Context) {
	t := time.NewTicker(leaseCheckPeriod(a.cfg.LeaseTimeout))
	defer t.Stop()
	cut := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		silence := a.silence()
		if silence <= a.cfg.LeaseTimeout {
			cut = false
			continue
		}
		running := a.tracked()
		if !cut && len(running) > 0 {
			a.log.Warn("cut off from the coordinators: stopping the running jobs, to be reported lost", "silence", silence.Round(time.Millisecond))
			cut = true
		}
		for _, at := range running {
			at.p.fence()
		}
	}
}

// pullSlack is how much longer than the asked wait a pull may take before
// the agent gives up on the connection.
const pullSlack = 10 * time.Second

// slot pulls and runs one assignment at a time, as worker, in directory
// dir, until ctx ends, or pulls ends (the agent drains) and its attempt is
// over. Its attempts run one after another under one supervisor, started
// with the slot (and again if it ended): only the job's shell starts per
// attempt.
func (a *Agent) slot(ctx, pulls context.Context, worker, dir string) {
	b := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	var sup *supervisor
	defer func() {
		if a.detach {
			sup.close() // as after a kill -9: it finishes its job and exits
		} else {
			sup.stop(2*a.run.grace + time.Second)
		}
	}()
	// next is an assignment handed back with the last result: the worker
	// runs it already, no pull needed.
	var next *client.Assignment
	for ctx.Err() == nil {
		as := next
		if as == nil {
			if pulls.Err() != nil {
				return // draining
			}
			if a.silence() > a.cfg.LeaseTimeout {
				_ = b.wait(pulls) // cut off: a job taken now would be stopped at once
				continue
			}
			sup = a.supervisor(sup)
			// A drain cancels the pull: an assignment the coordinator
			// made just then, its reply lost, is requeued once the
			// worker falls silent.
			pctx, cancel := context.WithTimeout(pulls, a.cfg.PullWait+pullSlack)
			var err error
			as, err = a.client.Pull(pctx, client.PullRequest{Name: worker, WaitMillis: int(a.cfg.PullWait / time.Millisecond)})
			cancel()
			if err != nil {
				if pulls.Err() == nil {
					a.log.Warn("pull failed", "err", err)
					_ = b.wait(pulls)
				}
				continue
			}
			b.reset()
		}
		next = nil
		// Run even while draining: the coordinator gave it to this worker.
		if as != nil && ctx.Err() == nil {
			// It may have ended during the pull (an idle supervisor
			// exits when the lease is stale).
			sup = a.supervisor(sup)
			at := a.begin(worker, dir, *as, sup)
			next = a.finish(ctx, at, true)
		}
	}
}

// supervisor returns s if it still takes work, else a new supervisor; nil
// if none can start (the attempt then tries once more, and explains).
func (a *Agent) supervisor(s *supervisor) *supervisor {
	if s != nil && s.alive() {
		return s
	}
	s.close()
	s, err := a.run.spawn()
	if err != nil {
		a.log.Warn("cannot start a supervisor", "path", a.run.supervisor, "err", err)
		return nil
	}
	return s
}

// begin starts an assignment in slot directory dir, under supervisor sup.
func (a *Agent) begin(worker, dir string, as client.Assignment, sup *supervisor) *attempt {
	j := &journal{Assignment: as, Worker: worker, Started: time.Now().UnixNano()}
	at := &attempt{dir: dir, j: j, log: a.attemptLog(j)}
	// The command (and any secret in it) only at debug level.
	at.log.Info("attempt starting", "title", as.Title, "dir", as.Dir)
	at.log.Debug("attempt command", "command", as.Command)
	at.p = a.run.start(at.dir, j, sup)
	a.track(at)
	return at
}

// finish reports on an attempt until the coordinator is done with it, and
// returns once its process ended too, so the slot never asks for work
// while the coordinator still counts it busy; then its slot is freed (its
// output and journal emptied). If ctx ends first, the attempt stays on
// disk for the next start, its job left running (re-adopted then), or,
// with KillOnStop, stopped (reported lost then). With next, the result asks for the worker's next job, returned
// if one was given (see report).
func (a *Agent) finish(ctx context.Context, at *attempt, next bool) *client.Assignment {
	defer a.untrack(at)
	stop := context.AfterFunc(ctx, func() {
		if !a.detach {
			at.p.fence()
		}
	})
	defer stop()
	over, as := a.report(ctx, at, next)
	if over {
		at.p.delivered()
	}
	if !over && a.detach {
		at.log.Info("attempt left running, for the next start to re-adopt")
		return nil // as after a kill -9: the job runs on
	}
	<-at.p.done
	if over {
		// The output first: a journal left behind (a crash in between)
		// is reported again, which the coordinator answers idempotently.
		if err := errors.Join(clearOutput(at.dir), clearJournal(at.dir)); err != nil {
			at.log.Warn("cannot free the slot", "dir", at.dir, "err", err)
		}
	}
	return as
}
