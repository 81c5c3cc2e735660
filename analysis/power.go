package analysis

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// PowerConfig sets up the power report. Zero values take the defaults in
// brackets.
type PowerConfig struct {
	Seed       int64
	Rollouts   int // simulated rollouts per regression scenario [200]
	AARollouts int // simulated rollouts per A/A scenario [3000]
	Workers    int // goroutines [2]
	// Alpha is the gate's alpha [0.01]; the judge gives each of its 7
	// default checks Alpha/7.
	Alpha float64
	// Fixed is the number of simulated tests per sample size when sizing
	// the fixed-horizon tests for 80% power [400].
	Fixed int
}

func (c PowerConfig) withDefaults() PowerConfig {
	if c.Rollouts == 0 {
		c.Rollouts = 200
	}
	if c.AARollouts == 0 {
		c.AARollouts = 3000
	}
	if c.Workers == 0 {
		c.Workers = 2
	}
	if c.Alpha == 0 {
		c.Alpha = DefaultAlpha
	}
	if c.Fixed == 0 {
		c.Fixed = 400
	}
	return c
}

// AARow is how often identical versions were failed in one scenario.
type AARow struct {
	Scenario string
	Rollouts int
	Failed   int            // rollouts failed by any check within the deadline
	ByCheck  map[string]int // rollouts failed by each check (at the first fail)
	Passed   int            // rollouts that passed (before the deadline)
}

// PowerRow is a regression: how many candidate requests the judge needs to
// fail it, against the fixed-horizon test sized for 80% power.
type PowerRow struct {
	Scenario        string
	Rollouts        int
	Detected        int // failed within the deadline
	PassedFirst     int // passed before any fail
	MedianCandidate int // candidate requests to the fail (-1: fewer than half failed)
	P90Candidate    int
	FixedTest       string
	FixedN          int // candidate requests of the fixed-horizon test with 80% power
}

// OutcomeRow is the share of rollouts ending each way in one scenario.
type OutcomeRow struct {
	Scenario     string
	Rollouts     int
	Failed       int
	Passed       int
	Inconclusive int
	MedianPass   time.Duration // median time to a pass (-1 when fewer than half passed)
	P90Pass      time.Duration
	Deadline     time.Duration
}

// PowerReport is the outcome of Power.
type PowerReport struct {
	Config   PowerConfig
	AlphaK   float64
	AA       []AARow
	Power    []PowerRow
	Outcomes []OutcomeRow
	Repeated []RepeatedRow
}

// RepeatedRow is the false-fail rate of a fixed-horizon test repeated at
// every look on identical versions.
type RepeatedRow struct {
	Test      string
	Looks     int
	Rollouts  int
	FalseFail float64
}

