package raftstore

// Release is the release of this code's apply rules. It is bumped when
// apply's behaviour for an existing command changes in a way that changes
// the state (a new field filled in, a log line worded differently): a
// replica that replays entries written before the change must apply them
// as the release that wrote them did, or it would differ from a replica
// that restored a snapshot taken after them. Rules that come with a bump
// test s.release; SetRelease, proposed by a leader of the new release,
// switches every replica at the same index.
//
//   - 0: the first release (Coalition-named states, one log byte stream).
//   - 1: runs (try numbers, exit codes, signals, reasons) and the farm's
//     log lines worded "try 2 of 10 on render-042 started", "exit code 3".
//   - 2: revisions of sessions and templates (Session.Revision,
//     Template.Revision): an open or a create sets 1, the commands that
//     change the record add one.
const Release = 2

// Release returns the release whose apply rules are in force.
func (s *State) Release() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.release
}
