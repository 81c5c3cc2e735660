package analysis

import (
	"fmt"
	"math"
	"sort"
)

// Absolute SLOs. For X_i = 1{value_i > Max}, the candidate's q-quantile
// exceeds Max iff P(X = 1) > 1-q; the beta-binomial mixture confidence
// sequence on that Bernoulli mean (see betaCS) fails the SLO when its lower
// bound is above 1-q and passes it when its upper bound is below 1-q.
//
// The reported quantile and its bounds come from a log-spaced histogram of
// the candidate's values (2% wide bins) and the same mixture, read as a
// confidence sequence for the quantile in the manner of Howard & Ramdas 2022:
// at x = the true q-quantile, 1{value <= x} is Bernoulli(q), so the set of x
// where q stays inside the sequence for #{value <= x} covers the quantile at
// all times with probability >= 1-alpha. Bins are kept whole, so the bounds
// are rounded outwards.

type sloState struct {
	N     int `json:"n"`
	Above int `json:"above"`
}

const histStep = 0.0198026272961797 // log(1.02): 2% bins

// histogram counts candidate values by bin of log(milliseconds).
type histogram struct {
	N    int         `json:"n"`
	Bins map[int]int `json:"bins"`
}

func (h *histogram) add(seconds float64) {
	if h.Bins == nil {
		h.Bins = map[int]int{}
	}
	ms := math.Max(seconds*1000, 1e-3)
	h.Bins[int(math.Floor(math.Log(ms)/histStep))]++
	h.N++
}

func binEdge(k int) float64 { return math.Exp(float64(k)*histStep) / 1000 } // seconds

// quantileCS returns the observed q-quantile (upper edge of its bin) and the
// confidence sequence bounds, all in seconds.
func (h *histogram) quantileCS(q, alpha float64) (est, lo, hi float64) {
	if h.N == 0 {
		return 0, 0, 0
	}
	keys := make([]int, 0, len(h.Bins))
	for k := range h.Bins {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	c := -math.Log(alpha)
	in := func(k int) bool { return betaMixLogE(k, h.N, 1, 1, q) < c }
	target := q * float64(h.N)
	cum := 0
	lo, hi = math.NaN(), 0
	estSet := false
	for _, k := range keys {
		prev := cum
		cum += h.Bins[k]
		if !estSet && float64(cum) >= target {
			est, estSet = binEdge(k+1), true
		}
		// x inside this bin has prev <= #{value <= x} <= cum: the bin may
		// hold points of the set if either end is inside or q n lies between.
		if in(prev) || in(cum) || (float64(prev) <= target && target <= float64(cum)) {
			if math.IsNaN(lo) {
				lo = binEdge(k)
			}
			hi = binEdge(k + 1)
		}
	}
	if in(0) || math.IsNaN(lo) {
		lo = 0 // the quantile may lie below every value seen
	}
	if in(h.N) {
		hi = math.Inf(1) // ... or above every value seen
	}
	return est, lo, hi
}

func (j *Judge) sloCheck(i int, enough bool) Check {
	s := j.cfg.SLO[i]
	st := j.st.SLO[i]
	p0 := 1 - s.Quantile
	pname := fmt.Sprintf("p%g", math.Round(s.Quantile*1000)/10)
	ch := Check{Metric: "slo:" + s.Metric + ":" + pname, CandidateN: st.N, Threshold: s.Max.Seconds(), FailBound: s.Max.Seconds(),
		Alpha: j.alphaK, EValue: 1, Verdict: Inconclusive, Needed: -1, Unit: "seconds"}
	if st.N == 0 {
		ch.Reason = ch.Metric + ": no candidate requests with this measurement yet"
		ch.Detail = ch.Reason
		return ch
	}
	h := j.st.Hist[s.Metric]
	if h != nil {
		est, lo, hi := h.quantileCS(s.Quantile, j.alphaK)
		ch.Effect, ch.Lower, ch.Upper = est, lo, math.Min(hi, math.MaxFloat64)
	}
	pLo, _ := betaCS(st.Above, st.N, 1, 1, j.alphaK)
	_, pHi := betaCS(st.Above, st.N, 1, 1, j.cfg.PassRisk)
	// The e-value of "P(value > Max) <= 1-q": the mixture against p0, kept
	// only when the observed rate is above p0 (one-sided).
	if float64(st.Above) > p0*float64(st.N) {
		ch.EValue = expClamp(betaMixLogE(st.Above, st.N, 1, 1, p0))
	}
	share := float64(st.Above) / float64(st.N)
	desc := fmt.Sprintf("%s: %d of %d candidate requests took longer than the SLO's %v (%.2g%%, between %.2g%% and %.2g%%) where the SLO allows %.3g%%; the candidate's %s is about %s",
		ch.Metric, st.Above, st.N, s.Max, 100*share, 100*pLo, 100*pHi, 100*p0, pname, fmtSeconds(ch.Effect))
	ch.Detail = fmt.Sprintf("%s: beta-binomial mixture e-value %s against a share <= %g (fail when the share's lower bound at 1-alpha = %.5g is above it); pass when the upper bound at 1-%g is below it",
		ch.Metric, num(ch.EValue), p0, 1-j.alphaK, j.cfg.PassRisk)
	switch {
	case pLo > p0:
		ch.Verdict, ch.Needed = Fail, 0
		ch.Reason = desc + ": fail, the SLO is surely broken"
	case enough && pHi < p0:
		ch.Verdict, ch.Needed = Pass, 0
		ch.Reason = desc + ": pass, the SLO surely holds"
	default:
		ch.Needed = needed(st.N, share, pLo, pHi, p0, p0, false)
		ch.Reason = desc + ": not decided yet"
		if !enough {
			ch.Reason += j.needMore()
		}
	}
	return ch
}
