package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// Catch-up criteria for promoting a non-voter (see DESIGN.md, Membership).
const (
	// nodeContactWindow, in heartbeat timeouts, is how recent the last
	// successful AppendEntries reply must be. The leader heartbeats every
	// tenth of a heartbeat timeout, so a healthy follower is well inside.
	nodeContactWindow = 2
	// nodeCatchUpSlack is how many entries a follower's log may trail the
	// leader's commit index and still count as caught up: a few round
	// trips of the commit pipeline, each entry a batch.
	nodeCatchUpSlack = 32
)

// caughtUp reports whether p, heard from the server at addr, shows a
// follower that answered recently and whose log reaches the leader's
// commit index (less the slack) of that moment.
func (n *Node) caughtUp(p peerProgress, ok bool, addr raft.ServerAddress, now time.Time) bool {
	if !ok || p.Addr != addr || p.At.IsZero() {
		return false
	}
	if now.Sub(p.At) > nodeContactWindow*n.cfg.HeartbeatTimeout {
		return false
	}
	return p.LastLog+nodeCatchUpSlack >= p.Commit
}

// nodePromoteLoop promotes non-voters to voters, on the ready leader only.
// A non-voter is promoted once it has been caught up continuously for
// StabilizationTime; one that never answers (a wrong or unreachable Raft
// address) stays a non-voter, where it cannot cost the quorum, until an
// operator removes it or joins it again with the right address.
func (n *Node) nodePromoteLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(max(n.cfg.HeartbeatTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	var term uint64
	healthy := map[raft.ServerID]time.Time{} // caught up without a break since
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-tick.C:
		}
		ok, _ := n.Leadership()
		if !ok || n.raft.CurrentTerm() != term {
			// A new leadership starts its own observation.
			clear(healthy)
			term = 0
			if ok {
				term = n.raft.CurrentTerm()
			}
			continue
		}
		cf := n.raft.GetConfiguration()
		if cf.Error() != nil {
			continue
		}
		now := time.Now()
		seen := map[raft.ServerID]bool{}
		for _, s := range cf.Configuration().Servers {
			if s.Suffrage != raft.Nonvoter {
				continue
			}
			seen[s.ID] = true
			p, known := n.progress.progress(s.ID)
			if !n.caughtUp(p, known, s.Address, now) {
				delete(healthy, s.ID)
				continue
			}
			since, was := healthy[s.ID]
			if !was {
				healthy[s.ID] = now
				continue
			}
			if now.Sub(since) < n.cfg.StabilizationTime {
				continue
			}
			n.nodePromote(s, cf.Index(), now.Sub(since))
			delete(healthy, s.ID)
			break // the configuration changed: read it again next tick
		}
		for id := range healthy {
			if !seen[id] {
				delete(healthy, id)
			}
		}
	}
}

// nodePromote makes s a voter, unless the configuration changed since
// index prev (then the next tick looks again).
func (n *Node) nodePromote(s raft.Server, prev uint64, stable time.Duration) {
	ctx, cancel := context.WithTimeout(n.baseCtx, MembershipTimeout)
	defer cancel()
	if err := nodeWaitFuture(ctx, n.raft.AddVoter(s.ID, s.Address, prev, 0)); err != nil {
		n.log.Warn("promoting a non-voter failed", "id", s.ID, "err", err)
		return
	}
	n.log.Info("promoted a caught-up non-voter to voter", "id", s.ID, "raft_addr", s.Address, "stable_for", stable.Round(time.Millisecond))
	n.nodeNotify()
}
