package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestProgressTransportInterfaces checks that the wrapper offers Raft's
// optional transport interfaces exactly when the wrapped transport does.
func TestProgressTransportInterfaces(t *testing.T) {
	_, mem := raft.NewInmemTransport("")
	tcp, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	for _, tc := range []struct {
		name  string
		inner raft.Transport
	}{{"inmem", mem}, {"tcp", tcp}} {
		_, w := newProgressTransport(tc.inner)
		_, pv := w.(raft.WithPreVote)
		_, innerPV := tc.inner.(raft.WithPreVote)
		_, peers := w.(raft.WithPeers)
		_, innerPeers := tc.inner.(raft.WithPeers)
		_, closer := w.(raft.WithClose)
		if pv != innerPV || peers != innerPeers || !closer {
			t.Fatalf("%s: pre-vote %v (inner %v), peers %v (inner %v), close %v", tc.name, pv, innerPV, peers, innerPeers, closer)
		}
		if w.LocalAddr() != tc.inner.LocalAddr() {
			t.Fatalf("%s: local address %s, inner %s", tc.name, w.LocalAddr(), tc.inner.LocalAddr())
		}
	}
	if err := mem.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestProgressTransportRecords checks what is recorded from AppendEntries
// replies, direct and pipelined.
func TestProgressTransportRecords(t *testing.T) {
	addrA, a := raft.NewInmemTransport("")
	addrB, b := raft.NewInmemTransport("")
	a.Connect(addrB, b)
	defer a.Close()
	defer b.Close()
	// b answers with LastLog = the request's LeaderCommitIndex, and
	// refuses requests with PrevLogEntry 1.
	done := make(chan struct{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		for {
			select {
			case rpc := <-b.Consumer():
				req := rpc.Command.(*raft.AppendEntriesRequest)
				rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.LeaderCommitIndex, Success: req.PrevLogEntry != 1}, nil)
			case <-done:
				return
			}
		}
	}()
	defer func() { close(done); <-served }()

	p, w := newProgressTransport(a)
	send := func(lastLog, prev uint64) {
		t.Helper()
		var resp raft.AppendEntriesResponse
		req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte(addrA)}, Term: 3, LeaderCommitIndex: lastLog, PrevLogEntry: prev}
		if err := w.AppendEntries("b", addrB, req, &resp); err != nil {
			t.Fatal(err)
		}
	}
	send(7, 0)
	if _, ok := p.progress("b"); ok {
		t.Fatal("recorded before the commit index is known")
	}
	p.setCommitIndex(func() uint64 { return 5 })
	send(7, 0)
	got, ok := p.progress("b")
	if !ok || got.LastLog != 7 || got.Commit != 5 || got.Addr != addrB || got.At.IsZero() {
		t.Fatalf("progress %+v, %v", got, ok)
	}
	send(9, 1) // refused: not recorded
	if got, _ := p.progress("b"); got.LastLog != 7 {
		t.Fatalf("a refused reply was recorded: %+v", got)
	}

	pipe, err := w.AppendEntriesPipeline("b", addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close()
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte(addrA)}, Term: 3, LeaderCommitIndex: 11}
	sent, err := pipe.AppendEntries(req, new(raft.AppendEntriesResponse))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-pipe.Consumer():
		if f != sent || f.Error() != nil || f.Response().LastLog != 11 {
			t.Fatalf("pipelined future %v: %v %+v", f, f.Error(), f.Response())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no pipelined reply")
	}
	if got, _ := p.progress("b"); got.LastLog != 11 {
		t.Fatalf("pipelined reply not recorded: %+v", got)
	}
}
