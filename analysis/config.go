package analysis

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
)

// Verdict is the decision of a gate or of one of its checks.
type Verdict string

const (
	Pass         Verdict = "pass"
	Fail         Verdict = "fail"
	Inconclusive Verdict = "inconclusive"
)

// Metric names accepted in Config.Metrics.
const (
	MetricErrors       = "errors"
	MetricLatency      = "latency"
	MetricTTFT         = "ttft"
	MetricTokensPerSec = "tokens_per_sec"
	MetricTailLatency  = "tail_latency"
	MetricOutputTokens = "output_tokens"
)

// allMetrics is the default set and the order of the checks in a Result.
var allMetrics = []string{MetricErrors, MetricLatency, MetricTTFT, MetricTokensPerSec, MetricTailLatency, MetricOutputTokens}

// Metrics lists the comparison metrics a Config may name, in the order of
// the checks in a Result.
func Metrics() []string { return slices.Clone(allMetrics) }

// Config is the policy of one gate. Zero values take the defaults listed on
// each field (see withDefaults).
type Config struct {
	// Alpha bounds the probability that the gate ever fails a candidate that
	// is no different from production, however often it looks. It is split
	// equally across the checks that can fail (Bonferroni). Default 0.01.
	Alpha float64 `json:"alpha,omitempty"`
	// PassRisk bounds, for each check, the probability that it ever passes
	// a candidate worse than its pass bound (the upper ends of the
	// confidence sequences are at level 1 - PassRisk; the lower ends, which
	// decide fails, at 1 - Alpha/k). A pass is also held back until
	// MinSamples. In (0, 0.5]. Default 0.05.
	PassRisk float64 `json:"passRisk,omitempty"`
	// MinSamples is the number of candidate requests needed before any pass.
	// A fail can come earlier, but only from an e-value crossing 1/alpha (or an
	// SLO confidence sequence crossing its limit). Default 200.
	MinSamples int `json:"minSamples,omitempty"`
	// MaxErrorRatio is the candidate/production error-rate ratio the operator
	// refuses; errors pass when the confidence sequence's upper bound is below
	// it. Must be > 1. Default 1.5.
	MaxErrorRatio float64 `json:"maxErrorRatio,omitempty"`
	// MaxErrorRate is an absolute floor: errors also pass when the upper
	// confidence bound of the candidate's error rate is below it and the
	// candidate's error rate is not surely above production's by more than
	// the margin. Keep it well below production's rate (a floor of 2% let
	// 0.5% -> 1% through). Default 0.01; a negative value disables the floor.
	MaxErrorRate float64 `json:"maxErrorRate,omitempty"`
	// MaxSlowerProb is the pass bound of latency, TTFT and tokens per
	// second: the share of production's requests (of the same minutes) that
	// the candidate, less the margins, may be worse than. An identical
	// version gives 0.5; a pass needs the confidence sequence's upper bound
	// below MaxSlowerProb. In (0.5, 1). Default 0.56.
	MaxSlowerProb float64 `json:"maxSlowerProb,omitempty"`
	// RelMargin and AbsMargin are the practical margins of latency, TTFT
	// and their tails (tokens per second: RelMargin only): these checks fail
	// only when the candidate is surely slower than production by more than
	// RelMargin x production + AbsMargin. Defaults 0.05 (5%) and 5 ms; a
	// negative value means no margin of that kind.
	RelMargin float64       `json:"relMargin,omitempty"`
	AbsMargin time.Duration `json:"absMargin,omitempty"`
	// ErrorRatioMargin is the errors check's margin: it fails only when the
	// candidate's error rate is surely more than ErrorRatioMargin times
	// production's. In [1, MaxErrorRatio). Default 1.1.
	ErrorRatioMargin float64 `json:"errorRatioMargin,omitempty"`
	// MinTokensRatio is the smallest acceptable candidate/production ratio of
	// mean tokens per second. In (0, 1). Default 0.8. With bucket-only data its
	// inverse is also the largest acceptable ratio of mean latency and TTFT.
	MinTokensRatio float64 `json:"minTokensRatio,omitempty"`
	// MinOutputRatio and MaxOutputRatio bound the candidate/production
	// ratio of mean output tokens per answer: the output_tokens check fails
	// when its confidence sequence lies entirely outside [min, max] (a
	// max_tokens or stop setting that cuts answers short, a prompt that
	// makes them ramble) and passes when it lies inside. Defaults 0.5 and 2.
	MinOutputRatio float64 `json:"minOutputRatio,omitempty"`
	MaxOutputRatio float64 `json:"maxOutputRatio,omitempty"`
	// SLO are absolute limits on candidate quantiles.
	SLO []SLO `json:"slo,omitempty"`
	// Metrics selects the comparisons. Empty means all of errors, latency,
	// ttft, tokens_per_sec, tail_latency and output_tokens, each judged only
	// when it has data; a metric named here explicitly and without data
	// keeps the gate inconclusive.
	Metrics []string `json:"metrics,omitempty"`
}

