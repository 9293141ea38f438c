package raftstore

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// Hot-path benchmarks: go test -run '^$' -bench . -benchmem ./raftstore/

func benchApply(b *testing.B, f *FSM, index *uint64, cmd Command) any {
	buf, err := Encode(cmd)
	if err != nil {
		b.Fatal(err)
	}
	*index++
	res := f.Apply(&raft.Log{Index: *index, Type: raft.LogCommand, Data: buf})
	if err, ok := res.(error); ok {
		b.Fatal(err)
	}
	return res
}

// queued builds a state with n runnable jobs spread over a few affinities
// and priorities, plus registered workers.
func queued(b *testing.B, n int) (*FSM, *uint64) {
	f := testFSM(b)
	var index uint64
	affs := []string{"", "linux", "gpu", "linux,gpu"}
	const chunk = 50_000
	for done := 0; done < n; done += chunk {
		specs := make([]JobSpec, 0, chunk)
		for i := done; i < n && i < done+chunk; i++ {
			specs = append(specs, JobSpec{Title: "q", Command: "true", Priority: i % 7, Affinity: affs[i%len(affs)], Retry: 1})
		}
		benchApply(b, f, &index, &JobCreate{Now: 1, Jobs: specs})
	}
	benchApply(b, f, &index, &WorkerRegister{Now: 1, Name: "w", SetAffinity: true, Affinity: "linux,gpu\nlinux"})
	return f, &index
}

// BenchmarkPick measures one dispatch (Pick then its final report, so the
// queue shrinks by one job per iteration) at several queue lengths: the
// cost must stay flat from 1,000 to 1,000,000 queued jobs.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("queued=%d", n), func(b *testing.B) {
			if n > b.N+n/2 && testing.Short() {
				b.Skip("large queue skipped in -short mode")
			}
			f, index := queued(b, n+b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a := benchApply(b, f, index, &Pick{Now: 2, Worker: "w"}).(*Assignment)
				if a == nil {
					b.Fatal("queue ran dry")
				}
				benchApply(b, f, index, &Report{Now: 3, Worker: "w", JobID: a.JobID, AttemptID: a.AttemptID, Done: true})
			}
		})
	}
}

// BenchmarkCreate measures applying single-job creates (entry decode
// included), and a 100,000-child group created by one command.
func BenchmarkCreate(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		f := testFSM(b)
		var index uint64
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			benchApply(b, f, &index, &JobCreate{Now: 1, Jobs: []JobSpec{{Title: "job", Command: "true", Retry: 10, Timeout: 1000, Priority: 255}}})
		}
	})
	b.Run("group-100k", func(b *testing.B) {
		specs := []JobSpec{{Title: "shot"}}
		for i := 0; i < 100_000; i++ {
			specs = append(specs, JobSpec{ParentRef: 1, Title: "frame", Command: "render", Retry: 10, Timeout: 1000, Priority: 255})
		}
		cmd := &JobCreate{Now: 1, Jobs: specs}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			f, err := NewFSM(b.TempDir()) // not testFSM: its cleanup would keep every state
			if err != nil {
				b.Fatal(err)
			}
			f.State().apply(0, &SetRelease{Release: Release})
			b.StartTimer()
			var index uint64
			benchApply(b, f, &index, cmd)
			b.StopTimer()
			// Closed now, not at the end: an FSM per iteration kept
			// alive would grow the heap the collector scans.
			f.Close()
			b.StartTimer()
		}
	})
}

// BenchmarkEncodeDecode measures the Raft entry codec on a typical report.
func BenchmarkEncodeDecode(b *testing.B) {
	p := 0.5
	cmd := &Report{Now: 1, Worker: "render-042/2", JobID: 123456, AttemptID: 654321, LogOffset: 4096, Log: make([]byte, 512), Progress: &p}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, err := Encode(cmd)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLogVolume writes 200 MB of job output (four jobs of 50 MB, in
// 512 KiB reports of 100-byte lines) through Apply and reports the heap in
// use afterwards: the text goes to the job log store on disk, so the heap
// must not grow with it.
func BenchmarkLogVolume(b *testing.B) {
	const jobs, perJob, chunk = 4, 50 << 20, 512 << 10
	text := bytes.Repeat([]byte(strings.Repeat("x", 99)+"\n"), chunk/100)
	var heap uint64
	for i := 0; i < b.N; i++ {
		f := testFSM(b)
		var index uint64
		specs := make([]JobSpec, jobs)
		for k := range specs {
			specs[k] = JobSpec{Title: "noisy", Command: "yes", Retry: 1}
		}
		benchApply(b, f, &index, &JobCreate{Now: 1, Jobs: specs})
		benchApply(b, f, &index, &WorkerRegister{Now: 1, Name: "w"})
		for k := 0; k < jobs; k++ {
			a := benchApply(b, f, &index, &Pick{Now: 2, Worker: "w"}).(*Assignment)
			for off := int64(0); off < perJob; off += int64(len(text)) {
				benchApply(b, f, &index, &Report{Now: 3, Worker: "w", JobID: a.JobID, AttemptID: a.AttemptID, LogOffset: off, Log: text})
			}
			benchApply(b, f, &index, &Report{Now: 4, Worker: "w", JobID: a.JobID, AttemptID: a.AttemptID, LogOffset: -1, Done: true})
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = ms.HeapInuse
		b.SetBytes(jobs * perJob)
	}
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
}
