package rollout_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/rollout"
)

// TestWarmupForgivesColdStart: a candidate twice as slow for its first 30 s
// after every traffic step and swap, and identical afterwards, passes with
// the default warm-up; with the warm-up off, the same candidate rolls back.
func TestWarmupForgivesColdStart(t *testing.T) {
	steps := `
steps:
  - traffic: 10
  - bake: {duration: 2m, max: 30m, onInconclusive: fail}
  - traffic: 50
  - bake: {duration: 2m, max: 30m, onInconclusive: fail}
  - swap: {baselineTraffic: 20}
  - watch: {duration: 2m, max: 30m, onInconclusive: fail}
`
	ramp := `
steps:
  - rampUp: {changeStep: 25, interval: 3m, max: 50, onInconclusive: fail}
  - swap
`
	for _, tc := range []struct {
		name   string
		warmup string
		steps  string
		want   rollout.State
	}{
		{"default warm-up", "", steps, rollout.Succeeded},
		{"warm-up off", "warmup: {duration: 0s, requests: 0}\n", steps, rollout.RolledBack},
		{"ramp levels", "", ramp, rollout.Succeeded},
		{"ramp levels without warm-up", "warmup: {duration: 0s, requests: 0}\n", ramp, rollout.RolledBack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.platform.now = e.clock.Now
			e.metrics.cold = map[string]bool{e.platform.revision("staging"): true}
			e.metrics.coldFor = 30 * time.Second
			m := e.start()
			plan := mustPlan(t, goodAnalysis+tc.warmup+tc.steps)
			if _, err := m.Start(context.Background(), "chat", "staging", plan, "alice"); err != nil {
				t.Fatal(err)
			}
			done := e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
			if done.State != tc.want {
				t.Fatalf("state = %s, want %s:\n%s", done.State, tc.want, done.Describe())
			}
			if tc.want != rollout.Succeeded {
				if !strings.Contains(done.Reason, "latency") && !strings.Contains(done.Reason, "ttft") {
					t.Errorf("rolled back for %q, want the cold start's latency", done.Reason)
				}
				return
			}
			for _, v := range done.Verdicts {
				// Judged data starts after the warm-up: 30 s at least.
				if v.Verdict == rollout.Pass && v.From.IsZero() {
					t.Errorf("verdict without a judged start: %+v", v)
				}
			}
		})
	}
}

// TestWarmupShownNotJudged: during the warm-up the gates do not look, the
// phase counts its requests apart, and a warm-up that never gets its
// requests ends the phase by its policy with a reason that says so.
func TestWarmupShownNotJudged(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	plan := mustPlan(t, `
interval: 10s
warmup: {duration: 1m, requests: 100000}
analysis:
  gates: [{kind: static, verdict: pass}]
steps:
  - traffic: 10
  - bake: {duration: 1m, max: 5m, onInconclusive: fail}
`)
	if _, err := m.Start(context.Background(), "chat", "staging", plan, "alice"); err != nil {
		t.Fatal(err)
	}
	warming := e.waitFor(m.Manager, "a look in the warm-up", func(r *rollout.Rollout) bool {
		ph := r.Current.GetPhase()
		return ph != nil && ph.Warmup != nil && ph.Warmup.CandidateRequests > 0
	})
	ph := warming.Current.Phase
	if ph.CandidateRequests != 0 || len(ph.Gates) != 1 || ph.Gates[0].Result != nil {
		t.Errorf("warm-up requests were judged: phase %+v", ph)
	}
	if !strings.Contains(ph.Reason, "warming up") {
		t.Errorf("reason = %q, want it to say the phase warms up", ph.Reason)
	}
	done := e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
	if done.State != rollout.RolledBack || !strings.Contains(done.Reason, "still warming up") {
		t.Errorf("state %s, reason %q: want rolled_back, still warming up", done.State, done.Reason)
	}
}

// TestNoCandidateRequestsNotice: three looks without a candidate request
// make the status ask whether traffic reaches the gateway.
func TestNoCandidateRequestsNotice(t *testing.T) {
	e := newEnv(t)
	e.metrics.rps = 0
	m := e.start()
	plan := mustPlan(t, goodAnalysis+`
steps:
  - traffic: 10
  - bake: {duration: 1m, max: 1h}
`)
	if _, err := m.Start(context.Background(), "chat", "staging", plan, "alice"); err != nil {
		t.Fatal(err)
	}
	r := e.waitFor(m.Manager, "a notice", func(r *rollout.Rollout) bool {
		ph := r.Current.GetPhase()
		return ph != nil && ph.Notice != ""
	})
	ph := r.Current.Phase
	if !strings.HasPrefix(ph.Notice, "no candidate requests for ") || !strings.Contains(ph.Notice, "is traffic reaching the gateway?") || ph.QuietLooks < 3 {
		t.Errorf("notice %q after %d quiet looks", ph.Notice, ph.QuietLooks)
	}
	if !strings.Contains(r.Describe(), ph.Notice) {
		t.Errorf("Describe does not show the notice:\n%s", r.Describe())
	}
}

// TestStartWarnsSameVersion: starting a rollout of the version production
// serves, or served before a swap, warns; a new version does not.
func TestStartWarnsSameVersion(t *testing.T) {
	plan := `
steps:
  - traffic: 10
`
	e := newEnv(t)
	m := e.start()
	r, err := m.Start(context.Background(), "chat", "staging", mustPlan(t, plan), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings) != 0 {
		t.Errorf("a new version warns: %q", r.Warnings)
	}
	e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })

	// After a swap, staging holds the version production served.
	if _, err := e.platform.Swap(context.Background(), "chat", modelslot.SwapRequest{Source: "staging", Target: modelslot.Production}); err != nil {
		t.Fatal(err)
	}
	r, err = m.Start(context.Background(), "chat", "staging", mustPlan(t, plan), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "an older version that production served before (swap of staging") {
		t.Errorf("warnings after a swap = %q", r.Warnings)
	}
	e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })

	// A version tried again after a rollback is newer than production's.
	e.platform.mu.Lock()
	e.platform.app.Slot("staging").Deployment.DeployedAt = time.Now()
	e.platform.mu.Unlock()
	if r, err = m.Start(context.Background(), "chat", "staging", mustPlan(t, plan), "alice"); err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings) != 0 {
		t.Errorf("a newer version warns: %q", r.Warnings)
	}
	e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })

	// The same deployment in both slots.
	e.platform.mu.Lock()
	d := *e.platform.app.Slot(modelslot.Production).Deployment
	e.platform.app.Slot("staging").Deployment = &d
	e.platform.mu.Unlock()
	r, err = m.Start(context.Background(), "chat", "staging", mustPlan(t, plan), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "the version production serves") || !strings.Contains(r.Describe(), "Warning: ") {
		t.Errorf("warnings with the same version = %q", r.Warnings)
	}
}
