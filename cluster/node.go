// Package cluster is one coordinator's Raft member: the node, raft.db and
// its disk-health accounting, snapshots, the transport (TCP or mutual
// TLS), group commit, membership, recovery and compaction. It makes no
// HTTP call and serves no route: joining is a Joiner the coordinator
// injects, and its sentinel errors are translated to HTTP statuses at the
// coordinator's edge. See DESIGN.md.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/croftfarm/croft/raftstore"
)

// Sentinel errors of the Raft layer. The HTTP edge (package coordinator)
// translates them to the API's: ErrNotLeader and ErrNoLeader to 503, which
// the Go client retries, ErrOutcomeUnknown to 504 and ErrStorage to 507.
var (
	// ErrNotLeader means this node is not the Raft leader, or lost the
	// leadership before a command was committed (its outcome is unknown).
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader means no leader was known within the wait bound.
	ErrNoLeader = errors.New("no leader")
	// ErrOutcomeUnknown means a command reached the Raft log but the leader
	// lost its leadership (or the caller gave up) before it committed: it
	// may still be applied by the next leader. Retrying a non-idempotent
	// command after it could apply it twice.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrInvalidConfig means NewNode was given a Config it refuses (missing
	// fields, exclusive options, a recovery file that does not fit).
	ErrInvalidConfig = errors.New("invalid coordinator configuration")
	// ErrStorage means this node could not write its Raft state (raft.db
	// or a snapshot), usually because its disk is full; the error wraps
	// the cause (errors.Is(err, syscall.ENOSPC)). A command whose entry
	// the leader could not store was not applied. The HTTP edge answers
	// 507.
	ErrStorage = errors.New("storage failure")
	// ErrSnapshotRefused means Raft did not take the snapshot asked for
	// (nothing new since the last one, or one is being taken).
	ErrSnapshotRefused = errors.New("snapshot not taken")
)

// Production Raft timing, used when the Config leaves a value at zero.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
	DefaultSnapshotThreshold  = 8192
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultTrailingLogs       = 10240
	// DefaultStabilizationTime is how long a joined non-voter must stay
	// caught up before the leader promotes it to voter.
	DefaultStabilizationTime = 2 * time.Second
	// DefaultSnapshotBytes: a snapshot is taken once the entries stored
	// since the last one weigh this much, whatever their number.
	DefaultSnapshotBytes = 256 << 20
	// DefaultTrailingBytes bounds the entries kept behind a snapshot.
	DefaultTrailingBytes = 64 << 20
)

// Group commit limits: one Raft entry carries at most this many commands or
// about this many bytes, so a burst never makes an entry too big to
// replicate (or to fsync) quickly.
const (
	nodeMaxBatchCommands = 512
	nodeMaxBatchBytes    = 1 << 20
	// nodeApplyPipeline is how many entries the committer keeps in flight.
	// Commands arriving while the pipeline is full wait and are batched.
	nodeApplyPipeline = 2
)

// Config configures a Node.
type Config struct {
	// NodeID is this coordinator's Raft server id; it never changes.
	NodeID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// RaftAddr is the bind and advertise address of the Raft TCP transport.
	// It must be a concrete host:port (not 0.0.0.0); port 0 picks a free
	// port, see Node.RaftAddr.
	RaftAddr string
	// HTTPAddr is this node's HTTP API address (host:port), as other
	// coordinators must dial it; it is recorded in the FSM as NodeMeta.
	HTTPAddr string
	// Bootstrap starts a new single-voter cluster with this node if it has
	// no Raft state yet. It excludes Join.
	Bootstrap bool
	// Join, when set, is how a node without Raft state asks an existing
	// member to add it (the coordinator posts to another one's
	// /cluster/join); it is asked again until it succeeds. The node joins
	// as a non-voter; the leader promotes it once it has caught up.
	Join Joiner
	// Recover is the path of a peers file (raft's peers.json format:
	// [{"id":..,"address":..,"non_voter":false}, ...]) that replaces the
	// Raft configuration before Raft starts: the way out of a lost quorum
	// (docs/OPERATIONS.md). It needs existing Raft state, must list this
	// node at its RaftAddr, and excludes Bootstrap and Join. After a
	// successful recovery the file is renamed to Recover+".recovered", so a
	// restart with the same flags starts normally (with a warning).
	Recover string

	// RaftTLS, when set, runs Raft over mutual TLS: this node presents its
	// certificate (Certificates) and verifies its peers' against the CA,
	// which must be set as both RootCAs and ClientCAs (tlsconfig.Mutual
	// builds it). Raft addresses are advertised as IP:port, so each
	// coordinator's certificate needs an IP SAN for its Raft IP. A node
	// joining is added only once it proved such a certificate. nil: plain
	// TCP, unauthenticated (a warning is logged unless RaftAddr is loopback).
	RaftTLS *tls.Config

	// Raft timing; zero means the Default* production values.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64

	// SnapshotBytes compacts the log by size as well as by count: once the
	// entries stored since the last snapshot weigh this many bytes, the
	// node takes a snapshot (zero means DefaultSnapshotBytes, negative
	// turns it off). One entry can be a megabyte of job output or a bulk
	// create of tens of megabytes, so a count alone bounds nothing.
	SnapshotBytes int64
	// TrailingBytes bounds the entries kept behind a snapshot: Raft keeps
	// the newest entries that fit in it (at least 8, at most
	// TrailingLogs). Zero means DefaultTrailingBytes; negative keeps
	// TrailingLogs entries whatever their size.
	TrailingBytes int64

	// StabilizationTime is how long a non-voter must stay caught up with
	// the leader before it is promoted to voter; zero means
	// DefaultStabilizationTime.
	StabilizationTime time.Duration

	// MaxBatch caps the commands group-committed in one Raft entry (default
	// 512). 1 turns group commit off; `croft bench` uses it for comparison.
	MaxBatch int
	// Logger receives the node's logs and raft's warnings; nil = slog.Default.
	Logger *slog.Logger

	// DiskPoll is how often the data directory's free space is read;
	// zero means every 5 s.
	DiskPoll time.Duration
	// OnCommit, when set, is told how long each entry this node proposed
	// as leader took from proposal to commit and apply (metrics), and how
	// many commands it carried. It must not block.
	OnCommit func(took time.Duration, commands int)
	// Observer, when set, is installed on the FSM before Raft starts, so
	// it hears the log's replay too (see raftstore.Observer).
	Observer raftstore.Observer

	// WrapStore, when set, wraps raft.db's log and stable store beneath
	// the node's own accounting: tests inject faults (a full disk) there.
	WrapStore func(Store) Store
}

