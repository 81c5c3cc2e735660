package analysis_test

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/analysis"
)

// run feeds looks windows of n requests each (one minute apart) and returns
// the last result and whether any look failed.
func run(t *testing.T, cfg analysis.Config, seed uint64, looks, n int, share float64, cand, base slotModel) (analysis.Result, bool) {
	t.Helper()
	j, err := analysis.NewJudge(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	var r analysis.Result
	failed := false
	for i := range looks {
		c, b := window(rng, t0.Add(time.Duration(i)*time.Minute), time.Minute, n, share, cand, base)
		j.Observe(c, b)
		r = j.Result()
		failed = failed || r.Verdict == analysis.Fail
	}
	return r, failed
}

func check(t *testing.T, r analysis.Result, metric string) analysis.Check {
	t.Helper()
	for _, c := range r.Checks {
		if c.Metric == metric {
			return c
		}
	}
	t.Fatalf("no check %q in %+v", metric, r)
	return analysis.Check{}
}

// lowErrors is prod with 0.2% errors: at 1% on both sides the error-rate
// ratio needs some 25,000 requests a side to be bounded below 1.5, and the
// 1% floor cannot pass a candidate whose rate is 1%.
var lowErrors = func() slotModel { m := prod; m.errRate = 0.002; return m }()

func TestIdenticalVersionsPass(t *testing.T) {
	tests := []struct {
		name  string
		model slotModel
		want  []string
	}{
		{"llm", lowErrors, []string{"errors", "latency", "ttft", "tokens_per_sec", "tail_latency:p95", "tail_latency:p99", "output_tokens"}},
		{"latency only", slotModel{errRate: 0.001, latMedian: time.Second, latSigma: 0.4}, []string{"errors", "latency", "tail_latency:p95", "tail_latency:p99"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, failed := run(t, analysis.Config{}, 7, 20, 500, 0.5, tt.model, tt.model)
			if failed {
				t.Fatalf("failed identical versions: %s", r.Reason)
			}
			var got []string
			for _, c := range r.Checks {
				got = append(got, c.Metric)
				if c.Verdict != analysis.Pass {
					t.Errorf("%s: got %s, want pass: %s", c.Metric, c.Verdict, c.Reason)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("checks: got %v, want %v", got, tt.want)
			}
			if r.Verdict != analysis.Pass {
				t.Errorf("verdict: got %s, want pass: %s", r.Verdict, r.Reason)
			}
		})
	}
}

func TestRegressionsFail(t *testing.T) {
	slowTTFT := prod
	slowTTFT.ttftMedian = prod.ttftMedian * 3 / 2
	moreErrors := prod
	moreErrors.errRate = 0.05
	slowTokens := prod
	slowTokens.tps = prod.tps * 0.6
	base := slotModel{errRate: 0.001, latMedian: time.Second, latSigma: 0.3}
	fatTail := base // same median, twice the spread: Kayenta#780
	fatTail.latSigma = 0.6
	tests := []struct {
		name       string
		cand, base slotModel
		metric     string
	}{
		{"errors 1% -> 5%", moreErrors, prod, "errors"},
		{"ttft +50%", slowTTFT, prod, "ttft"},
		{"tokens/s -40%", slowTokens, prod, "tokens_per_sec"},
		{"fatter tail, same median", fatTail, base, "tail_latency:p95"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := run(t, analysis.Config{}, 11, 20, 500, 0.1, tt.cand, tt.base)
			if r.Verdict != analysis.Fail {
				t.Fatalf("verdict: got %s, want fail: %s", r.Verdict, r.Reason)
			}
			c := check(t, r, tt.metric)
			if c.Verdict != analysis.Fail {
				t.Errorf("%s: got %s, want fail: %s", tt.metric, c.Verdict, c.Reason)
			}
			if c.EValue < 700 && !strings.HasPrefix(tt.metric, "slo") {
				t.Errorf("%s: e-value %g below 1/(alpha/7) = 700", tt.metric, c.EValue)
			}
			if !strings.Contains(c.Detail, "1/alpha") || !strings.Contains(c.Detail, "e-value") {
				t.Errorf("detail does not show the e-value against 1/alpha: %s", c.Detail)
			}
			if strings.Contains(c.Reason, "e-value") || !strings.Contains(c.Reason, ": fail, ") {
				t.Errorf("reason is not the plain sentence: %s", c.Reason)
			}
			t.Log(c.Reason)
		})
	}
}

func TestFatTailDoesNotFailLatencyMedian(t *testing.T) {
	base := slotModel{errRate: 0.001, latMedian: time.Second, latSigma: 0.3}
	fat := base
	fat.latSigma = 0.6
	r, _ := run(t, analysis.Config{}, 5, 20, 500, 0.1, fat, base)
	if c := check(t, r, "latency"); c.Verdict == analysis.Fail {
		t.Errorf("latency (same median) failed: %s", c.Reason)
	}
}

func TestTooFewSamplesInconclusive(t *testing.T) {
	r, failed := run(t, analysis.Config{}, 3, 3, 500, 0.1, prod, prod) // ~150 candidate requests
	if failed || r.Verdict != analysis.Inconclusive {
		t.Fatalf("got %s, want inconclusive: %s", r.Verdict, r.Reason)
	}
}

func TestNeverPassWithoutData(t *testing.T) {
	t.Run("no candidate samples", func(t *testing.T) {
		r, _ := run(t, analysis.Config{MinSamples: 1}, 3, 20, 500, 0, prod, prod)
		if r.Verdict != analysis.Inconclusive {
			t.Fatalf("got %s, want inconclusive: %s", r.Verdict, r.Reason)
		}
	})
	t.Run("nothing at all", func(t *testing.T) {
		j, _ := analysis.NewJudge(analysis.Config{MinSamples: 1})
		if r := j.Result(); r.Verdict != analysis.Inconclusive {
			t.Fatalf("got %s, want inconclusive", r.Verdict)
		}
		j.Observe(modelslot.Series{Complete: true}, modelslot.Series{Complete: true})
		if r := j.Result(); r.Verdict != analysis.Inconclusive {
			t.Fatalf("got %s, want inconclusive", r.Verdict)
		}
	})
	t.Run("requested metric absent", func(t *testing.T) {
		latOnly := slotModel{errRate: 0.001, latMedian: time.Second, latSigma: 0.4}
		r, _ := run(t, analysis.Config{Metrics: []string{"errors", "ttft"}}, 3, 20, 500, 0.5, latOnly, latOnly)
		if r.Verdict != analysis.Inconclusive {
			t.Fatalf("got %s, want inconclusive: %s", r.Verdict, r.Reason)
		}
		if c := check(t, r, "ttft"); c.Verdict != analysis.Inconclusive {
			t.Errorf("ttft: got %s, want inconclusive", c.Verdict)
		}
	})
	t.Run("SLO metric absent", func(t *testing.T) {
		latOnly := slotModel{errRate: 0.001, latMedian: time.Second, latSigma: 0.4}
		cfg := analysis.Config{Metrics: []string{"errors"}, SLO: []analysis.SLO{{Metric: "ttft", Quantile: 0.95, Max: time.Second}}}
		r, _ := run(t, cfg, 3, 20, 500, 0.5, latOnly, latOnly)
		if r.Verdict != analysis.Inconclusive {
			t.Fatalf("got %s, want inconclusive: %s", r.Verdict, r.Reason)
		}
	})
	t.Run("incomplete window", func(t *testing.T) {
		j, _ := analysis.NewJudge(analysis.Config{})
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range 20 {
			c, b := window(rng, t0.Add(time.Duration(i)*time.Minute), time.Minute, 500, 0.5, prod, prod)
			if i == 19 {
				c.Complete = false
			}
			j.Observe(c, b)
		}
		if r := j.Result(); r.Verdict != analysis.Inconclusive || !strings.Contains(r.Reason, "incomplete") {
			t.Fatalf("got %s, want inconclusive (incomplete): %s", r.Verdict, r.Reason)
		}
	})
}

// Kayenta#426: three errors against none must be neither ignored nor
// over-read; many more must fail.
func TestSparseErrors(t *testing.T) {
	feed := func(candErrors int) analysis.Result {
		j, _ := analysis.NewJudge(analysis.Config{Metrics: []string{"errors"}})
		c := modelslot.Series{Complete: true}
		b := modelslot.Series{Complete: true}
		for i := range 3000 {
			s := modelslot.Sample{Time: t0.Add(time.Duration(i) * 100 * time.Millisecond), Status: 200, Latency: time.Second}
			if i%10 == 0 {
				if len(c.Samples) < candErrors {
					s.Status = 503
				}
				c.Samples = append(c.Samples, s)
			} else {
				b.Samples = append(b.Samples, s)
			}
		}
		j.Observe(c, b)
		return j.Result()
	}
	r := feed(3)
	c := check(t, r, "errors")
	t.Log(c.Reason)
	if c.Verdict != analysis.Inconclusive || c.EValue <= 1 {
		t.Errorf("3 vs 0: got %s with e-value %g, want inconclusive with e-value > 1: %s", c.Verdict, c.EValue, c.Reason)
	}
	if r := feed(12); r.Verdict != analysis.Fail {
		t.Errorf("12 vs 0: got %s, want fail: %s", r.Verdict, r.Reason)
	}
}

func TestSLO(t *testing.T) {
	cfg := analysis.Config{Metrics: []string{"errors"}, SLO: []analysis.SLO{{Metric: "ttft", Quantile: 0.95, Max: 1500 * time.Millisecond}}}
	// prod TTFT p95 = 400ms * exp(1.645*0.5) = 910ms
	r, _ := run(t, cfg, 9, 20, 500, 0.5, prod, prod)
	c := check(t, r, "slo:ttft:p95")
	if c.Verdict != analysis.Pass {
		t.Errorf("got %s, want pass: %s", c.Verdict, c.Reason)
	}
	if c.Effect < 0.8 || c.Effect > 1.0 || c.Lower > c.Effect || c.Upper < c.Effect {
		t.Errorf("p95 %g [%g, %g], want about 0.91 inside its bounds", c.Effect, c.Lower, c.Upper)
	}
	slow := prod
	slow.ttftMedian = time.Second
	r, _ = run(t, cfg, 9, 5, 500, 0.1, slow, prod)
	if c := check(t, r, "slo:ttft:p95"); c.Verdict != analysis.Fail {
		t.Errorf("got %s, want fail: %s", c.Verdict, c.Reason)
	}
}

func bucketsOf(s modelslot.Series, grain time.Duration) modelslot.Series {
	out := modelslot.Series{Slot: s.Slot, Complete: s.Complete}
	idx := map[time.Time]int{}
	sums := map[time.Time][3]float64{}
	for _, x := range s.Samples {
		st := x.Time.Truncate(grain)
		i, ok := idx[st]
		if !ok {
			i = len(out.Buckets)
			idx[st] = i
			out.Buckets = append(out.Buckets, modelslot.Bucket{Start: st, Grain: grain})
		}
		b := &out.Buckets[i]
		b.Requests++
		if x.IsError() {
			b.Errors++
		}
		v := sums[st]
		v[0] += x.Latency.Seconds()
		v[1] += x.TTFT.Seconds()
		v[2]++
		sums[st] = v
	}
	for i := range out.Buckets {
		v := sums[out.Buckets[i].Start]
		out.Buckets[i].MeanLatency = time.Duration(v[0] / v[2] * float64(time.Second))
		out.Buckets[i].MeanTTFT = time.Duration(v[1] / v[2] * float64(time.Second))
	}
	return out
}

func TestBuckets(t *testing.T) {
	feed := func(cand slotModel) analysis.Result {
		j, _ := analysis.NewJudge(analysis.Config{})
		rng := rand.New(rand.NewPCG(4, 4))
		for i := range 30 {
			c, b := window(rng, t0.Add(time.Duration(i)*time.Minute), time.Minute, 1000, 0.2, cand, lowErrors)
			j.Observe(bucketsOf(c, 10*time.Second), bucketsOf(b, 10*time.Second))
		}
		return j.Result()
	}
	r := feed(lowErrors)
	if r.Verdict == analysis.Fail {
		t.Fatalf("identical buckets failed: %s", r.Reason)
	}
	for _, m := range []string{"errors", "latency", "ttft"} {
		if c := check(t, r, m); c.Verdict != analysis.Pass {
			t.Errorf("%s: got %s, want pass: %s", m, c.Verdict, c.Reason)
		}
	}
	slow := lowErrors
	slow.ttftMedian = prod.ttftMedian * 3 / 2
	slow.errRate = 0.05
	r = feed(slow)
	for _, m := range []string{"errors", "ttft"} {
		if c := check(t, r, m); c.Verdict != analysis.Fail {
			t.Errorf("%s: got %s, want fail: %s", m, c.Verdict, c.Reason)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name  string
		cfg   analysis.Config
		field string
	}{
		{"alpha too big", analysis.Config{Alpha: 0.6}, "Alpha"},
		{"alpha negative", analysis.Config{Alpha: -0.1}, "Alpha"},
		{"min samples", analysis.Config{MinSamples: -1}, "MinSamples"},
		{"error ratio", analysis.Config{MaxErrorRatio: 0.9}, "MaxErrorRatio"},
		{"error rate", analysis.Config{MaxErrorRate: 1.2}, "MaxErrorRate"},
		{"slower prob", analysis.Config{MaxSlowerProb: 0.4}, "MaxSlowerProb"},
		{"tokens ratio", analysis.Config{MinTokensRatio: 1.2}, "MinTokensRatio"},
		{"unknown metric", analysis.Config{Metrics: []string{"errors", "p99"}}, "Metrics[1]"},
		{"duplicate metric", analysis.Config{Metrics: []string{"ttft", "ttft"}}, "Metrics[1]"},
		{"slo metric", analysis.Config{SLO: []analysis.SLO{{Metric: "errors", Quantile: 0.9, Max: time.Second}}}, "SLO[0].Metric"},
		{"slo quantile", analysis.Config{SLO: []analysis.SLO{{Metric: "ttft", Quantile: 95, Max: time.Second}}}, "SLO[0].Quantile"},
		{"slo max", analysis.Config{SLO: []analysis.SLO{{Metric: "ttft", Quantile: 0.95}}}, "SLO[0].Max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := analysis.NewJudge(tt.cfg)
			if err == nil {
				t.Fatal("got no error")
			}
			if !strings.Contains(err.Error(), tt.field+":") {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
			if modelslot.ErrorCode(err) != modelslot.EINVALID {
				t.Errorf("code: got %s, want %s", modelslot.ErrorCode(err), modelslot.EINVALID)
			}
		})
	}
	if _, err := analysis.NewJudge(analysis.Config{MaxErrorRate: -1}); err != nil {
		t.Errorf("negative MaxErrorRate (floor disabled): %v", err)
	}
}

func TestStateRoundTrip(t *testing.T) {
	cfg := analysis.Config{SLO: []analysis.SLO{{Metric: "ttft", Quantile: 0.95, Max: time.Second}}}
	a, _ := analysis.NewJudge(cfg)
	rng := rand.New(rand.NewPCG(8, 8))
	cand := prod
	cand.errRate = 0.02
	for i := range 10 {
		c, b := window(rng, t0.Add(time.Duration(i)*time.Minute), time.Minute, 300, 0.2, cand, prod)
		a.Observe(c, b)
	}
	state := a.State()
	b, err := analysis.RestoreJudge(cfg, state)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := b.Result(), a.Result(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored result differs:\n got %+v\nwant %+v", got, want)
	}
	for i := 10; i < 20; i++ {
		c, bs := window(rng, t0.Add(time.Duration(i)*time.Minute), time.Minute, 300, 0.2, cand, prod)
		a.Observe(c, bs)
		b.Observe(c, bs)
		ra, rb := a.Result(), b.Result()
		if !reflect.DeepEqual(ra, rb) {
			t.Fatalf("look %d: results differ:\n got %+v\nwant %+v", i, rb, ra)
		}
		if _, err := json.Marshal(ra); err != nil {
			t.Fatalf("result does not marshal: %v", err)
		}
	}
	if string(a.State()) != string(b.State()) {
		t.Error("states differ after the same looks")
	}
	if _, err := analysis.RestoreJudge(analysis.Config{}, state); err == nil {
		t.Error("restore with a config with fewer SLOs: got no error")
	}
	if _, err := analysis.RestoreJudge(cfg, json.RawMessage(`{"bogus":1}`)); err == nil {
		t.Error("restore of garbage: got no error")
	}
}

// In the watch after a swap the candidate is the larger side, so every
// production request of a look is in a pair and none is left to estimate
// production's p95 in the same look. The tail check must still work there:
// a fatter tail fails, identical versions pass it.
func TestTailCheckWhenTheCandidateIsTheMajority(t *testing.T) {
	base := slotModel{errRate: 0.001, latMedian: time.Second, latSigma: 0.3}
	fat := base
	fat.latSigma = 0.6
	r, _ := run(t, analysis.Config{}, 11, 20, 500, 0.9, fat, base)
	if c := check(t, r, "tail_latency:p95"); c.Verdict != analysis.Fail {
		t.Errorf("fatter tail with the candidate at 90%%: %s: %s", c.Verdict, c.Reason)
	}
	r, failed := run(t, analysis.Config{}, 7, 20, 500, 0.9, base, base)
	if c := check(t, r, "tail_latency:p95"); failed || c.Verdict != analysis.Pass {
		t.Errorf("identical versions with the candidate at 90%%: %s (failed at some look: %v): %s", c.Verdict, failed, c.Reason)
	}
}

// A deployment whose max_tokens or stop setting cuts answers short is fast
// and error-free: only the output length shows it. The output_tokens check
// fails answers surely shorter than half or longer than twice production's,
// and passes a modest change.
func TestOutputTokensBand(t *testing.T) {
	cut := prod
	cut.maxTokens = 8
	long := prod
	long.outScale = 3
	mild := prod
	mild.outScale = 1.2
	for _, tc := range []struct {
		name    string
		cand    slotModel
		verdict analysis.Verdict
		word    string
	}{
		{"cut at 8 tokens", cut, analysis.Fail, "shorter"},
		{"three times longer", long, analysis.Fail, "longer"},
		{"20% longer", mild, analysis.Pass, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := run(t, analysis.Config{}, 5, 20, 500, 0.1, tc.cand, prod)
			c := check(t, r, "output_tokens")
			if c.Verdict != tc.verdict || !strings.Contains(c.Reason, tc.word) {
				t.Errorf("got %s, want %s (%q): %s", c.Verdict, tc.verdict, tc.word, c.Reason)
			}
			t.Log(c.Reason)
		})
	}
	if _, err := analysis.NewJudge(analysis.Config{MaxOutputRatio: 0.9}); err == nil || !strings.Contains(err.Error(), "MaxOutputRatio") {
		t.Errorf("MaxOutputRatio 0.9: %v", err)
	}
	if _, err := analysis.NewJudge(analysis.Config{MinOutputRatio: 1.5}); err == nil || !strings.Contains(err.Error(), "MinOutputRatio") {
		t.Errorf("MinOutputRatio 1.5: %v", err)
	}
}

// Servers that always answer the same number of tokens leave no spread: the
// ratio is then known exactly, and the check decides on it instead of
// waiting forever for a variance. Empty answers (a counted 0) are the
// shortest of all; an unknown count (a non-streamed answer without usage)
// is no data.
func TestOutputTokensWithoutSpread(t *testing.T) {
	for _, tc := range []struct {
		cand, base int
		uncounted  bool // the candidate's zeros are unknown counts, not empty answers
		want       analysis.Verdict
	}{{16, 16, false, analysis.Pass}, {4, 16, false, analysis.Fail}, {0, 16, false, analysis.Fail}, {0, 16, true, analysis.Inconclusive}} {
		j, err := analysis.NewJudge(analysis.Config{Metrics: []string{"output_tokens"}, MinSamples: 50})
		if err != nil {
			t.Fatal(err)
		}
		var c, b modelslot.Series
		for i := range 400 {
			at := t0.Add(time.Duration(i) * 100 * time.Millisecond)
			s := modelslot.Sample{Time: at, Status: 200, Latency: time.Second, TTFT: time.Second, TokensCounted: true}
			if i%4 == 0 {
				s.OutputTokens, s.TokensCounted = tc.cand, !tc.uncounted
				c.Samples = append(c.Samples, s)
			} else {
				s.OutputTokens = tc.base
				b.Samples = append(b.Samples, s)
			}
		}
		c.Complete, b.Complete = true, true
		j.Observe(c, b)
		if r := j.Result(); r.Verdict != tc.want {
			t.Errorf("%d (uncounted %v) vs %d tokens: %s, want %s: %s", tc.cand, tc.uncounted, tc.base, r.Verdict, tc.want, r.Reason)
		}
	}
}

// TestBucketsWithoutSpread: Azure Monitor's per-minute means can be
// steady to the millisecond (0.25 s against 0.30 s every minute). The
// latency check must conclude on them, not stay inconclusive because the
// differences have no variance.
func TestBucketsWithoutSpread(t *testing.T) {
	minutes := func(lat time.Duration, errs int64, n int) modelslot.Series {
		s := modelslot.Series{Complete: true}
		for i := range n {
			s.Buckets = append(s.Buckets, modelslot.Bucket{Start: t0.Add(time.Duration(i) * time.Minute), Grain: time.Minute, Requests: 300, Errors: errs, MeanLatency: lat})
		}
		return s
	}
	tests := []struct {
		name       string
		cand, base time.Duration
		want       analysis.Verdict
	}{
		{"candidate slower", 300 * time.Millisecond, 250 * time.Millisecond, analysis.Fail},
		{"candidate faster", 250 * time.Millisecond, 300 * time.Millisecond, analysis.Pass},
		{"the same", 250 * time.Millisecond, 250 * time.Millisecond, analysis.Pass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := analysis.NewJudge(analysis.Config{Metrics: []string{"errors", "latency"}, MinSamples: 300})
			if err != nil {
				t.Fatal(err)
			}
			j.Observe(minutes(tt.cand, 0, 25), minutes(tt.base, 0, 25))
			r := j.Result()
			if c := check(t, r, "latency"); c.Verdict != tt.want {
				t.Errorf("latency: got %s, want %s: %s", c.Verdict, tt.want, c.Reason)
			}
			if c := check(t, r, "errors"); c.Verdict == analysis.Inconclusive && tt.want == analysis.Pass {
				t.Errorf("errors: inconclusive after 25 minutes of 300 requests: %s", c.Reason)
			}
		})
	}
}

