package rollout_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/rollout"
)

// TestPhaseProgress: a judged phase shows elapsed time and deadline, the
// requests on each side, its warm-up, and per check the effect, interval,
// limit and an estimate of the requests still needed; the API's JSON has
// the same numbers.
func TestPhaseProgress(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	plan := mustPlan(t, goodAnalysis+`
steps:
  - traffic: 10
  - bake: {duration: 1h, max: 2h}
`)
	if _, err := m.Start(context.Background(), "chat", "staging", plan, "alice"); err != nil {
		t.Fatal(err)
	}
	r := e.waitFor(m.Manager, "checks with estimates", func(r *rollout.Rollout) bool {
		ph := r.Current.GetPhase()
		if ph == nil || ph.Warming() || len(ph.Gates) == 0 || ph.Gates[0].Result == nil {
			return false
		}
		for _, c := range ph.Gates[0].Result.Checks {
			if c.Verdict == rollout.Inconclusive && c.Needed != nil && c.NeededSeconds != nil {
				return true
			}
		}
		return false
	})
	ph := r.Current.Phase
	text := r.Progress(time.Now())
	for _, want := range []string{
		"step 2/2 bake: judged for ", "(needs 1h0m0s)", "deadline in ", "candidate ", "production ",
		"warm-up done after ", "errors ", "latency ", "effect ", "limit ", "more requests (~",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("progress has no %q:\n%s", want, text)
		}
	}
	if ph.CandidateRate <= 0 || ph.Warmup == nil || ph.Warmup.CandidateRequests < 50 || ph.JudgedFrom.IsZero() {
		t.Errorf("phase numbers: rate %v, warm-up %+v, judged from %v", ph.CandidateRate, ph.Warmup, ph.JudgedFrom)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"candidateRate":`, `"judgedFrom":`, `"checks":[{"metric":"errors"`, `"needed":`, `"neededSeconds":`, `"lookedAt":`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the rollout's JSON has no %s", want)
		}
	}
}
