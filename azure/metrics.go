package azure

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/monitor/armmonitor"

	"github.com/modelslot/modelslot"
)

var _ modelslot.MetricSource = (*MetricSource)(nil)

// Azure Monitor metrics of App Service, one-minute grain.
const (
	metricRequests     = "Requests"
	metricHttp5xx      = "Http5xx"
	metricHttp4xx      = "Http4xx"
	metricResponseTime = "HttpResponseTime" // seconds
	metricNames        = metricRequests + "," + metricHttp5xx + "," + metricHttp4xx + "," + metricResponseTime
	metricGrain        = time.Minute
)

// MetricSource reads a slot's request metrics from Azure Monitor. Azure
// has no per-request data, so a Series holds one-minute Buckets.
//
// Azure Monitor reports a minute late and its counts grow for a while
// after the first report (Config.MetricsDelay, default 3m: a minute is
// settled once it ended that long ago). Series returns whole, settled
// minutes only, without a gap from the query's start: a minute that is
// still young, or that Azure has not reported, ends the Series there, and
// Complete is false until the minutes reach the query's end. The caller
// asks again from the end of the last bucket, so young minutes are read
// again until they settle and no minute is judged before then.
type MetricSource struct {
	cfg    Config
	logger *slog.Logger
	creds  *credentials

	mu     sync.Mutex
	client *armmonitor.MetricsClient
}

// NewMetricSource returns a metric source for cfg's app; like New, it
// builds the credential on first use.
func NewMetricSource(cfg Config, logger *slog.Logger) (*MetricSource, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	return newMetricSource(cfg, logger.With("component", "azure-metrics", "app", cfg.App), &credentials{cfg: cfg}), nil
}

// Unmeasurable says which analysis metrics Azure Monitor's platform
// metrics cannot give (rollout.MetricCapabilities): it has per-minute
// counts and a per-minute mean of the whole response time, nothing per
// request and nothing about tokens.
func (m *MetricSource) Unmeasurable() map[string]string {
	const perMinute = "Azure Monitor reports per-minute means of HttpResponseTime, not each request's latency (use --azure-app-insights for request-level latency)"
	return map[string]string{
		"ttft":           "App Service reports the time to the last byte (HttpResponseTime), not to the first token",
		"tokens_per_sec": "Azure Monitor counts requests, not tokens",
		"output_tokens":  "Azure Monitor counts requests, not tokens",
		"tail_latency":   perMinute,
		"slo:latency":    perMinute,
		"slo:ttft":       "App Service reports no time to the first token",
	}
}

func newMetricSource(cfg Config, logger *slog.Logger, creds *credentials) *MetricSource {
	return &MetricSource{cfg: cfg, logger: logger, creds: creds}
}

func (m *MetricSource) metrics() (*armmonitor.MetricsClient, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.client != nil {
		return m.client, nil
	}
	cred, err := m.creds.get()
	if err != nil {
		return nil, err
	}
	c, err := armmonitor.NewMetricsClient(m.cfg.SubscriptionID, cred, m.cfg.armOptions(m.cfg.MetricsClientOptions))
	if err != nil {
		return nil, modelslot.Wrapf(err, modelslot.EINVALID, "azure: cannot create the Azure Monitor client: %v", err)
	}
	m.client = c
	return c, nil
}

// ResourceID returns the ARM id of a slot of the app (production: the site).
func (m *MetricSource) ResourceID(slot string) string {
	id := "/subscriptions/" + m.cfg.SubscriptionID + "/resourceGroups/" + m.cfg.ResourceGroup +
		"/providers/Microsoft.Web/sites/" + m.cfg.App
	if slot != "" && slot != modelslot.Production && slot != modelslot.Self {
		id += "/slots/" + slot
	}
	return id
}

// Series returns one bucket per whole, settled minute of [q.From, q.To):
// minutes start at or after q.From (a minute that began before it belongs
// to whoever had the slot then) and end by q.To. Requests, Errors (Http5xx
// + Http4xx) and MeanLatency (HttpResponseTime's average). See MetricSource
// for when a minute is settled.
func (m *MetricSource) Series(ctx context.Context, q modelslot.MetricQuery) (modelslot.Series, error) {
	if q.App != m.cfg.App {
		return modelslot.Series{}, modelslot.Errorf(modelslot.ENOTFOUND, "metrics: app %q is not managed by this Azure metric source: it reads App Service app %q (--app)", q.App, m.cfg.App)
	}
	if !q.To.After(q.From) {
		return modelslot.Series{}, modelslot.Errorf(modelslot.EINVALID, "metrics: the window %s..%s is empty", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	delay := m.cfg.MetricsDelay
	if q.Settle > 0 {
		delay = q.Settle
	}
	from := ceilMinute(q.From.UTC())
	until := q.To.UTC().Truncate(metricGrain)
	if settled := m.cfg.Now().UTC().Add(-delay).Truncate(metricGrain); settled.Before(until) {
		until = settled
	}
	series := modelslot.Series{Slot: q.Slot, Buckets: []modelslot.Bucket{}}
	if !until.After(from) {
		return series, nil // no whole minute has settled yet
	}
	client, err := m.metrics()
	if err != nil {
		return modelslot.Series{}, err
	}
	slot := normSlot(q.Slot)
	if slot == "" {
		slot = modelslot.Production
	}
	ns := "Microsoft.Web/sites"
	if slot != modelslot.Production {
		ns = "Microsoft.Web/sites/slots"
	}
	resp, err := client.List(ctx, m.ResourceID(slot)[1:], &armmonitor.MetricsClientListOptions{
		Metricnames:     to.Ptr(metricNames),
		Metricnamespace: to.Ptr(ns),
		Interval:        to.Ptr("PT1M"),
		Aggregation:     to.Ptr("Total,Average"),
		Timespan:        to.Ptr(from.Format(time.RFC3339) + "/" + until.Format(time.RFC3339)),
	})
	if err != nil {
		return modelslot.Series{}, translate("metrics of slot "+slot, err)
	}

	type point struct {
		requests, errors, clientErrors *float64
		latency                        *float64
	}
	points := map[time.Time]*point{}
	at := func(t time.Time) *point {
		t = t.UTC().Truncate(metricGrain)
		p := points[t]
		if p == nil {
			p = &point{}
			points[t] = p
		}
		return p
	}
	for _, metric := range resp.Value {
		if metric == nil || metric.Name == nil {
			continue
		}
		name := deref(metric.Name.Value)
		for _, ts := range metric.Timeseries {
			if ts == nil {
				continue
			}
			for _, v := range ts.Data {
				if v == nil || v.TimeStamp == nil {
					continue
				}
				switch name {
				case metricRequests:
					at(*v.TimeStamp).requests = v.Total
				case metricHttp5xx:
					at(*v.TimeStamp).errors = v.Total
				case metricHttp4xx:
					at(*v.TimeStamp).clientErrors = v.Total
				case metricResponseTime:
					at(*v.TimeStamp).latency = v.Average
				}
			}
		}
	}

	end := from
	for t := from; t.Before(until); t = t.Add(metricGrain) {
		p := points[t]
		if p == nil || p.requests == nil {
			break // not reported: unknown, not quiet; the next call asks again
		}
		b := modelslot.Bucket{Start: t, Grain: metricGrain, Requests: int64(*p.requests + 0.5)}
		// Errors are failed requests as the gateway counts them
		// (modelslot.Sample.Failed): 5xx and 4xx, so that a slot whose new
		// key or model id is refused (401, 404) fails its rollout.
		var errs float64
		for _, e := range []*float64{p.errors, p.clientErrors} {
			if e != nil {
				errs += *e
			}
		}
		b.Errors = int64(errs + 0.5)
		if p.latency != nil {
			b.MeanLatency = time.Duration(*p.latency * float64(time.Second))
		}
		series.Buckets = append(series.Buckets, b)
		end = t.Add(metricGrain)
	}
	series.Complete = end.Equal(q.To)
	return series, nil
}

// ceilMinute rounds t up to a whole minute.
func ceilMinute(t time.Time) time.Time {
	if f := t.Truncate(metricGrain); !f.Equal(t) {
		return f.Add(metricGrain)
	}
	return t
}
