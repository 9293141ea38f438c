package main

import (
	"crypto/tls"
	"flag"
	"fmt"

	"github.com/croftfarm/croft/coordinator"
	"github.com/croftfarm/croft/internal/tlsconfig"
)

// tlsFlags are the TLS flags of "croft coordinator" and "croft dev".
type tlsFlags struct {
	cert, key, ca             string
	raftCert, raftKey, raftCA string
}

func (f *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cert, "tls-cert", "", "serve the API over HTTPS with this PEM certificate (valid for the IP of --http-addr); needs --tls-key")
	fs.StringVar(&f.key, "tls-key", "", "the PEM key of --tls-cert")
	fs.StringVar(&f.ca, "ca-cert", "", "the farm's CA (PEM): verifies the other coordinators' HTTPS certificates (default: the system's roots)")
	fs.StringVar(&f.raftCert, "raft-tls-cert", "", "run Raft over mutual TLS with this PEM certificate (valid for the IP of --raft-addr); needs --raft-tls-key and --raft-tls-ca")
	fs.StringVar(&f.raftKey, "raft-tls-key", "", "the PEM key of --raft-tls-cert")
	fs.StringVar(&f.raftCA, "raft-tls-ca", "", "the CA (PEM) whose certificates Raft peers must present")
}

// https reports whether the API is served over HTTPS.
func (f *tlsFlags) https() bool { return f.cert != "" }

// scheme is the API's URL scheme.
func (f *tlsFlags) scheme() string {
	if f.https() {
		return "https"
	}
	return "http"
}

// curl is the curl command that reaches the API: with the farm's CA.
func (f *tlsFlags) curl() string {
	if f.ca != "" {
		return "curl --cacert " + f.ca
	}
	return "curl"
}

// configure checks the flags and sets the TLS fields of cfg.
func (f *tlsFlags) configure(cfg *coordinator.ServerConfig) error {
	if (f.cert == "") != (f.key == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if f.ca != "" && f.cert == "" {
		// A plain coordinator has no use for it: a cluster is all-HTTPS
		// or all-plain.
		return fmt.Errorf("%w: --ca-cert needs --tls-cert and --tls-key (the cluster's API is then HTTPS)", errUsage)
	}
	if n := countSet(f.raftCert, f.raftKey, f.raftCA); n != 0 && n != 3 {
		return fmt.Errorf("%w: --raft-tls-cert, --raft-tls-key and --raft-tls-ca go together", errUsage)
	}
	if f.cert != "" {
		srv, err := tlsconfig.Server(f.cert, f.key)
		if err != nil {
			return err
		}
		cli, err := tlsconfig.Client(f.ca)
		if err != nil {
			return err
		}
		cfg.HTTPTLS, cfg.TLS = srv, cli
	}
	if f.raftCert != "" {
		conf, err := tlsconfig.Mutual(f.raftCert, f.raftKey, f.raftCA)
		if err != nil {
			return err
		}
		cfg.Node.RaftTLS = conf
	}
	return nil
}

// clientTLS loads --ca-cert for a client of the API (agent, CLI): nil,
// the system's roots, when caFile is empty.
func clientTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	return tlsconfig.Client(caFile)
}

func countSet(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}