// Joiner asks a member of an existing cluster to add this node. The
// coordinator implements it with its HTTP client (POST /cluster/join), so
// this package makes no HTTP call.
type Joiner interface {
	Join(ctx context.Context, req JoinRequest) error
}

// JoinFunc adapts a function to Joiner.
type JoinFunc func(ctx context.Context, req JoinRequest) error

// Join calls f.
func (f JoinFunc) Join(ctx context.Context, req JoinRequest) error { return f(ctx, req) }

// JoinRequest asks the leader to add a coordinator: its Raft server id, the
// address its Raft transport advertises and its HTTP API's address.
type JoinRequest struct {
	NodeID   string
	RaftAddr string
	HTTPAddr string
}

// Node is one coordinator's Raft member: it owns the log store, the
// snapshots, the transport, the group-commit pipeline and the leadership
// readiness state.
type Node struct {
	cfg      Config
	log      *slog.Logger
	fsm      *raftstore.FSM
	raft     *raft.Raft
	store    *raftboltdb.BoltStore
	raftAddr string
	// progress records followers' replies to the leader's AppendEntries:
	// the catch-up measure behind promotions and the status.
	progress *progressTransport
	raftTLS  *raftTLSLayer // nil without Config.RaftTLS

	applyCh  chan *nodeApplyReq
	observer *raft.Observer

	// baseCtx ends at Shutdown; background work (join, NodeMeta) uses it.
	baseCtx    context.Context
	baseCancel context.CancelFunc
	shutdownCh chan struct{}
	stopOnce   sync.Once
	stopErr    error
	wg         sync.WaitGroup

	mu sync.Mutex
	// readyTerm is the term in which this node became leader and finished
	// its barrier; 0 when not ready. A term has at most one leader, so
	// "leader now and CurrentTerm == readyTerm" means "ready leader".
	readyTerm  uint64
	readySince time.Time
	// changed is closed (and replaced) when the leader or readiness changes,
	// to wake requests waiting in Forward or WaitLeader.
	changed chan struct{}

	// health records failed writes of the Raft state; sizes tracks the
	// log's bytes (compaction by size); space is the data directory's
	// last free-space reading (disk.go).
	health *diskHealth
	sizes  *logSizes
	space  atomic.Pointer[diskSpace]

	// leaderChanges counts the leader changes this node observed.
	leaderChanges atomic.Uint64
	// unconfigured: started without Raft state, without Bootstrap and
	// without Join; it waits for a leader to add it (see Unconfigured).
	unconfigured bool
}