// TestBucketsAtRealisticTraffic: 300 requests a minute per slot with a
// little minute-to-minute noise (as Azure Monitor reports): equal versions
// pass both checks within a 25-minute bake (the bucket mean test starts
// after 20 buckets), a version 50% slower fails.
func TestBucketsAtRealisticTraffic(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	minutes := func(mean float64, n int) modelslot.Series {
		s := modelslot.Series{Complete: true}
		for i := range n {
			lat := mean * (1 + 0.08*(rng.Float64()-0.5))
			s.Buckets = append(s.Buckets, modelslot.Bucket{Start: t0.Add(time.Duration(i) * time.Minute), Grain: time.Minute, Requests: 300, Errors: int64(rng.IntN(3)), MeanLatency: time.Duration(lat * float64(time.Second))})
		}
		return s
	}
	for _, tt := range []struct {
		name string
		cand float64
		want analysis.Verdict
	}{{"same", 0.25, analysis.Pass}, {"50% slower", 0.375, analysis.Fail}} {
		t.Run(tt.name, func(t *testing.T) {
			j, err := analysis.NewJudge(analysis.Config{Metrics: []string{"errors", "latency"}, MinSamples: 300, Alpha: 0.01 / 4})
			if err != nil {
				t.Fatal(err)
			}
			j.Observe(minutes(tt.cand, 25), minutes(0.25, 25))
			r := j.Result()
			if c := check(t, r, "latency"); c.Verdict != tt.want {
				t.Errorf("latency: got %s, want %s: %s", c.Verdict, tt.want, c.Reason)
			}
			if c := check(t, r, "errors"); c.Verdict != analysis.Pass {
				t.Errorf("errors: got %s, want pass: %s", c.Verdict, c.Reason)
			}
		})
	}
}
