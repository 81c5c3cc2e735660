package rollout_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/rollout"
)

const goodAnalysis = `
interval: 10s
analysis:
  minSamples: 100
  maxErrorRate: 0.1
  maxSlowerProb: 0.7
  metrics: [errors, latency]
`

func TestHappyPath(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	candidate := e.platform.revision("staging")
	plan := mustPlan(t, goodAnalysis+`
steps:
  - traffic: 10
  - bake: {duration: 2m, minRequests: 50, max: 30m, onInconclusive: fail}
  - traffic: 50
  - bake: {duration: 2m, max: 30m, onInconclusive: fail}
  - swap: {baselineTraffic: 20}
  - watch: {duration: 2m, max: 30m, onInconclusive: fail}
`)
	r, err := m.Start(context.Background(), "chat", "staging", plan, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if r.State != rollout.Running || r.Actor != "alice" || r.CandidateRevision != candidate {
		t.Errorf("started rollout = %+v", r)
	}
	done := e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
	if done.State != rollout.Succeeded {
		t.Fatalf("state = %s, want succeeded:\n%s", done.State, done.Describe())
	}
	if got := e.platform.swapCount(); got != 1 {
		t.Errorf("Swap calls = %d, want 1", got)
	}
	if got := e.platform.revision(modelslot.Production); got != candidate {
		t.Errorf("production revision = %s, want the candidate %s", got, candidate)
	}
	var shares []float64
	for _, c := range e.platform.trafficCalls() {
		shares = append(shares, c.Percent)
		if c.ResetPins {
			t.Errorf("a successful rollout reset the pins")
		}
	}
	if want := []float64{10, 50, 20, 0}; !slices.Equal(shares, want) {
		t.Errorf("staging shares = %v, want %v", shares, want)
	}
	var passes int
	for _, v := range done.Verdicts {
		if v.Verdict == rollout.Pass && v.Decision == "continue" {
			passes++
			if len(v.Gates) != 1 || len(v.Gates[0].Evidence) == 0 || v.CandidateRequests == 0 {
				t.Errorf("verdict without evidence: %+v", v)
			}
		}
	}
	if passes != 3 {
		t.Errorf("pass verdicts = %d, want 3 (two bakes, one watch):\n%s", passes, done.Describe())
	}
	e.events.wait(t, "rollout.completed", "succeeded")
	types := e.events.types()
	for _, want := range []string{"rollout.started", "rollout.step", "rollout.verdict", "rollout.swap", "rollout.completed"} {
		if !slices.Contains(types, want) {
			t.Errorf("no %s event in %v", want, types)
		}
	}
	if _, busy := m.Busy("chat"); busy {
		t.Error("Busy after the rollout finished")
	}
	if !strings.Contains(done.Describe(), "succeeded") || done.Brief().State != "succeeded" {
		t.Errorf("Describe/Brief: %q %+v", done.Describe(), done.Brief())
	}
}

func TestBadCandidateRollsBack(t *testing.T) {
	e := newEnv(t)
	e.metrics.setBad(e.platform.revision("staging"))
	m := e.start()
	plan := mustPlan(t, goodAnalysis+`
steps:
  - traffic: 30
  - bake: {duration: 10m}
  - swap
`)
	if _, err := m.Start(context.Background(), "chat", "staging", plan, "alice"); err != nil {
		t.Fatal(err)
	}
	done := e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
	if done.State != rollout.RolledBack {
		t.Fatalf("state = %s, want rolled_back:\n%s", done.State, done.Describe())
	}
	calls := e.platform.trafficCalls()
	if last := calls[len(calls)-1]; last.Percent != 0 || !last.ResetPins {
		t.Errorf("last traffic call = %+v, want 0%% with ResetPins", last)
	}
	if e.platform.swapCount() != 0 {
		t.Error("a failed bake swapped")
	}
	last := done.Verdicts[len(done.Verdicts)-1]
	if last.Verdict != rollout.Fail || last.Decision != "rollback" || !strings.Contains(last.Reason, "errors") && !strings.Contains(last.Reason, "latency") {
		t.Errorf("last verdict = %+v", last)
	}
	e.events.wait(t, "rollout.rollback", "rolling back")
	e.events.wait(t, "rollout.completed", "rolled back")
}

func TestFailAfterSwapSwapsBack(t *testing.T) {
	e := newEnv(t)
	original := e.platform.revision(modelslot.Production)
	e.metrics.setBad(e.platform.revision("staging"))
	m := e.start()
	plan := mustPlan(t, goodAnalysis+`
steps:
  - traffic: 10
  - swap: {baselineTraffic: 30}
  - watch: {duration: 10m}
`)
	if _, err := m.Start(context.Background(), "chat", "staging", plan, "alice"); err != nil {
		t.Fatal(err)
	}
	done := e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
	if done.State != rollout.RolledBack {
		t.Fatalf("state = %s, want rolled_back:\n%s", done.State, done.Describe())
	}
	if got := e.platform.swapCount(); got != 2 {
		t.Errorf("Swap calls = %d, want 2 (in and back)", got)
	}
	if got := e.platform.revision(modelslot.Production); got != original {
		t.Errorf("production = %s, want the original %s back", got, original)
	}
	calls := e.platform.trafficCalls()
	if last := calls[len(calls)-1]; last.Percent != 0 || !last.ResetPins {
		t.Errorf("last traffic call = %+v, want 0%% with ResetPins", last)
	}
	if done.Swapped || done.Rollback == nil || done.Rollback.SwapBack == nil || !done.Rollback.SwapBack.Done {
		t.Errorf("rollback record = %+v", done.Rollback)
	}
}

func inconclusivePlan(policy string) string {
	return `
analysis: {gates: [{kind: static, verdict: inconclusive}]}
steps:
  - traffic: 10
  - bake: {duration: 1m, max: 2m, onInconclusive: ` + policy + `}
  - traffic: 20
`
}

func TestInconclusiveAtDeadline(t *testing.T) {
	t.Run("fail", func(t *testing.T) {
		e := newEnv(t)
		m := e.start()
		if _, err := m.Start(context.Background(), "chat", "staging", mustPlan(t, inconclusivePlan("fail")), "ops"); err != nil {
			t.Fatal(err)
		}
		done := e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
		if done.State != rollout.RolledBack || len(done.Verdicts) != 1 || done.Verdicts[0].Decision != "rollback" {
			t.Errorf("got:\n%s", done.Describe())
		}
	})
	t.Run("extend", func(t *testing.T) {
		e := newEnv(t)
		m := e.start()
		if _, err := m.Start(context.Background(), "chat", "staging", mustPlan(t, inconclusivePlan("extend")), "ops"); err != nil {
			t.Fatal(err)
		}
		done := e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
		var decisions []string
		for _, v := range done.Verdicts {
			decisions = append(decisions, v.Decision)
		}
		if done.State != rollout.RolledBack || !slices.Equal(decisions, []string{"extend", "rollback"}) {
			t.Errorf("state %s decisions %v:\n%s", done.State, decisions, done.Describe())
		}
	})
	t.Run("pause then promote", func(t *testing.T) {
		e := newEnv(t)
		m := e.start()
		if _, err := m.Start(context.Background(), "chat", "staging", mustPlan(t, inconclusivePlan("pause")), "ops"); err != nil {
			t.Fatal(err)
		}
		paused := e.waitState(m.Manager, rollout.Paused)
		if paused.Current == nil || paused.Current.Phase == nil || !paused.Current.Phase.AwaitingDecision || !strings.Contains(paused.Reason, "inconclusive") {
			t.Fatalf("paused rollout:\n%s", paused.Describe())
		}
		// Status says what the gates wait for, in their words.
		if d := paused.Describe(); !strings.Contains(d, "Latest look (") || !strings.Contains(d, "static inconclusive at look") {
			t.Errorf("the description does not show the latest look:\n%s", d)
		}
		r, err := m.Promote(context.Background(), "chat", "bob")
		if err != nil {
			t.Fatal(err)
		}
		if !r.Promoted || r.Overrides[0].Actor != "bob" {
			t.Errorf("promoted rollout = %+v", r)
		}
		done := e.waitState(m.Manager, rollout.Succeeded)
		if !strings.Contains(done.Reason, "manual override") || e.platform.percent("staging") != 20 {
			t.Errorf("done: %s, staging %v%%", done.Reason, e.platform.percent("staging"))
		}
		if !e.events.has("rollout.promoted", "manual override by bob") {
			t.Errorf("no promote event: %v", e.events.types())
		}
	})
}

func TestPauseResumeAbort(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	ctx := context.Background()
	plan := mustPlan(t, `
analysis: {gates: []}
steps:
  - traffic: 10
  - pause
  - traffic: 25
  - bake: {duration: 1000h}
`)
	if _, err := m.Start(ctx, "chat", "staging", plan, "ops"); err != nil {
		t.Fatal(err)
	}
	r := e.waitState(m.Manager, rollout.Paused)
	if r.Step != 1 || e.platform.percent("staging") != 10 {
		t.Fatalf("paused at step %d with %v%%", r.Step, e.platform.percent("staging"))
	}
	if _, err := m.Pause(ctx, "chat", "ops"); modelslot.ErrorCode(err) != modelslot.ECONFLICT {
		t.Errorf("pausing a paused rollout: %v, want a conflict", err)
	}
	if _, err := m.Resume(ctx, "chat", "ops"); err != nil {
		t.Fatal(err)
	}
	e.waitFor(m.Manager, "the bake", func(r *rollout.Rollout) bool { return r.Step == 3 && r.State == rollout.Running })
	if _, err := m.Pause(ctx, "chat", "carol"); err != nil {
		t.Fatal(err)
	}
	r, err := m.Active(ctx, "chat")
	if err != nil || r.State != rollout.Paused {
		t.Fatalf("Active: %v %+v", err, r)
	}
	if _, err := m.Resume(ctx, "chat", "carol"); err != nil {
		t.Fatal(err)
	}
	r, err = m.Abort(ctx, "chat", "carol", "wrong model")
	if err != nil {
		t.Fatal(err)
	}
	// Abort rolls back before it answers: when it returns, the candidate
	// has no traffic left.
	if r.State != rollout.Aborted {
		t.Errorf("after Abort state = %s, want aborted", r.State)
	}
	done := e.waitState(m.Manager, rollout.Aborted)
	if !strings.Contains(done.Reason, "aborted by carol: wrong model") {
		t.Errorf("reason = %q", done.Reason)
	}
	calls := e.platform.trafficCalls()
	if last := calls[len(calls)-1]; last.Percent != 0 || !last.ResetPins {
		t.Errorf("last traffic call = %+v, want 0%% with ResetPins", last)
	}
	var actions []string
	for _, o := range done.Overrides {
		actions = append(actions, o.Action)
	}
	if want := []string{"resume", "pause", "resume", "abort"}; !slices.Equal(actions, want) {
		t.Errorf("overrides = %v, want %v", actions, want)
	}
	if _, err := m.Abort(ctx, "chat", "carol", ""); modelslot.ErrorCode(err) != modelslot.ENOTFOUND {
		t.Errorf("abort with nothing running: %v, want not found", err)
	}
}

func TestOneRolloutPerApp(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	ctx := context.Background()
	plan := mustPlan(t, "steps: [{traffic: 10}, pause]")
	r, err := m.Start(ctx, "chat", "staging", plan, "ops")
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Start(ctx, "chat", "staging", plan, "ops")
	if modelslot.ErrorCode(err) != modelslot.ECONFLICT || !strings.Contains(err.Error(), r.ID) || !strings.Contains(err.Error(), "abort") {
		t.Errorf("second Start: %v, want a conflict naming %s and how to abort it", err, r.ID)
	}
	if id, busy := m.Busy("chat"); !busy || id != r.ID {
		t.Errorf("Busy = %q %v", id, busy)
	}
	if err := m.CheckIdle("chat"); modelslot.ErrorCode(err) != modelslot.ECONFLICT {
		t.Errorf("CheckIdle = %v", err)
	}
	if _, err := m.Start(ctx, "chat", modelslot.Production, plan, "ops"); modelslot.ErrorCode(err) != modelslot.EINVALID {
		t.Errorf("rolling out production: %v", err)
	}
	if _, err := m.Start(ctx, "chat", "canary", plan, "ops"); modelslot.ErrorCode(err) != modelslot.ENOTFOUND {
		t.Errorf("unknown slot: %v", err)
	}
}

func TestRampUpLevels(t *testing.T) {
	for _, tc := range []struct {
		name, steps string
		want        []float64
	}{
		{"up clamped to max", "- rampUp: {changeStep: 10, interval: 1m, min: 5, max: 35}", []float64{10, 20, 30, 35}},
		{"min lifts the first level", "- rampUp: {changeStep: 30, changeIntervalInMinutes: 1, min: 40, max: 70}", []float64{40, 70}},
		{"down to min", "- traffic: 50\n  - rampUp: {changeStep: -20, interval: 1m, min: 5}", []float64{50, 30, 10, 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			m := e.start()
			plan := mustPlan(t, "analysis: {gates: [{kind: static, verdict: pass}]}\nsteps:\n  "+tc.steps)
			if _, err := m.Start(context.Background(), "chat", "staging", plan, "ops"); err != nil {
				t.Fatal(err)
			}
			done := e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
			if done.State != rollout.Succeeded {
				t.Fatalf("state %s:\n%s", done.State, done.Describe())
			}
			var got []float64
			for _, c := range e.platform.trafficCalls() {
				got = append(got, c.Percent)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("levels = %v, want %v", got, tc.want)
			}
			var levelVerdicts int
			for _, v := range done.Verdicts {
				if v.StepKind == rollout.KindRampUp && v.Verdict == rollout.Pass {
					levelVerdicts++
				}
			}
			if want := len(tc.want); tc.name == "down to min" && levelVerdicts != want-1 || tc.name != "down to min" && levelVerdicts != want {
				t.Errorf("ramp verdicts = %d for levels %v", levelVerdicts, tc.want)
			}
		})
	}
}

func TestRampUpFailsAtALevel(t *testing.T) {
	e := newEnv(t)
	m := e.start()
	plan := mustPlan(t, `
analysis: {gates: [{kind: static, verdict: fail, after: 3}]}
steps:
  - rampUp: {changeStep: 10, interval: 10m}
`)
	if _, err := m.Start(context.Background(), "chat", "staging", plan, "ops"); err != nil {
		t.Fatal(err)
	}
	done := e.waitFor(m.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
	if done.State != rollout.RolledBack {
		t.Fatalf("state %s", done.State)
	}
	calls := e.platform.trafficCalls()
	if calls[0].Percent != 10 || calls[len(calls)-1].Percent != 0 || !calls[len(calls)-1].ResetPins {
		t.Errorf("traffic calls = %+v", calls)
	}
}

// TestResumeAfterKill stops a Manager abruptly after the swap and starts a
// new one on the same store: it goes on from the same step and never swaps
// again.
func TestResumeAfterKill(t *testing.T) {
	e := newEnv(t)
	m1 := e.start()
	candidate := e.platform.revision("staging")
	plan := mustPlan(t, goodAnalysis+`
steps:
  - traffic: 10
  - bake: {duration: 2m, max: 30m, onInconclusive: fail}
  - swap: {baselineTraffic: 10}
  - pause
  - watch: {duration: 2m, max: 30m, onInconclusive: fail}
`)
	r, err := m1.Start(context.Background(), "chat", "staging", plan, "ops")
	if err != nil {
		t.Fatal(err)
	}
	e.waitFor(m1.Manager, "the pause step", func(r *rollout.Rollout) bool { return r.Step == 3 && r.State == rollout.Paused })
	verdicts := len(e.waitState(m1.Manager, rollout.Paused).Verdicts)
	m1.kill()

	m2 := e.start()
	// The store already says paused; wait until the new Manager has taken
	// the rollout over.
	got := e.waitFor(m2.Manager, "resumed", func(r *rollout.Rollout) bool {
		_, busy := m2.Busy("chat")
		return busy && r.State == rollout.Paused
	})
	if got.ID != r.ID || got.Step != 3 || !got.Swapped || len(got.Verdicts) != verdicts {
		t.Fatalf("after restart:\n%s", got.Describe())
	}
	if id, busy := m2.Busy("chat"); !busy || id != r.ID {
		t.Errorf("the new Manager does not own the resumed rollout: %q %v", id, busy)
	}
	if _, err := m2.Resume(context.Background(), "chat", "ops"); err != nil {
		t.Fatal(err)
	}
	done := e.waitFor(m2.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
	if done.State != rollout.Succeeded {
		t.Fatalf("state %s:\n%s", done.State, done.Describe())
	}
	if n := e.platform.swapCount(); n != 1 {
		t.Errorf("Swap calls = %d, want 1", n)
	}
	if e.platform.revision(modelslot.Production) != candidate {
		t.Error("the candidate is not in production")
	}
}

// TestResumeWithSwapInDoubt kills the Manager while Platform.Swap is in
// flight (after it took effect, before its answer was recorded): the next
// Manager learns from the platform that the swap happened.
func TestResumeWithSwapInDoubt(t *testing.T) {
	e := newEnv(t)
	swapped := make(chan struct{})
	e.platform.afterSwap = func(ctx context.Context) error {
		close(swapped)
		<-ctx.Done()
		return ctx.Err()
	}
	m1 := e.start()
	candidate := e.platform.revision("staging")
	plan := mustPlan(t, `
analysis: {gates: [{kind: static, verdict: pass}]}
steps:
  - traffic: 10
  - swap
  - watch: {duration: 1m}
`)
	if _, err := m1.Start(context.Background(), "chat", "staging", plan, "ops"); err != nil {
		t.Fatal(err)
	}
	<-swapped
	m1.kill()
	e.platform.mu.Lock()
	e.platform.afterSwap = nil
	e.platform.mu.Unlock()

	stored := e.waitFor(m1.Manager, "the stored rollout", func(r *rollout.Rollout) bool { return true })
	if stored.Swap == nil || stored.Swap.RequestedAt.IsZero() || stored.Swap.Done {
		t.Fatalf("before the restart the store must hold a requested, unconfirmed swap: %+v", stored.Swap)
	}
	m2 := e.start()
	done := e.waitFor(m2.Manager, "the end", func(r *rollout.Rollout) bool { return !r.State.Active() })
	if done.State != rollout.Succeeded || !done.Swap.Done {
		t.Fatalf("state %s:\n%s", done.State, done.Describe())
	}
	if n := e.platform.swapCount(); n != 1 {
		t.Errorf("Swap calls = %d, want 1", n)
	}
	if e.platform.revision(modelslot.Production) != candidate {
		t.Error("the candidate is not in production")
	}
}
