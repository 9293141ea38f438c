package farm

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
)

// ErrProgressPattern means a progress pattern has neither %percent nor
// %one, or does not compile.
var ErrProgressPattern = errors.New("invalid progress pattern")

// DefaultProgressPattern is the pattern of a job that names none.
const DefaultProgressPattern = "PROGRESS:%percent"

// ProgressRegexp turns a Coalition progress pattern into a regexp whose
// first group is the number, and the scale that maps it to 0..1: %percent
// matches a number out of 100, %one a fraction of 1; empty is
// DefaultProgressPattern. Compiled patterns are kept (a farm uses a
// handful), so agents and the worker protocol need not compile one per
// attempt.
func ProgressRegexp(pattern string) (*regexp.Regexp, float64, error) {
	if pattern == "" {
		pattern = DefaultProgressPattern
	}
	if p, ok := progressCache.Load(pattern); ok {
		c := p.(compiledProgress)
		return c.re, c.scale, nil
	}
	scale := 1.0
	q := regexp.QuoteMeta(pattern)
	switch {
	case strings.Contains(q, "%percent"):
		q = strings.Replace(q, "%percent", `([0-9]+(?:\.[0-9]+)?)`, 1)
		scale = 0.01
	case strings.Contains(q, "%one"):
		q = strings.Replace(q, "%one", `([0-9]+(?:\.[0-9]+)?)`, 1)
	default:
		return nil, 0, fmt.Errorf("%w: %q has neither %%percent nor %%one", ErrProgressPattern, pattern)
	}
	re, err := regexp.Compile(q)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrProgressPattern, err)
	}
	// Bounded: patterns are user input. Past the bound, compile each time.
	if progressCached.Add(1) <= maxProgressCache {
		progressCache.Store(pattern, compiledProgress{re, scale})
	}
	return re, scale, nil
}

// maxProgressCache bounds the compiled progress patterns kept.
const maxProgressCache = 256

var (
	progressCache  sync.Map // pattern -> compiledProgress
	progressCached atomic.Int64
)

type compiledProgress struct {
	re    *regexp.Regexp
	scale float64
}
