package analysis

import (
	"math"
	"sort"
)

// This file holds the small pieces of maths shared by the checks: the
// beta-binomial mixture (e-values and confidence sequences for a Bernoulli
// mean), a one-sided mixture against p = 1/2, and the normal mSPRT.

func lbeta(a, b float64) float64 {
	x, _ := math.Lgamma(a)
	y, _ := math.Lgamma(b)
	z, _ := math.Lgamma(a + b)
	return x + y - z
}

// betaMixLogE is log M_n(p0), the Beta(a,b) mixture likelihood ratio of s
// successes in n Bernoulli trials against Bernoulli(p0):
//
//	M_n(p0) = B(a+s, b+n-s) / B(a,b) / (p0^s (1-p0)^(n-s)).
//
// Under p0 it is a nonnegative martingale with mean 1, so by Ville's
// inequality P(ever M_n(p0) >= 1/alpha) <= alpha (Robbins 1970; Howard et al.
// 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences").
func betaMixLogE(s, n int, a, b, p0 float64) float64 {
	fs, ff := float64(s), float64(n-s)
	v := lbeta(a+fs, b+ff) - lbeta(a, b)
	if s > 0 {
		v -= fs * math.Log(p0)
	}
	if n > s {
		v -= ff * math.Log1p(-p0)
	}
	return v
}

// betaCS returns the confidence sequence {p0 : M_n(p0) < 1/alpha} for a
// Bernoulli mean: it covers the true mean at all n at once with probability
// >= 1-alpha. -log p0^s (1-p0)^(n-s) is convex in p0, so the set is an
// interval around s/n; its ends are found by bisection.
func betaCS(s, n int, a, b, alpha float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	// log M_n(p) = k - s log p - (n-s) log(1-p), k the log of the marginal.
	fs, ff := float64(s), float64(n-s)
	c := -math.Log(alpha) - (lbeta(a+fs, b+ff) - lbeta(a, b))
	in := func(p float64) bool { return -fs*math.Log(p)-ff*math.Log1p(-p) < c }
	phat := float64(s) / float64(n) // always inside: M_n(phat) <= 1
	lo, hi = 0, 1
	if s > 0 {
		l, r := 0.0, phat
		for range 52 {
			m := (l + r) / 2
			if in(m) {
				r = m
			} else {
				l = m
			}
		}
		lo = l
	}
	if s < n {
		l, r := phat, 1.0
		for range 52 {
			m := (l + r) / 2
			if in(m) {
				l = m
			} else {
				r = m
			}
		}
		hi = r
	}
	return lo, hi
}

// belowLogE is the log e-value of "the rate is at least b" from k
// successes in n Bernoulli trials: the equal-weight mixture of the
// likelihood ratios of rates b/10, b/4 and b/2 against b. Each is a
// supermartingale under any rate >= b, so by Ville's inequality it ever
// reaches 1/risk with probability at most risk. One-sided, it bounds a rate
// from above with about a fifth fewer trials than the two-sided
// beta-binomial mixture.
func belowLogE(k, n int, b float64) float64 {
	if b <= 0 || b >= 1 {
		return 0
	}
	var terms [3]float64
	for i, m := range [...]float64{0.1, 0.25, 0.5} {
		p := b * m
		terms[i] = float64(k)*math.Log(m) + float64(n-k)*(math.Log1p(-p)-math.Log1p(-b))
	}
	return logMeanExp(terms[:])
}

// belowUpper is the smallest rate b (to 1e-4 relative) whose belowLogE
// reaches log(1/risk): the one-sided upper confidence bound that matches
// decisions made with belowLogE. 1 when no b < 1 qualifies.
func belowUpper(k, n int, risk float64) float64 {
	c := -math.Log(risk)
	if n <= 0 || belowLogE(k, n, 0.999) < c {
		return 1
	}
	lo, hi := float64(k)/float64(n), 0.999
	for range 60 {
		m := (lo + hi) / 2
		if belowLogE(k, n, m) >= c {
			hi = m
		} else {
			lo = m
		}
	}
	return hi
}

