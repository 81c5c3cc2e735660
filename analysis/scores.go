package analysis

import (
	"fmt"
	"math"
	"time"
)

// scoreState is one comparison judged on U-scores (see rank.go): latency,
// TTFT or tokens per second.
type scoreState struct {
	Bet betState `json:"bet"`
	// Reference counts the production requests the candidate's requests
	// were ranked against.
	Reference int64 `json:"reference"`
}

// tailState counts the candidate's latency U-scores above 0.95 and 0.99:
// requests above production's p95 and p99 of the same minute (after the
// margin). Under the null each is a Bernoulli draw with the known rate 0.05
// or 0.01, exactly, given everything before it.
type tailState struct {
	N        int `json:"n"`
	Above95  int `json:"above95"`
	Above99  int `json:"above99"`
	Above995 int `json:"above995"`
}

// Tails: the quantiles watched and the largest acceptable ratio of the
// candidate's share above production's quantile to the nominal share, for a
// pass. p99 gets a wider bound because its exceedances are rare: with 600
// candidate requests about 2x is what an identical version can show.
const (
	TailMaxRatio    = 2.0 // p95
	TailP99MaxRatio = 2.5
)

// tailAlt are the ratios of the exceedance rate to its null rate mixed over
// by the tail tests (equal weights).
var tailAlt = [...]float64{1.5, 2, 3}

// tailLogE is the log of the one-sided mixture e-value of k exceedances in
// n requests against the null rate p0: the average over rho in tailAlt of
// the likelihood ratio of Bernoulli(rho p0) to Bernoulli(p0). Each term is
// a test supermartingale when the rate is at most p0.
func tailLogE(k, n int, p0 float64) float64 {
	terms := make([]float64, 0, len(tailAlt))
	for _, r := range tailAlt {
		p1 := min(r*p0, 0.999)
		terms = append(terms, float64(k)*math.Log(p1/p0)+float64(n-k)*math.Log((1-p1)/(1-p0)))
	}
	return logMeanExp(terms)
}

// needed estimates the candidate requests still needed for the interval
// [lo, hi] around est to clear the nearer of the fail bound (lower end
// above it) and the pass bound (upper end below it), assuming its width
// shrinks as 1/sqrt(n). -1 when there is nothing to go on.
func needed(n int, est, lo, hi, failBound, passBound float64, logScale bool) int {
	if n <= 0 || hi <= lo {
		return -1
	}
	f := func(x float64) float64 { return x }
	if logScale {
		if lo <= 0 || est <= 0 {
			return -1
		}
		f = math.Log
	}
	w := (f(hi) - f(lo)) / 2
	gap := 0.0
	if est > failBound {
		gap = f(est) - f(failBound)
	}
	if est < passBound {
		gap = max(gap, f(passBound)-f(est))
	}
	if gap <= 0 || w <= 0 {
		return -1
	}
	r := w / gap
	more := float64(n) * (r*r - 1)
	if more <= 0 {
		return 0
	}
	return int(math.Min(math.Ceil(more), 1e9))
}

// scoreCheck judges latency, TTFT or tokens per second from U-scores.
func (j *Judge) scoreCheck(metric string, s scoreState, higherIsWorse, enough bool) (Check, bool) {
	margin := j.marginText(higherIsWorse)
	ch := Check{Metric: metric, CandidateN: s.Bet.N, BaselineN: int(s.Reference), Threshold: j.cfg.MaxSlowerProb,
		FailBound: 0.5, Margin: j.cfg.RelMargin, MarginAbs: j.absMargin(higherIsWorse), Alpha: j.alphaK,
		EValue: 1, Verdict: Inconclusive, Needed: -1, Unit: "P(worse)"}
	if s.Bet.N == 0 {
		ch.Reason = metric + ": no candidate requests to compare yet"
		ch.Detail = ch.Reason
		return ch, false
	}
	fail, ev := s.Bet.above(0.5)
	pass, pe := s.Bet.below(j.cfg.MaxSlowerProb)
	lo, hi := s.Bet.cs()
	ch.Effect, ch.Lower, ch.Upper, ch.EValue = s.Bet.Mean, lo, hi, ev
	word, what := "slower", metric
	switch metric {
	case MetricTTFT:
		what = "ttft (time to first token)"
	case MetricTokensPerSec:
		what = "tokens_per_sec (output tokens per second)"
	}
	compared := fmt.Sprintf("%s: each of %d candidate requests was ranked among production's %d requests of the same minutes; allowing %s, the candidate was %s than %.0f%% of them (between %.0f%% and %.0f%%; an identical version gives about 50%%)",
		what, s.Bet.N, s.Reference, margin, word, 100*ch.Effect, 100*lo, 100*hi)
	ch.Detail = fmt.Sprintf("%s: mean U-score %.4f over %d candidate requests, confidence sequence [%.2f, %.2f] (lower at 1-alpha = %.5g, upper at 1-%g); betting e-value %s against mean <= 0.5 (fail at %s = 1/alpha), %s against mean >= %g (pass at %s)",
		metric, s.Bet.Mean, s.Bet.N, lo, hi, 1-j.alphaK, j.cfg.PassRisk, num(ev), num(1/j.alphaK), num(pe), j.cfg.MaxSlowerProb, num(1/j.cfg.PassRisk))
	switch {
	case fail:
		ch.Verdict = Fail
		ch.Reason = compared + fmt.Sprintf(": fail, the candidate is surely %s than production by more than %s", word, margin)
		ch.Needed = 0
	case enough && pass:
		ch.Verdict = Pass
		ch.Reason = compared + fmt.Sprintf(": pass, it is surely below %.0f%%, so the candidate is not %s than production by more than the margin", 100*j.cfg.MaxSlowerProb, word)
		ch.Needed = 0
	default:
		ch.Needed = needed(s.Bet.N, ch.Effect, lo, hi, 0.5, j.cfg.MaxSlowerProb, false)
		if pass {
			ch.Needed = max(0, j.cfg.MinSamples-int(j.st.CandidateRequests))
		}
		ch.Reason = compared + fmt.Sprintf(": not decided yet (a fail needs the interval above 50%%, a pass below %.0f%%)", 100*j.cfg.MaxSlowerProb)
		if !enough {
			ch.Reason += j.needMore()
		}
	}
	return ch, true
}

