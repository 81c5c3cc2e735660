// Package promql is a rollout metric source over Prometheus's HTTP API: it
// turns range queries for each slot into the per-interval Buckets that the
// analysis judges (requests, errors, mean latency, TTFT and tokens/s).
package promql

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

var _ modelslot.MetricSource = (*Source)(nil)

// Query names: the keys of Config.Queries.
const (
	Requests     = "requests"       // requests finished in the window (count); required
	Errors       = "errors"         // failed requests in the window (count); required
	LatencyMean  = "latency_mean"   // mean end-to-end latency in seconds
	TTFTMean     = "ttft_mean"      // mean time to first token in seconds
	TokensPerSec = "tokens_per_sec" // mean output tokens per second per request
)

var queryNames = []string{Requests, Errors, LatencyMean, TTFTMean, TokensPerSec}

// DefaultStep is the bucket width when Config.Step is zero.
const DefaultStep = 30 * time.Second

// Config configures a Source.
type Config struct {
	// URL of the Prometheus server (or any server with its HTTP API:
	// Thanos, Mimir, VictoriaMetrics, Azure Monitor managed Prometheus).
	URL string
	// Queries are text/template PromQL expressions keyed by the names
	// above; "requests" and "errors" are required, the means are optional.
	// They see {{.App}}, {{.Slot}} and {{.Window}} (the step as a PromQL
	// duration, e.g. "30s", for rate and increase) and must return one
	// series (aggregate with sum). Empty: VLLMQueries().
	Queries map[string]string
	// Step is the width of one bucket (default 30s). Use at least twice the
	// scrape interval, or increase() has too few points.
	Step time.Duration
	// Lag holds back buckets that end less than Lag ago, for the scrapes
	// still to come (default 0; the scrape interval is a good value).
	Lag time.Duration
	// Client sends the requests (default: a client with a 30s timeout).
	Client *http.Client
	// Now is the clock used with Lag (default time.Now).
	Now func() time.Time
}

// Source implements modelslot.MetricSource with Prometheus range queries.
type Source struct {
	api     v1.API
	queries map[string]*template.Template
	step    time.Duration
	lag     time.Duration
	now     func() time.Time
}

// VLLMQueries returns queries over the metrics a vLLM server exports,
// assuming the scrape configuration labels each target with `app` and
// `slot` (see docs/ROLLOUTS.md). Errors come from the HTTP metrics of
// vLLM's OpenAI-compatible server (prometheus-fastapi-instrumentator).
func VLLMQueries() map[string]string {
	sel := `app="{{.App}}",slot="{{.Slot}}"`
	return map[string]string{
		Requests:     `sum(increase(http_requests_total{` + sel + `,handler=~"/v1/.*"}[{{.Window}}]))`,
		Errors:       `sum(increase(http_requests_total{` + sel + `,handler=~"/v1/.*",status=~"4..|5..|4xx|5xx",status!="499"}[{{.Window}}]))`,
		LatencyMean:  `sum(increase(vllm:e2e_request_latency_seconds_sum{` + sel + `}[{{.Window}}])) / sum(increase(vllm:e2e_request_latency_seconds_count{` + sel + `}[{{.Window}}]))`,
		TTFTMean:     `sum(increase(vllm:time_to_first_token_seconds_sum{` + sel + `}[{{.Window}}])) / sum(increase(vllm:time_to_first_token_seconds_count{` + sel + `}[{{.Window}}]))`,
		TokensPerSec: `sum(increase(vllm:time_per_output_token_seconds_count{` + sel + `}[{{.Window}}])) / sum(increase(vllm:time_per_output_token_seconds_sum{` + sel + `}[{{.Window}}]))`,
	}
}

