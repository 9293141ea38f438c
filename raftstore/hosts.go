package raftstore

import (
	"fmt"
	"sort"
	"strings"

	"github.com/croftfarm/croft/farm"
)

// Host is a render node as its agent describes it: one per agent, holding
// the agent's slots (each a Worker) and what it advertised when a slot last
// registered. A host exists while it has a slot: deleting or expiring its
// last worker forgets it. Times are unix nanoseconds stamped by the leader.
type Host struct {
	// Snapshots encode it as an array. Fields are appended at the end only.
	_struct struct{} `codec:",toarray"`

	Name string
	// Slots are the worker names of its slots, ascending.
	Slots []string
	// SlotCount is how many slots the agent said it runs (0: not said);
	// Slots may hold more for a while after the agent runs fewer.
	SlotCount   int
	CPUs        int   // logical CPUs, 0: not said
	TotalMemory int64 // MiB, 0: not measured
	// Interpreters are those the agent found on its PATH or was told of.
	Interpreters []HostInterpreter
	// Projects are the projects its slots serve (nil: the whole farm),
	// from the token of the last registration.
	Projects []string
	// FirstRegistered and LastRegistered are the times of its first and
	// last slot registration.
	FirstRegistered int64
	LastRegistered  int64
}

// HostInterpreter is an interpreter an agent advertises: its name and the
// absolute path of its executable on the host.
type HostInterpreter struct {
	_struct struct{} `codec:",toarray"`

	Name string
	Path string
}

// Interpreter is an interpreter configured on the coordinator: a name and
// the command template that runs code with it (see farm.Expand).
type Interpreter struct {
	// Snapshots encode it as an array. Fields are appended at the end only.
	_struct struct{} `codec:",toarray"`

	Name     string
	Template string
	// Uses is the detected interpreter that {interpreter} stands for and
	// that a host must offer to run this one; "" means Name.
	Uses    string
	Created int64
	Updated int64
}

// Detected is the name of the detected interpreter i runs with.
func (i *Interpreter) Detected() string {
	if i.Uses == "" {
		return i.Name
	}
	return i.Uses
}

// CheckHostInfo checks what an agent advertises of its host.
func CheckHostInfo(h *HostInfo) error {
	if err := CheckHostName(h.Name); err != nil {
		return err
	}
	if h.Slots < 0 || h.Slots > MaxHostSlots {
		return fmt.Errorf("%w: %d slots, outside 0..%d", ErrInvalid, h.Slots, MaxHostSlots)
	}
	if h.CPUs < 0 || h.CPUs > MaxHostCPUs {
		return fmt.Errorf("%w: %d CPUs, outside 0..%d", ErrInvalid, h.CPUs, MaxHostCPUs)
	}
	if h.TotalMemory < 0 {
		return invalid("total memory %d MiB is negative", h.TotalMemory)
	}
	if len(h.Interpreters) > MaxHostInterpreters {
		return fmt.Errorf("%w: %d interpreters, the limit is %d", ErrTooLarge, len(h.Interpreters), MaxHostInterpreters)
	}
	seen := make(map[string]bool, len(h.Interpreters))
	for _, in := range h.Interpreters {
		if err := farm.CheckInterpreterName(in.Name); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if seen[in.Name] {
			return invalid("interpreter %s is listed twice", in.Name)
		}
		seen[in.Name] = true
		if err := checkText("interpreter path", in.Path, farm.MaxInterpreterPath); err != nil {
			return err
		}
		if !strings.HasPrefix(in.Path, "/") || strings.ContainsAny(in.Path, "\r\n") {
			return invalid("interpreter %s: path %q is not one absolute path", in.Name, truncate(in.Path, 40))
		}
	}
	return nil
}

