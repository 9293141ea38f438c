package raftstore

import "github.com/google/btree"

// readyKey is what a job records of its place in the scheduler index: the
// priority path and mask it was filed under (the project and the id are
// the job's own, which never change), and whether it is in. It lives in
// every Job, so it is kept small: 40 bytes.
type readyKey struct {
	hprio PriorityPath
	in    bool // in the index (runnable); the other fields are kept when not
	mask  uint64
}

// bucketKey names a bucket of the index: the jobs of one project with one
// hierarchical affinity mask.
type bucketKey struct {
	project string
	mask    uint64
}

// readyLess orders runnable jobs the way Coalition's pick query does:
// hierarchical priority descending, then id ascending.
func readyLess(a PriorityPath, aID int64, b PriorityPath, bID int64) bool {
	if higher, equal := a.higher(b); !equal {
		return higher
	}
	return aID < bID
}

// readyItem is a runnable job in its bucket's B-tree: the bucket holds the
// project and mask, the item only what orders it, packed so that a
// comparison is at most three word compares (a pick and an insert make
// log(n) of them, and the tree moves items around: 32 bytes, against the
// 64 of a full key).
type readyItem struct {
	prio [3]uint64
	id   int64
}

// Packing of a priority path: levels 0..5 hold one job's priority each
// (MinPriority..MaxPriority, so 21 bits biased by 2^20 hold them), three
// to a word; level 6 sums the deeper levels, a whole int32 with its sign
// bit flipped, in the last word. Unsigned order of the words is then the
// paths' order.
const (
	levelBits = 21
	levelBias = 1 << (levelBits - 1)
)

// item packs the priority path of job id for the index.
func (k readyKey) item(id int64) readyItem {
	it := readyItem{id: id}
	for i, v := range k.hprio[:PriorityLevels-1] {
		// Within the bias by construction (a level is one clamped
		// priority); clamped again so that a corrupt value cannot
		// spill into its neighbour.
		b := uint64(min(max(int64(v), -levelBias), levelBias-1) + levelBias)
		it.prio[i/3] |= b << (levelBits * (2 - uint(i%3)))
	}
	it.prio[2] = uint64(uint32(k.hprio[PriorityLevels-1]) ^ 0x8000_0000)
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

// insert files job id of project under k.
func (ix *readyIndex) insert(project string, id int64, k readyKey) {
	bk := bucketKey{project, k.mask}
	b := ix.buckets[bk]
	if b == nil {
		b = btree.NewG(32, itemLess)
		ix.buckets[bk] = b
	}
	b.ReplaceOrInsert(k.item(id))
}

// remove takes job id of project, filed under k, out of the index.
func (ix *readyIndex) remove(project string, id int64, k readyKey) {
	bk := bucketKey{project, k.mask}
	b := ix.buckets[bk]
	if b == nil {
		return
	}
	b.Delete(k.item(id))
	if b.Len() == 0 {
		delete(ix.buckets, bk)
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
