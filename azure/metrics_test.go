package azure_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/azure"
	"github.com/modelslot/modelslot/azure/azuretest"
)

func TestMetricSeries(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	site.SetNow(func() time.Time { return now })
	base := time.Date(2026, 3, 1, 11, 50, 0, 0, time.UTC)
	var points []azuretest.MetricPoint
	for i := range 8 { // 11:50 .. 11:57
		points = append(points, azuretest.MetricPoint{Time: base.Add(time.Duration(i) * time.Minute), Requests: 100, Http5xx: float64(i), Http4xx: 3, ResponseTime: 0.25})
	}
	site.SetMetrics("staging", points...)
	ms, err := azure.NewMetricSource(site.Config(), nil)
	if err != nil {
		t.Fatal(err)
	}

	// 11:50:10..11:55 is older than the 3-minute reporting delay: complete.
	// The minute 11:50 began before the window: it is not the window's.
	s, err := ms.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: "staging", From: base.Add(10 * time.Second), To: base.Add(5 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Complete {
		t.Error("Complete = false for a window older than the reporting delay")
	}
	if len(s.Buckets) != 4 || !s.Buckets[0].Start.Equal(base.Add(time.Minute)) {
		t.Fatalf("buckets = %+v, want 4 from 11:51", s.Buckets)
	}
	b := s.Buckets[1]
	if !b.Start.Equal(base.Add(2*time.Minute)) || b.Grain != time.Minute || b.Requests != 100 || b.Errors != 2+3 || b.MeanLatency != 250*time.Millisecond {
		t.Errorf("bucket 1 = %+v, want 11:52, 100 requests, 5 errors (2 Http5xx + 3 Http4xx), 250ms", b)
	}
	req, ok := site.LastRequest(http.MethodGet, "/providers/Microsoft.Insights/metrics")
	if !ok {
		t.Fatal("no metrics request")
	}
	if !strings.Contains(req.Path, "/providers/Microsoft.Web/sites/llm/slots/staging/providers/") {
		t.Errorf("path = %s, want the slot's resource id", req.Path)
	}
	for k, want := range map[string]string{
		"metricnames":     "Requests,Http5xx,Http4xx,HttpResponseTime",
		"interval":        "PT1M",
		"aggregation":     "Total,Average",
		"timespan":        "2026-03-01T11:51:00Z/2026-03-01T11:55:00Z",
		"metricnamespace": "Microsoft.Web/sites/slots",
	} {
		if got := req.Query.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	// 11:55..12:00: only 11:55 and 11:56 are older than the delay; the
	// minutes after them are not returned although Azure has some data.
	s, err = ms.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: "staging", From: base.Add(5 * time.Minute), To: base.Add(10 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Complete {
		t.Error("Complete = true although the last minutes have not settled yet")
	}
	if len(s.Buckets) != 2 || !s.Buckets[1].Start.Equal(base.Add(6*time.Minute)) {
		t.Errorf("buckets = %+v, want the 2 settled minutes 11:55 and 11:56", s.Buckets)
	}

	// A missing minute in an old window is unknown, not quiet: the series
	// stops before it, and the caller asks again from there.
	site.SetMetrics("staging", points[0], points[2])
	s, err = ms.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: "staging", From: base, To: base.Add(3 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if s.Complete || len(s.Buckets) != 1 {
		t.Errorf("Complete = %v with %d buckets, want false with 1", s.Complete, len(s.Buckets))
	}

	// Production is the site itself.
	if _, err := ms.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: modelslot.Production, From: base, To: base.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	req, _ = site.LastRequest(http.MethodGet, "/providers/Microsoft.Insights/metrics")
	if !strings.HasSuffix(req.Path, "/providers/Microsoft.Web/sites/llm/providers/Microsoft.Insights/metrics") {
		t.Errorf("production path = %s", req.Path)
	}

	_, err = ms.Series(ctx(t), modelslot.MetricQuery{App: "other", Slot: "staging", From: base, To: base.Add(time.Minute)})
	wantCode(t, err, modelslot.ENOTFOUND, "--app")
	_, err = ms.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: "staging", From: base, To: base})
	wantCode(t, err, modelslot.EINVALID, "empty")
	site.Fail(azuretest.Fault{PathSuffix: "/Microsoft.Insights/metrics", Status: 403})
	_, err = ms.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: "staging", From: base, To: base.Add(time.Minute)})
	wantCode(t, err, modelslot.EFORBIDDEN, "Microsoft.Insights/metrics/read", "Monitoring Reader")
}

