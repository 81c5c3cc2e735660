package analysis

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
)

// PowerConfig sets up the power simulation. Zero values take the defaults
// in brackets.
type PowerConfig struct {
	Seed            int64
	Rollouts        int     // simulated rollouts per scenario and method [200]
	AARollouts      int     // rollouts of the A/A comparison [500]
	RequestsPerLook int     // total requests between looks (one look a minute) [1000]
	MaxLooks        int     // looks before a rollout gives up [120]
	AALooks         int     // looks of the A/A comparison [20]
	Alpha           float64 // the gate's alpha [0.01]; the judge gives each of its default checks Alpha/len(allMetrics)
}

func (c PowerConfig) withDefaults() PowerConfig {
	if c.Rollouts == 0 {
		c.Rollouts = 200
	}
	if c.AARollouts == 0 {
		c.AARollouts = 500
	}
	if c.RequestsPerLook == 0 {
		c.RequestsPerLook = 1000
	}
	if c.MaxLooks == 0 {
		c.MaxLooks = 120
	}
	if c.AALooks == 0 {
		c.AALooks = 20
	}
	if c.Alpha == 0 {
		c.Alpha = DefaultAlpha
	}
	return c
}

// PowerRow is the time to a fail verdict of one method on one regression.
type PowerRow struct {
	Scenario string  // "errors 1% -> 3%", "TTFT p50 +25%"
	Share    float64 // candidate's share of traffic
	Method   string
	Rollouts int
	Detected int // rollouts that failed within MaxLooks
	// Candidate requests (and total requests) until the fail verdict; -1
	// when fewer than half (a tenth) of the rollouts failed.
	MedianCandidate, P90Candidate int
	MedianTotal, P90Total         int
}

// AARow is the false-fail rate of one method on identical versions.
type AARow struct {
	Scenario  string
	Method    string
	Looks     int
	Rollouts  int
	FalseFail float64 // fraction of rollouts that ever failed
}

// PowerReport is the outcome of Power.
type PowerReport struct {
	Config PowerConfig
	Rows   []PowerRow
	AA     []AARow
}

// Simulated slots: 1% errors; TTFT lognormal with median 400 ms and log-sd 0.5.
const (
	simBaseErr    = 0.01
	simTTFTMedian = 0.4
	simTTFTSigma  = 0.5
	simBucket     = 10 * time.Second
)

type method int

const (
	methodJudge  method = iota // this package, Alpha/k per check, k the default checks
	methodJudge1               // this package with a single check at Alpha
	methodNaive                // fixed-window test at Alpha, repeated at every look
	methodBonf                 // fixed-window test at Alpha/MaxLooks at every look
)

func (m method) name(kind string, looks int) string {
	test := "two-proportion z-test"
	if kind == "ttft" {
		test = "Mann-Whitney"
	}
	switch m {
	case methodJudge:
		return fmt.Sprintf("this judge (e-process, alpha/%d per check)", len(allMetrics))
	case methodJudge1:
		return "this judge, this check only (alpha)"
	case methodNaive:
		return fmt.Sprintf("%s at alpha every look", test)
	default:
		return fmt.Sprintf("%s at alpha/%d every look (Bonferroni)", test, looks)
	}
}