// OTelQueries returns queries over the OpenTelemetry GenAI semantic
// conventions' server metrics as exported to Prometheus
// (gen_ai.server.request.duration -> gen_ai_server_request_duration_seconds,
// ...), with the same `app` and `slot` labels. Errors are requests with an
// error_type attribute.
func OTelQueries() map[string]string {
	sel := `app="{{.App}}",slot="{{.Slot}}"`
	return map[string]string{
		Requests:     `sum(increase(gen_ai_server_request_duration_seconds_count{` + sel + `}[{{.Window}}]))`,
		Errors:       `sum(increase(gen_ai_server_request_duration_seconds_count{` + sel + `,error_type!=""}[{{.Window}}]))`,
		LatencyMean:  `sum(increase(gen_ai_server_request_duration_seconds_sum{` + sel + `}[{{.Window}}])) / sum(increase(gen_ai_server_request_duration_seconds_count{` + sel + `}[{{.Window}}]))`,
		TTFTMean:     `sum(increase(gen_ai_server_time_to_first_token_seconds_sum{` + sel + `}[{{.Window}}])) / sum(increase(gen_ai_server_time_to_first_token_seconds_count{` + sel + `}[{{.Window}}]))`,
		TokensPerSec: `sum(increase(gen_ai_server_time_per_output_token_seconds_count{` + sel + `}[{{.Window}}])) / sum(increase(gen_ai_server_time_per_output_token_seconds_sum{` + sel + `}[{{.Window}}]))`,
	}
}

// New checks cfg and returns a Source. It does not contact Prometheus.
func New(cfg Config) (*Source, error) {
	if cfg.URL == "" {
		return nil, modelslot.Errorf(modelslot.EINVALID, "prometheus: url is required (e.g. http://prometheus:9090)")
	}
	if cfg.Step < 0 {
		return nil, modelslot.Errorf(modelslot.EINVALID, "prometheus: step %v is negative", cfg.Step)
	}
	if cfg.Step == 0 {
		cfg.Step = DefaultStep
	}
	if cfg.Step < time.Second || cfg.Step%time.Second != 0 {
		return nil, modelslot.Errorf(modelslot.EINVALID, "prometheus: step %v must be a whole number of seconds", cfg.Step)
	}
	if cfg.Lag < 0 {
		return nil, modelslot.Errorf(modelslot.EINVALID, "prometheus: lag %v is negative", cfg.Lag)
	}
	if len(cfg.Queries) == 0 {
		cfg.Queries = VLLMQueries()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Source{queries: map[string]*template.Template{}, step: cfg.Step, lag: cfg.Lag, now: cfg.Now}
	names := make([]string, 0, len(cfg.Queries))
	for name := range cfg.Queries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !slices.Contains(queryNames, name) {
			return nil, modelslot.Errorf(modelslot.EINVALID, "prometheus: queries.%s: unknown query (known: %s)", name, strings.Join(queryNames, ", "))
		}
		t, err := template.New(name).Option("missingkey=error").Parse(cfg.Queries[name])
		if err != nil {
			return nil, modelslot.Errorf(modelslot.EINVALID, "prometheus: queries.%s: %v", name, err)
		}
		// Execute once so that a misspelt field fails now, not mid-rollout.
		if err := t.Execute(&bytes.Buffer{}, tmplData{App: "app", Slot: "slot", Window: "30s"}); err != nil {
			return nil, modelslot.Errorf(modelslot.EINVALID, "prometheus: queries.%s: %v (the template sees .App, .Slot and .Window)", name, err)
		}
		s.queries[name] = t
	}
	for _, name := range []string{Requests, Errors} {
		if s.queries[name] == nil {
			return nil, modelslot.Errorf(modelslot.EINVALID, "prometheus: queries.%s is required", name)
		}
	}
	c, err := api.NewClient(api.Config{Address: cfg.URL, Client: cfg.Client})
	if err != nil {
		return nil, modelslot.Errorf(modelslot.EINVALID, "prometheus: url %q: %v", cfg.URL, err)
	}
	s.api = v1.NewAPI(c)
	return s, nil
}

type tmplData struct {
	App, Slot, Window string
}

