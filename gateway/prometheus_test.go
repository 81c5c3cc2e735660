package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gathered sums, over every series of the named metric whose labels
// include want, the counter or gauge value, or the histogram's count.
func gathered(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) (sum float64, series int) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			series++
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				sum += m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				sum += m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum, series
}

// TestPrometheusConventions: the code label holds status codes; a
// non-streamed answer stays out of the TTFT and time-per-output-token
// histograms; input and output tokens are counted from usage; in-flight
// requests, traffic weights and the routing generation are reported per
// slot and app.
func TestPrometheusConventions(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.RawQuery, "hold"):
			<-release
			w.Write([]byte(`{}`))
		case strings.Contains(r.URL.RawQuery, "missing"):
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"message":"no such model"}}`))
		case strings.Contains(r.URL.RawQuery, "stream"):
			w.Header().Set("Content-Type", "text/event-stream")
			for _, c := range []string{"a", "b", "c"} {
				fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":%q}}]}\n\n", c)
				w.(http.Flusher).Flush()
				time.Sleep(2 * time.Millisecond)
			}
			fmt.Fprint(w, "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n")
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"choices":[{"message":{"content":"hello"}}],"usage":{"prompt_tokens":11,"completion_tokens":5}}`))
		}
	}))
	defer ts.Close()
	reg := prometheus.NewRegistry()
	g, _ := benchGateway(t, Config{Registerer: reg}, ts.URL, "")
	url := front(t, g)
	do := func(query string) int {
		resp, err := http.Post(url+"/v1/chat/completions?"+query, "application/json", strings.NewReader(`{"model":"default"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	from := time.Now().Add(-time.Second)
	if code := do("stream"); code != 200 {
		t.Fatalf("stream: status %d", code)
	}
	if code := do("plain"); code != 200 {
		t.Fatalf("plain: status %d", code)
	}
	if code := do("missing"); code != 404 {
		t.Fatalf("missing: status %d", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(meterSamples(t, g, from)) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}

	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"modelslot_gateway_requests_total", map[string]string{"code": "200"}, 2},
		{"modelslot_gateway_requests_total", map[string]string{"code": "404"}, 1},
		{"modelslot_gateway_requests_total", map[string]string{"code": "2xx"}, 0},
		{"modelslot_gateway_request_duration_seconds", nil, 3},
		{"modelslot_gateway_time_to_first_token_seconds", nil, 1},
		{"modelslot_gateway_time_per_output_token_seconds", nil, 1},
		{"modelslot_gateway_streamed_requests_total", nil, 1},
		{"modelslot_gateway_input_tokens_total", nil, 18},
		{"modelslot_gateway_output_tokens_total", nil, 8},
		{"modelslot_gateway_traffic_weight_ratio", map[string]string{"slot": "production"}, 0.9},
		{"modelslot_gateway_traffic_weight_ratio", map[string]string{"slot": "staging"}, 0.1},
		{"modelslot_gateway_routing_generation", map[string]string{"app": "default"}, 3},
		{"modelslot_gateway_in_flight_requests", nil, 0},
	} {
		if got, _ := gathered(t, reg, tc.name, tc.labels); got < tc.want-1e-9 || got > tc.want+1e-9 {
			t.Errorf("%s%v = %g, want %g", tc.name, tc.labels, got, tc.want)
		}
	}

	done := make(chan int)
	go func() {
		resp, err := http.Post(url+"/v1/chat/completions?hold", "application/json", strings.NewReader(`{"model":"default"}`))
		if err != nil {
			done <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	deadline = time.Now().Add(10 * time.Second)
	for {
		got, series := gathered(t, reg, "modelslot_gateway_in_flight_requests", nil)
		if series != 2 {
			t.Fatalf("in-flight gauge: %d series, want one per slot", series)
		}
		if got == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("in-flight gauge %g while a request is held, want 1", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if code := <-done; code != 200 {
		t.Fatalf("held request: status %d", code)
	}
}
