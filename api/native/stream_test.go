package native

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/croftfarm/croft/internal/farmtest"
	"github.com/croftfarm/croft/raftstore"
)

// TestJobListStreamsInBoundedMemory lists 20,000 jobs (GET /croft/v1/jobs
// without a window): every job arrives, in buffer-sized writes as they
// are rendered, and the live heap while the reply is written grows by a
// small fraction of the reply (a page of the state's scan), not by the
// reply. The same measure fails a list held whole (see jsonstream's
// TestPagesStreamsInBoundedMemory and its control).
func TestJobListStreamsInBoundedMemory(t *testing.T) {
	const n, batch = 20000, 1000
	f := newJobsFarm(t)
	for done := 0; done < n; done += batch {
		specs := make([]raftstore.JobSpec, batch)
		for i := range specs {
			k := done + i
			specs[i] = raftstore.JobSpec{
				Title: fmt.Sprintf("shot %05d %s", k, strings.Repeat("x", 300)), Command: fmt.Sprint("render --frame ", k),
				Env: map[string]string{"TOKEN": "s3cret"}, Project: "a", Paused: true,
			}
		}
		f.ok(&raftstore.JobCreate{Now: now, Jobs: specs})
	}
	for _, token := range []string{"admin", "read-a"} { // read-a: filtered and redacted
		req := httptest.NewRequest(http.MethodGet, PathJobs, nil)
		req.Header.Set("Authorization", "Bearer secret-"+token)
		m := farmtest.NewStreamMeter(1 << 20)
		f.engine.ServeHTTP(m, req)
		items, err := m.Close()
		if err != nil || items != n || m.Code != http.StatusOK {
			t.Fatalf("%s: %d jobs, status %d, %v; want %d", token, items, m.Code, err, n)
		}
		if m.Bytes < 8<<20 {
			t.Fatalf("%s: the reply is %d bytes: too small for the test to mean anything", token, m.Bytes)
		}
		if m.MaxWrite > 64<<10 || int64(m.Writes) < m.Bytes/(64<<10) {
			t.Fatalf("%s: %d bytes in %d writes (largest %d): not written as produced", token, m.Bytes, m.Writes, m.MaxWrite)
		}
		if g := m.Growth(); g > uint64(m.Bytes)/4 {
			t.Fatalf("%s: the live heap grew by %d bytes for a reply of %d: the list is held, not streamed", token, g, m.Bytes)
		}
		t.Logf("%s: %d jobs, %d bytes in %d writes; live heap growth %d bytes", token, items, m.Bytes, m.Writes, m.Growth())
	}
}
