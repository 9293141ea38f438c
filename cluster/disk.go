package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
)

// Disk: what a coordinator writes (raft.db, snapshots) and what happens when
// it cannot. See DESIGN.md, "Snapshots and log compaction" and "A full
// disk".

// nodeMinTrailingLogs is the fewest entries kept behind a snapshot, however
// big they are: a healthy follower is a few entries behind at most (two
// entries in flight), and should catch up from the log, not a snapshot.
const nodeMinTrailingLogs = 8

// nodeDefaultDiskPoll is how often the node reads its file system's free
// space.
const nodeDefaultDiskPoll = 5 * time.Second

// nodeTermRetry is how often a node that could not save its Raft term
// tries again.
const nodeTermRetry = time.Second

// Store is what Raft needs of raft.db: its log and its stable store
// (term, vote).
type Store interface {
	raft.LogStore
	raft.StableStore
}

// storageKind says which of the node's writes failed; each kind is cleared
// only by a later success of the same kind.
type storageKind int

const (
	storageLog      storageKind = iota // appending log entries
	storageStable                      // saving the term or the vote
	storageSnapshot                    // writing a snapshot, compacting the log after it
	storageKinds
)

// storageFailure is a failed write of this node: the error (wrapping
// ErrStorage and the cause) and when it happened.
type storageFailure struct {
	err error
	at  time.Time
}

// diskHealth records the outcome of the node's writes, per kind, so that
// the status and the API can tell a full disk from a missing leader.
type diskHealth struct {
	log *slog.Logger

	mu   sync.Mutex
	fail [storageKinds]*storageFailure
}

// failed records a failed write of kind k; err already wraps ErrStorage.
func (h *diskHealth) failed(k storageKind, err error) {
	h.mu.Lock()
	first := h.fail[k] == nil
	h.fail[k] = &storageFailure{err: err, at: time.Now()}
	h.mu.Unlock()
	if first { // once per episode: a leader may fail the same way at every election
		h.log.Error("cannot write the raft state", "err", err, "disk_full", isDiskFull(err))
	}
}

// succeeded clears the failure of kind k, if any.
func (h *diskHealth) succeeded(k storageKind) {
	h.mu.Lock()
	had := h.fail[k]
	h.fail[k] = nil
	h.mu.Unlock()
	if had != nil {
		h.log.Info("raft state writes succeed again", "failed_since", had.at.Format(time.RFC3339))
	}
}

