package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

// TestTLSFlagsGoTogether: half a TLS configuration is a usage error.
func TestTLSFlagsGoTogether(t *testing.T) {
	for _, args := range [][]string{
		{"--tls-cert", "c.pem"},
		{"--ca-cert", "ca.pem"},
		{"--raft-tls-cert", "c.pem", "--raft-tls-key", "c.key"},
	} {
		argv := append([]string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--bootstrap"}, args...)
		err := runCoordinator(context.Background(), argv, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if !errors.Is(err, errUsage) {
			t.Errorf("croft coordinator %v: %v, want a usage error", args, err)
		}
	}
}
