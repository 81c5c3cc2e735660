package gateway

import (
	"github.com/modelslot/modelslot"
	"github.com/prometheus/client_golang/prometheus"
)

// promMetrics are the gateway's Prometheus metrics. Labels are bounded:
// app, slot, revision, version and status class, never users or paths.
type promMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	ttft     *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
}

func newPromMetrics(reg prometheus.Registerer) *promMetrics {
	labels := []string{"app", "slot", "revision", "version"}
	m := &promMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelslot_gateway_requests_total",
			Help: "Requests answered by the gateway, by slot, revision and status class.",
		}, append(labels, "code")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelslot_gateway_request_duration_seconds",
			Help:    "End-to-end request latency through the gateway.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, labels),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelslot_gateway_time_to_first_token_seconds",
			Help:    "Time to the first content token (gen_ai.server.time_to_first_token).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, .75, 1, 2.5, 5, 10},
		}, labels),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelslot_gateway_output_tokens_total",
			Help: "Output tokens, from usage or counted stream events.",
		}, labels),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.ttft, m.tokens)
	}
	return m
}

// promChildren are one revision's resolved series, so that recording a
// request does no label lookup.
type promChildren struct {
	byClass [6]prometheus.Counter // error, 1xx..5xx
	latency prometheus.Observer
	ttft    prometheus.Observer
	tokens  prometheus.Counter
}

func (m *promMetrics) children(app, slot, revision, version string) *promChildren {
	c := &promChildren{
		latency: m.latency.WithLabelValues(app, slot, revision, version),
		ttft:    m.ttft.WithLabelValues(app, slot, revision, version),
		tokens:  m.tokens.WithLabelValues(app, slot, revision, version),
	}
	for i, class := range []string{"error", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		c.byClass[i] = m.requests.WithLabelValues(app, slot, revision, version, class)
	}
	return c
}

func (c *promChildren) observe(s modelslot.Sample) {
	class := 0
	if s.Status >= 100 && s.Status < 600 {
		class = s.Status / 100
	}
	if s.Status == statusClientClosed {
		class = 4
	}
	c.byClass[class].Inc()
	c.latency.Observe(s.Latency.Seconds())
	if s.TTFT > 0 {
		c.ttft.Observe(s.TTFT.Seconds())
	}
	if s.OutputTokens > 0 {
		c.tokens.Add(float64(s.OutputTokens))
	}
}