// NewNode opens (or creates) the node's Raft state in cfg.DataDir and starts
// Raft. A node without state bootstraps a cluster if cfg.Bootstrap is set, or
// starts asking cfg.Join to add it; a node with state just rejoins its
// cluster from its log and snapshots.
func NewNode(cfg Config, fsm *raftstore.FSM) (*Node, error) {
	if cfg.NodeID == "" || cfg.DataDir == "" || cfg.RaftAddr == "" {
		return nil, fmt.Errorf("cluster: %w: NodeID, DataDir and RaftAddr are required", ErrInvalidConfig)
	}
	if cfg.Bootstrap && cfg.Join != nil {
		// Every node of a templated deployment bootstrapping its own
		// cluster would be a split brain: refuse the ambiguity.
		return nil, fmt.Errorf("cluster: %w: Bootstrap and Join are exclusive", ErrInvalidConfig)
	}
	if cfg.Recover != "" && (cfg.Bootstrap || cfg.Join != nil) {
		// Recovery rewrites an existing cluster's membership; starting or
		// joining one at the same time is a mistake either way.
		return nil, fmt.Errorf("cluster: %w: Recover excludes Bootstrap and Join", ErrInvalidConfig)
	}
	if fsm == nil {
		var err error
		if fsm, err = raftstore.NewFSM(filepath.Join(cfg.DataDir, "joblog")); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	if cfg.Observer != nil {
		fsm.SetObserver(cfg.Observer)
	}
	nodeDefaults(&cfg)
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("cluster: data dir: %w", err)
	}
	n := &Node{
		cfg:        cfg,
		log:        cfg.Logger.With("node", cfg.NodeID),
		fsm:        fsm,
		applyCh:    make(chan *nodeApplyReq, 4*nodeMaxBatchCommands),
		shutdownCh: make(chan struct{}),
		changed:    make(chan struct{}),
	}
	n.baseCtx, n.baseCancel = context.WithCancel(context.Background())
	hlog := hclog.New(&hclog.LoggerOptions{
		Name:        "raft",
		Level:       hclog.Warn,
		Output:      nodeHclogWriter{log: n.log},
		DisableTime: true,
	})

	// Never NoSync: an acknowledged write must be on a quorum's disks.
	store, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.DataDir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: 5 * time.Second}, // another process holding the file fails, not hangs
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: open raft.db: %w", err)
	}
	n.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, hlog)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	n.health = &diskHealth{log: n.log}
	n.sizes = newLogSizes(cfg.SnapshotBytes)
	var raw Store = store
	if cfg.WrapStore != nil {
		raw = cfg.WrapStore(raw)
	}
	disk := &diskStore{Store: raw, id: cfg.NodeID, health: n.health, sizes: n.sizes, shutdown: n.shutdownCh}
	sstore := &snapStore{SnapshotStore: snaps, node: n}
	n.nodePollDisk()
	inner, raftTLS, err := nodeRaftTransport(cfg, hlog, n.log)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("cluster: raft transport: %w", err)
	}
	// Whatever transport is built above, Raft talks through the progress
	// wrapper, which measures how far each follower has caught up.
	progress, trans := newProgressTransport(inner)
	n.progress = progress
	n.raftAddr, n.raftTLS = string(trans.LocalAddr()), raftTLS

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.Logger = hlog
	if err := raft.ValidateConfig(rc); err != nil {
		progress.Close()
		store.Close()
		return nil, fmt.Errorf("cluster: raft config: %w", err)
	}

	hasState, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		progress.Close()
		store.Close()
		return nil, fmt.Errorf("cluster: read raft state: %w", err)
	}
	if cfg.Recover != "" {
		if err := n.nodeRecover(rc, store, snaps, trans, hasState); err != nil {
			progress.Close()
			store.Close()
			return nil, err
		}
	}
	// The log's sizes, for compaction by size, from what recovery left.
	var snapIndex uint64
	if metas, err := snaps.List(); err == nil && len(metas) > 0 {
		snapIndex = metas[0].Index
	}
	if err := n.sizes.scan(store, snapIndex); err != nil {
		progress.Close()
		store.Close()
		return nil, fmt.Errorf("cluster: read raft log: %w", err)
	}
	r, err := raft.NewRaft(rc, fsm, newLogCache(disk, nodeLogCacheBytes), disk, sstore, trans)
	if err != nil {
		progress.Close()
		store.Close()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	sstore.raft.Store(r)
	progress.setCommitIndex(r.CommitIndex)

	if !hasState && cfg.Bootstrap {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(n.raftAddr),
		}}})
		if err := f.Error(); err != nil {
			n.Shutdown()
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
		n.log.Info("bootstrapped a new cluster", "raft_addr", n.raftAddr)
	}

	obsCh := make(chan raft.Observation, 64)
	n.observer = raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.PeerObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(n.observer)

	n.wg.Add(6)
	go n.nodeCommitLoop()
	go n.nodeLeaderLoop()
	go n.nodeObserveLoop(obsCh)
	go n.nodePromoteLoop()
	go n.nodeCompactLoop()
	go n.nodeDiskLoop()
	if !hasState && cfg.Join != nil {
		n.wg.Add(1)
		go n.nodeJoinLoop(cfg.Join)
	}
	if !hasState && !cfg.Bootstrap && cfg.Join == nil && cfg.Recover == "" {
		// Without this it would start quietly and answer every request
		// "no leader" (issue 12).
		n.unconfigured = true
		n.log.Warn(UnconfiguredHint, "data_dir", cfg.DataDir)
	}
	n.log.Info("raft started", "raft_addr", n.raftAddr, "http_addr", cfg.HTTPAddr, "existing_state", hasState)
	return n, nil
}

