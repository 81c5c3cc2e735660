package rollout

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/modelslot/modelslot/analysis"
)

// CheckProgress is one check of a gate at the latest look, in the numbers
// an operator follows: the effect so far, its interval, the limit, and how
// many more candidate requests a decision needs at this pace.
type CheckProgress struct {
	Metric  string  `json:"metric"`
	Verdict Verdict `json:"verdict"`
	// CandidateN and BaselineN are the requests the check used.
	CandidateN int `json:"candidateN"`
	BaselineN  int `json:"baselineN"`
	// Effect and its interval [Lower, Upper], in the check's unit (see
	// analysis.Check); Threshold is the harm a pass must exclude.
	Effect    float64 `json:"effect"`
	Lower     float64 `json:"lower"`
	Upper     float64 `json:"upper"`
	Threshold float64 `json:"threshold"`
	// Needed estimates the further candidate requests before the check
	// decides, if the effect stays where it is (0: decided; absent: no
	// estimate, e.g. the effect sits on the threshold).
	Needed *int64 `json:"needed,omitempty"`
	// NeededSeconds is Needed at the phase's current candidate rate.
	NeededSeconds *float64 `json:"neededSeconds,omitempty"`
}

// maxNeeded: estimates beyond this say nothing useful ("never, at this
// rate") and are left out.
const maxNeeded = 1e8

// checkProgress summarizes a judge's result. minSamples is the candidate
// requests a pass needs in all.
func checkProgress(res analysis.Result, minSamples int) []CheckProgress {
	out := make([]CheckProgress, 0, len(res.Checks))
	seen := 0
	for _, ch := range res.Checks {
		seen = max(seen, ch.CandidateN)
	}
	for _, ch := range res.Checks {
		p := CheckProgress{
			Metric: ch.Metric, Verdict: Verdict(ch.Verdict), CandidateN: ch.CandidateN, BaselineN: ch.BaselineN,
			Effect: finite(ch.Effect), Lower: finite(ch.Lower), Upper: finite(ch.Upper), Threshold: finite(ch.Threshold),
		}
		if n, ok := judgeNeeded(ch); ok {
			p.Needed = &n
		} else if n, ok := neededRequests(ch); ok {
			towardPass := (ch.Effect < ch.Threshold) == harmAbove(ch.Metric)
			if p.Verdict == Inconclusive && towardPass {
				n = max(n, int64(minSamples-seen)) // a pass also waits for minSamples
			}
			p.Needed = &n
		}
		out = append(out, p)
	}
	return out
}

// judgeNeeded returns the judge's own estimate (Check.Needed: -1 when it
// has none, 0 once the check is decided): it knows its tests better than
// the sketch below.
func judgeNeeded(ch analysis.Check) (int64, bool) {
	if ch.Needed > 0 && ch.Needed <= maxNeeded || ch.Needed == 0 && ch.Verdict != analysis.Inconclusive {
		return int64(ch.Needed), true
	}
	return 0, false
}

// harmAbove says on which side of its threshold a check's harm lies:
// above for error ratios, P(slower), tail ratios and SLO quantiles, below
// for tokens/s.
func harmAbove(metric string) bool {
	return metric != analysis.MetricTokensPerSec
}

// neededRequests sketches how many more candidate requests a check needs
// to decide, if its effect stays where it is: confidence intervals narrow
// about as 1/sqrt(n), so the side of the interval that faces the threshold
// must shrink from its current width to the effect's distance from the
// threshold, which takes n x (width/distance)^2 requests in all. It is a
// rough guide for operators, not part of any test.
func neededRequests(ch analysis.Check) (int64, bool) {
	if ch.Verdict != analysis.Inconclusive {
		return 0, true
	}
	n := float64(ch.CandidateN)
	e, lo, hi, thr := ch.Effect, ch.Lower, ch.Upper, ch.Threshold
	if n <= 0 || strings.HasPrefix(ch.Metric, analysis.MetricOutputTokens) || !isFinite(e, lo, hi, thr) || hi > maxNeeded {
		return 0, false
	}
	if ch.Metric == analysis.MetricErrors && lo <= 0 {
		// No candidate error yet: the ratio's interval says little, and an
		// error-free candidate passes by the error-rate floor instead.
		return 0, false
	}
	var width, dist float64
	switch above := harmAbove(ch.Metric); {
	case above && e < thr, !above && e > thr: // heading for a pass
		width, dist = hi-e, thr-e
		if !above {
			width, dist = e-lo, e-thr
		}
	default: // heading for a fail
		width, dist = e-lo, e-thr
		if !above {
			width, dist = hi-e, thr-e
		}
	}
	if dist <= 0 || width <= 0 {
		return 0, false
	}
	total := n * (width / dist) * (width / dist)
	if total > maxNeeded {
		return 0, false
	}
	return max(int64(math.Ceil(total-n-1e-6)), 1), true // 1e-6: rounding of the ratio
}