// TestMetricSeriesSettled: Azure's counts for a young minute are partial
// and its errors arrive last; such a minute is never returned, and it is
// returned whole once it has settled.
func TestMetricSeriesSettled(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	site.SetNow(clock)
	site.SetMetricsLag(3 * time.Minute)
	site.SetMetricsFunc(func(slot, image string, minute time.Time) (azuretest.MetricPoint, bool) {
		return azuretest.MetricPoint{Time: minute, Requests: 100, Http5xx: 20, ResponseTime: 0.3}, true
	})
	ms, err := azure.NewMetricSource(site.Config(), nil)
	if err != nil {
		t.Fatal(err)
	}
	phase := time.Date(2026, 3, 1, 11, 55, 20, 0, time.UTC)
	read := func(settle time.Duration) modelslot.Series {
		t.Helper()
		s, err := ms.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: "staging", From: phase, To: clock(), Settle: settle})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	minutes := func(s modelslot.Series) (out []string) {
		for _, b := range s.Buckets {
			out = append(out, b.Start.Format("15:04"))
			if b.Requests != 100 || b.Errors != 20 {
				t.Errorf("minute %s judged with %d requests and %d errors, want the settled 100 and 20", b.Start.Format("15:04"), b.Requests, b.Errors)
			}
		}
		return out
	}
	// At 12:00:30 the minutes up to 11:57 have settled; 11:57..11:59 are
	// reported partially (without their errors) and must not be returned.
	s := read(0)
	if got := strings.Join(minutes(s), ","); got != "11:56" || s.Complete {
		t.Errorf("minutes = %s (complete %v), want 11:56 only, incomplete", got, s.Complete)
	}
	mu.Lock()
	now = now.Add(3 * time.Minute)
	mu.Unlock()
	if got := strings.Join(minutes(read(0)), ","); got != "11:56,11:57,11:58,11:59" {
		t.Errorf("three minutes later: minutes = %s, want 11:56 to 11:59", got)
	}
	// The plan's delay (MetricQuery.Settle) replaces the source's: with 5m
	// only the minutes that ended 5 minutes ago count.
	if got := strings.Join(minutes(read(5*time.Minute)), ","); got != "11:56,11:57" {
		t.Errorf("with a 5m delay: minutes = %s, want 11:56 and 11:57", got)
	}
}

// TestRolloutOnFakeAzure runs what a rollout does, through the Platform and
// MetricSource interfaces only: a good version is canaried and promoted; a
// bad one is promoted, judged on production's metrics and swapped back.
func TestRolloutOnFakeAzure(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	site := azuretest.NewFakeSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	site.SetNow(func() time.Time { return now })
	// Metrics follow the image: v3 fails a fifth of its requests.
	site.SetMetricsFunc(func(slot, image string, minute time.Time) (azuretest.MetricPoint, bool) {
		p := azuretest.MetricPoint{Time: minute, Requests: 50, ResponseTime: 0.4}
		if image == "llm:v3" {
			p.Http5xx = 10
		}
		return p, true
	})
	d, _ := newDriver(t, site)
	var platform modelslot.Platform = d
	var metrics modelslot.MetricSource = d.MetricSource()
	errorRate := func(slot string) float64 {
		t.Helper()
		s, err := metrics.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: slot, From: now.Add(-15 * time.Minute), To: now.Add(-5 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if !s.Complete {
			t.Fatalf("series of %s incomplete", slot)
		}
		var req, errs int64
		for _, b := range s.Buckets {
			req += b.Requests
			errs += b.Errors
		}
		return float64(errs) / float64(req)
	}
	release := func(image, version string) {
		deploy(t, d, site, "staging", image, version)
		if _, err := platform.SetTraffic(ctx(t), site.App, []modelslot.TrafficRule{{Slot: "staging", Percent: 10}}, modelslot.TrafficOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := platform.SetTraffic(ctx(t), site.App, nil, modelslot.TrafficOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := platform.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"}); err != nil {
			t.Fatal(err)
		}
	}

	release("llm:v2", "v2")
	if r := errorRate(modelslot.Production); r != 0 {
		t.Fatalf("v2 error rate %v", r)
	}
	release("llm:v3", "v3")
	if r := errorRate(modelslot.Production); r < 0.1 {
		t.Fatalf("v3 error rate %v, want the bad version's", r)
	}
	if _, err := platform.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging", Actor: "rollout"}); err != nil {
		t.Fatal(err)
	}
	app, err := platform.App(ctx(t), site.App)
	if err != nil {
		t.Fatal(err)
	}
	if got := app.Slot(modelslot.Production).Deployment.Version; got != "v2" {
		t.Errorf("production runs %s after the rollback, want v2", got)
	}
	if r := errorRate(modelslot.Production); r != 0 {
		t.Errorf("production error rate after the rollback %v", r)
	}
}
