package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrUnavailable means no coordinator answered (or none had a leader)
// before the context ended.
var ErrUnavailable = errors.New("no coordinator available")

// StatusError is a reply with a status other than 200.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("coordinator replied %d: %s", e.Code, e.Message)
}

// IsStatus reports whether err is a StatusError with this code.
func IsStatus(err error, code int) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == code
}

// Options are the optional settings of a Client.
type Options struct {
	// Token is sent as "Authorization: Bearer <Token>" with every request;
	// empty sends none.
	Token string
	// TLS configures https:// URLs (the CA that signed the coordinators'
	// certificates); nil uses the system's roots.
	TLS *tls.Config
	// FailFast makes a call give up with ErrUnavailable once every
	// coordinator refused the connection twice in a row (none listens),
	// instead of retrying until its context ends: for interactive tools,
	// which must say so at once. A 503 (no leader yet) is still retried.
	FailFast bool
}

// Client talks to a coordinator cluster. It prefers the leader's address
// (any member forwards, but going straight to the leader saves a hop) and
// moves on to the next URL when a coordinator does not answer.
type Client struct {
	urls     []string
	hc       *http.Client
	token    string
	failFast bool

	mu     sync.Mutex
	next   int
	leader string    // base URL of the leader, "" when unknown
	asked  time.Time // when learnLeader last asked who leads
}

// leaderRefresh bounds how often a client that does not know the leader
// asks who it is.
const leaderRefresh = 2 * time.Second

// New returns a client for these coordinator base URLs ("http://host:port";
// a bare "host:port" gets the http scheme), without a token.
func New(urls ...string) *Client { return NewWith(Options{}, urls...) }

// NewWith returns a client for these coordinator base URLs with options.
func NewWith(opts Options, urls ...string) *Client {
	c := &Client{token: opts.Token, failFast: opts.FailFast, hc: &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     opts.TLS,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}}
	for _, u := range urls {
		for _, part := range strings.Split(u, ",") {
			if part = strings.TrimSpace(part); part != "" {
				c.urls = append(c.urls, normalize(part))
			}
		}
	}
	return c
}

func normalize(u string) string {
	u = strings.TrimRight(u, "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	return u
}

// sameScheme makes a base URL of a coordinator's host:port with the scheme
// of base, the URL that named it: a cluster's coordinators all speak HTTPS
// or all plain HTTP, and status replies carry host:port only.
func sameScheme(hostport, base string) string {
	scheme, _, _ := strings.Cut(base, "://")
	return scheme + "://" + strings.TrimRight(hostport, "/")
}

// URLs returns the coordinator URLs the client was given.
func (c *Client) URLs() []string { return append([]string(nil), c.urls...) }

// target returns the base URL to try next.
func (c *Client) target() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader != "" {
		return c.leader
	}
	if len(c.urls) == 0 {
		return ""
	}
	return c.urls[c.next%len(c.urls)]
}

// failed records that base did not answer: forget it as leader, rotate.
func (c *Client) failed(base string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leader == base {
		c.leader = ""
	}
	c.next++
}

// FindLeader asks the known coordinators who leads and uses its address
// from now on. It returns the leader's base URL.
func (c *Client) FindLeader(ctx context.Context) (string, error) {
	for _, u := range c.urls {
		leader := c.leaderSeenBy(ctx, u)
		if leader == "" {
			continue
		}
		host, _, err := net.SplitHostPort(leader)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return u, nil // the leader listens on all interfaces: use what we were given
		}
		base := sameScheme(leader, u)
		c.mu.Lock()
		c.leader = base
		c.mu.Unlock()
		return base, nil
	}
	return "", ErrUnavailable
}

// learnLeader, while the leader is not known, asks the coordinator it
// would send to who leads (at most once per leaderRefresh), and goes
// straight to the leader from then on if it is one of the URLs given: a
// follower forwards every request, a hop that doubles the HTTP work. The
// leader's address is known again after each failure that made the client
// forget it. An address not given (advertised, but maybe not reachable from
// here) is left to the forwarding.
func (c *Client) learnLeader(ctx context.Context) {
	c.mu.Lock()
	ask := c.leader == "" && len(c.urls) > 1 && time.Since(c.asked) >= leaderRefresh
	var base string
	if ask {
		c.asked, base = time.Now(), c.urls[c.next%len(c.urls)]
	}
	c.mu.Unlock()
	if !ask {
		return
	}
	leader := c.leaderSeenBy(ctx, base)
	if leader == "" {
		return
	}
	if lead := sameScheme(leader, base); slices.Contains(c.urls, lead) {
		c.mu.Lock()
		if c.leader == "" {
			c.leader = lead
		}
		c.mu.Unlock()
	}
}

