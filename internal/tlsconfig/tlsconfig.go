// Package tlsconfig loads the farm's certificates into *tls.Config values:
// the one place where coordinators, agents and the CLI read PEM files.
//
// Every configuration it returns speaks TLS 1.2 or later only.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// MinVersion is the oldest TLS version Croft accepts.
const MinVersion = tls.VersionTLS12

// ErrNoCertificate means a CA file holds no PEM certificate.
var ErrNoCertificate = errors.New("no PEM certificate found")

// CAPool reads a PEM file of CA certificates.
func CAPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tls: CA %s: %w", file, ErrNoCertificate)
	}
	return pool, nil
}

// Client returns the configuration of a client that verifies servers
// against the CA in caFile only; with caFile empty, against the system's
// roots.
func Client(caFile string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: MinVersion}
	if caFile != "" {
		pool, err := CAPool(caFile)
		if err != nil {
			return nil, err
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

// Server returns the configuration of a server presenting the certificate
// and key in certFile and keyFile (PEM; the certificate file may carry the
// intermediate chain after the leaf).
func Server(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load certificate: %w", err)
	}
	return &tls.Config{MinVersion: MinVersion, Certificates: []tls.Certificate{cert}}, nil
}

// Mutual returns the configuration of both ends of a mutually
// authenticated link: it presents the certificate in certFile/keyFile, and
// verifies the peer's (a server's as a client, a client's as a server)
// against the CA in caFile only, never the system's roots. Servers using it
// require a client certificate.
func Mutual(certFile, keyFile, caFile string) (*tls.Config, error) {
	conf, err := Server(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	pool, err := CAPool(caFile)
	if err != nil {
		return nil, err
	}
	conf.RootCAs, conf.ClientCAs = pool, pool
	conf.ClientAuth = tls.RequireAndVerifyClientCert
	return conf, nil
}