// Power simulates rollouts with a regression (errors 1% -> 3%; TTFT median
// +25%) at 5% and 10% of traffic and counts the requests until a fail
// verdict for this judge and for fixed-window tests looked at every minute;
// it also runs identical versions to show the false-fail rate of each method.
func Power(cfg PowerConfig) PowerReport {
	cfg = cfg.withDefaults()
	rep := PowerReport{Config: cfg}
	seed := uint64(cfg.Seed)
	for _, kind := range []string{"errors", "ttft"} {
		for _, share := range []float64{0.05, 0.10} {
			for _, m := range []method{methodJudge, methodJudge1, methodNaive, methodBonf} {
				row := PowerRow{Share: share, Method: m.name(kind, cfg.MaxLooks), Rollouts: cfg.Rollouts}
				row.Scenario = "errors 1% -> 3%"
				effect := 3.0
				if kind == "ttft" {
					row.Scenario, effect = "TTFT p50 +25%", 1.25
				}
				var cands []int
				for range cfg.Rollouts {
					seed++
					n, ok := simulate(cfg, kind, m, share, effect, cfg.MaxLooks, seed)
					if ok {
						row.Detected++
						cands = append(cands, n)
					}
				}
				row.MedianCandidate, row.P90Candidate = rank(cands, cfg.Rollouts, 0.5), rank(cands, cfg.Rollouts, 0.9)
				row.MedianTotal, row.P90Total = scale(row.MedianCandidate, share), scale(row.P90Candidate, share)
				rep.Rows = append(rep.Rows, row)
			}
		}
	}
	for _, kind := range []string{"errors", "ttft"} {
		for _, m := range []method{methodJudge, methodJudge1, methodNaive, methodBonf} {
			fails := 0
			for range cfg.AARollouts {
				seed++
				looks := cfg.AALooks
				if _, ok := simulate(withBonf(cfg, looks), kind, m, 0.10, 1, looks, seed); ok {
					fails++
				}
			}
			sc := "errors 1% vs 1%"
			if kind == "ttft" {
				sc = "TTFT same distribution"
			}
			rep.AA = append(rep.AA, AARow{Scenario: sc, Method: m.name(kind, cfg.AALooks), Looks: cfg.AALooks,
				Rollouts: cfg.AARollouts, FalseFail: float64(fails) / float64(cfg.AARollouts)})
		}
	}
	return rep
}

// withBonf makes the Bonferroni method divide by the A/A number of looks.
func withBonf(c PowerConfig, looks int) PowerConfig { c.MaxLooks = looks; return c }

func rank(x []int, n int, q float64) int {
	k := int(math.Ceil(q*float64(n))) - 1
	if k >= len(x) {
		return -1
	}
	sort.Ints(x)
	return x[k]
}

func scale(n int, share float64) int {
	if n < 0 {
		return -1
	}
	return int(math.Round(float64(n) / share))
}

