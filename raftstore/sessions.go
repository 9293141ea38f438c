package raftstore

import (
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/croftfarm/croft/farm"
)

// Session kinds (Session.Kind).
const (
	// SessionGroup is a schedule group: jobs that belong together and
	// run, anywhere their affinity allows, once the session is started
	// (Freezer's sessions).
	SessionGroup = "group"
	// SessionContext is an execution context bound to one host and one
	// interpreter: its jobs run there one at a time, in submission order
	// (Jupyter kernels, SAS Compute sessions).
	SessionContext = "context"
)

// Session states (Session.State). Busy or idle is derived (Session.Busy).
const (
	SessionStateOpen   = "open"
	SessionStateClosed = "closed"
)

// Limits of sessions; refused with ErrTooLarge (sizes, counts) or
// ErrInvalid (forbidden bytes).
const (
	// MaxSessions bounds the sessions of the farm, MaxProjectSessions
	// those of one project, MaxHostSessions the open context sessions
	// bound to one host (the host-pinned part of a pick looks at each).
	MaxSessions        = 100_000
	MaxProjectSessions = 1_000
	MaxHostSessions    = 64
	// MaxSessionJobs bounds the jobs submitted to one session.
	MaxSessionJobs = 10_000
	// MaxSessionDoc bounds the opaque document a dialect keeps on a session.
	MaxSessionDoc = 64 << 10
	// MaxSessionLabels bounds the labels of a session, MaxLabelKey and
	// MaxLabelValue each label's key and value (bytes).
	MaxSessionLabels = 64
	MaxLabelKey      = 128
	MaxLabelValue    = 1 << 10
	// MaxCodeBytes bounds the code of one submission; the command it
	// expands to must also fit MaxCommandBytes.
	MaxCodeBytes = 16 << 10
	// SessionIDLen is the length of a session id: 32 lowercase hex digits.
	SessionIDLen = 32
)

// Session is a neutral session of the farm: a schedule group, or an
// execution context bound to one host and interpreter (see DESIGN.md,
// "Sessions"). Times are unix nanoseconds stamped by the leader.
type Session struct {
	// Snapshots encode it as an array. Fields are appended at the end only.
	_struct struct{} `codec:",toarray"`

	ID      string
	Project string
	Name    string
	Kind    string
	// Host and Interpreter bind a context session; "" for a group.
	Host        string
	Interpreter string
	State       string
	Created     int64
	// LastActivity is stamped by every command that touches the session,
	// and when one of its jobs ends.
	LastActivity int64
	// InactiveTimeout, in seconds (0: none), closes an open session idle
	// for longer (a leader duty, SessionExpire).
	InactiveTimeout int64
	// Closed is when the session was closed, 0 while open.
	Closed int64
	// Reason says why it was closed: "closed" (by a user) or "expired".
	Reason string
	// Doc and Labels are the dialect's data, opaque to the farm; both are
	// replaced whole, never changed in place (readers share them).
	Doc    []byte
	Labels map[string]string
	// Jobs are its jobs' ids in submission order (ascending).
	Jobs []int64
	// Revision counts the changes of the record: 1 when opened, one more
	// for each command that changes it (update, close, submit, start,
	// expiry, a docs write, a job of it deleted). Its last activity alone
	// (a touch, a job ending) is not a change: a compare-and-set of a
	// busy session's doc would fail at every job end. 0 is unknown (a
	// session of an older snapshot): the next change makes it 1.
	Revision int64

	// Derived, not replicated: how many of its jobs run, and the index
	// in Jobs of the first job that has not ended (context sessions).
	running int
	next    int
}

// Busy reports whether one of the session's jobs runs (Jupyter's
// execution_state busy, SAS's running); idle otherwise.
func (x *Session) Busy() bool { return x.running > 0 }

// Reasons a session was closed (Session.Reason).
const (
	SessionClosedByUser = "closed"
	SessionExpired      = "expired"
)

// SessionOpen opens a session. The leader draws the id (crypto
// random) and stamps it. The result is the *Session opened (a copy).
type SessionOpen struct {
	Now             int64
	ID              string
	Project         string
	Name            string
	Kind            string
	Interpreter     string
	InactiveTimeout int64
	Doc             []byte
	Labels          map[string]string
}