// AAScenarios are the A/A workloads of the validity suite: heavy tails,
// bimodal lengths, latency independent of length, shared drift, error
// bursts, shares from 1% to 90%, 1 to 100 requests a second, and
// bucket-only data at 10, 30 and 60 s grains.
func AAScenarios() []Traffic {
	const m30 = 30 * time.Minute
	nonStreamed := func(sigma float64) Traffic {
		return Traffic{LatMedian: 1.5, LatSigma: sigma, Bimodal: true, ErrRate: 0.01, Duration: m30, Interval: 30 * time.Second}
	}
	streamed := func(sigma float64) Traffic {
		return Traffic{Streamed: true, TTFTMedian: 0.4, TTFTSigma: sigma, Bimodal: true, ErrRate: 0.01, Duration: m30, Interval: 30 * time.Second}
	}
	var out []Traffic
	add := func(name string, t Traffic, rate, share float64) {
		t.Name, t.Rate, t.Share = name, rate, share
		out = append(out, t)
	}
	t := nonStreamed(1.2)
	add("latency log-sd 1.2 independent of length, bimodal lengths; 10 req/s, 10%", t, 10, 0.1)
	t = nonStreamed(0.5)
	t.Bursts = true
	add("latency log-sd 0.5, error bursts; 10 req/s, 50%", t, 10, 0.5)
	t = streamed(0.8)
	t.Drift, t.Bursts = 0.3, true
	add("streamed, TTFT log-sd 0.8, drift +30%, error bursts; 10 req/s, 10%", t, 10, 0.1)
	t = nonStreamed(1.0)
	t.Drift, t.Duration = 0.3, 15*time.Minute
	add("latency log-sd 1.0, drift +30%; 100 req/s, 1% (15 min)", t, 100, 0.01)
	t = streamed(0.5)
	t.Bursts = true
	add("streamed, TTFT log-sd 0.5, error bursts; 1 req/s, 90%", t, 1, 0.9)
	t = nonStreamed(1.2)
	t.Duration = 10 * time.Minute
	add("latency log-sd 1.2; 100 req/s, 90% (10 min)", t, 100, 0.9)
	t = nonStreamed(1.2)
	add("latency log-sd 1.2; 1 req/s, 50%", t, 1, 0.5)
	t = nonStreamed(1.2)
	t.Grain = 10 * time.Second
	add("buckets of 10 s: latency log-sd 1.2, bimodal; 10 req/s, 10%", t, 10, 0.1)
	t = streamed(0.8)
	t.Grain, t.Drift = 30*time.Second, 0.3
	add("buckets of 30 s: streamed, drift +30%; 30 req/s, 50%", t, 30, 0.5)
	t = nonStreamed(1.2)
	t.Grain, t.Bursts, t.Interval = time.Minute, true, time.Minute
	add("buckets of 60 s: latency log-sd 1.2, error bursts; 1 req/s, 90%", t, 1, 0.9)
	return out
}

