package tlsconfig

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/croftfarm/croft/internal/tlsconfig/tlstest"
)

// handshake runs a TLS handshake between a client and a server config over
// loopback TCP (buffered, unlike net.Pipe, so an alert sent while the other
// end writes cannot deadlock) and returns the first error of either end.
func handshake(t *testing.T, client, server *tls.Config) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		s := tls.Server(raw, server)
		srvErr <- s.Handshake()
		s.Close()
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, client)
	err = c.Handshake()
	if err == nil {
		// TLS 1.3: the server judges the client's certificate after the
		// client's handshake returned; its verdict is the server's error.
		err = <-srvErr
	} else {
		<-srvErr
	}
	c.Close()
	return err
}

func TestLoadedFilesVerifyEachOther(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "farm")
	caFile := ca.WriteCA(t, dir, "ca.pem")
	cert, key := ca.Issue(t, "c1", "127.0.0.1", "c1.farm").Write(t, dir, "c1")

	srv, err := Server(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Client(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if srv.MinVersion < tls.VersionTLS12 || cli.MinVersion < tls.VersionTLS12 {
		t.Fatalf("min versions %x %x", srv.MinVersion, cli.MinVersion)
	}
	cli.ServerName = "c1.farm"
	if err := handshake(t, cli, srv); err != nil {
		t.Fatalf("client with the farm CA: %v", err)
	}
	cli.ServerName = "other.farm"
	if err := handshake(t, cli, srv); err == nil {
		t.Fatal("a certificate for another name was accepted")
	}

	// Mutual: both ends present a certificate of the farm's CA.
	m1, err := Mutual(cert, key, caFile)
	if err != nil {
		t.Fatal(err)
	}
	c2cert, c2key := ca.Issue(t, "c2", "127.0.0.1").Write(t, dir, "c2")
	m2, err := Mutual(c2cert, c2key, caFile)
	if err != nil {
		t.Fatal(err)
	}
	m2.ServerName = "127.0.0.1"
	if err := handshake(t, m2, m1); err != nil {
		t.Fatalf("mutual handshake: %v", err)
	}
	// A client without a certificate is refused by a Mutual server.
	cli.ServerName = "127.0.0.1"
	if err := handshake(t, cli, m1); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
}

func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Client(empty); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("Client(no PEM) = %v, want ErrNoCertificate", err)
	}
	if _, err := Client(filepath.Join(dir, "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Client(missing) = %v", err)
	}
	if _, err := Server(empty, empty); err == nil {
		t.Fatal("Server accepted a file without a key pair")
	}
	if c, err := Client(""); err != nil || c.RootCAs != nil {
		t.Fatalf("Client(\"\") = %+v, %v; want the system's roots", c, err)
	}
}
