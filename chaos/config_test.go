package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// config is read from the environment; see README.md.
type config struct {
	duration   time.Duration // CROFT_CHAOS_DURATION: how long the chaos runs
	settle     time.Duration // CROFT_CHAOS_SETTLE: bound on the wait for every job to finish
	agentKills bool          // CROFT_CHAOS_AGENT_KILLS: 1 (default) or 0
	rate       float64       // CROFT_CHAOS_RATE: job submissions per second
	interval   span          // CROFT_CHAOS_INTERVAL: pause between two chaos actions
	coordDown  span          // CROFT_CHAOS_COORD_DOWN: how long a killed coordinator stays down
	agentDown  span          // CROFT_CHAOS_AGENT_DOWN: how long a killed agent stays down
	jobSleep   span          // CROFT_CHAOS_JOB_SLEEP: how long each job runs after writing its token
	slots      int           // CROFT_CHAOS_SLOTS: jobs each agent runs at once
	seed       uint64        // CROFT_CHAOS_SEED: the random schedule (default: from the clock)
	keepLogs   string        // CROFT_CHAOS_KEEP_LOGS: copy the logs there (default: only on failure, to a temp dir)
}

// span is a random duration range [min, max].
type span struct{ min, max time.Duration }

func (s span) String() string {
	if s.min == s.max {
		return s.min.String()
	}
	return s.min.String() + "-" + s.max.String()
}

// Agent downtime must stay well below the agent's self-fencing lease (8 s)
// and the coordinators' worker TTL (15 s).
const maxAgentDown = 5 * time.Second

func loadConfig() (config, error) {
	cfg := config{
		duration:   50 * time.Second,
		settle:     120 * time.Second,
		agentKills: true,
		rate:       3,
		interval:   span{2 * time.Second, 6 * time.Second},
		coordDown:  span{500 * time.Millisecond, 4 * time.Second},
		agentDown:  span{300 * time.Millisecond, 3 * time.Second},
		jobSleep:   span{0, 2 * time.Second},
		slots:      2,
		seed:       uint64(time.Now().UnixNano()),
		keepLogs:   os.Getenv("CROFT_CHAOS_KEEP_LOGS"),
	}
	var errs []string
	dur := func(name string, dst *time.Duration) {
		if v := os.Getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				errs = append(errs, fmt.Sprintf("%s=%q: want a positive duration like 5m", name, v))
				return
			}
			*dst = d
		}
	}
	spn := func(name string, dst *span) {
		if v := os.Getenv(name); v != "" {
			s, err := parseSpan(v)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: %v", name, v, err))
				return
			}
			*dst = s
		}
	}
	dur("CROFT_CHAOS_DURATION", &cfg.duration)
	dur("CROFT_CHAOS_SETTLE", &cfg.settle)
	spn("CROFT_CHAOS_INTERVAL", &cfg.interval)
	spn("CROFT_CHAOS_COORD_DOWN", &cfg.coordDown)
	spn("CROFT_CHAOS_AGENT_DOWN", &cfg.agentDown)
	spn("CROFT_CHAOS_JOB_SLEEP", &cfg.jobSleep)
	switch v := os.Getenv("CROFT_CHAOS_AGENT_KILLS"); v {
	case "", "1", "true", "yes", "on":
	case "0", "false", "no", "off":
		cfg.agentKills = false
	default:
		errs = append(errs, fmt.Sprintf("CROFT_CHAOS_AGENT_KILLS=%q: want 0 or 1", v))
	}
	if v := os.Getenv("CROFT_CHAOS_RATE"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 || r > 100 {
			errs = append(errs, fmt.Sprintf("CROFT_CHAOS_RATE=%q: want jobs per second in (0, 100]", v))
		} else {
			cfg.rate = r
		}
	}
	if v := os.Getenv("CROFT_CHAOS_SLOTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 16 {
			errs = append(errs, fmt.Sprintf("CROFT_CHAOS_SLOTS=%q: want 1 to 16", v))
		} else {
			cfg.slots = n
		}
	}
	if v := os.Getenv("CROFT_CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Sprintf("CROFT_CHAOS_SEED=%q: want an unsigned integer", v))
		} else {
			cfg.seed = s
		}
	}
	if cfg.interval.min <= 0 {
		errs = append(errs, "CROFT_CHAOS_INTERVAL must be positive")
	}
	if cfg.agentDown.max > maxAgentDown {
		errs = append(errs, fmt.Sprintf("CROFT_CHAOS_AGENT_DOWN %v: keep it below %v (the agent's self-fencing lease is 8 s)", cfg.agentDown, maxAgentDown))
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("chaos configuration: %s", strings.Join(errs, "; "))
	}
	return cfg, nil
}

// parseSpan reads "2s-6s" (a range) or "3s" (a fixed duration).
func parseSpan(v string) (span, error) {
	lo, hi, ok := strings.Cut(v, "-")
	if !ok {
		hi = lo
	}
	a, err1 := time.ParseDuration(strings.TrimSpace(lo))
	b, err2 := time.ParseDuration(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil || a < 0 || b < a {
		return span{}, fmt.Errorf("want MIN-MAX like 2s-6s, or one duration")
	}
	return span{a, b}, nil
}

// rng is a seeded random source safe for concurrent use.
type rng struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRNG(seed uint64) *rng { return &rng{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))} }

func (g *rng) intN(n int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.r.IntN(n)
}

func (g *rng) in(s span) time.Duration {
	if s.max <= s.min {
		return s.min
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return s.min + time.Duration(g.r.Int64N(int64(s.max-s.min)+1))
}