// leaderSeenBy returns the leader's HTTP address (host:port) as the
// coordinator at base knows it; "" if it knows none or does not answer
// within 2 s.
func (c *Client) leaderSeenBy(ctx context.Context, base string) string {
	var st ClusterStatus
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := c.once(rctx, base, http.MethodGet, "/cluster/status", nil, &st); err != nil {
		return ""
	}
	return st.LeaderHTTP
}

// WaitLeader is FindLeader retried until a coordinator names a leader or
// ctx ends: right after a cluster forms, or during an election, none may
// know one yet.
func (c *Client) WaitLeader(ctx context.Context) (string, error) {
	backoff := 20 * time.Millisecond
	for {
		u, err := c.FindLeader(ctx)
		if err == nil {
			return u, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// retryable reports whether a failed call may be sent again. A call that
// certainly was not applied (no connection could be made, or 503: no
// leader) always may. One whose outcome is unknown (502 or 504 from the
// cluster, or a connection that broke after the request was sent) may only
// when the request is idempotent: retrying a create could make two jobs.
func retryable(err error, idempotent bool) bool {
	// 503: no leader, or the coordinator had no connection to spare; 429:
	// too many connections from this address. Neither read the request.
	if IsStatus(err, http.StatusServiceUnavailable) || IsStatus(err, http.StatusTooManyRequests) {
		return true
	}
	var se *StatusError
	if errors.As(err, &se) {
		return idempotent && (se.Code == http.StatusBadGateway || se.Code == http.StatusGatewayTimeout)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true // nothing was sent
	}
	return idempotent
}

// dialFailed reports whether err is a failure to connect: nothing listens
// there, or the address cannot be reached.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// tlsRefused reports whether err is a TLS failure that retrying does not
// cure: the server's certificate did not verify.
func tlsRefused(err error) bool {
	var ve *tls.CertificateVerificationError
	return errors.As(err, &ve)
}

// idempotent reports whether sending a request twice has the effect of
// sending it once: reads, the agent protocol (attempt ids and log offsets
// make reports idempotent) and membership changes. Coalition writes are
// not (a create makes a new job each time).
func idempotent(method, path string) bool {
	return method == http.MethodGet || method == http.MethodHead ||
		strings.HasPrefix(path, "/croft/v1/agent/") || strings.HasPrefix(path, "/cluster/")
}

// Do sends a JSON request and decodes the JSON reply into out (if not nil).
// It moves across coordinators and retries while the cluster has no leader,
// until ctx ends; a request whose outcome became unknown is retried only if
// it is idempotent (see retryable). Replies other than 2xx are returned as
// *StatusError; a 2xx without a body (204) leaves out as it was.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	c.learnLeader(ctx)
	backoff := 20 * time.Millisecond
	var last error
	tlsRefusals := 0  // in a row
	dialFailures := 0 // in a row
	for attempt := 0; ; attempt++ {
		base := c.target()
		if base == "" {
			return fmt.Errorf("%w: no coordinator URL given", ErrUnavailable)
		}
		err := c.once(ctx, base, method, path, body, out)
		if err == nil || !retryable(err, idempotent(method, path)) {
			return err
		}
		last = err
		c.failed(base)
		if tlsRefused(err) {
			// Asking again will not make a certificate trusted: once every
			// coordinator refused, say so instead of retrying until ctx ends.
			if tlsRefusals++; tlsRefusals >= len(c.urls) {
				return err
			}
		} else {
			tlsRefusals = 0
		}
		if dialFailed(err) {
			if dialFailures++; c.failFast && dialFailures >= 2*len(c.urls) {
				return fmt.Errorf("%w: %v", ErrUnavailable, err)
			}
		} else {
			dialFailures = 0
		}
		if attempt > 0 && attempt%len(c.urls) == 0 {
			_, _ = c.FindLeader(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v (last error: %v)", ErrUnavailable, ctx.Err(), last)
		case <-time.After(backoff):
		}
		if backoff < time.Second {
			backoff *= 2
		}
	}
}

func (c *Client) once(ctx context.Context, base, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := strings.TrimSpace(string(data))
		var eb ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		se := &StatusError{Code: resp.StatusCode, Message: msg}
		if out != nil && resp.StatusCode == http.StatusConflict {
			_ = json.Unmarshal(data, out) // a 409 report reply carries Kill
		}
		return se
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode reply of %s %s: %w", method, path, err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Agent protocol

// Register announces an agent.
func (c *Client) Register(ctx context.Context, req RegisterRequest) error {
	return c.Do(ctx, http.MethodPost, PathRegister, req, nil)
}

// Heartbeat keeps an agent alive and returns the attempts it must kill.
func (c *Client) Heartbeat(ctx context.Context, req HeartbeatRequest) (HeartbeatResponse, error) {
	var resp HeartbeatResponse
	err := c.Do(ctx, http.MethodPost, PathHeartbeat, req, &resp)
	return resp, err
}

// Pull waits for work; it returns nil when the wait ran out.
func (c *Client) Pull(ctx context.Context, req PullRequest) (*Assignment, error) {
	var resp PullResponse
	if err := c.Do(ctx, http.MethodPost, PathPull, req, &resp); err != nil {
		return nil, err
	}
	return resp.Assignment, nil
}

// Report sends an attempt's output or result. A stale attempt gives a
// response with Kill set and a *StatusError with code 409.
func (c *Client) Report(ctx context.Context, req ReportRequest) (ReportResponse, error) {
	var resp ReportResponse
	err := c.Do(ctx, http.MethodPost, PathReport, req, &resp)
	return resp, err
}

// ---------------------------------------------------------------------------
// Cluster

// Status returns GET /cluster/status of the coordinator at base (one of the
// URLs, or "" for whichever answers).
func (c *Client) Status(ctx context.Context, base string) (ClusterStatus, error) {
	var st ClusterStatus
	if base != "" {
		return st, c.once(ctx, normalize(base), http.MethodGet, "/cluster/status", nil, &st)
	}
	return st, c.Do(ctx, http.MethodGet, "/cluster/status", nil, &st)
}

// Join adds a coordinator to the cluster.
func (c *Client) Join(ctx context.Context, req JoinRequest) error {
	return c.Do(ctx, http.MethodPost, "/cluster/join", req, nil)
}

// Remove removes a coordinator from the cluster.
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodPost, "/cluster/remove", RemoveRequest{NodeID: id}, nil)
}

// ---------------------------------------------------------------------------
// Coalition jobs

// CreateJob submits a job and returns its id.
func (c *Client) CreateJob(ctx context.Context, j NewJob) (int64, error) {
	var id int64
	err := c.Do(ctx, http.MethodPut, "/api/jobs", j, &id)
	return id, err
}

// Job returns one job.
func (c *Client) Job(ctx context.Context, id int64) (Job, error) {
	var j Job
	err := c.Do(ctx, http.MethodGet, "/api/jobs/"+strconv.FormatInt(id, 10), nil, &j)
	return j, err
}

// Children returns the children of a job (0 = the root jobs).
func (c *Client) Children(ctx context.Context, id int64) ([]Job, error) {
	var out []Job
	path := "/api/jobs"
	if id != 0 {
		path = "/api/jobs/" + strconv.FormatInt(id, 10) + "/children"
	}
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// Log returns a job's whole log.
func (c *Client) Log(ctx context.Context, id int64) (string, error) {
	var s string
	err := c.Do(ctx, http.MethodGet, "/api/jobs/"+strconv.FormatInt(id, 10)+"/log", nil, &s)
	return s, err
}

// Workers returns all workers.
func (c *Client) Workers(ctx context.Context) ([]Worker, error) {
	var out []Worker
	err := c.Do(ctx, http.MethodGet, "/api/workers", nil, &out)
	return out, err
}
