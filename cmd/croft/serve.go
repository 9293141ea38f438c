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
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/coalition"
	"github.com/croftfarm/croft/api/sahara"
	"github.com/croftfarm/croft/cluster"
	"github.com/croftfarm/croft/coordinator"
	"github.com/croftfarm/croft/farm"
	"github.com/croftfarm/croft/raftstore"
)

// devAgentToken returns the dev farm's agent token, kept in file: the one
// there if it is still valid, else a new one (once the node leads and has
// its admin token), bound to the agent's name.
func devAgentToken(ctx context.Context, srv *coordinator.Server, file, name string) (string, error) {
	for {
		if leader, _ := srv.Node().Leadership(); leader && srv.Node().FSM().State().TokenCount() > 0 {
			break
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no leader with an admin token: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if b, err := os.ReadFile(file); err == nil {
		if secret := strings.TrimSpace(string(b)); srv.TokenValid(secret) {
			return secret, nil
		}
	}
	const tokName = "dev-agent"
	if err := srv.RevokeTokenNamed(ctx, tokName); err != nil {
		return "", err
	}
	t, err := srv.CreateToken(ctx, client.TokenRequest{Name: tokName, Role: raftstore.RoleAgent, Projects: []string{raftstore.AllProjects}, Workers: []string{name}}, "croft dev")
	if err != nil {
		return "", err
	}
	return t.Secret, coordinator.WriteSecret(file, t.Secret)
}

// coordinatorFlags are shared by "croft coordinator" and "croft dev".
type coordinatorFlags struct {
	nodeID, dataDir, httpAddr, raftAddr, join string
	recover                                   string
	bootstrap                                 bool
	workerTTL                                 time.Duration
	maxBatch                                  int
	pprof                                     bool
	metricsPublic                             bool
	insecure                                  bool
	trustNets, trustRoles                     string
	tokens                                    tokenFlags
	limits                                    coalition.Limits
	retention                                 coordinator.Retention
	snapshotBytes, trailingBytes              int64
	bootstrapTokenFile                        string
	tls                                       tlsFlags
	http                                      coordinator.HTTPLimits
	saharaJobTypes                            jobTypeFlags
}

func (f *coordinatorFlags) register(fs *flag.FlagSet, defDataDir string) {
	host, _ := os.Hostname()
	fs.StringVar(&f.nodeID, "node-id", host, "unique id of this coordinator in the cluster")
	fs.StringVar(&f.dataDir, "data-dir", defDataDir, "directory of the Raft log, stable store and snapshots")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:19211", "HTTP API address (host:port); Coalition's port by default")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:19212", "Raft transport address (host:port)")
	fs.DurationVar(&f.workerTTL, "worker-ttl", 15*time.Second, "silence after which a worker is marked lost and its job requeued")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go's profiler at /debug/pprof/ on the HTTP address (admin token)")
	fs.IntVar(&f.maxBatch, "max-batch", 0, "most commands group-committed in one Raft entry (0: default 512; 1: group commit off)")
	fs.BoolVar(&f.metricsPublic, "metrics-public", false, "serve /metrics without a token (for a Prometheus on a trusted network; by default it needs a read token)")
	fs.BoolVar(&f.insecure, "insecure", false, "turn access control off: anyone who reaches the API is an admin (never on a shared network)")
	fs.StringVar(&f.trustNets, "trust-network", "", "CIDRs (comma-separated) whose requests without a token get --trust-role, e.g. for Coalition's worker.py")
	fs.StringVar(&f.trustRoles, "trust-role", "", "roles (comma-separated: user, read, agent) of tokenless requests from --trust-network")
	fs.Int64Var(&f.limits.MaxBody, "max-body", coalition.DefaultLimits.MaxBody, "largest request body in bytes (413 beyond)")
	fs.IntVar(&f.limits.MaxJobsPerRequest, "max-jobs-per-request", coalition.DefaultLimits.MaxJobsPerRequest, "most jobs one create makes (a group and its children)")
	fs.IntVar(&f.limits.MaxProjectJobs, "max-jobs-per-project", coalition.DefaultLimits.MaxProjectJobs, "most jobs a project holds (0: no limit)")
	fs.Int64Var(&f.limits.MaxJobOutput, "max-job-output", coalition.DefaultLimits.MaxJobOutput, "most output bytes kept of one job (its log; at most 64 MiB)")
	fs.DurationVar(&f.retention.EventMaxAge, "event-max-age", coordinator.DefaultEventMaxAge, "forget attempt records (events) older than this (negative: never)")
	fs.IntVar(&f.retention.EventMaxCount, "event-max-count", coordinator.DefaultEventMaxCount, "keep at most this many attempt records, the newest (negative: no limit)")
	fs.DurationVar(&f.retention.WorkerExpiry, "worker-expiry", coordinator.DefaultWorkerExpiry, "forget workers lost (silent) for this long (negative: never)")
	fs.Int64Var(&f.snapshotBytes, "snapshot-bytes", cluster.DefaultSnapshotBytes, "snapshot (and compact the Raft log) once this many bytes of entries were written since the last one (negative: by count only)")
	fs.Int64Var(&f.trailingBytes, "trailing-bytes", cluster.DefaultTrailingBytes, "bytes of the newest entries kept in the Raft log after a snapshot, for followers that fall behind (negative: by count only)")
	fs.DurationVar(&f.retention.JobExpiry, "job-expiry", 0, "delete top-level jobs FINISHED for this long, with their logs and events (0: never)")
	fs.IntVar(&f.http.MaxConnsPerIP, "max-conns-per-ip", coordinator.DefaultMaxConnsPerIP, "most API connections one client address holds (429 beyond; coordinators exempt; -1: no cap); raise it for many agents behind one NAT address")
	fs.IntVar(&f.http.MaxConns, "max-conns", 0, "most API connections in all (0: 80% of the open-file limit minus 256; -1: no cap)")
	f.tokens.register(fs, "admin token for --join (else $CROFT_TOKEN)")
	fs.StringVar(&f.bootstrapTokenFile, "bootstrap-token-file", "", "with --bootstrap: the secret of the first admin token, provisioned by the deployment (else $CROFT_BOOTSTRAP_TOKEN, else a random one)")
	f.tls.register(fs)
	fs.Var(&f.saharaJobTypes, "sahara-job-type", "TYPE=COMMAND: the farm command template a Sahara job type runs, e.g. 'Spark=spark-submit {main} {args}' (repeatable; the same on every coordinator)")
}

// auth turns the access flags into the coordinator's configuration.
func (f *coordinatorFlags) auth() (auth.Config, error) {
	cfg := auth.Config{Insecure: f.insecure}
	for _, s := range splitURLs(f.trustNets) {
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			return cfg, fmt.Errorf("%w: --trust-network %q: %v", errUsage, s, err)
		}
		cfg.TrustNets = append(cfg.TrustNets, n)
	}
	for _, r := range splitURLs(f.trustRoles) {
		if r != raftstore.RoleUser && r != raftstore.RoleRead && r != raftstore.RoleAgent {
			return cfg, fmt.Errorf("%w: --trust-role %q: user, read or agent", errUsage, r)
		}
		cfg.TrustRoles = append(cfg.TrustRoles, r)
	}
	if (len(cfg.TrustNets) > 0) != (len(cfg.TrustRoles) > 0) {
		return cfg, fmt.Errorf("%w: --trust-network and --trust-role go together", errUsage)
	}
	return cfg, nil
}

// tokenFlags are how a command finds its token: --token, else
// --token-file, else $CROFT_TOKEN, else (for commands that know a data
// directory) the admin token a bootstrap left there.
type tokenFlags struct {
	token, file string
}

func (f *tokenFlags) register(fs *flag.FlagSet, what string) {
	fs.StringVar(&f.token, "token", "", what)
	fs.StringVar(&f.file, "token-file", "", "file holding the token (instead of --token)")
}

// AdminTokenFile is the file, in a coordinator's data directory, where a
// bootstrap writes the first admin token.
const AdminTokenFile = "admin.token"

// resolve returns the token; dataDir, if not empty, is a data directory
// whose admin.token is the last resort.
func (f *tokenFlags) resolve(dataDir string) (string, error) {
	switch {
	case f.token != "":
		return f.token, nil
	case f.file != "":
		b, err := os.ReadFile(f.file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case os.Getenv("CROFT_TOKEN") != "":
		return strings.TrimSpace(os.Getenv("CROFT_TOKEN")), nil
	case dataDir != "":
		b, err := os.ReadFile(filepath.Join(dataDir, AdminTokenFile))
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
	}
	return "", nil
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// parseFlags parses args; -h or --help prints the usage on stdout
// (helpOut), and a bad flag returns one usage error, printed once by run.
func parseFlags(fs *flag.FlagSet, args []string) error {
	usage := fs.Usage
	fs.Usage = func() {} // the flag package calls it on errors too
	defer func() { fs.Usage = usage }()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(helpOut)
		if usage != nil {
			usage()
		} else {
			fs.PrintDefaults()
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %v (see %s --help)", errUsage, err, fs.Name())
	}
	return nil
}

// parseArgs parses flags wherever they are among the arguments (a name
// may come first: "croft token revoke NAME --token T") and returns the
// other arguments; after "--" everything is an argument.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var after []string
	for i, a := range args {
		if a == "--" {
			args, after = args[:i], args[i+1:]
			break
		}
	}
	var rest []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(rest, after...), nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
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
func startCoordinator(f *coordinatorFlags, logger *slog.Logger, stdout io.Writer) (*coordinator.Server, string, error) {
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
	authCfg, err := f.auth()
	if err != nil {
		return nil, "", err
	}
	joinToken, err := f.tokens.resolve("")
	if err != nil {
		return nil, "", err
	}
	adminSecret := strings.TrimSpace(os.Getenv("CROFT_BOOTSTRAP_TOKEN"))
	if f.bootstrapTokenFile != "" {
		b, err := os.ReadFile(f.bootstrapTokenFile)
		if err != nil {
			return nil, "", fmt.Errorf("--bootstrap-token-file: %w", err)
		}
		adminSecret = strings.TrimSpace(string(b))
	}
	ln, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return nil, "", fmt.Errorf("http listener: %w", err)
	}
	srv, err := coordinator.NewServer(coordinator.ServerConfig{
		Node: cluster.Config{
			NodeID:        f.nodeID,
			DataDir:       f.dataDir,
			RaftAddr:      f.raftAddr,
			HTTPAddr:      ln.Addr().String(),
			Bootstrap:     f.bootstrap,
			Recover:       f.recover,
			MaxBatch:      f.maxBatch,
			SnapshotBytes: f.snapshotBytes,
			TrailingBytes: f.trailingBytes,
			Logger:        logger,
			RaftTLS:       tlsCfg.Node.RaftTLS,
		},
		Join:           splitURLs(f.join),
		JoinToken:      joinToken,
		TLS:            tlsCfg.TLS,
		WorkerTTL:      f.workerTTL,
		Pprof:          f.pprof,
		MetricsPublic:  f.metricsPublic,
		Sahara:         sahara.Config{JobTypes: f.saharaJobTypes},
		HTTPTLS:        tlsCfg.HTTPTLS,
		Auth:           authCfg,
		Limits:         f.limits,
		Retention:      f.retention,
		HTTP:           f.http,
		BootstrapToken: f.bootstrap && !f.insecure,
		AdminTokenFile: filepath.Join(f.dataDir, AdminTokenFile),
		AdminSecret:    adminSecret,
		OnAdminToken: func(t client.Token) {
			printAdminToken(stdout, t.Secret, f.tls.curl(), f.tls.scheme()+"://"+ln.Addr().String(), filepath.Join(f.dataDir, AdminTokenFile))
		},
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
	return srv, f.tls.scheme() + "://" + ln.Addr().String(), nil
}

func runCoordinator(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("croft coordinator", flag.ContinueOnError)
	var f coordinatorFlags
	f.register(fs, "croft-data")
	fs.BoolVar(&f.bootstrap, "bootstrap", false, "start a new cluster with this node (first start only)")
	fs.StringVar(&f.join, "join", "", "join an existing cluster through any member's HTTP URL (comma-separated list)")
	fs.StringVar(&f.recover, "recover", "", "lost quorum: replace the cluster membership with the peers.json `FILE` before starting (renamed to FILE.recovered once applied; see docs/OPERATIONS.md)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if f.recover != "" && (f.bootstrap || f.join != "") {
		return fmt.Errorf("%w: --recover excludes --bootstrap and --join", errUsage)
	}
	if !f.bootstrap && f.join == "" && f.recover == "" && cluster.Fresh(f.dataDir) {
		// It would wait for a leader that never comes and answer every
		// request "no leader" (issue 12).
		return fmt.Errorf("%w: %s holds no cluster state: start the first coordinator of a new cluster with --bootstrap, the others with --join URL (a member's HTTP URL)", errUsage, f.dataDir)
	}
	srv, url, err := startCoordinator(&f, logger, stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "croft coordinator %s serving %s (raft %s, data %s)\n", f.nodeID, url, f.raftAddr, f.dataDir)
	select {
	case <-ctx.Done():
	case <-srv.Halted(): // an entry of a newer release: exit non-zero
		_ = srv.Close()
		return srv.HaltErr()
	}
	logger.Info("shutting down")
	return srv.Close()
}

// printAdminToken shows a new admin token, the one time it exists in
// clear outside its file, with a first job to paste.
func printAdminToken(w io.Writer, secret, curl, url, file string) {
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	fmt.Fprintf(w, "croft: created the admin token; it is shown this once and kept in %s (mode 0600):\n    %s\n", file, secret)
	fmt.Fprintf(w, "croft: a first job:\n    %s\n", firstJob(curl, url, file))
}

// firstJob is a curl line (curl, with its options) that submits a job with
// the admin token of file (or none, for an insecure farm).
func firstJob(curl, url, file string) string {
	body := `-d '{"title":"hi","command":"echo hi"}'`
	if file == "" {
		return fmt.Sprintf("%s -X PUT %s/api/jobs %s", curl, url, body)
	}
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	return fmt.Sprintf(`%s -H "Authorization: Bearer $(cat %s)" -X PUT %s/api/jobs %s`, curl, file, url, body)
}

// agentFlags are shared by "croft agent" and "croft dev".
type agentFlags struct {
	coordinators, name, affinity, dataDir string
	slots                                 int
	tokens                                tokenFlags
	caFile                                string // --ca-cert of "croft agent"; dev uses its coordinator's
	drain, killOnStop                     bool
	interpreters                          interpreterFlags
}

func (f *agentFlags) register(fs *flag.FlagSet, dataFlag, defDataDir string) {
	fs.StringVar(&f.name, "name", "", "worker name (default: the host name)")
	fs.StringVar(&f.affinity, "affinity", "", `Coalition affinity lines, e.g. "linux,gpu" (lines separated by \n, in priority order)`)
	fs.StringVar(&f.dataDir, dataFlag, defDataDir, "agent state directory")
	fs.IntVar(&f.slots, "slots", 1, "jobs run at once")
	fs.BoolVar(&f.drain, "drain", false, "drain the agent running on the state directory (as SIGUSR1 does): it takes no more work and exits once its jobs are over and reported; wait for it to exit")
	fs.BoolVar(&f.killOnStop, "kill-on-stop", false, "on SIGTERM or SIGINT, kill the running jobs (rerun elsewhere) instead of leaving them running for the next start to re-adopt")
	fs.Var(&f.interpreters, "interpreter", "an interpreter to advertise besides those found on PATH, as `name=path` (repeatable)")
}

// interpreterFlags collects --interpreter name=path flags.
type interpreterFlags []client.Interpreter

func (f *interpreterFlags) String() string {
	var parts []string
	for _, in := range *f {
		parts = append(parts, in.Name+"="+in.Path)
	}
	return strings.Join(parts, ",")
}

func (f *interpreterFlags) Set(s string) error {
	in, err := agent.ParseInterpreter(s)
	if err != nil {
		return err
	}
	*f = append(*f, in)
	return nil
}

// drainAgent asks the agent on dir to drain and waits until it exited.
func drainAgent(ctx context.Context, dir string, stdout io.Writer) error {
	fmt.Fprintf(stdout, "croft: draining the agent of %s: it takes no more work and exits once its jobs are over and reported\n", dir)
	pid, err := agent.RequestDrain(ctx, dir)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	fmt.Fprintf(stdout, "croft: the agent (pid %d) drained and exited\n", pid)
	return nil
}

func (f *agentFlags) config(logger *slog.Logger, set map[string]bool, token string) agent.Config {
	return agent.Config{
		Coordinators: splitURLs(f.coordinators),
		Token:        token,
		Name:         f.name,
		Affinity:     strings.ReplaceAll(f.affinity, `\n`, "\n"),
		SetAffinity:  set["affinity"],
		DataDir:      f.dataDir,
		Slots:        f.slots,
		Logger:       logger,
		KillOnStop:   f.killOnStop,
		Control:      true,
		Interpreters: f.interpreters,
	}
}

func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

func runAgent(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("croft agent", flag.ContinueOnError)
	var f agentFlags
	fs.StringVar(&f.coordinators, "coordinator", "http://127.0.0.1:19211", "coordinator URLs, comma-separated (any member; the agent follows the leader)")
	fs.StringVar(&f.caFile, "ca-cert", "", "the farm's CA (PEM) that verifies https:// coordinators (default: the system's roots)")
	f.register(fs, "data-dir", "croft-agent")
	f.tokens.register(fs, "agent token, bound to this agent's worker names (else --token-file, $CROFT_TOKEN)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if f.drain {
		return drainAgent(ctx, f.dataDir, stdout)
	}
	token, err := f.tokens.resolve("")
	if err != nil {
		return err
	}
	if token == "" {
		logger.Warn("no token (--token, --token-file or $CROFT_TOKEN): only a coordinator with --insecure or --trust-network will take this agent")
	}
	cfg := f.config(logger, setFlags(fs), token)
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
	if af.drain {
		return drainAgent(ctx, af.dataDir, stdout)
	}
	srv, url, err := startCoordinator(&cf, logger, stdout)
	if err != nil {
		return err
	}
	defer srv.Close()
	af.coordinators = url
	cfg := af.config(logger, setFlags(fs), "")
	if cfg.TLS, err = clientTLS(cf.tls.ca); err != nil {
		return err
	}
	if cfg.Name == "" {
		if cfg.Name, err = os.Hostname(); err != nil {
			return err
		}
	}
	adminFile := filepath.Join(cf.dataDir, AdminTokenFile)
	if !cf.insecure {
		// The farm is ready when its admin token is: the URL line below
		// means a client can use it. The local agent gets a token of its
		// own, bound to its name.
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		cfg.Token, err = devAgentToken(sctx, srv, filepath.Join(cf.dataDir, "agent.token"), cfg.Name)
		cancel()
		if err != nil {
			return fmt.Errorf("dev farm: %w", err)
		}
	} else {
		adminFile = ""
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "croft dev farm: coordinator and agent running, API at %s (data in %s)\n", url, cf.dataDir)
	fmt.Fprintf(stdout, "try: %s\n", firstJob(cf.tls.curl(), url, adminFile))
	err = a.Run(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	logger.Info("shutting down")
	return err
}

// jobTypeFlags collects --sahara-job-type TYPE=COMMAND flags.
type jobTypeFlags map[string]string

func (j *jobTypeFlags) String() string { return fmt.Sprint(map[string]string(*j)) }

// Set adds one TYPE=COMMAND; the command must be a valid farm command
// template.
func (j *jobTypeFlags) Set(v string) error {
	typ, cmd, ok := strings.Cut(v, "=")
	if !ok || typ == "" || cmd == "" {
		return fmt.Errorf("want TYPE=COMMAND, got %q", v)
	}
	if !sahara.IsJobType(typ) {
		return fmt.Errorf("%q is not a Sahara job type", typ)
	}
	if err := farm.CheckCommandTemplate(cmd); err != nil {
		return err
	}
	if *j == nil {
		*j = jobTypeFlags{}
	}
	(*j)[typ] = cmd
	return nil
}
