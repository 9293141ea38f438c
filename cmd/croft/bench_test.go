package main

import (
	"context"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// BenchmarkSubmitToFinished measures, on an idle `croft dev` farm (the
// built binary: one coordinator and one agent), the time from PUT
// /api/jobs of a trivial job (`true`) to the job read back as FINISHED.
// One job at a time; the client polls the job every 200 µs.
//
//	go test -run '^$' -bench SubmitToFinished -benchtime 200x ./cmd/croft/
func BenchmarkSubmitToFinished(b *testing.B) {
	dev := start(b, "dev", "--data-dir", filepath.Join(b.TempDir(), "data"), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0")
	c := client.New(dev.url)
	ctx := context.Background()
	// Warm up: the agent has registered and connections are open.
	id, err := c.CreateJob(ctx, client.NewJob{Title: "warm-up", Command: "true"})
	if err != nil {
		b.Fatal(err)
	}
	waitJob(b, c, id, "FINISHED")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		id, err := c.CreateJob(ctx, client.NewJob{Title: "bench", Command: "true"})
		if err != nil {
			b.Fatal(err)
		}
		for {
			j, err := c.Job(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			if j.State == "FINISHED" {
				break
			}
			if j.State == "ERROR" {
				b.Fatalf("job %d failed", id)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	dev.stop()
}
