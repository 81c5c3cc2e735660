package rollout_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/rollout"

	// The example plans use the loadtest and eval gate kinds too.
	_ "github.com/modelslot/modelslot/gates"
)

func TestParsePlanErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty", ``, "plan is empty"},
		{"no steps", `interval: 5s`, "steps: a plan needs at least one step"},
		{"unknown top field", "intervall: 5s\nsteps: [{traffic: 10}]", "intervall: unknown field"},
		{"bad interval", "interval: often\nsteps: [{traffic: 10}]", `interval: "often" is not a duration`},
		{"bad policy", "onInconclusive: shrug\nsteps: [{traffic: 10}]", `onInconclusive: "shrug" is not fail, pause or extend`},
		{"traffic out of range", "steps: [{traffic: 120}]", "steps[0].traffic: 120 is out of range"},
		{"traffic not a number", "steps: [{traffic: lots}]", `steps[0].traffic: "lots" is not a number`},
		{"unknown step", "steps: [{traffic: 10}, {bakee: {duration: 1m}}]", "steps[1].bakee: unknown step kind"},
		{"two kinds in a step", "steps: [{traffic: 10, swap: {}}]", "steps[0]: a step has exactly one kind"},
		{"bad bake max", "steps:\n- traffic: 10\n- traffic: 20\n- bake: {duration: 1m, max: 5x}", `steps[2].bake.max: "5x" is not a duration`},
		{"bake max below duration", "steps: [{bake: {duration: 10m, max: 5m}}]", "steps[0].bake.max: 5m0s is shorter than duration 10m0s"},
		{"bake without duration", "steps: [{bake: {minRequests: 10}}]", "steps[0].bake.duration: is required"},
		{"bake unknown field", "steps: [{bake: {duration: 1m, maxx: 2m}}]", "steps[0].bake.maxx: unknown field"},
		{"bake min requests fraction", "steps: [{bake: {duration: 1m, minRequests: 1.5}}]", `steps[0].bake.minRequests: "1.5" is not a whole number`},
		{"bake policy", "steps: [{bake: {duration: 1m, onInconclusive: maybe}}]", `steps[0].bake.onInconclusive: "maybe" is not fail, pause or extend`},
		{"watch before swap", "steps: [{watch: {duration: 1m}}]", "steps[0].watch: a watch judges production after the swap"},
		{"traffic after swap", "steps: [swap, {traffic: 10}]", "steps[1].traffic: comes after the swap"},
		{"swap baseline", "steps: [{swap: {baselineTraffic: -1}}]", "steps[0].swap.baselineTraffic: -1 is out of range"},
		{"pause bad duration", "steps: [{pause: {duration: soon}}]", `steps[0].pause.duration: "soon" is not a duration`},
		{"ramp zero step", "steps: [{rampUp: {changeStep: 0, changeIntervalInMinutes: 5}}]", "steps[0].rampUp.changeStep: 0 must be a non-zero percentage"},
		{"ramp no interval", "steps: [{rampUp: {changeStep: 10}}]", "steps[0].rampUp.changeIntervalInMinutes: is required"},
		{"ramp both intervals", "steps: [{rampUp: {changeStep: 10, changeIntervalInMinutes: 5, interval: 5m}}]", "steps[0].rampUp.interval: set either interval or changeIntervalInMinutes"},
		{"ramp min above max", "steps: [{rampUp: {changeStep: 10, interval: 1m, min: 60, max: 50}}]", "steps[0].rampUp.min: 60 is above max 50"},
		{"ramp max range", "steps: [{rampUp: {changeStep: 10, interval: 1m, max: 150}}]", "steps[0].rampUp.max: 150 is out of range"},
		{"alpha", "analysis: {alpha: 0.9}\nsteps: [{traffic: 10}]", "analysis.alpha: 0.9 is not in (0, 0.5]"},
		{"warmup requests", "warmup: {requests: -1}\nsteps: [{traffic: 10}]", "warmup.requests: -1 is negative"},
		{"warmup duration", "steps: [{bake: {duration: 1m, warmup: {duration: soon}}}]", `steps[0].bake.warmup.duration: "soon" is not a duration`},
		{"warmup unknown field", "steps: [{rampUp: {changeStep: 10, interval: 1m, warmup: {requets: 5}}}]", "steps[0].rampUp.warmup.requets: unknown field"},
		{"error ratio", "analysis: {maxErrorRatio: 0.5}\nsteps: [{traffic: 10}]", "analysis.maxErrorRatio: 0.5 must be above 1"},
		{"output ratio", "analysis: {maxOutputRatio: 0.5}\nsteps: [{traffic: 10}]", "analysis.maxOutputRatio: 0.5 must be above 1"},
		{"min output ratio", "analysis: {minOutputRatio: 2}\nsteps: [{traffic: 10}]", "analysis.minOutputRatio: 2 is not in (0, 1)"},
		{"gate output ratio", "steps: [{bake: {duration: 1m, gates: [{kind: metrics, maxOutputRatio: 1}]}}]", "maxOutputRatio"},
		{"unknown metric", "analysis: {metrics: [errors, vibes]}\nsteps: [{traffic: 10}]", `analysis.metrics[1]: unknown metric "vibes"`},
		{"slo metric", "analysis: {slo: [{metric: tokens, quantile: 0.9, max: 1s}]}\nsteps: [{traffic: 10}]", `analysis.slo[0].metric: "tokens" is not latency or ttft`},
		{"slo max", "analysis: {slo: [{metric: ttft, quantile: 0.95, max: fast}]}\nsteps: [{traffic: 10}]", `analysis.slo[0].max: "fast" is not a duration`},
		{"slo quantile", "analysis: {slo: [{metric: ttft, quantile: 95, max: 1s}]}\nsteps: [{traffic: 10}]", "analysis.slo[0].quantile: 95 is not in (0, 1)"},
		{"gate without kind", "steps: [{bake: {duration: 1m, gates: [{alpha: 0.1}]}}]", "steps[0].bake.gates[0].kind: is required"},
		{"unknown gate kind", "analysis: {gates: [{kind: vibes}]}\nsteps: [{traffic: 10}]", `analysis.gates[0].kind: unknown gate kind "vibes"`},
		{"metrics gate field", "steps: [{bake: {duration: 1m, gates: [{kind: metrics, alpah: 0.1}]}}]", "steps[0].bake.gates[0].alpah: unknown field"},
		{"metrics gate value", "steps:\n- traffic: 5\n- rampUp: {changeStep: 5, interval: 1m, gates: [{kind: metrics, maxSlowerProb: 2}]}", "steps[1].rampUp.gates[0].maxSlowerProb: 2 is not in (0.5, 1)"},
		{"two documents", "steps: [swap]\n---\nsteps: [swap]", "more than one YAML document"},
		{"not yaml", "steps: [", "not valid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rollout.ParsePlan([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("ParsePlan succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tc.want)
			}
			if code := modelslot.ErrorCode(err); code != modelslot.EINVALID {
				t.Errorf("code = %q, want %q", code, modelslot.EINVALID)
			}
		})
	}
}

