// Command croft is the one Croft binary: coordinator, agent, the embedded
// dev farm and the cluster admin CLI.
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
  croft cluster status|join|remove --coordinator URL [flags]
  croft token create|list|revoke [flags]    access tokens (admin)
  croft project create|list|delete [flags]  projects
  croft bench [flags]         performance scenarios on a local 3-coordinator cluster
  croft version

Run "croft <command> -h" for the flags of a command.
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
		fmt.Fprintf(stderr, "croft: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
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