func nodeDefaults(cfg *Config) {
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
	setDur(&cfg.ElectionTimeout, DefaultElectionTimeout)
	setDur(&cfg.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	setDur(&cfg.CommitTimeout, DefaultCommitTimeout)
	setDur(&cfg.SnapshotInterval, DefaultSnapshotInterval)
	setDur(&cfg.StabilizationTime, DefaultStabilizationTime)
	setDur(&cfg.DiskPoll, nodeDefaultDiskPoll)
	if cfg.SnapshotBytes == 0 {
		cfg.SnapshotBytes = DefaultSnapshotBytes
	}
	if cfg.TrailingBytes == 0 {
		cfg.TrailingBytes = DefaultTrailingBytes
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = DefaultTrailingLogs
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
}

// FSM returns the node's state machine.
func (n *Node) FSM() *raftstore.FSM { return n.fsm }

// Raft returns the underlying Raft instance, for tests and diagnostics.
func (n *Node) Raft() *raft.Raft { return n.raft }

// ID returns the node's Raft server id.
func (n *Node) ID() string { return n.cfg.NodeID }

// RaftAddr returns the address the Raft transport listens on and advertises
// (the real port when Config.RaftAddr asked for port 0).
func (n *Node) RaftAddr() string { return n.raftAddr }

// IsLeader reports whether this node is the leader and ready to serve: its
// FSM has applied every entry committed before its election.
func (n *Node) IsLeader() bool {
	ok, _ := n.Leadership()
	return ok
}

// Leadership reports whether this node is the ready leader and since when
// (the moment its post-election barrier completed).
func (n *Node) Leadership() (leader bool, since time.Time) {
	n.mu.Lock()
	term, at := n.readyTerm, n.readySince
	n.mu.Unlock()
	if term == 0 || n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
		return false, time.Time{}
	}
	return true, at
}

// MembershipTimeout bounds a join, a remove or a promotion: a
// configuration change commits within a few heartbeats unless the cluster
// is losing its leader.
const MembershipTimeout = 30 * time.Second

// RaftLeader reports whether Raft made this node the leader, ready to serve
// or not (its barrier may still run).
func (n *Node) RaftLeader() bool { return n.raft.State() == raft.Leader }

// LeaderHTTP returns the HTTP address of another node that leads, or why
// there is none to forward to.
func (n *Node) LeaderHTTP() (addr, why string) {
	_, id := n.raft.LeaderWithID()
	switch {
	case id == "":
		return "", "no leader known"
	case string(id) == n.cfg.NodeID:
		return "", "this node leads but has not caught up yet"
	}
	m, ok := n.fsm.State().Node(string(id))
	if !ok || m.HTTPAddr == "" {
		return "", fmt.Sprintf("leader %s has no known HTTP address", id)
	}
	return m.HTTPAddr, ""
}

// Changed returns a channel closed at the next leader or readiness change
// (not every change is seen: poll as well). Take it before checking the
// condition, so no wake-up is missed.
func (n *Node) Changed() <-chan struct{} { return n.nodeChanged() }

// Done is closed when the node starts shutting down.
func (n *Node) Done() <-chan struct{} { return n.shutdownCh }

// StorageErr returns this node's current failure to write its Raft log or
// stable store (wrapping ErrStorage and the cause), or nil: while it is
// set, a leader steps down at every election, and the disk is why there is
// no leader.
func (n *Node) StorageErr() error { return n.nodeStorageErr() }

// SnapshotInfo describes a snapshot taken on demand.
type SnapshotInfo struct {
	Index uint64
	Bytes int64
	Took  time.Duration
}

// Snapshot takes a Raft snapshot of this node now (log compaction on
// demand). A snapshot Raft declines (nothing new, one in progress) is
// ErrSnapshotRefused.
func (n *Node) Snapshot() (SnapshotInfo, error) {
	t0 := time.Now()
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		return SnapshotInfo{}, fmt.Errorf("%w: %w", ErrSnapshotRefused, err)
	}
	took := time.Since(t0)
	meta, rc, err := f.Open()
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot: %w", err)
	}
	rc.Close()
	return SnapshotInfo{Index: meta.Index, Bytes: meta.Size, Took: took}, nil
}

// LogStore returns raft.db's log, for tests and diagnostics: reading it is
// safe, writing it is Raft's business.
func (n *Node) LogStore() raft.LogStore { return n.store }

// nodeChanged returns a channel closed at the next leader or readiness
// change. Take it before checking the condition, so no wake-up is missed.
func (n *Node) nodeChanged() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

func (n *Node) nodeNotify() {
	n.mu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
}

func (n *Node) nodeSetReady(term uint64) {
	n.mu.Lock()
	n.readyTerm = term
	if term != 0 {
		n.readySince = time.Now()
	}
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
}

// nodeReadyIn reports whether this node is still the ready leader of term.
func (n *Node) nodeReadyIn(term uint64) bool {
	ok, _ := n.Leadership()
	return ok && n.raft.CurrentTerm() == term
}

// nodeLeaderLoop turns Raft leadership into serving readiness. LeaderCh
// keeps only the latest value, so a lost-and-regained leadership shows as
// one "true": the barrier is then run for the current term, which is right.
func (n *Node) nodeLeaderLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.shutdownCh:
			return
		case leader := <-n.raft.LeaderCh():
			n.nodeSetReady(0)
			if leader {
				n.nodeBecomeReady()
			} else {
				n.log.Info("lost leadership")
			}
		}
	}
}

