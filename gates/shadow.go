package gates

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/modelslot/modelslot/analysis"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/rollout"
)

// ShadowSource has the comparisons of mirrored requests (the gateway's
// ShadowSamples). The shadow gate finds it on GateInput.Metrics: the daemon
// hands the controller a metric source that has it too.
type ShadowSource interface {
	ShadowSamples(app string, since time.Time) []gateway.ShadowPair
}

// shadowSpec is a shadow gate's entry in a plan (docs/SHADOW.md). Unset
// fields take the defaults noted; a share of 1 or a large ratio turns a
// check off.
type shadowSpec struct {
	// MinSamples mirrored requests of the phase before any verdict
	// (default 100).
	MinSamples int `yaml:"minSamples"`
	// MaxStatusMismatch: of the requests production answered 2xx, the
	// share the shadow did not (default 0.02).
	MaxStatusMismatch *float64 `yaml:"maxStatusMismatch"`
	// MaxLatencyRatio and MaxTTFTRatio bound the shadow's latency over
	// production's, paired request by request (geometric mean, default 1.5).
	MaxLatencyRatio *float64 `yaml:"maxLatencyRatio"`
	MaxTTFTRatio    *float64 `yaml:"maxTTFTRatio"`
	// MinExactMatch: the least share of answers equal to production's
	// (default 0: off; deterministic models at temperature 0 can ask 0.9).
	MinExactMatch *float64 `yaml:"minExactMatch"`
	// MaxEmptyRate: of the requests production answered with text, the
	// share the shadow left empty or refused (default 0.05).
	MaxEmptyRate *float64 `yaml:"maxEmptyRate"`
	// MaxJSONInvalidRate: of the requests production answered with valid
	// JSON, the share where the shadow's JSON is invalid (default 0.02).
	MaxJSONInvalidRate *float64 `yaml:"maxJSONInvalidRate"`
	// MinOutputRatio and MaxOutputRatio bound the shadow's output length
	// over production's (geometric mean, default 0.5 and 2).
	MinOutputRatio *float64 `yaml:"minOutputRatio"`
	MaxOutputRatio *float64 `yaml:"maxOutputRatio"`
	// Strict passes a check only when its confidence sequence is within
	// the limit; by default a check passes when its estimate is within the
	// limit, and fails only when its sequence is entirely beyond it.
	Strict bool `yaml:"strict"`
	// Alpha bounds the chance that the gate ever fails a candidate that is
	// within every limit, however often it looks (default: its share of
	// the plan's analysis.alpha, docs/ROLLOUTS.md). It is split evenly
	// among the checks.
	Alpha *float64 `yaml:"alpha"`
}

// shadowRatioTau is the scale, in log units, of the ratio effects the
// ratio checks' confidence sequences are tightest for (about +-20%).
const shadowRatioTau = 0.2

// shadowRatioMinPairs is the least number of pairs where both answered
// before a ratio check decides: its sequence uses the pairs' own spread.
const shadowRatioMinPairs = 10

type shadowGate struct {
	strict                                     bool
	minSamples                                 int
	alpha                                      float64
	maxMismatch, maxLatency, maxTTFT, minExact float64
	maxEmpty, maxJSON, minOutput, maxOutput    float64
}

func newShadowGate(c rollout.GateConfig) (rollout.Gate, error) {
	var s shadowSpec
	if err := c.Decode(&s); err != nil {
		return nil, err
	}
	g := &shadowGate{minSamples: s.MinSamples, strict: s.Strict, alpha: c.Analysis.Alpha}
	if s.Alpha != nil {
		g.alpha = *s.Alpha
		if !(g.alpha > 0 && g.alpha <= 0.5) {
			return nil, invalid(c.Path+".alpha", "%v is not in (0, 0.5]: it bounds the chance of failing a good candidate", g.alpha)
		}
	}
	if g.alpha == 0 {
		g.alpha = analysis.DefaultAlpha
	}
	if g.minSamples == 0 {
		g.minSamples = 100
	}
	if g.minSamples < 1 {
		return nil, invalid(c.Path+".minSamples", "%d is out of range: at least 1", s.MinSamples)
	}
	share := func(dst *float64, src *float64, def float64, name string) error {
		*dst = def
		if src != nil {
			*dst = *src
		}
		if !(*dst >= 0 && *dst <= 1) {
			return invalid(c.Path+"."+name, "%v is out of range: a share from 0 to 1", *dst)
		}
		return nil
	}
	ratio := func(dst *float64, src *float64, def float64, name string) error {
		*dst = def
		if src != nil {
			*dst = *src
		}
		if !(*dst > 0) || math.IsInf(*dst, 0) {
			return invalid(c.Path+"."+name, "%v is out of range: a positive ratio such as 1.5", *dst)
		}
		return nil
	}
	for _, err := range []error{
		share(&g.maxMismatch, s.MaxStatusMismatch, 0.02, "maxStatusMismatch"),
		share(&g.minExact, s.MinExactMatch, 0, "minExactMatch"),
		share(&g.maxEmpty, s.MaxEmptyRate, 0.05, "maxEmptyRate"),
		share(&g.maxJSON, s.MaxJSONInvalidRate, 0.02, "maxJSONInvalidRate"),
		ratio(&g.maxLatency, s.MaxLatencyRatio, 1.5, "maxLatencyRatio"),
		ratio(&g.maxTTFT, s.MaxTTFTRatio, 1.5, "maxTTFTRatio"),
		ratio(&g.minOutput, s.MinOutputRatio, 0.5, "minOutputRatio"),
		ratio(&g.maxOutput, s.MaxOutputRatio, 2, "maxOutputRatio"),
	} {
		if err != nil {
			return nil, err
		}
	}
	if g.minOutput > g.maxOutput {
		return nil, invalid(c.Path, "minOutputRatio %v is above maxOutputRatio %v", g.minOutput, g.maxOutput)
	}
	return g, nil
}

