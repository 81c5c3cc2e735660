package analysis

import "math"

// Testing by betting on a mean of scores in [0, 1] (Waudby-Smith & Ramdas,
// "Estimating means of bounded random variables by betting", JRSS-B 2024).
// For a candidate mean m, a gambler who stakes a fraction lambda_i, chosen
// before X_i is seen, on "the mean is above m" holds the capital
//
//	K_n(m) = prod_i (1 + lambda_i (X_i - m)),   0 <= lambda_i < 1/m,
//
// which is a nonnegative supermartingale with mean at most 1 when the
// scores' conditional means are at most m: by Ville's inequality it ever
// reaches 1/alpha with probability at most alpha. The mirror bet (1 +
// lambda_i (m - X_i)) tests "the mean is below m". This is exact at every n:
// no variance is plugged into a normal approximation; a poor estimate of
// the variance only costs power. The sets {m : neither capital ever reached
// 1/alpha} form the confidence sequence.
//
// The stakes follow GRAPA (the growth-rate adaptive plug-in of the paper):
// lambda = (mu - m) / (s^2 + (mu - m)^2), mu and s^2 estimated from the
// scores before X_i, with a prior worth betPrior scores of the null's
// uniform (mean 1/2, variance 1/12), and capped at betCap/m.
const (
	betGrid  = 100 // m = k / betGrid, k = 0..betGrid
	betPrior = 10.0
	betCap   = 0.8
)

// betState is the capital of every grid m on both sides. A capital that has
// reached the limit is frozen: the sequence keeps the running intersection,
// which is as valid as the sets themselves and never widens again.
type betState struct {
	N    int       `json:"n"`
	Mean float64   `json:"mean"` // of the scores so far
	M2   float64   `json:"m2"`
	Up   []float64 `json:"up"`   // log K_n(m) against "mean <= m"
	Down []float64 `json:"down"` // log K_n(m) against "mean >= m"
	// Limit and DownLimit are log(1/alpha) of the two sides: the fail side
	// (Up) at the check's alpha, the pass side (Down) at the pass risk.
	Limit     float64 `json:"limit"`
	DownLimit float64 `json:"downLimit"`
}

func newBetState(alpha, passRisk float64) betState {
	return betState{Up: make([]float64, betGrid+1), Down: make([]float64, betGrid+1), Limit: -math.Log(alpha), DownLimit: -math.Log(passRisk)}
}

func (b *betState) valid() bool { return len(b.Up) == betGrid+1 && len(b.Down) == betGrid+1 }

// add bets on x, a score in [0, 1].
func (b *betState) add(x float64) {
	x = min(max(x, 0), 1)
	// Predictable estimates, shrunk to the null's uniform.
	n := float64(b.N)
	mu := (betPrior*0.5 + n*b.Mean) / (betPrior + n)
	s2 := (betPrior/12 + b.M2) / (betPrior + n)
	for k := 1; k < betGrid; k++ {
		m := float64(k) / betGrid
		if b.Up[k] < b.Limit {
			if d := mu - m; d > 0 {
				l := min(d/(s2+d*d), betCap/m)
				b.Up[k] += math.Log1p(l * (x - m))
			}
		}
		if b.Down[k] < b.DownLimit {
			if d := m - mu; d > 0 {
				l := min(d/(s2+d*d), betCap/(1-m))
				b.Down[k] += math.Log1p(l * (m - x))
			}
		}
	}
	b.N++
	dd := x - b.Mean
	b.Mean += dd / float64(b.N)
	b.M2 += dd * (x - b.Mean)
}

// above reports whether the mean is surely above m (the up capital at the
// largest grid point <= m reached the limit), with that capital as an
// e-value.
func (b *betState) above(m float64) (bool, float64) {
	k := int(math.Floor(m*betGrid + 1e-9))
	k = min(max(k, 1), betGrid-1)
	return b.Up[k] >= b.Limit, expClamp(b.Up[k])
}

// below reports whether the mean is surely below m (the down capital at the
// largest grid point <= m reached the limit), with that capital.
func (b *betState) below(m float64) (bool, float64) {
	k := int(math.Floor(m*betGrid + 1e-9))
	k = min(max(k, 1), betGrid-1)
	return b.Down[k] >= b.DownLimit, expClamp(b.Down[k])
}

// cs returns the confidence sequence's bounds on the grid: the lower at the
// fail side's level, the upper at the pass side's.
func (b *betState) cs() (lo, hi float64) {
	lo, hi = 0, 1
	for k := 1; k < betGrid; k++ {
		if b.Up[k] >= b.Limit {
			lo = float64(k) / betGrid
		}
	}
	for k := betGrid - 1; k >= 1; k-- {
		if b.Down[k] >= b.DownLimit {
			hi = float64(k) / betGrid
		}
	}
	if hi < lo { // cannot happen unless alpha is large; keep it ordered
		lo, hi = hi, lo
	}
	return lo, hi
}