// nodeBecomeReady waits until the FSM has applied everything committed
// before this term (a barrier), marks the node ready, then makes sure the
// FSM holds this node's current HTTP address so followers can forward.
func (n *Node) nodeBecomeReady() {
	// Read the term before the barrier: if leadership is lost and regained
	// meanwhile, the recorded term is stale and readiness stays off until
	// the next LeaderCh value runs a barrier for the new term.
	term := n.raft.CurrentTerm()
	for {
		start := time.Now()
		err := n.raft.Barrier(0).Error()
		if err == nil {
			err = n.nodeEnsureRelease()
		}
		if err == nil {
			n.nodeSetReady(term)
			n.log.Info("leader ready", "term", term, "barrier", time.Since(start).Round(time.Millisecond))
			break
		}
		if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
			return
		}
		n.log.Warn("leader barrier failed, retrying", "err", err)
		select {
		case <-n.shutdownCh:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	n.nodeEnsureMeta(term)
}

// nodeEnsureRelease switches the state to this release's apply rules
// (raftstore.SetRelease) before the leader takes any request, so every
// entry it proposes applies by them on every replica.
func (n *Node) nodeEnsureRelease() error {
	if n.fsm.State().Release() >= raftstore.Release {
		return nil
	}
	buf, err := raftstore.Encode(&raftstore.SetRelease{Release: raftstore.Release})
	if err != nil {
		return err
	}
	f := n.raft.Apply(buf, 10*time.Second)
	if err := f.Error(); err != nil {
		return err
	}
	if err, ok := f.Response().(error); ok {
		return err
	}
	n.log.Info("apply rules switched to this release", "release", raftstore.Release)
	return nil
}

func (n *Node) nodeEnsureMeta(term uint64) {
	want := raftstore.NodeMeta{ID: n.cfg.NodeID, RaftAddr: n.raftAddr, HTTPAddr: n.cfg.HTTPAddr}
	backoff := 50 * time.Millisecond
	for {
		if have, ok := n.fsm.State().Node(want.ID); ok && have == want {
			return
		}
		if !n.nodeReadyIn(term) {
			return
		}
		ctx, cancel := context.WithTimeout(n.baseCtx, 10*time.Second)
		_, err := n.Apply(ctx, want)
		cancel()
		if err == nil {
			n.nodeNotify()
			return
		}
		n.log.Warn("recording own node metadata failed, retrying", "err", err)
		select {
		case <-n.shutdownCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// nodeObserveLoop wakes waiters on leader and peer changes.
func (n *Node) nodeObserveLoop(ch <-chan raft.Observation) {
	defer n.wg.Done()
	for {
		select {
		case <-n.shutdownCh:
			return
		case o := <-ch:
			if lo, ok := o.Data.(raft.LeaderObservation); ok {
				if lo.LeaderID != "" {
					n.leaderChanges.Add(1)
				}
				n.log.Info("leader changed", "leader_id", lo.LeaderID, "leader_addr", lo.LeaderAddr)
			}
			n.nodeNotify()
		}
	}
}

// WaitLeader waits until some leader (maybe this node) is known.
func (n *Node) WaitLeader(ctx context.Context) error {
	for {
		ch := n.nodeChanged()
		if _, id := n.raft.LeaderWithID(); id != "" {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond) // LeaderWithID changes are not all observed
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", ErrNoLeader, ctx.Err())
		}
		t.Stop()
	}
}

// ---------------------------------------------------------------------------
// Apply and group commit

type nodeApplyReq struct {
	ctx context.Context
	// data is one encoded command, or, for ApplyGroup, several that go
	// into one entry together (group, data nil).
	data  []byte
	group [][]byte
	done  chan nodeApplyResult // buffered: the committer never blocks on it
}

// entries is how many commands the request puts in the entry.
func (r *nodeApplyReq) entries() int {
	if r.group != nil {
		return len(r.group)
	}
	return 1
}

func (r *nodeApplyReq) size() int {
	n := len(r.data)
	for _, g := range r.group {
		n += len(g)
	}
	return n
}

type nodeApplyResult struct {
	resp any // for a group: []any, one result (or error value) per command
	err  error
}

// Apply proposes cmd and returns its result once it is committed and
// applied on this node. Only the Raft leader accepts commands (ErrNotLeader
// otherwise). A command refused by the FSM returns the FSM's error (test it
// with errors.Is against the raftstore sentinels). A command the leader
// could not store (a full disk) fails with ErrStorage and was not applied;
// so does one refused as not leader while this node's writes fail. When
// ctx ends first, the error wraps ctx.Err() and the command may or may not
// be applied.
//
// Concurrent calls are grouped: while entries are in flight, waiting
// commands are packed into one Batch entry (group commit).
func (n *Node) Apply(ctx context.Context, cmd raftstore.Command) (any, error) {
	data, err := raftstore.Encode(cmd)
	if err != nil {
		return nil, err
	}
	return n.nodePropose(ctx, &nodeApplyReq{ctx: ctx, data: data, done: make(chan nodeApplyResult, 1)})
}

// ApplyGroup proposes cmds in one entry, in order, so that each applies
// right after the one before it: all are committed, or none. It returns
// one result per command: its response, or the error value the FSM refused
// it with. The error is for the group as a whole, as Apply's.
func (n *Node) ApplyGroup(ctx context.Context, cmds ...raftstore.Command) ([]any, error) {
	group := make([][]byte, len(cmds))
	for i, cmd := range cmds {
		data, err := raftstore.Encode(cmd)
		if err != nil {
			return nil, err
		}
		group[i] = data
	}
	res, err := n.nodePropose(ctx, &nodeApplyReq{ctx: ctx, group: group, done: make(chan nodeApplyResult, 1)})
	if err != nil {
		return nil, err
	}
	out, _ := res.([]any)
	return out, nil
}

func (n *Node) nodePropose(ctx context.Context, req *nodeApplyReq) (any, error) {
	res, err := n.nodeProposeRaw(ctx, req)
	return res, n.nodeStorageCause(err)
}

func (n *Node) nodeProposeRaw(ctx context.Context, req *nodeApplyReq) (any, error) {
	if n.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	select {
	case n.applyCh <- req:
	case <-ctx.Done():
		return nil, ctx.Err() // never queued: nothing applied
	case <-n.shutdownCh:
		return nil, fmt.Errorf("%w: node shut down", ErrNotLeader)
	}
	select {
	case r := <-req.done:
		return r.resp, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())
	case <-n.shutdownCh:
		return nil, fmt.Errorf("%w: %w: node shut down", ErrOutcomeUnknown, ErrNotLeader)
	}
}

// maxBatch is the configured group commit cap.
func (n *Node) maxBatch() int {
	if n.cfg.MaxBatch > 0 {
		return min(n.cfg.MaxBatch, nodeMaxBatchCommands)
	}
	return nodeMaxBatchCommands
}

// nodeCommitLoop is the single goroutine that turns queued commands into
// Raft entries. It takes one request, waits for a pipeline slot (meanwhile
// more requests queue up), then drains whatever is queued into one entry.
// A lone command goes as a plain entry, several as a Batch. A group
// (ApplyGroup) always goes whole into one entry.
func (n *Node) nodeCommitLoop() {
	defer n.wg.Done()
	slots := make(chan struct{}, nodeApplyPipeline)
	var carry *nodeApplyReq // did not fit in the previous entry
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-n.applyCh:
			case <-n.shutdownCh:
				return
			}
		}
		select {
		case slots <- struct{}{}:
		case <-n.shutdownCh:
			first.done <- nodeApplyResult{err: fmt.Errorf("%w: node shut down", ErrNotLeader)}
			return
		}
		batch := []*nodeApplyReq{first}
		count, size := first.entries(), first.size()
	drain:
		for count < n.maxBatch() {
			select {
			case r := <-n.applyCh:
				if size+r.size() > nodeMaxBatchBytes || count+r.entries() > n.maxBatch() {
					carry = r
					break drain
				}
				batch = append(batch, r)
				count, size = count+r.entries(), size+r.size()
			default:
				break drain
			}
		}
		// Callers that gave up are dropped, so their commands never apply.
		live := batch[:0]
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				r.done <- nodeApplyResult{err: err}
				continue
			}
			live = append(live, r)
		}
		if len(live) == 0 {
			<-slots
			continue
		}
		data := live[0].data
		if len(live) > 1 || live[0].group != nil {
			var entries [][]byte
			for _, r := range live {
				if r.group != nil {
					entries = append(entries, r.group...)
				} else {
					entries = append(entries, r.data)
				}
			}
			var err error
			if data, err = raftstore.EncodeBatch(entries); err != nil {
				nodeDeliverErr(live, err)
				<-slots
				continue
			}
		}
		f := n.raft.Apply(data, 5*time.Second)
		proposed := time.Now()
		n.wg.Add(1)
		go func(reqs []*nodeApplyReq, commands int) {
			defer n.wg.Done()
			defer func() { <-slots }()
			if f.Error() == nil && n.cfg.OnCommit != nil {
				n.cfg.OnCommit(time.Since(proposed), commands)
			}
			nodeDeliver(reqs, f)
		}(live, count)
	}
}

