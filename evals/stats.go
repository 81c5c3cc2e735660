package evals

import "math"

// Interval is a confidence interval.
type Interval struct {
	Low  float64 `json:"low"`
	High float64 `json:"high"`
}

// z95 is the standard normal quantile for a two-sided 95% interval.
const z95 = 1.959963984540054

// Wilson returns the 95% Wilson score interval for a proportion of
// successes out of n trials; [0, 1] when n is 0.
func Wilson(successes, n int) Interval {
	if n <= 0 {
		return Interval{0, 1}
	}
	p := float64(successes) / float64(n)
	nf := float64(n)
	z2 := z95 * z95
	den := 1 + z2/nf
	center := (p + z2/(2*nf)) / den
	half := z95 * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf)) / den
	return Interval{Low: max(0, center-half), High: min(1, center+half)}
}

// pairs counts paired outcomes: both pass, only base passes, only the
// candidate passes, both fail.
type pairs struct{ both, baseOnly, candOnly, neither int }

// newcombePaired returns the 95% interval for the difference of paired
// proportions (candidate - base), by Newcombe's method 10 (1998, "Improved
// confidence intervals for the difference between binomial proportions
// based on paired data"): Wilson intervals for each proportion combined
// with the correlation between the paired outcomes.
func newcombePaired(p pairs) Interval {
	n := p.both + p.baseOnly + p.candOnly + p.neither
	if n == 0 {
		return Interval{-1, 1}
	}
	nf := float64(n)
	base := float64(p.both+p.baseOnly) / nf
	cand := float64(p.both+p.candOnly) / nf
	lb, lc := Wilson(p.both+p.baseOnly, n), Wilson(p.both+p.candOnly, n)
	a, b, c, d := float64(p.both), float64(p.candOnly), float64(p.baseOnly), float64(p.neither)
	// phi, the correlation of the 2x2 table, taken as 0 when a margin is 0.
	phi := 0.0
	if den := (a + b) * (c + d) * (a + c) * (b + d); den > 0 {
		phi = (a*d - b*c) / math.Sqrt(den)
	}
	diff := cand - base
	dl := math.Sqrt(sq(cand-lc.Low) - 2*phi*(cand-lc.Low)*(lb.High-base) + sq(lb.High-base))
	du := math.Sqrt(sq(lc.High-cand) - 2*phi*(lc.High-cand)*(base-lb.Low) + sq(base-lb.Low))
	return Interval{Low: max(-1, diff-dl), High: min(1, diff+du)}
}

func sq(x float64) float64 { return x * x }

// mcnemarExact returns the two-sided exact McNemar p-value: the binomial
// test of the discordant pairs against an even split.
func mcnemarExact(baseOnly, candOnly int) float64 {
	m := baseOnly + candOnly
	if m == 0 {
		return 1
	}
	k := min(baseOnly, candOnly)
	sum := 0.0
	for i := 0; i <= k; i++ {
		sum += math.Exp(lchoose(m, i) - float64(m)*math.Ln2)
	}
	return min(1, 2*sum)
}

func lchoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}