func isFinite(xs ...float64) bool {
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// finite keeps JSON encodable: NaN and infinities become 0 (their checks
// have no data to show).
func finite(x float64) float64 {
	if !isFinite(x) {
		return 0
	}
	return x
}

// Progress describes the current judged phase for a live view: elapsed
// time against the minimum and the deadline, the requests on each side,
// the warm-up, and per check its effect, interval, limit and the requests
// still needed at the current rate. It is "" outside a judged phase.
func (r *Rollout) Progress(now time.Time) string {
	ph := r.currentPhase()
	if ph == nil || !r.State.Active() {
		return ""
	}
	var b strings.Builder
	step := "?"
	if r.Step < len(r.Plan.Steps) {
		step = r.Plan.Steps[r.Step].Kind()
	}
	fmt.Fprintf(&b, "  step %d/%d %s", r.Step+1, len(r.Plan.Steps), step)
	if r.Current.Kind == KindRampUp {
		fmt.Fprintf(&b, " at %g%%", r.Current.Percent)
	}
	if at := ph.LookedAt; !at.IsZero() {
		now = at // the numbers are those of the latest look
	}
	left := ph.Deadline.Sub(now).Truncate(time.Second)
	if ph.Warming() {
		w := ph.Warmup
		fmt.Fprintf(&b, ": warming up: %d of %d candidate requests, %v of %v (shown, not judged); production %d; deadline in %v\n",
			w.CandidateRequests, w.Requests, now.Sub(ph.StartedAt).Truncate(time.Second), w.Until.Sub(ph.StartedAt), w.BaselineRequests, max(left, 0))
	} else {
		fmt.Fprintf(&b, ": judged for %v (needs %v", now.Sub(ph.judgedStart()).Truncate(time.Second), ph.MinDuration.D())
		if ph.MinRequests > 0 {
			fmt.Fprintf(&b, " and %d candidate requests", ph.MinRequests)
		}
		fmt.Fprintf(&b, "), deadline in %v; candidate %d requests (%.1f/s), production %d\n", max(left, 0), ph.CandidateRequests, ph.CandidateRate, ph.BaselineRequests)
		if w := ph.Warmup; w != nil {
			fmt.Fprintf(&b, "    warm-up done after %v: %d candidate and %d production requests, not judged\n", w.EndedAt.Sub(ph.StartedAt).Truncate(time.Second), w.CandidateRequests, w.BaselineRequests)
		}
	}
	for _, g := range ph.Gates {
		if g.Result == nil {
			continue
		}
		if len(g.Result.Checks) == 0 {
			fmt.Fprintf(&b, "    %s: %s\n", g.Kind, g.Result.Reason)
			continue
		}
		for _, c := range g.Result.Checks {
			fmt.Fprintf(&b, "    %-18s %-12s %s\n", c.Metric, string(c.Verdict), c.Describe())
		}
	}
	if ph.Notice != "" {
		fmt.Fprintf(&b, "  %s\n", ph.Notice)
	}
	return b.String()
}

// Describe says a check's numbers in a line: "effect 0.52 [0.41, 0.63],
// limit 0.6; ~210 more requests (~1m6s)".
func (c CheckProgress) Describe() string {
	if c.CandidateN == 0 {
		return "no data yet"
	}
	s := fmt.Sprintf("effect %.3g [%.3g, %.3g], limit %.3g, %d requests", c.Effect, c.Lower, c.Upper, c.Threshold, c.CandidateN)
	if c.Verdict != Inconclusive {
		return s
	}
	if c.Needed == nil {
		return s + "; no estimate of the requests still needed"
	}
	s += fmt.Sprintf("; ~%d more requests", *c.Needed)
	if c.NeededSeconds != nil {
		s += fmt.Sprintf(" (~%v at the current rate)", time.Duration(*c.NeededSeconds*float64(time.Second)).Round(time.Second))
	}
	return s
}
