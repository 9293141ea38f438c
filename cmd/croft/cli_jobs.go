package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// pollEvery is how often the waiting commands ask for a job's state.
const pollEvery = 500 * time.Millisecond

// envFlag collects repeated NAME=VALUE flags.
type envFlag map[string]string

func (e envFlag) String() string { return "" }

func (e envFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("NAME=VALUE expected, got %q", v)
	}
	e[k] = val
	return nil
}

// idsFlag collects job ids, comma-separated or repeated.
type idsFlag []int64

func (f *idsFlag) String() string { return "" }

func (f *idsFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		id, err := parseID(p)
		if err != nil {
			return err
		}
		*f = append(*f, id)
	}
	return nil
}

// shellJoin makes one shell command line of words, quoting those that
// need it; a single word is taken as a command line as it is.
func shellJoin(words []string) string {
	if len(words) == 1 {
		return words[0]
	}
	out := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=./:,@%") == "" {
			out[i] = w
		} else {
			out[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

// submitFlags are the job fields of "croft submit".
type submitFlags struct {
	spec       client.JobSpec
	env        envFlag
	deps       idsFlag
	runTimeout time.Duration
	group      bool
	wait       bool
	quiet      bool
}

const submitUsage = "croft submit [flags] [--] COMMAND [ARG...]"

// parseSubmit reads submit's command line into a job spec.
func parseSubmit(args []string) (*submitFlags, *cliFlags, error) {
	fs := newFlagSet("croft submit", submitUsage+"\n\nSubmits one job (a group with --group and no command). With several words the\ncommand is their shell-quoted join; one word is a shell command line as is.")
	var cf cliFlags
	cf.registerTimeout(fs, 0)
	f := &submitFlags{env: envFlag{}}
	fs.StringVar(&f.spec.Title, "title", "", "the job's title (default: the command)")
	fs.StringVar(&f.spec.Command, "command", "", "the command line (instead of the arguments)")
	fs.StringVar(&f.spec.Dir, "dir", "", "working directory on the worker")
	fs.Var(f.env, "env", "NAME=VALUE in the job's environment (repeatable)")
	fs.IntVar(&f.spec.Priority, "priority", 0, "priority, -1000000..1000000 (higher runs first)")
	fs.StringVar(&f.spec.Affinity, "affinity", "", "affinity names a worker must have, comma-separated")
	fs.IntVar(&f.spec.Retry, "retry", 0, "how many runs it may take (0 or 1: one)")
	fs.DurationVar(&f.runTimeout, "run-timeout", 0, "longest a run may take, e.g. 10m (0: no limit); the job's timeout")
	fs.Int64Var(&f.spec.Parent, "parent", 0, "the group to create the job in (0: a root job)")
	fs.Var(&f.deps, "after", "job ids that must finish first, comma-separated or repeated (dependencies)")
	fs.StringVar(&f.spec.Project, "project", "", "project (default: the parent's, else the token's only one, else default)")
	fs.StringVar(&f.spec.User, "user", "", "the user the job is submitted for")
	fs.StringVar(&f.spec.URL, "url", "", "a URL shown with the job")
	fs.StringVar(&f.spec.ProgressPattern, "progress-pattern", "", "regexp whose first group in the output is the progress (0..1, or N%)")
	fs.BoolVar(&f.spec.Paused, "paused", false, "create it paused (croft start ID runs it)")
	fs.BoolVar(&f.group, "group", false, "create a group (no command): jobs go in it with --parent")
	fs.BoolVar(&f.wait, "wait", false, "wait until the job is done, with a progress bar on stderr; exit 1 if it failed or was canceled")
	fs.BoolVar(&f.quiet, "quiet", false, "print the job id only")
	rest, err := parseArgs(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if len(rest) > 0 {
		if f.spec.Command != "" {
			return nil, nil, fmt.Errorf("%w: --command and arguments: give the command once", errUsage)
		}
		f.spec.Command = shellJoin(rest)
	}
	switch {
	case f.group && f.spec.Command != "":
		return nil, nil, fmt.Errorf("%w: a group has no command", errUsage)
	case !f.group && f.spec.Command == "":
		return nil, nil, fmt.Errorf("%w: no command (%s); --group makes a group", errUsage, submitUsage)
	case f.runTimeout < 0:
		return nil, nil, fmt.Errorf("%w: --run-timeout is negative", errUsage)
	}
	if f.runTimeout > 0 {
		f.spec.TimeoutS = int64((f.runTimeout + time.Second - 1) / time.Second)
	}
	if len(f.env) > 0 {
		f.spec.Env = f.env
	}
	f.spec.Dependencies = f.deps
	if f.spec.Title == "" {
		f.spec.Title = clip(f.spec.Command, 200)
	}
	return f, &cf, nil
}

func runSubmit(ctx context.Context, args []string, stdout io.Writer) error {
	f, cf, err := parseSubmit(args)
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx, cancel := cf.context(ctx)
	defer cancel()
	// The create itself is bounded even when --wait waits for ever.
	cctx, ccancel := context.WithTimeout(ctx, defaultTimeout)
	ids, err := c.CreateJobs(cctx, f.spec)
	ccancel()
	if err != nil {
		return err
	}
	if len(ids) != 1 {
		return fmt.Errorf("the coordinator answered %d ids for one job", len(ids))
	}
	id := ids[0]
	if !f.wait {
		switch {
		case cf.asJSON:
			return printJSON(stdout, map[string]any{"id": id})
		case f.quiet:
			fmt.Fprintln(stdout, id)
		default:
			fmt.Fprintf(stdout, "submitted job %d\n", id)
		}
		return nil
	}
	if !cf.asJSON && !f.quiet {
		fmt.Fprintf(os.Stderr, "submitted job %d\n", id)
	}
	var bar io.Writer = os.Stderr
	if f.quiet {
		bar = io.Discard
	}
	jobs, err := waitJobs(ctx, c, []int64{id}, bar)
	if err != nil {
		return err
	}
	return reportWaited(stdout, jobs, cf.asJSON)
}

// waitJobs polls the jobs until every one is done, drawing progress on w
// (a bar redrawn in place when w is a terminal, a line per change
// otherwise).
func waitJobs(ctx context.Context, c *client.Client, ids []int64, w io.Writer) ([]client.NativeJob, error) {
	tty := isTerminal(w)
	last := map[int64]string{}
	jobs := make([]client.NativeJob, len(ids))
	for {
		all := true
		for i, id := range ids {
			if i < len(jobs) && jobs[i].Done {
				continue
			}
			j, err := c.GetJob(ctx, id)
			if err != nil {
				if tty {
					fmt.Fprintln(w)
				}
				return nil, fmt.Errorf("job %d: %w", id, err)
			}
			jobs[i] = j
			all = all && j.Done
		}
		line := progressLine(jobs)
		if tty {
			fmt.Fprintf(w, "\r%s\x1b[K", line)
		} else {
			for _, j := range jobs {
				if s := j.State; last[j.ID] != s {
					last[j.ID] = s
					fmt.Fprintf(w, "job %d %s %s\n", j.ID, j.State, progressBar(jobProgress(j), 20))
				}
			}
		}
		if all {
			if tty {
				fmt.Fprintln(w)
			}
			return jobs, nil
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(w)
			}
			return nil, fmt.Errorf("waiting: %w", ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// progressLine sums up the waited jobs in one line.
func progressLine(jobs []client.NativeJob) string {
	if len(jobs) == 1 {
		j := jobs[0]
		return fmt.Sprintf("job %d %s %s %s", j.ID, progressBar(jobProgress(j), 30), fmtPercent(jobProgress(j)), j.State)
	}
	done, sum := 0, 0.0
	for _, j := range jobs {
		if j.Done {
			done++
		}
		sum += jobProgress(j)
	}
	p := sum / float64(max(len(jobs), 1))
	return fmt.Sprintf("%d jobs %s %s, %d done", len(jobs), progressBar(p, 30), fmtPercent(p), done)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// reportWaited prints the waited jobs' outcome; errFailed (exit 1) if
// any did not finish.
func reportWaited(w io.Writer, jobs []client.NativeJob, asJSON bool) error {
	failed := false
	for _, j := range jobs {
		failed = failed || j.State != "finished"
	}
	if asJSON {
		if err := printJSON(w, jobs); err != nil {
			return err
		}
	} else {
		for _, j := range jobs {
			fmt.Fprintf(w, "job %d %s (exit %s)\n", j.ID, j.State, exitOfJob(j))
		}
	}
	if failed {
		return errFailed
	}
	return nil
}

func runWait(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "croft wait [flags] ID..."
	fs := newFlagSet("croft wait", usage+"\n\nWaits until every job is done (finished, canceled, or failed with no retry left).\nExit 0 if all finished, 1 if any failed or was canceled.")
	var cf cliFlags
	cf.registerTimeout(fs, 0)
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	rest, c, ctx, cancel, err := cf.setup(ctx, fs, args)
	if err != nil {
		return err
	}
	defer cancel()
	ids, err := parseIDs(rest, usage)
	if err != nil {
		return err
	}
	var bar io.Writer = os.Stderr
	if *quiet {
		bar = io.Discard
	}
	jobs, err := waitJobs(ctx, c, ids, bar)
	if err != nil {
		return err
	}
	return reportWaited(stdout, jobs, cf.asJSON)
}

func runJobs(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("croft jobs", "croft jobs [flags]\n\nLists jobs in id order, the first --limit of those the filters keep.")
	var cf cliFlags
	cf.register(fs)
	var f client.JobFilter
	var parent int64 = -1
	fs.StringVar(&f.State, "state", "", "states, comma-separated: waiting, blocked, running, finished, failed, canceled, paused")
	fs.StringVar(&f.Project, "project", "", "one project")
	fs.StringVar(&f.User, "user", "", "the jobs of this user")
	fs.StringVar(&f.Affinity, "affinity", "", "the jobs whose affinity lists this name")
	fs.Int64Var(&parent, "parent", -1, "the jobs directly under this group (0: the root jobs)")
	fs.IntVar(&f.Offset, "offset", 0, "jobs to skip")
	fs.IntVar(&f.Limit, "limit", 100, "most jobs listed (0: all)")
	rest, c, ctx, cancel, err := cf.setup(ctx, fs, args)
	if err != nil {
		return err
	}
	defer cancel()
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected argument %q (croft job ID shows one job)", errUsage, rest[0])
	}
	if f.Offset < 0 || f.Limit < 0 {
		return fmt.Errorf("%w: --offset and --limit are not negative", errUsage)
	}
	if parent >= 0 {
		f.Parent = &parent
	}
	jobs, err := c.ListJobs(ctx, f)
	if err != nil {
		return err
	}
	if cf.asJSON {
		if jobs == nil {
			jobs = []client.NativeJob{}
		}
		return printJSON(stdout, jobs)
	}
	printJobs(stdout, jobs)
	if f.Limit > 0 && len(jobs) == f.Limit {
		fmt.Fprintf(os.Stderr, "(first %d shown: --offset %d for the next page, --limit 0 for all)\n", f.Limit, f.Offset+f.Limit)
	}
	return nil
}

func runJob(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "croft job [flags] ID"
	fs := newFlagSet("croft job", usage+"\n\nShows a job with its runs (worker, exit code, duration).")
	var cf cliFlags
	cf.register(fs)
	rest, c, ctx, cancel, err := cf.setup(ctx, fs, args)
	if err != nil {
		return err
	}
	defer cancel()
	if len(rest) != 1 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	id, err := parseID(rest[0])
	if err != nil {
		return err
	}
	j, err := c.GetJob(ctx, id)
	if err != nil {
		return err
	}
	runs, err := c.Runs(ctx, id)
	if err != nil {
		return err
	}
	if runs == nil {
		runs = []client.Run{}
	}
	if cf.asJSON {
		return printJSON(stdout, struct {
			client.NativeJob
			RunList []client.Run `json:"run_list"`
		}{j, runs})
	}
	printJob(stdout, j, runs)
	return nil
}

func runLog(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "croft log [-f] [flags] ID"
	fs := newFlagSet("croft log", usage+"\n\nPrints a job's log (its output and the farm's lines); -f follows it until the job is done.")
	var cf cliFlags
	cf.registerTimeout(fs, 0)
	follow := fs.Bool("f", false, "follow: print lines as they come until the job is done")
	fs.BoolVar(follow, "follow", false, "same as -f")
	from := fs.Int64("from", 1, "first line number")
	rest, c, ctx, cancel, err := cf.setup(ctx, fs, args)
	if err != nil {
		return err
	}
	defer cancel()
	if len(rest) != 1 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	id, err := parseID(rest[0])
	if err != nil {
		return err
	}
	next := max(*from, 1)
	for {
		page, err := c.LogLines(ctx, id, next, *follow, 30*time.Second)
		if err != nil {
			return err
		}
		for _, l := range page.Lines {
			if cf.asJSON {
				if err := printJSONLine(stdout, l); err != nil {
					return err
				}
			} else if _, err := io.WriteString(stdout, l.Text); err != nil {
				return err
			}
		}
		if page.NextLine > next {
			next = page.NextLine
		}
		if len(page.Lines) > 0 || !page.Done {
			continue // more may be there already
		}
		if !*follow {
			return nil
		}
		// Every line is read and no attempt runs: the end, unless the
		// job runs again (waiting, a retry) — ask it.
		j, err := c.GetJob(ctx, id)
		if err != nil {
			return err
		}
		if j.Done {
			page, err := c.LogLines(ctx, id, next, false, 0)
			if err != nil {
				return err
			}
			for _, l := range page.Lines {
				if _, err := io.WriteString(stdout, l.Text); err != nil {
					return err
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// jobAction serves "croft pause|start|reset|retry|cancel|delete ID...".
func jobAction(verb string) func(ctx context.Context, args []string, stdout io.Writer) error {
	return func(ctx context.Context, args []string, stdout io.Writer) error {
		usage := "croft " + verb + " [flags] ID..."
		fs := newFlagSet("croft "+verb, usage+"\n\n"+actionHelp[verb])
		var cf cliFlags
		cf.register(fs)
		rest, c, ctx, cancel, err := cf.setup(ctx, fs, args)
		if err != nil {
			return err
		}
		defer cancel()
		ids, err := parseIDs(rest, usage)
		if err != nil {
			return err
		}
		var failed error
		var out []client.NativeJob
		for _, id := range ids {
			if verb == "delete" {
				err = c.DeleteJob(ctx, id)
				if err == nil && !cf.asJSON {
					fmt.Fprintf(stdout, "deleted job %d\n", id)
				}
			} else {
				var j client.NativeJob
				j, err = c.ActOnJob(ctx, id, verb)
				if err == nil {
					out = append(out, j)
					if !cf.asJSON {
						fmt.Fprintf(stdout, "job %d: %s\n", id, j.State)
					}
				}
			}
			if err != nil {
				failed = errors.Join(failed, fmt.Errorf("job %d: %w", id, err))
				if errors.Is(err, client.ErrUnavailable) {
					break // the next would fail the same way
				}
			}
		}
		if cf.asJSON && verb != "delete" {
			if out == nil {
				out = []client.NativeJob{}
			}
			if err := printJSON(stdout, out); err != nil {
				return err
			}
		}
		return failed
	}
}

// actionHelp says what each job action does.
var actionHelp = map[string]string{
	"pause":  "Pauses the jobs and what is below them: nothing starts; a running run is stopped and requeued.",
	"start":  "Unpauses the jobs and what is below them, and makes canceled ones runnable again.",
	"reset":  "Runs the jobs and everything below them again from the start (finished ones too).",
	"retry":  "Runs the failed and canceled jobs below them again.",
	"cancel": "Cancels the jobs not finished below them; a running one is killed.",
	"delete": "Deletes the jobs and everything below them; a running run is killed.",
}

// printJSONLine writes v as one line of JSON.
func printJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
