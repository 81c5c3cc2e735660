package rollout

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/analysis"
	"gopkg.in/yaml.v3"
)

// Verdict is a gate's decision at one look.
type Verdict string

const (
	Pass         Verdict = "pass"
	Fail         Verdict = "fail"
	Inconclusive Verdict = "inconclusive"
)

// Gate judges a candidate at a bake, watch or ramp level. The controller
// calls Evaluate every interval of the phase; a gate keeps nothing in
// memory between calls that it needs after a restart: it returns its state
// in GateResult.State and gets it back in GateInput.State.
//
// An error is a failed measurement, not a crash: the look counts as
// inconclusive (with the error as its reason) and the phase goes on.
type Gate interface {
	Kind() string
	Evaluate(ctx context.Context, in GateInput) (GateResult, error)
}

// GateInput is what a gate sees at one look.
type GateInput struct {
	App string
	// Candidate is the slot being judged and Baseline the slot it is
	// compared with: the rollout's slot and production before the swap,
	// production and the rollout's slot (now serving the previous
	// deployment) in a watch.
	Candidate string
	Baseline  string
	// From is when the phase started and To is now: the gate's window is
	// [From, To).
	From, To time.Time
	// CandidateData and BaselineData are the metric source's data that is
	// new since the previous look (consecutive windows, each request
	// exactly once, both Complete).
	CandidateData modelslot.Series
	BaselineData  modelslot.Series
	Platform      modelslot.Platform
	Metrics       modelslot.MetricSource
	// GatewayURL is the base address of the app's OpenAI-compatible
	// gateway, for gates that send requests of their own ("" when unknown).
	GatewayURL string
	// GatewayHeaders go on every request a gate sends through the gateway
	// (the key that keeps them out of the slots' meters).
	GatewayHeaders http.Header
	// State is what the gate returned at its previous look (nil at the
	// first).
	State json.RawMessage
}

// GateResult is a gate's verdict at one look.
type GateResult struct {
	Verdict Verdict `json:"verdict"`
	// Reason says why in plain words, with the numbers.
	Reason string `json:"reason"`
	// Evidence is the gate's detail (checks, statistics, thresholds).
	Evidence json.RawMessage `json:"evidence,omitempty"`
	// Checks is the gate's progress per check, for status views (optional).
	Checks []CheckProgress `json:"checks,omitempty"`
	// State is persisted with the rollout and handed back at the next look.
	State json.RawMessage `json:"-"`
}

// GateConfig is what a factory gets to build a gate from a plan.
type GateConfig struct {
	Kind string
	// Path locates the gate in the plan ("steps[2].bake.gates[0]"): start
	// every error with it (Decode does).
	Path string
	// Node holds the gate's fields, without kind.
	Node *yaml.Node
	// Analysis is the plan-level analysis policy, for defaults.
	Analysis Analysis
}

// Decode decodes the gate's fields strictly into v (a pointer to a struct
// with yaml tags); errors name the field path.
func (c GateConfig) Decode(v any) error { return DecodeStrict(c.Node, c.Path, v) }

// GateFactory builds a gate from its plan entry. Return EINVALID errors
// that start with cfg.Path.
type GateFactory func(cfg GateConfig) (Gate, error)

var (
	gatesMu   sync.RWMutex
	factories = map[string]GateFactory{}
)

// RegisterGate makes a gate kind available to plans. It panics if the kind
// is registered twice, as init-time registrations do.
func RegisterGate(kind string, f GateFactory) {
	gatesMu.Lock()
	defer gatesMu.Unlock()
	if _, dup := factories[kind]; dup {
		panic("rollout: gate kind " + kind + " registered twice")
	}
	factories[kind] = f
}

