package rollout

import (
	"testing"

	"github.com/modelslot/modelslot/analysis"
)

func TestNeededRequests(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ch     analysis.Check
		want   int64
		wantOK bool
	}{
		{"latency toward a pass", analysis.Check{Metric: "latency", Verdict: analysis.Inconclusive, CandidateN: 100, Effect: 0.55, Lower: 0.45, Upper: 0.65, Threshold: 0.6}, 300, true},
		{"tokens/s toward a pass", analysis.Check{Metric: "tokens_per_sec", Verdict: analysis.Inconclusive, CandidateN: 100, Effect: 0.9, Lower: 0.75, Upper: 1.05, Threshold: 0.8}, 125, true},
		{"errors toward a fail", analysis.Check{Metric: "errors", Verdict: analysis.Inconclusive, CandidateN: 100, Effect: 2, Lower: 1, Upper: 3, Threshold: 1.5}, 300, true},
		{"on the threshold", analysis.Check{Metric: "latency", Verdict: analysis.Inconclusive, CandidateN: 100, Effect: 0.6, Lower: 0.5, Upper: 0.7, Threshold: 0.6}, 0, false},
		{"errors without a candidate error", analysis.Check{Metric: "errors", Verdict: analysis.Inconclusive, CandidateN: 100, Effect: 1, Lower: 0, Upper: 50, Threshold: 1.5}, 0, false},
		{"no data", analysis.Check{Metric: "latency", Verdict: analysis.Inconclusive}, 0, false},
		{"decided", analysis.Check{Metric: "errors", Verdict: analysis.Pass, CandidateN: 10}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := neededRequests(tc.ch)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("neededRequests = %d, %v; want %d, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
	// A pass also waits for minSamples.
	res := analysis.Result{Checks: []analysis.Check{{Metric: "latency", Verdict: analysis.Inconclusive, CandidateN: 100, Effect: 0.3, Lower: 0.2, Upper: 0.4, Threshold: 0.6}}}
	if p := checkProgress(res, 200); p[0].Needed == nil || *p[0].Needed != 100 {
		t.Errorf("needed with minSamples 200 after 100: %v", p[0].Needed)
	}
}
