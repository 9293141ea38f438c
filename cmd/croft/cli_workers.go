package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/croftfarm/croft/api/client"
)

func runWorkers(ctx context.Context, args []string, stdout io.Writer) error {
	return runList(ctx, args, stdout, "croft workers", "croft workers [flags]\n\nLists the workers (an agent with --slots N is N workers: name, name/2, ...).", false,
		nil, func(ctx context.Context, c *client.Client, _ client.Page) ([]client.Worker, error) {
			return c.Workers(ctx)
		}, printWorkers)
}

func runHosts(ctx context.Context, args []string, stdout io.Writer) error {
	return runList(ctx, args, stdout, "croft hosts", "croft hosts [flags]\n\nLists the agents' hosts: slots, CPUs, memory, load, interpreters.", false,
		nil, func(ctx context.Context, c *client.Client, _ client.Page) ([]client.Host, error) { return c.Hosts(ctx) }, printHosts)
}

func printHosts(stdout io.Writer, hs []client.Host) {
	t := newTable(stdout, "NAME", "SLOTS", "BUSY", "CPUS", "LOAD", "MEMORY", "INTERPRETERS", "SEEN")
	for _, h := range hs {
		busy := 0
		for _, s := range h.Slots {
			if s.State == "WORKING" || s.Job != 0 {
				busy++
			}
		}
		load, mem, seen := "-", "-", "-"
		if h.Live != nil {
			sum := 0
			for _, l := range h.Live.CPU {
				sum += l
			}
			if len(h.Live.CPU) > 0 {
				load = strconv.Itoa(sum/len(h.Live.CPU)) + "%"
			}
			if h.TotalMemory > 0 {
				mem = fmt.Sprintf("%d/%d MiB", h.TotalMemory-h.Live.FreeMemory, h.TotalMemory)
			}
			seen = fmtTime(h.Live.Seen)
		}
		names := make([]string, len(h.Interpreters))
		for i, in := range h.Interpreters {
			names[i] = in.Name
		}
		t.row(h.Name, strconv.Itoa(len(h.Slots)), strconv.Itoa(busy), strconv.Itoa(h.CPUs), load, mem, orDash(clip(strings.Join(names, ","), 40)), seen)
	}
	t.flush()
}

const workerUsage = "croft worker enable|disable|drain [flags] NAME..."

// workerHelp is the synopsis of each worker verb.
var workerHelp = map[string]string{
	"enable":  "croft worker enable [flags] NAME...\n\nLets the workers take jobs again. NAME is a worker, or an agent's name: all its slots.",
	"disable": "croft worker disable [flags] NAME...\n\nGives the workers no more jobs at once: a job one runs is stopped and requeued\n(its run ends canceled and does not count against its retries).",
	"drain":   "croft worker drain [flags] NAME...\n\nLets the workers finish what they run and gives them no new job (they are\ndisabled as they are drained; croft worker enable takes them back): unlike\ndisable, no job is requeued. The command waits until they run nothing. The\nagent itself can drain too (SIGUSR1 or \"croft agent --drain\": it exits once\nits jobs are over).",
}

func runWorker(ctx context.Context, args []string, stdout io.Writer) error {
	if done, err := groupHelp(args, workerUsage); done {
		return err
	}
	verb := args[0]
	help, ok := workerHelp[verb]
	if !ok {
		return fmt.Errorf("%w: unknown worker command %q (%s)", errUsage, verb, workerUsage)
	}
	fs := newFlagSet("croft worker "+verb, help)
	var cf cliFlags
	if verb == "drain" {
		cf.registerTimeout(fs, 0)
	} else {
		cf.register(fs)
	}
	rest, c, ctx, cancel, err := cf.setup(ctx, fs, args[1:])
	if err != nil {
		return err
	}
	defer cancel()
	if len(rest) == 0 {
		return fmt.Errorf("%w: %s", errUsage, help[:strings.IndexByte(help, '\n')])
	}
	ws, err := c.Workers(ctx)
	if err != nil {
		return err
	}
	names, err := matchWorkers(ws, rest)
	if err != nil {
		return err
	}
	switch verb {
	case "enable", "disable":
		if err := c.SetWorkersActive(ctx, verb == "enable", names...); err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintf(stdout, "%sd worker %s\n", verb[:len(verb)-1], n)
		}
		return nil
	}
	return drainWorkers(ctx, c, names, stdout)
}

// matchWorkers turns names into worker names: a worker's own, or an
// agent's (its first slot's name), which stands for all its slots.
func matchWorkers(ws []client.Worker, names []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		found := false
		for _, w := range ws {
			if w.Name == n || isSlotOf(w.Name, n) {
				found = true
				if !seen[w.Name] {
					seen[w.Name] = true
					out = append(out, w.Name)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("no worker %q (croft workers lists them)", n)
		}
	}
	return out, nil
}

// isSlotOf reports whether worker is a slot name/N (N >= 2) of agent.
func isSlotOf(worker, agent string) bool {
	rest, ok := strings.CutPrefix(worker, agent+"/")
	if !ok {
		return false
	}
	n, err := strconv.Atoi(rest)
	return err == nil && n >= 2
}

// drainWorkers drains the workers (one request: none takes a new job
// from then on) and waits until none of them runs anything.
func drainWorkers(ctx context.Context, c *client.Client, names []string, stdout io.Writer) error {
	if err := c.DrainWorkers(ctx, names...); err != nil {
		return err
	}
	pending := map[string]bool{}
	for _, n := range names {
		pending[n] = true
	}
	announced := map[string]bool{}
	for {
		ws, err := c.Workers(ctx)
		if err != nil {
			return err
		}
		for _, w := range ws {
			if !pending[w.Name] {
				continue
			}
			if w.CurrentEvent == 0 {
				delete(pending, w.Name)
				fmt.Fprintf(stdout, "drained worker %s (disabled; croft worker enable %s takes it back)\n", w.Name, w.Name)
			} else if !announced[w.Name] {
				announced[w.Name] = true
				fmt.Fprintf(stdout, "worker %s runs job %d: waiting for it to end\n", w.Name, w.LastJob)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("draining: %w", ctx.Err())
		case <-time.After(pollEvery):
		}
	}
}
