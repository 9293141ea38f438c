package raftstore

// Cancel: a user stops jobs for good (until a reset or a start). Its rules
// are the farm's, the same for every dialect; DESIGN.md ("Cancel").

// cancelJob cancels the leaves of j's subtree that are not finished (j
// itself when it is a leaf). A running attempt ends and its worker is
// freed; the agent's next report or heartbeat is refused as stale, which
// tells it to kill the process. Groups derive their state from the
// counters. Like every walk of a subtree in Apply, it uses an explicit
// stack (see refreshH) and skips subtrees with nothing to cancel.
func (s *State) cancelJob(j *Job, now int64) {
	stack := []*Job{j}
	for budget := len(s.jobs) + 1; len(stack) > 0 && budget > 0; budget-- {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if x.IsGroup() {
			if x.TotalFinished+x.TotalCanceled < x.Total {
				stack = s.pushChildren(stack, x)
			}
			continue
		}
		switch x.State {
		case StateFinished, StateCanceled:
		case StateRunning:
			s.endAttempt(x, StateCanceled, stopped(ReasonCanceled, "job canceled"), now)
		default:
			before, old := contribution(x), x.State
			x.State = StateCanceled
			s.changed(x, before, old, now)
		}
	}
}

// uncancel makes the canceled leaves of j's subtree waiting (or blocked)
// again: the first half of a start. Paused jobs stay paused.
func (s *State) uncancel(j *Job, now int64) {
	stack := []*Job{j}
	for budget := len(s.jobs) + 1; len(stack) > 0 && budget > 0; budget-- {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if x.IsGroup() && x.Total > 0 {
			if x.TotalCanceled > 0 {
				stack = s.pushChildren(stack, x)
			}
			continue
		}
		// A leaf, or an empty group that kept the state of its last
		// children (groupState).
		if x.State == StateCanceled {
			before, old := contribution(x), x.State
			x.State = s.depState(x)
			s.changed(x, before, old, now)
		}
	}
}