// GateKinds lists the registered kinds.
func GateKinds() []string {
	gatesMu.RLock()
	defer gatesMu.RUnlock()
	kinds := make([]string, 0, len(factories))
	for k := range factories {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

func lookupGate(kind string) GateFactory {
	gatesMu.RLock()
	defer gatesMu.RUnlock()
	return factories[kind]
}

// GateSpec is one gate entry of a plan: `{kind: metrics, ...fields}`.
type GateSpec struct {
	Kind string
	// Spec holds the other fields as written, for display.
	Spec map[string]any

	node *yaml.Node
	gate Gate
}

// Gate returns the built gate (nil before the plan is validated).
func (g *GateSpec) Gate() Gate { return g.gate }

func (g *GateSpec) decodeNode(n *yaml.Node, path string) error {
	if n.Kind != yaml.MappingNode {
		return fieldError(path, "%s is not a gate: write a mapping with a kind, e.g. `{kind: metrics}`", describe(n))
	}
	rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "kind" {
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				return fieldError(join(path, "kind"), "%s is not a gate kind (kinds: %s)", describe(v), strings.Join(GateKinds(), ", "))
			}
			g.Kind = v.Value
			continue
		}
		rest.Content = append(rest.Content, k, v)
	}
	if g.Kind == "" {
		return fieldError(join(path, "kind"), "is required (kinds: %s)", strings.Join(GateKinds(), ", "))
	}
	g.Spec = map[string]any{}
	if err := rest.Decode(&g.Spec); err != nil {
		return fieldError(path, "%v", err)
	}
	g.node = rest
	return nil
}

// MarshalJSON writes the entry as it reads: kind and fields side by side.
func (g GateSpec) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(g.Spec)+1)
	for k, v := range g.Spec {
		m[k] = v
	}
	m["kind"] = g.Kind
	return json.Marshal(m)
}

// KindMetrics is the built-in gate kind that compares the candidate with
// its baseline using analysis.Judge over the metric source's data.
const KindMetrics = "metrics"

func init() { RegisterGate(KindMetrics, newMetricsGate) }

// metricsSpec is a metrics gate's entry; unset fields take the plan's
// analysis values.
type metricsSpec struct {
	Alpha            *float64            `yaml:"alpha"`
	PassRisk         *float64            `yaml:"passRisk"`
	RelMargin        *float64            `yaml:"relMargin"`
	AbsMargin        *modelslot.Duration `yaml:"absMargin"`
	ErrorRatioMargin *float64            `yaml:"errorRatioMargin"`
	MinSamples       *int                `yaml:"minSamples"`
	MaxErrorRatio    *float64            `yaml:"maxErrorRatio"`
	MaxErrorRate     *float64            `yaml:"maxErrorRate"`
	MaxSlowerProb    *float64            `yaml:"maxSlowerProb"`
	MinTokensRatio   *float64            `yaml:"minTokensRatio"`
	MinOutputRatio   *float64            `yaml:"minOutputRatio"`
	MaxOutputRatio   *float64            `yaml:"maxOutputRatio"`
	Metrics          []string            `yaml:"metrics"`
	SLO              []SLO               `yaml:"slo"`
}

type metricsGate struct{ cfg analysis.Config }

func newMetricsGate(c GateConfig) (Gate, error) {
	var s metricsSpec
	if err := c.Decode(&s); err != nil {
		return nil, err
	}
	a := c.Analysis
	a.Gates = nil
	setF := func(dst *float64, src *float64) {
		if src != nil {
			*dst = *src
		}
	}
	setF(&a.Alpha, s.Alpha)
	setF(&a.PassRisk, s.PassRisk)
	setF(&a.RelMargin, s.RelMargin)
	setF(&a.ErrorRatioMargin, s.ErrorRatioMargin)
	if s.AbsMargin != nil {
		a.AbsMargin = *s.AbsMargin
	}
	setF(&a.MaxErrorRatio, s.MaxErrorRatio)
	setF(&a.MaxErrorRate, s.MaxErrorRate)
	setF(&a.MaxSlowerProb, s.MaxSlowerProb)
	setF(&a.MinTokensRatio, s.MinTokensRatio)
	setF(&a.MinOutputRatio, s.MinOutputRatio)
	setF(&a.MaxOutputRatio, s.MaxOutputRatio)
	if s.MinSamples != nil {
		a.MinSamples = *s.MinSamples
	}
	if s.Metrics != nil {
		a.Metrics = s.Metrics
	}
	if s.SLO != nil {
		a.SLO = s.SLO
	}
	if err := a.validate(c.Path); err != nil {
		return nil, err
	}
	cfg := analysis.Config{
		Alpha: a.Alpha, MinSamples: a.MinSamples, MaxErrorRatio: a.MaxErrorRatio, MaxErrorRate: a.MaxErrorRate,
		MaxSlowerProb: a.MaxSlowerProb, MinTokensRatio: a.MinTokensRatio, Metrics: a.Metrics,
		MinOutputRatio: a.MinOutputRatio, MaxOutputRatio: a.MaxOutputRatio,
		PassRisk: a.PassRisk, RelMargin: a.RelMargin, AbsMargin: a.AbsMargin.D(), ErrorRatioMargin: a.ErrorRatioMargin,
	}
	for _, slo := range a.SLO {
		cfg.SLO = append(cfg.SLO, analysis.SLO{Metric: slo.Metric, Quantile: slo.Quantile, Max: slo.Max.D()})
	}
	if _, err := analysis.NewJudge(cfg); err != nil {
		return nil, fieldError(c.Path, "%s", modelslot.ErrorMessage(err))
	}
	return &metricsGate{cfg: cfg}, nil
}

