// Package rollout moves a deployment from a slot into production by a plan
// of steps (traffic, bake, rampUp, pause, swap, watch) judged by gates, as a
// durable state machine per app that resumes after a restart and rolls back
// on a failing verdict.
package rollout

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/analysis"
	"gopkg.in/yaml.v3"
)

// Policy says what happens when a judged phase (bake, watch, ramp level)
// reaches its deadline without a pass or a fail.
type Policy string

const (
	// InconclusiveFail rolls back.
	InconclusiveFail Policy = "fail"
	// InconclusivePause pauses the rollout for an operator: promote
	// accepts, resume keeps collecting for another deadline span, abort
	// rolls back.
	InconclusivePause Policy = "pause"
	// InconclusiveExtend keeps collecting for one more deadline span; if
	// that one is inconclusive too, the rollout rolls back.
	InconclusiveExtend Policy = "extend"
)

// Plan defaults, in one place.
const (
	DefaultInterval       = 10 * time.Second
	DefaultOnInconclusive = InconclusivePause
	// DefaultMaxFactor: a bake or watch without max gets max = 3 x duration.
	DefaultMaxFactor = 3
	// A warm-up lasts DefaultWarmupDuration and DefaultWarmupRequests
	// candidate requests, whichever ends later.
	DefaultWarmupDuration = 30 * time.Second
	DefaultWarmupRequests = 50
)

// Step kinds.
const (
	KindTraffic = "traffic"
	KindBake    = "bake"
	KindPause   = "pause"
	KindSwap    = "swap"
	KindWatch   = "watch"
	KindRampUp  = "rampUp"
)

var stepKinds = []string{KindTraffic, KindBake, KindPause, KindSwap, KindWatch, KindRampUp}

// Analysis metrics a metrics gate can compare.
var analysisMetrics = analysis.Metrics()

// Plan is a parsed, validated rollout plan. docs/ROLLOUTS.md is its
// reference. Build one with ParsePlan: a Plan keeps its YAML source, which
// is what a rollout persists and re-parses when it resumes.
type Plan struct {
	Name        string `json:"name,omitempty" yaml:"name"`
	Description string `json:"description,omitempty" yaml:"description"`
	// Interval is how often gates look at the data (default 10s).
	Interval modelslot.Duration `json:"interval" yaml:"interval"`
	// OnInconclusive is the default policy of bake, watch and rampUp
	// steps (default pause).
	OnInconclusive Policy `json:"onInconclusive" yaml:"onInconclusive"`
	// Analysis holds the thresholds every metrics gate starts from and the
	// gates that judge every bake, watch and ramp level.
	Analysis Analysis `json:"analysis" yaml:"analysis"`
	// Azure holds what only a rollout on Azure App Service uses.
	Azure *AzurePlan `json:"azure,omitempty" yaml:"azure"`
	// Warmup is the default warm-up of bake, watch and rampUp steps
	// (default 30s and 50 candidate requests).
	Warmup *Warmup `json:"warmup,omitempty" yaml:"warmup"`
	Steps  []Step  `json:"steps" yaml:"steps"`
	// GateAlpha is the share of analysis.alpha each gate gets in each
	// judged phase (computed: see judgedUses).
	GateAlpha float64 `json:"gateAlpha" yaml:"-"`

	source string
}

