package daemon_test

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/modelslot/modelslot/sim"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP metrics receiver: it decodes each export
// and keeps the newest.
type otlpReceiver struct {
	mu      sync.Mutex
	exports int
	last    *colmetricpb.ExportMetricsServiceRequest
	path    string
	header  http.Header
	bad     string
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	msg := new(colmetricpb.ExportMetricsServiceRequest)
	if err == nil {
		err = proto.Unmarshal(b, msg)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/x-protobuf" {
		r.bad = req.Method + " " + req.Header.Get("Content-Type")
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	r.exports++
	r.last, r.path, r.header = msg, req.URL.Path, req.Header.Clone()
	out, _ := proto.Marshal(&colmetricpb.ExportMetricsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// metric finds a metric of the newest export by name, with the export's
// resource attributes.
func (r *otlpReceiver) metric(name string) (*metricpb.Metric, map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return nil, nil
	}
	for _, rm := range r.last.ResourceMetrics {
		attrs := map[string]string{}
		for _, kv := range rm.GetResource().GetAttributes() {
			attrs[kv.Key] = kv.GetValue().GetStringValue()
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name == name {
					return m, attrs
				}
			}
		}
	}
	return nil, nil
}

// requestsExported is the sum of modelslot_gateway_requests_total's
// points in the newest export, or -1 when it has none.
func (r *otlpReceiver) requestsExported() float64 {
	m, _ := r.metric("modelslot_gateway_requests_total")
	if m == nil || m.GetSum() == nil {
		return -1
	}
	var n float64
	for _, p := range m.GetSum().DataPoints {
		n += p.GetAsDouble()
	}
	return n
}

// TestOTLPExport: with otlp.endpoint set, the metrics of /metrics reach an
// OTLP receiver every interval under the same names, counters as
// cumulative monotonic sums and histograms as histograms, with the
// configured headers (${ENV} read from the environment); the stop sends a last export with the final counts.
func TestOTLPExport(t *testing.T) {
	recv := &otlpReceiver{}
	srv := httptest.NewServer(recv)
	defer srv.Close()

	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OTLP = config.OTLP{
		Endpoint: srv.URL, // no path: /v1/metrics
		Interval: modelslot.Duration(time.Second),
		Headers:  map[string]string{"X-Api-Key": "${COLLECTOR_KEY}"},
	}
	t.Setenv("COLLECTOR_KEY", "collector-key")
	e := startDaemonWith(t, cfg)
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 3})
	e.deploy("production", v1, "v1")
	for range 5 {
		e.chat(nil)
	}
	waitFor(t, "an export with the 5 requests", 20*time.Second, func() bool {
		return recv.requestsExported() >= 5
	})

	recv.mu.Lock()
	path, key, bad := recv.path, recv.header.Get("X-Api-Key"), recv.bad
	recv.mu.Unlock()
	if path != "/v1/metrics" || key != "collector-key" || bad != "" {
		t.Errorf("export to %q with X-Api-Key %q (bad exports: %q), want /v1/metrics, collector-key and none bad", path, key, bad)
	}
	m, res := recv.metric("modelslot_gateway_requests_total")
	if res["service.name"] != "modelslot" || res["service.instance.id"] == "" {
		t.Errorf("resource %v, want service.name modelslot and an instance id", res)
	}
	if s := m.GetSum(); !s.IsMonotonic || s.AggregationTemporality != metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE {
		t.Errorf("requests_total: monotonic %v, temporality %v: want a cumulative monotonic sum", s.IsMonotonic, s.AggregationTemporality)
	}
	labels := map[string]string{}
	for _, kv := range m.GetSum().DataPoints[0].Attributes {
		labels[kv.Key] = kv.GetValue().GetStringValue()
	}
	if labels["app"] != "default" || labels["slot"] != "production" || labels["code"] != "200" {
		t.Errorf("requests_total's labels %v, want those of /metrics (app, slot, code)", labels)
	}
	h, _ := recv.metric("modelslot_gateway_request_duration_seconds")
	if h.GetHistogram() == nil || len(h.GetHistogram().DataPoints) == 0 || h.GetHistogram().DataPoints[0].GetCount() < 5 {
		t.Errorf("request_duration_seconds exported as %v, want a histogram of at least 5 requests", h)
	}

	// The stop's last export counts what was served since the last tick.
	for range 3 {
		e.chat(nil)
	}
	recv.mu.Lock()
	before := recv.exports
	recv.mu.Unlock()
	e.stop()
	recv.mu.Lock()
	after := recv.exports
	recv.mu.Unlock()
	if after <= before || recv.requestsExported() < 8 {
		t.Errorf("after the stop: %d exports (%d before it), %v requests in the last; want a last export with all 8", after, before, recv.requestsExported())
	}
}

// TestOTLPReceiverDown: a receiver that cannot be reached costs the
// gateway nothing: requests are served and the daemon stops in time.
func TestOTLPReceiverDown(t *testing.T) {
	ln := httptest.NewServer(http.NotFoundHandler())
	dead := ln.URL
	ln.Close() // a loopback port nobody listens on

	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OTLP = config.OTLP{Endpoint: dead + "/otlp/v1/metrics", Interval: modelslot.Duration(time.Second)}
	e := startDaemonWith(t, cfg)
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 3})
	e.deploy("production", v1, "v1")
	deadline := time.Now().Add(2500 * time.Millisecond) // two failed exports
	for time.Now().Before(deadline) {
		e.chat(nil)
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.d.Close(ctx); err != nil {
		t.Errorf("stop with the receiver down: %v", err)
	}
	e.d = nil
}

// TestOTLPHeaderFromMissingEnv: a header that reads an unset variable
// stops the start with the variable's name, before anything runs.
func TestOTLPHeaderFromMissingEnv(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	cfg.OTLP = config.OTLP{Endpoint: "http://127.0.0.1:4318", Headers: map[string]string{"X-Api-Key": "${MODELSLOT_TEST_UNSET_KEY}"}}
	_, err := daemon.Start(context.Background(), daemon.Options{Config: cfg, Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), "otlp.headers X-Api-Key reads ${MODELSLOT_TEST_UNSET_KEY}") {
		t.Fatalf("start: %v, want an error naming the header and the variable", err)
	}
}