// simulate runs one rollout and returns the candidate requests seen at the
// first fail verdict.
func simulate(cfg PowerConfig, kind string, m method, share, effect float64, looks int, seed uint64) (int, bool) {
	rng := rand.New(rand.NewPCG(seed, 0x706f776572))
	jcfg := Config{Alpha: cfg.Alpha / float64(len(allMetrics)), Metrics: []string{kind}}
	if m == methodJudge1 {
		jcfg.Alpha = cfg.Alpha
	}
	j, _ := NewJudge(jcfg)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var candN, candErr, baseN, baseErr int
	var cv, bv []float64 // TTFTs (seconds) for the naive Mann-Whitney
	naiveAlpha := cfg.Alpha
	if m == methodBonf {
		naiveAlpha = cfg.Alpha / float64(cfg.MaxLooks)
	}
	zCrit := normalQuantile(1 - naiveAlpha)
	perBucket := max(1, cfg.RequestsPerLook*int(simBucket)/int(time.Minute))
	for l := range looks {
		from := start.Add(time.Duration(l) * time.Minute)
		var c, b modelslot.Series
		c.Complete, b.Complete = true, true
		if kind == "errors" {
			// Counts per 10 s bucket (the judge bins raw samples the same way).
			for k := range int(time.Minute / simBucket) {
				var cb, bb modelslot.Bucket
				cb.Start, cb.Grain = from.Add(time.Duration(k)*simBucket), simBucket
				bb.Start, bb.Grain = cb.Start, simBucket
				for range perBucket {
					if rng.Float64() < share {
						cb.Requests++
						if rng.Float64() < simBaseErr*effect {
							cb.Errors++
						}
					} else {
						bb.Requests++
						if rng.Float64() < simBaseErr {
							bb.Errors++
						}
					}
				}
				c.Buckets, b.Buckets = append(c.Buckets, cb), append(b.Buckets, bb)
				candN, candErr = candN+int(cb.Requests), candErr+int(cb.Errors)
				baseN, baseErr = baseN+int(bb.Requests), baseErr+int(bb.Errors)
			}
		} else {
			for range cfg.RequestsPerLook {
				t := from.Add(time.Duration(rng.Int64N(int64(time.Minute))))
				v := simTTFTMedian * math.Exp(simTTFTSigma*rng.NormFloat64())
				if rng.Float64() < share {
					v *= effect
					c.Samples = append(c.Samples, modelslot.Sample{Time: t, Status: 200, TTFT: secs(v), Latency: secs(v + 2)})
					cv = append(cv, v)
				} else {
					b.Samples = append(b.Samples, modelslot.Sample{Time: t, Status: 200, TTFT: secs(v), Latency: secs(v + 2)})
					if len(bv) < len(cv)+len(c.Samples) { // an equal-sized baseline, as Kayenta compares
						bv = append(bv, v)
					}
				}
			}
			candN += len(c.Samples)
		}
		switch m {
		case methodJudge, methodJudge1:
			j.Observe(c, b)
			if j.Result().Verdict == Fail {
				return candN, true
			}
		default:
			var z float64
			if kind == "errors" {
				z = twoProportionZ(candErr, candN, baseErr, baseN)
			} else {
				z = mannWhitneyZ(cv, bv[:min(len(bv), len(cv))])
			}
			if z > zCrit {
				return candN, true
			}
		}
	}
	return candN, false
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

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
	u := r - float64(n1*(n1+1))/2
	mu := float64(n1*n2) / 2
	sd := math.Sqrt(float64(n1*n2*(n1+n2+1)) / 12)
	return (u - mu) / sd
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

// WriteMarkdown renders the report.
func (r PowerReport) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "Simulation: %d requests a minute, one look a minute, at most %d looks; production has 1%% errors and a lognormal TTFT (median 400 ms, log-sd 0.5). ", c.RequestsPerLook, c.MaxLooks)
	fmt.Fprintf(&b, "The gate's alpha is %g; the judge runs with the default %d checks, so each gets alpha/%d = %.4g (the rows judge one metric at that level). Seed %d.\n\n", c.Alpha, len(allMetrics), len(allMetrics), c.Alpha/float64(len(allMetrics)), c.Seed)
	fmt.Fprintf(&b, "## Requests until a fail verdict (%d rollouts per row)\n\n", c.Rollouts)
	b.WriteString("| regression | traffic | method | failed | median candidate req. | p90 candidate req. | median total req. | p90 total req. |\n|---|---|---|---|---|---|---|---|\n")
	cell := func(n int) string {
		if n < 0 {
			return "not reached"
		}
		return fmt.Sprint(n)
	}
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "| %s | %g%% | %s | %d/%d | %s | %s | %s | %s |\n", row.Scenario, 100*row.Share, row.Method,
			row.Detected, row.Rollouts, cell(row.MedianCandidate), cell(row.P90Candidate), cell(row.MedianTotal), cell(row.P90Total))
	}
	fmt.Fprintf(&b, "\n## False rollbacks on identical versions (A/A, 10%% traffic, %d looks, %d rollouts)\n\n", c.AALooks, c.AARollouts)
	b.WriteString("| data | method | rollouts that ever failed |\n|---|---|---|\n")
	for _, a := range r.AA {
		fmt.Fprintf(&b, "| %s | %s | %.1f%% |\n", a.Scenario, a.Method, 100*a.FalseFail)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WritePowerReport runs Power with the default settings and writes
// docs/POWER.md.
func WritePowerReport(w io.Writer, seed int64) error {
	rep := Power(PowerConfig{Seed: seed})
	head := "# Power of the rollout judge\n\n" +
		"Generated by `go run ./analysis/cmd/powerreport > docs/POWER.md` (package analysis, `WritePowerReport`). Do not edit by hand.\n\n"
	if _, err := io.WriteString(w, head); err != nil {
		return err
	}
	return rep.WriteMarkdown(w)
}
