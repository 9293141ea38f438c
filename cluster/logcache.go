package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// nodeLogCacheBytes bounds the memory of the recent-entry cache.
const nodeLogCacheBytes = 64 << 20

// logCache keeps the most recent log entries in memory, within a byte
// budget, in front of the bolt store. The leader's replication reads every
// entry it sends, and the one before (for its term), back from the log
// store: from bolt that is a copy and a msgpack decode per follower, and
// a 100,000-job create is megabytes. Recent entries, the ones replication
// reads, come from here. (raft.LogCache does the same by count, which
// bounds nothing when one entry can be a million jobs.)
type logCache struct {
	raft.LogStore

	mu    sync.RWMutex
	logs  map[uint64]*raft.Log
	order []uint64 // indexes cached, ascending (entries are appended in order)
	bytes int
	max   int
}

func newLogCache(store raft.LogStore, maxBytes int) *logCache {
	return &logCache{LogStore: store, logs: map[uint64]*raft.Log{}, max: maxBytes}
}

// GetLog serves idx from memory when it is cached.
func (c *logCache) GetLog(idx uint64, out *raft.Log) error {
	c.mu.RLock()
	l, ok := c.logs[idx]
	c.mu.RUnlock()
	if ok {
		*out = *l
		return nil
	}
	return c.LogStore.GetLog(idx, out)
}

// StoreLog stores one entry, then caches it.
func (c *logCache) StoreLog(l *raft.Log) error {
	return c.StoreLogs([]*raft.Log{l})
}

// StoreLogs stores entries, then caches them. Raft does not change an
// entry once it is handed to the store.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		if len(c.order) > 0 && l.Index <= c.order[len(c.order)-1] {
			// Entries replaced from idx on (a new leader's log wins): what
			// is cached from there is stale.
			c.dropFrom(l.Index)
		}
		size := len(l.Data) + len(l.Extensions)
		if size > c.max {
			continue // larger than the whole budget: read from bolt
		}
		c.logs[l.Index] = l
		c.order = append(c.order, l.Index)
		c.bytes += size
	}
	for c.bytes > c.max && len(c.order) > 0 {
		c.evict(c.order[0])
		c.order = c.order[1:]
	}
	return nil
}

// DeleteRange deletes entries from the store and the cache.
func (c *logCache) DeleteRange(min, max uint64) error {
	c.mu.Lock()
	keep := c.order[:0]
	for _, idx := range c.order {
		if idx >= min && idx <= max {
			c.evict(idx)
			continue
		}
		keep = append(keep, idx)
	}
	c.order = keep
	c.mu.Unlock()
	return c.LogStore.DeleteRange(min, max)
}

// dropFrom forgets the cached entries from idx on.
func (c *logCache) dropFrom(idx uint64) {
	keep := c.order[:0]
	for _, i := range c.order {
		if i >= idx {
			c.evict(i)
			continue
		}
		keep = append(keep, i)
	}
	c.order = keep
}

func (c *logCache) evict(idx uint64) {
	if l, ok := c.logs[idx]; ok {
		c.bytes -= len(l.Data) + len(l.Extensions)
		delete(c.logs, idx)
	}
}
