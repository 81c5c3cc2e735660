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