// current returns the most recent failure of the given kinds (all when
// none are given) not yet cleared, or nil.
func (h *diskHealth) current(kinds ...storageKind) *storageFailure {
	if len(kinds) == 0 {
		kinds = []storageKind{storageLog, storageStable, storageSnapshot}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var last *storageFailure
	for _, k := range kinds {
		if f := h.fail[k]; f != nil && (last == nil || f.at.After(last.at)) {
			last = f
		}
	}
	return last
}

// isDiskFull reports whether err is a lack of space (or of quota). bbolt
// and the snapshot store return the *os.PathError of the write, which
// keeps the errno.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// diskStore wraps raft.db's log and stable store: it records failed writes
// in the node's diskHealth (wrapping their errors in ErrStorage, so an
// apply that failed because the leader could not store it says so) and
// tracks the size of the log (logSizes) for compaction by size.
type diskStore struct {
	Store
	id       string
	health   *diskHealth
	sizes    *logSizes
	shutdown <-chan struct{}
	retry    time.Duration // between tries to save the term; 0: nodeTermRetry
}

// storageError wraps a failed write of node id in ErrStorage, keeping the
// cause (errors.Is(err, syscall.ENOSPC) still works).
func storageError(id, what string, err error) error {
	return fmt.Errorf("%w: node %s could not %s: %w", ErrStorage, id, what, err)
}

// StoreLog stores one entry.
func (s *diskStore) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

// StoreLogs stores entries and counts their bytes. Only entries carrying
// commands clear a failure: a new leader's no-op and barrier are tiny and
// written at every election, so they would hide that the commands fail.
func (s *diskStore) StoreLogs(logs []*raft.Log) error {
	if err := s.Store.StoreLogs(logs); err != nil {
		what := "store raft log entries"
		if len(logs) > 0 {
			what = fmt.Sprintf("store raft log entries %d-%d (%d bytes)", logs[0].Index, logs[len(logs)-1].Index, logBytes(logs))
		}
		err = storageError(s.id, what, err)
		s.health.failed(storageLog, err)
		return err
	}
	s.sizes.stored(logs)
	for _, l := range logs {
		if l.Type == raft.LogCommand {
			s.health.succeeded(storageLog)
			break
		}
	}
	return nil
}

// DeleteRange deletes entries: compaction after a snapshot, or a
// follower's conflicting suffix.
func (s *diskStore) DeleteRange(lo, hi uint64) error {
	if err := s.Store.DeleteRange(lo, hi); err != nil {
		err = storageError(s.id, fmt.Sprintf("delete raft log entries %d-%d", lo, hi), err)
		s.health.failed(storageSnapshot, err)
		return err
	}
	s.sizes.deleted(lo, hi)
	s.health.succeeded(storageSnapshot)
	return nil
}

// Set saves a stable value (the vote).
func (s *diskStore) Set(k, v []byte) error {
	return s.stable(k, func() error { return s.Store.Set(k, v) })
}

// SetUint64 saves a stable number (the term, the vote's term).
func (s *diskStore) SetUint64(k []byte, v uint64) error {
	return s.stable(k, func() error { return s.Store.SetUint64(k, v) })
}

// stable runs a stable-store write. Raft panics when it cannot save its
// current term, so that write is retried until it works (space came back)
// or the node shuts down: the node stays up and says why it cannot take
// part, instead of crashing at every election while the disk is full.
// Other failures (the vote) are returned: Raft then just does not vote.
func (s *diskStore) stable(k []byte, write func() error) error {
	warned := time.Time{}
	for {
		err := write()
		if err == nil {
			s.health.succeeded(storageStable)
			return nil
		}
		err = storageError(s.id, "save the raft "+string(k), err)
		s.health.failed(storageStable, err)
		if string(k) != "CurrentTerm" { // raft's keyCurrentTerm
			return err
		}
		if time.Since(warned) > 30*time.Second {
			warned = time.Now()
			s.health.log.Error("cannot save the raft term; this node takes no part in the cluster until it can", "err", err)
		}
		retry := s.retry
		if retry <= 0 {
			retry = nodeTermRetry
		}
		select {
		case <-s.shutdown:
			return err // raft panics on it, but the process is stopping
		case <-time.After(retry):
		}
	}
}

func logBytes(logs []*raft.Log) int64 {
	var n int64
	for _, l := range logs {
		n += entryBytes(l)
	}
	return n
}

// entryBytes is what an entry weighs in the log: its payload (the encoding
// adds a few dozen bytes).
func entryBytes(l *raft.Log) int64 { return int64(len(l.Data) + len(l.Extensions)) }

// logSizes tracks the bytes of the entries in the Raft log, to compact it
// by size: it asks for a snapshot once the entries stored since the last
// one pass a threshold, and tells how many of the newest entries fit in
// the trailing budget. Raft's log is contiguous; it only grows at the end,
// loses its head (compaction) or its tail (a follower's conflicting
// entries), and the tracker follows these three.
type logSizes struct {
	threshold int64         // SnapshotBytes; <= 0: no compaction by size
	due       chan struct{} // a size-triggered snapshot is wanted (buffered 1)

	mu    sync.Mutex
	first uint64  // index of cum[0]
	cum   []int64 // cum[i]: running byte total up to and including entry first+i
	base  int64   // running total before the first entry
	end   int64   // running total up to the last entry
	snap  uint64  // index of the latest snapshot
	// written counts the bytes stored since the node started (or found in
	// its log then); mark is its value when the last size-triggered
	// snapshot was asked for. A new one needs threshold more bytes, so a
	// snapshot in progress or one that failed never triggers another at
	// once.
	written, mark int64
}

func newLogSizes(threshold int64) *logSizes {
	return &logSizes{threshold: threshold, due: make(chan struct{}, 1)}
}

// lastIndexLocked is the index of the last tracked entry (first-1 when
// none).
func (s *logSizes) lastIndexLocked() uint64 { return s.first + uint64(len(s.cum)) - 1 }

// cumLocked is the running total up to and including entry idx.
func (s *logSizes) cumLocked(idx uint64) int64 {
	switch {
	case len(s.cum) == 0 || idx < s.first:
		return s.base
	case idx >= s.lastIndexLocked():
		return s.end
	}
	return s.cum[idx-s.first]
}

// stored counts appended entries and asks for a snapshot when due.
func (s *logSizes) stored(logs []*raft.Log) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range logs {
		s.addLocked(l.Index, entryBytes(l))
	}
	s.checkLocked()
}

// addLocked counts entry idx, replacing what was tracked from idx on.
func (s *logSizes) addLocked(idx uint64, size int64) {
	if len(s.cum) > 0 {
		switch last := s.lastIndexLocked(); {
		case idx <= last: // replaced from here on
			s.truncateLocked(idx)
		case idx > last+1: // a gap (after a snapshot install): start over
			s.base, s.cum = s.end, s.cum[:0]
		}
	}
	if len(s.cum) == 0 {
		s.first = idx
	}
	s.end += size
	s.written += size
	s.cum = append(s.cum, s.end)
}

