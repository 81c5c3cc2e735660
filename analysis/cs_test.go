package analysis_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/modelslot/modelslot/analysis"
)

// The confidence sequences must hold the true value at every look at once:
// in simulated runs that compute them after every observation, the share of
// runs where the truth ever falls outside stays at or below alpha (within
// binomial noise). A fixed-sample 95% interval recomputed this often misses
// in far more than 5% of the runs, which is what the checks guard against.
func TestConfidenceSequencesHoldAtEveryLook(t *testing.T) {
	const (
		runs  = 1000
		looks = 400
		alpha = 0.05
	)
	bound := alpha + 3*math.Sqrt(alpha*(1-alpha)/runs)
	rng := rand.New(rand.NewPCG(7, 11))

	t.Run("rate", func(t *testing.T) {
		for _, p := range []float64{0.02, 0.3} {
			missed, fixedMissed := 0, 0
			for range runs {
				k, ever, fixedEver := 0, false, false
				for n := 1; n <= looks; n++ {
					if rng.Float64() < p {
						k++
					}
					if n%4 != 0 {
						continue // look every 4 requests, as a gate looks every interval
					}
					if lo, hi := analysis.RateCS(k, n, alpha); p < lo || p > hi {
						ever = true
					}
					if n >= 30 {
						ph := float64(k) / float64(n)
						h := 1.96 * math.Sqrt(ph*(1-ph)/float64(n))
						if p < ph-h || p > ph+h {
							fixedEver = true
						}
					}
				}
				if ever {
					missed++
				}
				if fixedEver {
					fixedMissed++
				}
			}
			t.Logf("p=%g: the sequence missed in %d of %d runs, a fixed 95%% interval in %d", p, missed, runs, fixedMissed)
			if float64(missed)/runs > bound {
				t.Errorf("p=%g: missed in %d of %d runs, more than alpha %g allows", p, missed, runs, alpha)
			}
		}
	})

	t.Run("mean", func(t *testing.T) {
		const mu, sigma, tau = 0.1, 0.5, 0.2
		missed := 0
		for range runs {
			var sum, sq float64
			ever := false
			for n := 1; n <= looks; n++ {
				x := mu + sigma*rng.NormFloat64()
				sum += x
				sq += x * x
				if n < 20 {
					continue
				}
				m := sum / float64(n)
				sd := math.Sqrt((sq - float64(n)*m*m) / float64(n-1))
				if lo, hi := analysis.MeanCS(m, sd, n, tau, alpha); mu < lo || mu > hi {
					ever = true
				}
			}
			if ever {
				missed++
			}
		}
		t.Logf("the mean's sequence missed in %d of %d runs", missed, runs)
		if float64(missed)/runs > bound {
			t.Errorf("missed in %d of %d runs, more than alpha %g allows", missed, runs, alpha)
		}
	})

	t.Run("degenerate", func(t *testing.T) {
		if lo, hi := analysis.RateCS(0, 0, alpha); lo != 0 || hi != 1 {
			t.Errorf("no data: [%g, %g], want [0, 1]", lo, hi)
		}
		if lo, hi := analysis.MeanCS(1, 0.5, 1, 0.2, alpha); !math.IsInf(lo, -1) || !math.IsInf(hi, 1) {
			t.Errorf("one observation: [%g, %g], want unbounded", lo, hi)
		}
		if lo, hi := analysis.MeanCS(0.7, 0, 50, 0.2, alpha); lo != 0.7 || hi != 0.7 {
			t.Errorf("no spread: [%g, %g], want the mean", lo, hi)
		}
	})
}