func (g *shadowGate) Kind() string { return KindShadow }

// shadowEvidence is what a shadow verdict stores.
type shadowEvidence struct {
	Slot       string               `json:"slot"`
	Samples    int                  `json:"samples"`
	MinSamples int                  `json:"minSamples"`
	Summary    *gateway.PairSummary `json:"summary,omitempty"`
	Checks     []check              `json:"checks,omitempty"`
}

// Evaluate judges the shadow comparisons of the phase so far. It keeps no
// state: the gateway keeps the pairs.
func (g *shadowGate) Evaluate(ctx context.Context, in rollout.GateInput) (rollout.GateResult, error) {
	src, ok := in.Metrics.(ShadowSource)
	if !ok {
		return rollout.GateResult{}, fmt.Errorf("shadow: the metric source has no shadow comparisons: this gate needs the daemon's gateway")
	}
	ev := shadowEvidence{Slot: in.Candidate, MinSamples: g.minSamples}
	var pairs []gateway.ShadowPair
	for _, p := range src.ShadowSamples(in.App, in.From) {
		if p.Slot == in.Candidate {
			pairs = append(pairs, p)
		}
	}
	ev.Samples = len(pairs)
	result := func(v rollout.Verdict, reason string) (rollout.GateResult, error) {
		res, err := remember(v, reason, ev)
		res.State = nil // nothing to carry: the pairs are the gateway's
		return res, err
	}
	if len(pairs) < g.minSamples {
		reason := fmt.Sprintf("%d of the %d mirrored requests needed", len(pairs), g.minSamples)
		if len(pairs) == 0 && in.Platform != nil {
			if a, err := in.Platform.App(ctx, in.App); err == nil && (a.Mirror == nil || a.Mirror.Slot != in.Candidate) {
				reason += fmt.Sprintf("; mirroring to %s is off: turn it on with `modelslot traffic mirror %s=<percent>`", in.Candidate, in.Candidate)
			}
		}
		return result(rollout.Inconclusive, reason)
	}
	sum := gateway.SummarisePairs(pairs)
	ev.Summary = &sum
	ev.Checks = g.checks(pairs)
	v, reason := combine(ev.Checks)
	return result(v, fmt.Sprintf("%d mirrored requests: %s", len(pairs), reason))
}

func (g *shadowGate) checks(pairs []gateway.ShadowPair) []check {
	var (
		prod2xx, mismatch int
		texts, empty      int
		jsons, badJSON    int
		comparable, exact int
		lat, ttft, out    []float64
	)
	for _, p := range pairs {
		if ok2xx(p.Production.Status) {
			prod2xx++
			if !p.StatusMatch {
				mismatch++
			}
		}
		if p.Comparable {
			comparable++
			if p.ExactMatch {
				exact++
			}
			if !p.Production.Empty && !p.Production.Refused {
				texts++
				if p.Shadow.Empty || p.Shadow.Refused {
					empty++
				}
			}
			if p.Production.JSONValid {
				jsons++
				if !p.Shadow.JSONValid {
					badJSON++
				}
			}
		}
		if ok2xx(p.Production.Status) && ok2xx(p.Shadow.Status) {
			lat = append(lat, logRatio(p.Shadow.LatencyMS, p.Production.LatencyMS, 1))
			ttft = append(ttft, logRatio(p.Shadow.TTFTMS, p.Production.TTFTMS, 1))
			a, b := gateway.OutputLength(p)
			out = append(out, logRatio(b, a, 1))
		}
	}
	judges := []func(a float64) check{
		func(a float64) check {
			return g.rateAtMost("status_mismatch", mismatch, prod2xx, g.maxMismatch, a, "of production's 2xx answers got another status from the shadow")
		},
		func(a float64) check {
			return g.rateAtMost("empty_or_refused", empty, texts, g.maxEmpty, a, "of production's answers were empty or refused by the shadow")
		},
		func(a float64) check {
			return g.rateAtMost("json_invalid", badJSON, jsons, g.maxJSON, a, "of production's valid JSON answers were invalid JSON from the shadow")
		},
		func(a float64) check { return g.ratioWithin("latency_ratio", lat, 0, g.maxLatency, a) },
		func(a float64) check { return g.ratioWithin("ttft_ratio", ttft, 0, g.maxTTFT, a) },
		func(a float64) check { return g.ratioWithin("output_length_ratio", out, g.minOutput, g.maxOutput, a) },
	}
	if g.minExact > 0 {
		judges = append(judges, func(a float64) check { return g.rateAtLeast("exact_match", exact, comparable, g.minExact, a) })
	}
	// Bonferroni: the gate fails when any check fails, so each check gets
	// an equal part of alpha.
	a := g.alpha / float64(len(judges))
	checks := make([]check, len(judges))
	for i, judge := range judges {
		checks[i] = judge(a)
	}
	return checks
}

