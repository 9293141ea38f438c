package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// recoveredSuffix is appended to a peers file once it has been applied.
const recoveredSuffix = ".recovered"

// nodeRecover replaces the Raft configuration in the node's stores with
// the one in cfg.Recover, before Raft starts (raft.RecoverCluster: the FSM
// replays the snapshot and the whole log, which is then compacted into a
// new snapshot carrying the new configuration). Entries that were in the
// log but never committed are kept: that is the price of leaving a lost
// quorum, and why the file should list the survivors with the newest logs.
//
// The file is renamed once applied, so a restart with the same flags does
// not rewrite a membership that has changed since.
func (n *Node) nodeRecover(rc *raft.Config, store *raftboltdb.BoltStore, snaps raft.SnapshotStore, trans raft.Transport, hasState bool) error {
	path := n.cfg.Recover
	peers, err := raft.ReadConfigJSON(path)
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(path + recoveredSuffix); serr == nil {
			n.log.Warn("the peers file was already applied; starting normally (drop --recover)", "file", path+recoveredSuffix)
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("cluster: %w: recover from %s: %w", ErrInvalidConfig, path, err)
	}
	self := false
	var list []string
	for _, s := range peers.Servers {
		list = append(list, fmt.Sprintf("%s=%s(%s)", s.ID, s.Address, s.Suffrage))
		if string(s.ID) != n.cfg.NodeID {
			continue
		}
		if string(s.Address) != n.raftAddr {
			// The others would dial an address this node does not serve.
			return fmt.Errorf("cluster: %w: %s lists %s at %s, but its Raft address is %s", ErrInvalidConfig, path, s.ID, s.Address, n.raftAddr)
		}
		self = true
	}
	if !self {
		return fmt.Errorf("cluster: %w: %s does not list this node (%s)", ErrInvalidConfig, path, n.cfg.NodeID)
	}
	if !hasState {
		return fmt.Errorf("cluster: %w: nothing to recover: no Raft state in %s", ErrInvalidConfig, n.cfg.DataDir)
	}
	if err := raft.RecoverCluster(rc, n.fsm, store, store, snaps, trans, peers); err != nil {
		return fmt.Errorf("cluster: recover from %s: %w", path, err)
	}
	if err := os.Rename(path, path+recoveredSuffix); err != nil {
		// Left in place, the file would be applied again at every start.
		return fmt.Errorf("cluster: recovered, but renaming %s failed (remove it or drop --recover before restarting): %w", path, err)
	}
	n.log.Warn("recovered the Raft configuration from a peers file", "file", path, "renamed_to", path+recoveredSuffix, "peers", strings.Join(list, ","))
	return nil
}
