package coalition

import "github.com/croftfarm/croft/raftstore"

// MaxPriority is the top of Coalition's priority range: upstream clamps a
// job's priority to 0..255 on create and edit (1000 reads back as 255).
// The farm keeps plain integers (raftstore.MinPriority..MaxPriority); this
// dialect clamps what it writes and what it shows.
const MaxPriority = 255

// ClampPriority clamps a priority into Coalition's 0..255 range.
func ClampPriority(p int) int { return min(max(p, 0), MaxPriority) }

// coalitionPriority is the priority a job shows to Coalition clients: a job
// written by another dialect may hold any priority of the farm's range.
func coalitionPriority(j *raftstore.Job) int { return ClampPriority(j.Priority) }

// coalitionHPriority is Coalition's h_priority, derived from the farm's
// priority path: 8 bits per level for the first 7 levels, root level most
// significant, deeper levels added to the last byte (the path sums them
// already). For jobs whose priorities are all in 0..255, which is every job
// Coalition writes, it is the value upstream computes; a level outside is
// clamped first.
func coalitionHPriority(j *raftstore.Job) uint64 {
	path := j.PriorityPath()
	var h uint64
	for i := 0; i < raftstore.PriorityLevels-1; i++ {
		h += uint64(ClampPriority(int(path[i]))) << uint(48-8*i)
	}
	return h + uint64(max(path[raftstore.PriorityLevels-1], 0))
}
