package gateway

import (
	"strconv"
	"sync/atomic"

	"github.com/modelslot/modelslot"
	"github.com/prometheus/client_golang/prometheus"
)

// promMetrics are the gateway's Prometheus metrics (docs/METRICS.md maps
// each to its OpenTelemetry GenAI name). Labels are bounded: app, slot,
// revision, version and HTTP status code, never users or paths.
type promMetrics struct {
	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	ttft         *prometheus.HistogramVec
	tpot         *prometheus.HistogramVec
	tokens       *prometheus.CounterVec
	inputTokens  *prometheus.CounterVec
	streamedReqs *prometheus.CounterVec
}

func newPromMetrics(reg prometheus.Registerer) *promMetrics {
	labels := []string{"app", "slot", "revision", "version"}
	m := &promMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelslot_gateway_requests_total",
			Help: "Requests answered by the gateway, by slot, revision and HTTP status code (code=\"0\": no complete answer, the stream broke or carried an error event after its 200; \"499\": the client went away).",
		}, append(labels, "code")),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelslot_gateway_request_duration_seconds",
			Help:    "End-to-end request latency through the gateway (gen_ai.server.request.duration).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, labels),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelslot_gateway_time_to_first_token_seconds",
			Help:    "Time to the first content token of streamed answers (gen_ai.server.time_to_first_token); non-streamed answers are not observed.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, .75, 1, 2.5, 5, 10},
		}, labels),
		tpot: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelslot_gateway_time_per_output_token_seconds",
			Help:    "Time per output token after the first, per successful streamed answer with at least two tokens (gen_ai.server.time_per_output_token).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .075, .1, .15, .2, .3, .4, .5, .75, 1, 2.5},
		}, labels),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelslot_gateway_output_tokens_total",
			Help: "Output tokens, from usage or counted stream events (gen_ai.client.token.usage, gen_ai.token.type=output).",
		}, labels),
		inputTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelslot_gateway_input_tokens_total",
			Help: "Input tokens, from the answers' usage (prompt_tokens) (gen_ai.client.token.usage, gen_ai.token.type=input).",
		}, labels),
		streamedReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelslot_gateway_streamed_requests_total",
			Help: "Requests answered with an event stream (the population of the TTFT and TPOT histograms).",
		}, labels),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.ttft, m.tpot, m.tokens, m.inputTokens, m.streamedReqs)
	}
	return m
}

// promChildren are one revision's resolved series, so that recording a
// request does no label lookup (a status code's counter is resolved the
// first time the code is seen).
type promChildren struct {
	labels      [4]string
	requests    *prometheus.CounterVec
	byCode      [600]atomic.Pointer[codeCounter] // index: status code; 0 no complete answer
	latency     prometheus.Observer
	ttft        prometheus.Observer
	tpot        prometheus.Observer
	tokens      prometheus.Counter
	inputTokens prometheus.Counter
	streamed    prometheus.Counter
}

type codeCounter struct{ prometheus.Counter }

func (m *promMetrics) children(app, slot, revision, version string) *promChildren {
	return &promChildren{
		labels:      [4]string{app, slot, revision, version},
		requests:    m.requests,
		latency:     m.latency.WithLabelValues(app, slot, revision, version),
		ttft:        m.ttft.WithLabelValues(app, slot, revision, version),
		tpot:        m.tpot.WithLabelValues(app, slot, revision, version),
		tokens:      m.tokens.WithLabelValues(app, slot, revision, version),
		inputTokens: m.inputTokens.WithLabelValues(app, slot, revision, version),
		streamed:    m.streamedReqs.WithLabelValues(app, slot, revision, version),
	}
}

func (c *promChildren) code(status int) prometheus.Counter {
	if status < 0 || status >= len(c.byCode) {
		status = 0
	}
	if cc := c.byCode[status].Load(); cc != nil {
		return cc.Counter
	}
	l := c.labels
	cc := &codeCounter{c.requests.WithLabelValues(l[0], l[1], l[2], l[3], strconv.Itoa(status))}
	c.byCode[status].Store(cc)
	return cc.Counter
}

func (c *promChildren) observe(s modelslot.Sample) {
	c.code(s.Status).Inc()
	c.latency.Observe(s.Latency.Seconds())
	if s.Streamed {
		// A non-streamed answer's "first token" is its whole latency:
		// observing it would mix two distributions in one histogram.
		c.streamed.Inc()
		if s.TTFT > 0 {
			c.ttft.Observe(s.TTFT.Seconds())
		}
		if tpot, ok := timePerOutputToken(s); ok {
			c.tpot.Observe(tpot)
		}
	}
	if s.OutputTokens > 0 {
		c.tokens.Add(float64(s.OutputTokens))
	}
	if s.InputTokens > 0 {
		c.inputTokens.Add(float64(s.InputTokens))
	}
}

// timePerOutputToken is (latency - TTFT) / (output tokens - 1) of a
// successful stream with at least two tokens, in seconds, as the serving
// benchmarks and OpenTelemetry define it.
func timePerOutputToken(s modelslot.Sample) (float64, bool) {
	if !s.Streamed || s.Status < 200 || s.Status >= 300 || s.OutputTokens < 2 || s.TTFT <= 0 || s.Latency <= s.TTFT {
		return 0, false
	}
	return (s.Latency - s.TTFT).Seconds() / float64(s.OutputTokens-1), true
}

// routeCollector reports, at each scrape, what the routing snapshot says
// now: requests in flight and traffic weight per slot, and each app's
// routing generation.
type routeCollector struct {
	g                            *Gateway
	inflight, weight, generation *prometheus.Desc
}

func newRouteCollector(g *Gateway) *routeCollector {
	return &routeCollector{
		g: g,
		inflight: prometheus.NewDesc("modelslot_gateway_in_flight_requests",
			"Requests in flight to the slot's current deployment.", []string{"app", "slot"}, nil),
		weight: prometheus.NewDesc("modelslot_gateway_traffic_weight_ratio",
			"The slot's share of the app's traffic by the current routing rules, 0 to 1 (production gets the rest).", []string{"app", "slot"}, nil),
		generation: prometheus.NewDesc("modelslot_gateway_routing_generation",
			"The app's routing generation: a swap, a rollback, traffic clear or traffic set --reset-pins bumps it.", []string{"app"}, nil),
	}
}

func (c *routeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.inflight
	ch <- c.weight
	ch <- c.generation
}

func (c *routeCollector) Collect(ch chan<- prometheus.Metric) {
	for name, app := range c.g.snap.Load().apps {
		ch <- prometheus.MustNewConstMetric(c.generation, prometheus.GaugeValue, float64(app.generation), name)
		weights := app.weights()
		for slot, sr := range app.slots {
			ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(sr.backend.InFlight()), name, slot)
			ch <- prometheus.MustNewConstMetric(c.weight, prometheus.GaugeValue, weights[slot], name, slot)
		}
	}
}

// weights returns each slot's share of the buckets, production's included.
func (a *appRoute) weights() map[string]float64 {
	w := make(map[string]float64, len(a.slots))
	start := 0
	for _, r := range a.ranges {
		w[r.slot.name] += float64(r.end-start) / buckets
		start = r.end
	}
	if a.prod != nil {
		w[a.prod.name] += float64(buckets-start) / buckets
	}
	return w
}