// SLO is an absolute limit: the candidate's Quantile of Metric must stay
// below Max.
type SLO struct {
	Metric   string        `json:"metric"`   // "latency" or "ttft"
	Quantile float64       `json:"quantile"` // e.g. 0.95
	Max      time.Duration `json:"max"`
}

// Defaults, in one place.
const (
	DefaultAlpha          = 0.01
	DefaultMinSamples     = 200
	DefaultPassRisk       = 0.05
	DefaultMaxErrorRatio  = 1.5
	DefaultMaxErrorRate   = 0.01
	DefaultMaxSlowerProb  = 0.56
	DefaultRelMargin      = 0.05
	DefaultAbsMargin      = 5 * time.Millisecond
	DefaultErrorMargin    = 1.1
	DefaultMinTokensRatio = 0.8
	DefaultMinOutputRatio = 0.5
	DefaultMaxOutputRatio = 2.0
)

func (c Config) withDefaults() Config {
	if c.Alpha == 0 {
		c.Alpha = DefaultAlpha
	}
	if c.MinSamples == 0 {
		c.MinSamples = DefaultMinSamples
	}
	if c.PassRisk == 0 {
		c.PassRisk = DefaultPassRisk
	}
	if c.MaxErrorRatio == 0 {
		c.MaxErrorRatio = DefaultMaxErrorRatio
	}
	if c.MaxErrorRate == 0 {
		c.MaxErrorRate = DefaultMaxErrorRate
	}
	if c.MaxSlowerProb == 0 {
		c.MaxSlowerProb = DefaultMaxSlowerProb
	}
	if c.RelMargin == 0 {
		c.RelMargin = DefaultRelMargin
	}
	if c.AbsMargin == 0 {
		c.AbsMargin = DefaultAbsMargin
	}
	if c.ErrorRatioMargin == 0 {
		c.ErrorRatioMargin = min(DefaultErrorMargin, (1+c.MaxErrorRatio)/2)
	}
	if c.MinTokensRatio == 0 {
		c.MinTokensRatio = DefaultMinTokensRatio
	}
	if c.MinOutputRatio == 0 {
		c.MinOutputRatio = DefaultMinOutputRatio
	}
	if c.MaxOutputRatio == 0 {
		c.MaxOutputRatio = DefaultMaxOutputRatio
	}
	return c
}