// SessionUpdate changes an open or closed session's name, labels, doc or
// timeout (nil: unchanged).
type SessionUpdate struct {
	Now             int64
	ID              string
	Name            *string
	Labels          *map[string]string
	Doc             *[]byte
	InactiveTimeout *int64
	// IfRevision, when not 0, refuses the update with ErrConflict unless
	// the session is at this revision (compare-and-set).
	IfRevision int64
	// Interpreter, when set, rebinds an open context session to another
	// interpreter (Jupyter's kernel change): its jobs that have not ended
	// are canceled, as the old kernel is shut down, and it is bound to a
	// host that offers the new one, chosen as at open.
	Interpreter *string
}

// SessionClose closes a session and cancels its jobs that have not ended.
type SessionClose struct {
	Now int64
	ID  string
}

// SessionDelete forgets a closed session, with its jobs.
type SessionDelete struct {
	Now int64
	ID  string
}

// SessionSubmit creates a job in an open session; the result is its id
// (int64). In a context session the job runs Code with the session's
// interpreter on its host (see sessionCommand); in a group session Code
// is the job's shell command, and the job waits (paused) until the next
// SessionStart.
type SessionSubmit struct {
	Now   int64
	ID    string
	Title string
	Code  string
	// MaxProjectJobs is the leader's project quota, as in JobCreate.
	MaxProjectJobs int
}

// SessionStart starts a group session: its paused jobs become runnable.
type SessionStart struct {
	Now int64
	ID  string
}

// SessionExpire closes the named sessions that have been inactive past
// their timeout at Now; the FSM checks the condition again, so a session
// touched meanwhile stays open.
type SessionExpire struct {
	Now int64
	IDs []string
}

func (SessionOpen) Type() MessageType   { return MsgSessionOpen }
func (SessionUpdate) Type() MessageType { return MsgSessionUpdate }
func (SessionClose) Type() MessageType  { return MsgSessionClose }
func (SessionDelete) Type() MessageType { return MsgSessionDelete }
func (SessionSubmit) Type() MessageType { return MsgSessionSubmit }
func (SessionStart) Type() MessageType  { return MsgSessionStart }
func (SessionExpire) Type() MessageType { return MsgSessionExpire }

// ValidSessionID checks a session id: SessionIDLen lowercase hex digits.
func ValidSessionID(id string) error {
	if len(id) != SessionIDLen || strings.Trim(id, "0123456789abcdef") != "" {
		return invalid("session id %q: %d lowercase hex digits expected", truncate(id, 40), SessionIDLen)
	}
	return nil
}

// CheckLabels checks a session's labels against the limits.
func CheckLabels(labels map[string]string) error {
	if len(labels) > MaxSessionLabels {
		return fmt.Errorf("%w: %d labels, the limit is %d", ErrTooLarge, len(labels), MaxSessionLabels)
	}
	for _, k := range sortedKeys(keysOf(labels)) {
		if k == "" {
			return invalid("a label key is empty")
		}
		if err := checkText("label key", k, MaxLabelKey); err != nil {
			return err
		}
		if err := checkText("label "+truncate(k, 40), labels[k], MaxLabelValue); err != nil {
			return err
		}
	}
	return nil
}

// CheckSessionFields checks what a client may set on a session: name,
// labels, doc and timeout (nil: not set).
func CheckSessionFields(name *string, labels *map[string]string, doc *[]byte, timeout *int64) error {
	if name != nil {
		if err := CheckName("name", *name); err != nil {
			return err
		}
	}
	if labels != nil {
		if err := CheckLabels(*labels); err != nil {
			return err
		}
	}
	if doc != nil && len(*doc) > MaxSessionDoc {
		return fmt.Errorf("%w: doc is %d bytes, the limit is %d", ErrTooLarge, len(*doc), MaxSessionDoc)
	}
	if timeout != nil {
		if err := checkTimeout(*timeout); err != nil {
			return fmt.Errorf("inactive_timeout: %w", err)
		}
	}
	return nil
}

