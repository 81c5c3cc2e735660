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

// errAlt are the grid offsets of the alternatives mixed over by the
// confidence sequence, ratios ~ 1.12, 1.26, 1.5, 2, 3, 5 with equal
// weights.
var errAlt = [...]int{2, 4, 7, 12, 19, 28}

var errRatio = func() []float64 {
	r := make([]float64, 2*errHalf+1)
	for i := range r {
		r[i] = math.Exp(float64(i-errHalf) * errStep)
	}
	return r
}()

type errorState struct {
	// LogLik[i] is log L(r_i) - log L(1) for r_i = exp((i-108) * ln(10)/40).
	LogLik []float64 `json:"logLik"`
	// AtMargin[0] is log L(r0) - log L(1) for the margin r0, AtMargin[i]
	// the same for r0 * errMarginAlt[i-1]: the fail test's likelihoods,
	// exact at r0 wherever it falls on the grid.
	AtMargin     []float64 `json:"atMargin"`
	CandRequests int64     `json:"candRequests"`
	CandErrors   int64     `json:"candErrors"`
	BaseRequests int64     `json:"baseRequests"`
	BaseErrors   int64     `json:"baseErrors"`
}

// errMarginAlt are the ratios to the margin r0 mixed over by the fail test
// (equal weights): it is most sensitive to error rates 1.3 to 6 times the
// margin, and 15 lets a broken candidate (a third of its requests failing
// against none) fail within a few dozen requests.
var errMarginAlt = [...]float64{1.3, 1.6, 2, 2.6, 3.5, 6, 15}

func newErrorState() errorState {
	return errorState{LogLik: make([]float64, 2*errHalf+1), AtMargin: make([]float64, len(errMarginAlt)+1)}
}

// add consumes one time bucket: nc requests and ec errors of the candidate,
// nb and eb of production.
func (e *errorState) add(nc, ec, nb, eb int64, r0 float64) {
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
	for i := range e.AtMargin {
		r := r0
		if i > 0 {
			r *= errMarginAlt[i-1]
		}
		e.AtMargin[i] += c*math.Log(r) - t*math.Log1p(q*(r-1))
	}
}

// eValue is the fail test's mixture over r = r0 * m, m in errMarginAlt,
// against r0 (one-sided: only a candidate that fails more often than r0
// times production raises it). For every true ratio r <= r0 each term is a
// supermartingale with mean at most 1.
func (e *errorState) eValue() float64 {
	var s float64
	for i := 1; i < len(e.AtMargin); i++ {
		s += math.Exp(min(e.AtMargin[i]-e.AtMargin[0], 690))
	}
	return s / float64(len(errMarginAlt))
}

// cs returns the confidence sequence for the rate ratio and the
// conditional MLE of r. Each end is a one-sided test at every grid ratio
// r_i: the lower bound is the largest r_i where the mixture over r_i m
// (m as in errAlt, equal weights) against r_i reached 1/alpha (so r > r_i),
// the upper bound the smallest r_i where the mixture over r_i / m did (so
// r < r_i). The bounds are clipped to the grid: 0 means "below 0.05", 50
// "above 50".
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
	limit := -math.Log(alpha)
	mix := func(i, dir int) float64 {
		terms := make([]float64, 0, len(errAlt))
		for _, a := range errAlt {
			terms = append(terms, e.LogLik[i+dir*a]-e.LogLik[i])
		}
		return logMeanExp(terms)
	}
	loK, hiK := errHalf-errCSHalf, errHalf+errCSHalf
	for i := errHalf + errCSHalf; i >= errHalf-errCSHalf; i-- {
		if mix(i, 1) >= limit {
			loK = i
			break
		}
	}
	for i := errHalf - errCSHalf; i <= errHalf+errCSHalf; i++ {
		if mix(i, -1) >= limit {
			hiK = i
			break
		}
	}
	lo, hi = errRatio[loK], errRatio[hiK]
	if loK == errHalf-errCSHalf {
		lo = 0
	}
	if hiK < loK { // both ends rejected around an extreme MLE
		lo, hi = min(lo, hi), max(lo, hi)
	}
	return mle, lo, hi
}

