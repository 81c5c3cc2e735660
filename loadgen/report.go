package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the outcome of one load test.
type Report struct {
	// Load describes the load shape (see Config.Describe).
	Load string `json:"load"`
	// Requests counts every request the test scheduled:
	// Requests = Succeeded + Failed + Dropped.
	Requests  int `json:"requests"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	// Dropped counts open-loop arrivals not sent because MaxInFlight
	// requests were already open; they count as errors too.
	Dropped int `json:"dropped"`
	// Errors counts failed and dropped requests by class: "http_500",
	// "http_429", "timeout", "connection", "stream_broken",
	// "bad_response", "dropped".
	Errors map[string]int `json:"errors"`
	// ErrorRate is (Failed + Dropped) / Requests.
	ErrorRate float64 `json:"error_rate"`
	// Duration runs from the start of the test to the end of its last
	// request.
	Duration time.Duration `json:"-"`
	// RequestsPerSec is Succeeded / Duration.
	RequestsPerSec float64 `json:"requests_per_sec"`
	// OutputTokens is the sum of the succeeded requests' output tokens.
	OutputTokens       int64   `json:"output_tokens"`
	OutputTokensPerSec float64 `json:"output_tokens_per_sec"`
	// TTFT, ITL, TPOT and E2E are over succeeded requests, in ms.
	TTFT Percentiles `json:"ttft"`
	ITL  Percentiles `json:"itl"`
	TPOT Percentiles `json:"tpot"`
	E2E  Percentiles `json:"e2e"`
	// Goodput is the share of Requests that succeeded and met every SLO
	// that is set; GoodputRPS is their number over Duration.
	Goodput    float64 `json:"goodput"`
	GoodputRPS float64 `json:"goodput_rps"`
	SLO        SLO     `json:"slo"`
}

// MarshalJSON adds duration_seconds.
func (r *Report) MarshalJSON() ([]byte, error) {
	type plain Report
	return json.Marshal(struct {
		*plain
		DurationSeconds float64 `json:"duration_seconds"`
	}{(*plain)(r), r.Duration.Seconds()})
}

// MarshalJSON writes the maxima in milliseconds; 0 means not checked.
func (s SLO) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TTFT float64 `json:"ttft_ms"`
		TPOT float64 `json:"tpot_ms"`
		E2E  float64 `json:"e2e_ms"`
	}{ms(s.TTFT), ms(s.TPOT), ms(s.E2E)})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Percentiles summarises a latency distribution, in milliseconds, as read
// from an HDR histogram with microsecond resolution.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// maxMicros is the highest latency a histogram tracks: one hour.
const maxMicros = int64(time.Hour / time.Microsecond)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxMicros, 3) }

func record(h *hdrhistogram.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), 1), maxMicros)
	_ = h.RecordValue(us) // cannot fail: us is within range
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	q := func(p float64) float64 { return float64(h.ValueAtPercentile(p)) / 1000 }
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   q(50),
		P90:   q(90),
		P95:   q(95),
		P99:   q(99),
		Max:   float64(h.Max()) / 1000,
	}
}

// collector turns records into a report; it is used by one goroutine.
type collector struct {
	cfg                  Config
	ttft, itl, tpot, e2e *hdrhistogram.Histogram
	succeeded, failed    int
	dropped, good        int
	outputTokens         int64
	errors               map[string]int
}

func newCollector(cfg Config) *collector {
	return &collector{
		cfg:  cfg,
		ttft: newHistogram(), itl: newHistogram(), tpot: newHistogram(), e2e: newHistogram(),
		errors: map[string]int{},
	}
}

const progressEvery = 500 * time.Millisecond

func (c *collector) run(records <-chan Record, start time.Time, inFlight *atomic.Int64) {
	var tick <-chan time.Time
	if c.cfg.Progress != nil {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case rec, ok := <-records:
			if !ok {
				if c.cfg.Progress != nil {
					c.cfg.Progress(c.progress(time.Since(start), 0))
				}
				return
			}
			if rec.Err == errCanceled {
				continue
			}
			c.add(rec)
			if c.cfg.OnRecord != nil {
				c.cfg.OnRecord(rec)
			}
		case <-tick:
			c.cfg.Progress(c.progress(time.Since(start), int(inFlight.Load())))
		}
	}
}

func (c *collector) add(rec Record) {
	switch rec.Err {
	case "":
	case ErrDropped:
		c.dropped++
		c.errors[rec.Err]++
		return
	default:
		c.failed++
		c.errors[rec.Err]++
		return
	}
	c.succeeded++
	c.outputTokens += int64(rec.OutputTokens)
	record(c.e2e, rec.E2E)
	if rec.HasTTFT {
		record(c.ttft, rec.TTFT)
	}
	for _, gap := range rec.ITL {
		record(c.itl, gap)
	}
	tpot, hasTPOT := rec.TPOT(c.cfg.Stream)
	if hasTPOT {
		record(c.tpot, tpot)
	}
	slo := c.cfg.SLO
	good := (slo.E2E == 0 || rec.E2E <= slo.E2E) &&
		(slo.TTFT == 0 || (rec.HasTTFT && rec.TTFT <= slo.TTFT)) &&
		(slo.TPOT == 0 || !c.cfg.Stream || !hasTPOT || tpot <= slo.TPOT)
	if good {
		c.good++
	}
}

func (c *collector) progress(elapsed time.Duration, inFlight int) Progress {
	p := Progress{
		Elapsed:   elapsed,
		Requests:  c.succeeded + c.failed + c.dropped,
		Succeeded: c.succeeded,
		Failed:    c.failed,
		Dropped:   c.dropped,
		InFlight:  inFlight,
	}
	if elapsed > 0 {
		p.RequestsPerSec = float64(p.Requests) / elapsed.Seconds()
	}
	if c.ttft.TotalCount() > 0 {
		p.TTFTP50 = float64(c.ttft.ValueAtPercentile(50)) / 1000
	}
	return p
}

func (c *collector) report(d time.Duration) *Report {
	r := &Report{
		Load:         c.cfg.Describe(),
		Requests:     c.succeeded + c.failed + c.dropped,
		Succeeded:    c.succeeded,
		Failed:       c.failed,
		Dropped:      c.dropped,
		Errors:       c.errors,
		Duration:     d,
		OutputTokens: c.outputTokens,
		TTFT:         percentiles(c.ttft),
		ITL:          percentiles(c.itl),
		TPOT:         percentiles(c.tpot),
		E2E:          percentiles(c.e2e),
		SLO:          c.cfg.SLO,
	}
	if r.Requests > 0 {
		r.ErrorRate = float64(r.Failed+r.Dropped) / float64(r.Requests)
		r.Goodput = float64(c.good) / float64(r.Requests)
	}
	if s := d.Seconds(); s > 0 {
		r.RequestsPerSec = float64(r.Succeeded) / s
		r.OutputTokensPerSec = float64(r.OutputTokens) / s
		r.GoodputRPS = float64(c.good) / s
	}
	return r
}

// WriteTable writes the report as aligned text for a terminal.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Load:\t%s\n", r.Load)
	fmt.Fprintf(tw, "Duration:\t%.2fs\n", r.Duration.Seconds())
	fmt.Fprintf(tw, "Requests:\t%d (succeeded %d, failed %d, dropped %d)\n", r.Requests, r.Succeeded, r.Failed, r.Dropped)
	if len(r.Errors) > 0 {
		fmt.Fprintf(tw, "Errors:\t")
		for i, k := range slices.Sorted(maps.Keys(r.Errors)) {
			if i > 0 {
				fmt.Fprint(tw, ", ")
			}
			fmt.Fprintf(tw, "%s %d", k, r.Errors[k])
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintf(tw, "Error rate:\t%.2f%%\n", 100*r.ErrorRate)
	fmt.Fprintf(tw, "Request throughput:\t%.2f req/s\n", r.RequestsPerSec)
	fmt.Fprintf(tw, "Output tokens:\t%d (%.1f tok/s)\n", r.OutputTokens, r.OutputTokensPerSec)
	fmt.Fprintf(tw, "Goodput:\t%.2f%% (%.2f req/s)%s\n", 100*r.Goodput, r.GoodputRPS, sloText(r.SLO))
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "Latency (ms)\tcount\tmean\tp50\tp90\tp95\tp99\tmax")
	for _, row := range []struct {
		name string
		p    Percentiles
	}{{"TTFT", r.TTFT}, {"ITL", r.ITL}, {"TPOT", r.TPOT}, {"E2E", r.E2E}} {
		if row.p.Count == 0 {
			fmt.Fprintf(tw, "%s\t0\t-\t-\t-\t-\t-\t-\n", row.name)
			continue
		}
		p := row.p
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", row.name, p.Count, p.Mean, p.P50, p.P90, p.P95, p.P99, p.Max)
	}
	return tw.Flush()
}

func sloText(s SLO) string {
	var parts []string
	if s.TTFT > 0 {
		parts = append(parts, "TTFT<="+s.TTFT.String())
	}
	if s.TPOT > 0 {
		parts = append(parts, "TPOT<="+s.TPOT.String())
	}
	if s.E2E > 0 {
		parts = append(parts, "E2E<="+s.E2E.String())
	}
	if len(parts) == 0 {
		return ", no SLO set"
	}
	out := ", SLO "
	for i, p := range parts {
		if i > 0 {
			out += " "
		}
		out += p
	}
	return out
}
