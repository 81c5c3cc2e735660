package dashboard_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/dashboard"
)

type apps map[string]*modelslot.App

func (a apps) App(_ context.Context, name string) (*modelslot.App, error) {
	if app := a[name]; app != nil {
		return app, nil
	}
	return nil, modelslot.Errorf(modelslot.ENOTFOUND, "no app %q", name)
}

type metrics map[string][]modelslot.Sample

func (m metrics) Series(_ context.Context, q modelslot.MetricQuery) (modelslot.Series, error) {
	out := modelslot.Series{Slot: q.Slot, Complete: true}
	for _, s := range m[q.Slot] {
		if !s.Time.Before(q.From) && s.Time.Before(q.To) {
			out.Samples = append(out.Samples, s)
		}
	}
	return out, nil
}

func TestDashboardSeries(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 5, 0, time.UTC) // 5s into a bucket
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	sample := func(ago time.Duration, status int, lat, ttft time.Duration, tokens int, rev string) modelslot.Sample {
		return modelslot.Sample{Time: at(ago), Status: status, Latency: lat, TTFT: ttft, OutputTokens: tokens, Revision: rev}
	}
	ms := time.Millisecond
	m := metrics{
		"production": {
			sample(20*time.Minute, 200, 100*ms, 10*ms, 10, "old"), // outside the window
			// bucket 11:59:50-12:00:00 (the one before the current)
			sample(14*time.Second, 200, 100*ms, 20*ms, 9, "aaa"),
			sample(13*time.Second, 200, 300*ms, 40*ms, 9, "aaa"),
			sample(12*time.Second, 500, 200*ms, 0, 0, "aaa"),
			sample(11*time.Second, 200, 400*ms, 60*ms, 9, "aaa"),
			// current bucket, 5s elapsed
			sample(2*time.Second, 200, 100*ms, 50*ms, 9, "aaa"),
		},
		"staging": {
			sample(9*time.Minute, 200, 100*ms, 10*ms, 10, "bbb"),
			sample(9*time.Minute+time.Second, 200, 100*ms, 10*ms, 10, "ccc"),
		},
	}
	a := apps{"chat": {Name: "chat", Slots: []*modelslot.Slot{
		{Name: "production", Deployment: &modelslot.Deployment{Revision: "aaa", Version: "v1"}},
		{Name: "staging", Deployment: &modelslot.Deployment{Revision: "ccc", Version: "v2"}},
		{Name: "empty"},
	}}}
	d := dashboard.New(dashboard.Config{
		Authorized: func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer t" },
		Token:      "t", Apps: a, Metrics: m, Now: func() time.Time { return now },
	})
	mux := http.NewServeMux()
	d.Mount(mux)

	req := httptest.NewRequest(http.MethodGet, "/ui/api/apps/chat/series?minutes=15", nil)
	req.Header.Set("Authorization", "Bearer t")
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got dashboard.Series
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	n := 90
	if len(got.Times) != n || got.StepSeconds != 10 {
		t.Fatalf("%d buckets of %ds, want %d of 10s", len(got.Times), got.StepSeconds, n)
	}
	if want := time.Date(2026, 3, 1, 12, 0, 10, 0, time.UTC); !got.To.Equal(want) {
		t.Errorf("to %v, want %v (the end of the current bucket)", got.To, want)
	}
	if want := got.To.Add(-15 * time.Minute).UnixMilli(); got.Times[0] != want {
		t.Errorf("first bucket at %d, want %d", got.Times[0], want)
	}
	if len(got.Slots) != 3 {
		t.Fatalf("%d slots, want 3 (every slot, with or without data)", len(got.Slots))
	}
	prod, stag, empty := got.Slots[0], got.Slots[1], got.Slots[2]
	if prod.Slot != "production" || prod.Version != "v1" || prod.Revision != "aaa" {
		t.Errorf("production: %s %s %s", prod.Slot, prod.Version, prod.Revision)
	}
	for _, s := range got.Slots {
		for name, col := range map[string]int{"requests": len(s.Requests), "rps": len(s.RPS), "errorRate": len(s.ErrorRate), "latencyP50": len(s.LatencyP50MS), "latencyP99": len(s.LatencyP99MS), "ttftP50": len(s.TTFTP50MS), "ttftP95": len(s.TTFTP95MS), "outputTokensPerSec": len(s.OutputTokensPerSec), "bucketRevision": len(s.BucketRevision)} {
			if col != n {
				t.Errorf("%s %s: %d values, want %d", s.Slot, name, col, n)
			}
		}
	}

	val := func(p *float64) any {
		if p == nil {
			return nil
		}
		return *p
	}
	prev, cur := n-2, n-1
	checks := []struct {
		name      string
		got, want any
	}{
		{"requests in the full bucket", prod.Requests[prev], 4},
		{"rps in the full bucket", prod.RPS[prev], 0.4},
		{"error rate", val(prod.ErrorRate[prev]), 0.25},
		{"latency p50", val(prod.LatencyP50MS[prev]), 300.0},
		{"latency p99", val(prod.LatencyP99MS[prev]), 400.0},
		{"ttft p50 (the failed request has none)", val(prod.TTFTP50MS[prev]), 40.0},
		{"ttft p95", val(prod.TTFTP95MS[prev]), 60.0},
		{"bucket revision", prod.BucketRevision[prev], "aaa"},
		{"rps over the current bucket's elapsed 5s", prod.RPS[cur], 0.2},
		{"output tokens/s in the full bucket", prod.OutputTokensPerSec[prev], 2.7},
		{"output tokens/s in the current bucket", prod.OutputTokensPerSec[cur], 1.8},
		{"empty bucket rps", prod.RPS[0], 0.0},
		{"empty bucket latency", val(prod.LatencyP50MS[0]), nil},
		{"empty bucket error rate", val(prod.ErrorRate[0]), nil},
		{"empty bucket revision", prod.BucketRevision[0], ""},
		{"revisions before and after a deploy", len(stag.Revisions), 2},
		{"slot without data", len(empty.Revisions), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}
