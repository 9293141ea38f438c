package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/croftfarm/croft/api/client"
)

// pageFlags are the --offset and --limit of a list.
func pageFlags(fs *flag.FlagSet) *client.Page {
	var p client.Page
	fs.IntVar(&p.Offset, "offset", 0, "items to skip")
	fs.IntVar(&p.Limit, "limit", 100, "most items listed (0: all)")
	return &p
}

func checkPage(p *client.Page, rest []string) error {
	if len(rest) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, rest[0])
	}
	if p.Offset < 0 || p.Limit < 0 {
		return fmt.Errorf("%w: --offset and --limit are not negative", errUsage)
	}
	return nil
}

// runList runs a list command: the common flags, those flags adds (its
// filters) and, when paged, --offset and --limit; then it fetches the
// items and prints them, a table by print or with --json the array ([]
// for none).
func runList[T any](ctx context.Context, args []string, stdout io.Writer, name, help string, paged bool,
	flags func(*flag.FlagSet), fetch func(context.Context, *client.Client, client.Page) ([]T, error), print func(io.Writer, []T)) error {
	fs := newFlagSet(name, help)
	var cf cliFlags
	cf.register(fs)
	if flags != nil {
		flags(fs)
	}
	page := &client.Page{}
	if paged {
		page = pageFlags(fs)
	}
	rest, c, ctx, cancel, err := cf.setup(ctx, fs, args)
	if err != nil {
		return err
	}
	defer cancel()
	if err := checkPage(page, rest); err != nil {
		return err
	}
	items, err := fetch(ctx, c, *page)
	if err != nil {
		return err
	}
	if cf.asJSON {
		if items == nil {
			items = []T{}
		}
		return printJSON(stdout, items)
	}
	print(stdout, items)
	return nil
}

// idCommand parses "croft NOUN [VERB] [flags] ID" (VERB one of verbs,
// "show" when absent): the verb, the id and the client. done is set when
// it answered --help itself (err is then its outcome).
func idCommand(ctx context.Context, args []string, noun, usage, help string, verbs ...string) (verb, id string, cf *cliFlags, c *client.Client, cctx context.Context, cancel context.CancelFunc, done bool, err error) {
	if done, err := groupHelp(args, usage); done {
		return "", "", nil, nil, nil, nil, true, err
	}
	verb = "show"
	for _, v := range append(verbs, "show") {
		if args[0] == v {
			verb, args = v, args[1:]
			break
		}
	}
	fs := newFlagSet("croft "+noun+" "+verb, usage+"\n\n"+help)
	cf = &cliFlags{}
	cf.register(fs)
	rest, c, cctx, cancel, err := cf.setup(ctx, fs, args)
	if err != nil {
		return "", "", nil, nil, nil, nil, false, err
	}
	if len(rest) != 1 {
		cancel()
		return "", "", nil, nil, nil, nil, false, fmt.Errorf("%w: %s", errUsage, usage)
	}
	return verb, rest[0], cf, c, cctx, cancel, false, nil
}

func runSessions(ctx context.Context, args []string, stdout io.Writer) error {
	var project *string
	return runList(ctx, args, stdout, "croft sessions", "croft sessions [flags]\n\nLists the sessions (groups and execution contexts of the dialects).", true,
		func(fs *flag.FlagSet) { project = fs.String("project", "", "one project") },
		func(ctx context.Context, c *client.Client, p client.Page) ([]client.Session, error) {
			return c.Sessions(ctx, *project, p)
		},
		printSessions)
}

func printSessions(w io.Writer, ss []client.Session) {
	t := newTable(w, "ID", "KIND", "STATE", "BUSY", "PROJECT", "NAME", "HOST", "INTERPRETER", "JOBS", "LAST-ACTIVITY")
	for _, s := range ss {
		state := s.State
		if s.Reason != "" && s.Reason != s.State {
			state += " (" + s.Reason + ")"
		}
		t.row(s.ID, s.Kind, state, yesNo(s.Busy), s.Project, orDash(clip(s.Name, 30)), orDash(s.Host), orDash(s.Interpreter),
			strconv.Itoa(s.Jobs), fmtTime(s.LastActivity))
	}
	t.flush()
}

const sessionUsage = "croft session ID | croft session close|start|delete ID"

