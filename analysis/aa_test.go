package analysis_test

import (
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/analysis"
)

// aaRollouts is the number of rollouts per A/A scenario: 40 by default, 6
// with -short or -race, and MODELSLOT_AA_ROLLOUTS for the full run (the
// power report runs 3,000 per scenario; see docs/POWER.md).
func aaRollouts(t *testing.T) int {
	if v := os.Getenv("MODELSLOT_AA_ROLLOUTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MODELSLOT_AA_ROLLOUTS=%q is not a positive number", v)
		}
		return n
	}
	if testing.Short() || raceEnabled {
		return 6
	}
	return 40
}

// TestAASuite simulates rollouts of identical versions in every workload of
// analysis.AAScenarios (heavy tails, bimodal lengths, latency independent
// of length, shared drift, error bursts, shares 1% to 90%, 1 to 100 req/s,
// bucket-only data at 10, 30 and 60 s), one Judge per rollout with the
// default config looking every interval up to the deadline, on after a pass.
// Each check's share of rollouts it ever fails must stay within its alpha'
// plus three binomial standard errors, and the gate's within alpha.
func TestAASuite(t *testing.T) {
	n := aaRollouts(t)
	const alpha, k = analysis.DefaultAlpha, 7
	bound := func(a float64) float64 { return a + 3*math.Sqrt(a*(1-a)/float64(n)) }
	for i, tr := range analysis.AAScenarios() {
		if n < 40 && tr.Rate*tr.Duration.Seconds() > 50000 {
			tr.Duration /= 5 // keep -race bounded: the 100 req/s workloads for a fifth of their time
		}
		t.Run(tr.Name, func(t *testing.T) {
			row := analysis.RunAA(tr, analysis.Config{}, n, uint64(1000*i), 2)
			t.Logf("%d of %d rollouts failed (%v); %d passed", row.Failed, n, row.ByCheck, row.Passed)
			if float64(row.Failed)/float64(n) > bound(alpha) {
				t.Errorf("gate: %d of %d rollouts failed, bound %.4f", row.Failed, n, bound(alpha))
			}
			for m, f := range row.ByCheck {
				if float64(f)/float64(n) > bound(alpha/k) {
					t.Errorf("%s: %d of %d rollouts failed, bound %.4f", m, f, n, bound(alpha/k))
				}
			}
		})
	}
}

// Without margins the sample-based checks test "no difference at all",
// where the U-scores are exactly uniform: the false-fail rate must still
// hold, so the validity does not rest on the margins' slack.
func TestAAWithoutMargins(t *testing.T) {
	n := aaRollouts(t)
	cfg := analysis.Config{RelMargin: -1, AbsMargin: -1, ErrorRatioMargin: 1}
	fails, total := 0, 0
	for i, tr := range analysis.AAScenarios() {
		if tr.Grain > 0 || tr.Rate*tr.Duration.Seconds() > 50000 {
			continue // bucket means keep the margin (docs/ANALYSIS.md); the 100 req/s runs are long
		}
		row := analysis.RunAA(tr, cfg, n, uint64(7000+1000*i), 2)
		t.Logf("%s: %d of %d failed %v", tr.Name, row.Failed, n, row.ByCheck)
		fails += row.Failed
		total += n
	}
	a := analysis.DefaultAlpha
	bound := a + 3*math.Sqrt(a*(1-a)/float64(total))
	if rate := float64(fails) / float64(total); rate > bound {
		t.Errorf("without margins %d of %d rollouts failed (%.4f), bound %.4f", fails, total, rate, bound)
	}
}

// TestAADriftWithinWindow: the meter returns requests in time order, and
// the look itself (queries, a state write) slows the requests at the start
// of the next window for both slots alike. With the candidate the majority
// (the watch after a swap: the new production takes 90%), pairing must draw
// the candidate's requests at random too, not take the first ones: those
// sit in the slow start and would make an identical version look slower.
func TestAADriftWithinWindow(t *testing.T) {
	const looks, perLook, share = 15, 200, 0.9
	rollouts := 300
	if testing.Short() || raceEnabled {
		rollouts = 60
	}
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
	rate := float64(n) / float64(rollouts)
	bound := 0.01 + 3*math.Sqrt(0.01*0.99/float64(rollouts))
	t.Logf("A/A with a slow start in every window, candidate at 90%%: %d of %d rollouts ever failed (bound %.4f)", n, rollouts, bound)
	if rate > bound {
		t.Errorf("false-fail rate %.4f > %.4f", rate, bound)
	}
}
