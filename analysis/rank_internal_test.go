package analysis

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// Under the null the U-scores are exactly Uniform(0, 1), whatever the
// distribution (ties included), the block size or the candidate's share:
// the Kolmogorov-Smirnov distance of many of them from the uniform stays
// within its sampling noise, and so does their mean. Ranking against
// production's values alone would not be uniform when the candidate is the
// larger side.
func TestUScoresAreUniformUnderTheNull(t *testing.T) {
	draws := map[string]func(*rand.Rand) float64{
		"lognormal 1.2": func(r *rand.Rand) float64 { return math.Exp(1.2 * r.NormFloat64()) },
		"token counts":  func(r *rand.Rand) float64 { return float64(r.IntN(5)) }, // heavy ties
	}
	samples := 20000
	if testing.Short() {
		samples = 5000
	}
	for name, draw := range draws {
		for _, share := range []float64{0.01, 0.1, 0.5, 0.9} {
			for _, size := range []int{3, 40, 400} {
				rng := rand.New(rand.NewPCG(uint64(size), uint64(share*100)))
				var us []float64
				for len(us) < samples {
					var c, b []float64
					for range size {
						if rng.Float64() < share {
							c = append(c, draw(rng))
						} else {
							b = append(b, draw(rng))
						}
					}
					us = append(us, uScores(c, b, share < 0.5, rng)...)
				}
				sort.Float64s(us)
				d, sum := 0.0, 0.0
				for i, u := range us {
					d = max(d, math.Abs(u-float64(i)/float64(len(us))), math.Abs(u-float64(i+1)/float64(len(us))))
					sum += u
				}
				n := float64(len(us))
				// 24 cases: the KS critical value at 1e-4 (2.22/sqrt(n)) and 4.5
				// standard errors for the mean keep a false alarm rare.
				if d > 2.22/math.Sqrt(n) || math.Abs(sum/n-0.5) > 4.5*math.Sqrt(1/12.0/n) {
					t.Errorf("%s, share %g, block %d: KS distance %.4f (limit %.4f), mean %.4f", name, share, size, d, 2.22/math.Sqrt(n), sum/n)
				}
			}
		}
	}
}

// The betting e-process keeps Ville's bound at every n: over many runs of
// uniform scores the capital against "mean <= 0.5" ever reaches 1/alpha in
// at most alpha of them, and the confidence sequence holds a Beta mean at
// all looks in at least 1 - alpha of the runs. A faster candidate (scores
// below 1/2) never fails.
func TestBettingIsValidAtEveryN(t *testing.T) {
	const n, alpha = 400, 0.05
	runs := 2000
	if testing.Short() {
		runs = 500
	}
	bound := alpha + 3*math.Sqrt(alpha*(1-alpha)/float64(runs))
	rng := rand.New(rand.NewPCG(1, 2))
	fails, misses, fasterFails := 0, 0, 0
	for range runs {
		b := newBetState(alpha, alpha)
		f := newBetState(alpha, alpha)
		missed := false
		for i := range n {
			b.add(rng.Float64())
			f.add(0.8 * rng.Float64())
			if i%10 == 9 {
				if lo, hi := b.cs(); lo > 0.5 || hi < 0.5 {
					missed = true
				}
			}
		}
		if ok, _ := b.above(0.5); ok {
			fails++
		}
		if ok, _ := f.above(0.5); ok {
			fasterFails++
		}
		if missed {
			misses++
		}
	}
	t.Logf("null: %d of %d runs rejected, the sequence missed the mean in %d (bound %.0f)", fails, runs, misses, bound*float64(runs))
	if float64(fails)/float64(runs) > bound || float64(misses)/float64(runs) > 2*bound || fasterFails > 0 {
		t.Errorf("rejected %d, missed %d of %d runs (bound %.3f); a faster candidate failed %d times", fails, misses, runs, bound, fasterFails)
	}
	// Power: scores with mean 0.6 are found out within 400.
	found := 0
	for range 200 {
		b := newBetState(0.001, 0.05)
		for range n {
			b.add(min(1, rng.Float64()+0.1*rng.Float64()*2))
		}
		if ok, _ := b.above(0.5); ok {
			found++
		}
	}
	if found < 190 {
		t.Errorf("mean 0.6: found in %d of 200 runs of %d scores", found, n)
	}
}