// Analysis is the plan-level analysis policy. Zero thresholds take the
// analysis package's defaults (alpha 0.01, passRisk 0.05, minSamples 200,
// maxErrorRatio 1.5, maxErrorRate 0.01, maxSlowerProb 0.56, relMargin 0.05,
// absMargin 5ms, errorRatioMargin 1.1, minTokensRatio 0.8).
type Analysis struct {
	Alpha float64 `json:"alpha,omitempty" yaml:"alpha"`
	// PassRisk, RelMargin, AbsMargin and ErrorRatioMargin are the judge's
	// pass risk and practical margins (docs/ANALYSIS.md).
	PassRisk         float64            `json:"passRisk,omitempty" yaml:"passRisk"`
	RelMargin        float64            `json:"relMargin,omitempty" yaml:"relMargin"`
	AbsMargin        modelslot.Duration `json:"absMargin,omitempty" yaml:"absMargin"`
	ErrorRatioMargin float64            `json:"errorRatioMargin,omitempty" yaml:"errorRatioMargin"`
	MinSamples       int                `json:"minSamples,omitempty" yaml:"minSamples"`
	MaxErrorRatio    float64            `json:"maxErrorRatio,omitempty" yaml:"maxErrorRatio"`
	MaxErrorRate     float64            `json:"maxErrorRate,omitempty" yaml:"maxErrorRate"`
	MaxSlowerProb    float64            `json:"maxSlowerProb,omitempty" yaml:"maxSlowerProb"`
	MinTokensRatio   float64            `json:"minTokensRatio,omitempty" yaml:"minTokensRatio"`
	MinOutputRatio   float64            `json:"minOutputRatio,omitempty" yaml:"minOutputRatio"`
	MaxOutputRatio   float64            `json:"maxOutputRatio,omitempty" yaml:"maxOutputRatio"`
	Metrics          []string           `json:"metrics,omitempty" yaml:"metrics"`
	SLO              []SLO              `json:"slo,omitempty" yaml:"slo"`
	// Gates judge every bake, watch and ramp level, before the step's own
	// gates. Absent: one metrics gate with the thresholds above. An empty
	// list turns plan-level analysis off.
	Gates *[]GateSpec `json:"gates" yaml:"gates"`
}

// AzurePlan is the plan's `azure:` block.
type AzurePlan struct {
	// MetricsDelay is how long after its end a minute of Azure Monitor
	// data is final; younger minutes are read again at the next look
	// instead of being judged. 0: the driver's (--azure-metrics-delay,
	// default 3m).
	MetricsDelay modelslot.Duration `json:"metricsDelay,omitempty" yaml:"metricsDelay"`
}

// MaxMetricsDelay bounds azure.metricsDelay: Azure Monitor's documented
// latency is minutes, not hours.
const MaxMetricsDelay = time.Hour

// metricsDelay is the plan's settle delay (0: the source's).
func (p *Plan) metricsDelay() time.Duration {
	if p == nil || p.Azure == nil {
		return 0
	}
	return p.Azure.MetricsDelay.D()
}

// Warmup is the start of a judged phase after the traffic changed (a
// traffic step, a ramp level, a swap): its requests
// are counted and shown, not judged, so that a candidate that is slow while
// its caches fill is not rolled back for its first seconds. It ends once
// both Duration has passed and Requests candidate requests have arrived.
// Unset fields take the plan's warm-up, then the defaults; zero turns a part
// off (`warmup: {duration: 0s, requests: 0}` judges from the first request).
type Warmup struct {
	Duration *modelslot.Duration `json:"duration,omitempty" yaml:"duration"`
	Requests *int                `json:"requests,omitempty" yaml:"requests"`
}

// Off reports whether the warm-up judges from the first request.
func (w *Warmup) Off() bool { return w.Duration.D() == 0 && *w.Requests == 0 }

// String says it in a few words: "30s and 50 requests".
func (w *Warmup) String() string {
	if w.Off() {
		return "none"
	}
	return fmt.Sprintf("%v and %d candidate requests", w.Duration.D(), *w.Requests)
}

// resolve fills w's unset fields from def (the plan's, already resolved).
func (w *Warmup) resolve(def *Warmup, path string) (*Warmup, error) {
	out := &Warmup{}
	if w != nil {
		*out = *w
	}
	if out.Duration == nil {
		out.Duration = def.Duration
	}
	if out.Requests == nil {
		out.Requests = def.Requests
	}
	if *out.Requests < 0 {
		return nil, fieldError(join(path, "requests"), "%d is negative", *out.Requests)
	}
	return out, nil
}

// SLO is an absolute limit on a quantile of the candidate's latency or TTFT.
type SLO struct {
	Metric   string             `json:"metric" yaml:"metric"`
	Quantile float64            `json:"quantile" yaml:"quantile"`
	Max      modelslot.Duration `json:"max" yaml:"max"`
}

