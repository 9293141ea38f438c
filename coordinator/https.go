package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/croftfarm/croft/api/client"
	"github.com/croftfarm/croft/cluster"
)

// ErrSchemeMismatch means a join URL's scheme is not the cluster's, or a
// Server would serve one scheme and reach its peers with the other: a
// cluster's HTTP API is all-HTTPS or all-plain (see ServerConfig.TLS).
var ErrSchemeMismatch = errors.New("URL scheme does not match the cluster's")

func nodeScheme(https bool) string {
	if https {
		return "https"
	}
	return "http"
}

// nodeJoinURLs gives bare host:port join addresses the cluster's scheme and
// refuses URLs of the other one: a plain node could not forward to an
// HTTPS leader, nor the reverse.
func nodeJoinURLs(urls []string, https bool) ([]string, error) {
	scheme := nodeScheme(https)
	out := make([]string, 0, len(urls))
	for _, u := range urls {
		s, _, found := strings.Cut(u, "://")
		switch {
		case !found:
			u = scheme + "://" + u
		case s != scheme:
			return nil, fmt.Errorf("coordinator: join URL %s: %w (%s)", u, ErrSchemeMismatch, scheme)
		}
		out = append(out, u)
	}
	return out, nil
}

// httpJoiner asks existing members to add a node over their HTTP API
// (POST /cluster/join; the client follows the leader): the cluster.Joiner
// of a coordinator started with join URLs.
type httpJoiner struct {
	urls []string
	c    *client.Client
}

// newJoiner returns the joiner of a node started with urls (nil without
// any), checking their scheme against tlsConf's.
func newJoiner(urls []string, token string, tlsConf *tls.Config) (cluster.Joiner, error) {
	if len(urls) == 0 {
		return nil, nil
	}
	urls, err := nodeJoinURLs(urls, tlsConf != nil)
	if err != nil {
		return nil, err
	}
	return &httpJoiner{urls: urls, c: client.NewWith(client.Options{Token: token, TLS: tlsConf}, urls...)}, nil
}

func (j *httpJoiner) Join(ctx context.Context, req cluster.JoinRequest) error {
	return j.c.Join(ctx, client.JoinRequest{NodeID: req.NodeID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr})
}

func (j *httpJoiner) String() string { return strings.Join(j.urls, ",") }
