// Command croft is the one Croft binary: coordinator, agent, the embedded
// dev farm and the CLI of jobs, workers and the cluster (docs/CLI.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/croftfarm/croft/agent"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `croft: a Raft-replicated render-farm and batch-job coordinator

Usage:
  croft coordinator [flags]   run a coordinator (3 or 5 make a cluster)
  croft agent [flags]         run the agent on a render node (SIGTERM: stop, jobs run on;
                              SIGUSR1 or "croft agent --drain": exit once the jobs are over)
  croft dev [flags]           one-node coordinator and a local agent in one process
  croft bench [flags]         performance scenarios on a local 3-coordinator cluster
  croft version

Jobs:
  croft submit [flags] [--] COMMAND...   submit a job (--wait: until it is done)
  croft jobs [flags]                     list jobs (--state, --project, --user, --affinity, --parent)
  croft job ID                           a job with its runs and exit codes
  croft log [-f] ID                      a job's log (-f: follow)
  croft wait ID...                       wait for jobs: exit 0 if all finished, 1 if not
  croft pause|start|reset|retry|cancel|delete ID...
Farm:
  croft workers | hosts                  workers (agent slots) and hosts
  croft worker enable|disable|drain NAME...
  croft cluster status|join|remove       coordinators (status probes each member)
  croft token create|list|revoke         access tokens (admin)
  croft project create|list|delete       projects
Sessions and templates:
  croft sessions | session [close|start|delete] ID
  croft templates | template [delete] ID
  croft execute TEMPLATE [ARG...] | executions | execution [cancel|delete] ID

Client commands take --coordinator URL,... (else $CROFT_COORDINATOR), --token,
--token-file (else $CROFT_TOKEN), --ca-cert, --config FILE (else
~/.config/croft/config), --json and --timeout. Exit codes: 0 ok, 1 the
operation (or a waited job) failed, 2 a command line mistake.
Run "croft <command> --help" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes a subcommand and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	helpOut = stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(logger)
	var err error
	switch args[0] {
	case "coordinator":
		err = runCoordinator(ctx, args[1:], stdout, logger)
	case "agent":
		err = runAgent(ctx, args[1:], stdout, logger)
	case "dev":
		err = runDev(ctx, args[1:], stdout, logger)
	case agent.SuperviseCommand: // hidden: the agent runs each job under one
		return agent.SuperviseMain(args[1:])
	case "cluster":
		err = runCluster(ctx, args[1:], stdout)
	case "token":
		err = runToken(ctx, args[1:], stdout)
	case "project":
		err = runProject(ctx, args[1:], stdout)
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "croft", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		cmd, ok := clientCommands[args[0]]
		if !ok {
			fmt.Fprintf(stderr, "croft: unknown command %q\n\n%s", args[0], usage)
			return 2
		}
		err = cmd(ctx, args[1:], stdout)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errFailed):
		return 1
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "croft:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "croft:", err)
		return 1
	}
}

// errUsage marks a command line mistake (exit code 2).
var errUsage = errors.New("usage")
