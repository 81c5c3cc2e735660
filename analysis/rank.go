package analysis

import (
	"math/rand/v2"
	"sort"
)

// U-scores: each candidate request is compared with production's whole
// distribution of the same time block instead of one production partner.
//
// Within a block, under "same distribution at the same time" and random
// routing, the slot labels are a uniformly random subset of the block's
// requests given their values (drift that touches both slots alike does not
// matter). Reveal the candidate's requests one at a time in a random order;
// given everything revealed before, the next one is a uniform draw from the
// pool of requests not yet revealed (production's and the candidate's
// remaining ones). Its rank in that pool, ties and the position inside its
// rank spread by an independent uniform, is then exactly Uniform(0, 1)
// whatever the distribution, the block's size or the candidate's share.
// So the sequence U_1, U_2, ... is i.i.d. uniform under the null at every
// n: bounded-score tests on it need no approximation (unlike ranks against
// production's empirical distribution alone, whose shared estimation error
// inflates the variance by 1 + n/m, and most when the candidate is the
// larger side).
//
// Margins enter by transforming the candidate's values first, x -> t(x)
// (for latency (x - 5 ms)/1.05): "the candidate is no worse than production
// by more than the margin" makes t(X_c) no larger than X_p in distribution,
// so the U-scores are uniform at the edge of that null and smaller inside.

// uScores returns the U-scores of the candidate values cand (already
// transformed) against production's values base of the same block, in the
// random order of revelation. higherIsWorse false flips the scale (for
// tokens per second, where slower is smaller). The slices are not modified.
func uScores(cand, base []float64, higherIsWorse bool, rng *rand.Rand) []float64 {
	if len(cand) == 0 {
		return nil
	}
	sign := 1.0
	if !higherIsWorse {
		sign = -1
	}
	b := make([]float64, len(base))
	for i, v := range base {
		b[i] = sign * v
	}
	sort.Float64s(b)
	c := make([]float64, len(cand))
	for i, v := range cand {
		c[i] = sign * v
	}
	sort.Float64s(c)
	// Distinct candidate values with a Fenwick tree of how many of each are
	// not yet revealed.
	var vals []float64
	var cnt []int
	for _, v := range c {
		if len(vals) == 0 || vals[len(vals)-1] != v {
			vals = append(vals, v)
			cnt = append(cnt, 0)
		}
		cnt[len(cnt)-1]++
	}
	d := len(vals)
	tree := make([]int, d+1)
	for i := 1; i <= d; i++ {
		tree[i] += cnt[i-1]
		if j := i + (i & -i); j <= d {
			tree[j] += tree[i]
		}
	}
	prefix := func(i int) int { // remaining among vals[0:i]
		s := 0
		for ; i > 0; i -= i & -i {
			s += tree[i]
		}
		return s
	}
	n := len(c)
	order := rng.Perm(n)
	out := make([]float64, 0, n)
	for k, idx := range order {
		x := c[idx]
		bLess := sort.SearchFloat64s(b, x)
		bEq := sort.Search(len(b)-bLess, func(i int) bool { return b[bLess+i] > x })
		vi := sort.SearchFloat64s(vals, x) // vals[vi] == x
		cLess := prefix(vi)
		cEq := prefix(vi+1) - cLess // includes x itself
		pool := len(b) + (n - k)    // remaining pool, x included
		less := bLess + cLess
		ties := bEq + cEq // x and everything equal to it
		u := (float64(less) + float64(rng.IntN(ties)) + rng.Float64()) / float64(pool)
		out = append(out, u)
		for i := vi + 1; i <= d; i += i & -i {
			tree[i]--
		}
	}
	return out
}
