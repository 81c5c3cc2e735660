package analysis_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/analysis"
)

// The simulations below check the judge's promises on workloads of
// analysis.Traffic with the default config, with a few dozen rollouts each
// (the power report, docs/POWER.md, runs 200). They simulate millions of
// requests, so -short and -race skip them.
func skipHeavy(t *testing.T) {
	t.Helper()
	if testing.Short() || raceEnabled {
		t.Skip("simulates millions of requests")
	}
}

// Errors with practical margins: a doubling from 0.5% to 1% at a 10% share
// and 50 req/s fails before any pass (the old 2% floor let it through 72%
// of the time), while 1% -> 1.05%, inside the margin, passes.
func TestErrorMargins(t *testing.T) {
	skipHeavy(t)
	const n = 30
	tr := analysis.Traffic{Rate: 50, Share: 0.1, Streamed: true, TTFTMedian: 0.4, TTFTSigma: 0.5, Bimodal: true, ErrRate: 0.005,
		Duration: time.Hour, Interval: 30 * time.Second}
	double := analysis.RunOutcomes("0.5% -> 1%", tr, analysis.Config{}, analysis.Effect{ErrMul: 2}, n, 11<<20, 2)
	t.Logf("0.5%% -> 1%%: %+v", double)
	if double.Failed < n*9/10 {
		t.Errorf("0.5%% -> 1%%: failed first in %d of %d rollouts, want at least 90%%", double.Failed, n)
	}
	tr.ErrRate = 0.01
	same := analysis.RunOutcomes("1% -> 1.05%", tr, analysis.Config{}, analysis.Effect{ErrMul: 1.05}, n, 12<<20, 2)
	t.Logf("1%% -> 1.05%%: %+v", same)
	if same.Failed > 0 || same.Passed < n*9/10 {
		t.Errorf("1%% -> 1.05%%: %d failed, %d of %d passed within %v", same.Failed, same.Passed, n, tr.Duration)
	}
}

// A p99-only slowdown (+70% at p99, p50 and p95 unchanged) at 10 req/s and a
// 10% share fails within 30 minutes in at least 80% of rollouts.
func TestP99OnlyRegressionFails(t *testing.T) {
	skipHeavy(t)
	const n = 60
	tr := analysis.Traffic{Rate: 10, Share: 0.1, LatMedian: 0.8, LatSigma: 0.5, Bimodal: true, ErrRate: 0.001,
		Duration: 30 * time.Minute, Interval: 30 * time.Second}
	row := analysis.RunOutcomes("p99 +70%", tr, analysis.Config{}, analysis.Effect{P99Mul: 1.7}, n, 13<<20, 2)
	t.Logf("%+v", row)
	if row.Failed < n*8/10 {
		t.Errorf("failed in %d of %d rollouts, want at least 80%%", row.Failed, n)
	}
}

// An identical candidate at 10 req/s and a 10% share (0.1% errors) passes
// in a median of at most 10 minutes, and at most 10% of rollouts are still
// inconclusive at 30 minutes.
func TestIdenticalPassesQuickly(t *testing.T) {
	skipHeavy(t)
	const n = 40
	tr := analysis.Traffic{Rate: 10, Share: 0.1, Streamed: true, TTFTMedian: 0.4, TTFTSigma: 0.8, Bimodal: true, ErrRate: 0.001,
		Duration: 30 * time.Minute, Interval: 30 * time.Second}
	row := analysis.RunOutcomes("identical", tr, analysis.Config{}, analysis.Effect{}, n, 14<<20, 2)
	t.Logf("%+v", row)
	if row.Failed > 0 || row.MedianPass < 0 || row.MedianPass > 10*time.Minute || row.Inconclusive > n/10 {
		t.Errorf("median time to pass %v, %d failed, %d of %d inconclusive at 30 min", row.MedianPass, row.Failed, row.Inconclusive, n)
	}
}

