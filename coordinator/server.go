// Package coordinator is the HTTP side of a coordinator process: the
// server (gin engine, authentication, limits, HTTPS), leader forwarding in
// front of every dialect, the cluster routes, the one edge where the Raft
// layer's errors become the API's, and the leader's sweeper and retention
// duties. The Raft node is package cluster. See DESIGN.md.
package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with ServerConfig.Pprof
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/admin"
	"github.com/croftfarm/croft/api/agentapi"
	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/api/coalition"
	"github.com/croftfarm/croft/api/freezer"
	"github.com/croftfarm/croft/api/jupyter"
	"github.com/croftfarm/croft/api/native"
	"github.com/croftfarm/croft/api/sahara"
	"github.com/croftfarm/croft/api/sas"
	"github.com/croftfarm/croft/api/web"
	"github.com/croftfarm/croft/cluster"
	"github.com/croftfarm/croft/raftstore"
	"github.com/croftfarm/croft/service"
	"github.com/croftfarm/croft/service/dispatch"
	"github.com/croftfarm/croft/service/liveness"
)

// ServerConfig configures a coordinator process: its Raft node, its HTTP
// API and the leader's background duties.
type ServerConfig struct {
	// Node configures the Raft node; its Join is set from Join below.
	Node cluster.Config
	// Join lists HTTP URLs of existing members. A node without Raft state
	// asks them (POST /cluster/join) to add it, until that succeeds. It
	// joins as a non-voter; the leader promotes it once it has caught up.
	// A bare host:port gets this node's scheme; an explicit scheme must
	// match it. It excludes Node.Bootstrap and Node.Recover.
	Join []string
	// JoinToken is the admin token the join request carries.
	JoinToken string
	// TLS, when set, makes the cluster's HTTP API HTTPS as seen from this
	// node: it forwards to the leader and joins over https, verifying the
	// other coordinators' certificates with this configuration (RootCAs:
	// the farm's CA; nil RootCAs: the system's roots). Serving HTTPS is
	// HTTPTLS's part. A cluster is all-HTTPS or all-plain: NodeMeta
	// records host:port only, and each node uses its own scheme to reach
	// the others. nil: plain HTTP.
	TLS *tls.Config
	// LeaderWait bounds how long a request waits for a leader before 503
	// (zero: DefaultLeaderWait).
	LeaderWait time.Duration
	// WorkerTTL is how long a worker may stay silent before the leader
	// marks it lost and requeues its job (default 15 s).
	WorkerTTL time.Duration
	// SweepInterval is how often the leader looks for timed-out jobs and
	// silent workers (default 500 ms).
	SweepInterval time.Duration
	// HTTPTLS, when set, makes Serve speak HTTPS with this configuration
	// (Certificates: this coordinator's certificate, valid for the IP of its
	// HTTP address, which the other coordinators dial, and for the names
	// clients use). Set TLS with it: the cluster is then HTTPS
	// throughout. nil: plain HTTP.
	HTTPTLS *tls.Config
	// Pprof mounts Go's profiler at /debug/pprof/ (off by default: it
	// exposes internals and can cost CPU). It needs an admin token.
	Pprof bool
	// Sahara configures the Sahara dialect: the commands of its job
	// types (the same on every coordinator; see docs/api/sahara.md).
	Sahara sahara.Config
	// Auth says how requests are authenticated: tokens by default;
	// Insecure turns access control off, TrustNets lets tokenless
	// requests from some networks in with TrustRoles.
	Auth auth.Config
	// Limits bound what one request may ask for (coalition.DefaultLimits
	// for the zero fields).
	Limits coalition.Limits
	// BootstrapToken makes this node, when it leads a cluster that has
	// no token at all (a new one), create an admin token, write its
	// secret to AdminTokenFile (0600) and hand it to OnAdminToken.
	BootstrapToken bool
	// AdminTokenFile is where the bootstrap admin token is written.
	AdminTokenFile string
	// AdminSecret, when set, is the secret of the bootstrap admin token
	// instead of a random one: a deployment that provisions its secrets
	// (a container farm) gives every coordinator and agent the same one.
	// At least 32 characters.
	AdminSecret string
	// OnAdminToken is told the bootstrap admin token once it exists
	// (Secret set only when it was just created).
	OnAdminToken func(client.Token)
	// Retention bounds the attempt records and lost workers kept.
	Retention Retention
	// HTTP bounds the API's connections: timeouts, header size and
	// connection caps (see HTTPLimits for the defaults).
	HTTP HTTPLimits
	// MetricsPublic serves /metrics without a token (--metrics-public):
	// for a Prometheus on a trusted network. By default a token with the
	// read rule is needed (docs/SECURITY.md).
	MetricsPublic bool
}