// validate checks a config that already has its defaults.
func (c Config) validate() error {
	bad := func(field string, format string, args ...any) error {
		return modelslot.Errorf(modelslot.EINVALID, "analysis config: %s: %s", field, fmt.Sprintf(format, args...))
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	if !finite(c.Alpha) || c.Alpha <= 0 || c.Alpha > 0.5 {
		return bad("Alpha", "%g is not in (0, 0.5]", c.Alpha)
	}
	if !finite(c.PassRisk) || c.PassRisk <= 0 || c.PassRisk > 0.5 {
		return bad("PassRisk", "%g is not in (0, 0.5]", c.PassRisk)
	}
	if c.MinSamples < 1 {
		return bad("MinSamples", "%d must be at least 1", c.MinSamples)
	}
	if !finite(c.MaxErrorRatio) || c.MaxErrorRatio <= 1 || c.MaxErrorRatio > 50 {
		return bad("MaxErrorRatio", "%g must be > 1 and at most 50", c.MaxErrorRatio)
	}
	if !finite(c.MaxErrorRate) || c.MaxErrorRate >= 1 {
		return bad("MaxErrorRate", "%g must be < 1 (negative disables the floor)", c.MaxErrorRate)
	}
	if !finite(c.MaxSlowerProb) || c.MaxSlowerProb <= 0.5 || c.MaxSlowerProb >= 1 {
		return bad("MaxSlowerProb", "%g is not in (0.5, 1)", c.MaxSlowerProb)
	}
	if !finite(c.RelMargin) || c.RelMargin > 1 {
		return bad("RelMargin", "%g must be at most 1 (0.05 is 5%%; negative: no relative margin)", c.RelMargin)
	}
	if c.AbsMargin > time.Minute {
		return bad("AbsMargin", "%v must be at most 1m", c.AbsMargin)
	}
	if !finite(c.ErrorRatioMargin) || c.ErrorRatioMargin < 1 || c.ErrorRatioMargin >= c.MaxErrorRatio {
		return bad("ErrorRatioMargin", "%g must be at least 1 and below MaxErrorRatio %g", c.ErrorRatioMargin, c.MaxErrorRatio)
	}
	if !finite(c.MinTokensRatio) || c.MinTokensRatio <= 0 || c.MinTokensRatio >= 1 {
		return bad("MinTokensRatio", "%g is not in (0, 1)", c.MinTokensRatio)
	}
	if !finite(c.MinOutputRatio) || c.MinOutputRatio <= 0 || c.MinOutputRatio >= 1 {
		return bad("MinOutputRatio", "%g is not in (0, 1)", c.MinOutputRatio)
	}
	if !finite(c.MaxOutputRatio) || c.MaxOutputRatio <= 1 {
		return bad("MaxOutputRatio", "%g must be > 1", c.MaxOutputRatio)
	}
	seen := map[string]bool{}
	for i, m := range c.Metrics {
		known := false
		for _, a := range allMetrics {
			known = known || a == m
		}
		if !known {
			return bad(fmt.Sprintf("Metrics[%d]", i), "unknown metric %q (want one of %s)", m, strings.Join(allMetrics, ", "))
		}
		if seen[m] {
			return bad(fmt.Sprintf("Metrics[%d]", i), "metric %q listed twice", m)
		}
		seen[m] = true
	}
	for i, s := range c.SLO {
		f := fmt.Sprintf("SLO[%d]", i)
		if s.Metric != MetricLatency && s.Metric != MetricTTFT {
			return bad(f+".Metric", "%q is not latency or ttft", s.Metric)
		}
		if !finite(s.Quantile) || s.Quantile <= 0 || s.Quantile >= 1 {
			return bad(f+".Quantile", "%g is not in (0, 1)", s.Quantile)
		}
		if s.Max <= 0 {
			return bad(f+".Max", "%v must be positive", s.Max)
		}
	}
	return nil
}

// metrics returns the comparison metrics of the gate and whether they were
// named explicitly.
func (c Config) metrics() ([]string, bool) {
	if len(c.Metrics) == 0 {
		return allMetrics, false
	}
	var out []string
	for _, a := range allMetrics { // canonical order
		for _, m := range c.Metrics {
			if m == a {
				out = append(out, a)
			}
		}
	}
	return out, true
}