// nodeDeliver waits for an entry and hands each caller its own result.
func nodeDeliver(reqs []*nodeApplyReq, f raft.ApplyFuture) {
	if err := f.Error(); err != nil {
		if errors.Is(err, ErrStorage) {
			// The leader could not store the entry (then stepped down):
			// it was sent to nobody, so it is not applied.
			nodeDeliverErr(reqs, err)
			return
		}
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrEnqueueTimeout) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			// Never appended to the log (a leader handing over refuses
			// new entries): not applied, safe to retry.
			nodeDeliverErr(reqs, fmt.Errorf("%w: %w", ErrNotLeader, err))
			return
		}
		// Appended, then leadership was lost (or raft shut down): the
		// next leader may still commit it.
		nodeDeliverErr(reqs, fmt.Errorf("%w: %w: %w", ErrOutcomeUnknown, ErrNotLeader, err))
		return
	}
	resp := f.Response()
	if len(reqs) == 1 && reqs[0].group == nil {
		reqs[0].done <- nodeResult(resp)
		return
	}
	total := 0
	for _, r := range reqs {
		total += r.entries()
	}
	out, ok := resp.([]any)
	if !ok || len(out) != total {
		err, isErr := resp.(error)
		if !isErr {
			err = fmt.Errorf("cluster: batch of %d got response %T", total, resp)
		}
		nodeDeliverErr(reqs, err)
		return
	}
	for _, r := range reqs {
		if r.group != nil {
			r.done <- nodeApplyResult{resp: out[:len(r.group):len(r.group)]}
		} else {
			r.done <- nodeResult(out[0])
		}
		out = out[r.entries():]
	}
}

func nodeDeliverErr(reqs []*nodeApplyReq, err error) {
	for _, r := range reqs {
		r.done <- nodeApplyResult{err: err}
	}
}

// nodeResult splits an FSM response: an error value is a refused command.
func nodeResult(v any) nodeApplyResult {
	if err, ok := v.(error); ok {
		return nodeApplyResult{err: err}
	}
	return nodeApplyResult{resp: v}
}

// nodeWaitFuture waits for a Raft future within ctx. Raft errors (lost
// leadership, shutdown) wrap ErrNotLeader.
func nodeWaitFuture(ctx context.Context, f raft.Future) error {
	ch := make(chan error, 1)
	go func() { ch <- f.Error() }() // raft resolves every future by shutdown
	select {
	case err := <-ch:
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("outcome unknown: %w", ctx.Err())
	}
}

// ---------------------------------------------------------------------------
// Membership

