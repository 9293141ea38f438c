package raftstore

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// Limits of what one job, worker or request may hold. They bound the
// memory, snapshot size and reply size that one request can cause, whatever
// the farm's size. The API edge checks them before it proposes anything
// (CheckSpec, CheckPatch...), so a client learns which field is at fault
// (413 for a size, 400 for a forbidden byte). They are documented in
// docs/SECURITY.md; change them together.
const (
	MaxTitleBytes       = 4 << 10  // title, dir, url
	MaxCommandBytes     = 64 << 10 // command
	MaxEnvironmentBytes = 64 << 10 // environment, all of it
	MaxNameBytes        = 255      // user, worker names
	MaxAffinityBytes    = 4 << 10  // a job's or a worker's affinity lines
	MaxAffinityName     = 64       // one affinity name
	MaxPatternBytes     = 256      // progress_pattern
	MaxDependencies     = 10_000   // dependencies of one job
	// MaxTimeout is the longest timeout, in seconds (about 68 years): its
	// nanoseconds fit an int64 with room to add a start time.
	MaxTimeout = 1<<31 - 1
	// MaxRetry is the most retries a job may ask for.
	MaxRetry = 10_000
	// MinPriority and MaxPriority bound a job's priority: plain
	// integers, higher runs first; each dialect maps its own range into
	// it (Coalition: 0..255).
	MinPriority = -1_000_000
	MaxPriority = 1_000_000
	// MaxWorkers bounds the workers of a farm: a registration past it is
	// refused (a forged or runaway agent cannot grow the state forever).
	MaxWorkers = 100_000
)

// Limits of hosts and interpreters. A host exists only while it has a
// slot, so MaxWorkers bounds the hosts too.
const (
	// MaxHostSlots bounds the slots of one host.
	MaxHostSlots = 1024
	// MaxHostCPUs bounds the CPU count a host advertises.
	MaxHostCPUs = 4096
	// MaxHostInterpreters bounds the interpreters one host advertises
	// (names and paths: farm.MaxInterpreterName, farm.MaxInterpreterPath).
	MaxHostInterpreters = 64
	// MaxInterpreters bounds the interpreters configured on the
	// coordinator (templates: farm.MaxTemplateBytes).
	MaxInterpreters = 256
)

// Limits of templates and executions (templates.go). An execution lives
// as long as its job, so the jobs' quota bounds the executions.
const (
	// MaxProjectTemplates bounds the templates of one project.
	MaxProjectTemplates = 10_000
	// MaxMainBytes bounds a template's main reference (an inline
	// script); its command is bounded by farm.MaxCommandTemplateBytes.
	MaxMainBytes = 32 << 10
	// MaxWordBytes bounds a template's type and a label's key.
	MaxWordBytes = 64
	// MaxDocBytes bounds the dialect's document of a template or an
	// execution.
	MaxDocBytes = 64 << 10
	// MaxLabels bounds a template's labels, MaxLabelValueBytes each value.
	MaxLabels          = 64
	MaxLabelValueBytes = 1 << 10
	// MaxArgs and MaxArgsBytes bound an execution's arguments: their
	// count and their bytes, all of them.
	MaxArgs      = 1_000
	MaxArgsBytes = 32 << 10
	// MaxParams bounds an execution's parameters; with the template's
	// environment they are bounded as a job's (MaxEnvironmentBytes).
	MaxParams = 1_000
	// MaxHostPinned bounds the executions pinned to one host (Execute
	// with a Host), ended ones included until they are deleted: a pick
	// by one of its slots looks at its runnable ones.
	MaxHostPinned = 10_000
)

// checkText checks one string field: its length, and no NUL byte (commands
// and environments reach execve, which cannot carry one; a NUL would fail
// every retry of the job).
func checkText(field, v string, maxBytes int) error {
	if len(v) > maxBytes {
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrTooLarge, field, len(v), maxBytes)
	}
	if strings.IndexByte(v, 0) >= 0 {
		return fmt.Errorf("%w: %s contains a NUL byte", ErrInvalid, field)
	}
	return nil
}

// CheckName checks a worker, user or other one-line name.
func CheckName(field, v string) error {
	if err := checkText(field, v, MaxNameBytes); err != nil {
		return err
	}
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("%w: %s must be one line", ErrInvalid, field)
	}
	return nil
}

// CheckAffinity checks affinity lines: their size and each name's.
func CheckAffinity(field, aff string) error {
	if err := checkText(field, aff, MaxAffinityBytes); err != nil {
		return err
	}
	for _, line := range strings.Split(aff, "\n") {
		for _, name := range strings.Split(line, ",") {
			if n := strings.TrimSpace(name); len(n) > MaxAffinityName {
				return fmt.Errorf("%w: %s: affinity name %q is %d bytes, the limit is %d", ErrTooLarge, field, truncate(n, 40), len(n), MaxAffinityName)
			}
		}
	}
	return nil
}

