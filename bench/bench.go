// Package bench is `croft bench`: it starts its own cluster of coordinator
// processes on loopback (or uses an existing one), runs the performance
// scenarios and reports each figure against its target. Every loop is
// bounded in count and in time.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/internal/localcluster"
)

// Config sets the scenarios and their sizes.
type Config struct {
	// Bin is the croft binary used to start coordinators and agents.
	Bin string
	// Coordinators, if set, are the URLs of an existing cluster: scenarios
	// that need to kill or restart coordinators are skipped.
	Coordinators []string
	// Token is an admin token of the existing cluster.
	Token string
	// Dir holds the data and logs of the clusters bench starts.
	Dir string
	// Scenarios to run (nil: all), by name.
	Scenarios []string

	SubmitJobs, SubmitClients int
	GroupChildren             int
	DispatchJobs              int
	AgentJobs, Agents, Slots  int
	SimJobs, SimAgents        int
	HeartbeatAgents           int
	HeartbeatEvery            time.Duration
	HeartbeatFor              time.Duration
	ScaleJobs                 int
	GrowthSmall, GrowthLarge  int
	GrowthSamples             int
	FailoverKills             int
	// Timeout bounds each scenario.
	Timeout time.Duration
	Log     io.Writer
}

// Defaults returns the sizes the targets are stated for.
func Defaults() Config {
	return Config{
		SubmitJobs: 5000, SubmitClients: 64,
		GroupChildren: 100_000,
		DispatchJobs:  1000,
		AgentJobs:     3000, Agents: 3, Slots: 8,
		SimJobs: 20_000, SimAgents: 1000,
		HeartbeatAgents: 10_000, HeartbeatEvery: 5 * time.Second, HeartbeatFor: 20 * time.Second,
		ScaleJobs:   1_000_000,
		GrowthSmall: 1_000, GrowthLarge: 1_000_000, GrowthSamples: 1000,
		FailoverKills: 10,
		Timeout:       5 * time.Minute,
	}
}

// Result is one measured figure.
type Result struct {
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	// Target is the goal, e.g. ">= 2000"; empty when the figure has none.
	Target string `json:"target,omitempty"`
	Met    *bool  `json:"met,omitempty"`
	Note   string `json:"note,omitempty"`
}

// scenario runs against a cluster it starts itself (or the given one).
type scenario struct {
	name string
	// needsOwnCluster: the scenario kills or restarts coordinators.
	needsOwnCluster bool
	run             func(ctx context.Context, r *runner) ([]Result, error)
}

var scenarios = []scenario{
	{name: "submit", run: runSubmit},
	{name: "group", run: runGroup},
	{name: "dispatch", run: runDispatch},
	{name: "agents", run: runAgents},
	{name: "simulated", run: runSimulated},
	{name: "heartbeats", run: runHeartbeats},
	{name: "growth", run: runGrowth},
	{name: "scale", needsOwnCluster: true, run: runScale},
	{name: "failover", needsOwnCluster: true, run: runFailover},
}

// Names lists the scenarios in the order they run.
func Names() []string {
	out := make([]string, len(scenarios))
	for i, s := range scenarios {
		out[i] = s.name
	}
	return out
}

// runner holds what a scenario works with.
type runner struct {
	cfg     Config
	cluster *localcluster.Cluster // nil with an existing cluster
	urls    []string
	token   string // an admin token of the cluster
}

// client returns a client of urls with the cluster's admin token.
func (r *runner) client(urls ...string) *client.Client {
	return client.NewWith(client.Options{Token: r.token}, urls...)
}

func (r *runner) logf(format string, args ...any) {
	if r.cfg.Log != nil {
		fmt.Fprintf(r.cfg.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// Run runs the selected scenarios and returns every figure. A scenario that
// fails is reported as such and the others still run.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	want := map[string]bool{}
	for _, s := range cfg.Scenarios {
		want[s] = true
	}
	for s := range want {
		if !contains(Names(), s) {
			return nil, fmt.Errorf("unknown scenario %q (have: %s)", s, strings.Join(Names(), ", "))
		}
	}
	var all []Result
	for _, sc := range scenarios {
		if len(want) > 0 && !want[sc.name] {
			continue
		}
		r := &runner{cfg: cfg, urls: cfg.Coordinators, token: cfg.Token}
		if len(cfg.Coordinators) > 0 && sc.needsOwnCluster {
			all = append(all, Result{Scenario: sc.name, Metric: "skipped", Note: "needs a cluster bench starts itself"})
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		res, err := func() ([]Result, error) {
			if len(cfg.Coordinators) == 0 {
				dir, err := os.MkdirTemp(cfg.Dir, "bench-"+sc.name+"-")
				if err != nil {
					return nil, err
				}
				c, err := localcluster.Start(sctx, cfg.Bin, dir, 3)
				if err != nil {
					return nil, err
				}
				defer c.Close()
				r.cluster, r.urls, r.token = c, c.URLs(), c.Token
			}
			r.logf("scenario %s", sc.name)
			return sc.run(sctx, r)
		}()
		cancel()
		if err != nil {
			all = append(all, Result{Scenario: sc.name, Metric: "error", Note: err.Error()})
			r.logf("scenario %s failed: %v", sc.name, err)
			continue
		}
		all = append(all, res...)
	}
	return all, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// atLeast and atMost build results with a target.
func atLeast(sc, metric string, v float64, unit string, target float64) Result {
	met := v >= target
	return Result{Scenario: sc, Metric: metric, Value: v, Unit: unit, Target: fmt.Sprintf(">= %g", target), Met: &met}
}

func atMost(sc, metric string, v float64, unit string, target float64) Result {
	met := v <= target
	return Result{Scenario: sc, Metric: metric, Value: v, Unit: unit, Target: fmt.Sprintf("<= %g", target), Met: &met}
}

func plain(sc, metric string, v float64, unit string) Result {
	return Result{Scenario: sc, Metric: metric, Value: v, Unit: unit}
}

// percentile returns the p-th percentile (0..100) of durations, in ms.
func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return math.NaN()
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i].Microseconds()) / 1000
}

// WriteTable prints results as an aligned table.
func WriteTable(w io.Writer, rs []Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tMETRIC\tVALUE\tUNIT\tTARGET\tMET\tNOTE")
	for _, r := range rs {
		met := ""
		if r.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*r.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.Metric, formatValue(r.Value), r.Unit, r.Target, met, r.Note)
	}
	tw.Flush()
}

func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v == math.Trunc(v) && math.Abs(v) < 1e12:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// WriteJSON writes results as JSON to path.
func WriteJSON(path string, rs []Result) error {
	data, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}