// Join adds a coordinator as a non-voter and records its addresses; the
// leader's promotion loop makes it a voter once it has caught up (see
// nodePromoteLoop), so a wrong or unreachable address can never cost the
// quorum. It runs on the ready leader only (ErrNotLeader otherwise).
//
// Joining again with the same addresses is a no-op (a voter stays a
// voter). A known id with a new Raft address is moved: a voter is demoted
// first and moved as a non-voter, to be promoted again once caught up
// there. The leader's own address cannot be moved, and a Raft address used
// by another id is refused (remove that one first).
func (n *Node) Join(ctx context.Context, req JoinRequest) error {
	if req.NodeID == "" || req.RaftAddr == "" || req.HTTPAddr == "" {
		return fmt.Errorf("%w: node_id, raft_addr and http_addr are required", raftstore.ErrInvalid)
	}
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	id, addr := raft.ServerID(req.NodeID), raft.ServerAddress(req.RaftAddr)
	var known *raft.Server
	for _, s := range cf.Configuration().Servers {
		switch {
		case s.ID == id:
			known = &s
		case s.Address == addr:
			return fmt.Errorf("%w: raft address %s belongs to node %s: remove it first", raftstore.ErrInvalid, req.RaftAddr, s.ID)
		}
	}
	if n.raftTLS != nil && (known == nil || known.Address != addr) {
		// A member that cannot be reached over verified TLS would never
		// catch up: refuse it before it is added.
		if err := n.raftTLS.verifyPeer(ctx, req.RaftAddr); err != nil {
			n.log.Warn("refused a join: raft address not verified", "id", req.NodeID, "raft_addr", req.RaftAddr, "err", err)
			return fmt.Errorf("%w: %w: node %s at %s: %w", raftstore.ErrInvalid, ErrPeerUnverified, req.NodeID, req.RaftAddr, err)
		}
	}
	// Each change is conditional on the configuration read above, so two
	// concurrent joins cannot both take one address.
	prev := cf.Index()
	switch {
	case known != nil && known.Address == addr:
		// Already there; a non-voter is the promotion loop's business.
	case known != nil && string(known.ID) == n.cfg.NodeID:
		return fmt.Errorf("%w: node %s is the leader, at raft address %s", raftstore.ErrInvalid, req.NodeID, known.Address)
	case known != nil && known.Suffrage == raft.Voter:
		// A voter at an address nobody answers on would count against
		// the quorum: move it as a non-voter.
		if err := nodeWaitFuture(ctx, n.raft.DemoteVoter(id, prev, 0)); err != nil {
			return fmt.Errorf("demote %s to move it: %w", req.NodeID, err)
		}
		if err := nodeWaitFuture(ctx, n.raft.AddNonvoter(id, addr, 0, 0)); err != nil {
			return fmt.Errorf("move non-voter %s: %w", req.NodeID, err)
		}
		n.log.Info("moved a voter as a non-voter", "id", req.NodeID, "from", known.Address, "raft_addr", req.RaftAddr, "http_addr", req.HTTPAddr)
	default:
		if err := nodeWaitFuture(ctx, n.raft.AddNonvoter(id, addr, prev, 0)); err != nil {
			return fmt.Errorf("add non-voter %s: %w", req.NodeID, err)
		}
		n.log.Info("added a non-voter; it is promoted once caught up", "id", req.NodeID, "raft_addr", req.RaftAddr, "http_addr", req.HTTPAddr)
	}
	meta := raftstore.NodeMeta{ID: req.NodeID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr}
	if have, ok := n.fsm.State().Node(meta.ID); ok && have == meta {
		return nil
	}
	_, err := n.Apply(ctx, meta)
	return err
}

// Remove takes a coordinator out of the Raft configuration and forgets its
// metadata. It runs on the ready leader only. An id that is neither a member
// nor known to the FSM gives raftstore.ErrNotFound.
func (n *Node) Remove(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("%w: node_id is required", raftstore.ErrInvalid)
	}
	if !n.IsLeader() {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	member := false
	for _, s := range cf.Configuration().Servers {
		if string(s.ID) == id {
			member = true
		}
	}
	_, known := n.fsm.State().Node(id)
	if !member && !known {
		return fmt.Errorf("%w: node %s", raftstore.ErrNotFound, id)
	}
	// Metadata first: if the configuration change then fails, the node is
	// still a member and restores its own metadata when it next leads. The
	// other order could leave metadata of a removed node behind for good
	// (a leader removing itself steps down and cannot apply any more).
	if known {
		if _, err := n.Apply(ctx, raftstore.NodeRemove{ID: id}); err != nil {
			return err
		}
	}
	if member {
		if err := nodeWaitFuture(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, 0)); err != nil {
			return fmt.Errorf("remove server %s: %w", id, err)
		}
		n.log.Info("removed server", "id", id)
	}
	return nil
}

