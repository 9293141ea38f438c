package coalition

import (
	"strings"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/coordinator/liveness"
	"github.com/croftfarm/croft/raftstore"
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
		Finished:        j.Finished,
		Errors:          j.Errors,
		Working:         j.Working,
		Total:           j.Total,
		TotalFinished:   j.TotalFinished,
		TotalErrors:     j.TotalErrors,
		TotalWorking:    j.TotalWorking,
		URL:             j.URL,
		Progress:        j.Progress,
		ProgressPattern: j.ProgressPattern,
		HAffinity:       j.HAffinity,
		HPriority:       coalitionHPriority(j),
		HPaused:         b2i(j.HPaused),
		HDepth:          j.HDepth,
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

func renderEvent(e *raftstore.Event) client.Event {
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

// jobColumn exposes a job row's columns to WHERE clauses and the UI's
// distinct-value filters, by Coalition column name.
func jobColumn(j client.Job) Row {
	return func(col string) (any, bool) {
		switch col {
		case "id":
			return j.ID, true
		case "parent":
			return j.Parent, true
		case "title":
			return j.Title, true
		case "command":
			return j.Command, true
		case "dir":
			return j.Dir, true
		case "environment":
			return j.Environment, true
		case "state":
			return j.State, true
		case "paused":
			return int64(j.Paused), true
		case "worker":
			return j.Worker, true
		case "start_time":
			return j.StartTime, true
		case "duration":
			return j.Duration, true
		case "ping_time":
			return j.PingTime, true
		case "run_done":
			return int64(j.RunDone), true
		case "retry":
			return int64(j.Retry), true
		case "timeout":
			return j.Timeout, true
		case "priority":
			return int64(j.Priority), true
		case "affinity":
			return j.Affinity, true
		case "affinity_bits":
			return int64(j.AffinityBits), true
		case "user":
			return j.User, true
		case "finished":
			return int64(j.Finished), true
		case "errors":
			return int64(j.Errors), true
		case "working":
			return int64(j.Working), true
		case "total":
			return int64(j.Total), true
		case "total_finished":
			return int64(j.TotalFinished), true
		case "total_errors":
			return int64(j.TotalErrors), true
		case "total_working":
			return int64(j.TotalWorking), true
		case "url":
			return j.URL, true
		case "progress":
			return j.Progress, true
		case "progress_pattern":
			return j.ProgressPattern, true
		case "h_affinity":
			return int64(j.HAffinity), true
		case "h_priority":
			return int64(j.HPriority), true
		case "h_paused":
			return int64(j.HPaused), true
		case "h_depth":
			return int64(j.HDepth), true
		}
		return nil, false
	}
}
