package coalition

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/croftfarm/croft/internal/farmtest"
	"github.com/croftfarm/croft/raftstore"
)

// largeFarmJobs is the size of the farm the memory tests list: large
// enough that a reply held whole (about 14 MB) stands far above a page.
const largeFarmJobs = 20000

// newLargeFarm is a secure farm with largeFarmJobs root jobs in project
// a, each with a title of a few hundred bytes and an environment.
func newLargeFarm(t *testing.T) *secureFarm {
	t.Helper()
	f := newSecureFarm(t, Limits{})
	const batch = 1000
	for done := 0; done < largeFarmJobs; done += batch {
		specs := make([]raftstore.JobSpec, batch)
		for i := range specs {
			n := done + i
			specs[i] = raftstore.JobSpec{
				Title:       fmt.Sprintf("shot %05d %s", n, strings.Repeat("x", 300)),
				Command:     "render --frame " + fmt.Sprint(n),
				Environment: "TOKEN=s3cret",
				Project:     "a",
				Paused:      true,
			}
		}
		f.apply(&raftstore.JobCreate{Now: farmtest.Now, Jobs: specs})
	}
	return f
}

// serveTo serves a GET of path as token, in ctx, into w: in this
// goroutine, with no connection in between.
func (f *secureFarm) serveTo(w http.ResponseWriter, ctx context.Context, token, path string) {
	f.t.Helper()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+f.tokens[token])
	f.srv.Config.Handler.ServeHTTP(w, req)
}

// TestJobListStreamsInBoundedMemory lists 20,000 jobs (GET /api/jobs,
// as Coalition's UI and client do, without a window): every job arrives,
// in buffer-sized writes as they are rendered, and the live heap while
// the reply is written grows by a small fraction of the reply (a page of
// the state's scan), not by the reply. A list held whole fails it: see
// the control in jsonstream's TestPagesStreamsInBoundedMemory.
func TestJobListStreamsInBoundedMemory(t *testing.T) {
	f := newLargeFarm(t)
	for _, token := range []string{"admin", "read-a"} { // read-a: filtered and redacted
		m := farmtest.NewStreamMeter(1 << 20)
		f.serveTo(m, context.Background(), token, "/api/jobs")
		items, err := m.Close()
		if err != nil || items != largeFarmJobs || m.Code != http.StatusOK {
			t.Fatalf("%s: %d jobs, status %d, %v; want %d", token, items, m.Code, err, largeFarmJobs)
		}
		if m.Bytes < 8<<20 {
			t.Fatalf("%s: the reply is %d bytes: too small for the test to mean anything", token, m.Bytes)
		}
		if m.MaxWrite > 64<<10 || int64(m.Writes) < m.Bytes/(64<<10) {
			t.Fatalf("%s: %d bytes in %d writes (largest %d): not written as produced", token, m.Bytes, m.Writes, m.MaxWrite)
		}
		// A page of 1024 jobs (half a MiB) and the buffers are live at
		// once; a quarter of the reply leaves a wide margin.
		if g := m.Growth(); g > uint64(m.Bytes)/4 {
			t.Fatalf("%s: the live heap grew by %d bytes for a reply of %d: the list is held, not streamed", token, g, m.Bytes)
		}
		t.Logf("%s: %d jobs, %d bytes in %d writes; live heap growth %d bytes", token, items, m.Bytes, m.Writes, m.Growth())
	}
}

// leavingContext is a request context whose client leaves at its
// leaveAt-th look (Err): the handler sees the same thing as when a real
// connection closes, at a point set by the code's own progress, not by a
// clock. It counts the looks.
type leavingContext struct {
	context.Context
	mu      sync.Mutex
	looks   int
	leaveAt int // 0: never
	left    chan struct{}
}

func newLeavingContext(leaveAt int) *leavingContext {
	return &leavingContext{Context: context.Background(), leaveAt: leaveAt, left: make(chan struct{})}
}

func (c *leavingContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.looks++
	if c.leaveAt > 0 && c.looks >= c.leaveAt {
		select {
		case <-c.left:
		default:
			close(c.left)
		}
		return context.Canceled
	}
	return nil
}

func (c *leavingContext) Done() <-chan struct{} { return c.left }

func (c *leavingContext) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.looks
}

// TestWhereStopsWhenTheClientLeaves runs a where query over 20,000 jobs
// whose client leaves early in the scan: the handler stops at its next
// look at the request (no more looks, so no more rows, after it), and
// answers no count. The same query left alone looks at the request many
// times over the scan: stopping at the third look is stopping early.
func TestWhereStopsWhenTheClientLeaves(t *testing.T) {
	f := newLargeFarm(t)
	const path = "/api/jobs/count/where/?where_clause=title%20LIKE%20%27%25zzz%25%27"

	full := newLeavingContext(0)
	w := httptest.NewRecorder()
	f.serveTo(w, full, "admin", path)
	if w.Code != http.StatusOK || w.Body.String() != "0" {
		t.Fatalf("the whole query: %d %s, want 200 0", w.Code, w.Body)
	}
	whole := full.count()
	if whole < 20 {
		t.Fatalf("a whole scan of %d jobs looked at the request %d times: too few for the test to mean anything", largeFarmJobs, whole)
	}

	const leaveAt = 3
	leaving := newLeavingContext(leaveAt)
	w = httptest.NewRecorder()
	f.serveTo(w, leaving, "admin", path)
	if w.Code == http.StatusOK {
		t.Fatalf("a query whose client left answered 200 %s", w.Body)
	}
	if got := leaving.count(); got > leaveAt+1 {
		t.Fatalf("the handler looked at the request %d times after its client left at look %d (a whole scan looks %d times): it went on scanning", got-leaveAt, leaveAt, whole)
	}
	t.Logf("a whole scan looks at the request %d times; the one whose client left stopped at look %d", whole, leaving.count())
}