// Step is one step of a plan: exactly one field is set.
type Step struct {
	// Traffic sets the candidate slot's share of the app's traffic.
	Traffic *float64 `json:"traffic,omitempty" yaml:"traffic"`
	Bake    *Bake    `json:"bake,omitempty" yaml:"bake"`
	Pause   *Pause   `json:"pause,omitempty" yaml:"pause"`
	Swap    *Swap    `json:"swap,omitempty" yaml:"swap"`
	// Watch judges production after the swap; a fail swaps back.
	Watch  *Bake   `json:"watch,omitempty" yaml:"watch"`
	RampUp *RampUp `json:"rampUp,omitempty" yaml:"rampUp"`
}

// Bake holds the current traffic while gates judge the candidate (and, as
// a watch, production after the swap).
type Bake struct {
	// Duration is the least time before a pass.
	Duration modelslot.Duration `json:"duration" yaml:"duration"`
	// MinRequests is the least number of candidate requests before a pass.
	MinRequests int `json:"minRequests,omitempty" yaml:"minRequests"`
	// Max is the deadline for a pass (default 3 x duration); then
	// OnInconclusive decides.
	Max            modelslot.Duration `json:"max" yaml:"max"`
	OnInconclusive Policy             `json:"onInconclusive" yaml:"onInconclusive"`
	Gates          []GateSpec         `json:"gates,omitempty" yaml:"gates"`
	// Warmup is taken off the start of the phase when the traffic changed
	// before it (default: the plan's). Duration, MinRequests and Max count
	// from its end.
	Warmup *Warmup `json:"warmup,omitempty" yaml:"warmup"`
}

// Pause waits for an operator's resume or promote, or for Duration.
type Pause struct {
	Duration modelslot.Duration `json:"duration,omitempty" yaml:"duration"`
}

// Swap swaps the candidate slot into production.
type Swap struct {
	// BaselineTraffic is the share the slot (now serving the previous
	// production deployment) keeps after the swap, so that a watch has a
	// baseline to compare with. Default 0; the rollout sets it to 0 when it
	// succeeds.
	BaselineTraffic float64 `json:"baselineTraffic,omitempty" yaml:"baselineTraffic"`
}

// RampUp moves the candidate's share by ChangeStep every interval, as
// Azure's ramp-up rules do, clamped to [Min, Max]; each change waits for
// the gates to pass on the data of the level before it.
type RampUp struct {
	ChangeStep              float64            `json:"changeStep" yaml:"changeStep"`
	ChangeIntervalInMinutes float64            `json:"changeIntervalInMinutes,omitempty" yaml:"changeIntervalInMinutes"`
	Interval                modelslot.Duration `json:"interval,omitempty" yaml:"interval"`
	Min                     *float64           `json:"min" yaml:"min"`
	Max                     *float64           `json:"max" yaml:"max"`
	// MinRequests is the least number of candidate requests per level.
	MinRequests    int        `json:"minRequests,omitempty" yaml:"minRequests"`
	OnInconclusive Policy     `json:"onInconclusive" yaml:"onInconclusive"`
	Gates          []GateSpec `json:"gates,omitempty" yaml:"gates"`
	// Warmup starts every level (default: the plan's); the level's
	// interval counts from its end.
	Warmup *Warmup `json:"warmup,omitempty" yaml:"warmup"`
}

// Every returns the time between two changes.
func (r *RampUp) Every() time.Duration {
	if r.Interval > 0 {
		return r.Interval.D()
	}
	return time.Duration(r.ChangeIntervalInMinutes * float64(time.Minute))
}

// Kind returns the step's kind ("traffic", "bake", ...).
func (s Step) Kind() string {
	switch {
	case s.Traffic != nil:
		return KindTraffic
	case s.Bake != nil:
		return KindBake
	case s.Pause != nil:
		return KindPause
	case s.Swap != nil:
		return KindSwap
	case s.Watch != nil:
		return KindWatch
	case s.RampUp != nil:
		return KindRampUp
	}
	return ""
}

