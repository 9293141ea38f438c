package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// Bounds of the test's own steps. None of them is a performance assertion:
// each only keeps a broken cluster from hanging the test.
const (
	formTimeout    = 60 * time.Second // cluster formation
	submitTimeout  = 10 * time.Second // one job creation (LeaderWait is 5 s)
	probeBound     = 60 * time.Second // leader kill -> first acknowledged write
	rejoinBound    = 30 * time.Second // restarted coordinator knows the leader again
	orphanBound    = 30 * time.Second // job shells left by killed agents end
	digestBound    = 60 * time.Second // followers catch up with the leader
	maxSubmissions = 20000
	maxConcurrent  = 16 // job creations in flight at once

	maxLoggedProblems = 30
)

// submission is one job creation: its token is unique to it, and is the
// job's title and the word its command appends to the runs file.
type submission struct {
	token string
	via   string // the coordinator(s) it was sent to
	at    time.Time
	probe bool
	acked bool
	id    int64
	err   error
	took  time.Duration
}

// run is one chaos run.
type run struct {
	t     *testing.T
	cfg   config
	rng   *rng
	cl    *cluster
	start time.Time
	runs  string // the runs file: one line per job execution

	logMu   sync.Mutex
	actions *os.File

	mu        sync.Mutex
	subs      []*submission
	nextProbe int
	clients   map[string]*client.Client // one per coordinator URL, for the submitter
	coordKill struct{ leader, follower int }
	agentKill int
	// agentKillJobs counts the job shells running under the killed agents
	// at the kills.
	agentKillJobs int
	failovers     []time.Duration
	probeFail     int
	problems      []string // violations found during the run
}

func (r *run) logf(format string, args ...any) {
	now := time.Now()
	line := fmt.Sprintf("%s +%7.2fs  %s", stamp(now), now.Sub(r.start).Seconds(), fmt.Sprintf(format, args...))
	r.logMu.Lock()
	defer r.logMu.Unlock()
	r.t.Log(line)
	if r.actions != nil {
		fmt.Fprintln(r.actions, line)
	}
}

// problem records a violation found while the chaos runs.
func (r *run) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.problems = append(r.problems, msg)
	n := len(r.problems)
	r.mu.Unlock()
	switch {
	case n <= maxLoggedProblems:
		r.logf("PROBLEM: %s", msg)
	case n == maxLoggedProblems+1:
		r.logf("PROBLEM: more problems, not logged one by one (see the summary)")
	}
}

func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	// Make sure the whole run fits in go test's -timeout.
	need := formTimeout + cfg.duration + probeBound + rejoinBound + 2*submitTimeout + cfg.settle + orphanBound + digestBound + 30*time.Second
	if dl, ok := t.Deadline(); ok && time.Until(dl) < need {
		t.Fatalf("go test -timeout leaves %v; this configuration needs up to %v (duration %v + settle %v + bounds): raise -timeout",
			time.Until(dl).Round(time.Second), need, cfg.duration, cfg.settle)
	}

	r := &run{t: t, cfg: cfg, rng: newRNG(cfg.seed), start: time.Now(), clients: map[string]*client.Client{}}
	r.cl = newCluster(t, r.logf)
	r.runs = filepath.Join(r.cl.dir, "runs.txt")
	if r.actions, err = os.Create(filepath.Join(r.cl.logDir, "actions.log")); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-registered first: stop every process, then keep
	// the logs, then t.TempDir goes.
	t.Cleanup(func() { r.keepLogs() })
	t.Cleanup(r.cl.stopAll)
	r.logf("chaos: seed %d, duration %v, agent kills %v, %.1f jobs/s, every %v, coordinator down %v, agent down %v, job sleep %v, %d slots per agent",
		cfg.seed, cfg.duration, cfg.agentKills, cfg.rate, cfg.interval, cfg.coordDown, cfg.agentDown, cfg.jobSleep, cfg.slots)

	ctx, cancel := context.WithTimeout(context.Background(), formTimeout)
	err = r.cl.start(ctx, 3, 3, cfg.slots)
	cancel()
	if err != nil {
		r.fail("cluster start: %v", err)
	}

	// Chaos and submissions, side by side, for the configured duration.
	chaosCtx, stopChaos := context.WithTimeout(context.Background(), cfg.duration)
	defer stopChaos()
	var wg sync.WaitGroup
	wg.Go(func() { r.submitter(chaosCtx) })
	wg.Go(func() { r.chaos(chaosCtx) })
	wg.Wait()
	chaosEnd := time.Now()
	r.logf("chaos over: %s", r.progress())

	// Bring back anything still down (a failed restart), then let the farm
	// drain.
	r.restartAll()
	jobs := r.settle()
	settled := time.Since(chaosEnd)
	r.waitOrphans()
	if final, err := r.listJobs(); err == nil {
		jobs = final // after the last job shells ended
	} else {
		r.problem("final job listing: %v", err)
	}
	digest := r.checkDigests()

	sum := r.check(jobs)
	sum.logsIncomplete = r.checkLogs(jobs)
	sum.settle = settled
	sum.digest = digest
	table := sum.table(r)
	r.logf("summary\n%s", table)
	_ = os.WriteFile(filepath.Join(r.cl.logDir, "summary.txt"), []byte(table+"\n"), 0o644)
	if len(r.problems) > 0 {
		r.report(sum)
	}
}

