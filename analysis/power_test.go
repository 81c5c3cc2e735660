package analysis_test

import (
	"strings"
	"testing"

	"github.com/modelslot/modelslot/analysis"
)

// TestPowerReport runs the whole report with a handful of rollouts per row:
// every section is there, and the judge catches the regressions it should.
func TestPowerReport(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("the report simulates hundreds of thousands of requests")
	}
	rep := analysis.Power(analysis.PowerConfig{Seed: 3, Rollouts: 6, AARollouts: 2, Fixed: 60})
	if got, want := len(rep.AA), len(analysis.AAScenarios()); got != want {
		t.Fatalf("A/A rows: got %d, want %d", got, want)
	}
	for _, r := range rep.Power {
		if r.Detected < r.Rollouts/2 || r.FixedN <= 0 {
			t.Errorf("%s: detected %d of %d, fixed-horizon n %d", r.Scenario, r.Detected, r.Rollouts, r.FixedN)
		}
	}
	var b strings.Builder
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Identical versions (A/A)", "| TTFT +25%", "| errors 1% -> 3%", "p99 +70%", "identical, 0.1% errors; 10 req/s", "repeated at every look"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
