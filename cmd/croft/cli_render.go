package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// Rendering of the client commands' tables: times in the local zone as
// ISO 8601 date-times, "-" for what is unset.

// timeLayout is how tables show times: ISO 8601, local, to the second.
const timeLayout = "2006-01-02T15:04:05Z07:00"

// fmtTime shows t in the local zone; "-" for the zero time.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(timeLayout)
}

// fmtTimePtr is fmtTime of an optional time.
func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

// fmtUnix shows Unix seconds (Coalition's times) as fmtTime does; 0 is "-".
func fmtUnix(sec int64) string {
	if sec <= 0 {
		return "-"
	}
	return fmtTime(time.Unix(sec, 0))
}

// fmtDuration rounds d for a table: 1.5s, 2m3s, 1h2m3s.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// fmtIntPtr shows an optional int.
func fmtIntPtr(v *int) string {
	if v == nil {
		return "-"
	}
	return strconv.Itoa(*v)
}

// fmtPercent shows a 0..1 progress.
func fmtPercent(p float64) string { return fmt.Sprintf("%d%%", int(p*100+0.5)) }

// orDash is s, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clip shortens s to n runes for a table column, and keeps it one line.
func clip(s string, n int) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "\t", " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// table writes tab-separated rows as aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

func (t *table) flush() { t.tw.Flush() }

// progressBar draws p (0..1) in width cells.
func progressBar(p float64, width int) string {
	p = min(max(p, 0), 1)
	n := int(p*float64(width) + 0.5)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// jobProgress is a job's progress: a group's share of finished jobs.
func jobProgress(j client.NativeJob) float64 {
	if j.IsGroup && j.Counters.Total > 0 {
		return float64(j.Counters.Finished) / float64(j.Counters.Total)
	}
	return j.Progress
}

// exitText explains how a job's or run's last run ended.
func exitText(code *int, signal int, reason string) string {
	switch {
	case reason != "":
		return reason
	case signal != 0:
		return fmt.Sprintf("signal %d", signal)
	case code != nil:
		return strconv.Itoa(*code)
	}
	return "-"
}

// printJobs renders a job list.
func printJobs(w io.Writer, jobs []client.NativeJob) {
	t := newTable(w, "ID", "STATE", "PROGRESS", "PRIO", "PROJECT", "USER", "AFFINITY", "TITLE", "WORKER", "TRIES", "EXIT", "CREATED")
	for _, j := range jobs {
		state := j.State
		if j.IsGroup {
			state += fmt.Sprintf(" (%d/%d)", j.Counters.Finished, j.Counters.Total)
		}
		t.row(strconv.FormatInt(j.ID, 10), state, fmtPercent(jobProgress(j)), strconv.Itoa(j.Priority), j.Project,
			orDash(j.User), orDash(clip(j.Affinity, 20)), clip(orDash(j.Title), 40), orDash(j.Worker), strconv.Itoa(j.Tries),
			exitOfJob(j), fmtTimePtr(j.Created))
	}
	t.flush()
}

func exitOfJob(j client.NativeJob) string {
	sig, reason := 0, ""
	if j.Signal != nil {
		sig = *j.Signal
	}
	if j.Reason != nil {
		reason = *j.Reason
	}
	return exitText(j.ExitCode, sig, reason)
}

// printJob renders one job with its runs.
func printJob(w io.Writer, j client.NativeJob, runs []client.Run) {
	t := newTable(w, "FIELD", "VALUE")
	kv := func(k, v string) { t.row(k, v) }
	kv("id", strconv.FormatInt(j.ID, 10))
	kv("title", orDash(j.Title))
	kv("state", j.State)
	kv("done", strconv.FormatBool(j.Done))
	kv("progress", fmtPercent(jobProgress(j)))
	kv("project", j.Project)
	kv("parent", strconv.FormatInt(j.Parent, 10))
	if j.IsGroup {
		c := j.Counters
		kv("jobs", fmt.Sprintf("%d children, %d jobs: %d finished, %d running, %d failed, %d canceled", c.Children, c.Total, c.Finished, c.Running, c.Failed, c.Canceled))
	} else {
		kv("command", orDash(clip(j.Command, 200)))
	}
	kv("dir", orDash(j.Dir))
	for _, k := range sortedKeys(j.Env) {
		kv("env", k+"="+j.Env[k])
	}
	kv("priority", strconv.Itoa(j.Priority))
	kv("retry", strconv.Itoa(j.Retry))
	if j.TimeoutS > 0 {
		kv("timeout", (time.Duration(j.TimeoutS) * time.Second).String())
	} else {
		kv("timeout", "-")
	}
	kv("affinity", orDash(j.Affinity))
	kv("user", orDash(j.User))
	if len(j.Dependencies) > 0 {
		deps := make([]string, len(j.Dependencies))
		for i, d := range j.Dependencies {
			deps[i] = strconv.FormatInt(d, 10)
		}
		kv("dependencies", strings.Join(deps, ","))
	}
	kv("paused", strconv.FormatBool(j.Paused))
	kv("tries", strconv.Itoa(j.Tries))
	kv("exit", exitOfJob(j))
	kv("worker", orDash(j.Worker))
	kv("created", fmtTimePtr(j.Created))
	kv("started", fmtTimePtr(j.Started))
	kv("ended", fmtTimePtr(j.Ended))
	t.flush()
	if len(runs) == 0 {
		return
	}
	fmt.Fprintln(w)
	printRuns(w, runs)
}

// printRuns renders a job's runs.
func printRuns(w io.Writer, runs []client.Run) {
	t := newTable(w, "TRY", "ATTEMPT", "WORKER", "STATE", "START", "DURATION", "EXIT", "SIGNAL", "REASON")
	for _, r := range runs {
		t.row(strconv.Itoa(r.Try), strconv.FormatInt(r.AttemptID, 10), r.Worker, r.State, fmtTime(r.Start),
			fmtDuration(time.Duration(r.DurationMS)*time.Millisecond), fmtIntPtr(r.ExitCode), strconv.Itoa(r.Signal), orDash(r.Reason))
	}
	t.flush()
}

// printWorkers renders Coalition's worker rows.
func printWorkers(w io.Writer, ws []client.Worker) {
	t := newTable(w, "NAME", "STATE", "ENABLED", "AFFINITY", "JOB", "CPU", "MEMORY", "FINISHED", "ERRORS", "SEEN")
	for _, x := range ws {
		mem := "-"
		if x.TotalMemory > 0 {
			mem = fmt.Sprintf("%d/%d MiB", x.TotalMemory-x.FreeMemory, x.TotalMemory)
		}
		job := "-"
		if x.CurrentEvent != 0 && x.LastJob != 0 {
			job = strconv.FormatInt(x.LastJob, 10)
		}
		t.row(x.Name, x.State, yesNo(x.Active != 0), orDash(clip(x.Affinity, 30)), job, orDash(x.CPU), mem,
			strconv.Itoa(x.Finished), strconv.Itoa(x.Error), fmtUnix(x.PingTime))
	}
	t.flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
