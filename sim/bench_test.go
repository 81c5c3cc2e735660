package sim_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelslot/modelslot/sim"
)

// discard is a ResponseWriter that keeps nothing, so the benchmark measures
// the handler rather than a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkChatCompletion is the zero-latency backend path a gateway
// benchmark leans on.
func BenchmarkChatCompletion(b *testing.B) {
	s := sim.New(sim.Config{Model: "bench"})
	const body = `{"model":"bench","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"what is the capital of France?"}],"max_tokens":16}`
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	w := &discard{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		r := *req
		r.Body = readCloser{strings.NewReader(body)}
		clear(w.h)
		s.ServeHTTP(w, &r)
	}
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }
