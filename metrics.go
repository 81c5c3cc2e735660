package modelslot

import (
	"context"
	"time"
)

// Sample is one request as a meter saw it. Meters that see every request
// (the gateway) return raw samples; sources that only hold aggregates
// (Prometheus, Azure Monitor) return Buckets instead.
type Sample struct {
	// Time is when the request finished.
	Time time.Time `json:"time"`
	// Status is the HTTP status the client got; 0 means the backend could not
	// be reached or the stream broke (counted as an error).
	Status int `json:"status"`
	// Latency is end-to-end: request received to last byte sent.
	Latency time.Duration `json:"latency"`
	// TTFT is the time to the first content token; 0 when unknown
	// (non-streaming responses have TTFT == Latency).
	TTFT time.Duration `json:"ttft"`
	// OutputTokens from usage, else the number of streamed content events.
	OutputTokens int `json:"outputTokens"`
	// TokensCounted: OutputTokens is a count, not a missing value (it came
	// from usage or from a stream's events), so 0 means an empty answer.
	TokensCounted bool `json:"tokensCounted,omitempty"`
	// Revision is the deployment revision that served the request.
	Revision string `json:"revision,omitempty"`
}

// IsError reports whether the sample counts as a server-side failure:
// a transport failure or a 5xx. 429s count too: a model that sheds load is
// failing its users.
func (s Sample) IsError() bool { return s.Status == 0 || s.Status >= 500 || s.Status == 429 }

// Failed reports whether the request failed its user: every IsError, and
// every other 4xx but 499 (the client left). This is what the rollout
// analysis counts as an error. A 4xx is often the client's own fault, but
// then it comes as often from production as from the candidate; a
// deployment that answers 401 (a wrong provider key), 404 (a wrong model
// id) or 400 (a system prompt that overflows the context) where production
// answers 200 must fail its rollout, not pass as a fast answer.
func (s Sample) Failed() bool {
	return s.IsError() || (s.Status >= 400 && s.Status < 500 && s.Status != 499)
}

// TokensPerSecond is the output rate after the first token (streams), or
// over the whole request when the tokens arrived together (a non-streaming
// answer, whose first byte is also nearly its last); 0 without tokens.
func (s Sample) TokensPerSecond() float64 {
	if s.OutputTokens < 1 || s.Latency <= 0 {
		return 0
	}
	d := s.Latency - s.TTFT
	if s.OutputTokens < 2 || d <= s.Latency/20 {
		return float64(s.OutputTokens) / s.Latency.Seconds()
	}
	return float64(s.OutputTokens-1) / d.Seconds()
}

// Bucket aggregates the requests of one slot over one grain, for metric
// sources that have no per-request data.
type Bucket struct {
	Start    time.Time     `json:"start"`
	Grain    time.Duration `json:"grain"`
	Requests int64         `json:"requests"`
	Errors   int64         `json:"errors"`
	// Means over the bucket; zero when the source does not report them.
	MeanLatency      time.Duration `json:"meanLatency,omitempty"`
	MeanTTFT         time.Duration `json:"meanTTFT,omitempty"`
	MeanTokensPerSec float64       `json:"meanTokensPerSec,omitempty"`
}

// Series is what a metric source knows about one slot in a time range.
// Exactly one of Samples and Buckets is normally set.
type Series struct {
	Slot    string   `json:"slot"`
	Samples []Sample `json:"samples,omitempty"`
	Buckets []Bucket `json:"buckets,omitempty"`
	// Complete is false when the source knows that data for the range is
	// still arriving (Azure Monitor reports with a delay); a judge must not
	// treat the missing part as "no errors".
	Complete bool `json:"complete"`
	// Settled, when set on an incomplete Series, is how far its data is
	// final: a source of raw samples that reports late (Application
	// Insights) has none after it yet. A caller asks again from there.
	Settled time.Time `json:"settled,omitzero"`
}

// MetricQuery selects one slot of one app over [From, To).
type MetricQuery struct {
	App  string
	Slot string
	From time.Time
	To   time.Time
	// Settle is how old data must be before it is final, for sources that
	// report late and revise what they reported (Azure Monitor); 0: the
	// source's own default.
	Settle time.Duration
}

// MetricSource yields the measurements the rollout gates judge.
// Implementations: the gateway's meter (local), Prometheus, Azure Monitor.
type MetricSource interface {
	Series(ctx context.Context, q MetricQuery) (Series, error)
}