// Server is a coordinator: a Raft node, the REST API and, while leader, the
// sweeper that times out jobs and loses silent workers.
type Server struct {
	cfg    ServerConfig
	node   *cluster.Node
	fwd    *forwarder // the leader forwarding of every dialect
	pings  *liveness.Tracker
	offers *dispatch.Offers // pulls waiting for work
	engine *gin.Engine
	log    *slog.Logger
	auth   *auth.Authenticator
	routes *auth.Table
	svc    *service.Service // the only user of Raft commands
	conns  *connLimiter     // counts and caps the API's connections
	// metrics is this coordinator's Prometheus registry (metrics.go).
	metrics *metrics
	duties  []Duty // the dialects' leader duties (DutyInterval)

	httpSrv *http.Server
	stop    chan struct{}
	wg      sync.WaitGroup
}

// NewServer opens the Raft node and builds the HTTP API. Call Serve to
// accept requests.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.WorkerTTL <= 0 {
		cfg.WorkerTTL = 15 * time.Second
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 500 * time.Millisecond
	}
	cfg.Retention.defaults()
	if cfg.Node.Logger == nil {
		cfg.Node.Logger = slog.Default()
	}
	if (cfg.HTTPTLS == nil) != (cfg.TLS == nil) {
		// Serving one scheme while reaching the others with the other
		// breaks forwarding: the cluster is all-HTTPS or all-plain.
		return nil, fmt.Errorf("coordinator: HTTPTLS and TLS go together: %w", ErrSchemeMismatch)
	}
	if cfg.AdminSecret != "" && len(cfg.AdminSecret) < minAdminSecret {
		return nil, fmt.Errorf("%w: the provisioned admin secret is %d characters, at least %d are needed", cluster.ErrInvalidConfig, len(cfg.AdminSecret), minAdminSecret)
	}
	join, err := newJoiner(cfg.Join, cfg.JoinToken, cfg.TLS)
	if err != nil {
		return nil, err
	}
	cfg.Node.Join = join
	met := newMetrics()
	cfg.Node.Observer = met
	cfg.Node.OnCommit = met.onCommit
	node, err := cluster.NewNode(cfg.Node, nil) // nil: an FSM with its job logs in DataDir
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		node:   node,
		fwd:    newForwarder(node, cfg.TLS, cfg.LeaderWait, cfg.Node.Logger),
		pings:  liveness.New(cfg.WorkerTTL),
		offers: &dispatch.Offers{},
		log:    cfg.Node.Logger,
		stop:   make(chan struct{}),

		metrics: met,
	}
	met.s = s
	s.limitHTTP()
	if cfg.Auth.Insecure {
		s.log.Warn("ACCESS CONTROL IS OFF (--insecure): anyone who reaches this coordinator may run any command on every render node, read every job and change the cluster")
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(s.metrics.countHTTP, gin.Recovery())
	e.HandleMethodNotAllowed = false
	// Client addresses come from auth.ClientIP, which trusts only the
	// coordinators' X-Forwarded-For; gin's own would trust anyone's.
	_ = e.SetTrustedProxies(nil)
	e.Use(bodyLimit(cfg.Limits.MaxBody))
	s.svc = service.New(service.Config{
		Applier:        &store{node: node},
		State:          func() *raftstore.State { return node.FSM().State() },
		Pings:          s.pings,
		Offers:         s.offers,
		LogCap:         cfg.Limits.MaxJobOutput,
		MaxProjectJobs: cfg.Limits.MaxProjectJobs,
	})
	s.auth = auth.New(cfg.Auth, func() auth.Tokens { return node.FSM().State() }, s.isPeer)
	s.routes = &auth.Table{}
	local := auth.Mount{Router: e, Auth: s.auth, Abort: apierr.Abort, Table: s.routes, Confirm: s.confirmLocal}
	s.registerMonitoring(e, local, cfg.MetricsPublic)
	clusterRoutes{node: node, status: func(st *client.ClusterStatus) { st.Insecure = cfg.Auth.Insecure }}.register(local, s.forwarded(local))
	coal := coalition.NewOn(s.svc, s.pings, cfg.Limits)
	// Jupyter's /api/sessions lies inside Coalition's /api catch-all:
	// it gets a router of its own, which Coalition hands those paths to.
	jup := gin.New()
	jup.HandleMethodNotAllowed = false
	_ = jup.SetTrustedProxies(nil)
	jup.NoRoute(func(c *gin.Context) {
		c.Data(http.StatusNotFound, "text/html", []byte("Web service not found."))
	})
	s.mountDialects(auth.Mount{Router: jup, Auth: s.auth, Abort: apierr.Abort, Table: s.routes}, jupyter.New(node.FSM(), s.svc))
	coal.Beside(jupyter.Prefix, jup)
	s.mountDialects(local,
		coal,
		agentapi.New(s.svc),
		admin.New(s.svc),
		native.NewLog(node.FSM()),
		native.New(node.FSM()),
		native.NewJobs(s.svc, native.JobLimits{MaxBody: cfg.Limits.MaxBody, MaxJobsPerRequest: cfg.Limits.MaxJobsPerRequest}),
		native.NewHosts(node.FSM(), s.pings),
		native.NewInterpreters(node.FSM(), s.svc),
		native.NewSessions(node.FSM(), s.svc),
		native.NewTemplates(node.FSM(), s.svc),
		native.NewWorkers(s.svc),
		freezer.New(node.FSM(), s.svc),
		sas.New(node.FSM(), s.svc),
		sahara.New(node.FSM(), s.svc, cfg.Sahara),
	)
	if cfg.Pprof {
		local.Handle("ANY", "/debug/pprof/*any", auth.PermAdmin, gin.WrapH(http.DefaultServeMux))
	}
	// The dashboard's page and assets: public files, no data in them.
	web.Register(e)
	e.NoRoute(func(c *gin.Context) {
		c.Data(http.StatusNotFound, "text/html", []byte("Web service not found."))
	})
	s.engine = e
	// Made here, not in Serve, so Close never races with Serve over it.
	// ReadHeaderTimeout also bounds the TLS handshake.
	s.httpSrv = s.cfg.HTTP.server(e, s.conns)
	s.httpSrv.TLSConfig = cfg.HTTPTLS
	s.httpSrv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn) // e.g. refused TLS handshakes
	s.wg.Add(4)
	go s.watchHalt()
	go s.sweep()
	go s.retain()
	go s.runDuties()
	if cfg.BootstrapToken {
		s.wg.Add(1)
		go s.bootstrapToken()
	}
	return s, nil
}

