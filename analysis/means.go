package analysis

import (
	"fmt"
	"math"
)

// Means with the normal mSPRT (Johari et al. 2022): tokens per second from
// per-request samples (two independent samples), and, for bucket-only data,
// latency, TTFT and tokens per second from the differences of time-matched
// bucket means (a one-sample test on the differences). The variance is a
// plug-in estimate, so the guarantee is asymptotic; the tests stay at e = 1
// until each side has meanMinN samples (meanMinBuckets buckets), and tau,
// the scale of the effects the test is most sensitive to, is fixed once from
// the data at that point (0.5 x the pooled standard deviation) and then kept,
// so the mixing prior does not move with the data.
const (
	meanMinN       = 30
	meanMinBuckets = 10
	tauFraction    = 0.5
)

// meanState holds the two-sample tokens-per-second test.
type meanState struct {
	Cand moments `json:"cand"`
	Base moments `json:"base"`
	Tau  float64 `json:"tau"`
}

func (m *meanState) freezeTau() {
	if m.Tau > 0 || m.Cand.N < meanMinN || m.Base.N < meanMinN {
		return
	}
	pooled := ((float64(m.Cand.N-1))*m.Cand.variance() + float64(m.Base.N-1)*m.Base.variance()) / float64(m.Cand.N+m.Base.N-2)
	m.Tau = tauFraction * math.Sqrt(pooled)
}

// diffState holds a paired test on time-matched bucket means.
type diffState struct {
	D    moments `json:"d"`    // candidate mean - production mean, per bucket
	Cand moments `json:"cand"` // candidate bucket means (for the ratio)
	Base moments `json:"base"` // production bucket means
	Tau  float64 `json:"tau"`
}

func (d *diffState) add(c, b float64) {
	d.D.add(c - b)
	d.Cand.add(c)
	d.Base.add(b)
	if d.Tau == 0 && d.D.N >= meanMinBuckets {
		d.Tau = tauFraction * math.Sqrt(d.D.variance())
	}
}

// meanTest is what a mean comparison yields: the estimated difference, its
// variance, tau, and the two means for the ratio.
type meanTest struct {
	metric       string
	nc, nb       int
	d, v, tau    float64
	meanC, meanB float64
	ready        bool // enough samples for the plug-in variance
	unit         string
}

// higherIsWorse: latency and TTFT; otherwise (tokens/s) lower is worse.
func (j *Judge) meanCheck(t meanTest, higherIsWorse bool, enough bool) Check {
	ch := Check{Metric: t.metric, CandidateN: t.nc, BaselineN: t.nb, EValue: 1, Verdict: Inconclusive}
	if higherIsWorse {
		ch.Threshold = 1 / j.cfg.MinTokensRatio
	} else {
		ch.Threshold = j.cfg.MinTokensRatio
	}
	if t.meanB > 0 {
		ch.Effect = t.meanC / t.meanB
	}
	desc := fmt.Sprintf("%s: mean %.4g %s (candidate, n=%d) vs %.4g (production, n=%d), ratio %.3g",
		t.metric, t.meanC, t.unit, t.nc, t.meanB, t.nb, ch.Effect)
	if t.ready && t.meanB > 0 && t.v <= 0 {
		return j.steadyCheck(ch, t, higherIsWorse, enough, desc)
	}
	if !t.ready || t.meanB <= 0 || t.v <= 0 || t.tau <= 0 {
		ch.Lower, ch.Upper = 0, 0
		ch.Reason = desc + "; too few samples for the mSPRT yet"
		return ch
	}
	ev := expClamp(msprtLogL(t.d, t.v, t.tau))
	hw := msprtHalfWidth(t.v, t.tau, j.alphaK)
	ch.Lower, ch.Upper = max((t.meanC-hw)/t.meanB, 0), (t.meanC+hw)/t.meanB
	ch.EValue = ev
	harmful := (t.d > 0) == higherIsWorse && t.d != 0
	desc += fmt.Sprintf(" (between %.3g and %.3g)", ch.Lower, ch.Upper)
	limit := 1 / j.alphaK
	good := ch.Lower > ch.Threshold
	if higherIsWorse {
		good = ch.Upper < ch.Threshold
	}
	switch {
	case harmful && ev >= limit:
		ch.Verdict = Fail
		word := "slower"
		ch.Reason = fmt.Sprintf("%s; mSPRT %s >= %s = 1/alpha: the candidate is %s", desc, num(ev), num(limit), word)
	case enough && good:
		ch.Verdict = Pass
		ch.Reason = fmt.Sprintf("%s; within the bound %.3g", desc, ch.Threshold)
	default:
		ch.Reason = fmt.Sprintf("%s; mSPRT %s < %s (or in the harmless direction); pass needs the ratio bound beyond %.3g", desc, num(ev), num(limit), ch.Threshold)
		if !enough {
			ch.Reason += j.needMore()
		}
	}
	return ch
}