// parallel runs f(0..n-1) on workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	for w := range max(workers, 1) {
		wg.Go(func() {
			for i := w; i < n; i += max(workers, 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

// RunAA simulates rollouts of identical versions in one scenario, looking
// every interval up to the deadline (a pass does not stop it), and counts
// the fails.
func RunAA(tr Traffic, cfg Config, rollouts int, seed uint64, workers int) AARow {
	outs := make([]Outcome, rollouts)
	parallel(rollouts, workers, func(i int) {
		outs[i] = tr.Rollout(cfg, Effect{}, seed+uint64(i), true)
	})
	row := AARow{Scenario: tr.Name, Rollouts: rollouts, ByCheck: map[string]int{}}
	for _, o := range outs {
		if o.Failed {
			row.Failed++
			for _, c := range o.FailChecks {
				row.ByCheck[c]++
			}
		}
		if o.Verdict == Pass {
			row.Passed++
		}
	}
	return row
}

// RunOutcomes simulates rollouts that stop at the first pass or fail.
func RunOutcomes(name string, tr Traffic, cfg Config, eff Effect, rollouts int, seed uint64, workers int) OutcomeRow {
	outs := make([]Outcome, rollouts)
	parallel(rollouts, workers, func(i int) {
		outs[i] = tr.Rollout(cfg, eff, seed+uint64(i), false)
	})
	row := OutcomeRow{Scenario: name, Rollouts: rollouts, Deadline: tr.Duration}
	var pass []int
	for _, o := range outs {
		switch o.Verdict {
		case Fail:
			row.Failed++
		case Pass:
			row.Passed++
			pass = append(pass, int(o.At))
		default:
			row.Inconclusive++
		}
	}
	row.MedianPass, row.P90Pass = time.Duration(rank(pass, rollouts, 0.5)), time.Duration(rank(pass, rollouts, 0.9))
	return row
}

// RunPower simulates rollouts with a regression and measures the candidate
// requests to the first fail (the rollout runs on after a pass).
func RunPower(name string, tr Traffic, cfg Config, eff Effect, rollouts int, seed uint64, workers int) PowerRow {
	outs := make([]Outcome, rollouts)
	parallel(rollouts, workers, func(i int) {
		outs[i] = tr.Rollout(cfg, eff, seed+uint64(i), true)
	})
	row := PowerRow{Scenario: name, Rollouts: rollouts}
	var ns []int
	for _, o := range outs {
		if o.Failed {
			row.Detected++
			ns = append(ns, o.FailCandidate)
		}
		if o.Verdict == Pass {
			row.PassedFirst++
		}
	}
	row.MedianCandidate, row.P90Candidate = rank(ns, rollouts, 0.5), rank(ns, rollouts, 0.9)
	return row
}

func rank(x []int, n int, q float64) int {
	k := int(math.Ceil(q*float64(n))) - 1
	if k >= len(x) || k < 0 {
		return -1
	}
	sort.Ints(x)
	return x[k]
}

// fixedN finds by bisection the smallest candidate sample size (a multiple
// of 10) at which test(n, rng) rejects in at least 80% of reps runs.
func fixedN(reps int, seed uint64, test func(n int, rng *rand.Rand) bool) int {
	power := func(n int) float64 {
		rng := rand.New(rand.NewPCG(seed, uint64(n)))
		k := 0
		for range reps {
			if test(n, rng) {
				k++
			}
		}
		return float64(k) / float64(reps)
	}
	lo, hi := 10, 20
	for power(hi) < 0.8 {
		lo, hi = hi, hi*2
		if hi > 1<<22 {
			return -1
		}
	}
	for hi-lo > 10 {
		mid := (lo + hi) / 2 / 10 * 10
		if mid <= lo {
			mid = lo + 10
		}
		if power(mid) >= 0.8 {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// FixedMannWhitneyN is the candidate sample size at which a one-sided
// Mann-Whitney test at level a of "the candidate, less the default margins,
// is no slower than production" rejects in 80% of simulated tests (reps
// per size), with all of production's requests of the same period (n (1 -
// share) / share); draw returns one value of either side.
func FixedMannWhitneyN(a, share float64, draw func(rng *rand.Rand, cand bool) float64, reps int, seed uint64) int {
	return fixedN(reps, seed, fixedMW(a, share, DefaultRelMargin, DefaultAbsMargin.Seconds(), draw))
}

// FixedProportionsN is the same for a one-sided two-proportion test at level
// a of "the candidate's error rate is at most DefaultErrorMargin times
// production's", when they are pc and pb.
func FixedProportionsN(a, share, pc, pb float64, reps int, seed uint64) int {
	return fixedN(reps, seed, fixedProportions(a, share, DefaultErrorMargin, pc, pb))
}

// fixedMW is the one-sided Mann-Whitney test, at level a, of "the
// candidate's values less the margins are no larger than production's",
// with n candidate and n(1-share)/share production values drawn by draw.
func fixedMW(a, share, rel, abs float64, draw func(rng *rand.Rand, cand bool) float64) func(int, *rand.Rand) bool {
	z := normalQuantile(1 - a)
	return func(n int, rng *rand.Rand) bool {
		m := int(math.Round(float64(n) * (1 - share) / share))
		c := make([]float64, n)
		b := make([]float64, m)
		for i := range c {
			c[i] = (draw(rng, true) - abs) / (1 + rel)
		}
		for i := range b {
			b[i] = draw(rng, false)
		}
		return mannWhitneyZ(c, b) > z
	}
}

// fixedProportions is the one-sided two-proportion (Wald) test, at level
// a, of "the candidate's error rate is at most r0 times production's".
func fixedProportions(a, share, r0, pc, pb float64) func(int, *rand.Rand) bool {
	z := normalQuantile(1 - a)
	return func(n int, rng *rand.Rand) bool {
		m := int(math.Round(float64(n) * (1 - share) / share))
		xc, xb := binomial(rng, n, pc), binomial(rng, m, pb)
		p1, p2 := float64(xc)/float64(n), float64(xb)/float64(m)
		se := math.Sqrt(p1*(1-p1)/float64(n) + r0*r0*p2*(1-p2)/float64(m))
		if se == 0 {
			return false
		}
		return (p1-r0*p2)/se > z
	}
}

func binomial(rng *rand.Rand, n int, p float64) int {
	if float64(n)*p > 30 {
		return max(0, int(math.Round(float64(n)*p+math.Sqrt(float64(n)*p*(1-p))*rng.NormFloat64())))
	}
	k := 0
	for range n {
		if rng.Float64() < p {
			k++
		}
	}
	return k
}

// mannWhitneyZ is the normal approximation of the Mann-Whitney U statistic
// of "candidate values larger" (continuous data: no tie correction).
func mannWhitneyZ(c, b []float64) float64 {
	n1, n2 := len(c), len(b)
	if n1 == 0 || n2 == 0 {
		return 0
	}
	type obs struct {
		v    float64
		cand bool
	}
	all := make([]obs, 0, n1+n2)
	for _, v := range c {
		all = append(all, obs{v, true})
	}
	for _, v := range b {
		all = append(all, obs{v, false})
	}
	sort.Slice(all, func(i, k int) bool { return all[i].v < all[k].v })
	var r float64
	for i, o := range all {
		if o.cand {
			r += float64(i + 1)
		}
	}
	u := r - float64(n1)*float64(n1+1)/2
	mu := float64(n1) * float64(n2) / 2
	sd := math.Sqrt(float64(n1) * float64(n2) * float64(n1+n2+1) / 12)
	return (u - mu) / sd
}

// twoProportionZ is the pooled z statistic of "candidate error rate >
// production's".
func twoProportionZ(x1, n1, x2, n2 int) float64 {
	if n1 == 0 || n2 == 0 {
		return 0
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	p := float64(x1+x2) / float64(n1+n2)
	se := math.Sqrt(p * (1 - p) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 0
	}
	return (p1 - p2) / se
}

// normalQuantile inverts the standard normal CDF by bisection.
func normalQuantile(p float64) float64 {
	lo, hi := -10.0, 10.0
	for range 100 {
		m := (lo + hi) / 2
		if 0.5*math.Erfc(-m/math.Sqrt2) < p {
			lo = m
		} else {
			hi = m
		}
	}
	return (lo + hi) / 2
}

// repeated simulates identical versions looked at every minute by a
// fixed-horizon test at level a on all data so far, and returns the share
// of rollouts that ever reject.
func repeated(kind string, a float64, looks, rollouts int, seed uint64) float64 {
	z := normalQuantile(1 - a)
	fails := 0
	for r := range rollouts {
		rng := rand.New(rand.NewPCG(seed, uint64(r)))
		var c, b []float64
		var xc, nc, xb, nb int
		for range looks {
			for range 600 { // 10 req/s, 10% share, one look a minute
				cand := rng.Float64() < 0.1
				if kind == "errors" {
					e := rng.Float64() < 0.01
					if cand {
						nc++
						if e {
							xc++
						}
					} else {
						nb++
						if e {
							xb++
						}
					}
					continue
				}
				v := 0.4 * math.Exp(0.5*rng.NormFloat64())
				if cand {
					c = append(c, v)
				} else if len(b) < len(c) {
					b = append(b, v)
				}
			}
			var s float64
			if kind == "errors" {
				s = twoProportionZ(xc, nc, xb, nb)
			} else {
				s = mannWhitneyZ(c, b)
			}
			if s > z {
				fails++
				break
			}
		}
	}
	return float64(fails) / float64(rollouts)
}

// Power runs the whole report: the A/A suite, the power against
// fixed-horizon tests, the errors margin, the p99 regression and the time to
// pass an identical version.
func Power(cfg PowerConfig) PowerReport {
	cfg = cfg.withDefaults()
	jcfg := Config{Alpha: cfg.Alpha}
	probe, _ := NewJudge(jcfg)
	rep := PowerReport{Config: cfg, AlphaK: probe.alphaK}
	seed := uint64(cfg.Seed) << 32
	next := func() uint64 { seed += 1 << 20; return seed }
	for _, tr := range AAScenarios() {
		rep.AA = append(rep.AA, RunAA(tr, jcfg, cfg.AARollouts, next(), cfg.Workers))
	}

	aK := rep.AlphaK
	ttft := Traffic{Rate: 10, Share: 0.1, Streamed: true, TTFTMedian: 0.4, TTFTSigma: 0.5, Bimodal: true, ErrRate: 0.001,
		Duration: 3 * time.Hour, Interval: 30 * time.Second}
	row := RunPower("TTFT +25% (streamed, TTFT log-sd 0.5)", ttft, jcfg, Effect{TTFTMul: 1.25}, cfg.Rollouts, next(), cfg.Workers)
	row.FixedTest = "Mann-Whitney on TTFT less the margins"
	row.FixedN = FixedMannWhitneyN(aK, 0.1, func(rng *rand.Rand, cand bool) float64 {
		v := 0.4 * math.Exp(0.5*rng.NormFloat64())
		if cand {
			v *= 1.25
		}
		return v
	}, cfg.Fixed, next())
	rep.Power = append(rep.Power, row)

	lat := Traffic{Rate: 10, Share: 0.1, LatMedian: 1.5, LatSigma: 0.5, Bimodal: true, ErrRate: 0.001,
		Duration: 3 * time.Hour, Interval: 30 * time.Second}
	row = RunPower("latency +20% (not streamed, log-sd 0.5)", lat, jcfg, Effect{LatMul: 1.2}, cfg.Rollouts, next(), cfg.Workers)
	row.FixedTest = "Mann-Whitney on latency less the margins"
	row.FixedN = FixedMannWhitneyN(aK, 0.1, func(rng *rand.Rand, cand bool) float64 {
		v := 1.5 * math.Exp(0.5*rng.NormFloat64())
		if cand {
			v *= 1.2
		}
		return v
	}, cfg.Fixed, next())
	rep.Power = append(rep.Power, row)

	errs := ttft
	errs.ErrRate = 0.01
	row = RunPower("errors 1% -> 3%", errs, jcfg, Effect{ErrMul: 3}, cfg.Rollouts, next(), cfg.Workers)
	row.FixedTest = fmt.Sprintf("two-proportion z-test of ratio <= %g", DefaultErrorMargin)
	row.FixedN = FixedProportionsN(aK, 0.1, 0.03, 0.01, cfg.Fixed, next())
	rep.Power = append(rep.Power, row)

	e50 := Traffic{Rate: 50, Share: 0.1, Streamed: true, TTFTMedian: 0.4, TTFTSigma: 0.5, Bimodal: true, ErrRate: 0.005,
		Duration: time.Hour, Interval: 30 * time.Second}
	rep.Outcomes = append(rep.Outcomes, RunOutcomes("errors 0.5% -> 1%; 50 req/s, 10%", e50, jcfg, Effect{ErrMul: 2}, cfg.Rollouts, next(), cfg.Workers))
	e50.ErrRate = 0.01
	rep.Outcomes = append(rep.Outcomes, RunOutcomes("errors 1% -> 1.05%; 50 req/s, 10%", e50, jcfg, Effect{ErrMul: 1.05}, cfg.Rollouts, next(), cfg.Workers))
	p99 := Traffic{Rate: 10, Share: 0.1, LatMedian: 0.8, LatSigma: 0.5, Bimodal: true, ErrRate: 0.001,
		Duration: 30 * time.Minute, Interval: 30 * time.Second}
	rep.Outcomes = append(rep.Outcomes, RunOutcomes("p99 +70%, p50 and p95 unchanged; 10 req/s, 10%", p99, jcfg, Effect{P99Mul: 1.7}, cfg.Rollouts, next(), cfg.Workers))
	for _, er := range []float64{0.001, 0.01} {
		for _, rate := range []float64{1, 10, 100} {
			id := Traffic{Rate: rate, Share: 0.1, Streamed: true, TTFTMedian: 0.4, TTFTSigma: 0.8, Bimodal: true, ErrRate: er,
				Duration: 30 * time.Minute, Interval: 30 * time.Second}
			n := cfg.Rollouts
			rep.Outcomes = append(rep.Outcomes, RunOutcomes(fmt.Sprintf("identical, %g%% errors; %g req/s, 10%%", 100*er, rate), id, jcfg, Effect{}, n, next(), cfg.Workers))
		}
	}
	for _, kind := range []string{"errors", "ttft"} {
		for _, a := range []float64{cfg.Alpha, cfg.Alpha / 30} {
			name := "two-proportion z-test"
			if kind == "ttft" {
				name = "Mann-Whitney (equal-sized samples)"
			}
			rep.Repeated = append(rep.Repeated, RepeatedRow{Test: fmt.Sprintf("%s at %.2g", name, a), Looks: 30, Rollouts: 500,
				FalseFail: repeated(kind, a, 30, 500, next())})
		}
	}
	return rep
}

// WriteMarkdown renders the report.
func (r PowerReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	c := r.Config
	k := int(math.Round(c.Alpha / r.AlphaK))
	fmt.Fprintf(&b, "The judge runs with its defaults: alpha %g split over %d checks (alpha' = %.4g each), pass risk %g per check, margins %g%% + %v for latency and TTFT (%g%% for tokens/s), errors fail above %gx production's rate and pass below %gx (or below a %g%% floor), latency/TTFT pass below %g, MinSamples %d. Seed %d.\n\n",
		c.Alpha, k, r.AlphaK, DefaultPassRisk, 100*DefaultRelMargin, DefaultAbsMargin, 100*DefaultRelMargin, DefaultErrorMargin, DefaultMaxErrorRatio, 100*DefaultMaxErrorRate, DefaultMaxSlowerProb, DefaultMinSamples, c.Seed)

	bound := func(n int, a float64) float64 { return a + 3*math.Sqrt(a*(1-a)/float64(n)) }
	fmt.Fprintf(&b, "## Identical versions (A/A): false fails\n\n")
	fmt.Fprintf(&b, "Each row: %d simulated rollouts, a look every 30 s (60 s for 60 s buckets) up to the deadline (30 min unless noted), looking on after a pass. A fail of any check counts. Bounds: alpha + 3 standard errors for the gate (%.4f), alpha' + 3 standard errors for one check (%.4f).\n\n",
		c.AARollouts, bound(c.AARollouts, c.Alpha), bound(c.AARollouts, r.AlphaK))
	b.WriteString("| scenario | rollouts | failed (any check) | rate | by check | passed by the deadline |\n|---|---|---|---|---|---|\n")
	for _, a := range r.AA {
		var parts []string
		keys := make([]string, 0, len(a.ByCheck))
		for m := range a.ByCheck {
			keys = append(keys, m)
		}
		slices.Sort(keys)
		for _, m := range keys {
			parts = append(parts, fmt.Sprintf("%s %d", m, a.ByCheck[m]))
		}
		by := strings.Join(parts, ", ")
		if by == "" {
			by = "none"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %.2f%% | %s | %.0f%% |\n", a.Scenario, a.Rollouts, a.Failed, 100*float64(a.Failed)/float64(a.Rollouts), by, 100*float64(a.Passed)/float64(a.Rollouts))
	}

	fmt.Fprintf(&b, "\n## Power against fixed-horizon tests sized for 80%% power\n\n")
	fmt.Fprintf(&b, "10 req/s, candidate at 10%%, a look every 30 s, each rollout run on after a pass until a fail (deadline 3 h). The fixed-horizon test tests the same hypothesis (same margins) at the check's alpha' = %.4g, one-sided, with all of production's requests of the same period (9 per candidate request); its sample size is found by simulation (%d tests per size).\n\n", r.AlphaK, c.Fixed)
	b.WriteString("| regression | failed | passed first | median candidate req. to fail | p90 | fixed-horizon test | its candidate req. for 80% power | ratio (median / fixed) |\n|---|---|---|---|---|---|---|---|\n")
	cell := func(n int) string {
		if n < 0 {
			return "not reached"
		}
		return fmt.Sprint(n)
	}
	for _, p := range r.Power {
		ratio := "n/a"
		if p.MedianCandidate > 0 && p.FixedN > 0 {
			ratio = fmt.Sprintf("%.2f", float64(p.MedianCandidate)/float64(p.FixedN))
		}
		fmt.Fprintf(&b, "| %s | %d/%d | %d | %s | %s | %s | %s | %s |\n", p.Scenario, p.Detected, p.Rollouts, p.PassedFirst,
			cell(p.MedianCandidate), cell(p.P90Candidate), p.FixedTest, cell(p.FixedN), ratio)
	}

	fmt.Fprintf(&b, "\n## Margins, tails and time to pass\n\n")
	b.WriteString("Rollouts stop at the first pass or fail (a look every 30 s).\n\n")
	b.WriteString("| scenario | rollouts | failed first | passed first | inconclusive at the deadline | median time to pass | p90 time to pass | deadline |\n|---|---|---|---|---|---|---|---|\n")
	dur := func(d time.Duration) string {
		if d < 0 {
			return "not reached"
		}
		return d.Round(time.Second).String()
	}
	pct := func(k, n int) string { return fmt.Sprintf("%.1f%%", 100*float64(k)/float64(n)) }
	for _, o := range r.Outcomes {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %v |\n", o.Scenario, o.Rollouts, pct(o.Failed, o.Rollouts), pct(o.Passed, o.Rollouts),
			pct(o.Inconclusive, o.Rollouts), dur(o.MedianPass), dur(o.P90Pass), o.Deadline)
	}

	b.WriteString("\n## Fixed-horizon tests repeated at every look (why the judge does not do that)\n\n")
	b.WriteString("Identical versions, 10 req/s, candidate at 10%, the test on all data so far at every look (one a minute). A test sized for one look fails far more often than its level when looked at repeatedly.\n\n")
	b.WriteString("| test | looks | rollouts | rollouts that ever failed |\n|---|---|---|---|\n")
	for _, x := range r.Repeated {
		fmt.Fprintf(&b, "| %s | %d | %d | %.1f%% |\n", x.Test, x.Looks, x.Rollouts, 100*x.FalseFail)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WritePowerReport runs Power and writes docs/POWER.md.
func WritePowerReport(w io.Writer, cfg PowerConfig) error {
	rep := Power(cfg)
	head := "# Power of the rollout judge\n\n" +
		"Generated by `go run ./analysis/cmd/powerreport > docs/POWER.md` (package analysis, `WritePowerReport`; the traffic models are `analysis.Traffic`, the A/A workloads `analysis.AAScenarios`). Do not edit by hand.\n\n" +
		"What it shows: identical versions are failed no more often than alpha allows in any workload, each check within its share (the A/A table); regressions are failed with about as many candidate requests as a single fixed-horizon test of the same hypothesis sized for 80% power needs, although the judge looks every 30 s (the power table); the margins let a candidate within them pass and fail one beyond them, a p99-only slowdown fails, and an identical version passes in minutes (the outcomes table); a fixed-horizon test looked at repeatedly fails identical versions far more often than its level (the last table). The method is in docs/ANALYSIS.md.\n\n"
	if _, err := io.WriteString(w, head); err != nil {
		return err
	}
	return rep.WriteMarkdown(w)
}
