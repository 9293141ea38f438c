package farm

import (
	"errors"
	"math"
	"strconv"
	"testing"
)

func TestProgressRegexp(t *testing.T) {
	for _, c := range []struct {
		pattern, line string
		want          float64
	}{
		{"", "PROGRESS:42.5", 0.425},
		{"frame %one done", "frame 0.25 done", 0.25},
		{"[%percent]", "[7]", 0.07},
		{"a.b %percent", "a.b 100", 1}, // meta characters are literal
	} {
		// Twice: the second comes from the cache and must match the first.
		for range 2 {
			re, scale, err := ProgressRegexp(c.pattern)
			if err != nil {
				t.Fatalf("%q: %v", c.pattern, err)
			}
			m := re.FindStringSubmatch(c.line)
			if m == nil {
				t.Fatalf("%q does not match %q", c.pattern, c.line)
			}
			v, _ := strconv.ParseFloat(m[1], 64)
			if got := v * scale; math.Abs(got-c.want) > 1e-9 {
				t.Errorf("%q on %q = %v, want %v", c.pattern, c.line, got, c.want)
			}
		}
	}
	if re, _, _ := ProgressRegexp("a.b %percent"); re.MatchString("axb 1") {
		t.Error("a quoted '.' matches any character")
	}
	for range 2 {
		if _, _, err := ProgressRegexp("no placeholder"); !errors.Is(err, ErrProgressPattern) {
			t.Errorf("pattern without a placeholder: %v, want ErrProgressPattern", err)
		}
	}
}