// fail stops the test at once, with the process logs.
func (r *run) fail(format string, args ...any) {
	r.t.Helper()
	r.problem(format, args...)
	r.dumpLogs(nil)
	r.t.FailNow()
}

// ---------------------------------------------------------------------------
// Submissions

func (r *run) jobCommand(token string) string {
	// The job writes to its output before and after the sleep, as render
	// jobs do all the time: an agent killed meanwhile leaves the job
	// writing to an output nobody reads any more.
	return fmt.Sprintf("echo %[1]s >> '%[2]s'; echo start %[1]s; sleep %.2[3]f; echo end %[1]s", token, r.runs, r.rng.in(r.cfg.jobSleep).Seconds())
}

// submitter creates jobs at cfg.rate through random coordinators until ctx
// ends (bounded in count too), then waits for the creations in flight.
func (r *run) submitter(ctx context.Context) {
	limit := min(int(r.cfg.duration.Seconds()*r.cfg.rate)+10, maxSubmissions)
	tick := time.NewTicker(time.Duration(float64(time.Second) / r.cfg.rate))
	defer tick.Stop()
	sem := make(chan struct{}, maxConcurrent)
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 1; n <= limit; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case <-ctx.Done():
			return
		case sem <- struct{}{}:
		}
		c := r.cl.coords[r.rng.intN(len(r.cl.coords))]
		token := fmt.Sprintf("s-%06d", n)
		wg.Go(func() {
			defer func() { <-sem }()
			r.submit(token, c)
		})
	}
}

// submit creates one job through coordinator c, with its own timeout (not
// the chaos context: a creation in flight at the end completes).
func (r *run) submit(token string, c *coord) {
	url := c.url()
	cli := r.clientFor(url)
	s := &submission{token: token, via: c.id, at: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), submitTimeout)
	defer cancel()
	start := time.Now()
	s.id, s.err = cli.CreateJob(ctx, client.NewJob{Title: token, Command: r.jobCommand(token)})
	s.took = time.Since(start)
	s.acked = s.err == nil
	r.mu.Lock()
	r.subs = append(r.subs, s)
	if s.err != nil || s.took > 300*time.Millisecond {
		// The client may have learnt the leader's address while it
		// retried, and would then skip this coordinator: start afresh.
		delete(r.clients, url)
	}
	r.mu.Unlock()
	if s.err != nil {
		r.logf("create %s via %s unacknowledged after %v: %v", token, c.id, s.took.Round(time.Millisecond), s.err)
	}
}

