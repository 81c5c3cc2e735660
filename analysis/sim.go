package analysis

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/modelslot/modelslot"
)

// Traffic is a simulated workload for the power report and the A/A tests:
// both slots serve the same traffic, the candidate a Share of it, with
// CandEffect applied to the candidate.
type Traffic struct {
	Name  string
	Rate  float64 // requests per second, both slots together
	Share float64 // the candidate's share of requests
	// Streamed: TTFT lognormal (median TTFTMedian, log-sd TTFTSigma), then
	// the answer's tokens at a lognormal rate (median 50 tokens/s, log-sd
	// 0.3), so latency follows answer length. Otherwise latency is lognormal
	// (median LatMedian, log-sd LatSigma) independent of length, TTFT equals
	// latency (a non-streamed answer) and tokens/s is length / latency.
	Streamed   bool
	TTFTMedian float64 // seconds
	TTFTSigma  float64
	LatMedian  float64 // seconds
	LatSigma   float64
	// Bimodal answer lengths: 70% short (about 50 tokens), 30% long (about
	// 500); otherwise uniform 50-250.
	Bimodal bool
	ErrRate float64
	// Bursts: for 20 s in every 5 minutes both slots fail 20 times as often.
	Bursts bool
	// Drift: latency and TTFT of both slots grow by this fraction over the
	// rollout (0.3: +30% by Duration).
	Drift float64
	// Grain > 0: the judge sees buckets of this grain instead of samples.
	Grain    time.Duration
	Duration time.Duration // the rollout's deadline
	Interval time.Duration // time between looks
}

// Effect is what differs in the candidate.
type Effect struct {
	LatMul  float64 // multiplies latency (streamed: TTFT and generation)
	TTFTMul float64 // multiplies TTFT only (streamed)
	ErrMul  float64 // multiplies the error rate
	// P99Mul stretches the latency tail above production's p96 so that the
	// p99 grows by this factor while p50 and p95 stay (non-streamed).
	P99Mul float64
}

// Outcome is one simulated rollout: the first decisive verdict and when,
// and the first fail (which may come after a pass when the rollout was run
// on to measure the time to a fail).
type Outcome struct {
	Verdict       Verdict
	At            time.Duration // time of the verdict (Duration when inconclusive)
	Candidate     int           // candidate requests seen by then
	Failed        bool
	FailCandidate int      // candidate requests at the first fail
	FailChecks    []string // the checks that failed then
}

var simStart = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

func (tr Traffic) sample(rng *rand.Rand, at time.Duration, cand bool, eff Effect) modelslot.Sample {
	s := modelslot.Sample{Time: simStart.Add(at), Status: 200, TokensCounted: true}
	er := tr.ErrRate
	if tr.Bursts && at%(5*time.Minute) < 20*time.Second {
		er *= 20
	}
	if cand && eff.ErrMul > 0 {
		er *= eff.ErrMul
	}
	if rng.Float64() < er {
		s.Status = 500
	}
	drift := 1.0
	if tr.Drift != 0 && tr.Duration > 0 {
		drift += tr.Drift * float64(at) / float64(tr.Duration)
	}
	var tokens int
	if tr.Bimodal {
		if rng.Float64() < 0.7 {
			tokens = 10 + int(rng.ExpFloat64()*40)
		} else {
			tokens = max(1, int(500+120*rng.NormFloat64()))
		}
	} else {
		tokens = 50 + rng.IntN(201)
	}
	s.OutputTokens = tokens
	if tr.Streamed {
		ttft := tr.TTFTMedian * math.Exp(tr.TTFTSigma*rng.NormFloat64()) * drift
		gen := float64(tokens-1) / (50 * math.Exp(0.3*rng.NormFloat64()))
		if cand {
			if eff.TTFTMul > 0 {
				ttft *= eff.TTFTMul
			}
			if eff.LatMul > 0 {
				ttft *= eff.LatMul
				gen *= eff.LatMul
			}
		}
		s.TTFT = secs(ttft)
		s.Latency = secs(ttft + gen)
		return s
	}
	z := rng.NormFloat64()
	lat := tr.LatMedian * math.Exp(tr.LatSigma*z)
	if cand {
		if eff.P99Mul > 1 && z > z96 {
			// x' = q96 (x/q96)^g with g such that q99' = P99Mul q99.
			g := 1 + math.Log(eff.P99Mul)/(tr.LatSigma*(z99-z96))
			lat = tr.LatMedian * math.Exp(tr.LatSigma*(z96+g*(z-z96)))
		}
		if eff.LatMul > 0 {
			lat *= eff.LatMul
		}
	}
	lat *= drift
	s.Latency, s.TTFT = secs(lat), secs(lat)
	return s
}