// Query returns the PromQL text of one query for a slot, for display.
func (s *Source) Query(name, app, slot string) (string, error) {
	t := s.queries[name]
	if t == nil {
		return "", modelslot.Errorf(modelslot.ENOTFOUND, "prometheus: no query %q", name)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, tmplData{App: app, Slot: slot, Window: model.Duration(s.step).String()}); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Series returns one Bucket per whole step of [From, To), aligned on From.
// The part after the last whole step (and buckets younger than Lag) is
// left for a later call, and Complete is then false: callers pass the end
// of the last bucket as the next From.
func (s *Source) Series(ctx context.Context, q modelslot.MetricQuery) (modelslot.Series, error) {
	out := modelslot.Series{Slot: q.Slot}
	to := q.To
	if limit := s.now().Add(-s.lag); s.lag > 0 && to.After(limit) {
		to = limit
	}
	n := int(to.Sub(q.From) / s.step)
	if n <= 0 {
		return out, nil // nothing whole yet: Complete stays false
	}
	end := q.From.Add(time.Duration(n) * s.step)
	out.Complete = end.Equal(q.To)
	out.Buckets = make([]modelslot.Bucket, n)
	for i := range out.Buckets {
		out.Buckets[i] = modelslot.Bucket{Start: q.From.Add(time.Duration(i) * s.step), Grain: s.step}
	}
	r := v1.Range{Start: q.From.Add(s.step), End: end, Step: s.step}
	for _, name := range queryNames {
		t := s.queries[name]
		if t == nil {
			continue
		}
		values, err := s.queryRange(ctx, name, q.App, q.Slot, r)
		if err != nil {
			return modelslot.Series{Slot: q.Slot}, err
		}
		for i := range out.Buckets {
			v, ok := values[r.Start.Add(time.Duration(i)*s.step).Unix()]
			if !ok {
				continue
			}
			b := &out.Buckets[i]
			switch name {
			case Requests:
				b.Requests = int64(math.Round(math.Max(v, 0)))
			case Errors:
				b.Errors = int64(math.Round(math.Max(v, 0)))
			case LatencyMean:
				b.MeanLatency = seconds(v)
			case TTFTMean:
				b.MeanTTFT = seconds(v)
			case TokensPerSec:
				b.MeanTokensPerSec = math.Max(v, 0)
			}
		}
	}
	for i := range out.Buckets {
		// increase() extrapolates, so two rounded counters can disagree.
		if b := &out.Buckets[i]; b.Errors > b.Requests {
			b.Errors = b.Requests
		}
	}
	return out, nil
}

// queryRange runs one query and returns its values by Unix second. Several
// series are added up for counts and averaged for means.
func (s *Source) queryRange(ctx context.Context, name, app, slot string, r v1.Range) (map[int64]float64, error) {
	var text bytes.Buffer
	if err := s.queries[name].Execute(&text, tmplData{App: app, Slot: slot, Window: model.Duration(s.step).String()}); err != nil {
		return nil, modelslot.Wrapf(err, modelslot.EINVALID, "prometheus: query %s: %v", name, err)
	}
	val, _, _, err := s.api.QueryRange(ctx, text.String(), r)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "prometheus: query %s for %s/%s: %v", name, app, slot, err)
	}
	matrix, ok := val.(model.Matrix)
	if !ok {
		return nil, modelslot.Errorf(modelslot.EINVALID, "prometheus: query %s returned a %s, want a range vector (matrix)", name, val.Type())
	}
	sum := map[int64]float64{}
	count := map[int64]int{}
	for _, series := range matrix {
		for _, p := range series.Values {
			v := float64(p.Value)
			if math.IsNaN(v) || math.IsInf(v, 0) { // 0/0 when there were no requests
				continue
			}
			ts := p.Timestamp.Unix()
			sum[ts] += v
			count[ts]++
		}
	}
	if name == Requests || name == Errors {
		return sum, nil
	}
	for ts, n := range count {
		sum[ts] /= float64(n)
	}
	return sum, nil
}

func seconds(v float64) time.Duration {
	if v <= 0 {
		return 0
	}
	return time.Duration(v * float64(time.Second))
}

// String describes the source for logs.
func (s *Source) String() string { return fmt.Sprintf("prometheus (step %v)", s.step) }