// String describes the step in a few words.
func (s Step) String() string {
	switch {
	case s.Traffic != nil:
		return fmt.Sprintf("traffic %g%%", *s.Traffic)
	case s.Bake != nil:
		return "bake " + s.Bake.String()
	case s.Watch != nil:
		return "watch " + s.Watch.String()
	case s.Pause != nil:
		if s.Pause.Duration > 0 {
			return "pause " + s.Pause.Duration.D().String()
		}
		return "pause until resumed"
	case s.Swap != nil:
		return "swap into production"
	case s.RampUp != nil:
		r := s.RampUp
		return fmt.Sprintf("rampUp %+g%% every %v within [%g%%, %g%%]", r.ChangeStep, r.Every(), deref(r.Min), deref(r.Max))
	}
	return "?"
}

func (b *Bake) String() string {
	s := b.Duration.D().String()
	if b.MinRequests > 0 {
		s += fmt.Sprintf(" and %d requests", b.MinRequests)
	}
	return s + fmt.Sprintf(" (max %v, then %s)", b.Max.D(), b.OnInconclusive)
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// decodeNode accepts `- swap`, `- pause` and one-key mappings.
func (s *Step) decodeNode(n *yaml.Node, path string) error {
	*s = Step{}
	if n.Kind == yaml.ScalarNode && (n.Value == KindSwap || n.Value == KindPause) {
		if n.Value == KindSwap {
			s.Swap = &Swap{}
		} else {
			s.Pause = &Pause{}
		}
		return nil
	}
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		return fieldError(path, "%s is not a step: write one of %s, e.g. `- traffic: 10`", describe(n), strings.Join(stepKinds, ", "))
	}
	if len(n.Content) > 2 {
		var keys []string
		for i := 0; i < len(n.Content); i += 2 {
			keys = append(keys, n.Content[i].Value)
		}
		return fieldError(path, "a step has exactly one kind, got %s: split it into several steps", strings.Join(keys, ", "))
	}
	key, val := n.Content[0].Value, n.Content[1]
	p := join(path, key)
	// `swap:` and `pause:` with nothing after them are the bare steps.
	empty := isNull(val)
	switch key {
	case KindTraffic:
		var f float64
		if err := decodeValue(val, p, reflectOf(&f)); err != nil {
			return err
		}
		s.Traffic = &f
	case KindBake:
		s.Bake = &Bake{}
		return decodeValue(val, p, reflectOf(s.Bake))
	case KindWatch:
		s.Watch = &Bake{}
		return decodeValue(val, p, reflectOf(s.Watch))
	case KindPause:
		s.Pause = &Pause{}
		if !empty {
			return decodeValue(val, p, reflectOf(s.Pause))
		}
	case KindSwap:
		s.Swap = &Swap{}
		if !empty {
			return decodeValue(val, p, reflectOf(s.Swap))
		}
	case KindRampUp:
		s.RampUp = &RampUp{}
		return decodeValue(val, p, reflectOf(s.RampUp))
	default:
		return fieldError(p, "unknown step kind (kinds: %s)", strings.Join(stepKinds, ", "))
	}
	return nil
}

// ParsePlan decodes and validates a YAML (or JSON) plan. Every error is a
// modelslot EINVALID error that names the field path.
func ParsePlan(data []byte) (*Plan, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if err == io.EOF {
			return nil, modelslot.Errorf(modelslot.EINVALID, "plan is empty: it needs at least `steps:`")
		}
		return nil, modelslot.Errorf(modelslot.EINVALID, "plan is not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, modelslot.Errorf(modelslot.EINVALID, "plan holds more than one YAML document: keep one plan per file")
	}
	p := &Plan{}
	if err := decodeValue(&root, "", reflectOf(p)); err != nil {
		return nil, err
	}
	if err := p.build(); err != nil {
		return nil, err
	}
	p.source = string(data)
	return p, nil
}

// ParsePlanFile reads and parses a plan file.
func ParsePlanFile(path string) (*Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, modelslot.Wrapf(err, modelslot.EINVALID, "read plan: %v", err)
	}
	p, err := ParsePlan(b)
	if err != nil {
		return nil, modelslot.Wrapf(err, modelslot.EINVALID, "%s: %s", path, modelslot.ErrorMessage(err))
	}
	return p, nil
}

