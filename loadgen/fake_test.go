package loadgen_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeOpenAI is an OpenAI-compatible chat completions server for tests.
// Each request gets a number, in arrival order, starting at 0.
type fakeOpenAI struct {
	// Tokens is the number of content events (streaming) and the length
	// in words of the answer (non-streaming). Default 4.
	Tokens int
	// Usage, when >= 0, is reported as usage.completion_tokens; -1 sends
	// no usage object. Default 0 means: report Tokens.
	Usage int
	// FirstDelay is slept before the first content event (or the
	// response), EventDelay between content events.
	FirstDelay, EventDelay func(n int) time.Duration
	// Before, when set, is called with the request number before the
	// response is written; it may block (a stall).
	Before func(n int)
	// Fail, when set, returns how request n fails: "" (no failure), an
	// HTTP status such as "500", "hang" (until the client gives up),
	// "close" (drop the connection without a response), "break" (end the
	// stream without [DONE]) or "garbage" (a malformed event).
	Fail func(n int) string
	// Serial makes the server handle one request at a time.
	Serial bool

	serial sync.Mutex
	mu     sync.Mutex
	n      int
	bodies []map[string]any
}

func (f *fakeOpenAI) start(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return srv
}

func (f *fakeOpenAI) requests() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.bodies...)
}

func (f *fakeOpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	data, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(data, &body); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	n := f.n
	f.n++
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	if f.Serial {
		f.serial.Lock()
		defer f.serial.Unlock()
	}
	if f.Before != nil {
		f.Before(n)
	}
	tokens := f.Tokens
	if tokens == 0 {
		tokens = 4
	}
	usage := f.Usage
	if usage == 0 {
		usage = tokens
	}
	fail := ""
	if f.Fail != nil {
		fail = f.Fail(n)
	}
	switch fail {
	case "":
	case "hang":
		<-r.Context().Done()
		return
	case "close":
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case "break", "garbage":
	default:
		var code int
		fmt.Sscan(fail, &code)
		http.Error(w, `{"error":{"message":"failed"}}`, code)
		return
	}
	sleep := func(d func(int) time.Duration) {
		if d != nil {
			time.Sleep(d(n))
		}
	}
	stream, _ := body["stream"].(bool)
	if !stream {
		sleep(f.FirstDelay)
		answer := ""
		for i := range tokens {
			answer += fmt.Sprintf("w%d ", i)
		}
		resp := map[string]any{
			"id":      "x",
			"object":  "chat.completion",
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": answer}}},
		}
		if usage >= 0 {
			resp["usage"] = map[string]any{"prompt_tokens": 3, "completion_tokens": usage}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	event := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		fl.Flush()
	}
	delta := func(d map[string]any) map[string]any {
		return map[string]any{"object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0, "delta": d}}}
	}
	event(delta(map[string]any{"role": "assistant", "content": ""}))
	fmt.Fprint(w, ": keep-alive comment\n\n")
	sleep(f.FirstDelay)
	for i := range tokens {
		if i > 0 {
			sleep(f.EventDelay)
		}
		event(delta(map[string]any{"content": fmt.Sprintf("w%d ", i)}))
		if fail == "break" && i == tokens/2 {
			return
		}
		if fail == "garbage" && i == tokens/2 {
			fmt.Fprint(w, "data: {not json\n\n")
			fl.Flush()
			return
		}
	}
	event(map[string]any{"object": "chat.completion.chunk", "choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}})
	if usage >= 0 {
		event(map[string]any{"object": "chat.completion.chunk", "choices": []any{}, "usage": map[string]any{"prompt_tokens": 3, "completion_tokens": usage}})
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	fl.Flush()
}
