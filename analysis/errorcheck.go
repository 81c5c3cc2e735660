package analysis

import (
	"fmt"
	"math"
)

// Errors as counts (Lindon & Malek 2022, "Anytime-valid inference for
// multinomial count data"). Condition on the errors as they arrive: under
// "same error rate" an error of a time bucket lands in the candidate with
// probability q = the candidate's share of the bucket's requests; under "the
// candidate's rate is r times production's" with probability
// r q / (r q + 1 - q). The log-likelihood of ratio r relative to r = 1 is kept
// on a log-spaced grid of r, so both the test (a mixture over r > 1) and the
// confidence sequence (ratios whose own two-sided mixture stays below 1/alpha)
// are read off the same state.
//
// Given a bucket's request counts, the candidate's errors are hypergeometric
// when each request fails independently with the same probability; the
// likelihood ratio is a convex function of that count and the hypergeometric
// is smaller than the binomial in the convex order (Hoeffding 1963), so its
// conditional mean is <= 1: the product stays a supermartingale and Ville's
// inequality applies.
const (
	errStep   = math.Ln10 / 40 // grid spacing in log r (ratio 1.059 per step)
	errHalf   = 108            // stored grid: r = exp(k errStep), |k| <= 108, i.e. 0.002 .. 500
	errCSHalf = 68             // reported confidence sequence range: 0.05 .. 50
)

// errAlt are the grid offsets of the alternatives mixed over, ratios
// ~ 1.25, 1.5, 2, 3, 5, 10 with equal weights.
var errAlt = [...]int{4, 7, 12, 19, 28, 40}

var errRatio = func() []float64 {
	r := make([]float64, 2*errHalf+1)
	for i := range r {
		r[i] = math.Exp(float64(i-errHalf) * errStep)
	}
	return r
}()

type errorState struct {
	// LogLik[i] is log L(r_i) - log L(1) for r_i = exp((i-108) * ln(10)/40).
	LogLik       []float64 `json:"logLik"`
	CandRequests int64     `json:"candRequests"`
	CandErrors   int64     `json:"candErrors"`
	BaseRequests int64     `json:"baseRequests"`
	BaseErrors   int64     `json:"baseErrors"`
}

func newErrorState() errorState { return errorState{LogLik: make([]float64, 2*errHalf+1)} }

// add consumes one time bucket: nc requests and ec errors of the candidate,
// nb and eb of production.
func (e *errorState) add(nc, ec, nb, eb int64) {
	if nc < 0 || nb < 0 || ec < 0 || eb < 0 {
		return
	}
	ec, eb = min(ec, nc), min(eb, nb)
	e.CandRequests += nc
	e.CandErrors += ec
	e.BaseRequests += nb
	e.BaseErrors += eb
	if ec+eb == 0 || nc == 0 || nb == 0 {
		return // no errors, or q in {0, 1}: the bucket carries no information on r
	}
	q := float64(nc) / float64(nc+nb)
	c, t := float64(ec), float64(ec+eb)
	for i, r := range errRatio {
		// log of (r q/(r q+1-q))^c ((1-q)/(r q+1-q))^(t-c) / (q^c (1-q)^(t-c))
		e.LogLik[i] += c*float64(i-errHalf)*errStep - t*math.Log1p(q*(r-1))
	}
}

// eValue is the mixture over r in {1.25, ..., 10} against r = 1 (one-sided:
// only a candidate that fails more often raises it).
func (e *errorState) eValue() float64 {
	var s float64
	for _, a := range errAlt {
		s += math.Exp(e.LogLik[errHalf+a] - e.LogLik[errHalf])
	}
	return s / float64(len(errAlt))
}

