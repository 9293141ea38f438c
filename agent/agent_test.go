package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// fake is an in-memory coordinator serving the agent protocol. It stores
// each stream's log by its own offset as the real one does, so duplicated
// reports are harmless.
type fake struct {
	t *testing.T

	mu         sync.Mutex
	changed    chan struct{} // closed and replaced on every request
	registers  []client.RegisterRequest
	heartbeats []client.HeartbeatRequest
	queue      []client.Assignment
	workers    map[string]bool
	logs       map[int64][]byte // stdout
	errs       map[int64][]byte // stderr
	progress   map[int64]float64
	results    map[int64]client.ReportRequest // first Done report
	dones      map[int64]int                  // Done reports received
	reports    int
	// Knobs set by the tests.
	stale     map[int64]bool // reports of these attempts get 409
	conflicts int            // 409s sent
	kill      map[int64]bool // heartbeats ask to kill these
	lostAcks  int            // apply this many reports, then answer 503
	refuse503 int            // answer 503 to this many reports without applying
	refuse400 int64          // answer 400 to the first log chunk at this offset (if > 0)
	refused   []byte         // the chunk refused so
	down      bool           // answer 503 to everything: the agent is cut off
	logCap    int            // when not 0, a log takes this many bytes (both streams), then says it is full
	// refusedErr is the stderr of the report refused so, at
	// refusedErrAt: dropped with it.
	refusedErr   []byte
	refusedErrAt int64
	refuseBoth   bool // refuse400 only a report with both streams
	// refuseDone: answer 503 to Done reports without applying them
	// (counted in refusedDones).
	refuseDone   bool
	refusedDones int
	// What the tests check.
	handed    map[int64]string // attempt -> the worker it was handed to
	busyPulls int              // pulls from a worker whose attempt is not over
	pulls     int              // pull requests
	nexts     int              // assignments handed out with a result
	sent      []sentReport     // every log chunk received
	outputs   int              // reports that carried output (either stream)
}

// sentReport is a log chunk of one stream as the fake received it.
type sentReport struct {
	worker       string
	stream       int // streamOut or streamErr
	offset, size int64
}

func newFake(t *testing.T) (*fake, *httptest.Server) {
	f := &fake{
		t:        t,
		changed:  make(chan struct{}),
		workers:  map[string]bool{},
		logs:     map[int64][]byte{},
		errs:     map[int64][]byte{},
		progress: map[int64]float64{},
		results:  map[int64]client.ReportRequest{},
		dones:    map[int64]int{},
		stale:    map[int64]bool{},
		kill:     map[int64]bool{},
		handed:   map[int64]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+client.PathRegister, handle(f, f.register))
	mux.HandleFunc("POST "+client.PathHeartbeat, handle(f, f.heartbeat))
	mux.HandleFunc("POST "+client.PathPull, f.pull)
	mux.HandleFunc("POST "+client.PathReport, handle(f, f.report))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

// handle decodes a request, runs h under the lock and writes its reply.
func handle[Req any](f *fake, h func(Req) (int, any)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		code, resp := http.StatusServiceUnavailable, any(client.ErrorBody{Error: "cut off"})
		if !f.down {
			code, resp = h(req)
		}
		f.notify()
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(resp)
	}
}

func (f *fake) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fake) register(req client.RegisterRequest) (int, any) {
	f.registers = append(f.registers, req)
	f.workers[req.Name] = true
	return http.StatusOK, map[string]bool{"ok": true}
}

func (f *fake) heartbeat(req client.HeartbeatRequest) (int, any) {
	f.heartbeats = append(f.heartbeats, req)
	if !f.workers[req.Name] {
		return http.StatusNotFound, client.ErrorBody{Error: "register first"}
	}
	resp := client.HeartbeatResponse{Kill: []int64{}}
	for _, id := range req.Running {
		if f.kill[id] {
			resp.Kill = append(resp.Kill, id)
		}
	}
	return http.StatusOK, resp
}

func (f *fake) report(req client.ReportRequest) (int, any) {
	f.reports++
	if f.refuse503 > 0 {
		f.refuse503--
		return http.StatusServiceUnavailable, client.ErrorBody{Error: "no leader"}
	}
	if f.refuseDone && req.Done {
		f.refusedDones++
		return http.StatusServiceUnavailable, client.ErrorBody{Error: "no leader"}
	}
	if f.refuse400 > 0 && req.LogOffset >= f.refuse400 && len(req.Log) > 0 && f.refused == nil && (!f.refuseBoth || len(req.Stderr) > 0) {
		f.refused, f.refusedErr, f.refusedErrAt = req.Log, req.Stderr, req.StderrOffset
		return http.StatusBadRequest, client.ErrorBody{Error: "this chunk is refused"}
	}
	if f.stale[req.AttemptID] {
		f.conflicts++
		return http.StatusConflict, client.ReportResponse{Kill: true, Error: "stale attempt"}
	}
	if _, done := f.results[req.AttemptID]; !done {
		// As the coordinator does: both streams are checked before
		// either is stored.
		if len(req.Log) > 0 && req.LogOffset > int64(len(f.logs[req.AttemptID])) {
			return http.StatusBadRequest, client.ErrorBody{Error: "log offset past the bytes received"}
		}
		if len(req.Stderr) > 0 && req.StderrOffset > int64(len(f.errs[req.AttemptID])) {
			return http.StatusBadRequest, client.ErrorBody{Error: "stderr offset past the bytes received"}
		}
		if len(req.Log)+len(req.Stderr) > 0 {
			f.outputs++
		}
		f.store(req, streamOut, f.logs, req.LogOffset, req.Log)
		f.store(req, streamErr, f.errs, req.StderrOffset, req.Stderr)
		if req.Progress != nil {
			f.progress[req.AttemptID] = *req.Progress
		}
	}
	if req.Done {
		f.dones[req.AttemptID]++
		if _, done := f.results[req.AttemptID]; !done {
			f.results[req.AttemptID] = req
		}
	}
	resp := client.ReportResponse{Accepted: true}
	if log, errs := f.logs[req.AttemptID], f.errs[req.AttemptID]; f.logCap > 0 && len(log)+len(errs) >= f.logCap {
		// As the coordinator does: the log keeps what fits, both
		// streams together.
		log = log[:min(len(log), f.logCap)]
		f.logs[req.AttemptID], f.errs[req.AttemptID], resp.LogFull = log, errs[:min(len(errs), f.logCap-len(log))], true
	}
	if req.Next && req.Done && len(f.queue) > 0 {
		// As the coordinator does: the next job, handed to this worker.
		resp.Assignment = &f.queue[0]
		f.queue = f.queue[1:]
		f.handed[resp.Assignment.AttemptID] = req.Name
		f.nexts++
	}
	if f.lostAcks > 0 {
		f.lostAcks--
		if resp.Assignment != nil {
			f.queue = append([]client.Assignment{*resp.Assignment}, f.queue...) // never handed out
			delete(f.handed, resp.Assignment.AttemptID)
			f.nexts--
		}
		return http.StatusServiceUnavailable, client.ErrorBody{Error: "leader lost before replying"}
	}
	return http.StatusOK, resp
}