// CheckSessionOpen checks an open command's fields (not the state).
func CheckSessionOpen(c *SessionOpen) error {
	if err := ValidSessionID(c.ID); err != nil {
		return err
	}
	switch c.Kind {
	case SessionContext:
		if err := farm.CheckInterpreterName(c.Interpreter); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	case SessionGroup:
		if c.Interpreter != "" {
			return invalid("a group session has no interpreter")
		}
	default:
		return invalid("session kind %q: %q or %q", truncate(c.Kind, 40), SessionGroup, SessionContext)
	}
	if c.Project != "" {
		if err := ValidProjectName(c.Project); err != nil {
			return err
		}
	}
	return CheckSessionFields(&c.Name, &c.Labels, &c.Doc, &c.InactiveTimeout)
}

// CheckCode checks submitted code: its size, and no NUL byte.
func CheckCode(code string) error {
	if strings.TrimSpace(code) == "" {
		return invalid("code is empty")
	}
	return checkText("code", code, MaxCodeBytes)
}

// ---------------------------------------------------------------------------
// Apply

func (s *State) openSession(c *SessionOpen) (*Session, error) {
	if err := CheckSessionOpen(c); err != nil {
		return nil, err
	}
	project := c.Project
	if project == "" {
		project = DefaultProject
	}
	p := s.projects[project]
	switch {
	case p == nil:
		return nil, notFound("project %q", project)
	case s.sessions[c.ID] != nil:
		return nil, invalid("session %s exists", c.ID)
	case len(s.sessions) >= MaxSessions:
		return nil, fmt.Errorf("%w: the farm has %d sessions, the limit", ErrTooLarge, MaxSessions)
	case p.sessions >= MaxProjectSessions:
		return nil, fmt.Errorf("%w: project %q has %d sessions, the limit", ErrTooLarge, project, MaxProjectSessions)
	}
	x := &Session{
		ID: c.ID, Project: project, Name: c.Name, Kind: c.Kind, State: SessionStateOpen,
		Created: c.Now, LastActivity: c.Now, InactiveTimeout: c.InactiveTimeout,
		Doc: cloneBytes(c.Doc), Labels: maps.Clone(c.Labels),
	}
	s.revise(&x.Revision) // 1, from release 2 on
	if c.Kind == SessionContext {
		host, err := s.chooseHost(project, c.Interpreter)
		if err != nil {
			return nil, err
		}
		x.Host, x.Interpreter = host, c.Interpreter
	}
	s.addSession(x)
	out := *x
	return &out, nil
}

// revise counts a change of a session's or a template's record made by
// one of the commands that came before revisions, from release 2 on (see
// Release): their entries of an older release replay as they applied
// then. A DocsWrite, newer, always counts.
func (s *State) revise(rev *int64) {
	if s.release >= 2 {
		*rev++
	}
}

// checkRevision refuses a compare-and-set write with ErrConflict when
// the record (what id) is at revision have, not want; want 0 accepts any.
func checkRevision(what, id string, have, want int64) error {
	if want != 0 && have != want {
		return conflict(what, id, have, want)
	}
	return nil
}

// resolveInterpreter returns the template and the detected interpreter a
// session's interpreter name runs with: a configured one's, or the
// default template of a detected one of that name.
func (s *State) resolveInterpreter(name string) (template, detected string) {
	if in := s.interpreters[name]; in != nil {
		return in.Template, in.Detected()
	}
	return farm.DefaultInterpreterTemplate, name
}

// interpreterPath returns the path host h advertises for detected, if any.
func interpreterPath(h *Host, detected string) (string, bool) {
	for _, in := range h.Interpreters {
		if in.Name == detected {
			return in.Path, true
		}
	}
	return "", false
}

// chooseHost picks the host of a new context session: among the hosts
// that offer the interpreter, serve the project and have room, the one
// with the fewest open context sessions, ties by name (hostOrder).
func (s *State) chooseHost(project, interpreter string) (string, error) {
	_, detected := s.resolveInterpreter(interpreter)
	best, bestN, full := "", 0, 0
	s.hostOrder.Ascend(func(name string) bool {
		h := s.hosts[name]
		if _, ok := interpreterPath(h, detected); !ok || !serves(h.Projects, project) {
			return true
		}
		n := len(s.hostSessions[name])
		if n >= MaxHostSessions {
			full++
			return true
		}
		if best == "" || n < bestN {
			best, bestN = name, n
		}
		return true
	})
	switch {
	case best != "":
		return best, nil
	case full > 0:
		return "", fmt.Errorf("%w: every host that offers interpreter %q to project %q has %d open sessions, the limit", ErrTooLarge, interpreter, project, MaxHostSessions)
	}
	return "", fmt.Errorf("%w: interpreter %q (it runs with %q) to project %q", ErrNoHost, interpreter, detected, project)
}

