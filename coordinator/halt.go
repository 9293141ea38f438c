package coordinator

import (
	"errors"
	"fmt"

	"github.com/croftfarm/croft/raftstore"
)

// watchHalt stops this coordinator's Raft node when its state machine
// halts: the log holds an entry of a type this release does not know and
// may not skip (see raftstore.FSM.HaltErr), written by a newer leader
// during a rolling upgrade. Applying on would diverge from the cluster,
// so the node stops voting and serving instead; the replica's state stops
// short of the log and is never snapshotted, so the upgraded binary,
// started on the same data directory, replays the entry. Serve's caller
// sees Halted and exits (croft coordinator: non-zero). NewServer starts
// it; it returns at Close.
func (s *Server) watchHalt() {
	defer s.wg.Done()
	fsm := s.node.FSM()
	select {
	case <-s.stop:
		return
	case <-fsm.Halted():
	}
	err := fsm.HaltErr()
	var he *raftstore.HaltError
	if errors.As(err, &he) {
		s.log.Error(fmt.Sprintf("this coordinator cannot apply entry %d of type %d written by a newer release: upgrade it; stopping", he.Index, he.Type),
			"entry", he.Index, "type", int(he.Type), "in_batch", he.InBatch, "node", s.node.ID())
	} else {
		s.log.Error("the state machine halted: stopping", "node", s.node.ID(), "err", err)
	}
	if err := s.node.Shutdown(); err != nil {
		s.log.Error("stopping raft after the halt", "err", err)
	}
}

// Halted is closed when the coordinator's state machine has halted (see
// watchHalt); HaltErr says why. The Raft node is stopped by then or soon
// after; Close waits for it.
func (s *Server) Halted() <-chan struct{} { return s.node.FSM().Halted() }

// HaltErr returns why the state machine halted (a *raftstore.HaltError),
// nil while it runs.
func (s *Server) HaltErr() error { return s.node.FSM().HaltErr() }
