package promql_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/promql"
)

// fakeProm answers /api/v1/query_range with canned values: each query is
// looked up by its first word, and every point of the range gets the value.
type fakeProm struct {
	mu      sync.Mutex
	queries []string
	values  map[string]string // metric name -> value ("NaN" allowed)
	series  int               // how many series each answer has (default 1)
	status  int               // non-zero: fail with this status
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/v1/query_range" {
		http.NotFound(w, r)
		return
	}
	r.ParseForm()
	q := r.Form.Get("query")
	f.mu.Lock()
	f.queries = append(f.queries, q)
	status, nseries := f.status, f.series
	name := strings.FieldsFunc(q, func(r rune) bool { return r == '{' || r == '(' || r == ' ' })[0]
	val, ok := f.values[name]
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if status != 0 {
		w.WriteHeader(status)
		fmt.Fprint(w, `{"status":"error","errorType":"execution","error":"boom"}`)
		return
	}
	start, _ := strconv.ParseFloat(r.Form.Get("start"), 64)
	end, _ := strconv.ParseFloat(r.Form.Get("end"), 64)
	step, _ := strconv.ParseFloat(r.Form.Get("step"), 64)
	var result []map[string]any
	if ok {
		if nseries == 0 {
			nseries = 1
		}
		for s := 0; s < nseries; s++ {
			var points [][2]any
			for t := start; t <= end+1e-9; t += step {
				points = append(points, [2]any{t, val})
			}
			result = append(result, map[string]any{"metric": map[string]string{"n": strconv.Itoa(s)}, "values": points})
		}
	}
	json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "matrix", "result": result}})
}

