package analysis_test

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot/analysis"
)

// TestAAFalseFailRate simulates 500 rollouts of identical versions (1%
// errors, lognormal TTFT, normal tokens/s), the candidate at 10% of traffic,
// 20 looks of 150 requests each (~300 candidate requests per rollout), one
// Judge per rollout with the default config looking after every window. The
// fraction of rollouts that ever fail must stay within alpha plus binomial
// noise: <= 0.01 + 3*sqrt(0.01*0.99/500) = 0.0233.
func TestAAFalseFailRate(t *testing.T) {
	const rollouts, looks, perLook, share = 500, 20, 150, 0.1
	failed := make([]bool, rollouts)
	var candN [rollouts]int
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < rollouts; i += 2 {
				j, err := analysis.NewJudge(analysis.Config{})
				if err != nil {
					t.Error(err)
					return
				}
				rng := rand.New(rand.NewPCG(uint64(i), 42))
				for l := range looks {
					c, b := window(rng, t0.Add(time.Duration(l)*time.Minute), time.Minute, perLook, share, prod, prod)
					candN[i] += len(c.Samples)
					j.Observe(c, b)
					if j.Result().Verdict == analysis.Fail {
						failed[i] = true
						break
					}
				}
			}
		})
	}
	wg.Wait()
	n, total := 0, 0
	for i, f := range failed {
		if f {
			n++
		}
		total += candN[i]
	}
	rate := float64(n) / rollouts
	bound := 0.01 + 3*math.Sqrt(0.01*0.99/rollouts)
	t.Logf("A/A: %d of %d rollouts ever failed (%.4f; bound %.4f); %.0f candidate requests per rollout on average",
		n, rollouts, rate, bound, float64(total)/rollouts)
	if rate > bound {
		t.Errorf("A/A false-fail rate %.4f > %.4f", rate, bound)
	}
}