// Source returns the YAML the plan was parsed from.
func (p *Plan) Source() string { return p.source }

// HasSwap reports whether the plan swaps into production.
func (p *Plan) HasSwap() bool {
	return slices.ContainsFunc(p.Steps, func(s Step) bool { return s.Swap != nil })
}

// build fills the defaults, validates and constructs the gates.
func (p *Plan) build() error {
	if p.Interval == 0 {
		p.Interval = modelslot.Duration(DefaultInterval)
	}
	if p.Interval.D() < time.Millisecond {
		return fieldError("interval", "%v is too short", p.Interval.D())
	}
	if p.OnInconclusive == "" {
		p.OnInconclusive = DefaultOnInconclusive
	}
	if err := checkPolicy("onInconclusive", p.OnInconclusive); err != nil {
		return err
	}
	if err := p.Analysis.validate("analysis"); err != nil {
		return err
	}
	if a := p.Azure; a != nil && (a.MetricsDelay < 0 || a.MetricsDelay.D() > MaxMetricsDelay) {
		return fieldError("azure.metricsDelay", "%v is out of range: 0 (the driver's) to %v; Azure Monitor reports a minute about 3 minutes late", a.MetricsDelay.D(), MaxMetricsDelay)
	}
	defDur, defReq := modelslot.Duration(DefaultWarmupDuration), DefaultWarmupRequests
	w, err := p.Warmup.resolve(&Warmup{Duration: &defDur, Requests: &defReq}, "warmup")
	if err != nil {
		return err
	}
	p.Warmup = w
	if p.Analysis.Gates == nil {
		p.Analysis.Gates = &[]GateSpec{{Kind: KindMetrics, Spec: map[string]any{}}}
	}
	budget := p.Analysis.Alpha
	if budget == 0 {
		budget = analysis.DefaultAlpha
	}
	p.GateAlpha = budget / float64(max(p.judgedUses(), 1))
	if err := p.buildGates(*p.Analysis.Gates, "analysis.gates"); err != nil {
		return err
	}
	if len(p.Steps) == 0 {
		return fieldError("steps", "a plan needs at least one step, e.g. `- traffic: 10`")
	}
	swapAt := -1
	for i := range p.Steps {
		s := &p.Steps[i]
		path := index("steps", i)
		kind := s.Kind()
		if swapAt >= 0 && (kind == KindTraffic || kind == KindBake || kind == KindRampUp || kind == KindSwap) {
			return fieldError(join(path, kind), "comes after the swap (steps[%d]): once the candidate is production, only watch and pause steps make sense", swapAt)
		}
		switch kind {
		case KindTraffic:
			if err := checkPercent(join(path, kind), *s.Traffic); err != nil {
				return err
			}
		case KindBake, KindWatch:
			b := s.Bake
			if kind == KindWatch {
				b = s.Watch
				if swapAt < 0 {
					return fieldError(join(path, kind), "a watch judges production after the swap: put it after a swap step (use bake before the swap)")
				}
			}
			if err := p.buildBake(b, join(path, kind)); err != nil {
				return err
			}
		case KindPause:
		case KindSwap:
			swapAt = i
			if err := checkPercent(join(path, "swap.baselineTraffic"), s.Swap.BaselineTraffic); err != nil {
				return err
			}
		case KindRampUp:
			if err := p.buildRamp(s.RampUp, join(path, kind)); err != nil {
				return err
			}
		}
	}
	return nil
}

