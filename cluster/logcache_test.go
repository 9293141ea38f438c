package cluster

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore counts the reads that reach the store.
type countingStore struct {
	*raft.InmemStore
	reads int
}

func (s *countingStore) GetLog(idx uint64, out *raft.Log) error {
	s.reads++
	return s.InmemStore.GetLog(idx, out)
}

func TestLogCacheServesRecentEntries(t *testing.T) {
	store := &countingStore{InmemStore: raft.NewInmemStore()}
	c := newLogCache(store, 100)
	entry := func(idx uint64, size int, b byte) *raft.Log {
		return &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{b}, size)}
	}
	get := func(idx uint64) raft.Log {
		t.Helper()
		var l raft.Log
		if err := c.GetLog(idx, &l); err != nil {
			t.Fatalf("GetLog(%d): %v", idx, err)
		}
		return l
	}
	if err := c.StoreLogs([]*raft.Log{entry(1, 40, 'a'), entry(2, 40, 'b')}); err != nil {
		t.Fatal(err)
	}
	if l := get(2); l.Index != 2 || l.Data[0] != 'b' || store.reads != 0 {
		t.Fatalf("entry 2 = %+v after %d store reads, want it from memory", l, store.reads)
	}
	// Over the budget: the oldest go, and are read from the store.
	if err := c.StoreLog(entry(3, 40, 'c')); err != nil {
		t.Fatal(err)
	}
	if l := get(1); l.Data[0] != 'a' || store.reads != 1 {
		t.Fatalf("evicted entry 1 = %+v after %d store reads", l, store.reads)
	}
	get(3)
	// Larger than the whole budget: never cached.
	if err := c.StoreLog(entry(4, 200, 'd')); err != nil {
		t.Fatal(err)
	}
	if l := get(4); len(l.Data) != 200 || store.reads != 2 {
		t.Fatalf("entry 4: %d bytes after %d store reads", len(l.Data), store.reads)
	}
	// A new leader overwrites entries from 3 on: the cache follows.
	if err := c.StoreLogs([]*raft.Log{entry(3, 10, 'x')}); err != nil {
		t.Fatal(err)
	}
	if l := get(3); l.Data[0] != 'x' || len(l.Data) != 10 {
		t.Fatalf("overwritten entry 3 = %q", l.Data)
	}
	// Deleted (compaction or truncation): gone from both.
	if err := c.DeleteRange(1, 3); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := c.GetLog(3, &l); err != raft.ErrLogNotFound {
		t.Fatalf("deleted entry 3: %v", err)
	}
	if c.bytes != 0 || len(c.logs) != 0 || len(c.order) != 0 {
		t.Fatalf("cache holds %d bytes, %d entries, order %v after deletes", c.bytes, len(c.logs), c.order)
	}
}