// clientFor returns a client that talks to exactly this coordinator (which
// forwards to the leader).
func (r *run) clientFor(url string) *client.Client {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.clients[url]
	if c == nil {
		c = r.cl.client(url)
		r.clients[url] = c
	}
	return c
}

func (r *run) progress() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	acked := 0
	for _, s := range r.subs {
		if s.acked {
			acked++
		}
	}
	return fmt.Sprintf("%d creations answered (%d acknowledged), coordinator kills %d leader + %d follower, agent kills %d",
		len(r.subs), acked, r.coordKill.leader, r.coordKill.follower, r.agentKill)
}

// ---------------------------------------------------------------------------
// Chaos

// chaos kills and restarts processes at random intervals until ctx ends.
// Each action completes (the victim is up again) before the next starts,
// so at most one coordinator is down at a time and a quorum remains.
func (r *run) chaos(ctx context.Context) {
	limit := int(r.cfg.duration/r.cfg.interval.min) + 1
	for i := 0; i < limit; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.rng.in(r.cfg.interval)):
		}
		if ctx.Err() != nil {
			return
		}
		if r.cfg.agentKills && r.rng.intN(2) == 0 {
			r.killAgent()
		} else {
			r.killCoordinator(ctx)
		}
		r.logf("progress: %s", r.progress())
	}
}

func (r *run) killCoordinator(ctx context.Context) {
	for _, c := range r.cl.coords {
		if !c.running() {
			r.logf("%s is still down: no coordinator kill this round", c.id)
			return
		}
	}
	leader := r.cl.leader(ctx)
	victim := r.cl.coords[r.rng.intN(len(r.cl.coords))]
	if leader != nil && r.rng.intN(2) == 0 {
		victim = leader // often the leader: half the time, plus the random pick
	}
	wasLeader := leader != nil && victim == leader
	role := "follower"
	if wasLeader {
		role = "leader"
	} else if leader == nil {
		role = "coordinator (no leader seen)"
	}
	pid := victim.pid()
	victim.kill(true)
	killedAt := time.Now()
	r.mu.Lock()
	if wasLeader {
		r.coordKill.leader++
	} else {
		r.coordKill.follower++
	}
	r.mu.Unlock()
	down := r.rng.in(r.cfg.coordDown)
	r.logf("kill -9 %s (pid %d, %s); restart in %v", victim.id, pid, role, down.Round(time.Millisecond))

	probeDone := make(chan struct{})
	if wasLeader {
		var survivors []*coord
		for _, c := range r.cl.coords {
			if c != victim {
				survivors = append(survivors, c)
			}
		}
		go func() {
			defer close(probeDone)
			r.probe(killedAt, survivors)
		}()
	} else {
		close(probeDone)
	}
	time.Sleep(time.Until(killedAt.Add(down))) // the chaos schedule itself
	if err := r.cl.restartCoord(victim); err != nil {
		r.problem("restart %s: %v", victim.id, err)
		<-probeDone
		return
	}
	r.logf("restarted %s (pid %d) at %s, down %v", victim.id, victim.pid(), victim.url(), time.Since(killedAt).Round(time.Millisecond))
	<-probeDone
	if err := r.cl.waitKnowsLeader(context.Background(), victim, rejoinBound); err != nil {
		r.problem("%v", err)
	}
}

