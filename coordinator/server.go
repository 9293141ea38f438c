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
	"github.com/croftfarm/croft/api/native"
	"github.com/croftfarm/croft/coordinator/dispatch"
	"github.com/croftfarm/croft/coordinator/liveness"
	"github.com/croftfarm/croft/raftstore"
)

// ServerConfig configures a coordinator process: its Raft node and the
// leader's background duties.
type ServerConfig struct {
	Node Config
	// WorkerTTL is how long a worker may stay silent before the leader
	// marks it lost and requeues its job (default 15 s).
	WorkerTTL time.Duration
	// SweepInterval is how often the leader looks for timed-out jobs and
	// silent workers (default 500 ms).
	SweepInterval time.Duration
	// HTTPTLS, when set, makes Serve speak HTTPS with this configuration
	// (Certificates: this coordinator's certificate, valid for the IP of its
	// HTTP address, which the other coordinators dial, and for the names
	// clients use). Set Node.TLS with it: the cluster is then HTTPS
	// throughout. nil: plain HTTP.
	HTTPTLS *tls.Config
	// Pprof mounts Go's profiler at /debug/pprof/ (off by default: it
	// exposes internals and can cost CPU). It needs an admin token.
	Pprof bool
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
}

// Server is a coordinator: a Raft node, the REST API and, while leader, the
// sweeper that times out jobs and loses silent workers.
type Server struct {
	cfg    ServerConfig
	node   *Node
	pings  *liveness.Tracker
	offers *dispatch.Offers // pulls waiting for work
	engine *gin.Engine
	log    *slog.Logger
	auth   *auth.Authenticator
	routes *auth.Table
	store  *store
	conns  *connLimiter // counts and caps the API's connections

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
	if (cfg.HTTPTLS == nil) != (cfg.Node.TLS == nil) {
		// Serving one scheme while reaching the others with the other
		// breaks forwarding: the cluster is all-HTTPS or all-plain.
		return nil, fmt.Errorf("coordinator: HTTPTLS and Node.TLS go together: %w", ErrSchemeMismatch)
	}
	if cfg.AdminSecret != "" && len(cfg.AdminSecret) < minAdminSecret {
		return nil, fmt.Errorf("%w: the provisioned admin secret is %d characters, at least %d are needed", ErrInvalidConfig, len(cfg.AdminSecret), minAdminSecret)
	}
	node, err := NewNode(cfg.Node, raftstore.NewFSM())
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		node:   node,
		pings:  liveness.New(cfg.WorkerTTL),
		offers: &dispatch.Offers{},
		log:    cfg.Node.Logger,
		stop:   make(chan struct{}),
	}
	s.limitHTTP()
	if cfg.Auth.Insecure {
		s.log.Warn("ACCESS CONTROL IS OFF (--insecure): anyone who reaches this coordinator may run any command on every render node, read every job and change the cluster")
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(gin.Recovery())
	e.HandleMethodNotAllowed = false
	// Client addresses come from auth.ClientIP, which trusts only the
	// coordinators' X-Forwarded-For; gin's own would trust anyone's.
	_ = e.SetTrustedProxies(nil)
	e.Use(bodyLimit(cfg.Limits.MaxBody))
	st := &store{node: node, offers: s.offers}
	s.store = st
	s.auth = auth.New(cfg.Auth, func() auth.Tokens { return node.FSM().State() }, s.isPeer)
	s.routes = &auth.Table{}
	local := auth.Mount{Router: e, Auth: s.auth, Abort: apierr.Abort, Table: s.routes}
	fwd := local
	fwd.Forward = node.Forward()
	node.RegisterClusterRoutes(local, fwd, func(st *client.ClusterStatus) { st.Insecure = cfg.Auth.Insecure })
	coalition.New(st, s.pings, cfg.Limits).Register(fwd)
	agentapi.New(st, s.pings, s.offers, cfg.Limits.MaxJobOutput).Register(fwd)
	admin.New(st).Register(fwd)
	native.NewHosts(st, s.pings).Register(fwd)
	native.NewInterpreters(st).Register(fwd)
	if cfg.Pprof {
		local.Handle("ANY", "/debug/pprof/*any", auth.PermAdmin, gin.WrapH(http.DefaultServeMux))
	}
	e.NoRoute(func(c *gin.Context) {
		c.Data(http.StatusNotFound, "text/html", []byte("Web service not found."))
	})
	s.engine = e
	// Made here, not in Serve, so Close never races with Serve over it.
	// ReadHeaderTimeout also bounds the TLS handshake.
	s.httpSrv = s.cfg.HTTP.server(e, s.conns)
	s.httpSrv.TLSConfig = cfg.HTTPTLS
	s.httpSrv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn) // e.g. refused TLS handshakes
	s.wg.Add(2)
	go s.sweep()
	go s.retain()
	if cfg.BootstrapToken {
		s.wg.Add(1)
		go s.bootstrapToken()
	}
	return s, nil
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
	t, err := admin.CreateTokenWithSecret(ctx, s.store, time.Now(), client.TokenRequest{Name: "admin", Role: raftstore.RoleAdmin}, "bootstrap", s.cfg.AdminSecret)
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
	return admin.CreateToken(ctx, s.store, time.Now(), req, by)
}

