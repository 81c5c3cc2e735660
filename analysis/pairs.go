package analysis

import (
	"fmt"
	"time"
)

// A sequential Mann-Whitney (Lindon, Sanden, Shirikian 2022): each candidate
// request is paired with a production request drawn at random, without
// replacement, from the same pairing bucket. Under "same distribution at the
// same time" the two are exchangeable, so P(candidate > production) = 1/2
// exactly (ties are split by a seeded fair coin): the pair outcomes are fair
// coin flips, the Mann-Whitney null. Matching in time also cancels drift
// (time of day, load) that affects both slots.
const pairBucket = 10 * time.Second

// slowerPrior is the Beta(a, a) prior of the two-sided mixture whose
// confidence sequence bounds P(candidate slower); a prior concentrated near
// 1/2 gives a tighter sequence where it matters for a pass.
const slowerPrior = 8.0

// pairState counts the outcomes of the pairs: Slower of N candidates were
// slower than their production partner.
type pairState struct {
	N      int `json:"n"`
	Slower int `json:"slower"`
}

func (p *pairState) add(c, b time.Duration, coin func() bool) {
	p.N++
	if c > b || (c == b && coin()) {
		p.Slower++
	}
}

func (j *Judge) slowerCheck(metric string, p pairState, enough bool) (Check, bool) {
	ch := Check{Metric: metric, CandidateN: p.N, BaselineN: p.N, Threshold: j.cfg.MaxSlowerProb, EValue: 1, Verdict: Inconclusive}
	if p.N == 0 {
		ch.Reason = metric + ": no paired requests yet"
		return ch, false
	}
	ev := expClamp(upLogE(p.Slower, p.N))
	lo, hi := betaCS(p.Slower, p.N, slowerPrior, slowerPrior, j.alphaK)
	ch.Effect, ch.Lower, ch.Upper, ch.EValue = float64(p.Slower)/float64(p.N), lo, hi, ev
	desc := fmt.Sprintf("%s: the candidate was slower in %d of %d time-matched pairs (P(slower) %.2f, between %.2f and %.2f)",
		metric, p.Slower, p.N, ch.Effect, lo, hi)
	limit := 1 / j.alphaK
	switch {
	case ev >= limit:
		ch.Verdict = Fail
		ch.Reason = fmt.Sprintf("%s; e-value %s >= %s = 1/alpha: the candidate is slower", desc, num(ev), num(limit))
	case enough && hi < j.cfg.MaxSlowerProb:
		ch.Verdict = Pass
		ch.Reason = fmt.Sprintf("%s; %.2f < %g", desc, hi, j.cfg.MaxSlowerProb)
	default:
		ch.Reason = fmt.Sprintf("%s; e-value %s < %s; pass needs the upper bound < %g", desc, num(ev), num(limit), j.cfg.MaxSlowerProb)
		if !enough {
			ch.Reason += j.needMore()
		}
	}
	return ch, true
}

// Tail growth (Kayenta#780: same median, fatter tail). For each pair, both
// requests are compared with a threshold T, production's p95 estimated from
// production requests that are not in any pair of the same look, or, when
// there are too few of those, from all of the previous look's production
// requests. Given T, the two requests are still exchangeable under the
// null, so among discordant pairs (exactly one above T) the candidate is the
// one above with probability exactly 1/2: a sign test (McNemar), with the same
// one-sided mixture as above. The effect is the ratio of the candidate's rate
// above T to production's, estimated by the odds theta/(1-theta) of the
// discordant share theta.
type tailState struct {
	// Next is production's p95 over all of the previous look's successful
	// requests: the threshold when a look leaves fewer than
	// tailMinReference production requests out of its pairs (always, when
	// the candidate is the larger side, as in the watch after a swap). It
	// depends only on earlier looks, so the current pairs stay
	// exchangeable given it.
	Next      float64 `json:"next,omitempty"`
	Pairs     int     `json:"pairs"`
	CandAbove int     `json:"candAbove"`
	BaseAbove int     `json:"baseAbove"`
	Disc      int     `json:"disc"`     // pairs with exactly one request above T
	DiscCand  int     `json:"discCand"` // of those, the candidate's
	Threshold float64 `json:"threshold"`
}

// tailMinReference is the number of unpaired production requests needed to
// re-estimate the p95 threshold in a look; with fewer, the previous threshold
// is kept.
const tailMinReference = 20

func (t *tailState) add(c, b time.Duration) {
	ca, ba := c.Seconds() > t.Threshold, b.Seconds() > t.Threshold
	t.Pairs++
	if ca {
		t.CandAbove++
	}
	if ba {
		t.BaseAbove++
	}
	if ca != ba {
		t.Disc++
		if ca {
			t.DiscCand++
		}
	}
}

func (j *Judge) tailCheck(enough bool) (Check, bool) {
	t := j.st.Tail
	ch := Check{Metric: MetricTailLatency + ":p95", CandidateN: t.Pairs, BaselineN: t.Pairs, Threshold: TailMaxRatio, EValue: 1, Verdict: Inconclusive}
	if t.Pairs == 0 {
		ch.Reason = ch.Metric + ": no paired requests with a production p95 yet"
		return ch, false
	}
	odds := func(p float64) float64 {
		if p >= 1 {
			return oddsCap
		}
		return min(p/(1-p), oddsCap)
	}
	ev := expClamp(upLogE(t.DiscCand, t.Disc))
	lo, hi := betaCS(t.DiscCand, t.Disc, 1, 1, j.alphaK)
	theta := 0.5
	if t.Disc > 0 {
		theta = float64(t.DiscCand) / float64(t.Disc)
	}
	ch.Effect, ch.Lower, ch.Upper, ch.EValue = odds(theta), odds(lo), odds(hi), ev
	desc := fmt.Sprintf("%s: %d of %d candidate requests above production's p95 (%s) vs %d of %d paired production requests (ratio %.2g, between %.2g and %s)",
		ch.Metric, t.CandAbove, t.Pairs, fmtSeconds(t.Threshold), t.BaseAbove, t.Pairs, ch.Effect, ch.Lower, upperText(ch.Upper, oddsCap))
	limit := 1 / j.alphaK
	switch {
	case ev >= limit:
		ch.Verdict = Fail
		ch.Reason = fmt.Sprintf("%s; e-value %s >= %s = 1/alpha: the candidate's tail is fatter", desc, num(ev), num(limit))
	case enough && ch.Upper < TailMaxRatio:
		ch.Verdict = Pass
		ch.Reason = fmt.Sprintf("%s; %.2g < %g", desc, ch.Upper, TailMaxRatio)
	default:
		ch.Reason = fmt.Sprintf("%s; e-value %s < %s; pass needs the upper bound < %g", desc, num(ev), num(limit), TailMaxRatio)
		if !enough {
			ch.Reason += j.needMore()
		}
	}
	return ch, true
}

// oddsCap clips reported tail ratios (JSON has no infinity).
const oddsCap = 1000.0

func fmtSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}