func newSource(t *testing.T, f *fakeProm, lag time.Duration, now time.Time) *promql.Source {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	s, err := promql.New(promql.Config{
		URL: srv.URL,
		Queries: map[string]string{
			promql.Requests:     `reqs{app="{{.App}}",slot="{{.Slot}}"}[{{.Window}}]`,
			promql.Errors:       `errs{slot="{{.Slot}}"}[{{.Window}}]`,
			promql.LatencyMean:  `lat{slot="{{.Slot}}"}`,
			promql.TTFTMean:     `ttft{slot="{{.Slot}}"}`,
			promql.TokensPerSec: `tps{slot="{{.Slot}}"}`,
		},
		Step: 30 * time.Second,
		Lag:  lag,
		Now:  func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSeriesBuckets(t *testing.T) {
	f := &fakeProm{values: map[string]string{"reqs": "100.4", "errs": "3", "lat": "1.5", "ttft": "0.25", "tps": "42"}}
	from := time.Unix(1_700_000_000, 0)
	s := newSource(t, f, 0, from.Add(time.Hour))
	got, err := s.Series(context.Background(), modelslot.MetricQuery{App: "chat", Slot: "staging", From: from, To: from.Add(95 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Complete {
		t.Error("Complete = true for a range that ends 5s into a step")
	}
	if len(got.Buckets) != 3 {
		t.Fatalf("got %d buckets, want 3 whole steps", len(got.Buckets))
	}
	want := modelslot.Bucket{Start: from.Add(60 * time.Second), Grain: 30 * time.Second, Requests: 100, Errors: 3,
		MeanLatency: 1500 * time.Millisecond, MeanTTFT: 250 * time.Millisecond, MeanTokensPerSec: 42}
	if b := got.Buckets[2]; !b.Start.Equal(want.Start) || b.Grain != want.Grain || b.Requests != want.Requests || b.Errors != want.Errors ||
		b.MeanLatency != want.MeanLatency || b.MeanTTFT != want.MeanTTFT || b.MeanTokensPerSec != want.MeanTokensPerSec {
		t.Errorf("bucket = %+v\nwant     %+v", b, want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if q := f.queries[0]; q != `reqs{app="chat",slot="staging"}[30s]` {
		t.Errorf("query = %q", q)
	}
}

func TestSeriesCompleteAndShortRange(t *testing.T) {
	f := &fakeProm{values: map[string]string{"reqs": "10", "errs": "0"}}
	from := time.Unix(1_700_000_000, 0)
	s := newSource(t, f, 0, from.Add(time.Hour))
	ctx := context.Background()
	got, err := s.Series(ctx, modelslot.MetricQuery{App: "chat", Slot: "staging", From: from, To: from.Add(60 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Complete || len(got.Buckets) != 2 {
		t.Errorf("Complete=%v buckets=%d, want true and 2", got.Complete, len(got.Buckets))
	}
	got, err = s.Series(ctx, modelslot.MetricQuery{App: "chat", Slot: "staging", From: from, To: from.Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if got.Complete || len(got.Buckets) != 0 {
		t.Errorf("shorter than a step: Complete=%v buckets=%d, want false and 0", got.Complete, len(got.Buckets))
	}
}

func TestSeriesLagHoldsBackRecentBuckets(t *testing.T) {
	f := &fakeProm{values: map[string]string{"reqs": "10", "errs": "0"}}
	from := time.Unix(1_700_000_000, 0)
	now := from.Add(90 * time.Second)
	s := newSource(t, f, 15*time.Second, now)
	got, err := s.Series(context.Background(), modelslot.MetricQuery{App: "chat", Slot: "staging", From: from, To: now})
	if err != nil {
		t.Fatal(err)
	}
	if got.Complete || len(got.Buckets) != 2 {
		t.Errorf("Complete=%v buckets=%d, want false and 2 (the last step is younger than the lag)", got.Complete, len(got.Buckets))
	}
}

func TestSeriesNoDataAndNaN(t *testing.T) {
	// No request series at all, and 0/0 means: zero buckets, not errors.
	f := &fakeProm{values: map[string]string{"errs": "5", "lat": "NaN"}, series: 2}
	from := time.Unix(1_700_000_000, 0)
	s := newSource(t, f, 0, from.Add(time.Hour))
	got, err := s.Series(context.Background(), modelslot.MetricQuery{App: "chat", Slot: "staging", From: from, To: from.Add(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Buckets) != 1 {
		t.Fatalf("buckets = %d, want 1", len(got.Buckets))
	}
	if b := got.Buckets[0]; b.Requests != 0 || b.Errors != 0 || b.MeanLatency != 0 {
		t.Errorf("bucket = %+v, want zero requests, errors clamped to requests, no latency", b)
	}
}

func TestSeriesPrometheusDown(t *testing.T) {
	f := &fakeProm{status: http.StatusServiceUnavailable}
	from := time.Unix(1_700_000_000, 0)
	s := newSource(t, f, 0, from.Add(time.Hour))
	_, err := s.Series(context.Background(), modelslot.MetricQuery{App: "chat", Slot: "staging", From: from, To: from.Add(time.Minute)})
	if code := modelslot.ErrorCode(err); code != modelslot.EUNAVAILABLE {
		t.Errorf("error code = %q (%v), want %q", code, err, modelslot.EUNAVAILABLE)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  promql.Config
		want string
	}{
		{"no url", promql.Config{}, "url is required"},
		{"unknown query", promql.Config{URL: "http://x", Queries: map[string]string{"requests": "a", "errors": "b", "p99": "c"}}, "queries.p99: unknown query"},
		{"missing errors", promql.Config{URL: "http://x", Queries: map[string]string{"requests": "a"}}, "queries.errors is required"},
		{"bad field", promql.Config{URL: "http://x", Queries: map[string]string{"requests": "{{.Sloot}}", "errors": "b"}}, "queries.requests"},
		{"fractional step", promql.Config{URL: "http://x", Step: 1500 * time.Millisecond}, "whole number of seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := promql.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || modelslot.ErrorCode(err) != modelslot.EINVALID {
				t.Errorf("New: %v, want an invalid error containing %q", err, tc.want)
			}
		})
	}
	for _, qs := range []map[string]string{promql.VLLMQueries(), promql.OTelQueries()} {
		s, err := promql.New(promql.Config{URL: "http://x", Queries: qs})
		if err != nil {
			t.Fatalf("default queries: %v", err)
		}
		q, _ := s.Query(promql.Requests, "chat", "staging")
		if !strings.Contains(q, `app="chat",slot="staging"`) || !strings.Contains(q, "[30s]") {
			t.Errorf("query = %q", q)
		}
	}
}