// checkLocked asks for a snapshot when the entries since the last one
// weigh more than the threshold, and threshold bytes were written since
// the last time it asked.
func (s *logSizes) checkLocked() {
	if s.threshold <= 0 || s.end-s.cumLocked(s.snap) < s.threshold || s.written-s.mark < s.threshold {
		return
	}
	s.mark = s.written
	select {
	case s.due <- struct{}{}:
	default:
	}
}

// truncateLocked forgets the entries from idx on.
func (s *logSizes) truncateLocked(idx uint64) {
	if len(s.cum) == 0 || idx > s.lastIndexLocked() {
		return
	}
	if idx <= s.first {
		s.end, s.cum = s.base, s.cum[:0]
		return
	}
	s.end = s.cum[idx-1-s.first]
	s.cum = s.cum[:idx-s.first]
}

// deleted follows a DeleteRange: the head (compaction) or the tail.
func (s *logSizes) deleted(lo, hi uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cum) == 0 {
		return
	}
	last := s.lastIndexLocked()
	switch {
	case lo <= s.first && hi >= last:
		s.base, s.cum = s.end, s.cum[:0]
	case lo <= s.first && hi >= s.first:
		k := hi - s.first + 1
		s.base = s.cum[k-1]
		s.cum = s.cum[k:]
		s.first = hi + 1
	case hi >= last:
		s.truncateLocked(lo)
	}
}

// snapshotted records a snapshot up to idx.
func (s *logSizes) snapshotted(idx uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if idx > s.snap {
		s.snap = idx
	}
}

// sinceSnapshot is the bytes of the entries after the latest snapshot.
func (s *logSizes) sinceSnapshot() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end - s.cumLocked(s.snap)
}

// total is the bytes of the whole log.
func (s *logSizes) total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end - s.base
}

// trailing returns how many of the newest entries weigh at most budget
// bytes together; all says the whole log fits.
func (s *logSizes) trailing(budget int64) (count uint64, all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.cum)
	// The smallest j such that entries j.. (0-based) fit.
	j := sort.Search(n+1, func(j int) bool {
		before := s.base
		if j > 0 {
			before = s.cum[j-1]
		}
		return s.end-before <= budget
	})
	return uint64(n - j), j == 0
}

// scan counts the entries found in the log at start (one read of the log,
// which compaction keeps small); snap is the latest snapshot's index.
func (s *logSizes) scan(store raft.LogStore, snap uint64) error {
	first, err := store.FirstIndex()
	if err != nil {
		return err
	}
	last, err := store.LastIndex()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap = snap
	for idx := first; first > 0 && idx <= last; idx++ {
		var l raft.Log
		if err := store.GetLog(idx, &l); err != nil && !errors.Is(err, raft.ErrLogNotFound) {
			return err
		}
		s.addLocked(idx, entryBytes(&l))
	}
	s.checkLocked()
	return nil
}

// snapStore wraps the snapshot store: before every snapshot it sets
// Raft's TrailingLogs to the entries that fit in the trailing budget (Raft
// reads it when it compacts, right after the snapshot), and it records
// failed snapshot writes and finished snapshots.
type snapStore struct {
	raft.SnapshotStore
	node *Node
	// raft is set once Raft runs (RecoverCluster snapshots before).
	raft atomic.Pointer[raft.Raft]
}

// Create starts a snapshot up to index.
func (s *snapStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	if r := s.raft.Load(); r != nil {
		s.node.nodeSetTrailing(r)
	}
	sink, err := s.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		s.node.health.failed(storageSnapshot, storageError(s.node.cfg.NodeID, "create a snapshot", err))
		return nil, err
	}
	return &snapSink{SnapshotSink: sink, store: s, index: index}, nil
}

// snapSink records the outcome of one snapshot. The FSM closes its sink
// and Raft closes it again: only the first Close or Cancel counts.
type snapSink struct {
	raft.SnapshotSink
	store *snapStore
	index uint64
	ended bool
}

func (s *snapSink) Write(p []byte) (int, error) {
	n, err := s.SnapshotSink.Write(p)
	if err != nil {
		s.store.node.health.failed(storageSnapshot, storageError(s.store.node.cfg.NodeID, "write a snapshot", err))
	}
	return n, err
}

func (s *snapSink) Close() error {
	err := s.SnapshotSink.Close()
	if s.ended {
		return err
	}
	s.ended = true
	n := s.store.node
	if err != nil {
		n.health.failed(storageSnapshot, storageError(n.cfg.NodeID, fmt.Sprintf("write the snapshot up to %d", s.index), err))
		return err
	}
	n.health.succeeded(storageSnapshot)
	n.sizes.snapshotted(s.index)
	return nil
}

func (s *snapSink) Cancel() error {
	s.ended = true
	return s.SnapshotSink.Cancel()
}

