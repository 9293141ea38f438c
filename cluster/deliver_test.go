package cluster

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// errFuture is an apply future that failed with err.
type errFuture struct{ err error }

func (f errFuture) Error() error  { return f.err }
func (f errFuture) Index() uint64 { return 0 }
func (f errFuture) Response() any { return nil }

// TestDeliverSaysWhetherAFailedEntryMayHaveApplied: an entry raft never
// appended (not the leader, the queue full, a leadership transfer under
// way) is ErrNotLeader alone, which the client retries; one appended and
// then lost is ErrOutcomeUnknown, which it must not retry blindly.
func TestDeliverSaysWhetherAFailedEntryMayHaveApplied(t *testing.T) {
	for _, c := range []struct {
		err     error
		unknown bool
	}{
		{raft.ErrNotLeader, false},
		{raft.ErrEnqueueTimeout, false},
		{raft.ErrLeadershipTransferInProgress, false},
		{raft.ErrLeadershipLost, true},
		{raft.ErrRaftShutdown, true},
	} {
		req := &nodeApplyReq{ctx: context.Background(), data: []byte{1}, done: make(chan nodeApplyResult, 1)}
		nodeDeliver([]*nodeApplyReq{req}, errFuture{c.err})
		got := (<-req.done).err
		if !errors.Is(got, ErrNotLeader) || errors.Is(got, ErrOutcomeUnknown) != c.unknown {
			t.Errorf("%v: delivered %v, outcome unknown should be %v", c.err, got, c.unknown)
		}
	}
}