// probe measures a failover: it creates jobs through the surviving
// coordinators until one is acknowledged, and records the time since the
// leader was killed. Each attempt has its own token (an unacknowledged
// attempt may still exist as a job, and must then run once too).
func (r *run) probe(killedAt time.Time, survivors []*coord) {
	var urls, ids []string
	for _, c := range survivors {
		urls = append(urls, c.url())
		ids = append(ids, c.id)
	}
	cli := r.cl.client(urls...)
	for time.Since(killedAt) < probeBound {
		r.mu.Lock()
		r.nextProbe++
		token := fmt.Sprintf("p-%04d", r.nextProbe)
		r.mu.Unlock()
		s := &submission{token: token, via: strings.Join(ids, "+"), probe: true, at: time.Now()}
		deadline := killedAt.Add(probeBound)
		if d := time.Now().Add(submitTimeout); d.Before(deadline) {
			deadline = d
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		start := time.Now()
		s.id, s.err = cli.CreateJob(ctx, client.NewJob{Title: token, Command: r.jobCommand(token)})
		cancel()
		s.took = time.Since(start)
		s.acked = s.err == nil
		r.mu.Lock()
		r.subs = append(r.subs, s)
		r.mu.Unlock()
		if s.acked {
			d := time.Since(killedAt)
			r.mu.Lock()
			r.failovers = append(r.failovers, d)
			r.mu.Unlock()
			r.logf("failover: probe %s acknowledged as job %d, %v after the leader kill", token, s.id, d.Round(time.Millisecond))
			return
		}
		r.logf("failover probe %s unacknowledged: %v", token, s.err)
	}
	r.mu.Lock()
	r.probeFail++
	r.mu.Unlock()
	r.problem("no write acknowledged within %v of the leader kill", probeBound)
}

func (r *run) killAgent() {
	a := r.cl.agents[r.rng.intN(len(r.cl.agents))]
	if !a.running() {
		r.logf("agent %s is down: restarting it", a.name)
	} else {
		pid := a.pid()
		running := len(descendants(pid, jobProcesses(r.runs)))
		a.kill(false) // the agent's pid only, not its jobs' process groups
		r.mu.Lock()
		r.agentKill++
		r.agentKillJobs += running
		r.mu.Unlock()
		down := r.rng.in(r.cfg.agentDown)
		r.logf("kill -9 agent %s (pid %d, %d job(s) running, left running); restart in %v", a.name, pid, running, down.Round(time.Millisecond))
		time.Sleep(down) // the chaos schedule itself
	}
	if err := r.cl.startAgent(a); err != nil {
		r.problem("%v", err)
		return
	}
	r.logf("restarted agent %s (pid %d)", a.name, a.pid())
}

// restartAll brings back any process that is down.
func (r *run) restartAll() {
	for _, c := range r.cl.coords {
		if !c.running() {
			if err := r.cl.restartCoord(c); err != nil {
				r.fail("final restart of %s: %v", c.id, err)
			}
			r.logf("restarted %s at the end", c.id)
		}
	}
	for _, a := range r.cl.agents {
		if !a.running() {
			if err := r.cl.startAgent(a); err != nil {
				r.fail("final restart: %v", err)
			}
			r.logf("restarted agent %s at the end", a.name)
		}
	}
}

// ---------------------------------------------------------------------------
// The end: drain, then check

func (r *run) listJobs() ([]client.Job, error) {
	ctx, cancel := context.WithTimeout(context.Background(), submitTimeout)
	defer cancel()
	return r.cl.client(r.cl.urls()...).Children(ctx, 0) // every job is a root
}

// settle waits (bounded) until no job is waiting, pending or working, and
// returns the jobs.
func (r *run) settle() []client.Job {
	deadline := time.Now().Add(r.cfg.settle)
	lastLog := time.Time{}
	for {
		jobs, err := r.listJobs()
		counts := map[string]int{}
		for _, j := range jobs {
			counts[j.State]++
		}
		busy := counts["WAITING"] + counts["PENDING"] + counts["WORKING"]
		if err == nil && busy == 0 {
			r.logf("settled: %d jobs %v", len(jobs), counts)
			return jobs
		}
		if time.Since(lastLog) > 5*time.Second {
			r.logf("settling: %d jobs %v (err %v)", len(jobs), counts, err)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			r.problem("jobs not finished within %v: %v (err %v)", r.cfg.settle, counts, err)
			return jobs
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitOrphans waits (bounded) until no job shell is left running, so the
// runs file is complete.
func (r *run) waitOrphans() {
	deadline := time.Now().Add(orphanBound)
	for {
		pids := jobProcesses(r.runs)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.problem("job processes still running %v after %v", pids, orphanBound)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkDigests polls every coordinator until all report the same state
// digest (bounded: a follower may lag a moment).
func (r *run) checkDigests() string {
	deadline := time.Now().Add(digestBound)
	for {
		digests := map[string]string{}
		same := true
		var first string
		var indexes []string
		for _, c := range r.cl.coords {
			st, err := r.cl.status(context.Background(), c, true)
			indexes = append(indexes, fmt.Sprintf("%s %s term %d applied %d", c.id, st.State, st.Term, st.AppliedIndex))
			d := st.Digest
			if err != nil || d == "" || strings.HasPrefix(d, "error") {
				d = fmt.Sprintf("(%v %s)", err, d)
				same = false
			}
			digests[c.id] = d
			if first == "" {
				first = d
			} else if d != first {
				same = false
			}
		}
		if same {
			r.logf("digests equal on every coordinator: %s (%s)", first, strings.Join(indexes, ", "))
			return first
		}
		if time.Now().After(deadline) {
			r.problem("coordinators disagree on the state after %v: %v", digestBound, digests)
			return "DIFFERENT"
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// summary is what the run found.
type summary struct {
	submitted, acked, unacked, unackedPresent int
	probes, probesAcked                       int
	jobs, finished                            int
	notFinished                               []string
	doubleCreated                             []string
	duplicated, lost                          int
	runDoneOff                                []string
	logsIncomplete                            []string
	settle                                    time.Duration
	digest                                    string
	badJobs                                   []int64  // for the log dump
	badTokens                                 []string // for the log dump
}

// check compares the ledger, the cluster's jobs and the runs file.
func (r *run) check(jobs []client.Job) *summary {
	sum := &summary{jobs: len(jobs)}
	byID := map[int64]client.Job{}
	byToken := map[string][]client.Job{}
	for _, j := range jobs {
		byID[j.ID] = j
		byToken[j.Title] = append(byToken[j.Title], j)
		if j.State == "FINISHED" {
			sum.finished++
		} else {
			sum.notFinished = append(sum.notFinished, fmt.Sprintf("%d %s %s", j.ID, j.Title, j.State))
		}
	}
	runs := map[string]int{}
	if data, err := os.ReadFile(r.runs); err != nil && !os.IsNotExist(err) {
		r.problem("runs file: %v", err)
	} else {
		for _, tok := range strings.Fields(string(data)) {
			runs[tok]++
		}
	}
	bad := func(token string, ids ...int64) {
		sum.badTokens = append(sum.badTokens, token)
		sum.badJobs = append(sum.badJobs, ids...)
	}

	r.mu.Lock()
	subs := slices.Clone(r.subs)
	r.mu.Unlock()
	bySub := map[string]*submission{}
	for _, s := range subs {
		bySub[s.token] = s
		if s.probe {
			sum.probes++
		} else {
			sum.submitted++
		}
		if !s.acked {
			sum.unacked++
			if len(byToken[s.token]) > 0 {
				sum.unackedPresent++
			}
			continue
		}
		sum.acked++
		if s.probe {
			sum.probesAcked++
		}
		j, ok := byID[s.id]
		switch {
		case !ok:
			sum.lost++
			bad(s.token, s.id)
			r.problem("LOST: %s was acknowledged as job %d, which is not in the cluster", s.token, s.id)
		case j.Title != s.token:
			sum.lost++
			bad(s.token, s.id)
			r.problem("LOST: %s was acknowledged as job %d, but job %d is %q", s.token, s.id, s.id, j.Title)
		case j.State != "FINISHED":
			bad(s.token, s.id) // reported below with every unfinished job
		}
	}
	for _, nf := range sum.notFinished {
		r.problem("job not FINISHED: %s", nf)
	}
	tokens := make([]string, 0, len(byToken))
	for tok := range byToken {
		tokens = append(tokens, tok)
	}
	sort.Strings(tokens)
	for _, tok := range tokens {
		js := byToken[tok]
		var ids []int64
		for _, j := range js {
			ids = append(ids, j.ID)
			if j.RunDone != 1 {
				sum.runDoneOff = append(sum.runDoneOff, fmt.Sprintf("%d %s run_done=%d %s", j.ID, tok, j.RunDone, j.State))
			}
		}
		if bySub[tok] == nil {
			bad(tok, ids...)
			r.problem("job(s) %v titled %q were never submitted by the test", ids, tok)
		}
		if len(js) > 1 {
			// The client must not send a creation again once its outcome
			// is unknown (a 502/504, a cut connection): that is how one
			// submission became two jobs before 8b9aea5.
			sum.doubleCreated = append(sum.doubleCreated, fmt.Sprintf("%s -> jobs %v", tok, ids))
			bad(tok, ids...)
			detail := ""
			if s := bySub[tok]; s != nil {
				detail = fmt.Sprintf(" (sent %s via %s, answered after %v: id %d, err %v)",
					stamp(s.at), s.via, s.took.Round(time.Millisecond), s.id, s.err)
			}
			r.problem("CREATED TWICE: one submission of %s made jobs %v%s", tok, ids, detail)
		}
		switch n := runs[tok]; {
		case n > len(js):
			sum.duplicated += n - len(js)
			bad(tok, ids...)
			r.problem("DUPLICATE: %s ran %d times for %d job(s) %v", tok, n, len(js), ids)
		case n < len(js):
			sum.lost += len(js) - n
			bad(tok, ids...)
			r.problem("LOST RUN: %s ran %d times for %d job(s) %v", tok, n, len(js), ids)
		}
	}
	for tok, n := range runs {
		if len(byToken[tok]) == 0 {
			sum.lost++
			bad(tok)
			r.problem("LOST: %s ran %d time(s) but no job with that title is in the cluster", tok, n)
		}
	}
	return sum
}

// checkLogs returns the finished jobs whose log lacks the output of their
// command ("start TOKEN" and "end TOKEN"). Reported, not a violation: the
// exactly-once checks are about runs, and a job requeued after its agent
// died may keep only its last attempt's output.
func (r *run) checkLogs(jobs []client.Job) []string {
	cli := r.cl.client(r.cl.urls()...)
	var out []string
	for _, j := range jobs {
		if j.State != "FINISHED" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), submitTimeout)
		log, err := cli.Log(ctx, j.ID)
		cancel()
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%d %s: %v", j.ID, j.Title, err))
		case !strings.Contains(log, "start "+j.Title+"\n") || !strings.Contains(log, "end "+j.Title+"\n"):
			out = append(out, fmt.Sprintf("%d %s: log %q", j.ID, j.Title, log))
		}
	}
	return out
}

func (sum *summary) table(r *run) string {
	r.mu.Lock()
	fo := slices.Clone(r.failovers)
	kills := r.coordKill
	agentKills, agentKillJobs := r.agentKill, r.agentKillJobs
	probeFail := r.probeFail
	r.mu.Unlock()
	var b strings.Builder
	row := func(name string, format string, args ...any) {
		fmt.Fprintf(&b, "  %-40s %s\n", name, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(&b, "croft chaos: seed %d, chaos %v, agent kills %v\n", r.cfg.seed, r.cfg.duration, r.cfg.agentKills)
	row("jobs submitted", "%d", sum.submitted)
	row("  acknowledged", "%d", sum.acked-sum.probesAcked)
	row("  unacknowledged", "%d", sum.unacked-(sum.probes-sum.probesAcked))
	row("failover probe creations", "%d (%d acknowledged)", sum.probes, sum.probesAcked)
	row("unacknowledged but present", "%d (of %d unacknowledged, probes included)", sum.unackedPresent, sum.unacked)
	row("jobs in the cluster", "%d", sum.jobs)
	row("finished", "%d", sum.finished)
	row("not finished", "%d", len(sum.notFinished))
	row("duplicated runs (must be 0)", "%d", sum.duplicated)
	row("lost (must be 0)", "%d", sum.lost)
	row("created twice (must be 0)", "%d %s", len(sum.doubleCreated), firstFew(sum.doubleCreated, 5))
	row("jobs with run_done != 1", "%d %s", len(sum.runDoneOff), firstFew(sum.runDoneOff, 5))
	row("finished, log without its output", "%d %s", len(sum.logsIncomplete), firstFew(sum.logsIncomplete, 5))
	row("coordinator kills", "%d (leader %d, follower %d)", kills.leader+kills.follower, kills.leader, kills.follower)
	row("agent kills", "%d (%d jobs running at the kills)", agentKills, agentKillJobs)
	if len(fo) > 0 {
		slices.Sort(fo)
		row("failover (leader kill -> acked write)", "n=%d median %v worst %v (%d without ack in %v)",
			len(fo), median(fo).Round(time.Millisecond), fo[len(fo)-1].Round(time.Millisecond), probeFail, probeBound)
	} else {
		row("failover (leader kill -> acked write)", "n=0 (%d without ack in %v)", probeFail, probeBound)
	}
	row("drain after chaos", "%v", sum.settle.Round(100*time.Millisecond))
	row("state digest", "%s", sum.digest)
	row("violations", "%d", len(r.problems))
	return strings.TrimRight(b.String(), "\n")
}

func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func firstFew(s []string, n int) string {
	if len(s) == 0 {
		return ""
	}
	if len(s) > n {
		return fmt.Sprintf("%v ...", s[:n])
	}
	return fmt.Sprint(s)
}

// report fails the test with the violations and the logs that concern them.
func (r *run) report(sum *summary) {
	r.t.Helper()
	r.dumpLogs(sum)
	r.mu.Lock()
	problems := slices.Clone(r.problems)
	r.mu.Unlock()
	if len(problems) > maxLoggedProblems {
		problems = append(problems[:maxLoggedProblems], fmt.Sprintf("... and %d more", len(problems)-maxLoggedProblems))
	}
	r.t.Errorf("%d violation(s):\n  %s", len(r.problems), strings.Join(problems, "\n  "))
}

// dumpLogs prints the log lines about the jobs involved in violations and
// the tail of every process log.
func (r *run) dumpLogs(sum *summary) {
	if sum != nil && len(sum.badTokens) > 0 {
		words := slices.Clone(firstN(sum.badTokens, 5))
		for _, id := range firstN(sum.badJobs, 5) {
			words = append(words, fmt.Sprintf("job=%d ", id), fmt.Sprintf("job_id=%d ", id))
		}
		r.t.Logf("log lines about %v:\n%s", words, grepFiles(r.cl.logFiles(), words, 200))
	}
	for _, path := range r.cl.logFiles() {
		r.t.Logf("--- tail of %s\n%s", filepath.Base(path), tail(path, 40))
	}
}

func firstN[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// keepLogs copies the process logs, the actions and the runs file out of
// t.TempDir: always to CROFT_CHAOS_KEEP_LOGS if set, else to a new
// temporary directory when the test failed.
func (r *run) keepLogs() {
	if r.actions != nil {
		r.logMu.Lock()
		r.actions.Close()
		r.actions = nil
		r.logMu.Unlock()
	}
	dst := r.cfg.keepLogs
	if dst == "" {
		if !r.t.Failed() {
			return
		}
		var err error
		if dst, err = os.MkdirTemp("", "croft-chaos-logs-"); err != nil {
			r.t.Logf("keeping logs: %v", err)
			return
		}
	} else {
		dst = filepath.Join(dst, fmt.Sprintf("croft-chaos-%s", r.start.Format("20060102-150405")))
	}
	_ = os.MkdirAll(filepath.Dir(dst), 0o755)
	if err := os.CopyFS(dst, os.DirFS(r.cl.logDir)); err != nil {
		r.t.Logf("keeping logs: %v", err)
		return
	}
	if data, err := os.ReadFile(r.runs); err == nil {
		_ = os.WriteFile(filepath.Join(dst, "runs.txt"), data, 0o644)
	}
	r.t.Logf("logs kept in %s", dst)
}
