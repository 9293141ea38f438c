package coordinator

import (
	"errors"
	"fmt"
	"strings"
)

// ErrSchemeMismatch means a join URL's scheme is not the cluster's, or a
// Server would serve one scheme and reach its peers with the other: a
// cluster's HTTP API is all-HTTPS or all-plain (see Config.TLS).
var ErrSchemeMismatch = errors.New("URL scheme does not match the cluster's")

// httpScheme is the scheme of every coordinator's API, as this node's own
// configuration says: NodeMeta records host:port only.
func (n *Node) httpScheme() string { return nodeScheme(n.cfg.TLS != nil) }

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