// store adds a report's bytes of one stream (data at offset off) to that
// stream's logs, skipping what it has already.
func (f *fake) store(req client.ReportRequest, stream int, logs map[int64][]byte, off int64, data []byte) {
	if len(data) == 0 {
		return
	}
	f.sent = append(f.sent, sentReport{req.Name, stream, off, int64(len(data))})
	log := logs[req.AttemptID]
	// Bytes sent again must be the bytes already stored.
	if old := log[off:min(int64(len(log)), off+int64(len(data)))]; !bytes.Equal(old, data[:len(old)]) {
		f.t.Errorf("attempt %d: stream %d: chunk at %d differs from the bytes stored", req.AttemptID, stream, off)
	}
	if end := off + int64(len(data)); end > int64(len(log)) {
		logs[req.AttemptID] = append(log, data[int64(len(log))-off:]...)
	}
}

// pull hands out the next queued assignment, waiting for one as long as
// the agent asked.
func (f *fake) pull(w http.ResponseWriter, r *http.Request) {
	var req client.PullRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	if f.down {
		f.mu.Unlock()
		http.Error(w, `{"error":"cut off"}`, http.StatusServiceUnavailable)
		return
	}
	for id, worker := range f.handed {
		if _, done := f.results[id]; worker == req.Name && !done && !f.stale[id] {
			f.busyPulls++ // the coordinator would take this for a lost attempt
		}
	}
	f.pulls++
	f.mu.Unlock()
	timer := time.NewTimer(time.Duration(req.WaitMillis) * time.Millisecond)
	defer timer.Stop()
	for {
		f.mu.Lock()
		var resp client.PullResponse
		if len(f.queue) > 0 && !f.down {
			resp.Assignment = &f.queue[0]
			f.queue = f.queue[1:]
			f.handed[resp.Assignment.AttemptID] = req.Name
			f.notify()
		}
		changed := f.changed
		f.mu.Unlock()
		if resp.Assignment != nil {
			_ = json.NewEncoder(w).Encode(resp)
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			_ = json.NewEncoder(w).Encode(resp)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// push queues an assignment.
func (f *fake) push(a client.Assignment) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queue = append(f.queue, a)
	f.notify()
}

// set changes the fake's state under its lock.
func (f *fake) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
	f.notify()
}

// waitFor waits until cond (run under the lock) holds after some request.
func (f *fake) waitFor(what string, cond func() bool) {
	f.t.Helper()
	timeout := time.After(deadline)
	for {
		f.mu.Lock()
		ok, changed := cond(), f.changed
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			f.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// newAgent makes an agent for srv on data directory dir, with test
// settings; mod (if not nil) changes its config. Its jobs are killed when
// it stops (KillOnStop), unless mod says otherwise: a test that leaves
// them running cleans them up (killLeftovers).
func newAgent(t *testing.T, srv *httptest.Server, dir string, mod func(*Config)) *Agent {
	t.Helper()
	cfg := Config{
		Coordinators:      []string{srv.URL},
		Name:              "node-1",
		DataDir:           dir,
		HeartbeatInterval: 20 * time.Millisecond,
		PullWait:          time.Second,
		Logger:            slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Executor:          Executor{KillGrace: 200 * time.Millisecond, FlushInterval: 20 * time.Millisecond},
		KillOnStop:        true,
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// runAgent runs a until the returned stop is called, or the test ends,
// and checks that Run returned.
func runAgent(t *testing.T, a *Agent) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(deadline):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// startAgent runs an agent against srv until the test ends.
func startAgent(t *testing.T, srv *httptest.Server) *Agent {
	t.Helper()
	a := newAgent(t, srv, t.TempDir(), nil)
	runAgent(t, a)
	return a
}

// killLeftovers kills, when the test ends, the jobs still running in data
// directory dir: an agent stopped as by kill -9 leaves them running. Call
// it before starting agents, so that it runs after they stopped.
func killLeftovers(t *testing.T, dir string) {
	t.Cleanup(func() {
		slots, _ := slotDirs(filepath.Join(dir, slotsDir))
		for _, slot := range slots {
			j, err := readJournal(slot)
			if err == nil && j.Ident.state(j.Pid) == procAlive {
				// The supervisor, and its jobs: they are in its session.
				_ = syscall.Kill(j.Pid, syscall.SIGKILL)
				killSession(j.Pid)
				waitGone(t, j.Pid)
			}
		}
	})
}

// slotOf returns the slot directory of data directory dir whose journal
// names attempt id; "" if none does (the slot was freed).
func slotOf(dir string, id int64) string {
	slots, _ := slotDirs(filepath.Join(dir, slotsDir))
	for _, slot := range slots {
		if j, err := readJournal(slot); err == nil && j.Assignment.AttemptID == id {
			return slot
		}
	}
	return ""
}

// journalOf returns attempt id's journal in data directory dir.
func journalOf(t *testing.T, dir string, id int64) *journal {
	t.Helper()
	slot := slotOf(dir, id)
	if slot == "" {
		t.Fatalf("no journal names attempt %d", id)
	}
	j, err := readJournal(slot)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// resultOnDisk returns attempt id's result from the slots of data
// directory dir.
func resultOnDisk(dir string, id int64) (result, error) {
	slots, _ := slotDirs(filepath.Join(dir, slotsDir))
	for _, slot := range slots {
		if r, err := readResult(slot, id); err == nil {
			return r, nil
		}
	}
	return result{}, errNoResult
}

func hasResult(dir string, id int64) bool {
	_, err := resultOnDisk(dir, id)
	return err == nil
}

// waitUntil polls cond (a file, a process: no request to wait for).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	timeout := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(timeout) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func exists(file string) bool {
	_, err := os.Stat(file)
	return err == nil
}

// testWriter sends the agent's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestAgentRunsAnAssignment(t *testing.T) {
	f, srv := newFake(t)
	a := startAgent(t, srv)
	f.push(client.Assignment{
		AttemptID: 11, JobID: 5,
		Command: `echo hello; echo PROGRESS:50; echo oops >&2; exit 3`,
	})
	f.waitFor("the result and a heartbeat with resources", func() bool {
		_, done := f.results[11]
		return done && slices.ContainsFunc(f.heartbeats, func(h client.HeartbeatRequest) bool {
			return h.Name == "node-1" && h.Resources.TotalMemory > 0 && len(h.Resources.CPU) > 0
		})
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.registers) == 0 || f.registers[0].Name != a.Name() || f.registers[0].Resources.TotalMemory <= 0 {
		t.Errorf("registers = %+v", f.registers)
	}
	if got, want := string(f.logs[11]), "hello\nPROGRESS:50\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if got, want := string(f.errs[11]), "oops\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
	if f.progress[11] != 0.5 {
		t.Errorf("progress = %v, want 0.5", f.progress[11])
	}
	res := f.results[11]
	if res.ExitCode != 3 || res.TimedOut || res.JobID != 5 || res.Name != "node-1" {
		t.Errorf("result = %+v, want exit code 3 from node-1 for job 5", res)
	}
	if f.dones[11] != 1 {
		t.Errorf("%d Done reports, want 1", f.dones[11])
	}
}

func TestAgentStaleReportKillsTheProcess(t *testing.T) {
	f, srv := newFake(t)
	startAgent(t, srv)
	f.set(func() { f.stale[12] = true })
	dir := t.TempDir()
	f.push(client.Assignment{AttemptID: 12, JobID: 6, Dir: dir, Command: `sleep 300 & echo $! >pid; echo started; wait`})
	f.waitFor("a 409", func() bool { return f.conflicts > 0 })
	// The slot pulls again only once the stale attempt is reaped.
	f.push(client.Assignment{AttemptID: 13, JobID: 7, Command: `true`})
	f.waitFor("the next attempt's result", func() bool { _, ok := f.results[13]; return ok })
	waitGone(t, readPID(t, filepath.Join(dir, "pid")))
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dones[12] != 0 || f.conflicts != 1 {
		t.Errorf("%d Done reports and %d conflicts; want the attempt's reports dropped after the 409", f.dones[12], f.conflicts)
	}
}

func readPID(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestAgentHeartbeatKill(t *testing.T) {
	f, srv := newFake(t)
	startAgent(t, srv)
	f.push(client.Assignment{AttemptID: 23, JobID: 7, Command: `echo started; sleep 300`})
	f.waitFor("the job's output", func() bool { return len(f.logs[23]) > 0 })
	f.set(func() { f.kill[23] = true })
	f.waitFor("the result", func() bool { _, ok := f.results[23]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if res := f.results[23]; res.ExitCode != 128+15 || res.Signal != 15 {
		t.Errorf("result = %+v, want exit code %d, signal 15 (SIGTERM)", res, 128+15)
	}
	if got := string(f.logs[23]); got != "started\n" {
		t.Errorf("log = %q", got)
	}
}

func TestAgentRetriesUntilAcknowledged(t *testing.T) {
	f, srv := newFake(t)
	// Some reports are lost before the coordinator applies them, some
	// after (the agent sends those again: duplicates).
	f.set(func() { f.refuse503, f.lostAcks = 2, 3 })
	startAgent(t, srv)
	f.push(client.Assignment{AttemptID: 14, JobID: 8, Command: `seq 1 100000`})
	f.waitFor("the result", func() bool { _, ok := f.results[14]; return ok })

	var want bytes.Buffer
	for i := 1; i <= 100000; i++ {
		fmt.Fprintln(&want, i)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !bytes.Equal(f.logs[14], want.Bytes()) {
		t.Errorf("log has %d bytes, want %d", len(f.logs[14]), want.Len())
	}
	if res := f.results[14]; res.ExitCode != 0 || res.LogOffset != int64(want.Len()) {
		t.Errorf("result = exit %d at offset %d", res.ExitCode, res.LogOffset)
	}
	if f.refuse503 != 0 || f.lostAcks != 0 {
		t.Errorf("failures left unused: %d %d", f.refuse503, f.lostAcks)
	}
}

func TestAgentDropsARefusedChunk(t *testing.T) {
	f, srv := newFake(t)
	f.set(func() { f.refuse400 = 1 }) // the second chunk or a later one
	startAgent(t, srv)
	f.push(client.Assignment{AttemptID: 16, JobID: 10, Command: `seq 1 100000`})
	f.waitFor("the result", func() bool { _, ok := f.results[16]; return ok })

	var out bytes.Buffer
	for i := 1; i <= 100000; i++ {
		fmt.Fprintln(&out, i)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refused == nil {
		t.Fatal("no chunk refused")
	}
	// The rest of the output follows what the coordinator has, as if the
	// refused chunk never existed.
	want := bytes.Replace(out.Bytes(), f.refused, nil, 1)
	if !bytes.Equal(f.logs[16], want) {
		t.Errorf("log has %d bytes, want %d", len(f.logs[16]), len(want))
	}
	if res := f.results[16]; res.ExitCode != 0 || res.LogOffset != int64(len(want)) {
		t.Errorf("result = exit %d at offset %d, want 0 at %d", res.ExitCode, res.LogOffset, len(want))
	}
}

func TestAgentStopsSendingOnceTheLogIsFull(t *testing.T) {
	f, srv := newFake(t)
	f.set(func() { f.logCap = 1000 })
	startAgent(t, srv)
	// Plenty of output, then the job's last progress and a clean exit.
	f.push(client.Assignment{AttemptID: 17, JobID: 11, Command: `seq 1 200000; echo PROGRESS:100`})
	f.waitFor("the result", func() bool { _, ok := f.results[17]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	var sent int64
	for _, r := range f.sent {
		sent += r.size
	}
	// The first chunk that filled the log was the last one sent: the job
	// ran on, its output stayed on the node.
	if len(f.sent) != 1 || sent >= 1<<20 {
		t.Errorf("%d chunks (%d bytes) sent for a log capped at 1000 bytes", len(f.sent), sent)
	}
	res := f.results[17]
	if res.ExitCode != 0 || res.Progress == nil || *res.Progress != 1 {
		t.Errorf("result %+v: want exit 0 and the last progress (parsed from output not sent)", res)
	}
}

func TestAgentRegistersAgainWhenForgotten(t *testing.T) {
	f, srv := newFake(t)
	startAgent(t, srv)
	f.waitFor("a heartbeat", func() bool { return len(f.heartbeats) > 0 })
	f.set(func() { f.workers = map[string]bool{} }) // the coordinator lost the worker
	f.waitFor("a second registration", func() bool { return len(f.registers) >= 2 })
}

func TestAgentStopKillsRunningJobs(t *testing.T) {
	f, srv := newFake(t)
	dir := t.TempDir()
	stop := runAgent(t, newAgent(t, srv, dir, func(c *Config) { c.Name, c.Executor = "node-2", Executor{} }))
	f.push(client.Assignment{AttemptID: 15, JobID: 9, Command: `sleep 300 & echo $!; wait`})
	f.waitFor("the child's pid", func() bool { return len(f.logs[15]) > 0 })
	f.mu.Lock()
	pid, err := strconv.Atoi(strings.TrimSpace(string(f.logs[15])))
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	stop()
	waitGone(t, pid)
	// Not the job's fault: the next start reports it lost.
	if res, err := resultOnDisk(dir, 15); err != nil || !res.Lost {
		t.Fatalf("result on disk %+v, %v; want Lost", res, err)
	}
	runAgent(t, newAgent(t, srv, dir, func(c *Config) { c.Name = "node-2" }))
	f.waitFor("the result", func() bool { _, ok := f.results[15]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if res := f.results[15]; !res.Lost || res.Name != "node-2" {
		t.Errorf("result = %+v, want Lost from node-2", res)
	}
}

// readoptTest runs an assignment on a first agent, waits with started,
// stops that agent as SIGTERM does (its context ends; its job runs on, as
// after a kill -9), and returns the data directory and a function that
// starts the second agent on it.
func readoptTest(t *testing.T, f *fake, srv *httptest.Server, as client.Assignment, mod func(*Config), started func(dir string)) (dir string, restart func() *Agent) {
	t.Helper()
	dir = t.TempDir()
	killLeftovers(t, dir)
	first := newAgent(t, srv, dir, func(c *Config) {
		if mod != nil {
			mod(c)
		}
		c.KillOnStop = false
	})
	stop := runAgent(t, first)
	f.push(as)
	started(dir)
	stop()
	return dir, func() *Agent {
		second := newAgent(t, srv, dir, mod)
		runAgent(t, second)
		return second
	}
}

func TestAgentReadoptsAfterRestart(t *testing.T) {
	f, srv := newFake(t)
	work := t.TempDir()
	_, restart := readoptTest(t, f, srv, client.Assignment{
		AttemptID: 31, JobID: 1, Dir: work,
		Command: `echo $$ >pid; echo start; while [ ! -e go ]; do sleep 0.02; done; echo end`,
	}, nil, func(string) { f.waitFor("the job to start", func() bool { return string(f.logs[31]) == "start\n" }) })
	shell := readPID(t, filepath.Join(work, "pid"))
	if err := syscall.Kill(shell, 0); err != nil {
		t.Fatalf("the job died with its agent: %v", err)
	}
	second := restart()
	waitUntil(t, "the second agent to take the attempt", func() bool { return slices.Contains(second.Running(), 31) })
	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the result", func() bool { _, ok := f.results[31]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if res := f.results[31]; res.ExitCode != 0 || res.Lost || res.Name != "node-1" {
		t.Errorf("result = %+v, want exit 0 from node-1", res)
	}
	if got := string(f.logs[31]); got != "start\nend\n" {
		t.Errorf("log = %q", got)
	}
	if f.dones[31] != 1 || f.busyPulls != 0 {
		t.Errorf("%d Done reports, %d pulls while busy; want 1 and 0", f.dones[31], f.busyPulls)
	}
}

func TestAgentDeliversResultWrittenWhileDown(t *testing.T) {
	f, srv := newFake(t)
	work := t.TempDir()
	dir, restart := readoptTest(t, f, srv, client.Assignment{
		AttemptID: 32, JobID: 2, Dir: work,
		Command: `echo hi; while [ ! -e go ]; do sleep 0.02; done; echo bye; exit 3`,
	}, nil, func(string) { f.waitFor("the job to start", func() bool { return string(f.logs[32]) == "hi\n" }) })
	// The job ends while no agent runs.
	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the result on disk", func() bool { return hasResult(dir, 32) })
	restart()
	f.waitFor("the result", func() bool { _, ok := f.results[32]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if res := f.results[32]; res.ExitCode != 3 || res.Lost {
		t.Errorf("result = %+v, want exit 3", res)
	}
	if got := string(f.logs[32]); got != "hi\nbye\n" {
		t.Errorf("log = %q", got)
	}
	// Delivered: the attempt leaves the data directory.
	waitUntil(t, "the attempt directory to go", func() bool { return slotOf(dir, 32) == "" })
}

func TestAgentReportsLostProcess(t *testing.T) {
	f, srv := newFake(t)
	dir, restart := readoptTest(t, f, srv, client.Assignment{AttemptID: 33, JobID: 3, Command: `echo started; sleep 300`},
		nil, func(string) { f.waitFor("the job to start", func() bool { return string(f.logs[33]) == "started\n" }) })
	// The host "crashes": the supervisor and its job die, without a
	// result.
	j := journalOf(t, dir, 33)
	if err := syscall.Kill(j.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killSession(j.Pid) // the job's group is in the supervisor's session
	waitGone(t, j.Pid)
	restart()
	f.waitFor("the result", func() bool { _, ok := f.results[33]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if res := f.results[33]; !res.Lost || !res.Done {
		t.Errorf("result = %+v, want Done and Lost", res)
	}
	if f.dones[33] != 1 || f.busyPulls != 0 {
		t.Errorf("%d Done reports, %d pulls while busy; want 1 and 0", f.dones[33], f.busyPulls)
	}
}

func TestAgentRestartedAfterLeaseFindsJobsFenced(t *testing.T) {
	f, srv := newFake(t)
	short := func(c *Config) { c.LeaseTimeout = 500 * time.Millisecond }
	dir, restart := readoptTest(t, f, srv, client.Assignment{AttemptID: 34, JobID: 4, Command: `echo started; sleep 300 & echo $! >&2; wait`},
		short, func(string) {
			f.waitFor("the job to start", func() bool {
				return string(f.logs[34]) == "started\n" && strings.HasSuffix(string(f.errs[34]), "\n")
			})
		})
	f.mu.Lock()
	kid, err := strconv.Atoi(strings.TrimSpace(string(f.errs[34])))
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	// Nobody renews the lease: the supervisor stops the job on its own.
	waitGone(t, kid)
	waitUntil(t, "the result on disk", func() bool { return hasResult(dir, 34) })
	if res, err := resultOnDisk(dir, 34); err != nil || !res.Fenced || !res.Lost {
		t.Fatalf("result on disk %+v, %v; want Fenced and Lost", res, err)
	}
	restart()
	f.waitFor("the result", func() bool { _, ok := f.results[34]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if res := f.results[34]; !res.Lost {
		t.Errorf("result = %+v, want Lost", res)
	}
	if log := string(f.errs[34]); !strings.Contains(log, "no word from the agent") {
		t.Errorf("stderr %q does not say why the job stopped", log)
	}
}

func TestAgentCutOffStopsItsJobs(t *testing.T) {
	f, srv := newFake(t)
	dir := t.TempDir()
	a := newAgent(t, srv, dir, func(c *Config) { c.LeaseTimeout = 500 * time.Millisecond })
	a.run.leaseTimeout = time.Hour // the supervisors would stop the job too: this shows the agent does
	runAgent(t, a)
	f.push(client.Assignment{AttemptID: 35, JobID: 5, Command: `sleep 300 & echo $!; wait`})
	f.waitFor("the job to start", func() bool { return strings.HasSuffix(string(f.logs[35]), "\n") })
	f.mu.Lock()
	kid, err := strconv.Atoi(strings.TrimSpace(string(f.logs[35])))
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	f.set(func() { f.down = true })
	waitGone(t, kid)
	waitUntil(t, "the result on disk", func() bool { return hasResult(dir, 35) })
	if res, err := resultOnDisk(dir, 35); err != nil || !res.Lost || res.Fenced {
		t.Fatalf("result on disk %+v, %v; want Lost, stopped by the agent", res, err)
	}
	f.set(func() { f.down = false })
	f.waitFor("the result", func() bool { _, ok := f.results[35]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if res := f.results[35]; !res.Lost || f.dones[35] != 1 {
		t.Errorf("result = %+v (%d Done reports), want one, Lost", res, f.dones[35])
	}
}

func TestAgentSpoolResumesExactly(t *testing.T) {
	f, srv := newFake(t)
	work := t.TempDir()
	var before, want bytes.Buffer
	for i := 1; i <= 100000; i++ {
		if i <= 1000 {
			fmt.Fprintln(&before, i)
		}
		fmt.Fprintln(&want, i)
	}
	small := func(c *Config) { c.Executor.ChunkSize = 4 << 10 }
	dir, restart := readoptTest(t, f, srv, client.Assignment{
		AttemptID: 36, JobID: 6, Dir: work,
		Command: `seq 1 1000; while [ ! -e go ]; do sleep 0.02; done; seq 1001 100000`,
	}, small, func(dir string) {
		f.waitFor("the first lines", func() bool { return bytes.Equal(f.logs[36], before.Bytes()) })
		waitUntil(t, "the acknowledgement in the journal", func() bool {
			j, err := readJournal(slotOf(dir, 36))
			return err == nil && j.Acked == int64(before.Len())
		})
	})
	j := journalOf(t, dir, 36)
	f.mu.Lock()
	mark := len(f.sent)
	f.mu.Unlock()
	// Most of the output is written while no agent runs: it waits on disk.
	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the result on disk", func() bool { return hasResult(dir, 36) })
	restart()
	f.waitFor("the result", func() bool { _, ok := f.results[36]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if !bytes.Equal(f.logs[36], want.Bytes()) {
		t.Errorf("log has %d bytes, want %d", len(f.logs[36]), want.Len())
	}
	if res := f.results[36]; res.ExitCode != 0 || res.LogOffset != int64(want.Len()) {
		t.Errorf("result = exit %d at offset %d", res.ExitCode, res.LogOffset)
	}
	// The second agent went on from the journal's offset, chunk after chunk.
	next := j.Acked
	for _, r := range f.sent[mark:] {
		if r.offset != next {
			t.Fatalf("chunk at %d, want %d (journal acked %d)", r.offset, next, j.Acked)
		}
		next += r.size
	}
	if next != int64(want.Len()) {
		t.Errorf("chunks end at %d, want %d", next, want.Len())
	}
}

func TestDataDirIsExclusive(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	a, err := New(Config{Coordinators: []string{"127.0.0.1:1"}, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(context.Background()); !errors.Is(err, ErrDataDirBusy) {
		t.Errorf("Run with a locked data dir = %v, want ErrDataDirBusy", err)
	}
}

func TestNewDefaults(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrNoCoordinator) {
		t.Errorf("New without coordinators = %v", err)
	}
	a, err := New(Config{Coordinators: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name() == "" || a.cfg.Slots != 1 || a.cfg.HeartbeatInterval != time.Second || a.cfg.PullWait != 30*time.Second {
		t.Errorf("defaults = %+v", a.cfg)
	}
}

func TestSlotNames(t *testing.T) {
	if got := SlotName("render-1", 0); got != "render-1" {
		t.Fatalf("slot 0: %q", got)
	}
	if got := SlotName("render-1", 2); got != "render-1/3" {
		t.Fatalf("slot 2: %q", got)
	}
}

func TestAgentSlotKeepsItsSupervisor(t *testing.T) {
	// A slot's attempts run under one supervisor, their shells its
	// children; one killed from outside is reported lost, and the next
	// attempt gets a new supervisor.
	f, srv := newFake(t)
	startAgent(t, srv)
	parent := func(id int64) int {
		f.mu.Lock()
		defer f.mu.Unlock()
		pid, err := strconv.Atoi(strings.Fields(string(f.logs[id]))[0])
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	for id := int64(41); id <= 43; id++ {
		f.push(client.Assignment{AttemptID: id, JobID: id, Command: `echo $PPID`})
	}
	f.waitFor("three results", func() bool { return len(f.results) == 3 })
	sup := parent(41)
	if parent(42) != sup || parent(43) != sup {
		t.Errorf("supervisors %d, %d, %d; want one", sup, parent(42), parent(43))
	}
	f.push(client.Assignment{AttemptID: 44, JobID: 44, Command: `echo $PPID $$; sleep 300`})
	f.waitFor("the job to start", func() bool { return len(f.logs[44]) > 0 })
	if parent(44) != sup {
		t.Errorf("supervisor %d, want %d", parent(44), sup)
	}
	if err := syscall.Kill(sup, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the result", func() bool { _, ok := f.results[44]; return ok })
	f.mu.Lock()
	shell, err := strconv.Atoi(strings.Fields(string(f.logs[44]))[1])
	f.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, shell) // the agent took down what the supervisor left
	f.push(client.Assignment{AttemptID: 45, JobID: 45, Command: `echo $PPID`})
	f.waitFor("the result", func() bool { _, ok := f.results[45]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if res := f.results[44]; !res.Lost {
		t.Errorf("result = %+v, want Lost", res)
	}
	if res := f.results[45]; res.ExitCode != 0 || res.Lost {
		t.Errorf("result = %+v, want exit 0", res)
	}
	f.mu.Unlock()
	if p := parent(45); p == sup {
		t.Errorf("attempt 45 ran under the killed supervisor %d", p)
	}
	f.mu.Lock()
}

func TestAgentSlotReusesItsFiles(t *testing.T) {
	// A slot's attempts share its directory and its files, rewritten in
	// place: no file is created or removed per attempt.
	f, srv := newFake(t)
	dir := t.TempDir()
	runAgent(t, newAgent(t, srv, dir, nil))
	slot := filepath.Join(dir, slotsDir, "1")
	slotFiles := []string{journalName, outputName, stderrName, resultName}
	var files [][4]os.FileInfo
	for id := int64(51); id <= 53; id++ {
		f.push(client.Assignment{AttemptID: id, JobID: id, Command: fmt.Sprintf("echo attempt %d; echo err %d >&2", id, id)})
		f.waitFor("the result", func() bool { _, ok := f.results[id]; return ok })
		waitUntil(t, "the slot to be freed", func() bool { return slotOf(dir, id) == "" })
		var fis [4]os.FileInfo
		for i, name := range slotFiles {
			fi, err := os.Stat(filepath.Join(slot, name))
			if err != nil {
				t.Fatal(err)
			}
			fis[i] = fi
		}
		if fis[1].Size() != 0 || fis[2].Size() != 0 {
			t.Errorf("attempt %d: output not emptied (%d and %d bytes)", id, fis[1].Size(), fis[2].Size())
		}
		files = append(files, fis)
		if r, err := readResult(slot, id); err != nil || r.ExitCode != 0 {
			t.Errorf("attempt %d: result on disk %+v, %v", id, r, err)
		}
	}
	for i, name := range slotFiles {
		if !os.SameFile(files[0][i], files[2][i]) {
			t.Errorf("%s was replaced between attempts, not rewritten", name)
		}
	}
	f.mu.Lock()
	for id := int64(51); id <= 53; id++ {
		if got, want := string(f.logs[id]), fmt.Sprintf("attempt %d\n", id); got != want {
			t.Errorf("attempt %d: log %q, want %q", id, got, want)
		}
		if got, want := string(f.errs[id]), fmt.Sprintf("err %d\n", id); got != want {
			t.Errorf("attempt %d: stderr %q, want %q", id, got, want)
		}
	}
	f.mu.Unlock()
	var names []string
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		// (The lease is replaced by a rename every heartbeat round: its
		// temporary file may be seen.)
		if rel, _ := filepath.Rel(dir, path); err == nil && rel != "." && !strings.HasPrefix(rel, "."+leaseName+".") {
			names = append(names, rel)
		}
		return nil
	})
	want := []string{"lease", "lock", "slots", "slots/1", "slots/1/journal.json", "slots/1/output", "slots/1/result.json", "slots/1/stderr"}
	if !slices.Equal(names, want) {
		t.Errorf("data directory holds %q, want %q", names, want)
	}
}

func TestAgentStrayProcessKeepsItsOwnOutput(t *testing.T) {
	// A process that escaped its attempt's group still holds the output
	// file: the slot's next attempt gets a new one, and what the stray
	// writes later never lands in the next attempt's log.
	f, srv := newFake(t)
	work := t.TempDir()
	runAgent(t, newAgent(t, srv, t.TempDir(), nil))
	f.push(client.Assignment{AttemptID: 55, JobID: 55, Dir: work,
		Command: `setsid sh -c 'echo $$ >pid; while [ ! -e go ]; do sleep 0.02; done; echo stray' & while [ ! -s pid ]; do sleep 0.01; done; echo first`})
	f.waitFor("the result", func() bool { _, ok := f.results[55]; return ok })
	stray := readPID(t, filepath.Join(work, "pid"))
	t.Cleanup(func() {
		_ = syscall.Kill(stray, syscall.SIGKILL) // it escaped the agent on purpose
		waitGone(t, stray)
	})
	f.push(client.Assignment{AttemptID: 56, JobID: 56, Dir: work, Command: `echo second; while [ ! -e done ]; do sleep 0.02; done`})
	f.waitFor("the second attempt to start", func() bool { return len(f.logs[56]) > 0 })
	// The stray writes now, then the second attempt ends.
	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitGone(t, stray)
	if err := os.WriteFile(filepath.Join(work, "done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the result", func() bool { _, ok := f.results[56]; return ok })
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := string(f.logs[56]); got != "second\n" {
		t.Errorf("second attempt's log %q, want only its own output", got)
	}
	if got := string(f.logs[55]); got != "first\n" {
		t.Errorf("first attempt's log %q", got)
	}
}

func TestAgentSetsAnUnreadableJournalAside(t *testing.T) {
	// A journal that cannot be read (cut short by a power loss) cannot be
	// reported: it is set aside, and the slot works on.
	f, srv := newFake(t)
	dir := t.TempDir()
	slot := filepath.Join(dir, slotsDir, "1")
	if err := os.MkdirAll(slot, 0o755); err != nil {
		t.Fatal(err)
	}
	torn := []byte(`{"assignment":{"attempt_id":60`)
	if err := os.WriteFile(filepath.Join(slot, journalName), torn, 0o644); err != nil {
		t.Fatal(err)
	}
	runAgent(t, newAgent(t, srv, dir, nil))
	f.push(client.Assignment{AttemptID: 61, JobID: 61, Command: "true"})
	f.waitFor("the result", func() bool { _, ok := f.results[61]; return ok })
	if b, err := os.ReadFile(filepath.Join(slot, journalName+unreadableSuffix)); err != nil || !bytes.Equal(b, torn) {
		t.Errorf("set-aside journal %q, %v", b, err)
	}
}

func TestAgentTakesItsNextJobWithItsResult(t *testing.T) {
	// With work queued, a slot's result brings its next job back: one
	// request per job, no pull in between.
	f, srv := newFake(t)
	for id := int64(71); id <= 74; id++ {
		f.push(client.Assignment{AttemptID: id, JobID: id, Command: fmt.Sprintf("echo %d", id)})
	}
	runAgent(t, newAgent(t, srv, t.TempDir(), nil))
	f.waitFor("four results", func() bool { return len(f.results) == 4 })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nexts != 3 || f.busyPulls != 0 {
		t.Errorf("%d jobs handed out with a result, %d pulls while busy; want 3 and 0", f.nexts, f.busyPulls)
	}
	for id := int64(71); id <= 74; id++ {
		if res := f.results[id]; res.ExitCode != 0 || string(f.logs[id]) != fmt.Sprintf("%d\n", id) {
			t.Errorf("attempt %d: result %+v, log %q", id, res, f.logs[id])
		}
	}
	// Only the first pull (the queue was full before the agent started)
	// and the one after the last result (nothing left) asked for work.
	if f.pulls > 2 {
		t.Errorf("%d pulls for 4 jobs", f.pulls)
	}
}

// seqLines returns the lines prefix+i for i in from..to, as seq prints
// them through sed.
func seqLines(prefix string, from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "%s%d\n", prefix, i)
	}
	return b.String()
}

func TestAgentReportsEachStreamWithItsOwnOffsets(t *testing.T) {
	// Both streams, interleaved, with partial lines and more than a
	// chunk each: each arrives whole, typed, at its own offsets. The
	// progress pattern matches stderr only, so its value comes from there.
	f, srv := newFake(t)
	runAgent(t, newAgent(t, srv, t.TempDir(), func(c *Config) { c.Executor.ChunkSize = 4 << 10 }))
	f.push(client.Assignment{AttemptID: 81, JobID: 81, Command: `printf 'out-'; printf 'err-' >&2; echo a; echo b >&2
seq 1 3000; seq 1 2000 | sed s/^/e/ >&2; echo PROGRESS:30 >&2
printf 'out end'; printf 'err end' >&2; exit 2`})
	f.waitFor("the result", func() bool { _, ok := f.results[81]; return ok })
	wantOut := "out-a\n" + seqLines("", 1, 3000) + "out end"
	wantErr := "err-b\n" + seqLines("e", 1, 2000) + "PROGRESS:30\nerr end"
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := string(f.logs[81]); got != wantOut {
		t.Errorf("stdout has %d bytes, want %d", len(got), len(wantOut))
	}
	if got := string(f.errs[81]); got != wantErr {
		t.Errorf("stderr has %d bytes, want %d", len(got), len(wantErr))
	}
	res := f.results[81]
	if res.ExitCode != 2 || res.LogOffset != int64(len(wantOut)) || res.StderrOffset != int64(len(wantErr)) {
		t.Errorf("result = exit %d at offsets %d and %d", res.ExitCode, res.LogOffset, res.StderrOffset)
	}
	if res.Progress == nil || *res.Progress != 0.3 {
		t.Errorf("progress %v, want 0.3 (on stderr only)", res.Progress)
	}
	// Each stream's chunks follow one another, every report within the
	// chunk size.
	var next [numStreams]int64
	for _, r := range f.sent {
		if r.offset != next[r.stream] {
			t.Fatalf("stream %d: chunk at %d, want %d", r.stream, r.offset, next[r.stream])
		}
		next[r.stream] += r.size
	}
	if f.outputs < 4 {
		t.Errorf("%d reports with output; want more than a chunk per stream", f.outputs)
	}
}

func TestAgentReadoptsBothStreamsExactly(t *testing.T) {
	// The agent stops mid-job; the job writes both streams while no agent
	// runs; the next agent goes on from each stream's acknowledged
	// offset: nothing lost, nothing sent twice.
	f, srv := newFake(t)
	work := t.TempDir()
	beforeOut, beforeErr := seqLines("", 1, 1000), seqLines("e", 1, 500)
	small := func(c *Config) { c.Executor.ChunkSize = 4 << 10 }
	dir, restart := readoptTest(t, f, srv, client.Assignment{
		AttemptID: 82, JobID: 82, Dir: work,
		Command: `seq 1 1000; seq 1 500 | sed s/^/e/ >&2; while [ ! -e go ]; do sleep 0.02; done
seq 1001 30000; seq 501 20000 | sed s/^/e/ >&2; printf partial >&2`,
	}, small, func(dir string) {
		f.waitFor("the first lines", func() bool { return string(f.logs[82]) == beforeOut && string(f.errs[82]) == beforeErr })
		waitUntil(t, "the acknowledgements in the journal", func() bool {
			j, err := readJournal(slotOf(dir, 82))
			return err == nil && j.Acked == int64(len(beforeOut)) && j.ErrAcked == int64(len(beforeErr))
		})
	})
	j := journalOf(t, dir, 82)
	f.mu.Lock()
	mark := len(f.sent)
	f.mu.Unlock()
	if err := os.WriteFile(filepath.Join(work, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the result on disk", func() bool { return hasResult(dir, 82) })
	restart()
	f.waitFor("the result", func() bool { _, ok := f.results[82]; return ok })
	wantOut, wantErr := seqLines("", 1, 30000), seqLines("e", 1, 20000)+"partial"
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := string(f.logs[82]); got != wantOut {
		t.Errorf("stdout has %d bytes, want %d", len(got), len(wantOut))
	}
	if got := string(f.errs[82]); got != wantErr {
		t.Errorf("stderr has %d bytes, want %d", len(got), len(wantErr))
	}
	if res := f.results[82]; res.ExitCode != 0 || res.LogOffset != int64(len(wantOut)) || res.StderrOffset != int64(len(wantErr)) {
		t.Errorf("result = exit %d at offsets %d and %d", res.ExitCode, res.LogOffset, res.StderrOffset)
	}
	next := [numStreams]int64{j.Acked, j.ErrAcked}
	for _, r := range f.sent[mark:] {
		if r.offset != next[r.stream] {
			t.Fatalf("stream %d: chunk at %d, want %d (journal acked %d and %d)", r.stream, r.offset, next[r.stream], j.Acked, j.ErrAcked)
		}
		next[r.stream] += r.size
	}
	if next != [numStreams]int64{int64(len(wantOut)), int64(len(wantErr))} {
		t.Errorf("chunks end at %v", next)
	}
}

func TestAgentDropsBothStreamsOfARefusedReport(t *testing.T) {
	// A report refused for good is dropped whole: each stream's later
	// offsets shift by its own part, so they follow what the coordinator
	// has.
	f, srv := newFake(t)
	f.set(func() { f.refuse400, f.refuseBoth = 1, true })
	runAgent(t, newAgent(t, srv, t.TempDir(), func(c *Config) { c.Executor.ChunkSize = 4 << 10 }))
	f.push(client.Assignment{AttemptID: 83, JobID: 83, Command: `for i in $(seq 1 40); do seq $((i*100)) $((i*100+99)); seq $((i*100)) $((i*100+99)) | sed s/^/e/ >&2; done`})
	f.waitFor("the result", func() bool { _, ok := f.results[83]; return ok })
	var out, errOut strings.Builder
	for i := 1; i <= 40; i++ {
		out.WriteString(seqLines("", i*100, i*100+99))
		errOut.WriteString(seqLines("e", i*100, i*100+99))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refused == nil {
		t.Fatal("no report refused")
	}
	wantOut := strings.Replace(out.String(), string(f.refused), "", 1)
	e := errOut.String()
	wantErr := e[:f.refusedErrAt] + e[f.refusedErrAt+int64(len(f.refusedErr)):]
	if got := string(f.logs[83]); got != wantOut {
		t.Errorf("stdout has %d bytes, want %d", len(got), len(wantOut))
	}
	if got := string(f.errs[83]); got != wantErr {
		t.Errorf("stderr has %d bytes, want %d (%d refused)", len(got), len(wantErr), len(f.refusedErr))
	}
	if res := f.results[83]; res.LogOffset != int64(len(wantOut)) || res.StderrOffset != int64(len(wantErr)) {
		t.Errorf("result at offsets %d and %d, want %d and %d", res.LogOffset, res.StderrOffset, len(wantOut), len(wantErr))
	}
}

func TestAgentFullLogStopsBothStreams(t *testing.T) {
	// The cap counts both streams: once the coordinator says the log is
	// full, neither stream is sent, whichever filled it.
	for _, tc := range []struct{ name, cmd string }{
		{"stderr first", `seq 1 200000 >&2; seq 1 200000; echo PROGRESS:100`},
		{"stdout first", `seq 1 200000; seq 1 200000 >&2; echo PROGRESS:100`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t)
			f.set(func() { f.logCap = 1000 })
			runAgent(t, newAgent(t, srv, t.TempDir(), nil))
			f.push(client.Assignment{AttemptID: 84, JobID: 84, Command: tc.cmd})
			f.waitFor("the result", func() bool { _, ok := f.results[84]; return ok })
			f.mu.Lock()
			defer f.mu.Unlock()
			var sent int64
			for _, r := range f.sent {
				sent += r.size
			}
			if f.outputs != 1 || sent > DefaultChunkSize {
				t.Errorf("%d reports with output (%d bytes) for a log capped at 1000 bytes; want 1", f.outputs, sent)
			}
			if n := len(f.logs[84]) + len(f.errs[84]); n != 1000 {
				t.Errorf("the log keeps %d bytes, want 1000", n)
			}
			res := f.results[84]
			if res.ExitCode != 0 || res.Progress == nil || *res.Progress != 1 {
				t.Errorf("result %+v: want exit 0 and the last progress (parsed from output not sent)", res)
			}
		})
	}
}
