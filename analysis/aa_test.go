package analysis_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
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

// TestAADriftWithinWindow: the meter returns requests in time order, and
// the look itself (queries, a state write) slows the requests at the start
// of the next window for both slots alike. With the candidate the majority
// (the watch after a swap: the new production takes 90%), pairing must draw
// the candidate's requests at random too, not take the first ones: those
// sit in the slow start and would make an identical version look slower.
func TestAADriftWithinWindow(t *testing.T) {
	const rollouts, looks, perLook, share = 300, 15, 200, 0.9
	slowStart := func(s modelslot.Series, start time.Time) modelslot.Series {
		for i := range s.Samples {
			if s.Samples[i].Time.Sub(start) < 100*time.Millisecond {
				s.Samples[i].TTFT = s.Samples[i].TTFT * 3 / 2
				s.Samples[i].Latency = s.Samples[i].Latency * 3 / 2
			}
		}
		slices.SortFunc(s.Samples, func(a, b modelslot.Sample) int { return a.Time.Compare(b.Time) })
		return s
	}
	n := 0
	for i := range rollouts {
		j, err := analysis.NewJudge(analysis.Config{})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(uint64(i), 7))
		for l := range looks {
			start := t0.Add(time.Duration(l) * time.Second)
			c, b := window(rng, start, time.Second, perLook, share, prod, prod)
			j.Observe(slowStart(c, start), slowStart(b, start))
			if j.Result().Verdict == analysis.Fail {
				n++
				break
			}
		}
	}
	rate := float64(n) / rollouts
	bound := 0.01 + 3*math.Sqrt(0.01*0.99/rollouts)
	t.Logf("A/A with a slow start in every window, candidate at 90%%: %d of %d rollouts ever failed (bound %.4f)", n, rollouts, bound)
	if rate > bound {
		t.Errorf("false-fail rate %.4f > %.4f", rate, bound)
	}
}