// CheckInterpreterSet checks a configured interpreter: its name, the name
// it uses, and its template (length, no NUL, known placeholders).
func CheckInterpreterSet(c *InterpreterSet) error {
	if err := farm.CheckInterpreterName(c.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if c.Uses != "" {
		if err := farm.CheckInterpreterName(c.Uses); err != nil {
			return fmt.Errorf("%w: uses: %w", ErrInvalid, err)
		}
	}
	if err := checkText("template", c.Template, farm.MaxTemplateBytes); err != nil {
		return err
	}
	if err := farm.CheckTemplate(c.Template); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// checkHostRoom checks that worker may become a slot of host hi.Name.
func (s *State) checkHostRoom(worker string, hi *HostInfo) error {
	if err := CheckHostInfo(hi); err != nil {
		return err
	}
	h := s.hosts[hi.Name]
	if h != nil && s.slotHost[worker] != hi.Name && len(h.Slots) >= MaxHostSlots {
		return fmt.Errorf("%w: host %q has %d slots, the limit", ErrTooLarge, hi.Name, MaxHostSlots)
	}
	return nil
}

// setHost makes worker a slot of host hi.Name (leaving its former host,
// if another) and records what the agent advertised. Checked first with
// checkHostRoom.
func (s *State) setHost(worker string, hi *HostInfo, projects []string, now int64) {
	if old := s.slotHost[worker]; old != "" && old != hi.Name {
		s.unlinkSlot(worker)
	}
	h := s.hosts[hi.Name]
	if h == nil {
		h = &Host{Name: hi.Name, FirstRegistered: now}
		s.hosts[h.Name] = h
		s.hostOrder.ReplaceOrInsert(h.Name)
	}
	if s.slotHost[worker] != h.Name {
		h.Slots = insertSortedString(h.Slots, worker)
		s.slotHost[worker] = h.Name
	}
	h.SlotCount, h.CPUs, h.TotalMemory = hi.Slots, hi.CPUs, hi.TotalMemory
	// Replaced, never changed in place: reads share the old slices.
	h.Interpreters = append([]HostInterpreter(nil), hi.Interpreters...)
	h.Projects = cloneStrings(projects)
	h.LastRegistered = now
}

// unlinkSlot takes worker out of its host's slots, and forgets a host left
// with none.
func (s *State) unlinkSlot(worker string) {
	name, ok := s.slotHost[worker]
	if !ok {
		return
	}
	delete(s.slotHost, worker)
	h := s.hosts[name]
	if h == nil {
		return
	}
	slots := make([]string, 0, len(h.Slots))
	for _, w := range h.Slots {
		if w != worker {
			slots = append(slots, w)
		}
	}
	if len(slots) > 0 {
		h.Slots = slots
		return
	}
	delete(s.hosts, name)
	s.hostOrder.Delete(name)
}

// insertSortedString returns a new slice with v inserted in ascending order.
func insertSortedString(l []string, v string) []string {
	i := sort.SearchStrings(l, v)
	out := make([]string, 0, len(l)+1)
	out = append(out, l[:i]...)
	out = append(out, v)
	return append(out, l[i:]...)
}

func (s *State) setInterpreter(c *InterpreterSet) error {
	if err := CheckInterpreterSet(c); err != nil {
		return err
	}
	in := s.interpreters[c.Name]
	if in == nil {
		if len(s.interpreters) >= MaxInterpreters {
			return fmt.Errorf("%w: %d interpreters are configured, the limit", ErrTooLarge, MaxInterpreters)
		}
		in = &Interpreter{Name: c.Name, Created: c.Now}
		s.interpreters[c.Name] = in
	}
	in.Template, in.Uses, in.Updated = c.Template, c.Uses, c.Now
	return nil
}

func (s *State) deleteInterpreter(c *InterpreterDelete) error {
	if s.interpreters[c.Name] == nil {
		return notFound("interpreter %q", c.Name)
	}
	delete(s.interpreters, c.Name)
	return nil
}

// ---------------------------------------------------------------------------
// Reads

// Serves reports whether the host's slots take work of project.
func (h *Host) Serves(project string) bool { return serves(h.Projects, project) }

// Host returns a host by name.
func (s *State) Host(name string) (Host, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h := s.hosts[name]
	if h == nil {
		return Host{}, false
	}
	return *h, true
}

// HostOf returns the name of the host worker is a slot of, if any.
func (s *State) HostOf(worker string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	name, ok := s.slotHost[worker]
	return name, ok
}

// HostsAfter returns up to n hosts whose names sort after after, in name
// order, looking at no more than ScanLimit; next and more are as for
// JobsAfter. The slices inside are shared: read them, do not write.
func (s *State) HostsAfter(after string, n int) (page []Host, next string, more bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	next = after
	n = min(n, ScanLimit)
	s.hostOrder.AscendGreaterOrEqual(after, func(name string) bool {
		if name == after && after != "" {
			return true
		}
		if len(page) >= n {
			more = true
			return false
		}
		page = append(page, *s.hosts[name])
		next = name
		return true
	})
	return page, next, more
}

// HostCount returns the number of hosts.
func (s *State) HostCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.hosts)
}

// Interpreters returns the configured interpreters in name order (at most
// MaxInterpreters).
func (s *State) Interpreters() []Interpreter {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Interpreter, 0, len(s.interpreters))
	for _, name := range sortedKeys(keysOf(s.interpreters)) {
		out = append(out, *s.interpreters[name])
	}
	return out
}

// ConfiguredInterpreter returns a configured interpreter by name.
func (s *State) ConfiguredInterpreter(name string) (Interpreter, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	in := s.interpreters[name]
	if in == nil {
		return Interpreter{}, false
	}
	return *in, true
}
