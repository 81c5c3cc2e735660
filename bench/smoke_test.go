package main

import (
	"context"
	"testing"
	"time"
)

// TestSmoke is the CI form of the benchmark: the same scenarios, briefly,
// with assertions on correctness only (never on timing). The simulators
// and the daemon run in this process; nginx and haproxy join when
// installed and are skipped otherwise.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("smoke benchmark skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := setup(ctx, envOptions{Dir: t.TempDir(), InProcess: true, Peers: true, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.close)
	for _, m := range e.Missing {
		t.Logf("skipping peer %s", m)
	}

	t.Run("every request answered", func(t *testing.T) {
		for _, tg := range e.targets {
			res := runLoad(ctx, tg.Addr, 8, 0, 500*time.Millisecond)
			if res.Errors != 0 || res.Requests == 0 {
				t.Errorf("%s: %d of %d requests failed (first: %s)", tg.Name, res.Errors, res.Requests, res.FirstErr)
			}
		}
	})

	t.Run("90/10 split", func(t *testing.T) {
		for name, s := range splitScenario(ctx, e, 4000) {
			if s.Production+s.Staging != 4000 {
				t.Errorf("%s: %d answers counted, want 4000", name, s.Production+s.Staging)
			}
			if !s.Within {
				t.Errorf("%s: staging got %.2f%% (%d of %d); chi-square %.2f > %.2f", name, s.StagingPct, s.Staging, s.Production+s.Staging, s.Chi2, chi2Bound)
			}
		}
	})

	t.Run("streams not coalesced", func(t *testing.T) {
		if err := e.setSims(ctx, `{"ttft":"0s","itl":"25ms","tokens":16}`); err != nil {
			t.Fatal(err)
		}
		defer e.setSims(context.Background(), `{"ttft":"0s","itl":"0s","tokens":16}`)
		for _, tg := range e.targets {
			// A loaded CI machine can stall a process for longer than one
			// token interval, which merges two events in any proxy; one
			// retry tells that from buffering, which merges every time.
			var s *streamStats
			for try := 0; try < 2; try++ {
				s = burstStreams(ctx, tg.URL(), 4, 16)
				if s.Coalesced == 0 {
					break
				}
			}
			if s.Failed != 0 || s.EventsGot != s.EventsWant {
				t.Errorf("%s: %d of %d streams failed, %d of %d content events received (first: %s)", tg.Name, s.Failed, s.Streams, s.EventsGot, s.EventsWant, s.FirstErr)
			}
			if s.Coalesced != 0 {
				t.Errorf("%s: %d reads carried more than one content event (max %d): events were buffered", tg.Name, s.Coalesced, s.MaxPer)
			}
		}
	})

	t.Run("swap under load", func(t *testing.T) {
		f, err := swapScenario(ctx, e, params{SwapLoad: 2 * time.Second, Swaps: 3})
		if err != nil {
			t.Fatal(err)
		}
		if f.SwapErrors != 0 || f.Swaps != 3 {
			t.Errorf("%d swaps done, %d failed: %s", f.Swaps, f.SwapErrors, f.FirstError)
		}
		if f.Failed != 0 || f.BrokenStreams != 0 {
			t.Errorf("%d of %d requests failed, %d of %d streams broken (first: %s)", f.Failed, f.Requests, f.BrokenStreams, f.Streams, f.FirstError)
		}
		if f.Requests == 0 || f.Streams == 0 {
			t.Errorf("no load during the swaps: %d requests, %d streams", f.Requests, f.Streams)
		}
	})
}

// TestPairedRatios: each round's ratio is taken within the round, so a
// host that gets faster from round to round does not move it.
func TestPairedRatios(t *testing.T) {
	r := &Results{Saturation: map[string]*SatFig{
		"modelslot": {RoundRPS: []float64{800, 1600, 3200}},
		"nginx":     {RoundRPS: []float64{1000, 2000, 4000}},
	}}
	for name, f := range r.Saturation {
		r.Saturation[name].RPS = spreadOf(f.RoundRPS)
	}
	r.computeRatios()
	if got := r.PairedRatios["modelslot/nginx"]; got.Median != 0.8 || got.Min != 0.8 || got.Max != 0.8 {
		t.Errorf("paired modelslot/nginx = %+v, want 0.8 in every round", got)
	}
	if got := r.Ratios["modelslot/nginx"]; got != 0.8 {
		t.Errorf("ratio of the medians = %v, want 0.8", got)
	}
	if _, ok := r.PairedRatios["modelslot/haproxy"]; ok {
		t.Error("a paired ratio for a target that did not run")
	}
}
