package loadgen

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// Comparison is the outcome of Compare: A is the baseline, B the candidate.
type Comparison struct {
	Rounds int `json:"rounds"`
	// A and B hold each target's metrics, the median across rounds.
	A Summary `json:"a"`
	B Summary `json:"b"`
	// Ratio holds B/A per round: median, min and max across rounds.
	Ratio Ratios `json:"ratio_b_over_a"`
	// Reports holds every round's reports, in the order they ran.
	Reports []RoundReports `json:"reports"`
}

// RoundReports holds one round's reports.
type RoundReports struct {
	A *Report `json:"a"`
	B *Report `json:"b"`
}

// Summary is one target's metrics in a comparison (latencies in ms).
type Summary struct {
	URL                string  `json:"url"`
	TTFTP50            float64 `json:"ttft_p50_ms"`
	TTFTP99            float64 `json:"ttft_p99_ms"`
	E2EP50             float64 `json:"e2e_p50_ms"`
	E2EP99             float64 `json:"e2e_p99_ms"`
	OutputTokensPerSec float64 `json:"output_tokens_per_sec"`
	RequestsPerSec     float64 `json:"requests_per_sec"`
	ErrorRate          float64 `json:"error_rate"`
}

// Ratios holds B/A for each compared metric.
type Ratios struct {
	TTFTP50            Spread `json:"ttft_p50"`
	TTFTP99            Spread `json:"ttft_p99"`
	E2EP50             Spread `json:"e2e_p50"`
	E2EP99             Spread `json:"e2e_p99"`
	OutputTokensPerSec Spread `json:"output_tokens_per_sec"`
	ErrorRate          Spread `json:"error_rate"`
}

// Spread is a ratio across rounds. Rounds counts the rounds where it is
// defined: a ratio with A = 0 is left out, except 0/0 which counts as 1.
// With Rounds 0, the other fields are 0.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Rounds int     `json:"rounds"`
}

// Compare runs a and b in interleaved rounds, A B A B ..., each round
// with a share of a's duration and of its request count (b's own
// Duration and Requests are ignored so both get the same share), and
// compares them round by round. rounds defaults to 4.
func Compare(ctx context.Context, a, b Config, rounds int) (*Comparison, error) {
	if rounds == 0 {
		rounds = 4
	}
	if rounds < 0 {
		return nil, invalid("rounds must be positive, got %d", rounds)
	}
	if err := a.Validate(); err != nil {
		return nil, fmt.Errorf("baseline: %w", err)
	}
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("candidate: %w", err)
	}
	if a.Requests > 0 && a.Requests < rounds {
		return nil, invalid("%d requests cannot be shared by %d rounds", a.Requests, rounds)
	}
	if a.Duration == 0 && a.Requests == 0 {
		a.Duration = defaultDuration
	}
	cmp := &Comparison{Rounds: rounds}
	for i := range rounds {
		share := func(c Config) Config {
			c.Duration = a.Duration / time.Duration(rounds)
			c.Requests = 0
			if a.Requests > 0 {
				c.Requests = a.Requests / rounds
				if i < a.Requests%rounds {
					c.Requests++
				}
			}
			c.Seed = a.Seed + int64(i) // the same requests for A and B within a round
			return c
		}
		ra, err := Run(ctx, share(a))
		if err != nil {
			return nil, fmt.Errorf("round %d, baseline %s: %w", i+1, a.URL, err)
		}
		rb, err := Run(ctx, share(b))
		if err != nil {
			return nil, fmt.Errorf("round %d, candidate %s: %w", i+1, b.URL, err)
		}
		cmp.Reports = append(cmp.Reports, RoundReports{A: ra, B: rb})
	}
	cmp.A = summarize(a.URL, cmp.Reports, func(r RoundReports) *Report { return r.A })
	cmp.B = summarize(b.URL, cmp.Reports, func(r RoundReports) *Report { return r.B })
	ratio := func(metric func(*Report) float64) Spread {
		var rs []float64
		for _, r := range cmp.Reports {
			x, y := metric(r.A), metric(r.B)
			switch {
			case x == 0 && y == 0:
				rs = append(rs, 1)
			case x != 0:
				rs = append(rs, y/x)
			}
		}
		return spread(rs)
	}
	cmp.Ratio = Ratios{
		TTFTP50:            ratio(func(r *Report) float64 { return r.TTFT.P50 }),
		TTFTP99:            ratio(func(r *Report) float64 { return r.TTFT.P99 }),
		E2EP50:             ratio(func(r *Report) float64 { return r.E2E.P50 }),
		E2EP99:             ratio(func(r *Report) float64 { return r.E2E.P99 }),
		OutputTokensPerSec: ratio(func(r *Report) float64 { return r.OutputTokensPerSec }),
		ErrorRate:          ratio(func(r *Report) float64 { return r.ErrorRate }),
	}
	return cmp, nil
}

func summarize(url string, rounds []RoundReports, pick func(RoundReports) *Report) Summary {
	med := func(metric func(*Report) float64) float64 {
		var xs []float64
		for _, r := range rounds {
			xs = append(xs, metric(pick(r)))
		}
		return spread(xs).Median
	}
	return Summary{
		URL:                url,
		TTFTP50:            med(func(r *Report) float64 { return r.TTFT.P50 }),
		TTFTP99:            med(func(r *Report) float64 { return r.TTFT.P99 }),
		E2EP50:             med(func(r *Report) float64 { return r.E2E.P50 }),
		E2EP99:             med(func(r *Report) float64 { return r.E2E.P99 }),
		OutputTokensPerSec: med(func(r *Report) float64 { return r.OutputTokensPerSec }),
		RequestsPerSec:     med(func(r *Report) float64 { return r.RequestsPerSec }),
		ErrorRate:          med(func(r *Report) float64 { return r.ErrorRate }),
	}
}

func spread(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Median: m, Min: s[0], Max: s[len(s)-1], Rounds: len(s)}
}

// WriteTable writes the comparison as aligned text for a terminal.
func (c *Comparison) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "A (baseline):\t%s\n", c.A.URL)
	fmt.Fprintf(tw, "B (candidate):\t%s\n", c.B.URL)
	fmt.Fprintf(tw, "Rounds:\t%d, interleaved A B; medians across rounds\n\n", c.Rounds)
	fmt.Fprintln(tw, "Metric\tA\tB\tB/A median\tB/A min..max")
	row := func(name, unit string, a, b float64, s Spread) {
		ratio := "-\t-"
		if s.Rounds > 0 {
			ratio = fmt.Sprintf("%.3f\t%.3f..%.3f", s.Median, s.Min, s.Max)
		}
		fmt.Fprintf(tw, "%s\t%.2f%s\t%.2f%s\t%s\n", name, a, unit, b, unit, ratio)
	}
	row("TTFT p50", "ms", c.A.TTFTP50, c.B.TTFTP50, c.Ratio.TTFTP50)
	row("TTFT p99", "ms", c.A.TTFTP99, c.B.TTFTP99, c.Ratio.TTFTP99)
	row("E2E p50", "ms", c.A.E2EP50, c.B.E2EP50, c.Ratio.E2EP50)
	row("E2E p99", "ms", c.A.E2EP99, c.B.E2EP99, c.Ratio.E2EP99)
	row("Output tokens/s", "", c.A.OutputTokensPerSec, c.B.OutputTokensPerSec, c.Ratio.OutputTokensPerSec)
	row("Error rate", "%", 100*c.A.ErrorRate, 100*c.B.ErrorRate, c.Ratio.ErrorRate)
	return tw.Flush()
}