// judgedUses counts the uses of gates in a rollout of the plan: every gate
// of analysis.gates and of the step, in every bake, watch and ramp level.
// analysis.alpha bounds the chance that the whole rollout ever fails a
// candidate no worse than production, so each use gets an equal share of
// it (Bonferroni): a plan that judges three phases with one gate each gives
// each alpha/3. A ramp counts the most levels it can take, from min to max
// (its first level moves from a share only known at run time). Steps are
// validated later: this pass only counts.
func (p *Plan) judgedUses() int {
	planGates := 0
	if p.Analysis.Gates != nil {
		planGates = len(*p.Analysis.Gates)
	}
	uses := 0
	for _, s := range p.Steps {
		switch {
		case s.Bake != nil:
			uses += planGates + len(s.Bake.Gates)
		case s.Watch != nil:
			uses += planGates + len(s.Watch.Gates)
		case s.RampUp != nil:
			levels := 1
			r := s.RampUp
			if r.ChangeStep != 0 && !math.IsNaN(r.ChangeStep) {
				lo, hi := 0.0, 100.0
				if r.Min != nil {
					lo = *r.Min
				}
				if r.Max != nil {
					hi = *r.Max
				}
				if n := math.Ceil((hi-lo)/math.Abs(r.ChangeStep)) + 1; n > 1 && n <= 1000 {
					levels = int(n)
				}
			}
			uses += levels * (planGates + len(r.Gates))
		}
	}
	return uses
}

func (p *Plan) buildBake(b *Bake, path string) error {
	if b.MinRequests < 0 {
		return fieldError(join(path, "minRequests"), "%d is negative", b.MinRequests)
	}
	if b.Duration == 0 && b.Max == 0 {
		return fieldError(join(path, "duration"), "is required (or max): how long to judge, e.g. 10m")
	}
	if b.Max == 0 {
		b.Max = b.Duration * DefaultMaxFactor
	}
	if b.Max < b.Duration {
		return fieldError(join(path, "max"), "%v is shorter than duration %v", b.Max.D(), b.Duration.D())
	}
	if b.OnInconclusive == "" {
		b.OnInconclusive = p.OnInconclusive
	}
	if err := checkPolicy(join(path, "onInconclusive"), b.OnInconclusive); err != nil {
		return err
	}
	w, err := b.Warmup.resolve(p.Warmup, join(path, "warmup"))
	if err != nil {
		return err
	}
	b.Warmup = w
	return p.buildGates(b.Gates, join(path, "gates"))
}

func (p *Plan) buildRamp(r *RampUp, path string) error {
	if r.ChangeStep == 0 || r.ChangeStep < -100 || r.ChangeStep > 100 {
		return fieldError(join(path, "changeStep"), "%g must be a non-zero percentage from -100 to 100 (negative ramps down)", r.ChangeStep)
	}
	switch {
	case r.Interval > 0 && r.ChangeIntervalInMinutes != 0:
		return fieldError(join(path, "interval"), "set either interval or changeIntervalInMinutes, not both")
	case r.Interval == 0 && r.ChangeIntervalInMinutes == 0:
		return fieldError(join(path, "changeIntervalInMinutes"), "is required (or interval): how long each level lasts")
	case r.ChangeIntervalInMinutes < 0:
		return fieldError(join(path, "changeIntervalInMinutes"), "%g is negative", r.ChangeIntervalInMinutes)
	}
	if r.Min == nil {
		r.Min = new(float64)
	}
	if r.Max == nil {
		r.Max = new(float64)
		*r.Max = 100
	}
	if err := checkPercent(join(path, "min"), *r.Min); err != nil {
		return err
	}
	if err := checkPercent(join(path, "max"), *r.Max); err != nil {
		return err
	}
	if *r.Min > *r.Max {
		return fieldError(join(path, "min"), "%g is above max %g", *r.Min, *r.Max)
	}
	if r.MinRequests < 0 {
		return fieldError(join(path, "minRequests"), "%d is negative", r.MinRequests)
	}
	if r.OnInconclusive == "" {
		r.OnInconclusive = p.OnInconclusive
	}
	if err := checkPolicy(join(path, "onInconclusive"), r.OnInconclusive); err != nil {
		return err
	}
	w, err := r.Warmup.resolve(p.Warmup, join(path, "warmup"))
	if err != nil {
		return err
	}
	r.Warmup = w
	return p.buildGates(r.Gates, join(path, "gates"))
}