func (s *State) session(id string) (*Session, error) {
	x := s.sessions[id]
	if x == nil {
		return nil, notFound("session %q", truncate(id, 40))
	}
	return x, nil
}

func (s *State) updateSession(c *SessionUpdate) error {
	x, err := s.session(c.ID)
	if err != nil {
		return err
	}
	if err := checkRevision("session", x.ID, x.Revision, c.IfRevision); err != nil {
		return err
	}
	if err := CheckSessionFields(c.Name, c.Labels, c.Doc, c.InactiveTimeout); err != nil {
		return err
	}
	host := ""
	if c.Interpreter != nil {
		if host, err = s.rebindHost(x, *c.Interpreter); err != nil {
			return err
		}
	}
	if c.Name != nil || c.Labels != nil || c.Doc != nil || c.InactiveTimeout != nil || c.Interpreter != nil {
		s.revise(&x.Revision) // a touch (no field) is activity, not a change
	}
	if c.Interpreter != nil {
		s.cancelUnended(x, c.Now)
		s.unbindHost(x)
		x.Host, x.Interpreter = host, *c.Interpreter
		s.hostSessions[host] = insertSortedString(s.hostSessions[host], x.ID)
	}
	if c.Name != nil {
		x.Name = *c.Name
	}
	if c.Labels != nil {
		x.Labels = maps.Clone(*c.Labels)
	}
	if c.Doc != nil {
		x.Doc = cloneBytes(*c.Doc)
	}
	if c.InactiveTimeout != nil {
		x.InactiveTimeout = *c.InactiveTimeout
	}
	x.LastActivity = c.Now
	return nil
}

func (s *State) closeSession(c *SessionClose) error {
	x, err := s.session(c.ID)
	if err != nil {
		return err
	}
	if x.State == SessionStateClosed {
		return nil // closing twice is closing once
	}
	s.endSession(x, SessionClosedByUser, c.Now)
	return nil
}

// endSession closes x: its jobs that have not ended are canceled (a
// running one is stopped, its agent told to kill it), it leaves its host.
func (s *State) endSession(x *Session, reason string, now int64) {
	x.State, x.Closed, x.Reason, x.LastActivity = SessionStateClosed, now, reason, now
	s.revise(&x.Revision)
	s.unbindHost(x)
	s.cancelUnended(x, now)
}

// cancelUnended cancels x's jobs that have not ended (a running one is
// stopped, its agent told to kill it).
func (s *State) cancelUnended(x *Session, now int64) {
	for _, id := range x.Jobs {
		if j := s.jobs[id]; j != nil && j.State != StateFinished && j.State != StateCanceled {
			s.cancelJob(j, now)
		}
	}
}

// rebindHost checks that open context session x may change to
// interpreter, and returns the host it would be bound to: one that offers
// it, chosen as at open (x's own binding does not count against its
// host's room). It changes nothing.
func (s *State) rebindHost(x *Session, interpreter string) (string, error) {
	switch {
	case x.Kind != SessionContext:
		return "", invalid("session %s is a %s session: it has no interpreter", x.ID, x.Kind)
	case x.State != SessionStateOpen:
		return "", invalid("session %s is closed", x.ID)
	}
	if err := farm.CheckInterpreterName(interpreter); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	s.unbindHost(x)
	host, err := s.chooseHost(x.Project, interpreter)
	s.hostSessions[x.Host] = insertSortedString(s.hostSessions[x.Host], x.ID)
	return host, err
}