// nodeSetTrailing sets Raft's TrailingLogs for the snapshot about to be
// taken: the newest entries within TrailingBytes, at least
// nodeMinTrailingLogs, at most Config.TrailingLogs (which applies as it is
// when the whole log fits: then the bytes bound nothing).
func (n *Node) nodeSetTrailing(r *raft.Raft) {
	want := n.cfg.TrailingLogs
	if n.cfg.TrailingBytes > 0 {
		if fit, all := n.sizes.trailing(n.cfg.TrailingBytes); !all {
			want = min(max(fit, nodeMinTrailingLogs), n.cfg.TrailingLogs)
		}
	}
	rc := r.ReloadableConfig()
	if rc.TrailingLogs == want {
		return
	}
	rc.TrailingLogs = want
	if err := r.ReloadConfig(rc); err != nil {
		n.log.Warn("cannot set the trailing logs", "trailing_logs", want, "err", err)
	}
}

// nodeCompactLoop takes a snapshot whenever the log since the last one
// passes SnapshotBytes (logSizes decides; it asks at most once per
// SnapshotBytes written, whatever the outcome).
func (n *Node) nodeCompactLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-n.sizes.due:
		}
		since := n.sizes.sinceSnapshot()
		start := time.Now()
		err := n.raft.Snapshot().Error()
		switch {
		case err == nil:
			n.log.Info("snapshot by size", "log_bytes_since_snapshot", since, "threshold", n.cfg.SnapshotBytes,
				"took", time.Since(start).Round(time.Millisecond), "log_bytes_now", n.sizes.total())
		case errors.Is(err, raft.ErrNothingNewToSnapshot), errors.Is(err, raft.ErrRaftShutdown):
		default:
			n.log.Warn("snapshot by size failed; the next try waits for another threshold of entries", "err", err)
		}
	}
}

// diskSpace is the last reading of the data directory's file system.
type diskSpace struct {
	free, total uint64
	ok          bool
}

// nodeDiskLoop reads the data directory's free space every few seconds and
// warns once when it drops below SnapshotBytes (the log may need that
// much before it is compacted again).
func (n *Node) nodeDiskLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.DiskPoll)
	defer t.Stop()
	for {
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
			n.nodePollDisk()
		}
	}
}

func (n *Node) nodePollDisk() {
	var st unix.Statfs_t
	if err := unix.Statfs(n.cfg.DataDir, &st); err != nil {
		n.log.Warn("cannot read the free space of the data directory", "dir", n.cfg.DataDir, "err", err)
		n.space.Store(&diskSpace{})
		return
	}
	sp := &diskSpace{free: st.Bavail * uint64(st.Bsize), total: st.Blocks * uint64(st.Bsize), ok: true}
	prev := n.space.Swap(sp)
	low := uint64(max(n.cfg.SnapshotBytes, 64<<20))
	switch wasLow := prev != nil && prev.ok && prev.free < low; {
	case sp.free < low && !wasLow:
		n.log.Warn("the data directory's disk is almost full", "dir", n.cfg.DataDir, "free_bytes", sp.free, "total_bytes", sp.total)
	case sp.free >= low && wasLow:
		n.log.Info("the data directory's disk has room again", "dir", n.cfg.DataDir, "free_bytes", sp.free)
	}
}

// nodeStorageErr returns this node's current failure to append to its log
// or to save its term or vote (wrapping ErrStorage and the cause), or nil
// while these writes succeed: the failures that cost a leadership or a
// vote. A failed snapshot does not, and only shows in the status.
func (n *Node) nodeStorageErr() error {
	if f := n.health.current(storageLog, storageStable); f != nil {
		return f.err
	}
	return nil
}

// nodeStorageCause explains a "not the leader" error by this node's
// storage failure, if it has one: a leader that cannot store its log
// steps down, and keeps doing so after every election it wins while its
// disk is full. Other errors are returned as they are.
func (n *Node) nodeStorageCause(err error) error {
	if err == nil || !errors.Is(err, ErrNotLeader) || errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, ErrStorage) {
		return err
	}
	if serr := n.nodeStorageErr(); serr != nil {
		return fmt.Errorf("%w (%w)", serr, err)
	}
	return err
}

// diskStatus fills the storage fields of a status.
func (n *Node) diskStatus(s *Status) {
	if f := n.health.current(); f != nil {
		at := f.at
		s.StorageError, s.StorageErrorAt, s.DiskFull = f.err.Error(), &at, isDiskFull(f.err)
	}
	if sp := n.space.Load(); sp != nil && sp.ok {
		s.DiskFreeBytes, s.DiskTotalBytes = sp.free, sp.total
	}
	if fi, err := os.Stat(filepath.Join(n.cfg.DataDir, "raft.db")); err == nil {
		s.RaftDBBytes = fi.Size()
	}
	s.RaftLogBytes = n.sizes.total()
}
