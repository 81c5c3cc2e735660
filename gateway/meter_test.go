package gateway

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
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
			samples := meterSamples(t, g, from)
			if len(samples) != 1 {
				t.Fatalf("%d samples, want 1", len(samples))
			}
			if got := samples[0].Failed(); got != tc.failed {
				t.Errorf("sample %+v: failed %v, want %v (events %s)", samples[0], got, tc.failed, strings.Join(tc.events, " | "))
			}
		})
	}
}

// The meter counts a stream's output tokens, tool-call arguments included,
// and says whether a 0 is a count (an empty answer) or unknown (a
// non-streamed answer without usage).
func TestMeterCountsOutputTokens(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ct      string
		body    string
		tokens  int
		counted bool
	}{
		{"stream", "text/event-stream", "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]\n\n", 2, true},
		{"tool-call stream", "text/event-stream", "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"x\\\"\"}}]}}]}\n\ndata: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\":1}\"}}]}}]}\n\ndata: [DONE]\n\n", 2, true},
		{"empty stream", "text/event-stream", "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: [DONE]\n\n", 0, true},
		{"answer with usage", "application/json", `{"choices":[{"message":{"content":""}}],"usage":{"prompt_tokens":5,"completion_tokens":0}}`, 0, true},
		{"answer without usage", "application/json", `{"choices":[{"message":{"content":"hello"}}]}`, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ct)
				fmt.Fprint(w, tc.body)
			}))
			defer ts.Close()
			g, _ := benchGateway(t, Config{}, ts.URL, "")
			from := time.Now().Add(-time.Second)
			if code, _, _ := post(t, front(t, g), `{"model":"default"}`); code != 200 {
				t.Fatalf("status %d", code)
			}
			samples := meterSamples(t, g, from)
			if len(samples) != 1 || samples[0].OutputTokens != tc.tokens || samples[0].TokensCounted != tc.counted {
				t.Errorf("samples %+v: want %d tokens, counted %v", samples, tc.tokens, tc.counted)
			}
		})
	}
}

// meterSamples returns the samples metered since from, in both slots. The
// gateway records a request after its last byte went out, so the client can
// be done a moment before the sample is there: wait for one.
func meterSamples(t *testing.T, g *Gateway, from time.Time) []modelslot.Sample {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var samples []modelslot.Sample
		for _, slot := range []string{modelslot.Production, "staging"} {
			sr, err := g.Meter().Series(context.Background(), modelslot.MetricQuery{App: "default", Slot: slot, From: from, To: time.Now().Add(time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			samples = append(samples, sr.Samples...)
		}
		if len(samples) > 0 || time.Now().After(deadline) {
			return samples
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIndexTokens checks the meter's search for "completion_tokens": and
// "prompt_tokens": against bytes.Index, on answers and on random bytes
// made of the search's own pieces.
func TestIndexTokens(t *testing.T) {
	cases := []string{
		benchAnswer,
		`{"usage":{"prompt_tokens":9,"completion_tokens":6,"total_tokens":15,"completion_tokens_details":{"reasoning_tokens":0}}}`,
		`_tokens":_tokens":"prompt_tokens":1`,
		`prompt_tokens":1`, `"prompt_tokens"`, `"prompt_tokens":`, ``, `_`, `"completion_tokens":"prompt_tokens":2`,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{`"`, `_`, `tokens":`, `prompt`, `completion`, `_tokens":`, `x`, `"prompt_tokens":`, `"completion_tokens":`, `3`}
	for range 5000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		cases = append(cases, b.String())
	}
	for _, c := range cases {
		for _, tok := range [][]byte{tokUsage, tokPrompt} {
			if got, want := indexTokens([]byte(c), tok), bytes.Index([]byte(c), tok); got != want {
				t.Fatalf("indexTokens(%q, %q) = %d, want %d", c, tok, got, want)
			}
		}
	}
}