// Dialect is an API package: it mounts its routes on the Mount it is given.
type Dialect interface {
	Register(auth.Mount)
}

// mountDialects mounts each dialect behind leader forwarding. It is the
// only way a dialect reaches the engine, so none can serve a request from
// a follower's state (which may lag) or change it where it is not leader.
func (s *Server) mountDialects(m auth.Mount, ds ...Dialect) {
	fwd := s.forwarded(m)
	for _, d := range ds {
		d.Register(fwd)
		if duty, ok := d.(Duty); ok {
			s.duties = append(s.duties, duty)
		}
	}
}

// Duty is a dialect's leader duty (Freezer's schedules): the leader calls
// Tick every DutyInterval with its clock's time.
type Duty interface {
	Tick(ctx context.Context, now time.Time) error
}

// DutyInterval is how often the leader runs the dialects' duties.
const DutyInterval = 5 * time.Second

// runDuties calls each dialect's duty on the leader every DutyInterval,
// each bounded by the interval.
func (s *Server) runDuties() {
	defer s.wg.Done()
	t := time.NewTicker(DutyInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if leader, _ := s.node.Leadership(); !leader {
			continue
		}
		for _, d := range s.duties {
			ctx, cancel := context.WithTimeout(context.Background(), DutyInterval)
			if err := d.Tick(ctx, time.Now()); err != nil {
				s.log.Warn("dialect duty", "err", err)
			}
			cancel()
		}
	}
}