// Power: at a 10% share the median candidate requests to fail TTFT +25% and
// latency +20% stay within 1.5x, and errors 1% -> 3% within 1.2x, of what a
// fixed-horizon test of the same hypothesis (same margins, the check's
// alpha) needs for 80% power with all of production's requests.
func TestPowerAgainstFixedHorizon(t *testing.T) {
	skipHeavy(t)
	const n = 80
	alphaK := analysis.DefaultAlpha / 7 // the default checks' share
	base := analysis.Traffic{Rate: 10, Share: 0.1, Streamed: true, TTFTMedian: 0.4, TTFTSigma: 0.5, Bimodal: true, ErrRate: 0.001,
		Duration: 3 * time.Hour, Interval: 30 * time.Second}
	lat := analysis.Traffic{Rate: 10, Share: 0.1, LatMedian: 1.5, LatSigma: 0.5, Bimodal: true, ErrRate: 0.001,
		Duration: 3 * time.Hour, Interval: 30 * time.Second}
	errs := base
	errs.ErrRate = 0.01
	lognormal := func(median, mul float64) func(*rand.Rand, bool) float64 {
		return func(rng *rand.Rand, cand bool) float64 {
			v := median * math.Exp(0.5*rng.NormFloat64())
			if cand {
				v *= mul
			}
			return v
		}
	}
	for _, tc := range []struct {
		name  string
		tr    analysis.Traffic
		eff   analysis.Effect
		fixed int
		ratio float64
	}{
		{"TTFT +25%", base, analysis.Effect{TTFTMul: 1.25}, analysis.FixedMannWhitneyN(alphaK, 0.1, lognormal(0.4, 1.25), 300, 1), 1.5},
		{"latency +20%", lat, analysis.Effect{LatMul: 1.2}, analysis.FixedMannWhitneyN(alphaK, 0.1, lognormal(1.5, 1.2), 300, 2), 1.5},
		{"errors 1% -> 3%", errs, analysis.Effect{ErrMul: 3}, analysis.FixedProportionsN(alphaK, 0.1, 0.03, 0.01, 300, 3), 1.2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row := analysis.RunPower(tc.name, tc.tr, analysis.Config{}, tc.eff, n, 15<<20, 2)
			t.Logf("median %d candidate requests to fail (p90 %d), %d of %d failed; the fixed-horizon test needs %d for 80%% power",
				row.MedianCandidate, row.P90Candidate, row.Detected, n, tc.fixed)
			if row.MedianCandidate < 0 || float64(row.MedianCandidate) > tc.ratio*float64(tc.fixed) {
				t.Errorf("median %d candidate requests, more than %gx the fixed-horizon test's %d", row.MedianCandidate, tc.ratio, tc.fixed)
			}
			if row.PassedFirst > 0 {
				t.Errorf("%d rollouts passed before failing", row.PassedFirst)
			}
		})
	}
}

// Every check explains itself in one plain sentence (no e-values), keeps the
// statistics in Detail, and reports its bounds, margins and the requests
// still needed.
func TestChecksExplainThemselves(t *testing.T) {
	tr := analysis.Traffic{Rate: 10, Share: 0.1, Streamed: true, TTFTMedian: 0.4, TTFTSigma: 0.5, Bimodal: true, ErrRate: 0.01,
		Duration: 3 * time.Minute, Interval: 30 * time.Second}
	j, err := analysis.NewJudge(analysis.Config{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for at := time.Duration(0); at < tr.Duration; at += tr.Interval {
		c, b := tr.Window(rng, at, at+tr.Interval, analysis.Effect{TTFTMul: 1.5})
		j.Observe(c, b)
	}
	r := j.Result()
	var metrics []string
	for _, c := range r.Checks {
		metrics = append(metrics, c.Metric)
		if c.Reason == "" || c.Detail == "" || c.Alpha <= 0 || c.Threshold == 0 || c.Lower > c.Upper || c.CandidateN == 0 || c.BaselineN == 0 {
			t.Errorf("%s lacks evidence: %+v", c.Metric, c)
		}
		if containsAny(c.Reason, "e-value", "alpha", "mSPRT", "U-score") {
			t.Errorf("%s: the reason is not plain: %s", c.Metric, c.Reason)
		}
		switch c.Verdict {
		case analysis.Inconclusive:
			if c.Needed == 0 {
				t.Errorf("%s: inconclusive with nothing more needed: %+v", c.Metric, c)
			}
		default:
			if c.Needed != 0 {
				t.Errorf("%s: %s but needs %d more", c.Metric, c.Verdict, c.Needed)
			}
		}
		t.Logf("%s [%s, needed %d]: %s", c.Metric, c.Verdict, c.Needed, c.Reason)
	}
	ttft := check(t, r, "ttft")
	if ttft.Verdict != analysis.Fail || ttft.Margin != analysis.DefaultRelMargin || ttft.MarginAbs != analysis.DefaultAbsMargin.Seconds() ||
		!containsAny(ttft.Reason, "5% + 5ms") || !containsAny(ttft.Detail, "e-value") {
		t.Errorf("ttft +50%%: %+v", ttft)
	}
	if !slices.Contains(metrics, "tail_latency:p99") {
		t.Errorf("no p99 check in %v", metrics)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}
