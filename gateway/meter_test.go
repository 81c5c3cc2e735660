package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
)

// A stream that fails after its 200 sends an error event (OpenAI's and
// vLLM's `data: {"error": ...}`): the user got an error, so the meter
// records a failed request, which the rollout analysis counts. A stream
// whose content merely mentions "error" stays a success.
func TestMeterCountsErrorEventsInStreams(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []string
		failed bool
	}{
		{"clean", []string{`{"choices":[{"delta":{"content":"hi"}}]}`, `[DONE]`}, false},
		{"content about an error", []string{`{"choices":[{"delta":{"content":"{\"error\": 1}"}}]}`, `[DONE]`}, false},
		{"error after tokens", []string{`{"choices":[{"delta":{"content":"hi"}}]}`, `{"error":{"message":"engine died","type":"InternalServerError","code":500}}`}, true},
		{"error with a space", []string{` {"error":{"message":"context too long","code":400}}`}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				for _, ev := range tc.events {
					fmt.Fprintf(w, "data: %s\n\n", ev)
					w.(http.Flusher).Flush()
				}
			}))
			defer ts.Close()
			g, _ := benchGateway(t, Config{}, ts.URL, "")
			url := front(t, g)
			from := time.Now().Add(-time.Second)
			code, _, _ := post(t, url, `{"model":"default","stream":true}`)
			if code != 200 {
				t.Fatalf("status %d", code)
			}
			var samples []modelslot.Sample
			for _, slot := range []string{modelslot.Production, "staging"} {
				sr, err := g.Meter().Series(context.Background(), modelslot.MetricQuery{App: "default", Slot: slot, From: from, To: time.Now().Add(time.Second)})
				if err != nil {
					t.Fatal(err)
				}
				samples = append(samples, sr.Samples...)
			}
			if len(samples) != 1 {
				t.Fatalf("%d samples, want 1", len(samples))
			}
			if got := samples[0].Failed(); got != tc.failed {
				t.Errorf("sample %+v: failed %v, want %v (events %s)", samples[0], got, tc.failed, strings.Join(tc.events, " | "))
			}
		})
	}
}