// nodeJoinLoop asks j to add this node until it succeeds or the node shuts
// down.
func (n *Node) nodeJoinLoop(j Joiner) {
	defer n.wg.Done()
	req := JoinRequest{NodeID: n.cfg.NodeID, RaftAddr: n.raftAddr, HTTPAddr: n.cfg.HTTPAddr}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(n.baseCtx, 10*time.Second)
		err := j.Join(ctx, req)
		cancel()
		if err == nil {
			// Promotion to voter is the leader's job, once this node
			// has caught up.
			n.log.Info("joined the cluster as a non-voter", "via", joinVia(j), "attempts", attempt)
			return
		}
		if n.baseCtx.Err() != nil {
			return
		}
		n.log.Warn("joining the cluster failed, retrying", "via", joinVia(j), "attempt", attempt, "err", err)
		select {
		case <-n.baseCtx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// joinVia names the members a Joiner asks, for the logs.
func joinVia(j Joiner) string {
	if s, ok := j.(fmt.Stringer); ok {
		return s.String()
	}
	return "the joiner"
}

// ---------------------------------------------------------------------------
// Status and shutdown

// Status returns this node's local view of the cluster.
func (n *Node) Status() Status {
	st := n.fsm.State()
	leaderAddr, leaderID := n.raft.LeaderWithID()
	s := Status{
		NodeID:       n.cfg.NodeID,
		State:        n.raft.State().String(),
		LeaderID:     string(leaderID),
		LeaderRaft:   string(leaderAddr),
		Term:         n.raft.CurrentTerm(),
		AppliedIndex: n.raft.AppliedIndex(),
		FSMIndex:     st.AppliedIndex(),
		CommitIndex:  n.raft.CommitIndex(),
		LastIndex:    n.raft.LastIndex(),
		Members:      []Member{},
	}
	if leaderID != "" {
		if m, ok := st.Node(string(leaderID)); ok {
			s.LeaderHTTP = m.HTTPAddr
		}
	}
	leading := n.raft.State() == raft.Leader
	now := time.Now()
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, srv := range cf.Configuration().Servers {
			m := Member{
				ID:       string(srv.ID),
				RaftAddr: string(srv.Address),
				Suffrage: srv.Suffrage.String(),
				Leader:   srv.ID == leaderID,
			}
			if meta, ok := st.Node(m.ID); ok {
				m.HTTPAddr = meta.HTTPAddr
			}
			if leading && string(srv.ID) != n.cfg.NodeID {
				// Only the leader hears from the others.
				p, ok := n.progress.progress(srv.ID)
				caught := n.caughtUp(p, ok, srv.Address, now)
				m.CaughtUp = &caught
				reachable := false
				if ok && p.Addr == srv.Address {
					ms := now.Sub(p.At).Milliseconds()
					m.LastContactMS = &ms
					m.LastLog = p.LastLog
					reachable = now.Sub(p.At) <= n.reachableWithin()
				}
				m.Reachable = &reachable
			} else if leading {
				reachable := true // the leader itself
				m.Reachable = &reachable
			}
			s.Members = append(s.Members, m)
		}
	}
	sort.Slice(s.Members, func(i, j int) bool { return s.Members[i].ID < s.Members[j].ID })
	n.diskStatus(&s)
	return s
}

// Fresh reports whether dataDir holds no Raft state of a node yet (no
// raft.db, no snapshot): a first start, which needs Bootstrap or Join.
func Fresh(dataDir string) bool {
	if _, err := os.Stat(filepath.Join(dataDir, "raft.db")); err == nil {
		return false
	}
	snaps, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "*"))
	return len(snaps) == 0
}

// UnconfiguredHint is logged (and served by the coordinator's /readyz)
// when a node starts without Raft state and without Bootstrap or Join.
const UnconfiguredHint = "this coordinator has no cluster state and was started without --bootstrap or --join: it waits for a leader to add it and answers no request meanwhile; start the first coordinator of a new cluster with --bootstrap, the others with --join URL"

// Unconfigured reports whether the node started without Raft state and
// without Bootstrap or Join, and has not been added to a cluster since
// (it knows no leader and has applied nothing).
func (n *Node) Unconfigured() bool {
	if !n.unconfigured {
		return false
	}
	_, id := n.raft.LeaderWithID()
	return id == "" && n.raft.LastIndex() == 0
}

// LeaderChanges returns how many times this node saw a new leader (itself
// included) since it started; the loss of a leader is not counted.
func (n *Node) LeaderChanges() uint64 { return n.leaderChanges.Load() }

// reachableWithin is how recent a follower's last answer must be for the
// leader to call it reachable: a few heartbeats (Raft sends them every
// tenth of HeartbeatTimeout, and gives up on a follower after a
// HeartbeatTimeout of silence).
func (n *Node) reachableWithin() time.Duration { return 2 * n.cfg.HeartbeatTimeout }

// Shutdown stops Raft and closes the stores. It does not transfer the
// leadership first: the others elect a new leader after ElectionTimeout.
// It is safe to call more than once.
// TransferLeadership hands leadership to another voter when this node leads,
// so a planned stop costs no election: the others need not wait for a
// heartbeat timeout. It returns ErrNotLeader when there is nothing to hand
// over (not leader, or no other voter), and waits at most about an
// election timeout.
func (n *Node) TransferLeadership() error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	others := 0
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage == raft.Voter && srv.ID != raft.ServerID(n.cfg.NodeID) {
			others++
		}
	}
	if others == 0 {
		return ErrNotLeader
	}
	start := time.Now()
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		n.log.Warn("leadership transfer failed; the others will elect a leader after the heartbeat timeout", "err", err)
		return err
	}
	n.log.Info("leadership transferred", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Shutdown hands over leadership if this node leads, then stops Raft and
// closes the stores.
func (n *Node) Shutdown() error {
	n.stopOnce.Do(func() {
		_ = n.TransferLeadership()
		close(n.shutdownCh)
		n.baseCancel()
		if n.observer != nil {
			n.raft.DeregisterObserver(n.observer)
		}
		// Raft's shutdown resolves every pending future (so the commit
		// pipeline drains) and closes the transport.
		err := n.raft.Shutdown().Error()
		n.wg.Wait()
		if cerr := n.store.Close(); err == nil {
			err = cerr
		}
		if cerr := n.fsm.Close(); err == nil {
			err = cerr
		}
		n.stopErr = err
		n.log.Info("raft stopped")
	})
	return n.stopErr
}

// nodeHclogWriter routes raft's hclog lines (already filtered at WARN) into
// slog, keeping the level.
type nodeHclogWriter struct{ log *slog.Logger }

func (w nodeHclogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	switch {
	case strings.HasPrefix(line, "[ERROR]"):
		level = slog.LevelError
	case strings.HasPrefix(line, "[WARN]"):
		level = slog.LevelWarn
	case strings.HasPrefix(line, "[DEBUG]"), strings.HasPrefix(line, "[TRACE]"):
		level = slog.LevelDebug
	}
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i >= 0 {
			line = strings.TrimSpace(line[i+1:])
		}
	}
	w.log.Log(context.Background(), level, line, "component", "raft")
	return len(p), nil
}