func (p *Plan) buildGates(specs []GateSpec, path string) error {
	for i := range specs {
		g := &specs[i]
		gp := index(path, i)
		f := lookupGate(g.Kind)
		if f == nil {
			return fieldError(join(gp, "kind"), "unknown gate kind %q (kinds: %s)", g.Kind, strings.Join(GateKinds(), ", "))
		}
		node := g.node
		if node == nil {
			node = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		a := p.Analysis
		a.Alpha = p.GateAlpha
		gate, err := f(GateConfig{Kind: g.Kind, Path: gp, Node: node, Analysis: a})
		if err != nil {
			if modelslot.ErrorCode(err) == modelslot.EINVALID {
				return err
			}
			return fieldError(gp, "%v", err)
		}
		g.gate = gate
	}
	return nil
}

func (a *Analysis) validate(path string) error {
	if a.Alpha != 0 && (a.Alpha <= 0 || a.Alpha > 0.5) {
		return fieldError(join(path, "alpha"), "%g is not in (0, 0.5]: it bounds the chance of rolling back a good candidate", a.Alpha)
	}
	if a.MinSamples < 0 {
		return fieldError(join(path, "minSamples"), "%d is negative", a.MinSamples)
	}
	if a.MaxErrorRatio != 0 && (a.MaxErrorRatio <= 1 || a.MaxErrorRatio > 50) {
		return fieldError(join(path, "maxErrorRatio"), "%g must be above 1 and at most 50 (1.5 refuses 50%% more errors than production)", a.MaxErrorRatio)
	}
	if a.MaxErrorRate >= 1 {
		return fieldError(join(path, "maxErrorRate"), "%g must be below 1 (0.02 is 2%%; negative turns the floor off)", a.MaxErrorRate)
	}
	if a.MaxSlowerProb != 0 && (a.MaxSlowerProb <= 0.5 || a.MaxSlowerProb >= 1) {
		return fieldError(join(path, "maxSlowerProb"), "%g is not in (0.5, 1)", a.MaxSlowerProb)
	}
	if a.MinTokensRatio != 0 && (a.MinTokensRatio <= 0 || a.MinTokensRatio >= 1) {
		return fieldError(join(path, "minTokensRatio"), "%g is not in (0, 1)", a.MinTokensRatio)
	}
	if a.MinOutputRatio != 0 && (a.MinOutputRatio <= 0 || a.MinOutputRatio >= 1) {
		return fieldError(join(path, "minOutputRatio"), "%g is not in (0, 1)", a.MinOutputRatio)
	}
	if a.MaxOutputRatio != 0 && a.MaxOutputRatio <= 1 {
		return fieldError(join(path, "maxOutputRatio"), "%g must be above 1", a.MaxOutputRatio)
	}
	seen := map[string]bool{}
	for i, m := range a.Metrics {
		if !slices.Contains(analysisMetrics, m) {
			return fieldError(index(join(path, "metrics"), i), "unknown metric %q (metrics: %s)", m, strings.Join(analysisMetrics, ", "))
		}
		if seen[m] {
			return fieldError(index(join(path, "metrics"), i), "%q is listed twice", m)
		}
		seen[m] = true
	}
	for i, s := range a.SLO {
		sp := index(join(path, "slo"), i)
		if s.Metric != "latency" && s.Metric != "ttft" {
			return fieldError(join(sp, "metric"), "%q is not latency or ttft", s.Metric)
		}
		if s.Quantile <= 0 || s.Quantile >= 1 {
			return fieldError(join(sp, "quantile"), "%g is not in (0, 1): write 0.95 for p95", s.Quantile)
		}
		if s.Max <= 0 {
			return fieldError(join(sp, "max"), "is required: the limit, e.g. 800ms")
		}
	}
	return nil
}

func checkPolicy(path string, p Policy) error {
	switch p {
	case InconclusiveFail, InconclusivePause, InconclusiveExtend:
		return nil
	}
	return fieldError(path, "%q is not fail, pause or extend", string(p))
}

func checkPercent(path string, v float64) error {
	if v < 0 || v > 100 {
		return fieldError(path, "%g is out of range: a share is a percentage from 0 to 100", v)
	}
	return nil
}