func TestParsePlanDefaults(t *testing.T) {
	p := mustPlan(t, `
steps:
  - traffic: 10
  - bake: {duration: 10m}
  - rampUp: {changeStep: 20, changeIntervalInMinutes: 5}
  - pause
  - swap
  - watch: {duration: 15m, onInconclusive: fail}
`)
	if p.Interval.D() != rollout.DefaultInterval || p.OnInconclusive != rollout.InconclusivePause {
		t.Errorf("interval %v policy %q, want defaults", p.Interval.D(), p.OnInconclusive)
	}
	if g := *p.Analysis.Gates; len(g) != 1 || g[0].Kind != rollout.KindMetrics {
		t.Errorf("plan gates = %+v, want one metrics gate by default", g)
	}
	b := p.Steps[1].Bake
	if b.Max.D() != 30*time.Minute || b.OnInconclusive != rollout.InconclusivePause {
		t.Errorf("bake max %v policy %q, want 30m and the plan's pause", b.Max.D(), b.OnInconclusive)
	}
	r := p.Steps[2].RampUp
	if *r.Min != 0 || *r.Max != 100 || r.Every() != 5*time.Minute {
		t.Errorf("ramp min %v max %v every %v", *r.Min, *r.Max, r.Every())
	}
	if p.Steps[3].Pause == nil || p.Steps[4].Swap == nil || p.Steps[5].Watch.OnInconclusive != rollout.InconclusiveFail {
		t.Errorf("steps = %+v", p.Steps)
	}
	if !p.HasSwap() {
		t.Error("HasSwap = false")
	}
	if p2 := mustPlan(t, "analysis: {gates: []}\nsteps: [{traffic: 5}]"); len(*p2.Analysis.Gates) != 0 {
		t.Error("an empty analysis.gates list must turn plan-level gates off")
	}
}

