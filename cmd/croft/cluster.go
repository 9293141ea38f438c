package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/croftfarm/croft/api/client"
)

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// runCluster serves "croft cluster status|join|remove".
func runCluster(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "croft cluster status|join|remove [--coordinator URL] [--token T]"
	if done, err := groupHelp(args, usage); done {
		return err
	}
	verb := args[0]
	fs := newFlagSet("croft cluster "+verb, clusterHelp[verb])
	var cf cliFlags
	cf.register(fs)
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
		return fmt.Errorf("%w: unknown cluster command %q (%s)", errUsage, verb, usage)
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx, cancel := cf.context(ctx)
	defer cancel()
	switch verb {
	case "status":
		st, err := c.Status(ctx, "")
		if err != nil {
			return err
		}
		reach := probeMembers(ctx, c, st)
		if cf.asJSON {
			return printJSON(stdout, statusJSON{st, reach})
		}
		printStatus(stdout, st, reach)
	case "join":
		if join.NodeID == "" || join.RaftAddr == "" || join.HTTPAddr == "" {
			return fmt.Errorf("%w: join needs --node-id, --raft-addr and --http-addr", errUsage)
		}
		if err := c.Join(ctx, join); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s joined as a non-voter; the leader promotes it once it has caught up (see croft cluster status)\n", join.NodeID)
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

// clusterHelp is the synopsis of each cluster verb.
var clusterHelp = map[string]string{
	"status": "croft cluster status [flags]\n\nShows the Raft state of the coordinator asked and every member; each member's\nHTTP address is probed (REACHABLE: yes, or why not).",
	"join":   "croft cluster join --node-id ID --raft-addr HOST:PORT --http-addr HOST:PORT [flags]\n\nAdds a coordinator as a non-voter; the leader promotes it once caught up.",
	"remove": "croft cluster remove --node-id ID [flags]\n\nRemoves a coordinator from the cluster.",
}

// statusJSON is "croft cluster status --json": the status, and each
// member's reachability ("" when it answered, else why not).
type statusJSON struct {
	client.ClusterStatus
	Unreachable map[string]string `json:"unreachable"`
}

// probeTimeout bounds the probe of one member's HTTP address.
const probeTimeout = time.Second

// probeMembers asks every member's HTTP address for its status at once,
// each within probeTimeout, and returns why each that did not answer
// failed, by member id. A member that listens on all interfaces
// (0.0.0.0) is asked on the host of the coordinator that answered.
func probeMembers(ctx context.Context, c *client.Client, st client.ClusterStatus) map[string]string {
	base := ""
	if urls := c.URLs(); len(urls) > 0 {
		base = urls[0]
	}
	scheme, rest, _ := strings.Cut(base, "://")
	askedHost, _, _ := net.SplitHostPort(strings.SplitN(rest, "/", 2)[0])
	type result struct{ id, err string }
	results := make(chan result, len(st.Members))
	for _, m := range st.Members {
		go func() {
			host, port, err := net.SplitHostPort(m.HTTPAddr)
			if err != nil {
				results <- result{m.ID, "no HTTP address"}
				return
			}
			if ip := net.ParseIP(host); (ip != nil && ip.IsUnspecified()) || host == "" {
				host = askedHost
			}
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			if _, err := c.Status(pctx, scheme+"://"+net.JoinHostPort(host, port)); err != nil {
				results <- result{m.ID, err.Error()}
				return
			}
			results <- result{m.ID, ""}
		}()
	}
	out := map[string]string{}
	for range st.Members {
		r := <-results
		if r.err != "" {
			out[r.id] = r.err
		}
	}
	// The leader's view says which members its Raft no longer hears (a
	// member whose HTTP answers may still be cut off from the leader).
	for _, m := range st.Members {
		if _, probed := out[m.ID]; !probed && m.Reachable != nil && !*m.Reachable {
			out[m.ID] = "the leader has no Raft contact with it"
		}
	}
	return out
}

func printStatus(w io.Writer, st client.ClusterStatus, unreachable map[string]string) {
	fmt.Fprintf(w, "node %s: %s, term %d, applied %d, commit %d\n", st.NodeID, st.State, st.Term, st.AppliedIndex, st.CommitIndex)
	fmt.Fprintf(w, "leader: %s (%s)\n", st.LeaderID, st.LeaderHTTP)
	if st.Insecure {
		fmt.Fprintln(w, "ACCESS CONTROL IS OFF (--insecure)")
	}
	if st.DiskTotalBytes > 0 {
		fmt.Fprintf(w, "disk: %d MiB free of %d MiB; raft.db %d MiB\n", st.DiskFreeBytes>>20, st.DiskTotalBytes>>20, st.RaftDBBytes>>20)
	}
	if st.StorageError != "" {
		fmt.Fprintf(w, "STORAGE ERROR: %s\n", st.StorageError)
	}
	var down []string
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRAFT\tHTTP\tSUFFRAGE\tLEADER\tREACHABLE\tCAUGHT-UP\tCONTACT")
	for _, m := range st.Members {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		// Only the leader knows the others' progress: "-" elsewhere.
		caught, contact := "-", "-"
		if m.CaughtUp != nil {
			caught = "no"
			if *m.CaughtUp {
				caught = "yes"
			}
			contact = "never"
		}
		if m.LastContactMS != nil {
			contact = (time.Duration(*m.LastContactMS) * time.Millisecond).String() + " ago"
		}
		reach := "yes"
		if why, ok := unreachable[m.ID]; ok {
			reach = "NO"
			down = append(down, m.ID+": "+why)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.RaftAddr, m.HTTPAddr, m.Suffrage, leader, reach, caught, contact)
	}
	tw.Flush()
	for _, d := range down {
		fmt.Fprintln(w, "UNREACHABLE", d)
	}
	if st.State != "Leader" {
		fmt.Fprintln(w, "(caught-up and contact are known to the leader only: ask it with --coordinator)")
	}
}

// runToken serves "croft token create|list|revoke".
func runToken(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "croft token create --name N --role admin|user|read|agent [--projects a,b] [--workers name,prefix*] | list | revoke NAME|ID"
	if done, err := groupHelp(args, usage); done {
		return err
	}
	verb := args[0]
	fs := newFlagSet("croft token "+verb, usage)
	var cf cliFlags
	cf.register(fs)
	var req client.TokenRequest
	var projects, workers string
	switch verb {
	case "create":
		fs.StringVar(&req.Name, "name", "", "the token's name (unique)")
		fs.StringVar(&req.Role, "role", "user", "admin, user, read or agent")
		fs.StringVar(&projects, "projects", "", `projects it may act on, comma-separated; "*" for all (default: default)`)
		fs.StringVar(&workers, "workers", "", "agent tokens: worker names it may act as, comma-separated (a name covers its slots; a prefix ends in *)")
	case "list", "revoke":
	default:
		return fmt.Errorf("%w: unknown token command %q (%s)", errUsage, verb, usage)
	}
	rest, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx, cancel := cf.context(ctx)
	defer cancel()
	switch verb {
	case "create":
		if req.Name == "" || len(rest) > 0 {
			return fmt.Errorf("%w: %s", errUsage, usage)
		}
		req.Projects, req.Workers = splitURLs(projects), splitURLs(workers)
		var t client.Token
		if err := c.Do(ctx, http.MethodPost, client.PathTokens, req, &t); err != nil {
			return err
		}
		if cf.asJSON {
			return printJSON(stdout, t)
		}
		fmt.Fprintf(stdout, "token %s (%s, role %s, projects %s)\n", t.Name, t.ID, t.Role, strings.Join(t.Projects, ","))
		fmt.Fprintf(stdout, "secret (shown once, keep it): %s\n", t.Secret)
	case "list":
		var ts []client.Token
		if err := c.Do(ctx, http.MethodGet, client.PathTokens, nil, &ts); err != nil {
			return err
		}
		if cf.asJSON {
			return printJSON(stdout, ts)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tID\tROLE\tPROJECTS\tWORKERS\tCREATED")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, t.ID, t.Role, strings.Join(t.Projects, ","), strings.Join(t.Workers, ","), fmtTime(t.Created))
		}
		tw.Flush()
	case "revoke":
		if len(rest) != 1 {
			return fmt.Errorf("%w: revoke takes one token name or id", errUsage)
		}
		var t client.Token
		if err := c.Do(ctx, http.MethodDelete, client.PathTokens+"/"+url.PathEscape(rest[0]), nil, &t); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s (%s)\n", t.Name, t.ID)
	}
	return nil
}

// runProject serves "croft project create|list|delete".
func runProject(ctx context.Context, args []string, stdout io.Writer) error {
	const usage = "croft project create NAME | list | delete NAME"
	if done, err := groupHelp(args, usage); done {
		return err
	}
	verb := args[0]
	fs := newFlagSet("croft project "+verb, usage)
	var cf cliFlags
	cf.register(fs)
	switch verb {
	case "create", "list", "delete":
	default:
		return fmt.Errorf("%w: unknown project command %q (%s)", errUsage, verb, usage)
	}
	rest, err := parseArgs(fs, args[1:])
	if err != nil {
		return err
	}
	if (verb == "list") != (len(rest) == 0) || len(rest) > 1 {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	ctx, cancel := cf.context(ctx)
	defer cancel()
	switch verb {
	case "create":
		var p client.Project
		if err := c.Do(ctx, http.MethodPost, client.PathProjects, client.ProjectRequest{Name: rest[0]}, &p); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created project %s\n", p.Name)
	case "delete":
		if err := c.Do(ctx, http.MethodDelete, client.PathProjects+"/"+url.PathEscape(rest[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted project %s\n", rest[0])
	case "list":
		var ps []client.Project
		if err := c.Do(ctx, http.MethodGet, client.PathProjects, nil, &ps); err != nil {
			return err
		}
		if cf.asJSON {
			return printJSON(stdout, ps)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tJOBS\tCREATED")
		for _, p := range ps {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", p.Name, p.Jobs, fmtTime(p.Created))
		}
		tw.Flush()
	}
	return nil
}
