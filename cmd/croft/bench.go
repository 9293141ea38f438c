package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/croftfarm/croft/bench"
)

// runBench serves "croft bench".
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := bench.Defaults()
	fs := flag.NewFlagSet("croft bench", flag.ContinueOnError)
	coord := fs.String("coordinator", "", "use this existing cluster (comma-separated URLs) instead of starting one; scenarios that kill coordinators are skipped")
	only := fs.String("scenarios", "", "comma-separated scenarios to run (default all): "+strings.Join(bench.Names(), ", "))
	jsonOut := fs.String("json", "", "also write the results as JSON to this file")
	dir := fs.String("dir", "", "directory for the clusters' data and logs (default: a temporary directory, removed afterwards)")
	quick := fs.Bool("quick", false, "small sizes, for a smoke run")
	verbose := fs.Bool("v", false, "log progress to stderr")
	var tokens tokenFlags
	tokens.register(fs, "admin token of the --coordinator cluster (else --token-file, $CROFT_TOKEN)")
	fs.IntVar(&cfg.SubmitJobs, "submit-jobs", cfg.SubmitJobs, "single-job creates in the submit scenario")
	fs.IntVar(&cfg.SubmitClients, "submit-clients", cfg.SubmitClients, "concurrent clients in the submit scenario")
	fs.IntVar(&cfg.GroupChildren, "group-children", cfg.GroupChildren, "children of the one-request group")
	fs.IntVar(&cfg.DispatchJobs, "dispatch-jobs", cfg.DispatchJobs, "jobs timed one by one on an idle farm")
	fs.IntVar(&cfg.AgentJobs, "agent-jobs", cfg.AgentJobs, "jobs run by real agent processes")
	fs.IntVar(&cfg.Agents, "agents", cfg.Agents, "real agent processes")
	fs.IntVar(&cfg.Slots, "slots", cfg.Slots, "slots per real agent")
	fs.IntVar(&cfg.SimJobs, "sim-jobs", cfg.SimJobs, "jobs run by simulated agents")
	fs.IntVar(&cfg.SimAgents, "sim-agents", cfg.SimAgents, "simulated in-process agents")
	fs.IntVar(&cfg.HeartbeatAgents, "heartbeat-agents", cfg.HeartbeatAgents, "simulated agents heartbeating")
	fs.DurationVar(&cfg.HeartbeatFor, "heartbeat-for", cfg.HeartbeatFor, "how long the heartbeat load runs")
	fs.IntVar(&cfg.ScaleJobs, "scale-jobs", cfg.ScaleJobs, "jobs held in state in the scale scenario")
	fs.IntVar(&cfg.GrowthLarge, "growth-large", cfg.GrowthLarge, "queued jobs for the large side of the growth ratio")
	fs.IntVar(&cfg.FailoverKills, "failover-kills", cfg.FailoverKills, "leader kills in the failover scenario")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound on each scenario")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *quick {
		cfg.SubmitJobs, cfg.GroupChildren, cfg.DispatchJobs = 500, 10_000, 100
		cfg.AgentJobs, cfg.SimJobs, cfg.SimAgents = 300, 2000, 100
		cfg.HeartbeatAgents, cfg.HeartbeatFor = 1000, 5e9
		cfg.ScaleJobs, cfg.GrowthLarge, cfg.GrowthSamples, cfg.FailoverKills = 20_000, 20_000, 100, 3
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Bin = bin
	cfg.Coordinators = splitURLs(*coord)
	if cfg.Token, err = tokens.resolve(""); err != nil {
		return err
	}
	if *only != "" {
		cfg.Scenarios = splitURLs(*only)
	}
	if *verbose {
		cfg.Log = stderr
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "croft-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		cfg.Dir = tmp
	} else {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			return err
		}
		cfg.Dir = *dir
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *quick {
		// The targets hold for the default sizes: a smoke run's figures
		// (a few hundred jobs, three kills) are not judged against them.
		for i := range res {
			res[i].Met = nil
		}
		fmt.Fprintln(stdout, "quick sizes: figures are not judged against the targets, which are for the default sizes")
	}
	bench.WriteTable(stdout, res)
	if *jsonOut != "" {
		return bench.WriteJSON(*jsonOut, res)
	}
	return nil
}