// forwarded returns m with the leader forwarding set.
func (s *Server) forwarded(m auth.Mount) auth.Mount {
	m.Forward = s.fwd.handle
	return m
}

// bodyLimit refuses, before any work (a follower would otherwise read it
// to forward it), a body longer than max: at once by its Content-Length,
// or when reading passes max (413 either way).
func bodyLimit(max int64) gin.HandlerFunc {
	if max <= 0 {
		max = coalition.DefaultLimits.MaxBody
	}
	return func(c *gin.Context) {
		if c.Request.ContentLength > max {
			apierr.Abort(c, fmt.Errorf("%w: the body is %d bytes, the limit is %d", raftstore.ErrTooLarge, c.Request.ContentLength, max))
			return
		}
		if c.Request.Body != nil {
			c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, max)
		}
		c.Next()
	}
}

// limitHTTP fills in the HTTP limits, from the open-file limit for the
// connection cap, and logs them.
func (s *Server) limitHTTP() {
	soft, hard, err := fileLimit()
	if err != nil {
		s.log.Warn("cannot read the open-file limit", "err", err)
	}
	h := s.cfg.HTTP.withDefaults(soft)
	s.cfg.HTTP = h
	s.conns = newConnLimiter(h, s.isPeerAddr, s.log)
	s.conns.silent = s.cfg.HTTPTLS != nil // a TLS client could not read a plain status line
	s.log.Info("http limits", "open_file_limit", soft, "open_file_hard_limit", hard,
		"max_conns", h.MaxConns, "max_conns_per_ip", h.MaxConnsPerIP,
		"read_header_timeout", h.ReadHeaderTimeout, "read_timeout", h.ReadTimeout,
		"write_timeout", h.WriteTimeout, "idle_timeout", h.IdleTimeout, "max_header_bytes", h.MaxHeaderBytes)
	if soft > 0 && h.MaxConns > 0 && uint64(h.MaxConns)+fdReserve > soft {
		s.log.Warn("the open-file limit leaves little room for API connections; raise it (ulimit -n, LimitNOFILE=)", "open_file_limit", soft, "max_conns", h.MaxConns)
	}
}

// minAdminSecret is the shortest provisioned admin secret taken: enough
// randomness that it cannot be guessed (a drawn one has 43 characters).
const minAdminSecret = 32

// Routes returns every route the server mounted, with its rule.
func (s *Server) Routes() []auth.Route { return s.routes.Routes() }

// isPeer reports whether ip is one of the coordinators' (from their
// recorded addresses): their X-Forwarded-For is believed.
func (s *Server) isPeer(ip net.IP) bool {
	for _, m := range s.node.FSM().State().Nodes() {
		for _, addr := range []string{m.HTTPAddr, m.RaftAddr} {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				continue
			}
			if hip := net.ParseIP(host); hip != nil && hip.Equal(ip) && !hip.IsUnspecified() {
				return true
			}
		}
	}
	return false
}

// isPeerAddr is isPeer for a netip.Addr.
func (s *Server) isPeerAddr(a netip.Addr) bool { return s.isPeer(net.IP(a.AsSlice())) }

