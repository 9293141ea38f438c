package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// peerProgress is what the leader last heard from one follower: the
// follower's last log index, from a successful AppendEntries reply, the
// leader's commit index when the reply came, and when it came.
type peerProgress struct {
	Addr    raft.ServerAddress
	LastLog uint64
	Commit  uint64
	At      time.Time
}

// progressTransport wraps the node's Raft transport to record each
// follower's progress. hashicorp/raft keeps followers' match indexes to
// itself, and the promotion of a non-voter needs them (see promote.go).
// Heartbeats are AppendEntries too, so an idle follower still reports.
// The wrapper is independent of the transport beneath it (TCP, or a TLS
// stream layer): it only sees the RPCs.
type progressTransport struct {
	raft.Transport

	mu sync.Mutex
	// commit reads the leader's commit index; nil until Raft exists, and
	// nothing is recorded before (a reply could not be judged).
	commit func() uint64
	peers  map[raft.ServerID]peerProgress
}

// newProgressTransport wraps inner. The returned raft.Transport is the
// one to give Raft: it implements WithPreVote and WithPeers exactly when
// inner does, since Raft type-asserts them (a wrapper claiming pre-vote
// over a transport without it would break elections), and always
// WithClose (a no-op when inner cannot close).
func newProgressTransport(inner raft.Transport) (*progressTransport, raft.Transport) {
	t := &progressTransport{Transport: inner, peers: map[raft.ServerID]peerProgress{}}
	pv, hasPreVote := inner.(raft.WithPreVote)
	wp, hasPeers := inner.(raft.WithPeers)
	switch {
	case hasPreVote && hasPeers:
		return t, &struct {
			*progressTransport
			raft.WithPreVote
			raft.WithPeers
		}{t, pv, wp}
	case hasPreVote:
		return t, &struct {
			*progressTransport
			raft.WithPreVote
		}{t, pv}
	case hasPeers:
		return t, &struct {
			*progressTransport
			raft.WithPeers
		}{t, wp}
	}
	return t, t
}

// setCommitIndex installs the reader of the leader's commit index.
func (t *progressTransport) setCommitIndex(f func() uint64) {
	t.mu.Lock()
	t.commit = f
	t.mu.Unlock()
}

// progress returns what was last heard from id.
func (t *progressTransport) progress(id raft.ServerID) (peerProgress, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.peers[id]
	return p, ok
}

// record notes a reply to an AppendEntries request. Only successful
// replies in the request's term count: a refusal (log mismatch, newer
// term) says nothing about a healthy follower.
func (t *progressTransport) record(id raft.ServerID, addr raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if resp == nil || !resp.Success || resp.Term != req.Term {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.commit == nil {
		return
	}
	t.peers[id] = peerProgress{Addr: addr, LastLog: resp.LastLog, Commit: t.commit(), At: time.Now()}
}

// AppendEntries sends the RPC and records a successful reply.
func (t *progressTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	err := t.Transport.AppendEntries(id, target, args, resp)
	if err == nil {
		t.record(id, target, args, resp)
	}
	return err
}

// AppendEntriesPipeline wraps the inner pipeline so that pipelined
// replies are recorded too.
func (t *progressTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	tp := &progressPipeline{AppendPipeline: p, t: t, id: id, addr: target, out: make(chan raft.AppendFuture), done: make(chan struct{})}
	go tp.relay()
	return tp, nil
}

// Close closes the inner transport when it can be closed.
func (t *progressTransport) Close() error {
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// progressPipeline relays the inner pipeline's completed futures to Raft,
// recording each successful reply on the way, in order.
type progressPipeline struct {
	raft.AppendPipeline
	t    *progressTransport
	id   raft.ServerID
	addr raft.ServerAddress
	out  chan raft.AppendFuture

	closeOnce sync.Once
	done      chan struct{}
}

func (p *progressPipeline) relay() {
	in := p.AppendPipeline.Consumer()
	for {
		select {
		case f := <-in:
			// Futures reach the consumer channel completed: Error does
			// not block.
			if f.Error() == nil {
				p.t.record(p.id, p.addr, f.Request(), f.Response())
			}
			select {
			case p.out <- f:
			case <-p.done:
				return
			}
		case <-p.done:
			return
		}
	}
}

// Consumer returns the relayed futures.
func (p *progressPipeline) Consumer() <-chan raft.AppendFuture { return p.out }

// Close stops the relay and closes the inner pipeline.
func (p *progressPipeline) Close() error {
	p.closeOnce.Do(func() { close(p.done) })
	return p.AppendPipeline.Close()
}
