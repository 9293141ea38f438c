package raftstore

import (
	"errors"
	"math"
	"math/rand"
	"sort"
	"testing"
)

// coalitionKey is the previous release's h_priority: 8 bits per level for
// the first 7 levels, deeper levels added to the last byte.
func coalitionKey(s *State, j *Job) uint64 {
	var key uint64
	for x := j; x != nil && x.ID != 0; x = s.jobs[x.Parent] {
		shift := max(56-8*x.HDepth, 0)
		key += uint64(x.Priority) << uint(shift)
	}
	return key
}

func TestPriorityPathKeepsCoalitionOrder(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		r := rand.New(rand.NewSource(seed))
		h := newHarness(t)
		groups := []int64{0}
		var leaves []int64
		for i := 0; i < 200; i++ {
			parent := groups[r.Intn(len(groups))]
			if parent != 0 && h.job(parent).HDepth >= PriorityLevels {
				parent = 0 // deeper levels share a byte in Coalition's key
			}
			spec := JobSpec{Parent: parent, Priority: r.Intn(256)}
			if r.Intn(3) == 0 {
				groups = append(groups, h.create(spec)[0])
				continue
			}
			spec.Command = "x"
			leaves = append(leaves, h.create(spec)[0])
		}
		s := h.st()
		byPath := append([]int64(nil), leaves...)
		sort.Slice(byPath, func(a, b int) bool {
			ja, jb := s.jobs[byPath[a]], s.jobs[byPath[b]]
			return readyLess(ja.PriorityPath(), ja.ID, jb.PriorityPath(), jb.ID)
		})
		byKey := append([]int64(nil), leaves...)
		sort.Slice(byKey, func(a, b int) bool {
			ka, kb := coalitionKey(s, s.jobs[byKey[a]]), coalitionKey(s, s.jobs[byKey[b]])
			if ka != kb {
				return ka > kb
			}
			return byKey[a] < byKey[b]
		})
		for i := range byPath {
			if byPath[i] != byKey[i] {
				t.Fatalf("seed %d: position %d is job %d by path, %d by Coalition's key", seed, i, byPath[i], byKey[i])
			}
		}
	}
}

func TestWideAndNegativePriorities(t *testing.T) {
	h := newHarness(t)
	g := h.create(JobSpec{Title: "low group", Priority: -1}, JobSpec{Title: "zero group"})
	ids := h.create(
		JobSpec{Parent: g[0], Command: "x", Priority: MaxPriority},
		JobSpec{Parent: g[1], Command: "x", Priority: MinPriority},
		JobSpec{Command: "x", Priority: -5},
		JobSpec{Command: "x", Priority: 256},
		JobSpec{Command: "x", Priority: MaxPriority},
		JobSpec{Command: "x"},
	)
	// Level 1 first: MaxPriority, 256, then the priority-0 root leaf,
	// whose path (0) is above the zero group's child's (0, MinPriority);
	// then the -1 group's child, and -5 last.
	for _, want := range []int64{ids[4], ids[3], ids[5], ids[1], ids[0], ids[2]} {
		a := h.pick("w")
		if a == nil || a.JobID != want {
			t.Fatalf("picked %+v, want job %d", a, want)
		}
		h.finish(a, "w", 0)
	}
	if j := h.job(ids[0]); j.PriorityPath() != (PriorityPath{-1, MaxPriority}) {
		p := j.PriorityPath()
		t.Fatalf("path %v", p)
	}
}

func TestPriorityLimits(t *testing.T) {
	for _, p := range []int{MinPriority, -1, 0, 255, 1000, MaxPriority} {
		if err := CheckSpec(&JobSpec{Priority: p}); err != nil {
			t.Errorf("priority %d refused: %v", p, err)
		}
	}
	for _, p := range []int{MinPriority - 1, MaxPriority + 1} {
		if err := CheckSpec(&JobSpec{Priority: p}); !errors.Is(err, ErrInvalid) {
			t.Errorf("priority %d: %v, want ErrInvalid", p, err)
		}
		v := p
		if err := CheckPatch(&JobPatch{Priority: &v}); !errors.Is(err, ErrInvalid) {
			t.Errorf("patch priority %d: %v, want ErrInvalid", p, err)
		}
	}
}

// The index compares packed items (itemLess); they must order exactly as
// readyKeys do (readyLess), negative levels and saturated deep sums
// included.
func TestPackedItemsOrderAsPaths(t *testing.T) {
	// Levels 0..5 hold one clamped priority each; the last one sums the
	// levels below it, any int32.
	levels := []int32{MinPriority, -1_000_000 + 1, -256, -1, 0, 1, 255, 256, MaxPriority - 1, MaxPriority}
	last := append([]int32{math.MinInt32, math.MaxInt32, -64_000_000, 64_000_000}, levels...)
	rng := rand.New(rand.NewSource(12))
	key := func() readyKey {
		var k readyKey
		for i := range k.hprio[:PriorityLevels-1] {
			k.hprio[i] = levels[rng.Intn(len(levels))]
		}
		k.hprio[PriorityLevels-1] = last[rng.Intn(len(last))]
		return k
	}
	for range 50_000 {
		a, b := key(), key()
		ida, idb := int64(rng.Intn(3)), int64(rng.Intn(3))
		if got, want := itemLess(a.item(ida), b.item(idb)), readyLess(a.hprio, ida, b.hprio, idb); got != want {
			t.Fatalf("itemLess(%v, %v) = %v, readyLess %v", a.hprio, b.hprio, got, want)
		}
	}
}
