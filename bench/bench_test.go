package bench

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/croftfarm/croft/internal/testbin"
)

// TestQuickScenarios runs a few scenarios at small sizes against real
// coordinator processes: every figure is measured and no scenario fails.
// Figures are not checked against targets here (that is what the bench
// is for, on a quiet machine).
func TestQuickScenarios(t *testing.T) {
	cfg := Defaults()
	cfg.Bin = testbin.Croft(t)
	cfg.Dir = t.TempDir()
	cfg.Scenarios = []string{"submit", "group", "dispatch", "growth"}
	cfg.SubmitJobs, cfg.SubmitClients = 200, 8
	cfg.GroupChildren = 2000
	cfg.DispatchJobs = 20
	cfg.GrowthSmall, cfg.GrowthLarge, cfg.GrowthSamples = 100, 2000, 20
	cfg.Timeout = 2 * time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range res {
		seen[r.Scenario] = true
		if r.Metric == "error" || r.Metric == "skipped" {
			t.Errorf("%s: %s %s", r.Scenario, r.Metric, r.Note)
			continue
		}
		if math.IsNaN(r.Value) || r.Value <= 0 {
			t.Errorf("%s %s: value %v", r.Scenario, r.Metric, r.Value)
		}
	}
	for _, s := range cfg.Scenarios {
		if !seen[s] {
			t.Errorf("scenario %s reported nothing", s)
		}
	}
	if _, err := Run(ctx, Config{Scenarios: []string{"nope"}}); err == nil {
		t.Error("an unknown scenario was accepted")
	}
}