func TestExamplePlansParse(t *testing.T) {
	files, err := filepath.Glob("../examples/plan-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d example plans, want at least 3", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rollout.ParsePlan(b); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		})
	}
}

// probedAlpha records the alpha each alphaprobe gate was built with, by its
// path in the plan.
var probedAlpha = map[string]float64{}

func init() {
	rollout.RegisterGate("alphaprobe", func(c rollout.GateConfig) (rollout.Gate, error) {
		probedAlpha[c.Path] = c.Analysis.Alpha
		return &staticGate{Verdict: "pass"}, nil
	})
}

// analysis.alpha bounds the whole rollout's chance of failing a candidate no
// worse than production: every use of a gate in a judged phase (a bake, a
// watch, each ramp level) gets an equal share, and the metrics gate judges
// with its share and shows it in its evidence.
func TestPlanAlphaIsSplitAmongJudgedPhases(t *testing.T) {
	cases := []struct {
		name, plan string
		want       float64
		probe      string
	}{
		{"three judged phases", `
analysis: {alpha: 0.03, gates: [{kind: alphaprobe}]}
steps: [{traffic: 10}, {bake: {duration: 1m}}, {traffic: 50}, {bake: {duration: 1m}}, {swap: {}}, {watch: {duration: 1m}}]`,
			0.01, "analysis.gates[0]"},
		{"a step gate besides the plan's", `
analysis: {alpha: 0.02}
steps: [{bake: {duration: 1m, gates: [{kind: alphaprobe}]}}]`,
			0.01, "steps[0].bake.gates[0]"},
		{"no plan gates", `
analysis: {gates: []}
steps: [{bake: {duration: 1m, gates: [{kind: alphaprobe}]}}]`,
			0.01, "steps[0].bake.gates[0]"},
		{"a ramp counts its most levels", `
analysis: {gates: [{kind: alphaprobe}]}
steps: [{rampUp: {changeStep: 10, interval: 1m, min: 0, max: 50}}, {bake: {duration: 1m}}]`,
			0.01 / 7, "analysis.gates[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustPlan(t, tc.plan)
			if math.Abs(p.GateAlpha-tc.want) > 1e-12 {
				t.Errorf("gateAlpha %g, want %g", p.GateAlpha, tc.want)
			}
			if got := probedAlpha[tc.probe]; math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("gate %s built with alpha %g, want %g", tc.probe, got, tc.want)
			}
		})
	}

	// The metrics gate judges with its share.
	p := mustPlan(t, "analysis: {alpha: 0.02}\nsteps: [{bake: {duration: 1m}}, {bake: {duration: 1m}}]")
	res, err := (*p.Analysis.Gates)[0].Gate().Evaluate(context.Background(), rollout.GateInput{})
	if err != nil {
		t.Fatal(err)
	}
	var ev struct{ Alpha float64 }
	if err := json.Unmarshal(res.Evidence, &ev); err != nil || ev.Alpha != 0.01 {
		t.Errorf("metrics evidence %s: alpha %g, want 0.01 (%v)", res.Evidence, ev.Alpha, err)
	}
}

// TestWarmupDefaults: a step's warm-up takes its unset fields from the
// plan's, and the plan's from the defaults (30 s, 50 requests).
func TestWarmupDefaults(t *testing.T) {
	p := mustPlan(t, `
warmup: {requests: 80}
steps:
  - traffic: 10
  - bake: {duration: 1m}
  - bake: {duration: 1m, warmup: {duration: 2m}}
  - rampUp: {changeStep: 10, interval: 1m, warmup: {duration: 0s, requests: 0}}
`)
	for _, tc := range []struct {
		w    *rollout.Warmup
		dur  time.Duration
		reqs int
	}{
		{p.Warmup, rollout.DefaultWarmupDuration, 80},
		{p.Steps[1].Bake.Warmup, rollout.DefaultWarmupDuration, 80},
		{p.Steps[2].Bake.Warmup, 2 * time.Minute, 80},
		{p.Steps[3].RampUp.Warmup, 0, 0},
	} {
		if got := tc.w.Duration.D(); got != tc.dur || *tc.w.Requests != tc.reqs {
			t.Errorf("warm-up %v and %d requests, want %v and %d", got, *tc.w.Requests, tc.dur, tc.reqs)
		}
	}
	if !p.Steps[3].RampUp.Warmup.Off() {
		t.Error("warmup {0s, 0} is not off")
	}
}
