package rollout

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestPlanSetsMargins: the judge's margins and pass risk come from the
// plan's analysis block and from a metrics gate's own entry; bad values
// are refused with the field's name.
func TestPlanSetsMargins(t *testing.T) {
	p, err := ParsePlan([]byte(`
name: margins
analysis: {relMargin: 0.1, absMargin: 20ms, errorRatioMargin: 1.2, passRisk: 0.1}
steps:
  - traffic: 10
  - bake: {duration: 1m}
`))
	if err != nil {
		t.Fatal(err)
	}
	a := p.Analysis
	if a.RelMargin != 0.1 || a.AbsMargin.D() != 20*time.Millisecond || a.ErrorRatioMargin != 1.2 || a.PassRisk != 0.1 {
		t.Fatalf("analysis = %+v", a)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("{relMargin: 0.2}"), &doc); err != nil {
		t.Fatal(err)
	}
	g, err := newMetricsGate(GateConfig{Kind: KindMetrics, Analysis: a, Path: "analysis.gates[0]", Node: doc.Content[0]})
	if err != nil {
		t.Fatal(err)
	}
	cfg := g.(*metricsGate).cfg
	if cfg.RelMargin != 0.2 || cfg.AbsMargin != 20*time.Millisecond || cfg.ErrorRatioMargin != 1.2 || cfg.PassRisk != 0.1 {
		t.Fatalf("judge config = %+v", cfg)
	}
	_, err = ParsePlan([]byte(`
name: bad
analysis: {errorRatioMargin: 3}
steps:
  - traffic: 10
  - bake: {duration: 1m}
`))
	if err == nil || !strings.Contains(err.Error(), "analysis") {
		t.Fatalf("errorRatioMargin above maxErrorRatio: %v", err)
	}
}