// bootstrapToken creates the first admin token of a new cluster: once this
// node leads and the state holds no token at all, it creates one, writes
// it to AdminTokenFile and tells OnAdminToken. A cluster that has tokens
// (an older one, or one where it was done already) is left alone.
func (s *Server) bootstrapToken() {
	defer s.wg.Done()
	for {
		if leader, _ := s.node.Leadership(); leader {
			done, err := s.ensureAdminToken()
			if err != nil {
				s.log.Warn("creating the bootstrap admin token failed, retrying", "err", err)
			}
			if done {
				return
			}
		}
		select {
		case <-s.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Server) ensureAdminToken() (bool, error) {
	st := s.node.FSM().State()
	if st.TokenCount() > 0 {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t, err := admin.CreateTokenWithSecret(ctx, s.svc, client.TokenRequest{Name: "admin", Role: raftstore.RoleAdmin}, "bootstrap", s.cfg.AdminSecret)
	if err != nil {
		return false, err
	}
	if s.cfg.AdminTokenFile != "" {
		if err := WriteSecret(s.cfg.AdminTokenFile, t.Secret); err != nil {
			s.log.Error("cannot write the admin token file", "file", s.cfg.AdminTokenFile, "err", err)
		}
	}
	s.log.Info("created the bootstrap admin token", "id", t.ID, "file", s.cfg.AdminTokenFile)
	if s.cfg.OnAdminToken != nil {
		s.cfg.OnAdminToken(t)
	}
	return true, nil
}

// CreateToken creates a token on this node, which must be the leader;
// the secret is in the result. croft dev makes its agent's token so.
func (s *Server) CreateToken(ctx context.Context, req client.TokenRequest, by string) (client.Token, error) {
	return admin.CreateToken(ctx, s.svc, req, by)
}

// RevokeTokenNamed revokes the token called name, if there is one; this
// node must be the leader.
func (s *Server) RevokeTokenNamed(ctx context.Context, name string) error {
	for _, t := range s.node.FSM().State().Tokens() {
		if t.Name == name {
			return s.svc.RevokeToken(ctx, t.ID)
		}
	}
	return nil
}

// TokenValid reports whether secret is a live token of the state.
func (s *Server) TokenValid(secret string) bool {
	_, ok := s.node.FSM().State().TokenByHash(auth.Hash(secret))
	return ok
}

// WriteSecret writes a token secret to file, readable by its owner only,
// replacing it whole (a reader never sees half a token).
func WriteSecret(file, secret string) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil { // an existing tmp keeps its mode
		return err
	}
	return os.Rename(tmp, file)
}

// Node returns the Raft node.
func (s *Server) Node() *cluster.Node { return s.node }

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return s.engine }

// Serve accepts API requests on ln until Close: HTTPS when
// ServerConfig.HTTPTLS is set. Its connections are counted and capped
// (HTTPLimits) on ln itself, beneath TLS: a refused one costs no handshake.
func (s *Server) Serve(ln net.Listener) error {
	ln = s.conns.Listener(ln)
	var err error
	if s.cfg.HTTPTLS != nil {
		err = s.httpSrv.ServeTLS(ln, "", "") // the certificate is in TLSConfig
	} else {
		err = s.httpSrv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the coordinator gracefully: a leader first hands leadership
// to another member while its API still forwards requests there, then the
// sweeper, the HTTP server and the Raft node stop.
func (s *Server) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	s.wg.Wait()
	_ = s.node.TransferLeadership()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = s.httpSrv.Shutdown(ctx)
	cancel()
	_ = s.httpSrv.Close()
	s.fwd.close()
	return s.node.Shutdown()
}

// store adapts the Node to the service layer's Applier, its errors
// translated by edgeError.
type store struct {
	node *cluster.Node
}

func (s *store) Apply(ctx context.Context, cmd raftstore.Command) (any, error) {
	res, err := s.node.Apply(ctx, cmd)
	return res, edgeError(err)
}

func (s *store) ApplyGroup(ctx context.Context, cmds ...raftstore.Command) ([]any, error) {
	out, err := s.node.ApplyGroup(ctx, cmds...)
	return out, edgeError(err)
}

// sweep runs the leader's duties: jobs past their timeout become ERROR and
// silent workers are marked lost (service.Sweep).
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	var term service.Term // the leadership swept
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.pings.Due():
		}
		// Pings kept from an earlier leadership need no reset: Expired
		// counts nothing older than since, the start of this leadership.
		// (A reset here raced with agents registering right after it.)
		leader, since := s.node.Leadership()
		if !leader {
			continue
		}
		if !since.Equal(term.Since) {
			term = service.Term{Since: since}
		}
		if err := s.sweepOnce(&term); err != nil {
			s.log.Warn("sweep", "err", err)
		}
	}
}

func (s *Server) sweepOnce(term *service.Term) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	swept, err := s.svc.Sweep(ctx, term, s.cfg.WorkerTTL)
	if len(swept.Lost) > 0 {
		s.log.Info("workers lost", "workers", swept.Lost)
	}
	return err
}
