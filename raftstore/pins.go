package raftstore

import (
	"fmt"
	"strings"

	"github.com/google/btree"
)

// Executions pinned to a host (DESIGN.md, "Executions pinned to a
// host"): an execution with a Host runs its job only on a slot of that
// host. Such a job is never in the shared ready index: while runnable it
// is in its host's pinned index instead, and a pick by a slot of the host
// looks there after the host's context sessions and before the shared
// index. Both indexes are kept in one place, place(), which tells a
// pinned job by s.pins; Job.ready.in means "in its host's pinned index"
// for a pinned job. The pins are derived from Execution.Host, rebuilt on
// restore and checked by the invariants.

// pinnedIndex holds the runnable jobs pinned to one host, bucketed by
// project and hierarchical affinity mask (as the shared index), oldest
// first in each bucket: a pick looks at the head of each bucket, so it
// costs the number of (project, mask) pairs pinned to the host, not the
// number of jobs.
type pinnedIndex struct {
	buckets map[bucketKey]*btree.BTreeG[int64]
}

func (ix *pinnedIndex) insert(project string, mask uint64, id int64) {
	bk := bucketKey{project, mask}
	b := ix.buckets[bk]
	if b == nil {
		b = btree.NewOrderedG[int64](16)
		ix.buckets[bk] = b
	}
	b.ReplaceOrInsert(id)
}

func (ix *pinnedIndex) remove(project string, mask uint64, id int64) {
	bk := bucketKey{project, mask}
	if b := ix.buckets[bk]; b != nil {
		b.Delete(id)
		if b.Len() == 0 {
			delete(ix.buckets, bk)
		}
	}
}

// len returns the number of jobs in the index.
func (ix *pinnedIndex) len() int {
	n := 0
	for _, b := range ix.buckets {
		n += b.Len()
	}
	return n
}

// oldest returns the oldest job a slot with these affinity lines,
// restricted to projects (nil: all), may take: a job whose mask one of
// the lines covers, or without affinity. The result does not depend on
// map order: ids are unique.
func (ix *pinnedIndex) oldest(lines []uint64, projects []string) (int64, bool) {
	var best int64
	found := false
	for bk, b := range ix.buckets {
		if !serves(projects, bk.project) || !covers(lines, bk.mask) {
			continue
		}
		if id, ok := b.Min(); ok && (!found || id < best) {
			best, found = id, true
		}
	}
	return best, found
}

// covers reports whether one of a worker's affinity lines covers mask;
// every worker takes a job without affinity (mask 0).
func covers(lines []uint64, mask uint64) bool {
	if mask == 0 {
		return true
	}
	for _, l := range lines {
		if mask&l == mask {
			return true
		}
	}
	return false
}

// placePinned is place for job j pinned to host.
func (s *State) placePinned(j *Job, host string, hprio PriorityPath) {
	want := readyKey{in: s.runnable(j), mask: j.HAffinity, hprio: hprio}
	if want == j.ready {
		return
	}
	if j.ready.in {
		s.unpinIndex(host, j)
	}
	if want.in {
		ix := s.hostPinned[host]
		if ix == nil {
			ix = &pinnedIndex{buckets: make(map[bucketKey]*btree.BTreeG[int64])}
			s.hostPinned[host] = ix
		}
		ix.insert(j.Project, want.mask, j.ID)
		s.readyGrew = true // the host's pulls look again
	}
	j.ready = want
}

// unpinIndex takes pinned job j, filed under j.ready, out of its host's
// pinned index.
func (s *State) unpinIndex(host string, j *Job) {
	ix := s.hostPinned[host]
	if ix == nil {
		return
	}
	ix.remove(j.Project, j.ready.mask, j.ID)
	if len(ix.buckets) == 0 {
		delete(s.hostPinned, host)
	}
}

// unindex takes j out of the index it is in (shared or pinned) before it
// goes.
func (s *State) unindex(j *Job) {
	if !j.ready.in {
		return
	}
	if host, ok := s.pins[j.ID]; ok {
		s.unpinIndex(host, j)
	} else {
		s.ready.remove(j.Project, j.ID, j.ready)
	}
	j.ready.in = false
}

// pinJob pins j, a new execution's job, to host: it leaves the shared
// index for the host's. Execute checked the room (MaxHostPinned).
func (s *State) pinJob(j *Job, host string) {
	s.unindex(j)
	s.pins[j.ID] = host
	s.pinCount[host]++
	s.reindex(j)
}

// unpin forgets job j's pin as it goes (dropJob); unindex took it out of
// the pinned index.
func (s *State) unpin(j *Job) {
	host, ok := s.pins[j.ID]
	if !ok {
		return
	}
	delete(s.pins, j.ID)
	if s.pinCount[host]--; s.pinCount[host] <= 0 {
		delete(s.pinCount, host)
	}
}

// checkPinRoom checks that one more job may be pinned to host.
func (s *State) checkPinRoom(host string) error {
	if n := s.pinCount[host]; n >= MaxHostPinned {
		return fmt.Errorf("%w: host %q has %d pinned executions, the limit", ErrTooLarge, truncate(host, 40), n)
	}
	return nil
}

// restorePins rebuilds the pins from a snapshot's executions, before its
// jobs are indexed (place reads them).
func (s *State) restorePins(execs []*Execution) {
	for _, e := range execs {
		if e.Host != "" {
			s.pins[e.JobID] = e.Host
			s.pinCount[e.Host]++
		}
	}
}

// pinnedPick returns the oldest runnable job pinned to host that worker w
// may take, or nil.
func (s *State) pinnedPick(host string, w *Worker) *Job {
	ix := s.hostPinned[host]
	if ix == nil {
		return nil
	}
	if id, ok := ix.oldest(w.lines, w.Projects); ok {
		return s.jobs[id]
	}
	return nil
}

// CheckHostName checks a host's name (an agent's, or an execution's
// pin): one line of 1 to MaxNameBytes bytes, not only spaces.
func CheckHostName(name string) error {
	if err := CheckName("host name", name); err != nil {
		return err
	}
	if strings.TrimSpace(name) == "" {
		return invalid("host name is empty")
	}
	return nil
}
