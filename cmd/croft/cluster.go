package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// runCluster serves "croft cluster status|join|remove".
func runCluster(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: croft cluster status|join|remove --coordinator URL", errUsage)
	}
	verb := args[0]
	fs := flag.NewFlagSet("croft cluster "+verb, flag.ContinueOnError)
	coord := fs.String("coordinator", "http://127.0.0.1:19211", "any coordinator's URL (comma-separated list accepted)")
	asJSON := fs.Bool("json", false, "print the raw JSON (status)")
	caFile := fs.String("ca-cert", "", "the farm's CA (PEM) that verifies https:// coordinators (default: the system's roots)")
	var join client.JoinRequest
	var removeID string
	switch verb {
	case "status":
	case "join":
		fs.StringVar(&join.NodeID, "node-id", "", "id of the coordinator to add")
		fs.StringVar(&join.RaftAddr, "raft-addr", "", "its Raft address")
		fs.StringVar(&join.HTTPAddr, "http-addr", "", "its HTTP address")
	case "remove":
		fs.StringVar(&removeID, "node-id", "", "id of the coordinator to remove")
	default:
		return fmt.Errorf("%w: unknown cluster command %q (status, join, remove)", errUsage, verb)
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	conf, err := clientTLS(*caFile)
	if err != nil {
		return err
	}
	c := client.NewWith(client.Options{TLS: conf}, *coord)
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	switch verb {
	case "status":
		st, err := c.Status(ctx, "")
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		printStatus(stdout, st)
	case "join":
		if join.NodeID == "" || join.RaftAddr == "" || join.HTTPAddr == "" {
			return fmt.Errorf("%w: join needs --node-id, --raft-addr and --http-addr", errUsage)
		}
		if err := c.Join(ctx, join); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s joined\n", join.NodeID)
	case "remove":
		if removeID == "" {
			return fmt.Errorf("%w: remove needs --node-id", errUsage)
		}
		if err := c.Remove(ctx, removeID); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s removed\n", removeID)
	}
	return nil
}

func printStatus(w io.Writer, st client.ClusterStatus) {
	fmt.Fprintf(w, "node %s: %s, term %d, applied %d, commit %d\n", st.NodeID, st.State, st.Term, st.AppliedIndex, st.CommitIndex)
	fmt.Fprintf(w, "leader: %s (%s)\n", st.LeaderID, st.LeaderHTTP)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRAFT\tHTTP\tSUFFRAGE\tLEADER")
	for _, m := range st.Members {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.RaftAddr, m.HTTPAddr, m.Suffrage, leader)
	}
	tw.Flush()
}