// tailCheck judges the candidate's share of requests above production's
// p95 (q = 0.95) or p99.
func (j *Judge) tailCheck(q float64, enough bool) (Check, bool) {
	t := j.st.Tail
	p0 := 1 - q
	k, ratio, name := t.Above95, TailMaxRatio, "p95"
	if q > 0.98 {
		k, ratio, name = t.Above99, TailP99MaxRatio, "p99"
	}
	margin := j.marginText(true)
	ch := Check{Metric: MetricTailLatency + ":" + name, CandidateN: t.N, BaselineN: int(j.st.Latency.Reference),
		Threshold: ratio * p0, FailBound: p0, Margin: j.cfg.RelMargin, MarginAbs: j.absMargin(true), Alpha: j.alphaK,
		EValue: 1, Verdict: Inconclusive, Needed: -1, Unit: "share above production's " + name}
	if t.N == 0 {
		ch.Reason = ch.Metric + ": no candidate requests to compare yet"
		ch.Detail = ch.Reason
		return ch, false
	}
	logE := tailLogE(k, t.N, p0)
	if name == "p99" {
		// The far tail too: the average of the e-values at production's
		// p99 and p99.5 (an average of e-processes is one). A slowdown of
		// the slowest requests shows more beyond p99 than at it (adding
		// p99.9 did not help in the power simulation).
		logE = logMeanExp([]float64{logE, tailLogE(t.Above995, t.N, 0.005)})
	}
	ev := expClamp(logE)
	lo, _ := betaCS(k, t.N, 1, 1, j.alphaK)
	hi := belowUpper(k, t.N, j.cfg.PassRisk)
	ch.Effect, ch.Lower, ch.Upper, ch.EValue = float64(k)/float64(t.N), lo, hi, ev
	compared := fmt.Sprintf("%s (the slowest requests): allowing %s, %d of %d candidate requests (%.1f%%, between %.1f%% and %.1f%%) were slower than production's %s of the same minutes, where production itself has %.0f%%",
		ch.Metric, margin, k, t.N, 100*ch.Effect, 100*lo, 100*hi, name, 100*p0)
	if name == "p99" {
		ch.Detail = fmt.Sprintf("tail_latency:p99: %d of %d U-scores above 0.995 (the e-value averages p99's and p99.5's); ", t.Above995, t.N)
	}
	ch.Detail += fmt.Sprintf("%s: %d of %d U-scores above %g; mixture e-value %s against rate <= %g (fail at %s = 1/alpha); confidence sequence [%.4f, %.4f] (lower at 1-alpha = %.5g, upper at 1-%g), pass below %g",
		ch.Metric, k, t.N, q, num(ev), p0, num(1/j.alphaK), lo, hi, 1-j.alphaK, j.cfg.PassRisk, ratio*p0)
	switch {
	case ev >= 1/j.alphaK:
		ch.Verdict, ch.Needed = Fail, 0
		ch.Reason = compared + fmt.Sprintf(": fail, the candidate's slowest requests are surely slower than production's by more than %s", margin)
	case enough && hi < ratio*p0:
		ch.Verdict, ch.Needed = Pass, 0
		ch.Reason = compared + fmt.Sprintf(": pass, the share is surely below %.3g%%", 100*ratio*p0)
	default:
		ch.Needed = needed(t.N, ch.Effect, lo, hi, p0, ratio*p0, false)
		ch.Reason = compared + fmt.Sprintf(": not decided yet (a pass needs the share surely below %.3g%%)", 100*ratio*p0)
		if !enough {
			ch.Reason += j.needMore()
		}
	}
	return ch, true
}

// absMargin is the absolute margin in seconds for a metric measured in
// time (higherIsWorse), 0 for tokens per second.
func (j *Judge) absMargin(higherIsWorse bool) float64 {
	if !higherIsWorse || j.cfg.AbsMargin < 0 {
		return 0
	}
	return j.cfg.AbsMargin.Seconds()
}

func (j *Judge) marginText(higherIsWorse bool) string {
	rel := max(j.cfg.RelMargin, 0)
	abs := j.absMargin(higherIsWorse)
	switch {
	case rel > 0 && abs > 0:
		return fmt.Sprintf("%g%% + %v", 100*rel, time.Duration(abs*float64(time.Second)))
	case abs > 0:
		return time.Duration(abs * float64(time.Second)).String()
	case rel > 0:
		return fmt.Sprintf("%g%%", 100*rel)
	}
	return "no margin"
}

// transform applies the margin to a candidate value: the value that, were
// the candidate worse by exactly the margin, would match production's.
func (j *Judge) transform(x float64, higherIsWorse bool) float64 {
	rel := max(j.cfg.RelMargin, 0)
	if higherIsWorse {
		return (x - j.absMargin(true)) / (1 + rel)
	}
	return x * (1 + rel)
}

func fmtSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}
