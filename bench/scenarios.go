package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/internal/localcluster"
)

// leaderClient returns a client that talks straight to the leader.
func (r *runner) leaderClient(ctx context.Context) (*client.Client, error) {
	c := r.client(r.urls...)
	if _, err := c.WaitLeader(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// leaderPid returns the leader's process id (0 for an existing cluster).
func (r *runner) leaderPid(ctx context.Context) int {
	if r.cluster == nil {
		return 0
	}
	l, err := r.cluster.Leader(ctx)
	if err != nil {
		return 0
	}
	return l.Pid()
}

// cpuShare runs fn and returns the share of one core the process used.
func cpuShare(pid int, fn func() error) (float64, error) {
	if pid == 0 {
		return math0(), fn()
	}
	c0, _, err := localcluster.ProcStats(pid)
	if err != nil {
		return math0(), err
	}
	t0 := time.Now()
	ferr := fn()
	c1, _, err := localcluster.ProcStats(pid)
	if err != nil {
		return math0(), err
	}
	return float64(c1-c0) / float64(time.Since(t0)), ferr
}

func math0() float64 { return 0 }

// group creates a group of n children running command, in one request, and
// returns its id. The group's priority orders its children among others.
func group(ctx context.Context, c *client.Client, title, command string, n int, paused bool, priority ...int) (int64, error) {
	type child struct {
		Title   string `json:"title"`
		Command string `json:"command"`
		Retry   int    `json:"retry"`
	}
	kids := make([]child, n)
	for i := range kids {
		kids[i] = child{Title: title + " " + strconv.Itoa(i), Command: command}
	}
	body := map[string]any{"title": title, "children": kids}
	if len(priority) > 0 {
		body["priority"] = priority[0]
	}
	if paused {
		body["state"] = "PAUSED"
	}
	var id int64
	err := c.Do(ctx, http.MethodPut, "/api/jobs", body, &id)
	return id, err
}

// waitFinished polls a group until total_finished reaches want.
func waitFinished(ctx context.Context, c *client.Client, id int64, want int) error {
	for {
		j, err := c.Job(ctx, id)
		if err == nil && j.TotalFinished >= want {
			return nil
		}
		if err == nil && j.TotalErrors > 0 {
			return fmt.Errorf("group %d: %d children failed", id, j.TotalErrors)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("group %d: %d of %d finished: %w", id, j.TotalFinished, want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func runSubmit(ctx context.Context, r *runner) ([]Result, error) {
	c, err := r.leaderClient(ctx)
	if err != nil {
		return nil, err
	}
	n, conc := r.cfg.SubmitJobs, r.cfg.SubmitClients
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	t0 := time.Now()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				s := time.Now()
				if _, err := c.CreateJob(ctx, client.NewJob{Title: "submit", Command: "true", State: "PAUSED"}); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				lat[i] = time.Since(s)
			}
		})
	}
	wg.Wait()
	el := time.Since(t0)
	if firstErr != nil {
		return nil, firstErr
	}
	note := fmt.Sprintf("%d creates, %d clients", n, conc)
	rate := float64(n) / el.Seconds()
	out := []Result{
		atLeast("submit", "creates/s", rate, "jobs/s", 2000),
		plain("submit", "latency p50", percentile(lat, 50), "ms"),
		plain("submit", "latency p99", percentile(lat, 99), "ms"),
	}
	out[0].Note = note

	// The same with group commit off, on a cluster of its own.
	if r.cluster != nil {
		nb, err := r.compareNoBatch(ctx, n, conc)
		if err != nil {
			return append(out, Result{Scenario: "submit", Metric: "no-batch", Note: err.Error()}), nil
		}
		res := plain("submit", "creates/s, batching off", nb, "jobs/s")
		res.Note = fmt.Sprintf("batching on is %.1fx", rate/nb)
		out = append(out, res)
	}
	return out, nil
}

// compareNoBatch measures creates/s on a cluster started with --max-batch 1.
func (r *runner) compareNoBatch(ctx context.Context, n, conc int) (float64, error) {
	c, err := localcluster.Start(ctx, r.cfg.Bin, r.cluster.Dir+"-nobatch", 3, "--max-batch", "1")
	if err != nil {
		return 0, err
	}
	defer c.Close()
	cl := c.Client()
	if _, err := cl.WaitLeader(ctx); err != nil {
		return 0, err
	}
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	t0 := time.Now()
	for range conc {
		wg.Go(func() {
			for int(next.Add(1)) <= n && ctx.Err() == nil {
				if _, err := cl.CreateJob(ctx, client.NewJob{Title: "submit", Command: "true", State: "PAUSED"}); err != nil {
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		return 0, errors.New("creates failed with batching off")
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

func runGroup(ctx context.Context, r *runner) ([]Result, error) {
	c, err := r.leaderClient(ctx)
	if err != nil {
		return nil, err
	}
	n := r.cfg.GroupChildren
	t0 := time.Now()
	id, err := group(ctx, c, "bulk", "true", n, true)
	el := time.Since(t0)
	if err != nil {
		return nil, err
	}
	j, err := c.Job(ctx, id)
	if err != nil || j.Total != n {
		return nil, fmt.Errorf("group has %d children, want %d (%v)", j.Total, n, err)
	}
	res := atMost("group", fmt.Sprintf("%d children, one request", n), el.Seconds(), "s", 2)
	res.Note = "time to acknowledged"
	return []Result{res}, nil
}

// simAgent is an in-process agent: it pulls and reports like croft agent,
// optionally starting a real process for each job.
type simAgent struct {
	c       *client.Client
	name    string
	exec    bool
	started func(jobID int64, at time.Time)
	// polling, if set, is called before each pull.
	polling func()
}

func (a *simAgent) run(ctx context.Context) error {
	if err := a.c.Register(ctx, client.RegisterRequest{Name: a.name}); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if a.polling != nil {
			a.polling()
		}
		as, err := a.c.Pull(ctx, client.PullRequest{Name: a.name, WaitMillis: 1000})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if as == nil {
			continue
		}
		code := 0
		if a.exec {
			cmd := exec.Command("/bin/sh", "-c", as.Command)
			if err := cmd.Start(); err != nil {
				return err
			}
			if a.started != nil {
				a.started(as.JobID, time.Now())
			}
			if err := cmd.Wait(); err != nil {
				code = 1
			}
		} else if a.started != nil {
			a.started(as.JobID, time.Now())
		}
		for {
			_, err := a.c.Report(ctx, client.ReportRequest{Name: a.name, JobID: as.JobID, AttemptID: as.AttemptID, Done: true, ExitCode: code})
			if err == nil || client.IsStatus(err, http.StatusConflict) {
				break
			}
			if ctx.Err() != nil {
				return nil
			}
		}
	}
	return nil
}

// pollGap is how long after the agent starts a pull the next job is
// submitted: the pull reaches the coordinator in well under a millisecond
// on loopback, so the job finds the agent waiting, as on an idle farm.
const pollGap = 5 * time.Millisecond

// dispatchLatency submits jobs one at a time to an idle farm with one
// in-process agent and returns submit-to-process-start latencies. Each job
// is submitted once the agent is back in its long poll (pollGap after it
// sent the pull), never while it still reports the previous one.
func dispatchLatency(ctx context.Context, c *client.Client, name string, n, priority int, exec bool) ([]time.Duration, error) {
	starts := make(chan time.Time, 1)
	polls := make(chan struct{}, 1)
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := &simAgent{c: c, name: name, exec: exec, started: func(_ int64, at time.Time) { starts <- at },
		polling: func() {
			select {
			case polls <- struct{}{}:
			default: // the bench is not waiting for this one (a pull that timed out)
			}
		}}
	errc := make(chan error, 1)
	go func() { errc <- a.run(actx) }()
	// Wait until the agent is registered and polling.
	if _, err := c.CreateJob(ctx, client.NewJob{Title: "warm-up", Command: "true", Priority: &priority}); err != nil {
		return nil, err
	}
	if _, err := recv(ctx, starts, errc); err != nil {
		return nil, err
	}
	select {
	case <-polls: // the pull that took the warm-up job
	default:
	}
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		if _, err := recv(ctx, polls, errc); err != nil {
			return nil, err
		}
		time.Sleep(pollGap)
		t0 := time.Now()
		if _, err := c.CreateJob(ctx, client.NewJob{Title: "dispatch", Command: "true", Priority: &priority}); err != nil {
			return nil, err
		}
		at, err := recv(ctx, starts, errc)
		if err != nil {
			return nil, err
		}
		lat = append(lat, at.Sub(t0))
	}
	return lat, nil
}

// recv waits for a value on ch, unless the agent fails (errc) or ctx ends.
func recv[T any](ctx context.Context, ch <-chan T, errc <-chan error) (T, error) {
	var zero T
	select {
	case v := <-ch:
		return v, nil
	case err := <-errc:
		return zero, err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

func runDispatch(ctx context.Context, r *runner) ([]Result, error) {
	c, err := r.leaderClient(ctx)
	if err != nil {
		return nil, err
	}
	lat, err := dispatchLatency(ctx, c, "bench-dispatch", r.cfg.DispatchJobs, 255, true)
	if err != nil {
		return nil, err
	}
	p50 := atMost("dispatch", "submit to process start p50", percentile(lat, 50), "ms", 5)
	p50.Note = fmt.Sprintf("%d jobs, idle farm", len(lat))
	return []Result{p50, atMost("dispatch", "submit to process start p99", percentile(lat, 99), "ms", 25)}, nil
}

func runAgents(ctx context.Context, r *runner) ([]Result, error) {
	if r.cluster == nil {
		return []Result{{Scenario: "agents", Metric: "skipped", Note: "starts agent processes: needs a cluster bench starts"}}, nil
	}
	c, err := r.leaderClient(ctx)
	if err != nil {
		return nil, err
	}
	for i := 0; i < r.cfg.Agents; i++ {
		if _, err := r.cluster.StartAgent(ctx, fmt.Sprintf("bench-agent-%d", i), "--slots", strconv.Itoa(r.cfg.Slots)); err != nil {
			return nil, err
		}
	}
	want := r.cfg.Agents * r.cfg.Slots
	for {
		ws, err := c.Workers(ctx)
		if err == nil && len(ws) >= want {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d agent slots registered", len(ws), want)
		case <-time.After(50 * time.Millisecond):
		}
	}
	n := r.cfg.AgentJobs
	cpu0, cpuErr := localcluster.HostCPU()
	t0 := time.Now()
	id, err := group(ctx, c, "agents", "true", n, false)
	if err != nil {
		return nil, err
	}
	if err := waitFinished(ctx, c, id, n); err != nil {
		return nil, err
	}
	el := time.Since(t0)
	cpu1, err := localcluster.HostCPU()
	rate := float64(n) / el.Seconds()
	res := atLeast("agents", "end to end, real agents", rate, "jobs/s", 500)
	res.Note = fmt.Sprintf("%d jobs `true`, %d agents x %d slots", n, r.cfg.Agents, r.cfg.Slots)
	out := []Result{res}
	if cpuErr == nil && err == nil {
		// Everything on the host: coordinators, agents, supervisors, the
		// jobs' shells and this load generator.
		perJob := plain("agents", "host CPU per job", float64(cpu1-cpu0)/float64(time.Millisecond)/float64(n), "ms")
		perJob.Note = fmt.Sprintf("host busy %.0f%% of %d cores", 100*float64(cpu1-cpu0)/float64(el)/float64(runtime.NumCPU()), runtime.NumCPU())
		out = append(out, perJob)
	}
	return out, nil
}

func runSimulated(ctx context.Context, r *runner) ([]Result, error) {
	c, err := r.leaderClient(ctx)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, r.cfg.SimAgents)
	for i := 0; i < r.cfg.SimAgents; i++ {
		a := &simAgent{c: c, name: fmt.Sprintf("sim-%05d", i)}
		wg.Go(func() {
			if err := a.run(actx); err != nil {
				errs <- err
			}
		})
	}
	defer wg.Wait()
	defer cancel()
	for {
		ws, err := c.Workers(ctx)
		if err == nil && len(ws) >= r.cfg.SimAgents {
			break
		}
		select {
		case err := <-errs:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	n := r.cfg.SimJobs
	var el time.Duration
	share, err := cpuShare(r.leaderPid(ctx), func() error {
		t0 := time.Now()
		id, err := group(ctx, c, "simulated", "true", n, false)
		if err != nil {
			return err
		}
		if err := waitFinished(ctx, c, id, n); err != nil {
			return err
		}
		el = time.Since(t0)
		return nil
	})
	if err != nil {
		return nil, err
	}
	res := atLeast("simulated", "end to end, simulated agents", float64(n)/el.Seconds(), "jobs/s", 3000)
	res.Note = fmt.Sprintf("%d jobs, %d in-process agents", n, r.cfg.SimAgents)
	return []Result{res, plain("simulated", "leader CPU", share*100, "% of a core")}, nil
}

func runHeartbeats(ctx context.Context, r *runner) ([]Result, error) {
	c, err := r.leaderClient(ctx)
	if err != nil {
		return nil, err
	}
	n := r.cfg.HeartbeatAgents
	names := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var regErr atomic.Value
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				names[i] = fmt.Sprintf("hb-%05d", i)
				if err := c.Register(ctx, client.RegisterRequest{Name: names[i]}); err != nil {
					regErr.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := regErr.Load().(error); err != nil {
		return nil, err
	}
	// Each agent beats every HeartbeatEvery, spread evenly over the period.
	gap := r.cfg.HeartbeatEvery / time.Duration(n)
	var sent, failed atomic.Int64
	share, err := cpuShare(r.leaderPid(ctx), func() error {
		deadline := time.Now().Add(r.cfg.HeartbeatFor)
		work := make(chan string, 1024)
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for name := range work {
					if _, err := c.Heartbeat(ctx, client.HeartbeatRequest{Name: name, Resources: client.Resources{CPU: []float64{10, 20}, FreeMemory: 1000, TotalMemory: 2000}}); err != nil {
						failed.Add(1)
					}
					sent.Add(1)
				}
			})
		}
		t0 := time.Now()
		for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
			if d := time.Until(t0.Add(time.Duration(i) * gap)); d > 0 {
				time.Sleep(d)
			}
			work <- names[i%n]
		}
		close(work)
		wg.Wait()
		return nil
	})
	if err != nil {
		return nil, err
	}
	rate := float64(sent.Load()) / r.cfg.HeartbeatFor.Seconds()
	res := atMost("heartbeats", "leader CPU", share*100, "% of a core", 30)
	res.Note = fmt.Sprintf("%d agents every %v: %.0f heartbeats/s sent, %d failed", n, r.cfg.HeartbeatEvery, rate, failed.Load())
	return []Result{res}, nil
}

func runGrowth(ctx context.Context, r *runner) ([]Result, error) {
	c, err := r.leaderClient(ctx)
	if err != nil {
		return nil, err
	}
	// Queued jobs run nothing: priority 0 behind the probes, and no agent
	// picks them because each probe is taken first.
	queuedNow := func() int {
		roots, err := c.Children(ctx, 0)
		if err != nil {
			return -1
		}
		n := 0
		for _, j := range roots {
			if j.Title == "queued" {
				n += j.Total - j.TotalFinished
			}
		}
		return n
	}
	// fill queues jobs up to total. A chunk whose outcome is unknown (504:
	// leadership moved under the load) is counted from the state, not
	// resent blindly.
	fill := func(total int) error {
		for tries := 0; tries < 30; tries++ {
			have := queuedNow()
			if have >= total {
				return nil
			}
			n := min(total-max(have, 0), 100_000)
			if _, err := group(ctx, c, "queued", "true", n, false, 0); err != nil {
				r.logf("growth: fill chunk: %v", err)
				if ctx.Err() != nil {
					return err
				}
			}
		}
		return fmt.Errorf("could not queue %d jobs", total)
	}
	// Each side is measured once every coordinator has applied its fill,
	// after a few unmeasured pulls: a million jobs arriving leave the
	// processes collecting their garbage for a second or so, which is the
	// fill's cost, not a dispatch's.
	measure := func(name string) ([]time.Duration, error) {
		if err := r.allCaughtUp(ctx, r.urls); err != nil {
			return nil, err
		}
		if _, err := pullLatency(ctx, c, name+"-warm", growthWarmup); err != nil {
			return nil, err
		}
		r.logf("growth: measuring %s", name)
		defer r.logf("growth: measured %s", name)
		return pullLatency(ctx, c, name, r.cfg.GrowthSamples)
	}
	if err := fill(r.cfg.GrowthSmall); err != nil {
		return nil, err
	}
	small, err := measure("growth-small")
	if err != nil {
		return nil, err
	}
	if err := fill(r.cfg.GrowthLarge); err != nil {
		return nil, err
	}
	large, err := measure("growth-large")
	if err != nil {
		return nil, err
	}
	s50, l50 := percentile(small, 50), percentile(large, 50)
	ratio := atMost("growth", "dispatch cost ratio", l50/s50, "x", 2)
	ratio.Note = fmt.Sprintf("pull p50 %.2f ms at %d queued, %.2f ms at %d (one Pick through the cluster)", s50, r.cfg.GrowthSmall, l50, queuedNow())
	return []Result{ratio}, nil
}

// growthWarmup is how many pulls precede each measured side of growth.
const growthWarmup = 50

// allCaughtUp waits until every coordinator at urls has applied what the
// leader had applied when it was first asked.
func (r *runner) allCaughtUp(ctx context.Context, urls []string) error {
	c := r.client(urls...)
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		return err
	}
	ls, err := c.Status(ctx, leader)
	if err != nil {
		return err
	}
	for _, u := range urls {
		for {
			st, err := c.Status(ctx, u)
			if err == nil && st.FSMIndex >= ls.FSMIndex {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s did not catch up to %d: %w", u, ls.FSMIndex, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// pullLatency measures the cost of a dispatch through the cluster: with a
// high-priority probe job waiting among the queued ones, the time of one
// pull (a Pick command: index lookup, Raft commit, reply). The agent pulls
// only when a probe waits, so it never drains the queue being measured.
func pullLatency(ctx context.Context, c *client.Client, name string, n int) ([]time.Duration, error) {
	if err := c.Register(ctx, client.RegisterRequest{Name: name}); err != nil {
		return nil, err
	}
	prio := 255
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		id, err := c.CreateJob(ctx, client.NewJob{Title: "probe", Command: "true", Priority: &prio})
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		a, err := c.Pull(ctx, client.PullRequest{Name: name, WaitMillis: 2000})
		if err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
		if a == nil || a.JobID != id {
			return nil, fmt.Errorf("pull returned %+v, want probe %d", a, id)
		}
		if _, err := c.Report(ctx, client.ReportRequest{Name: name, JobID: a.JobID, AttemptID: a.AttemptID, Done: true}); err != nil {
			return nil, err
		}
	}
	return lat, nil
}
