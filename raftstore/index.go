package raftstore

import "github.com/google/btree"

// readyKey is a runnable job's place in the scheduler index.
type readyKey struct {
	project string
	mask    uint64
	id      int64
	hprio   PriorityPath
	in      bool // in the index (runnable); the other fields are kept when not
}

// bucketKey names a bucket of the index: the jobs of one project with one
// hierarchical affinity mask.
type bucketKey struct {
	project string
	mask    uint64
}

// readyLess orders runnable jobs the way Coalition's pick query does:
// hierarchical priority descending, then id ascending.
func readyLess(a, b readyKey) bool {
	if higher, equal := a.hprio.higher(b.hprio); !equal {
		return higher
	}
	return a.id < b.id
}

// readyItem is a runnable job in its bucket's B-tree: the bucket holds the
// project and mask, the item only what orders it, packed so that a
// comparison is at most four word compares (a pick and an insert make
// log(n) of them, and the tree moves items around: 40 bytes, not the 64
// of a readyKey).
type readyItem struct {
	prio [(PriorityLevels + 1) / 2]uint64
	id   int64
}

// item packs k's priority path two levels to a word, each level biased
// (sign bit flipped) so that unsigned order is the levels' signed order.
func (k readyKey) item() readyItem {
	it := readyItem{id: k.id}
	for i, v := range k.hprio {
		it.prio[i/2] |= uint64(uint32(v)^0x8000_0000) << (32 * (1 - uint(i%2)))
	}
	return it
}

// itemLess is readyLess on packed items.
func itemLess(a, b readyItem) bool {
	for i := range a.prio {
		if a.prio[i] != b.prio[i] {
			return a.prio[i] > b.prio[i]
		}
	}
	return a.id < b.id
}

// readyIndex holds every runnable job, bucketed by project and
// hierarchical affinity mask and ordered by priority inside a bucket. A pick
// looks at the head of each bucket a worker line can serve, so its cost
// depends on the number of distinct (project, mask) pairs in use, not on
// the number of queued jobs.
type readyIndex struct {
	buckets map[bucketKey]*btree.BTreeG[readyItem]
}

func newReadyIndex() *readyIndex {
	return &readyIndex{buckets: make(map[bucketKey]*btree.BTreeG[readyItem])}
}

func (k readyKey) bucket() bucketKey { return bucketKey{k.project, k.mask} }

func (ix *readyIndex) insert(k readyKey) {
	b := ix.buckets[k.bucket()]
	if b == nil {
		b = btree.NewG(32, itemLess)
		ix.buckets[k.bucket()] = b
	}
	b.ReplaceOrInsert(k.item())
}

func (ix *readyIndex) remove(k readyKey) {
	b := ix.buckets[k.bucket()]
	if b == nil {
		return
	}
	b.Delete(k.item())
	if b.Len() == 0 {
		delete(ix.buckets, k.bucket())
	}
}

// serves reports whether a worker restricted to projects (nil: all) may
// run a job of project.
func serves(projects []string, project string) bool {
	return projects == nil || containsString(projects, project)
}

// len returns the number of runnable jobs.
func (ix *readyIndex) len() int {
	n := 0
	for _, b := range ix.buckets {
		n += b.Len()
	}
	return n
}

// best returns the best runnable job for one worker affinity line. A line
// serves the jobs whose whole mask it covers; mask 0 (no affinity) is served
// only by the fallback, as in Coalition. The result does not depend on map
// order: ties are broken by itemLess, a total order.
func (ix *readyIndex) best(line uint64, projects []string) (readyItem, bool) {
	var best readyItem
	found := false
	for bk, b := range ix.buckets {
		if mask := bk.mask; mask == 0 || mask&line != mask || !serves(projects, bk.project) {
			continue
		}
		head, ok := b.Min()
		if ok && (!found || itemLess(head, best)) {
			best, found = head, true
		}
	}
	return best, found
}

// bestUnconstrained returns the best runnable job without any affinity.
func (ix *readyIndex) bestUnconstrained(projects []string) (readyItem, bool) {
	var best readyItem
	found := false
	for bk, b := range ix.buckets {
		if bk.mask != 0 || !serves(projects, bk.project) {
			continue
		}
		head, ok := b.Min()
		if ok && (!found || itemLess(head, best)) {
			best, found = head, true
		}
	}
	return best, found
}

// pick returns the job a worker with these affinity lines, restricted to
// projects (nil: all), should run: its lines in priority order, then the
// affinity-less jobs.
func (ix *readyIndex) pick(lines []uint64, projects []string) (readyItem, bool) {
	for _, line := range lines {
		if k, ok := ix.best(line, projects); ok {
			return k, true
		}
	}
	return ix.bestUnconstrained(projects)
}
