package loadgen

import (
	"math"
	"math/rand/v2"
	"time"
)

// arrivals yields the offsets, from the start of the test, at which
// open-loop requests are scheduled.
type arrivals struct {
	rate  float64
	shape float64 // gamma shape; 0 means evenly spaced arrivals
	rnd   *rand.Rand
	n     int
	at    float64 // seconds
}

func (a *arrivals) next() time.Duration {
	if a.shape == 0 {
		at := float64(a.n) / a.rate
		a.n++
		return time.Duration(at * float64(time.Second))
	}
	// The first request goes at once, as in vLLM's benchmark.
	if a.n > 0 {
		a.at += gamma(a.rnd, a.shape) / (a.shape * a.rate)
	}
	a.n++
	return time.Duration(a.at * float64(time.Second))
}

// gamma draws from Gamma(shape, 1) with Marsaglia and Tsang's method.
func gamma(r *rand.Rand, shape float64) float64 {
	if shape < 1 {
		// Gamma(a) = Gamma(a+1) * U^(1/a).
		return gamma(r, shape+1) * math.Pow(r.Float64(), 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}