// steadyCheck judges a difference without spread: every time-matched
// bucket pair differs by the same amount (coarse, steady per-minute means,
// as Azure Monitor's HttpResponseTime can be). The plug-in variance is 0,
// so the mSPRT never moves and the check would stay inconclusive to the
// deadline; the difference is known instead: harmful fails at once, and
// harmless passes within the bound once there are enough requests.
func (j *Judge) steadyCheck(ch Check, t meanTest, higherIsWorse, enough bool, desc string) Check {
	ch.Lower, ch.Upper = ch.Effect, ch.Effect
	harmful := (t.d > 0) == higherIsWorse && t.d != 0
	desc += fmt.Sprintf("; every one of %d time-matched buckets differs by %.4g %s (no spread)", t.nc, t.d, t.unit)
	good := ch.Effect > ch.Threshold
	if higherIsWorse {
		good = ch.Effect < ch.Threshold
	}
	switch {
	case harmful:
		ch.Verdict = Fail
		ch.EValue = expClamp(690)
		word := "slower"
		if !higherIsWorse {
			word = "slower to generate"
		}
		ch.Reason = fmt.Sprintf("%s: the candidate is %s", desc, word)
	case enough && good:
		ch.Verdict = Pass
		ch.Reason = fmt.Sprintf("%s; within the bound %.3g", desc, ch.Threshold)
	default:
		ch.Reason = fmt.Sprintf("%s; pass needs the ratio beyond %.3g", desc, ch.Threshold)
		if !enough {
			ch.Reason += j.needMore()
		}
	}
	return ch
}

// bandCheck judges a ratio of means that may move either way, within
// [MinOutputRatio, MaxOutputRatio]: fail when the ratio's confidence
// sequence (the mSPRT's, divided by production's mean) lies entirely
// outside the band, pass when it lies inside. Under "the true ratio is in
// the band", the sequence ever missing it, and so a fail, has probability
// at most alpha/k.
func (j *Judge) bandCheck(t meanTest, enough bool) Check {
	lo, hi := j.cfg.MinOutputRatio, j.cfg.MaxOutputRatio
	ch := Check{Metric: t.metric, CandidateN: t.nc, BaselineN: t.nb, EValue: 1, Threshold: hi, Verdict: Inconclusive}
	if t.meanB > 0 {
		ch.Effect = t.meanC / t.meanB
	}
	desc := fmt.Sprintf("%s: mean %.4g %s (candidate, n=%d) vs %.4g (production, n=%d), ratio %.3g",
		t.metric, t.meanC, t.unit, t.nc, t.meanB, t.nb, ch.Effect)
	if !t.ready || t.meanB <= 0 {
		ch.Reason = desc + "; too few samples for the mSPRT yet"
		return ch
	}
	// No spread on either side (a server that always answers the same
	// number of tokens): the ratio is what it is.
	hw := 0.0
	if t.v > 0 && t.tau > 0 {
		hw = msprtHalfWidth(t.v, t.tau, j.alphaK)
	}
	ch.Lower, ch.Upper = max((t.meanC-hw)/t.meanB, 0), (t.meanC+hw)/t.meanB
	// The e-value against the nearer edge of the band, for the record.
	edge := hi
	if t.meanC < t.meanB {
		edge = lo
	}
	if hw > 0 {
		ch.EValue = expClamp(msprtLogL(t.meanC-edge*t.meanB, t.v, t.tau))
	}
	desc += fmt.Sprintf(" (between %.3g and %.3g)", ch.Lower, ch.Upper)
	switch {
	case ch.Lower > hi || ch.Upper < lo:
		ch.Verdict = Fail
		word := "longer"
		if ch.Upper < lo {
			word = "shorter"
		}
		ch.Reason = fmt.Sprintf("%s; outside %g..%g at 1-alpha = %.4g: the candidate's answers are %s", desc, lo, hi, 1-j.alphaK, word)
	case enough && ch.Lower >= lo && ch.Upper <= hi:
		ch.Verdict = Pass
		ch.Reason = fmt.Sprintf("%s; within %g..%g", desc, lo, hi)
	default:
		ch.Reason = fmt.Sprintf("%s; pass needs the bounds within %g..%g", desc, lo, hi)
		if !enough {
			ch.Reason += j.needMore()
		}
	}
	return ch
}

func (m meanState) test() meanTest {
	return meanTest{
		metric: MetricTokensPerSec, nc: int(m.Cand.N), nb: int(m.Base.N),
		d: m.Cand.Mean - m.Base.Mean, v: m.Cand.variance()/float64(max(m.Cand.N, 1)) + m.Base.variance()/float64(max(m.Base.N, 1)),
		tau: m.Tau, meanC: m.Cand.Mean, meanB: m.Base.Mean,
		ready: m.Cand.N >= meanMinN && m.Base.N >= meanMinN, unit: "tokens/s",
	}
}

func (d diffState) test(metric, unit string) meanTest {
	return meanTest{
		metric: metric, nc: int(d.D.N), nb: int(d.D.N),
		d: d.D.Mean, v: d.D.variance() / float64(max(d.D.N, 1)), tau: d.Tau,
		meanC: d.Cand.Mean, meanB: d.Base.Mean, ready: d.D.N >= meanMinBuckets, unit: unit,
	}
}

// expClamp is exp with a finite ceiling (JSON has no infinity).
func expClamp(x float64) float64 { return math.Exp(min(x, 690)) }