// cs returns the confidence sequence for the rate ratio: the grid ratios r0
// whose two-sided mixture e-value (alternatives r0*m and r0/m, m as in
// errAlt, equal weights) is below 1/alpha, and the conditional MLE of r.
// The bounds are clipped to the grid: 0 means "below 0.05", 50 "above 50".
func (e *errorState) cs(alpha float64) (mle, lo, hi float64) {
	best := errHalf
	for d := 1; d <= errCSHalf; d++ { // ties resolved towards r = 1
		for _, i := range [2]int{errHalf + d, errHalf - d} {
			if e.LogLik[i] > e.LogLik[best]+1e-12 {
				best = i
			}
		}
	}
	mle = errRatio[best]
	loK, hiK := math.MaxInt, math.MinInt
	limit := 1 / alpha
	for i := errHalf - errCSHalf; i <= errHalf+errCSHalf; i++ {
		var s float64
		for _, a := range errAlt {
			s += math.Exp(e.LogLik[i+a]-e.LogLik[i]) + math.Exp(e.LogLik[i-a]-e.LogLik[i])
		}
		if s/float64(2*len(errAlt)) < limit {
			loK, hiK = min(loK, i), max(hiK, i)
		}
	}
	if loK > hiK { // every grid ratio rejected: the truth is beyond the grid
		if best > errHalf {
			return mle, errRatio[errHalf+errCSHalf], errRatio[errHalf+errCSHalf]
		}
		return mle, 0, 0
	}
	lo, hi = errRatio[loK], errRatio[hiK]
	if loK == errHalf-errCSHalf {
		lo = 0
	}
	return mle, lo, hi
}

// errorRatePrior is the Beta prior of the mixture bound on the candidate's
// absolute error rate; Beta(1/2, 10) puts its mass on small rates, which is
// where gates live, and makes the bound tight there.
const errorRatePriorA, errorRatePriorB = 0.5, 10

func (j *Judge) errorsCheck(enough bool) (Check, bool) {
	e := &j.st.Errors
	if e.CandRequests == 0 || e.BaseRequests == 0 {
		return Check{Metric: MetricErrors, Verdict: Inconclusive, Threshold: j.cfg.MaxErrorRatio,
			CandidateN: int(e.CandRequests), BaselineN: int(e.BaseRequests), EValue: 1,
			Reason: "errors: no requests yet on one side"}, false
	}
	mle, lo, hi := e.cs(j.alphaK)
	ev := e.eValue()
	_, rateHi := betaCS(int(e.CandErrors), int(e.CandRequests), errorRatePriorA, errorRatePriorB, j.alphaK)
	ch := Check{
		Metric: MetricErrors, CandidateN: int(e.CandRequests), BaselineN: int(e.BaseRequests),
		Effect: mle, Lower: lo, Upper: hi, EValue: ev, Threshold: j.cfg.MaxErrorRatio,
	}
	desc := fmt.Sprintf("errors: %d of %d candidate requests (%s) vs %d of %d (%s)",
		e.CandErrors, e.CandRequests, pct(e.CandErrors, e.CandRequests),
		e.BaseErrors, e.BaseRequests, pct(e.BaseErrors, e.BaseRequests))
	limit := 1 / j.alphaK
	switch {
	case ev >= limit:
		ch.Verdict = Fail
		ch.Reason = fmt.Sprintf("%s; e-value %s >= %s = 1/alpha: the candidate fails more often (rate ratio %.3g, between %s and %s)",
			desc, num(ev), num(limit), mle, num(lo), upperText(hi, errRatio[errHalf+errCSHalf]))
	case enough && hi < j.cfg.MaxErrorRatio:
		ch.Verdict = Pass
		ch.Reason = fmt.Sprintf("%s; rate ratio %.3g, at most %s < %g", desc, mle, num(hi), j.cfg.MaxErrorRatio)
	case enough && j.cfg.MaxErrorRate > 0 && rateHi < j.cfg.MaxErrorRate:
		ch.Verdict = Pass
		ch.Reason = fmt.Sprintf("%s; the candidate's error rate is at most %.2g%% < %.2g%%", desc, 100*rateHi, 100*j.cfg.MaxErrorRate)
	default:
		ch.Verdict = Inconclusive
		ch.Reason = fmt.Sprintf("%s; e-value %s < %s; rate ratio %.3g could be up to %s (pass needs < %g) and the rate up to %.2g%%",
			desc, num(ev), num(limit), mle, upperText(hi, errRatio[errHalf+errCSHalf]), j.cfg.MaxErrorRatio, 100*rateHi)
		if !enough {
			ch.Reason += j.needMore()
		}
	}
	return ch, true
}

func pct(a, n int64) string {
	if n == 0 {
		return "n/a"
	}
	v := 100 * float64(a) / float64(n)
	if v >= 10 {
		return fmt.Sprintf("%.0f%%", v) // 2 significant digits would print 100 as 1e+02
	}
	return fmt.Sprintf("%.2g%%", v)
}

// num prints a statistic compactly.
func num(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.3g", x)
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

func upperText(hi, top float64) string {
	if hi >= top {
		return ">= " + num(top)
	}
	return num(hi)
}