func runSession(ctx context.Context, args []string, stdout io.Writer) error {
	verb, id, cf, c, ctx, cancel, done, err := idCommand(ctx, args, "session", sessionUsage,
		"Shows a session and its jobs; close cancels its unended jobs; start runs a group\nsession's jobs; delete forgets a closed session with its jobs.", "close", "start", "delete")
	if done || err != nil {
		return err
	}
	defer cancel()
	switch verb {
	case "close", "start":
		if err := c.SessionAction(ctx, id, verb); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "session %s: %s\n", id, map[string]string{"close": "closed", "start": "started"}[verb])
		return nil
	case "delete":
		if err := c.DeleteSession(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted session %s\n", id)
		return nil
	}
	s, err := c.GetSession(ctx, id)
	if err != nil {
		return err
	}
	jobs, err := c.SessionJobs(ctx, id, client.Page{})
	if err != nil {
		return err
	}
	if cf.asJSON {
		if jobs == nil {
			jobs = []client.SessionJob{}
		}
		return printJSON(stdout, struct {
			client.Session
			JobList []client.SessionJob `json:"job_list"`
		}{s, jobs})
	}
	t := newTable(stdout, "FIELD", "VALUE")
	t.row("id", s.ID)
	t.row("name", orDash(s.Name))
	t.row("kind", s.Kind)
	t.row("state", s.State)
	t.row("reason", orDash(s.Reason))
	t.row("busy", yesNo(s.Busy))
	t.row("project", s.Project)
	t.row("host", orDash(s.Host))
	t.row("interpreter", orDash(s.Interpreter))
	t.row("inactive timeout", strconv.FormatInt(s.InactiveTimeout, 10)+"s")
	for _, k := range sortedKeys(s.Labels) {
		t.row("label", k+"="+s.Labels[k])
	}
	t.row("created", fmtTime(s.Created))
	t.row("last activity", fmtTime(s.LastActivity))
	t.row("closed", fmtTimePtr(s.Closed))
	t.flush()
	if len(jobs) > 0 {
		fmt.Fprintln(stdout)
		jt := newTable(stdout, "JOB", "STATE", "TRIES", "EXIT", "PROGRESS", "TITLE", "CREATED")
		for _, j := range jobs {
			jt.row(strconv.FormatInt(j.ID, 10), j.State, strconv.Itoa(j.Tries), exitText(j.ExitCode, j.Signal, j.Reason),
				fmtPercent(j.Progress), clip(orDash(j.Title), 40), fmtTime(j.Created))
		}
		jt.flush()
	}
	return nil
}

func runTemplates(ctx context.Context, args []string, stdout io.Writer) error {
	var project *string
	return runList(ctx, args, stdout, "croft templates", "croft templates [flags]\n\nLists the job templates (saved jobs that croft execute runs).", true,
		func(fs *flag.FlagSet) { project = fs.String("project", "", "one project") },
		func(ctx context.Context, c *client.Client, p client.Page) ([]client.Template, error) {
			return c.Templates(ctx, *project, p)
		},
		func(w io.Writer, ts []client.Template) {
			t := newTable(w, "ID", "PROJECT", "NAME", "TYPE", "COMMAND", "EXECUTIONS", "UPDATED")
			for _, x := range ts {
				t.row(x.ID, x.Project, clip(x.Name, 30), orDash(x.Type), orDash(clip(x.Command, 40)), strconv.Itoa(x.Executions), fmtTime(x.Updated))
			}
			t.flush()
		})
}

const templateUsage = "croft template ID | croft template delete ID"

