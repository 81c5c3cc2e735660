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
	meanMinBuckets = 20
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

// meanCheck judges bucket-only latency, TTFT or tokens/s. It fails when the
// candidate's mean is worse than production's by more than the relative
// margin (the mSPRT at the margin's edge) and passes when the ratio's
// confidence sequence lies within MinTokensRatio (or its inverse).
// higherIsWorse: latency and TTFT; otherwise (tokens/s) lower is worse.
func (j *Judge) meanCheck(t meanTest, higherIsWorse bool, enough bool) Check {
	rel := max(j.cfg.RelMargin, 0)
	ch := Check{Metric: t.metric, CandidateN: t.nc, BaselineN: t.nb, EValue: 1, Verdict: Inconclusive,
		Alpha: j.alphaK, Margin: rel, Needed: -1, Unit: "ratio of bucket means"}
	if higherIsWorse {
		ch.Threshold, ch.FailBound = 1/j.cfg.MinTokensRatio, 1+rel
	} else {
		ch.Threshold, ch.FailBound = j.cfg.MinTokensRatio, 1/(1+rel)
	}
	if t.meanB > 0 {
		ch.Effect = t.meanC / t.meanB
	}
	compared := fmt.Sprintf("%s: over %d time-matched buckets, the candidate's mean is %.4g %s against production's %.4g, a ratio of %.3g",
		t.metric, t.nc, t.meanC, t.unit, t.meanB, ch.Effect)
	if t.ready && t.meanB > 0 && t.v <= 0 {
		return j.steadyCheck(ch, t, higherIsWorse, enough, compared)
	}
	if !t.ready || t.meanB <= 0 || t.v <= 0 || t.tau <= 0 {
		ch.Lower, ch.Upper = 0, 0
		ch.Reason = compared + fmt.Sprintf(": not decided yet (the test starts after %d buckets)", meanMinBuckets)
		ch.Detail = ch.Reason
		return ch
	}
	// The difference at the margin's edge: candidate - (1+rel) production
	// (latency), or (1+rel) candidate - production (tokens/s), in
	// production's units, production's mean treated as known.
	edge := t.d - rel*t.meanB
	if !higherIsWorse {
		edge = -(t.d + rel*t.meanC)
	}
	ev := 1.0
	if edge > 0 {
		ev = expClamp(msprtLogL(edge, t.v, t.tau))
	}
	hw, hp := msprtHalfWidth(t.v, t.tau, j.alphaK), msprtHalfWidth(t.v, t.tau, j.cfg.PassRisk)
	if higherIsWorse { // lower end: the fail side; upper end: the pass side
		ch.Lower, ch.Upper = max((t.meanC-hw)/t.meanB, 0), (t.meanC+hp)/t.meanB
	} else {
		ch.Lower, ch.Upper = max((t.meanC-hp)/t.meanB, 0), (t.meanC+hw)/t.meanB
	}
	ch.EValue = ev
	compared += fmt.Sprintf(" (between %.3g and %.3g)", ch.Lower, ch.Upper)
	ch.Detail = fmt.Sprintf("%s: mSPRT %s at the margin's edge (fail at %s = 1/alpha, alpha %.4g), tau %.3g, variance %.3g",
		t.metric, num(ev), num(1/j.alphaK), j.alphaK, t.tau, t.v)
	good := ch.Lower > ch.Threshold
	if higherIsWorse {
		good = ch.Upper < ch.Threshold
	}
	word := "slower"
	switch {
	case ev >= 1/j.alphaK:
		ch.Verdict, ch.Needed = Fail, 0
		ch.Reason = fmt.Sprintf("%s: fail, the candidate is surely %s than production by more than %g%%", compared, word, 100*rel)
	case enough && good:
		ch.Verdict, ch.Needed = Pass, 0
		ch.Reason = fmt.Sprintf("%s: pass, the ratio is surely within %.3g", compared, ch.Threshold)
	default:
		// In buckets, then in candidate requests at the buckets' average.
		if higherIsWorse {
			ch.Needed = needed(t.nc, ch.Effect, ch.Lower, ch.Upper, ch.FailBound, ch.Threshold, false)
		} else {
			ch.Needed = needed(t.nc, -ch.Effect, -ch.Upper, -ch.Lower, -ch.FailBound, -ch.Threshold, false)
		}
		if ch.Needed > 0 && t.nc > 0 {
			ch.Needed = int(math.Ceil(float64(ch.Needed) * float64(j.st.CandidateRequests) / float64(t.nc)))
		}
		ch.Reason = fmt.Sprintf("%s: not decided yet (a pass needs the ratio surely within %.3g)", compared, ch.Threshold)
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
	// Worse than production by more than the margin (ch.FailBound).
	harmful := ch.Effect < ch.FailBound
	if higherIsWorse {
		harmful = ch.Effect > ch.FailBound
	}
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
		ch.Reason = fmt.Sprintf("%s: fail, the candidate is %s than production by more than the margin (%.3g)", desc, word, ch.FailBound)
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
	ch := Check{Metric: t.metric, CandidateN: t.nc, BaselineN: t.nb, EValue: 1, Threshold: hi, FailBound: hi,
		Alpha: j.alphaK, Verdict: Inconclusive, Needed: -1, Unit: "ratio of mean output tokens"}
	if t.meanB > 0 {
		ch.Effect = t.meanC / t.meanB
	}
	desc := fmt.Sprintf("output_tokens: the candidate's answers average %.4g tokens (%d answers) against production's %.4g (%d), a ratio of %.3g",
		t.meanC, t.nc, t.meanB, t.nb, ch.Effect)
	if !t.ready || t.meanB <= 0 {
		ch.Reason = desc + fmt.Sprintf(": not decided yet (the test starts after %d answers on each side)", meanMinN)
		ch.Detail = ch.Reason
		return ch
	}
	// No spread on either side (a server that always answers the same
	// number of tokens): the ratio is what it is.
	hw, hp := 0.0, 0.0
	if t.v > 0 && t.tau > 0 {
		hw, hp = msprtHalfWidth(t.v, t.tau, j.alphaK), msprtHalfWidth(t.v, t.tau, j.cfg.PassRisk)
	}
	ch.Lower, ch.Upper = max((t.meanC-hw)/t.meanB, 0), (t.meanC+hw)/t.meanB
	passLo, passHi := max((t.meanC-hp)/t.meanB, 0), (t.meanC+hp)/t.meanB
	// The e-value against the nearer edge of the band, for the record.
	edge := hi
	if t.meanC < t.meanB {
		edge, ch.FailBound = lo, lo
	}
	if hw > 0 && (t.meanC > hi*t.meanB || t.meanC < lo*t.meanB) { // only outside the band
		ch.EValue = expClamp(msprtLogL(t.meanC-edge*t.meanB, t.v, t.tau))
	}
	desc += fmt.Sprintf(" (between %.3g and %.3g)", ch.Lower, ch.Upper)
	ch.Detail = fmt.Sprintf("output_tokens: mSPRT confidence sequence [%.3g, %.3g] at 1-alpha = %.5g (tau %.3g); e-value %s against the band's nearer edge %g",
		ch.Lower, ch.Upper, 1-j.alphaK, t.tau, num(ch.EValue), edge)
	switch {
	case ch.Lower > hi || ch.Upper < lo:
		ch.Verdict, ch.Needed = Fail, 0
		word := "longer"
		if ch.Upper < lo {
			word = "shorter"
		}
		ch.Reason = fmt.Sprintf("%s: fail, the candidate's answers are surely %s than the band %g..%g of production's allows", desc, word, lo, hi)
	case enough && passLo >= lo && passHi <= hi:
		ch.Verdict, ch.Needed = Pass, 0
		ch.Reason = fmt.Sprintf("%s: pass, the ratio is surely within %g..%g", desc, lo, hi)
	default:
		// The nearer conclusion on a log scale: inside the band, a pass.
		ch.Needed = -1
		if ch.Effect > 0 && ch.Lower > 0 {
			w := (math.Log(ch.Upper) - math.Log(ch.Lower)) / 2
			gap := min(math.Log(hi/ch.Effect), math.Log(ch.Effect/lo))
			if gap > 0 && w > 0 {
				ch.Needed = max(0, int(math.Ceil(float64(t.nc)*((w/gap)*(w/gap)-1))))
			}
		}
		ch.Reason = fmt.Sprintf("%s: not decided yet (a pass needs the ratio surely within %g..%g)", desc, lo, hi)
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