// RevokeTokenNamed revokes the token called name, if there is one; this
// node must be the leader.
func (s *Server) RevokeTokenNamed(ctx context.Context, name string) error {
	for _, t := range s.node.FSM().State().Tokens() {
		if t.Name == name {
			_, err := s.store.Apply(ctx, &raftstore.TokenRevoke{Now: time.Now().UnixNano(), ID: t.ID})
			return err
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
func (s *Server) Node() *Node { return s.node }

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
	return s.node.Shutdown()
}

// store adapts the Node to the API packages' Store interface: a command
// that was not applied becomes apierr.ErrUnavailable (503, safe to retry),
// or apierr.ErrInsufficientStorage (507) when storage was the cause, one
// whose fate is unknown apierr.ErrOutcomeUnknown (504). A create that
// can start jobs while agents wait for work carries their picks in its
// own entry (see package dispatch).
type store struct {
	node   *Node
	offers *dispatch.Offers
}

func (s *store) Apply(ctx context.Context, cmd raftstore.Command) (any, error) {
	if c, ok := cmd.(*raftstore.JobCreate); ok && s.offers.Len() > 0 {
		if ws := s.offers.Claim(min(dispatch.Startable(c), dispatch.MaxClaim)); len(ws) > 0 {
			return s.createAndOffer(ctx, c, ws)
		}
	}
	res, err := s.node.Apply(ctx, cmd)
	return res, edgeError(err)
}

// createAndOffer applies a create and, right after it in the same entry, a
// pick for each claimed waiter, and hands each waiter its pick's result.
func (s *store) createAndOffer(ctx context.Context, c *raftstore.JobCreate, ws []*dispatch.Waiter) (any, error) {
	cmds := make([]raftstore.Command, 0, 1+len(ws))
	cmds = append(cmds, c)
	for _, w := range ws {
		cmds = append(cmds, &raftstore.Pick{Now: c.Now, Worker: w.Worker, IP: w.IP})
	}
	out, err := s.node.ApplyGroup(ctx, cmds...)
	err = edgeError(err)
	for i, w := range ws {
		r := dispatch.Result{Err: err}
		if err == nil {
			switch v := out[i+1].(type) {
			case *raftstore.Assignment:
				r.Assignment = v
			case error:
				r.Err = v
			}
		}
		w.Deliver(r)
	}
	if err != nil {
		return nil, err
	}
	if e, ok := out[0].(error); ok {
		return nil, e
	}
	return out[0], nil
}

// edgeError maps the node's errors to the API's. A storage failure (the
// leader could not store the entry, or lost its leadership while its own
// writes fail) is told as such, not as a missing leader.
func edgeError(err error) error {
	switch {
	case err == nil:
	case errors.Is(err, ErrOutcomeUnknown):
		err = fmt.Errorf("%w: %v", apierr.ErrOutcomeUnknown, err)
	case errors.Is(err, ErrStorage):
		err = fmt.Errorf("%w: %v", apierr.ErrInsufficientStorage, err)
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNoLeader):
		err = fmt.Errorf("%w: %v", apierr.ErrUnavailable, err)
	}
	return err
}

func (s *store) State() *raftstore.State { return s.node.FSM().State() }

// sweep runs the leader's duties: jobs past their timeout become ERROR and
// silent workers are marked lost. Only decisions are written to Raft; the
// FSM checks each condition again with the stamped time.
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	var term, scanned time.Time // the leadership swept, and its last full liveness scan
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
		if !since.Equal(term) {
			term, scanned = since, time.Time{}
		}
		if err := s.sweepOnce(since, &scanned); err != nil {
			s.log.Warn("sweep", "err", err)
		}
	}
}

func (s *Server) sweepOnce(since time.Time, scanned *time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	clock := time.Now()
	now := clock.UnixNano()
	st := s.node.FSM().State()
	var late []int64
	for _, r := range st.Running() {
		if r.Timeout > 0 && now-r.StartTime > r.Timeout*int64(time.Second) {
			late = append(late, r.AttemptID)
		}
	}
	if len(late) > 0 {
		if _, err := s.node.Apply(ctx, &raftstore.JobTimeout{Now: now, Attempts: late}); err != nil {
			return err
		}
	}
	// Silent workers: those whose TTL timer fired. Once the failover grace
	// is over, and every TTL after, all the workers of the state are
	// checked: some never pinged this leader, so have no timer.
	ttl := s.cfg.WorkerTTL
	due := s.pings.TakeDue()
	var candidates []string
	switch {
	case clock.Sub(since) <= ttl:
		return nil // the grace: nobody is late yet
	case scanned.IsZero() || clock.Sub(*scanned) >= ttl:
		candidates, *scanned = st.WatchedWorkers(), clock
	default:
		for _, name := range due {
			if w, ok := st.Worker(name); ok && w.State != raftstore.WorkerTimeout {
				candidates = append(candidates, name)
			}
		}
	}
	lost := s.pings.Expired(candidates, now, since.UnixNano(), ttl.Nanoseconds())
	if len(lost) > 0 {
		s.log.Info("workers lost", "workers", lost)
		if _, err := s.node.Apply(ctx, &raftstore.WorkerLost{Now: now, Names: lost}); err != nil {
			return err
		}
	}
	return nil
}
