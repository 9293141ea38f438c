package coalition

import (
	"strings"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service/liveness"
	"github.com/croftfarm/croft/where"
)

// nanosPerSecond converts the FSM's unix nanoseconds to Coalition's seconds.
const nanosPerSecond = int64(1e9)

func seconds(ns int64) int64 { return ns / nanosPerSecond }

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// renderJob turns a stored job into Coalition's JSON row; with redact the
// environment's values are hidden (a read-only token sees the names).
func renderJob(j *raftstore.Job, redact bool) client.Job {
	env := coalitionEnv(j.Environment, j.Env)
	if redact {
		env = RedactEnvironment(env)
	}
	return client.Job{
		ID:              j.ID,
		Parent:          j.Parent,
		Title:           j.Title,
		Command:         j.Command,
		Dir:             j.Dir,
		Environment:     env,
		State:           coalitionState(j),
		Paused:          b2i(j.Paused),
		Worker:          j.Worker,
		StartTime:       seconds(j.StartTime),
		Duration:        seconds(j.Duration),
		PingTime:        seconds(j.PingTime),
		RunDone:         j.RunDone,
		Retry:           j.Retry,
		Timeout:         j.Timeout,
		Priority:        coalitionPriority(j),
		Affinity:        j.Affinity,
		AffinityBits:    j.AffinityBits,
		User:            j.User,
		Finished:        int(j.Finished),
		Errors:          int(j.Errors),
		Working:         int(j.Working),
		Total:           int(j.Total),
		TotalFinished:   int(j.TotalFinished),
		TotalErrors:     int(j.TotalErrors),
		TotalWorking:    int(j.TotalWorking),
		URL:             j.URL,
		Progress:        j.Progress,
		ProgressPattern: j.ProgressPattern,
		HAffinity:       j.HAffinity,
		HPriority:       coalitionHPriority(j),
		HPaused:         b2i(j.HPaused),
		HDepth:          int(j.HDepth),
		Project:         j.Project,
	}
}

// Redacted stands for an environment value a read-only token may not see.
const Redacted = "<redacted>"

// RedactEnvironment replaces the values of a Coalition environment
// (KEY=VALUE entries separated by newlines or the two characters `\n`)
// with Redacted, keeping the names and the separators.
func RedactEnvironment(env string) string {
	if env == "" {
		return ""
	}
	var b strings.Builder
	for i, line := range strings.Split(env, "\n") {
		if i > 0 {
			b.WriteString("\n")
		}
		for k, entry := range strings.Split(line, `\n`) {
			if k > 0 {
				b.WriteString(`\n`)
			}
			if key, _, ok := strings.Cut(entry, "="); ok {
				b.WriteString(key + "=" + Redacted)
			} else {
				b.WriteString(entry)
			}
		}
	}
	return b.String()
}

// renderWorker merges a stored worker with the leader's in-memory heartbeat
// figures (load, memory, ping time), which are never written to Raft.
func renderWorker(w *raftstore.Worker, p liveness.Ping) client.Worker {
	return client.Worker{
		Name:         w.Name,
		StartTime:    float64(w.StartTime) / 1e9,
		IP:           w.IP,
		Affinity:     w.Affinity,
		State:        coalitionWorkerState(w.State),
		Finished:     w.Finished,
		Error:        w.Error,
		LastJob:      w.LastJob,
		CurrentEvent: w.CurrentEvent,
		CPU:          p.CPU,
		FreeMemory:   p.FreeMemory,
		TotalMemory:  p.TotalMemory,
		Active:       b2i(w.Active),
		PingTime:     seconds(p.Time),
	}
}

func renderEvent(e *raftstore.Run) client.Event {
	return client.Event{
		ID:       e.ID,
		Worker:   e.Worker,
		JobID:    e.JobID,
		JobTitle: e.JobTitle,
		State:    coalitionJobState(e.State),
		Start:    seconds(e.Start),
		Duration: seconds(e.Duration),
	}
}

// jobColumns are the columns of a job row that WHERE clauses and the UI's
// distinct-value filters read, by Coalition column name.
var jobColumns = where.Table[*client.Job]{
	"id":               func(j *client.Job) any { return j.ID },
	"parent":           func(j *client.Job) any { return j.Parent },
	"title":            func(j *client.Job) any { return j.Title },
	"command":          func(j *client.Job) any { return j.Command },
	"dir":              func(j *client.Job) any { return j.Dir },
	"environment":      func(j *client.Job) any { return j.Environment },
	"state":            func(j *client.Job) any { return j.State },
	"paused":           func(j *client.Job) any { return int64(j.Paused) },
	"worker":           func(j *client.Job) any { return j.Worker },
	"start_time":       func(j *client.Job) any { return j.StartTime },
	"duration":         func(j *client.Job) any { return j.Duration },
	"ping_time":        func(j *client.Job) any { return j.PingTime },
	"run_done":         func(j *client.Job) any { return int64(j.RunDone) },
	"retry":            func(j *client.Job) any { return int64(j.Retry) },
	"timeout":          func(j *client.Job) any { return j.Timeout },
	"priority":         func(j *client.Job) any { return int64(j.Priority) },
	"affinity":         func(j *client.Job) any { return j.Affinity },
	"affinity_bits":    func(j *client.Job) any { return int64(j.AffinityBits) },
	"user":             func(j *client.Job) any { return j.User },
	"finished":         func(j *client.Job) any { return int64(j.Finished) },
	"errors":           func(j *client.Job) any { return int64(j.Errors) },
	"working":          func(j *client.Job) any { return int64(j.Working) },
	"total":            func(j *client.Job) any { return int64(j.Total) },
	"total_finished":   func(j *client.Job) any { return int64(j.TotalFinished) },
	"total_errors":     func(j *client.Job) any { return int64(j.TotalErrors) },
	"total_working":    func(j *client.Job) any { return int64(j.TotalWorking) },
	"url":              func(j *client.Job) any { return j.URL },
	"progress":         func(j *client.Job) any { return j.Progress },
	"progress_pattern": func(j *client.Job) any { return j.ProgressPattern },
	"h_affinity":       func(j *client.Job) any { return int64(j.HAffinity) },
	"h_priority":       func(j *client.Job) any { return int64(j.HPriority) },
	"h_paused":         func(j *client.Job) any { return int64(j.HPaused) },
	"h_depth":          func(j *client.Job) any { return int64(j.HDepth) },
}

// jobColumn exposes a job row's columns (jobColumns) as a where.Row.
func jobColumn(j client.Job) where.Row { return jobColumns.Row(&j) }
