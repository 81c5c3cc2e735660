package gates_test

import (
	"context"
	"strings"
	"testing"

	"github.com/modelslot/modelslot"
	_ "github.com/modelslot/modelslot/gates"
	"github.com/modelslot/modelslot/rollout"
)

func plan(gate string) string {
	return "analysis: {gates: []}\nsteps:\n  - bake:\n      max: 1m\n      gates:\n        - " + gate + "\n"
}

func TestExamplePlanParses(t *testing.T) {
	p, err := rollout.ParsePlanFile("../examples/plan-validated.yaml")
	if err != nil {
		t.Fatalf("examples/plan-validated.yaml: %v", err)
	}
	var kinds []string
	for _, g := range p.Steps[0].Bake.Gates {
		kinds = append(kinds, g.Kind)
	}
	if got, want := strings.Join(kinds, ","), "loadtest,eval"; got != want {
		t.Errorf("validation gates %s, want %s", got, want)
	}
}

func TestGateSpecs(t *testing.T) {
	tests := []struct {
		name, gate string
		wantErr    string // "" for a valid spec
	}{
		{"loadtest", "{kind: loadtest, rate: 5, duration: 10s, slo: {ttft: 500ms, tpot: 50ms, e2e: 5s}, maxRatio: 1.2}", ""},
		{"loadtest without rate", "{kind: loadtest, duration: 10s}", "steps[0].bake.gates[0].rate: is required"},
		{"loadtest without duration", "{kind: loadtest, rate: 5}", "steps[0].bake.gates[0].duration: is required"},
		{"loadtest ratio below 1", "{kind: loadtest, rate: 5, duration: 1s, maxRatio: 0.5}", "maxRatio: 0.5 is out of range"},
		{"loadtest unknown field", "{kind: loadtest, rate: 5, duration: 1s, rps: 3}", "rps"},
		{"loadtest bad duration", "{kind: loadtest, rate: 5, duration: soon}", "duration"},
		{"eval", "{kind: eval, golden: ../examples/golden.jsonl, margin: 0.05}", ""},
		{"eval without golden", "{kind: eval}", "golden: is required"},
		{"eval minCases", "{kind: eval, golden: golden.jsonl, minCases: -1}", "minCases: -1 is out of range"},
		{"eval margin", "{kind: eval, golden: ../examples/golden.jsonl, margin: 2}", "margin: 2 is out of range"},
		{"shadow", "{kind: shadow, minSamples: 50, minExactMatch: 0.9, maxLatencyRatio: 2, strict: true}", ""},
		{"shadow share", "{kind: shadow, maxEmptyRate: 1.5}", "maxEmptyRate: 1.5 is out of range"},
		{"shadow ratio", "{kind: shadow, maxTTFTRatio: 0}", "maxTTFTRatio: 0 is out of range"},
		{"shadow output bounds", "{kind: shadow, minOutputRatio: 3, maxOutputRatio: 2}", "minOutputRatio 3 is above maxOutputRatio 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rollout.ParsePlan([]byte(plan(tc.gate)))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ParsePlan: %v, want no error", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("ParsePlan: no error, want one with %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("ParsePlan: %v, want an error with %q", err, tc.wantErr)
			case err != nil && modelslot.ErrorCode(err) != modelslot.EINVALID:
				t.Fatalf("ParsePlan: code %s, want %s", modelslot.ErrorCode(err), modelslot.EINVALID)
			}
		})
	}
}

// TestEvalGoldenSetErrors: the golden set is read when the gate runs; a
// missing or short one is a failed measurement that says why.
func TestEvalGoldenSetErrors(t *testing.T) {
	tests := []struct{ gate, wantErr string }{
		{"{kind: eval, golden: nowhere.jsonl}", "nowhere.jsonl"},
		{"{kind: eval, golden: ../examples/golden.jsonl, minCases: 100}", "fewer than minCases 100"},
	}
	for _, tc := range tests {
		p, err := rollout.ParsePlan([]byte(plan(tc.gate)))
		if err != nil {
			t.Fatalf("%s: %v", tc.gate, err)
		}
		in := rollout.GateInput{App: "default", Candidate: "staging", Baseline: modelslot.Production, GatewayURL: "http://127.0.0.1:1"}
		_, err = p.Steps[0].Bake.Gates[0].Gate().Evaluate(context.Background(), in)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: Evaluate error %v, want one with %q", tc.gate, err, tc.wantErr)
		}
	}
}