const (
	z96 = 1.7506860712521692
	z99 = 2.3263478740408408
)

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// Window generates the requests of [from, to) of a rollout's time.
func (tr Traffic) Window(rng *rand.Rand, from, to time.Duration, eff Effect) (c, b modelslot.Series) {
	c.Slot, b.Slot = "candidate", "production"
	c.Complete, b.Complete = true, true
	mean := tr.Rate * (to - from).Seconds()
	n := poisson(rng, mean)
	for range n {
		at := from + time.Duration(rng.Int64N(int64(to-from)))
		if rng.Float64() < tr.Share {
			c.Samples = append(c.Samples, tr.sample(rng, at, true, eff))
		} else {
			b.Samples = append(b.Samples, tr.sample(rng, at, false, eff))
		}
	}
	if tr.Grain > 0 {
		return toBuckets(c, tr.Grain), toBuckets(b, tr.Grain)
	}
	return c, b
}

func poisson(rng *rand.Rand, mean float64) int {
	if mean > 50 {
		return max(0, int(math.Round(mean+math.Sqrt(mean)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// toBuckets aggregates samples as a metrics backend would: counts, and
// means of latency, TTFT and tokens/s over the successful requests.
func toBuckets(s modelslot.Series, grain time.Duration) modelslot.Series {
	out := modelslot.Series{Slot: s.Slot, Complete: s.Complete}
	type acc struct {
		b                  modelslot.Bucket
		lat, ttft, tps, ok float64
	}
	idx := map[int64]*acc{}
	var order []int64
	for _, x := range s.Samples {
		k := floorDiv(x.Time.UnixNano(), int64(grain))
		a := idx[k]
		if a == nil {
			a = &acc{b: modelslot.Bucket{Start: time.Unix(0, k*int64(grain)).UTC(), Grain: grain}}
			idx[k] = a
			order = append(order, k)
		}
		a.b.Requests++
		if x.Failed() {
			a.b.Errors++
			continue
		}
		a.ok++
		a.lat += x.Latency.Seconds()
		a.ttft += x.TTFT.Seconds()
		a.tps += x.TokensPerSecond()
	}
	for _, k := range order {
		a := idx[k]
		if a.ok > 0 {
			a.b.MeanLatency = secs(a.lat / a.ok)
			a.b.MeanTTFT = secs(a.ttft / a.ok)
			a.b.MeanTokensPerSec = a.tps / a.ok
		}
		out.Buckets = append(out.Buckets, a.b)
	}
	return out
}

// Rollout simulates one rollout judged by a Judge with cfg, looking every
// Interval until a pass or a fail or the deadline; with untilFail, a pass
// does not stop it (to measure the time to a fail).
func (tr Traffic) Rollout(cfg Config, eff Effect, seed uint64, untilFail bool) Outcome {
	rng := rand.New(rand.NewPCG(seed, 0x726f6c6c6f7574))
	j, err := NewJudge(cfg)
	if err != nil {
		panic(err)
	}
	iv := tr.Interval
	if iv <= 0 {
		iv = 30 * time.Second
	}
	out := Outcome{Verdict: Inconclusive, At: tr.Duration}
	for at := time.Duration(0); at < tr.Duration; at += iv {
		c, b := tr.Window(rng, at, min(at+iv, tr.Duration), eff)
		j.Observe(c, b)
		r := j.Result()
		switch r.Verdict {
		case Fail:
			out.Failed, out.FailCandidate = true, int(j.st.CandidateRequests)
			for _, ch := range r.Checks {
				if ch.Verdict == Fail {
					out.FailChecks = append(out.FailChecks, ch.Metric)
				}
			}
			if out.Verdict == Inconclusive {
				out.Verdict, out.At, out.Candidate = Fail, at+iv, out.FailCandidate
			}
			return out
		case Pass:
			if out.Verdict == Inconclusive {
				out.Verdict, out.At, out.Candidate = Pass, at+iv, int(j.st.CandidateRequests)
				if !untilFail {
					return out
				}
			}
		}
	}
	passed := out.Verdict == Pass
	if !passed {
		out.Candidate = int(j.st.CandidateRequests)
	}
	return out
}