func (j *Judge) errorsCheck(enough bool) (Check, bool) {
	e := &j.st.Errors
	r0 := j.cfg.ErrorRatioMargin
	ch := Check{Metric: MetricErrors, CandidateN: int(e.CandRequests), BaselineN: int(e.BaseRequests),
		Threshold: j.cfg.MaxErrorRatio, FailBound: r0, Margin: r0 - 1, Alpha: j.alphaK, EValue: 1,
		Verdict: Inconclusive, Needed: -1, Unit: "error-rate ratio"}
	if e.CandRequests == 0 || e.BaseRequests == 0 {
		ch.Reason = "errors: no requests yet on one side"
		ch.Detail = ch.Reason
		return ch, false
	}
	mle, lo, _ := e.cs(j.alphaK)
	_, passLo, hi := e.cs(j.cfg.PassRisk)
	ev := e.eValue()
	floorE := 0.0
	if j.cfg.MaxErrorRate > 0 {
		floorE = belowLogE(int(e.CandErrors), int(e.CandRequests), j.cfg.MaxErrorRate)
	}
	belowFloor := j.cfg.MaxErrorRate > 0 && floorE >= -math.Log(j.cfg.PassRisk)
	ch.Effect, ch.Lower, ch.Upper, ch.EValue = mle, lo, hi, ev
	top := errRatio[errHalf+errCSHalf]
	compared := fmt.Sprintf("errors: %d of %d candidate requests failed (%s) against %d of %d in production (%s) in the same 10 s buckets; the candidate's error rate is %.2gx production's (between %s and %s)",
		e.CandErrors, e.CandRequests, pct(e.CandErrors, e.CandRequests),
		e.BaseErrors, e.BaseRequests, pct(e.BaseErrors, e.BaseRequests), mle, num(lo), upperText(hi, top))
	ch.Detail = fmt.Sprintf("errors: e-value %s against ratio <= %g (fail at %s = 1/alpha, alpha %.4g); confidence sequence [%s, %s] (lower at 1-alpha, upper at 1-%g); e-value %s against the candidate's rate >= the floor %.3g%% (pass at %s)",
		num(ev), r0, num(1/j.alphaK), j.alphaK, num(lo), upperText(hi, top), j.cfg.PassRisk, num(expClamp(floorE)), 100*j.cfg.MaxErrorRate, num(1/j.cfg.PassRisk))
	switch {
	case ev >= 1/j.alphaK:
		ch.Verdict, ch.Needed = Fail, 0
		ch.Reason = compared + fmt.Sprintf(": fail, it is surely more than %gx production's", r0)
	case enough && hi < j.cfg.MaxErrorRatio:
		ch.Verdict, ch.Needed = Pass, 0
		ch.Reason = compared + fmt.Sprintf(": pass, it is surely below %gx", j.cfg.MaxErrorRatio)
	case enough && belowFloor && passLo <= r0:
		ch.Verdict, ch.Needed = Pass, 0
		ch.Reason = compared + fmt.Sprintf(": pass, the candidate's own error rate is surely below %.3g%%", 100*j.cfg.MaxErrorRate)
	default:
		// On a log scale, from the side that decides: the upper end for a
		// pass, the lower end for a fail.
		if mle > 0 && mle < j.cfg.MaxErrorRatio && hi > mle {
			w, gap := math.Log(min(hi, top)/mle), math.Log(j.cfg.MaxErrorRatio/mle)
			ch.Needed = max(1, int(math.Ceil(float64(e.CandRequests)*((w/gap)*(w/gap)-1))))
		} else if mle > r0 && lo > 0 {
			w, gap := math.Log(mle/lo), math.Log(mle/r0)
			ch.Needed = max(1, int(math.Ceil(float64(e.CandRequests)*((w/gap)*(w/gap)-1))))
		}
		ch.Reason = compared + fmt.Sprintf(": not decided yet (a fail needs it surely above %gx, a pass surely below %gx or the candidate's rate surely below %.3g%%)",
			r0, j.cfg.MaxErrorRatio, 100*j.cfg.MaxErrorRate)
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
