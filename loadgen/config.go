// Package loadgen generates load against an OpenAI-compatible chat
// completions endpoint and measures it the way LLM serving is measured:
// TTFT, ITL, TPOT, throughput and goodput, timed from each request's
// scheduled send time so that a stalled server cannot hide its latency.
package loadgen

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"
)

// Config describes one load test. The zero value of every optional field
// has a documented default, applied by Run.
type Config struct {
	// URL is the base URL of the OpenAI-compatible server, e.g.
	// http://127.0.0.1:8080; requests go to URL + "/v1/chat/completions".
	URL string
	// Model is sent as the request's model field. Default "default".
	Model string

	// Rate is the open-loop arrival rate in requests per second. With
	// Poisson false, arrivals are evenly spaced (1/Rate apart).
	Rate float64
	// Poisson draws inter-arrival gaps from a gamma distribution with
	// shape Burstiness and mean 1/Rate, as vLLM's benchmark does;
	// Burstiness 1 (the default) gives a Poisson process, below 1 is
	// burstier, above 1 is more regular.
	Poisson    bool
	Burstiness float64
	// Concurrency is the number of closed-loop workers, each sending its
	// next request when the previous one ends. Used when Rate is 0.
	// Default 1 when Rate is 0.
	Concurrency int
	// MaxInFlight bounds the requests open at once in open loop; an
	// arrival that finds the bound reached is not sent and is counted
	// as dropped. Default 10*Rate, at least 16 and at most 1000.
	MaxInFlight int

	// Duration and Requests end the test, whichever is reached first;
	// when both are zero, Duration is 30s. Requests in flight when the
	// duration ends are waited for (see Timeout).
	Duration time.Duration
	Requests int
	// Timeout bounds each request, end to end. Default 5m.
	Timeout time.Duration

	// Stream asks for server-sent events (and stream_options.include_usage).
	Stream bool

	// Prompts are used in turn when set (see LoadPrompts); otherwise
	// synthetic prompts are drawn with about InputTokens tokens and
	// max_tokens drawn from OutputTokens.
	Prompts      []Prompt
	InputTokens  Dist
	OutputTokens Dist

	// SLO holds the latency targets used for goodput.
	SLO SLO

	// Headers are added to every request (e.g. Authorization).
	Headers map[string]string
	// Seed makes arrivals and synthetic prompts reproducible.
	Seed int64
	// Client sends the requests. Default: a client with keep-alive
	// connections sized for the load.
	Client *http.Client
	// Progress, when set, is called about every 500ms and once at the end.
	Progress func(Progress)
	// OnRecord, when set, is called once per finished request (sent or
	// dropped), from a single goroutine.
	OnRecord func(Record)
}

// Dist is a normal distribution, truncated to values of at least 1.
type Dist struct {
	Mean   float64 `json:"mean"`
	Stddev float64 `json:"stddev"`
}

// SLO holds per-request latency maxima. A zero field is not checked.
// TPOT applies to streaming requests only.
type SLO struct {
	TTFT time.Duration
	TPOT time.Duration
	E2E  time.Duration
}

// Progress is a snapshot of a running test.
type Progress struct {
	Elapsed   time.Duration
	Requests  int // finished: succeeded + failed + dropped
	Succeeded int
	Failed    int
	Dropped   int
	InFlight  int
	// RequestsPerSec is finished requests over Elapsed.
	RequestsPerSec float64
	// TTFTP50 is the median TTFT so far, in milliseconds.
	TTFTP50 float64
}

const (
	defaultModel    = "default"
	defaultDuration = 30 * time.Second
	defaultTimeout  = 5 * time.Minute
	defaultInput    = 128
	defaultOutput   = 64
)

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("invalid load test configuration")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	switch {
	case c.URL == "":
		return invalid("URL is required")
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return invalid("rate must be a positive number of requests per second, got %v", c.Rate)
	case c.Concurrency < 0:
		return invalid("concurrency must not be negative, got %d", c.Concurrency)
	case c.Rate > 0 && c.Concurrency > 0:
		return invalid("set either a rate (open loop) or a concurrency (closed loop), not both")
	case c.Burstiness < 0 || math.IsNaN(c.Burstiness):
		return invalid("burstiness must be positive, got %v", c.Burstiness)
	case c.Burstiness > 0 && !c.Poisson:
		return invalid("burstiness applies to Poisson/gamma arrivals only")
	case c.Poisson && c.Rate == 0:
		return invalid("Poisson arrivals need a rate")
	case c.MaxInFlight < 0:
		return invalid("max in-flight must not be negative, got %d", c.MaxInFlight)
	case c.Duration < 0:
		return invalid("duration must not be negative, got %s", c.Duration)
	case c.Requests < 0:
		return invalid("requests must not be negative, got %d", c.Requests)
	case c.Timeout < 0:
		return invalid("timeout must not be negative, got %s", c.Timeout)
	case c.InputTokens.Mean < 0 || c.InputTokens.Stddev < 0:
		return invalid("input tokens mean and stddev must not be negative")
	case c.OutputTokens.Mean < 0 || c.OutputTokens.Stddev < 0:
		return invalid("output tokens mean and stddev must not be negative")
	case c.SLO.TTFT < 0 || c.SLO.TPOT < 0 || c.SLO.E2E < 0:
		return invalid("SLO maxima must not be negative")
	}
	return nil
}

// withDefaults returns c with every unset optional field set.
func (c Config) withDefaults() Config {
	if c.Model == "" {
		c.Model = defaultModel
	}
	if c.Rate == 0 && c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.Poisson && c.Burstiness == 0 {
		c.Burstiness = 1
	}
	if c.Rate > 0 && c.MaxInFlight == 0 {
		c.MaxInFlight = min(max(int(math.Ceil(10*c.Rate)), 16), 1000)
	}
	if c.Duration == 0 && c.Requests == 0 {
		c.Duration = defaultDuration
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.InputTokens.Mean == 0 {
		c.InputTokens.Mean = defaultInput
	}
	if c.OutputTokens.Mean == 0 {
		c.OutputTokens.Mean = defaultOutput
	}
	if c.Client == nil {
		conns := c.Concurrency
		if c.Rate > 0 {
			conns = c.MaxInFlight
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = conns
		t.MaxIdleConnsPerHost = conns
		c.Client = &http.Client{Transport: t}
	}
	return c
}