func runTemplate(ctx context.Context, args []string, stdout io.Writer) error {
	verb, id, cf, c, ctx, cancel, done, err := idCommand(ctx, args, "template", templateUsage,
		"Shows a template, or deletes one (refused while it has executions).", "delete")
	if done || err != nil {
		return err
	}
	defer cancel()
	if verb == "delete" {
		if err := c.DeleteTemplate(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted template %s\n", id)
		return nil
	}
	x, err := c.GetTemplate(ctx, id)
	if err != nil {
		return err
	}
	if cf.asJSON {
		return printJSON(stdout, x)
	}
	t := newTable(stdout, "FIELD", "VALUE")
	t.row("id", x.ID)
	t.row("project", x.Project)
	t.row("name", x.Name)
	t.row("type", orDash(x.Type))
	t.row("command", orDash(x.Command))
	t.row("main", orDash(x.Main))
	t.row("retry", strconv.Itoa(x.Defaults.Retry))
	t.row("timeout", strconv.FormatInt(x.Defaults.Timeout, 10)+"s")
	t.row("priority", strconv.Itoa(x.Defaults.Priority))
	t.row("affinity", orDash(x.Defaults.Affinity))
	for _, k := range sortedKeys(x.Defaults.Env) {
		t.row("env", k+"="+x.Defaults.Env[k])
	}
	t.row("public", yesNo(x.Public))
	t.row("protected", yesNo(x.Protected))
	t.row("executions", strconv.Itoa(x.Executions))
	t.row("created", fmtTime(x.Created))
	t.row("updated", fmtTime(x.Updated))
	t.flush()
	return nil
}

func runExecute(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "croft execute [flags] TEMPLATE [--] [ARG...]"
	fs := newFlagSet("croft execute", usage+"\n\nRuns a template once (an execution: one job); the arguments fill its {args}.")
	var cf cliFlags
	cf.registerTimeout(fs, 0)
	var req client.ExecuteRequest
	params := envFlag{}
	fs.StringVar(&req.Pool, "pool", "", "an affinity name the job needs besides the template's")
	fs.StringVar(&req.Host, "host", "", "pin the job to this host (an agent's name)")
	fs.Var(params, "param", "NAME=VALUE in the job's environment, over the template's (repeatable)")
	doc := fs.String("doc", "", "a JSON document kept with the execution")
	wait := fs.Bool("wait", false, "wait until its job is done (progress on stderr); exit 1 if it failed or was canceled")
	rest, c, ctx, cancel, err := cf.setup(ctx, fs, args)
	if err != nil {
		return err
	}
	defer cancel()
	if len(rest) == 0 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	req.Args = rest[1:]
	if len(params) > 0 {
		req.Params = params
	}
	if *doc != "" {
		if !json.Valid([]byte(*doc)) {
			return fmt.Errorf("%w: --doc is not JSON", errUsage)
		}
		req.Doc = json.RawMessage(*doc)
	}
	x, err := c.Execute(ctx, rest[0], req)
	if err != nil {
		return err
	}
	if !*wait {
		if cf.asJSON {
			return printJSON(stdout, x)
		}
		fmt.Fprintf(stdout, "execution %s: job %d\n", x.ID, x.JobID)
		return nil
	}
	if !cf.asJSON {
		fmt.Fprintf(os.Stderr, "execution %s: job %d\n", x.ID, x.JobID)
	}
	jobs, err := waitJobs(ctx, c, []int64{x.JobID}, os.Stderr)
	if err != nil {
		return err
	}
	return reportWaited(stdout, jobs, cf.asJSON)
}

func runExecutions(ctx context.Context, args []string, stdout io.Writer) error {
	var template *string
	return runList(ctx, args, stdout, "croft executions", "croft executions [flags]\n\nLists the executions of templates.", true,
		func(fs *flag.FlagSet) { template = fs.String("template", "", "the executions of this template") },
		func(ctx context.Context, c *client.Client, p client.Page) ([]client.Execution, error) {
			return c.Executions(ctx, *template, p)
		},
		printExecutions)
}

func printExecutions(w io.Writer, xs []client.Execution) {
	t := newTable(w, "ID", "TEMPLATE", "JOB", "STATE", "RC", "WORKER", "HOST", "ARGS", "CREATED")
	for _, x := range xs {
		t.row(x.ID, x.Template, strconv.FormatInt(x.JobID, 10), x.State, exitText(x.ReturnCode, x.Signal, x.Reason),
			orDash(x.Worker), orDash(x.Host), orDash(clip(strings.Join(x.Args, " "), 30)), fmtTime(x.Created))
	}
	t.flush()
}

const executionUsage = "croft execution ID | croft execution cancel|delete ID"

func runExecution(ctx context.Context, args []string, stdout io.Writer) error {
	verb, id, cf, c, ctx, cancel, done, err := idCommand(ctx, args, "execution", executionUsage,
		"Shows an execution; cancel cancels its job; delete deletes an ended one and its job.", "cancel", "delete")
	if done || err != nil {
		return err
	}
	defer cancel()
	switch verb {
	case "cancel":
		if err := c.CancelExecution(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "canceled execution %s\n", id)
		return nil
	case "delete":
		if err := c.DeleteExecution(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted execution %s\n", id)
		return nil
	}
	x, err := c.GetExecution(ctx, id)
	if err != nil {
		return err
	}
	if cf.asJSON {
		return printJSON(stdout, x)
	}
	printExecutions(stdout, []client.Execution{x})
	return nil
}
