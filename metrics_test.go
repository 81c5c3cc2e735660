package modelslot_test

import (
	"math"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
)

func TestTokensPerSecond(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    modelslot.Sample
		want float64
	}{
		{"stream", modelslot.Sample{Latency: 1100 * time.Millisecond, TTFT: 100 * time.Millisecond, OutputTokens: 101}, 100},
		{"non-streaming: all tokens at once", modelslot.Sample{Latency: 2 * time.Second, TTFT: 2 * time.Second, OutputTokens: 100}, 50},
		{"first byte just before the end", modelslot.Sample{Latency: time.Second, TTFT: 999 * time.Millisecond, OutputTokens: 10}, 10},
		{"no tokens", modelslot.Sample{Latency: time.Second}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.TokensPerSecond(); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("got %g, want %g", got, tc.want)
			}
		})
	}
}

func TestSampleFailed(t *testing.T) {
	for status, want := range map[int]bool{
		0: true, 200: false, 204: false, 301: false, 400: true, 401: true, 403: true, 404: true,
		413: true, 429: true, 499: false, 500: true, 502: true, 503: true, 504: true,
	} {
		if got := (modelslot.Sample{Status: status}).Failed(); got != want {
			t.Errorf("status %d: Failed() = %v, want %v", status, got, want)
		}
	}
	if (modelslot.Sample{Status: 401}).IsError() {
		t.Error("a 401 is not a server error (IsError), only a failed request")
	}
}