// checkTimeout checks a timeout in seconds.
func checkTimeout(t int64) error {
	if t < 0 || t > MaxTimeout {
		return fmt.Errorf("%w: timeout %d is outside 0..%d seconds", ErrInvalid, t, MaxTimeout)
	}
	return nil
}

func checkRetry(n int) error {
	if n < 0 || n > MaxRetry {
		return fmt.Errorf("%w: retry %d is outside 0..%d", ErrInvalid, n, MaxRetry)
	}
	return nil
}

func checkPriority(p int) error {
	if p < MinPriority || p > MaxPriority {
		return fmt.Errorf("%w: priority %d is outside %d..%d", ErrInvalid, p, MinPriority, MaxPriority)
	}
	return nil
}

// checkEnv checks an environment map: its size written as the agent's
// KEY=VALUE lines (MaxEnvironmentBytes, as the text), and that every
// variable reaches the job's process as it is: a key is not empty, has no
// "=", no surrounding space, and neither key nor value holds a NUL, a
// newline or the two characters `\n` (the agent's separators), nor does
// a value end in a space (the agent trims entries).
func checkEnv(env map[string]string) error {
	size := max(len(env)-1, 0) // len(EnvText(env)), never more than the text it came from
	for k, v := range env {
		size += len(k) + 1 + len(v)
	}
	if size > MaxEnvironmentBytes {
		return fmt.Errorf("%w: environment is %d bytes, the limit is %d", ErrTooLarge, size, MaxEnvironmentBytes)
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys) // report the first bad variable deterministically
	for _, k := range keys {
		v := env[k]
		switch {
		case k == "" || strings.TrimSpace(k) != k || strings.ContainsAny(k, "=\x00\n") || strings.Contains(k, `\n`):
			return fmt.Errorf("%w: environment key %q: not empty, no '=', NUL, newline, `\\n` or surrounding space", ErrInvalid, truncate(k, 40))
		case strings.ContainsAny(v, "\x00\n") || strings.Contains(v, `\n`) || strings.TrimRightFunc(v, unicode.IsSpace) != v:
			return fmt.Errorf("%w: environment %s: the value may not hold a NUL, a newline or `\\n`, nor end in a space", ErrInvalid, truncate(k, 40))
		}
	}
	return nil
}

func checkDeps(deps []int64) error {
	if len(deps) > MaxDependencies {
		return fmt.Errorf("%w: %d dependencies, the limit is %d", ErrTooLarge, len(deps), MaxDependencies)
	}
	for _, d := range deps {
		if d <= 0 {
			return fmt.Errorf("%w: dependency %d is not a job id", ErrInvalid, d)
		}
	}
	return nil
}

// CheckSpec checks a new job's fields against the limits: those of a
// patch that sets every field, and its project's name.
func CheckSpec(s *JobSpec) error {
	p := JobPatch{
		Parent: &s.Parent, Title: &s.Title, Command: &s.Command, Dir: &s.Dir, Environment: &s.Environment,
		Timeout: &s.Timeout, Priority: &s.Priority, Retry: &s.Retry, Affinity: &s.Affinity, User: &s.User, URL: &s.URL,
		ProgressPattern: &s.ProgressPattern, Dependencies: &s.Dependencies,
	}
	if s.Env != nil {
		p.Env = &s.Env
	}
	if err := CheckPatch(&p); err != nil {
		return err
	}
	if s.Project != "" {
		return ValidProjectName(s.Project)
	}
	return nil
}

// CheckPatch checks a job edit's fields against the limits.
func CheckPatch(p *JobPatch) error {
	for _, f := range []struct {
		name string
		v    *string
		max  int
	}{
		{"title", p.Title, MaxTitleBytes},
		{"command", p.Command, MaxCommandBytes},
		{"dir", p.Dir, MaxTitleBytes},
		{"environment", p.Environment, MaxEnvironmentBytes},
		{"url", p.URL, MaxTitleBytes},
		{"progress_pattern", p.ProgressPattern, MaxPatternBytes},
		{"state", p.State, MaxNameBytes},
	} {
		if f.v != nil {
			if err := checkText(f.name, *f.v, f.max); err != nil {
				return err
			}
		}
	}
	if p.User != nil {
		if err := CheckName("user", *p.User); err != nil {
			return err
		}
	}
	if p.Affinity != nil {
		if err := CheckAffinity("affinity", *p.Affinity); err != nil {
			return err
		}
	}
	if p.Timeout != nil {
		if err := checkTimeout(*p.Timeout); err != nil {
			return err
		}
	}
	if p.Retry != nil {
		if err := checkRetry(*p.Retry); err != nil {
			return err
		}
	}
	if p.Priority != nil {
		if err := checkPriority(*p.Priority); err != nil {
			return err
		}
	}
	if p.Env != nil {
		if err := checkEnv(*p.Env); err != nil {
			return err
		}
	}
	if p.Parent != nil && *p.Parent < 0 {
		return fmt.Errorf("%w: parent %d is not a job id", ErrInvalid, *p.Parent)
	}
	if p.Dependencies != nil {
		return checkDeps(*p.Dependencies)
	}
	return nil
}