func (s *State) deleteSession(c *SessionDelete) error {
	x, err := s.session(c.ID)
	if err != nil {
		return err
	}
	if x.State != SessionStateClosed {
		return invalid("session %s is open: close it first", x.ID)
	}
	var ids []int64
	for _, id := range x.Jobs {
		if s.jobs[id] != nil {
			ids = append(ids, id)
		}
	}
	if err := s.deleteJobs(&JobDelete{Now: c.Now, IDs: ids}); err != nil {
		return err
	}
	s.dropSession(x)
	return nil
}

func (s *State) submitCode(c *SessionSubmit) (int64, error) {
	x, err := s.session(c.ID)
	if err != nil {
		return 0, err
	}
	if err := CheckCode(c.Code); err != nil {
		return 0, err
	}
	if err := checkText("title", c.Title, MaxTitleBytes); err != nil {
		return 0, err
	}
	switch {
	case x.State != SessionStateOpen:
		return 0, invalid("session %s is closed", x.ID)
	case len(x.Jobs) >= MaxSessionJobs:
		return 0, fmt.Errorf("%w: session %s has %d jobs, the limit", ErrTooLarge, x.ID, MaxSessionJobs)
	}
	spec := JobSpec{Title: c.Title, Command: c.Code, Project: x.Project}
	if x.Kind == SessionContext {
		if spec.Command, err = s.sessionCommand(x, c.Code); err != nil {
			return 0, err
		}
	} else {
		spec.Paused = true // until the session is started
	}
	if spec.Title == "" {
		spec.Title = "session " + x.ID[:8]
	}
	ids, err := s.createJobs(&JobCreate{Now: c.Now, Jobs: []JobSpec{spec}, MaxProjectJobs: c.MaxProjectJobs})
	if err != nil {
		return 0, err
	}
	j := s.jobs[ids[0]]
	j.Session = x.ID
	s.reindex(j) // a context session's job leaves the shared index
	x.Jobs = append(x.Jobs[:len(x.Jobs):len(x.Jobs)], j.ID)
	x.LastActivity = c.Now
	s.revise(&x.Revision)
	s.readyGrew = true // its host's pulls look again
	return j.ID, nil
}

// sessionCommand is the shell command that runs code with context
// session x's interpreter on its host: the interpreter's template
// expanded with {interpreter} (the host's path of it), {code} (the code)
// and {file}: a temporary file that the command itself writes the code
// to and removes after, keeping the exit code, so agents need nothing new:
//
//	f=$(mktemp) || exit 1; printf %s 'CODE' >"$f" || { rm -f "$f"; exit 1; }; EXPANDED; rc=$?; rm -f "$f"; exit $rc
func (s *State) sessionCommand(x *Session, code string) (string, error) {
	h := s.hosts[x.Host]
	if h == nil {
		return "", invalid("session %s: its host %q is gone", x.ID, x.Host)
	}
	tmpl, detected := s.resolveInterpreter(x.Interpreter)
	path, ok := interpreterPath(h, detected)
	if !ok {
		return "", invalid("session %s: host %q no longer offers %q", x.ID, x.Host, detected)
	}
	// {file} stands for "$f", which no quoted value can produce: expand
	// it to a marker no value holds (NUL: templates, paths and code
	// cannot contain one), then swap the marker's quoted form.
	const marker = "\x00file\x00"
	cmd, err := farm.Expand(tmpl, map[string]string{
		farm.PlaceholderInterpreter: path, farm.PlaceholderCode: code, farm.PlaceholderFile: marker,
	})
	if err != nil {
		return "", fmt.Errorf("%w: interpreter %q: %w", ErrInvalid, x.Interpreter, err)
	}
	if quoted := farm.ShellQuote(marker); strings.Contains(cmd, quoted) {
		cmd = strings.ReplaceAll(cmd, quoted, `"$f"`)
		cmd = `f=$(mktemp) || exit 1; printf %s ` + farm.ShellQuote(code) + ` >"$f" || { rm -f "$f"; exit 1; }; ` +
			cmd + `; rc=$?; rm -f "$f"; exit $rc`
	}
	if len(cmd) > MaxCommandBytes {
		return "", fmt.Errorf("%w: the code expands to a %d-byte command, the limit is %d", ErrTooLarge, len(cmd), MaxCommandBytes)
	}
	return cmd, nil
}

