package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/croftfarm/croft/api/apierr"
	"github.com/croftfarm/croft/api/auth"
	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
)

// Confirming a token with the leader. The routes a coordinator answers
// itself (its status, snapshots, pprof) authenticate against its own copy
// of the tokens, which lags the leader's by the entries in flight: a
// revocation is acknowledged once the leader applied it, a follower
// applies it a heartbeat later, or later still when it is slow. So a
// follower asks the leader (GET /cluster/whoami with the same token)
// before it serves one: once acknowledged, a revocation is refused by
// every coordinator at once. The leader serves every other route itself.

// confirmTimeout bounds one question to the leader.
const confirmTimeout = 2 * time.Second

// errCannotConfirm: no leader answered whether the token is valid.
var errCannotConfirm = errors.New("cannot confirm the token with the leader")

// confirmLocal is the auth.Mount.Confirm of the routes this coordinator
// answers itself. Its own status (the rule "authenticated") must answer
// when there is no leader to ask (an election, a lost quorum, a full
// disk: when it matters most), so it falls back to this node's copy of
// the tokens then, and only then; an admin route waits for a leader
// (LeaderWait) and answers 503 without one.
func (s *Server) confirmLocal(perm auth.Perm, abort auth.Aborter) gin.HandlerFunc {
	return s.confirmView(perm, abort, perm == auth.PermAuthenticated)
}

// confirmView is confirmLocal; with ownView set, a route falls back to
// this node's copy of the tokens when no leader answers (its status, its
// metrics: needed most when there is no leader).
func (s *Server) confirmView(perm auth.Perm, abort auth.Aborter, ownView bool) gin.HandlerFunc {
	wait := s.fwd.wait
	if ownView {
		wait = 0 // one question to the leader known now, if any
	}
	return func(c *gin.Context) {
		secret := auth.Secret(c.Request)
		if s.auth.Insecure() || secret == "" {
			c.Next() // no token: nothing that can be revoked
			return
		}
		err := s.fwd.confirm(c.Request.Context(), secret, wait)
		switch {
		case err == nil:
		case ownView && errors.Is(err, errCannotConfirm):
			s.log.Debug("status served on this node's copy of the tokens", "why", err)
		default:
			abort(c, edgeError(err))
			return
		}
		c.Next()
	}
}

// confirm tells whether secret is a token the leader knows: nil if so, or
// if this node is the ready leader (its copy is the leader's); an
// apierr.ErrUnauthenticated error if the leader refuses it; an error
// wrapping errCannotConfirm and cluster.ErrNoLeader if no leader answered
// within wait (0: one question to the leader this node knows, if any).
func (f *forwarder) confirm(ctx context.Context, secret string, wait time.Duration) error {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		changed := f.node.Changed()
		if ready, _ := f.node.Leadership(); ready {
			return nil
		}
		target, why := f.node.LeaderHTTP()
		if target != "" {
			err := f.whoami(ctx, target, secret)
			if err == nil || errors.Is(err, apierr.ErrUnauthenticated) {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			why = fmt.Sprintf("leader %s: %v", target, err)
			if !errors.Is(err, errUpstreamNotLeader) {
				changed = nil // a dead leader stays known until an election: back off
			}
		}
		if wait <= 0 {
			return fmt.Errorf("%w: %w: %s", cluster.ErrNoLeader, errCannotConfirm, why)
		}
		poll := time.NewTimer(nodeForwardPoll)
		select {
		case <-changed:
		case <-poll.C:
		case <-ctx.Done():
			poll.Stop()
			return ctx.Err()
		case <-f.node.Done():
			poll.Stop()
			return fmt.Errorf("%w: %w: this node is shutting down", cluster.ErrNoLeader, errCannotConfirm)
		case <-deadline.C:
			poll.Stop()
			return fmt.Errorf("%w: %w: %s after %v", cluster.ErrNoLeader, errCannotConfirm, why, wait)
		}
		poll.Stop()
	}
}

// whoami asks the coordinator at target, as the leader, who secret is.
func (f *forwarder) whoami(ctx context.Context, target, secret string) error {
	ctx, cancel := context.WithTimeout(ctx, confirmTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.scheme+"://"+target+client.PathWhoami, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	// Marked as forwarded: a node that no longer leads says so at once
	// instead of forwarding it on.
	req.Header.Set(ForwardedHeader, "1")
	resp, err := f.proxy.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var eb client.ErrorBody
	_ = json.Unmarshal(body, &eb)
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusUnauthorized:
		return apierr.Unauthenticated("%s (the leader says)", strings.TrimPrefix(eb.Error, apierr.ErrUnauthenticated.Error()+": "))
	case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(NotLeaderHeader) != "":
		return errUpstreamNotLeader
	}
	return fmt.Errorf("answered %d %s", resp.StatusCode, eb.Error)
}
