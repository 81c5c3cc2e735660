package sim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/sim"
)

// openStream posts body with stream: true and returns the open response.
func openStream(t *testing.T, ctx context.Context, url string, body map[string]any) *http.Response {
	t.Helper()
	body["stream"] = true
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, b)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/event-stream" {
		t.Fatalf("Content-Type = %q, want text/event-stream", got)
	}
	return resp
}

func TestStreaming(t *testing.T) {
	tests := []struct {
		name         string
		path         string
		body         map[string]any
		wantObject   string
		wantTokens   int
		wantFinish   string
		includeUsage bool
	}{
		{"chat", "/v1/chat/completions", chatBody("tell me", nil), "chat.completion.chunk", 6, "stop", false},
		{"chat with usage", "/v1/chat/completions", chatBody("tell me", map[string]any{"stream_options": map[string]any{"include_usage": true}}), "chat.completion.chunk", 6, "stop", true},
		{"chat capped", "/v1/chat/completions", chatBody("tell me", map[string]any{"max_tokens": 2}), "chat.completion.chunk", 2, "length", false},
		{"text with usage", "/v1/completions", textBody("tell me", map[string]any{"stream_options": map[string]any{"include_usage": true}}), "text_completion", 6, "stop", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := start(t, sim.Config{Model: "v2", Tokens: 6})
			// The streamed text must equal the non-streaming text for the same prompt.
			plain := make(map[string]any, len(tt.body))
			for k, v := range tt.body {
				plain[k] = v
			}
			_, raw := do(t, http.MethodPost, url+tt.path, plain)
			nonStream := decode[completion](t, raw)
			wantText := nonStream.text(t)

			resp := openStream(t, t.Context(), url+tt.path, tt.body)
			br := bufio.NewReader(resp.Body)
			var (
				text       strings.Builder
				tokens     int
				sawRole    bool
				finish     string
				gotUsage   *usage
				afterUsage bool
			)
			for {
				data := readEvent(t, br)
				if data == "[DONE]" {
					break
				}
				if finish != "" && !tt.includeUsage {
					t.Fatalf("event %s after the finish chunk, want [DONE]", data)
				}
				c := decode[completion](t, []byte(data))
				if c.Object != tt.wantObject || c.Model != "v2" {
					t.Errorf("chunk object %q model %q, want %q v2", c.Object, c.Model, tt.wantObject)
				}
				if len(c.Choices) == 0 {
					if c.Usage == nil {
						t.Fatalf("chunk %s has neither choices nor usage", data)
					}
					gotUsage, afterUsage = c.Usage, true
					continue
				}
				if afterUsage {
					t.Fatalf("chunk %s after the usage chunk", data)
				}
				ch := c.Choices[0]
				var piece string
				switch {
				case ch.Delta != nil:
					sawRole = sawRole || ch.Delta.Role == "assistant"
					piece = ch.Delta.Content
				case ch.Text != nil:
					piece = *ch.Text
				}
				if ch.FinishReason != nil {
					finish = *ch.FinishReason
					if piece != "" {
						t.Errorf("finish chunk carries text %q", piece)
					}
				}
				if piece != "" {
					tokens++
					text.WriteString(piece)
				}
			}
			if tokens != tt.wantTokens {
				t.Errorf("got %d token events, want %d", tokens, tt.wantTokens)
			}
			if text.String() != wantText {
				t.Errorf("streamed text %q, want the non-streaming text %q", text.String(), wantText)
			}
			if isChat := tt.wantObject == "chat.completion.chunk"; sawRole != isChat {
				t.Errorf("saw role chunk = %v, want %v", sawRole, isChat)
			}
			if finish != tt.wantFinish {
				t.Errorf("finish_reason = %q, want %q", finish, tt.wantFinish)
			}
			if tt.includeUsage != (gotUsage != nil) {
				t.Fatalf("usage chunk present = %v, want %v", gotUsage != nil, tt.includeUsage)
			}
			if gotUsage != nil && *gotUsage != *nonStream.Usage {
				t.Errorf("streamed usage = %+v, want the non-streaming usage %+v", *gotUsage, *nonStream.Usage)
			}
			if rest, _ := io.ReadAll(br); len(rest) != 0 {
				t.Errorf("bytes after [DONE]: %q", rest)
			}
		})
	}
}

// TestStreamFlushesEachEvent proves events are flushed one at a time: with an
// inter-token latency far longer than the test, the first token can only
// arrive while the handler is still generating.
func TestStreamFlushesEachEvent(t *testing.T) {
	s, url := start(t, sim.Config{Tokens: 3, ITL: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	resp := openStream(t, ctx, url+"/v1/chat/completions", chatBody("hi", nil))
	br := bufio.NewReader(resp.Body)
	if role := readEvent(t, br); !strings.Contains(role, `"role":"assistant"`) {
		t.Fatalf("first event %s, want the role chunk", role)
	}
	first := decode[completion](t, []byte(readEvent(t, br)))
	if got := first.Choices[0].Delta.Content; got != "sim" {
		t.Errorf("first token = %q, want sim", got)
	}
	if got := s.InFlight(); got != 1 {
		t.Errorf("InFlight() = %d after the first token, want 1: the response must not be finished", got)
	}
	cancel()
	waitFor(t, 10*time.Second, func() bool { return s.InFlight() == 0 })
}

// TestClientDisconnectStopsHandler drops a raw TCP connection mid-stream on a
// real listener and checks the handler returns at once instead of generating
// the remaining tokens.
func TestClientDisconnectStopsHandler(t *testing.T) {
	s := sim.New(sim.Config{Tokens: 1000, ITL: time.Hour, TTFT: 0})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	t.Cleanup(func() {
		hs.Close()
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	body := `{"messages":[{"role":"user","content":"hi"}],"stream":true}`
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	events := bufio.NewReader(resp.Body)
	readEvent(t, events) // role
	if tok := readEvent(t, events); !strings.Contains(tok, `"content":"sim"`) {
		t.Fatalf("second event %s, want the first token", tok)
	}
	if got := s.InFlight(); got != 1 {
		t.Fatalf("InFlight() = %d mid-stream, want 1", got)
	}
	conn.Close()
	waitFor(t, 10*time.Second, func() bool { return s.InFlight() == 0 })
	if got := s.Requests(); got != 1 {
		t.Errorf("Requests() = %d, want 1", got)
	}
}

// TestCancelDuringTTFT checks a non-streaming request waiting for its first
// token is abandoned when the client gives up.
func TestCancelDuringTTFT(t *testing.T) {
	s, url := start(t, sim.Config{TTFT: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/completions", strings.NewReader(`{"prompt":"x"}`))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, 10*time.Second, func() bool { return s.InFlight() == 1 })
	cancel()
	if err := <-errc; err == nil {
		t.Errorf("request succeeded, want it cancelled")
	}
	waitFor(t, 10*time.Second, func() bool { return s.InFlight() == 0 })
}