func (s *State) startSession(c *SessionStart) error {
	x, err := s.session(c.ID)
	if err != nil {
		return err
	}
	if x.State != SessionStateOpen {
		return invalid("session %s is closed", x.ID)
	}
	if x.Kind != SessionGroup {
		return invalid("session %s is a %s session: only a group session is started", x.ID, x.Kind)
	}
	for _, id := range x.Jobs {
		if j := s.jobs[id]; j != nil && j.Paused {
			s.startJob(j, c.Now)
		}
	}
	x.LastActivity = c.Now
	s.revise(&x.Revision)
	return nil
}

// SessionInactive reports whether open session x has been inactive past
// its timeout at now: the rule of session expiry, the same for the leader
// that proposes and the FSM that applies. A busy session is active.
func SessionInactive(x *Session, now int64) bool {
	return x.State == SessionStateOpen && x.running == 0 && overdue(now, x.LastActivity, x.InactiveTimeout)
}

func (s *State) expireSessions(c *SessionExpire) {
	ids := append([]string(nil), c.IDs...)
	sort.Strings(ids)
	for _, id := range ids {
		if x := s.sessions[id]; x != nil && SessionInactive(x, c.Now) {
			s.endSession(x, SessionExpired, c.Now)
		}
	}
}

// ---------------------------------------------------------------------------
// Upkeep

// addSession puts a session in the state's maps and derived indexes.
func (s *State) addSession(x *Session) {
	s.sessions[x.ID] = x
	s.sessionOrder.ReplaceOrInsert(x.ID)
	if p := s.projects[x.Project]; p != nil {
		p.sessions++
	}
	if x.State == SessionStateOpen && x.Kind == SessionContext && x.Host != "" {
		s.hostSessions[x.Host] = insertSortedString(s.hostSessions[x.Host], x.ID)
	}
	x.running, x.next = 0, 0
	for _, id := range x.Jobs {
		if j := s.jobs[id]; j != nil && j.State == StateRunning && !j.IsGroup() {
			x.running++
		}
	}
	s.advanceSession(x)
}

// dropSession forgets a session (its jobs are gone or stay as plain jobs).
func (s *State) dropSession(x *Session) {
	s.unbindHost(x)
	delete(s.sessions, x.ID)
	s.sessionOrder.Delete(x.ID)
	if p := s.projects[x.Project]; p != nil {
		p.sessions--
	}
}

// unbindHost takes x out of its host's open sessions.
func (s *State) unbindHost(x *Session) {
	l := s.hostSessions[x.Host]
	i := sort.SearchStrings(l, x.ID)
	if i == len(l) || l[i] != x.ID {
		return
	}
	if len(l) == 1 {
		delete(s.hostSessions, x.Host)
		return
	}
	out := make([]string, 0, len(l)-1)
	s.hostSessions[x.Host] = append(append(out, l[:i]...), l[i+1:]...)
}

// sessionJobEnded reports whether j no longer holds back the jobs after
// it in its session: finished, canceled, or failed with no retry left.
func sessionJobEnded(j *Job) bool {
	switch j.State {
	case StateFinished, StateCanceled:
		return true
	case StateFailed:
		return j.RunDone >= j.Retry
	}
	return false
}

// advanceSession moves x's cursor past the jobs that ended. It walks at
// most the session's jobs.
func (s *State) advanceSession(x *Session) {
	for x.next < len(x.Jobs) {
		if j := s.jobs[x.Jobs[x.next]]; j != nil && !sessionJobEnded(j) {
			return
		}
		x.next++
	}
}

// sessionJobChanged keeps a session's derived counters in step with a
// change of one of its jobs (called from changed, before the job's
// index entry is updated): the running count, the cursor and, when a job
// ends, the last activity.
func (s *State) sessionJobChanged(j *Job, oldState string, now int64) {
	x := s.sessions[j.Session]
	if x == nil || j.IsGroup() {
		return
	}
	was, is := oldState == StateRunning, j.State == StateRunning
	switch {
	case was && !is:
		x.running--
		x.LastActivity = max(x.LastActivity, now)
		s.readyGrew = true // the next job of the session may run
	case !was && is:
		x.running++
	}
	i := sort.Search(len(x.Jobs), func(i int) bool { return x.Jobs[i] >= j.ID })
	if i == len(x.Jobs) || x.Jobs[i] != j.ID {
		return
	}
	if !sessionJobEnded(j) && i < x.next {
		x.next = i
	}
	s.advanceSession(x)
}

