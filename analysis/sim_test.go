package analysis_test

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/modelslot/modelslot"
)

// slotModel describes how one slot behaves in the simulations.
type slotModel struct {
	errRate    float64
	ttftMedian time.Duration
	ttftSigma  float64
	tps        float64 // mean tokens per second; 0: latency-only samples
	latMedian  time.Duration
	latSigma   float64 // for latency-only samples
	maxTokens  int     // cuts every answer at this many tokens (0: no cut)
	outScale   float64 // multiplies the answers' lengths (0: 1)
}

var prod = slotModel{errRate: 0.01, ttftMedian: 400 * time.Millisecond, ttftSigma: 0.5, tps: 50}

func (m slotModel) sample(rng *rand.Rand, t time.Time) modelslot.Sample {
	s := modelslot.Sample{Time: t, Status: 200}
	if rng.Float64() < m.errRate {
		s.Status = 500
	}
	if m.tps == 0 {
		s.Latency = time.Duration(float64(m.latMedian) * math.Exp(m.latSigma*rng.NormFloat64()))
		return s
	}
	s.TTFT = time.Duration(float64(m.ttftMedian) * math.Exp(m.ttftSigma*rng.NormFloat64()))
	s.OutputTokens = 50 + rng.IntN(200)
	if m.outScale > 0 {
		s.OutputTokens = int(float64(s.OutputTokens) * m.outScale)
	}
	if m.maxTokens > 0 {
		s.OutputTokens = min(s.OutputTokens, m.maxTokens)
	}
	tps := max(m.tps*(1+0.2*rng.NormFloat64()), 1)
	s.Latency = s.TTFT + time.Duration(float64(s.OutputTokens-1)/tps*float64(time.Second))
	return s
}

// window simulates n requests over [start, start+d), each sent to the
// candidate with probability share.
func window(rng *rand.Rand, start time.Time, d time.Duration, n int, share float64, cand, base slotModel) (c, b modelslot.Series) {
	c = modelslot.Series{Slot: "staging", Complete: true}
	b = modelslot.Series{Slot: "production", Complete: true}
	for range n {
		t := start.Add(time.Duration(rng.Int64N(int64(d))))
		if rng.Float64() < share {
			c.Samples = append(c.Samples, cand.sample(rng, t))
		} else {
			b.Samples = append(b.Samples, base.sample(rng, t))
		}
	}
	return c, b
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