// confidence names a check's confidence level: "99.8%".
func confidence(a float64) string { return fmt.Sprintf("%.4g%%", 100*(1-a)) }

func ok2xx(status int) bool { return status >= 200 && status < 300 }

// logRatio is log(a/b) with both floored at floor, so that sub-floor
// values (0 TTFT of an error, sub-millisecond latencies) do not explode.
func logRatio(a, b, floor float64) float64 {
	return math.Log(math.Max(a, floor) / math.Max(b, floor))
}

// rateAtMost checks a share of k in n against limit with a confidence
// sequence at level 1-a (analysis.RateCS), valid however often the gate
// looks: fail when the sequence is above the limit; pass when the sequence
// (strict) or the share is at or below it.
func (g *shadowGate) rateAtMost(name string, k, n int, limit, a float64, what string) check {
	c := check{Name: name, N: n, Limit: fmt.Sprintf("<= %g", limit)}
	if n == 0 {
		c.Verdict, c.Note = rollout.Pass, "not applicable: no such requests"
		return c
	}
	lo, hi := analysis.RateCS(k, n, a)
	c.Value, c.Low, c.High = float64(k)/float64(n), ptr(lo), ptr(hi)
	c.Note = fmt.Sprintf("%d/%d (%.1f%%, %s anytime interval %.1f-%.1f%%) %s, at most %.1f%% allowed", k, n, 100*c.Value, confidence(a), 100*lo, 100*hi, what, 100*limit)
	switch {
	case lo > limit:
		c.Verdict = rollout.Fail
	case hi <= limit || (!g.strict && c.Value <= limit):
		c.Verdict = rollout.Pass
	default:
		c.Verdict = rollout.Inconclusive
	}
	return c
}

func (g *shadowGate) rateAtLeast(name string, k, n int, limit, a float64) check {
	c := check{Name: name, N: n, Limit: fmt.Sprintf(">= %g", limit)}
	if n == 0 {
		c.Verdict, c.Note = rollout.Inconclusive, "no answer texts to compare yet"
		return c
	}
	lo, hi := analysis.RateCS(k, n, a)
	c.Value, c.Low, c.High = float64(k)/float64(n), ptr(lo), ptr(hi)
	c.Note = fmt.Sprintf("%d/%d answers (%.1f%%, %s anytime interval %.1f-%.1f%%) equal production's, at least %.1f%% wanted", k, n, 100*c.Value, confidence(a), 100*lo, 100*hi, 100*limit)
	switch {
	case hi < limit:
		c.Verdict = rollout.Fail
	case lo >= limit || (!g.strict && c.Value >= limit):
		c.Verdict = rollout.Pass
	default:
		c.Verdict = rollout.Inconclusive
	}
	return c
}

// ratioWithin checks the geometric mean of paired ratios (given as logs)
// against [lo, hi] (lo 0: no lower bound) with a confidence sequence at
// level 1-a on the mean log ratio (analysis.MeanCS): fail when the sequence
// is outside; pass when the sequence (strict) or the estimate is inside.
func (g *shadowGate) ratioWithin(name string, logs []float64, lo, hi, a float64) check {
	c := check{Name: name, N: len(logs), Limit: fmt.Sprintf("<= %g", hi)}
	if lo > 0 {
		c.Limit = fmt.Sprintf("%g..%g", lo, hi)
	}
	if len(logs) < shadowRatioMinPairs {
		c.Verdict, c.Note = rollout.Inconclusive, fmt.Sprintf("%d of the %d pairs where both answered needed", len(logs), shadowRatioMinPairs)
		return c
	}
	var sum, sq float64
	for _, x := range logs {
		sum += x
	}
	n := float64(len(logs))
	mean := sum / n
	for _, x := range logs {
		sq += (x - mean) * (x - mean)
	}
	l, h := analysis.MeanCS(mean, math.Sqrt(sq/(n-1)), len(logs), shadowRatioTau, a)
	c.Value, c.Low, c.High = math.Exp(mean), ptr(math.Exp(l)), ptr(math.Exp(h))
	c.Note = fmt.Sprintf("%.3f (%s anytime interval %.3f-%.3f), want %s", c.Value, confidence(a), *c.Low, *c.High, c.Limit)
	switch {
	case *c.Low > hi || *c.High < lo:
		c.Verdict = rollout.Fail
	case *c.High <= hi && *c.Low >= lo, !g.strict && c.Value <= hi && c.Value >= lo:
		c.Verdict = rollout.Pass
	default:
		c.Verdict = rollout.Inconclusive
	}
	return c
}