// sessionJobGone takes a deleted job out of its session.
func (s *State) sessionJobGone(j *Job) {
	x := s.sessions[j.Session]
	if x == nil {
		return
	}
	if j.State == StateRunning && !j.IsGroup() {
		x.running--
	}
	x.Jobs = without(x.Jobs, j.ID)
	if len(x.Jobs) == 0 {
		x.Jobs = nil
	}
	s.revise(&x.Revision)
	x.next = 0
	s.advanceSession(x)
}

// pinned reports whether j runs only through its session's host (a job
// of a context session), never from the shared ready index.
func (s *State) pinned(j *Job) bool {
	x := s.sessions[j.Session]
	return x != nil && x.Kind == SessionContext
}

// sessionPick returns the job a slot of host should run from the host's
// context sessions, or nil: of each session only the first job that has
// not ended, when it is runnable; of those, the oldest. It looks at no
// more than MaxHostSessions sessions.
func (s *State) sessionPick(host string, projects []string) *Job {
	var best *Job
	for _, id := range s.hostSessions[host] {
		x := s.sessions[id]
		if x == nil || x.next >= len(x.Jobs) {
			continue
		}
		j := s.jobs[x.Jobs[x.next]]
		if j == nil || j.IsGroup() || j.HPaused || !serves(projects, j.Project) {
			continue
		}
		if j.State != StateWaiting && (j.State != StateFailed || j.RunDone >= j.Retry) {
			continue
		}
		if best == nil || j.ID < best.ID {
			best = j
		}
	}
	return best
}

// pickFor returns the job worker w should run: first a job of a context
// session bound to w's host, then the oldest job pinned to w's host that
// w may take, then the best of the shared ready index.
func (s *State) pickFor(w *Worker) *Job {
	if len(s.hostSessions) > 0 || len(s.hostPinned) > 0 {
		if h, ok := s.slotHost[w.Name]; ok {
			if j := s.sessionPick(h, w.Projects); j != nil {
				return j
			}
			if j := s.pinnedPick(h, w); j != nil {
				return j
			}
		}
	}
	if k, ok := s.ready.pick(w.lines, w.Projects); ok {
		return s.jobs[k.id]
	}
	return nil
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// ---------------------------------------------------------------------------
// Reads

// SessionView is a session as readers see it: a copy, with its derived
// busy flag.
type SessionView struct {
	Session
	// Busy is true while one of its jobs runs.
	Busy bool
}

func viewSession(x *Session) SessionView {
	v := SessionView{Session: *x, Busy: x.running > 0}
	v.Session.running, v.Session.next = 0, 0
	return v
}

// Session returns a session by id.
func (s *State) Session(id string) (SessionView, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	x := s.sessions[id]
	if x == nil {
		return SessionView{}, false
	}
	return viewSession(x), true
}

// SessionsAfter returns up to n sessions kept by keep whose ids sort after
// after, in id order, looking at no more than ScanLimit; next and more
// are as for JobsAfter. The slices and maps inside are shared: read them,
// do not write.
func (s *State) SessionsAfter(after string, n int, keep func(*SessionView) bool) (page []SessionView, next string, more bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	next = after
	n = min(n, ScanLimit)
	scanned := 0
	s.sessionOrder.AscendGreaterOrEqual(after, func(id string) bool {
		if id == after && after != "" {
			return true
		}
		if len(page) >= n || scanned >= ScanLimit {
			more = true
			return false
		}
		scanned++
		next = id
		v := viewSession(s.sessions[id])
		if keep == nil || keep(&v) {
			page = append(page, v)
		}
		return true
	})
	return page, next, more
}

// ExpiredSessions returns the ids of the open sessions inactive past
// their timeout at now, at most n.
func (s *State) ExpiredSessions(now int64, n int) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	s.sessionOrder.Ascend(func(id string) bool {
		if SessionInactive(s.sessions[id], now) {
			out = append(out, id)
		}
		return len(out) < n
	})
	return out
}
