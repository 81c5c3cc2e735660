package analysis_test

import (
	"strings"
	"testing"

	"github.com/modelslot/modelslot/analysis"
)

func TestPowerReport(t *testing.T) {
	rep := analysis.Power(analysis.PowerConfig{Seed: 3, Rollouts: 6, AARollouts: 20, AALooks: 10, MaxLooks: 40, RequestsPerLook: 600})
	if got, want := len(rep.Rows), 16; got != want {
		t.Fatalf("rows: got %d, want %d", got, want)
	}
	for _, r := range rep.Rows {
		if strings.HasPrefix(r.Method, "this judge") && r.Detected < r.Rollouts/2 {
			t.Errorf("%s at %g%%, %s: detected %d of %d", r.Scenario, 100*r.Share, r.Method, r.Detected, r.Rollouts)
		}
	}
	for _, a := range rep.AA {
		if strings.HasPrefix(a.Method, "this judge") && a.FalseFail > 0.1 {
			t.Errorf("A/A %s: %s false-fail rate %g", a.Scenario, a.Method, a.FalseFail)
		}
	}
	var b strings.Builder
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| errors 1% -> 3% | 5% |", "| TTFT p50 +25% | 10% |", "False rollbacks"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