func (g *metricsGate) Kind() string { return KindMetrics }

// MetricCapabilities is implemented by a metric source that cannot
// measure every analysis metric (Azure Monitor has no time to first
// token). Manager.Start refuses a plan whose metrics gates name one of
// them, with the source's reason, instead of letting the gate stay
// inconclusive to its deadline.
type MetricCapabilities interface {
	// Unmeasurable maps each analysis metric the source cannot measure
	// ("ttft", "tail_latency", ...; "slo:latency" and "slo:ttft" for
	// quantile SLOs) to why.
	Unmeasurable() map[string]string
}

// needs lists what the gate must measure: the metrics the plan names
// explicitly (the default set judges what has data) and its SLOs.
func (g *metricsGate) needs() []string {
	out := slices.Clone(g.cfg.Metrics)
	for _, s := range g.cfg.SLO {
		out = append(out, "slo:"+s.Metric)
	}
	return out
}

// checkMeasurable refuses a plan whose metrics gates need what ms cannot
// measure.
func checkMeasurable(p *Plan, ms modelslot.MetricSource) error {
	caps, ok := ms.(MetricCapabilities)
	if !ok {
		return nil
	}
	no := caps.Unmeasurable()
	var specs []*GateSpec
	var paths []string
	if p.Analysis.Gates != nil {
		for i := range *p.Analysis.Gates {
			specs, paths = append(specs, &(*p.Analysis.Gates)[i]), append(paths, index("analysis.gates", i))
		}
	}
	for si, st := range p.Steps {
		var gates []GateSpec
		switch {
		case st.Bake != nil:
			gates = st.Bake.Gates
		case st.Watch != nil:
			gates = st.Watch.Gates
		case st.RampUp != nil:
			gates = st.RampUp.Gates
		}
		for i := range gates {
			specs, paths = append(specs, &gates[i]), append(paths, index(join(index("steps", si), st.Kind()+".gates"), i))
		}
	}
	for i, g := range specs {
		mg, ok := g.gate.(*metricsGate)
		if !ok {
			continue
		}
		for _, m := range mg.needs() {
			if why, bad := no[m]; bad {
				what := "metric " + m
				if slo, ok := strings.CutPrefix(m, "slo:"); ok {
					what = "an SLO on a quantile of " + slo
				}
				return modelslot.Errorf(modelslot.EINVALID, "rollout: %s judges %s, which this metric source cannot measure: %s; remove it from the plan (analysis.metrics, analysis.slo or the gate's own)", paths[i], what, why)
			}
		}
	}
	return nil
}

func (g *metricsGate) Evaluate(ctx context.Context, in GateInput) (GateResult, error) {
	var j *analysis.Judge
	var err error
	if len(in.State) > 0 {
		j, err = analysis.RestoreJudge(g.cfg, in.State)
	} else {
		j, err = analysis.NewJudge(g.cfg)
	}
	if err != nil {
		return GateResult{}, fmt.Errorf("metrics gate: %w", err)
	}
	if !emptySeries(in.CandidateData) || !emptySeries(in.BaselineData) {
		j.Observe(in.CandidateData, in.BaselineData)
	}
	res := j.Result()
	ev, err := json.Marshal(metricsEvidence{Result: res, Alpha: g.cfg.Alpha})
	if err != nil {
		return GateResult{}, err
	}
	minSamples := g.cfg.MinSamples
	if minSamples == 0 {
		minSamples = analysis.DefaultMinSamples
	}
	return GateResult{Verdict: Verdict(res.Verdict), Reason: res.Reason, Evidence: ev, Checks: checkProgress(res, minSamples), State: j.State()}, nil
}

// metricsEvidence is the judge's result and the gate's share of the plan's
// alpha (the judge splits it further among its checks).
type metricsEvidence struct {
	analysis.Result
	Alpha float64 `json:"alpha"`
}

func emptySeries(s modelslot.Series) bool { return len(s.Samples) == 0 && len(s.Buckets) == 0 }