// upGrid is the support of the one-sided mixing distribution used to test
// p = 1/2 against p > 1/2: uniform on {0.51, 0.52, ..., 0.90}.
var upGrid = func() []float64 {
	g := make([]float64, 40)
	for i := range g {
		g[i] = 0.5 + 0.01*float64(i+1)
	}
	return g
}()

// upLogE is the log of the one-sided e-value for s "harmful" outcomes in n
// fair-coin trials: the average over p in upGrid of the likelihood ratio
// (2p)^s (2(1-p))^(n-s). Each term is a test martingale under p = 1/2, hence
// so is the average; it only grows when outcomes lean to the harmful side.
func upLogE(s, n int) float64 {
	if n == 0 {
		return 0
	}
	fs, ff := float64(s), float64(n-s)
	terms := make([]float64, len(upGrid))
	for i, p := range upGrid {
		terms[i] = fs*math.Log(2*p) + ff*math.Log(2*(1-p))
	}
	return logMeanExp(terms)
}

func logMeanExp(x []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, v)
	}
	if math.IsInf(m, -1) {
		return m
	}
	var s float64
	for _, v := range x {
		s += math.Exp(v - m)
	}
	return m + math.Log(s/float64(len(x)))
}

// msprtLogL is the log of the normal mSPRT statistic (Johari et al. 2022) for
// an estimate d of a difference of means with variance v and a N(0, tau^2)
// mixing prior on the true difference:
//
//	L = sqrt(v/(v+tau^2)) * exp(tau^2 d^2 / (2 v (v+tau^2))).
func msprtLogL(d, v, tau float64) float64 {
	if v <= 0 || tau <= 0 {
		return 0
	}
	t2 := tau * tau
	return 0.5*math.Log(v/(v+t2)) + t2*d*d/(2*v*(v+t2))
}

// msprtHalfWidth is the half-width of the mSPRT confidence sequence
// {delta : L(d - delta) < 1/alpha}, i.e. d +- sqrt(2 v (v+tau^2)/tau^2 *
// (log(1/alpha) + log((v+tau^2)/v)/2)).
func msprtHalfWidth(v, tau, alpha float64) float64 {
	if v <= 0 || tau <= 0 {
		return 0
	}
	t2 := tau * tau
	return math.Sqrt(2 * v * (v + t2) / t2 * (-math.Log(alpha) + 0.5*math.Log((v+t2)/v)))
}

// moments is Welford's running mean and variance.
type moments struct {
	N    int64   `json:"n"`
	Mean float64 `json:"mean"`
	M2   float64 `json:"m2"`
}

func (m *moments) add(x float64) {
	m.N++
	d := x - m.Mean
	m.Mean += d / float64(m.N)
	m.M2 += d * (x - m.Mean)
}

func (m moments) variance() float64 {
	if m.N < 2 {
		return 0
	}
	return m.M2 / float64(m.N-1)
}

// quantile returns the q-quantile of x (sorted in place), nearest rank.
func quantile(x []float64, q float64) float64 {
	sort.Float64s(x)
	i := int(math.Ceil(q*float64(len(x)))) - 1
	return x[min(max(i, 0), len(x)-1)]
}

// RateCS is an anytime-valid confidence sequence for a share from k of n
// Bernoulli trials: with probability at least 1-alpha it holds the true
// share at every n at once, however often it is computed. It is the
// uniform-prior beta-binomial mixture (betaCS with Beta(1, 1)).
func RateCS(k, n int, alpha float64) (lo, hi float64) {
	return betaCS(k, n, 1, 1, alpha)
}

// MeanCS is a confidence sequence for a mean from n observations with
// sample mean mean and sample standard deviation sd: the normal mSPRT's
// (Johari et al. 2022) with a N(0, tau^2) mixing prior, tau the effect size
// it is tightest for, in the data's units. sd is a plug-in estimate, so the
// guarantee is asymptotic; callers should want a few dozen observations.
func MeanCS(mean, sd float64, n int, tau, alpha float64) (lo, hi float64) {
	if n < 2 || sd <= 0 {
		if n >= 2 { // no spread at all: the mean is what it is
			return mean, mean
		}
		return math.Inf(-1), math.Inf(1)
	}
	h := msprtHalfWidth(sd*sd/float64(n), tau, alpha)
	return mean - h, mean + h
}
