package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/croftfarm/croft/agent"
	"github.com/croftfarm/croft/coordinator"
)

// coordinatorFlags are shared by "croft coordinator" and "croft dev".
type coordinatorFlags struct {
	nodeID, dataDir, httpAddr, raftAddr, join string
	bootstrap                                 bool
	workerTTL                                 time.Duration
	maxBatch                                  int
	pprof                                     bool
	tls                                       tlsFlags
}

func (f *coordinatorFlags) register(fs *flag.FlagSet, defDataDir string) {
	host, _ := os.Hostname()
	fs.StringVar(&f.nodeID, "node-id", host, "unique id of this coordinator in the cluster")
	fs.StringVar(&f.dataDir, "data-dir", defDataDir, "directory of the Raft log, stable store and snapshots")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:19211", "HTTP API address (host:port); Coalition's port by default")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:19212", "Raft transport address (host:port)")
	fs.DurationVar(&f.workerTTL, "worker-ttl", 15*time.Second, "silence after which a worker is marked lost and its job requeued")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go's profiler at /debug/pprof/ on the HTTP address")
	fs.IntVar(&f.maxBatch, "max-batch", 0, "most commands group-committed in one Raft entry (0: default 512; 1: group commit off)")
	f.tls.register(fs)
}

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

func splitURLs(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// startCoordinator opens the node, starts serving HTTP (or HTTPS) and
// returns the server and its base URL.
func startCoordinator(f *coordinatorFlags, logger *slog.Logger) (*coordinator.Server, string, error) {
	if f.nodeID == "" {
		return nil, "", fmt.Errorf("%w: --node-id is empty", errUsage)
	}
	var tlsCfg coordinator.ServerConfig
	if err := f.tls.configure(&tlsCfg); err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return nil, "", fmt.Errorf("http listener: %w", err)
	}
	srv, err := coordinator.NewServer(coordinator.ServerConfig{
		Node: coordinator.Config{
			NodeID:    f.nodeID,
			DataDir:   f.dataDir,
			RaftAddr:  f.raftAddr,
			HTTPAddr:  ln.Addr().String(),
			Bootstrap: f.bootstrap,
			Join:      splitURLs(f.join),
			MaxBatch:  f.maxBatch,
			Logger:    logger,
			TLS:       tlsCfg.Node.TLS,
			RaftTLS:   tlsCfg.Node.RaftTLS,
		},
		WorkerTTL: f.workerTTL,
		Pprof:     f.pprof,
		HTTPTLS:   tlsCfg.HTTPTLS,
	})
	if err != nil {
		ln.Close()
		return nil, "", err
	}
	go func() {
		if err := srv.Serve(ln); err != nil {
			logger.Error("http server", "err", err)
		}
	}()
	scheme := "http"
	if f.tls.https() {
		scheme = "https"
	}
	return srv, scheme + "://" + ln.Addr().String(), nil
}

func runCoordinator(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("croft coordinator", flag.ContinueOnError)
	var f coordinatorFlags
	f.register(fs, "croft-data")
	fs.BoolVar(&f.bootstrap, "bootstrap", false, "start a new cluster with this node (first start only)")
	fs.StringVar(&f.join, "join", "", "join an existing cluster through any member's HTTP URL (comma-separated list)")
	if err := parse(fs, args); err != nil {
		return err
	}
	srv, url, err := startCoordinator(&f, logger)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "croft coordinator %s serving %s (raft %s, data %s)\n", f.nodeID, url, f.raftAddr, f.dataDir)
	<-ctx.Done()
	logger.Info("shutting down")
	return srv.Close()
}

// agentFlags are shared by "croft agent" and "croft dev".
type agentFlags struct {
	coordinators, name, affinity, dataDir string
	slots                                 int
	caFile                                string // --ca-cert of "croft agent"; dev uses its coordinator's
}

func (f *agentFlags) register(fs *flag.FlagSet, dataFlag, defDataDir string) {
	fs.StringVar(&f.name, "name", "", "worker name (default: the host name)")
	fs.StringVar(&f.affinity, "affinity", "", `Coalition affinity lines, e.g. "linux,gpu" (lines separated by \n, in priority order)`)
	fs.StringVar(&f.dataDir, dataFlag, defDataDir, "agent state directory")
	fs.IntVar(&f.slots, "slots", 1, "jobs run at once")
}

func (f *agentFlags) config(logger *slog.Logger, set map[string]bool) agent.Config {
	return agent.Config{
		Coordinators: splitURLs(f.coordinators),
		Name:         f.name,
		Affinity:     strings.ReplaceAll(f.affinity, `\n`, "\n"),
		SetAffinity:  set["affinity"],
		DataDir:      f.dataDir,
		Slots:        f.slots,
		Logger:       logger,
	}
}

func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

func runAgent(ctx context.Context, args []string, logger *slog.Logger) error {
	fs := flag.NewFlagSet("croft agent", flag.ContinueOnError)
	var f agentFlags
	fs.StringVar(&f.coordinators, "coordinator", "http://127.0.0.1:19211", "coordinator URLs, comma-separated (any member; the agent follows the leader)")
	fs.StringVar(&f.caFile, "ca-cert", "", "the farm's CA (PEM) that verifies https:// coordinators (default: the system's roots)")
	f.register(fs, "data-dir", "croft-agent")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg := f.config(logger, setFlags(fs))
	var err error
	if cfg.TLS, err = clientTLS(f.caFile); err != nil {
		return err
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	err = a.Run(ctx)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func runDev(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("croft dev", flag.ContinueOnError)
	var cf coordinatorFlags
	cf.register(fs, "croft-data")
	var af agentFlags
	af.register(fs, "agent-data-dir", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	cf.bootstrap = true // a no-op once the data dir holds a cluster
	if af.dataDir == "" {
		af.dataDir = filepath.Join(cf.dataDir, "agent")
	}
	srv, url, err := startCoordinator(&cf, logger)
	if err != nil {
		return err
	}
	defer srv.Close()
	af.coordinators = url
	cfg := af.config(logger, setFlags(fs))
	if cfg.TLS, err = clientTLS(cf.tls.ca); err != nil {
		return err
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	curl := "curl"
	if cf.tls.ca != "" {
		curl += " --cacert " + cf.tls.ca
	}
	fmt.Fprintf(stdout, "croft dev farm: coordinator and agent running, API at %s (data in %s)\n", url, cf.dataDir)
	fmt.Fprintf(stdout, "try: %s -X PUT %s/api/jobs -d '{\"title\":\"hi\",\"command\":\"echo hi\"}'\n", curl, url)
	err = a.Run(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	logger.Info("shutting down")
	return err
}
