package sim_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/sim"
)

// start serves a new simulator for cfg on a loopback httptest server.
func start(t *testing.T, cfg sim.Config) (*sim.Server, string) {
	t.Helper()
	s, err := sim.NewChecked(cfg)
	if err != nil {
		t.Fatalf("NewChecked: %v", err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

// do sends a JSON request and returns the response and its whole body.
func do(t *testing.T, method, url string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, raw
}

func decode[T any](t *testing.T, raw []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type completion struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message *struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Text  *string `json:"text"`
		Delta *struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *usage `json:"usage"`
}

// text returns the answer text of a chat or text completion.
func (c completion) text(t *testing.T) string {
	t.Helper()
	if len(c.Choices) != 1 {
		t.Fatalf("got %d choices, want 1", len(c.Choices))
	}
	switch ch := c.Choices[0]; {
	case ch.Message != nil:
		return ch.Message.Content
	case ch.Text != nil:
		return *ch.Text
	}
	t.Fatalf("choice has neither message nor text")
	return ""
}

func chatBody(prompt string, extra map[string]any) map[string]any {
	b := map[string]any{
		"model":    "whatever",
		"messages": []map[string]any{{"role": "system", "content": "be brief"}, {"role": "user", "content": prompt}},
	}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

func textBody(prompt string, extra map[string]any) map[string]any {
	b := map[string]any{"model": "whatever", "prompt": prompt}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

func TestCompletionShapes(t *testing.T) {
	_, url := start(t, sim.Config{Model: "v2", Tokens: 7})
	tests := []struct {
		name       string
		path       string
		body       map[string]any
		wantObject string
		wantPrompt int
	}{
		{"chat", "/v1/chat/completions", chatBody("what is the capital of France", nil), "chat.completion", 2 + 6},
		{"text", "/v1/completions", textBody("once upon a time", nil), "text_completion", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := do(t, http.MethodPost, url+tt.path, tt.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, raw)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", got)
			}
			if got := resp.Header.Get("x-sim-model"); got != "v2" {
				t.Errorf("x-sim-model = %q, want v2", got)
			}
			c := decode[completion](t, raw)
			if c.Object != tt.wantObject || c.Model != "v2" || c.ID == "" || c.Created == 0 {
				t.Errorf("got object %q model %q id %q created %d, want %q v2 and non-empty id/created", c.Object, c.Model, c.ID, c.Created, tt.wantObject)
			}
			text := c.text(t)
			if !strings.HasPrefix(text, "v2 says hello") {
				t.Errorf("text = %q, want it to start with %q", text, "v2 says hello")
			}
			if got := len(strings.Fields(text)); got != 7 {
				t.Errorf("text %q has %d words, want 7", text, got)
			}
			if c.Choices[0].FinishReason == nil || *c.Choices[0].FinishReason != "stop" {
				t.Errorf("finish_reason = %v, want stop", c.Choices[0].FinishReason)
			}
			want := usage{PromptTokens: tt.wantPrompt, CompletionTokens: 7, TotalTokens: tt.wantPrompt + 7}
			if c.Usage == nil || *c.Usage != want {
				t.Errorf("usage = %+v, want %+v", c.Usage, want)
			}
			if c.Choices[0].Message != nil && c.Choices[0].Message.Role != "assistant" {
				t.Errorf("role = %q, want assistant", c.Choices[0].Message.Role)
			}
		})
	}
}

func TestAnswerIsDeterministicPerPrompt(t *testing.T) {
	_, url := start(t, sim.Config{Model: "v1"})
	answer := func(prompt string) string {
		t.Helper()
		_, raw := do(t, http.MethodPost, url+"/v1/chat/completions", chatBody(prompt, nil))
		return decode[completion](t, raw).text(t)
	}
	a1, a2, b := answer("hello"), answer("hello"), answer("goodbye")
	if a1 != a2 {
		t.Errorf("same prompt gave %q then %q, want equal", a1, a2)
	}
	if a1 == b {
		t.Errorf("different prompts both gave %q, want different filler", a1)
	}
}

func TestChatContentParts(t *testing.T) {
	_, url := start(t, sim.Config{Answers: map[string]string{"part one\npart two": "joined"}})
	body := map[string]any{"messages": []map[string]any{{"role": "user", "content": []map[string]any{
		{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"},
	}}}}
	_, raw := do(t, http.MethodPost, url+"/v1/chat/completions", body)
	if got := decode[completion](t, raw).text(t); got != "joined" {
		t.Errorf("answer = %q, want the canned answer for the joined text parts", got)
	}
}

func TestMaxTokensCap(t *testing.T) {
	_, url := start(t, sim.Config{Tokens: 10})
	tests := []struct {
		name       string
		path       string
		extra      map[string]any
		wantTokens int
		wantFinish string
	}{
		{"no cap", "/v1/chat/completions", nil, 10, "stop"},
		{"max_tokens caps", "/v1/chat/completions", map[string]any{"max_tokens": 3}, 3, "length"},
		{"max_completion_tokens caps", "/v1/chat/completions", map[string]any{"max_completion_tokens": 4}, 4, "length"},
		{"smaller of both", "/v1/chat/completions", map[string]any{"max_tokens": 6, "max_completion_tokens": 2}, 2, "length"},
		{"cap above tokens", "/v1/chat/completions", map[string]any{"max_tokens": 100}, 10, "stop"},
		{"cap equal to tokens", "/v1/chat/completions", map[string]any{"max_tokens": 10}, 10, "stop"},
		{"text completion", "/v1/completions", map[string]any{"max_tokens": 1}, 1, "length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := chatBody("hi", tt.extra)
			if tt.path == "/v1/completions" {
				body = textBody("hi", tt.extra)
			}
			_, raw := do(t, http.MethodPost, url+tt.path, body)
			c := decode[completion](t, raw)
			if got := len(strings.Fields(c.text(t))); got != tt.wantTokens {
				t.Errorf("got %d words, want %d", got, tt.wantTokens)
			}
			if c.Usage.CompletionTokens != tt.wantTokens {
				t.Errorf("completion_tokens = %d, want %d", c.Usage.CompletionTokens, tt.wantTokens)
			}
			if got := *c.Choices[0].FinishReason; got != tt.wantFinish {
				t.Errorf("finish_reason = %q, want %q", got, tt.wantFinish)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	_, url := start(t, sim.Config{Model: "v3"})
	tests := []struct {
		name       string
		method     string
		path       string
		body       any
		wantStatus int
		wantType   string
	}{
		{"bad json", http.MethodPost, "/v1/chat/completions", `{"messages": [`, 400, "invalid_request_error"},
		{"wrong content type", http.MethodPost, "/v1/chat/completions", `{"messages": 3}`, 400, "invalid_request_error"},
		{"max_tokens zero", http.MethodPost, "/v1/completions", `{"prompt":"x","max_tokens":0}`, 400, "invalid_request_error"},
		{"get on post endpoint", http.MethodGet, "/v1/chat/completions", nil, 405, "invalid_request_error"},
		{"unknown path", http.MethodGet, "/v1/nope", nil, 404, "invalid_request_error"},
		{"unknown model", http.MethodGet, "/v1/models/other", nil, 404, "invalid_request_error"},
		{"streamed responses", http.MethodPost, "/v1/responses", `{"input":"x","stream":true}`, 400, "invalid_request_error"},
		{"embeddings without input", http.MethodPost, "/v1/embeddings", `{}`, 400, "invalid_request_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, raw := do(t, tt.method, url+tt.path, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.wantStatus, raw)
			}
			if got := resp.Header.Get("x-sim-model"); got != "v3" {
				t.Errorf("x-sim-model = %q, want v3 on errors too", got)
			}
			e := decode[apiError](t, raw)
			if e.Error.Type != tt.wantType || e.Error.Message == "" {
				t.Errorf("error = %+v, want type %q and a message", e.Error, tt.wantType)
			}
		})
	}
}

type apiError struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    any    `json:"code"`
	} `json:"error"`
}

func TestErrorRate(t *testing.T) {
	tests := []struct {
		kind        sim.ErrorKind
		wantStatus  map[int]bool
		wantTypeFor map[int]string
	}{
		{sim.Error500, map[int]bool{500: true}, map[int]string{500: "server_error"}},
		{sim.Error429, map[int]bool{429: true}, map[int]string{429: "rate_limit_error"}},
		{sim.ErrorMixed, map[int]bool{500: true, 429: true}, map[int]string{500: "server_error", 429: "rate_limit_error"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			s, url := start(t, sim.Config{ErrorRate: 1, ErrorKind: tt.kind, Seed: 7})
			seen := map[int]bool{}
			const n = 40
			for range n {
				resp, raw := do(t, http.MethodPost, url+"/v1/chat/completions", chatBody("hi", map[string]any{"stream": true}))
				seen[resp.StatusCode] = true
				if !tt.wantStatus[resp.StatusCode] {
					t.Fatalf("status = %d, want one of %v", resp.StatusCode, tt.wantStatus)
				}
				if got := decode[apiError](t, raw).Error.Type; got != tt.wantTypeFor[resp.StatusCode] {
					t.Errorf("error type = %q, want %q", got, tt.wantTypeFor[resp.StatusCode])
				}
				if ra := resp.Header.Get("Retry-After"); (resp.StatusCode == 429) != (ra == "1") {
					t.Errorf("status %d has Retry-After %q, want \"1\" exactly on 429", resp.StatusCode, ra)
				}
			}
			if len(seen) != len(tt.wantStatus) {
				t.Errorf("saw statuses %v, want all of %v", seen, tt.wantStatus)
			}
			if got := s.Requests(); got != n {
				t.Errorf("Requests() = %d, want %d", got, n)
			}
		})
	}
}

func TestSeedDeterminism(t *testing.T) {
	cfg := sim.Config{Seed: 42, ErrorRate: 0.3, ErrorKind: sim.ErrorMixed, WrongRate: 0.3, MalformedRate: 0.2, Jitter: 0.5}
	run := func(cfg sim.Config) []string {
		t.Helper()
		_, url := start(t, cfg)
		var out []string
		for range 30 {
			resp, raw := do(t, http.MethodPost, url+"/v1/chat/completions", chatBody("q", nil))
			outcome := resp.Status
			if resp.StatusCode == http.StatusOK {
				outcome += " " + decode[completion](t, raw).text(t)
			}
			out = append(out, outcome)
		}
		return out
	}
	a, b := run(cfg), run(cfg)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("same seed gave different outcomes:\n%v\n%v", a, b)
	}
	kinds := map[string]bool{}
	for _, o := range a {
		switch {
		case strings.Contains(o, "I don't know."):
			kinds["wrong"] = true
		case strings.Contains(o, `{"answer"`):
			kinds["malformed"] = true
		case strings.HasPrefix(o, "200"):
			kinds["ok"] = true
		default:
			kinds["error"] = true
		}
	}
	if len(kinds) != 4 {
		t.Errorf("outcome kinds = %v, want ok, error, wrong and malformed among 30 requests", kinds)
	}
	cfg.Seed = 43
	if c := run(cfg); strings.Join(a, "\n") == strings.Join(c, "\n") {
		t.Errorf("seeds 42 and 43 gave the same 30 outcomes")
	}
}

func TestStartup(t *testing.T) {
	const startup = 300 * time.Millisecond
	created := time.Now()
	_, url := start(t, sim.Config{Startup: startup})
	resp, raw := do(t, http.MethodGet, url+"/health", nil)
	// Only a check made within the startup window can expect "loading".
	if time.Since(created) < startup {
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(raw), `"loading"`) {
			t.Errorf("health during startup = %d %s, want 503 loading", resp.StatusCode, raw)
		}
	}
	waitFor(t, 10*time.Second, func() bool {
		resp, raw = do(t, http.MethodGet, url+"/health", nil)
		return resp.StatusCode == http.StatusOK
	})
	if got := decode[map[string]string](t, raw)["status"]; got != "ok" {
		t.Errorf("status = %q, want ok", got)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCannedAnswers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "answers.jsonl")
	lines := `{"prompt": "What is the capital of France?", "answer": "Paris."}

{"prompt": "2+2", "answer": "The answer is \"4\".\nDone."}
`
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	answers, err := sim.LoadAnswers(path)
	if err != nil {
		t.Fatalf("LoadAnswers: %v", err)
	}
	if len(answers) != 2 {
		t.Fatalf("loaded %d answers, want 2", len(answers))
	}

	tests := []struct {
		name       string
		cfg        sim.Config
		path       string
		prompt     string
		wantText   string
		wantTokens int
	}{
		{"chat canned", sim.Config{}, "/v1/chat/completions", "What is the capital of France?", "Paris.", 1},
		{"text canned", sim.Config{}, "/v1/completions", "2+2", "The answer is \"4\".\nDone.", 5},
		{"not canned", sim.Config{Tokens: 3}, "/v1/chat/completions", "unknown question", "sim says hello", 3},
		{"wrong", sim.Config{WrongRate: 1}, "/v1/chat/completions", "What is the capital of France?", "I don't know.", 3},
		{"malformed", sim.Config{MalformedRate: 1}, "/v1/completions", "2+2", `{"answer": "`, 2},
		{"scaled canned keeps answer", sim.Config{OutputScale: 3}, "/v1/chat/completions", "What is the capital of France?", "Paris.", 3},
		{"scaled generated", sim.Config{Tokens: 4, OutputScale: 2.5}, "/v1/chat/completions", "x", "sim says hello", 10},
		{"scaled down", sim.Config{Tokens: 10, OutputScale: 0.5}, "/v1/completions", "x", "sim says hello", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Answers = answers
			_, url := start(t, cfg)
			body := chatBody(tt.prompt, nil)
			if tt.path == "/v1/completions" {
				body = textBody(tt.prompt, nil)
			}
			_, raw := do(t, http.MethodPost, url+tt.path, body)
			c := decode[completion](t, raw)
			text := c.text(t)
			if !strings.HasPrefix(text, tt.wantText) {
				t.Errorf("text = %q, want it to start with %q", text, tt.wantText)
			}
			if c.Usage.CompletionTokens != tt.wantTokens {
				t.Errorf("completion_tokens = %d, want %d", c.Usage.CompletionTokens, tt.wantTokens)
			}
			if tt.name == "malformed" && json.Valid([]byte(text)) {
				t.Errorf("malformed answer %q is valid JSON", text)
			}
		})
	}
}

func TestLoadAnswersErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"not json", "{\"prompt\": \"a\", \"answer\": \"b\"}\nnot json\n"},
		{"missing answer", `{"prompt": "a"}`},
		{"missing prompt", `{"answer": "a"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "a.jsonl")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := sim.LoadAnswers(path); err == nil {
				t.Errorf("LoadAnswers succeeded, want an error")
			}
		})
	}
	if _, err := sim.LoadAnswers(filepath.Join(t.TempDir(), "missing.jsonl")); err == nil {
		t.Errorf("LoadAnswers of a missing file succeeded, want an error")
	}
}

func TestNewChecked(t *testing.T) {
	tests := []struct {
		name      string
		cfg       sim.Config
		wantField string // "" = valid
	}{
		{"zero value", sim.Config{}, ""},
		{"full", sim.Config{Model: "m", TTFT: time.Millisecond, ITL: time.Millisecond, Jitter: 1, Tokens: 3, ErrorRate: 1, ErrorKind: sim.ErrorMixed, WrongRate: 1, MalformedRate: 0.5, OutputScale: 2}, ""},
		{"negative ttft", sim.Config{TTFT: -1}, "ttft"},
		{"negative itl", sim.Config{ITL: -time.Second}, "itl"},
		{"negative startup", sim.Config{Startup: -time.Second}, "startup"},
		{"jitter above 1", sim.Config{Jitter: 1.5}, "jitter"},
		{"negative error rate", sim.Config{ErrorRate: -0.1}, "errorRate"},
		{"wrong rate above 1", sim.Config{WrongRate: 2}, "wrongRate"},
		{"malformed rate above 1", sim.Config{MalformedRate: 1.01}, "malformedRate"},
		{"negative tokens", sim.Config{Tokens: -1}, "tokens"},
		{"negative scale", sim.Config{OutputScale: -1}, "outputScale"},
		{"unknown kind", sim.Config{ErrorKind: "503"}, "errorKind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sim.NewChecked(tt.cfg)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("NewChecked: %v", err)
				}
				if err := s.SetConfig(tt.cfg); err != nil {
					t.Errorf("SetConfig: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantField) {
				t.Fatalf("NewChecked error = %v, want one naming %q", err, tt.wantField)
			}
			// New never fails: it falls back to defaults for the bad field.
			s = sim.New(tt.cfg)
			if err := s.SetConfig(s.Config()); err != nil {
				t.Errorf("New kept an invalid config: %v", err)
			}
			if err := s.SetConfig(tt.cfg); err == nil {
				t.Errorf("SetConfig accepted an invalid config")
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	got := sim.New(sim.Config{}).Config()
	if got.Model != "sim" || got.Tokens != 16 || got.ErrorKind != sim.Error500 || got.OutputScale != 1 {
		t.Errorf("defaults = %+v, want model sim, 16 tokens, kind 500, scale 1", got)
	}
}

func TestOtherEndpoints(t *testing.T) {
	s, url := start(t, sim.Config{Model: "emb-\"1\"", Tokens: 5})

	t.Run("models", func(t *testing.T) {
		resp, raw := do(t, http.MethodGet, url+"/v1/models", nil)
		list := decode[struct {
			Object string `json:"object"`
			Data   []struct {
				ID     string `json:"id"`
				Object string `json:"object"`
			} `json:"data"`
		}](t, raw)
		if resp.StatusCode != 200 || list.Object != "list" || len(list.Data) != 1 || list.Data[0].ID != `emb-"1"` || list.Data[0].Object != "model" {
			t.Errorf("GET /v1/models = %d %s, want a list of the one model", resp.StatusCode, raw)
		}
		resp, raw = do(t, http.MethodGet, url+"/v1/models/emb-%221%22", nil)
		if resp.StatusCode != 200 || decode[map[string]any](t, raw)["id"] != `emb-"1"` {
			t.Errorf("GET /v1/models/{id} = %d %s, want the model", resp.StatusCode, raw)
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		type embeddings struct {
			Object string `json:"object"`
			Data   []struct {
				Index     int       `json:"index"`
				Embedding []float64 `json:"embedding"`
			} `json:"data"`
			Model string `json:"model"`
			Usage usage  `json:"usage"`
		}
		body := map[string]any{"input": []string{"one two", "three"}}
		resp, raw := do(t, http.MethodPost, url+"/v1/embeddings", body)
		e := decode[embeddings](t, raw)
		if resp.StatusCode != 200 || e.Object != "list" || len(e.Data) != 2 || len(e.Data[1].Embedding) != 8 || e.Data[1].Index != 1 || e.Usage.PromptTokens != 3 {
			t.Fatalf("POST /v1/embeddings = %d %s, want 2 vectors of 8 and 3 prompt tokens", resp.StatusCode, raw)
		}
		_, again := do(t, http.MethodPost, url+"/v1/embeddings", body)
		if !bytes.Equal(raw, again) {
			t.Errorf("embeddings differ between calls:\n%s\n%s", raw, again)
		}
		_, raw = do(t, http.MethodPost, url+"/v1/embeddings", map[string]any{"input": "x", "dimensions": 3})
		if got := len(decode[embeddings](t, raw).Data[0].Embedding); got != 3 {
			t.Errorf("dimensions 3 gave %d values", got)
		}
	})

	t.Run("responses", func(t *testing.T) {
		resp, raw := do(t, http.MethodPost, url+"/v1/responses", map[string]any{"input": "say hi", "max_output_tokens": 2})
		r := decode[struct {
			Object string `json:"object"`
			Status string `json:"status"`
			Model  string `json:"model"`
			Output []struct {
				Type    string `json:"type"`
				Content []struct {
					Type string `json:"type"`
					Text string `json:"text"`
				} `json:"content"`
			} `json:"output"`
			Usage struct {
				InputTokens  int `json:"input_tokens"`
				OutputTokens int `json:"output_tokens"`
			} `json:"usage"`
		}](t, raw)
		if resp.StatusCode != 200 || r.Object != "response" || len(r.Output) != 1 || len(r.Output[0].Content) != 1 {
			t.Fatalf("POST /v1/responses = %d %s, want one output message", resp.StatusCode, raw)
		}
		if got := r.Output[0].Content[0].Text; got != `emb-"1" says` || r.Usage.OutputTokens != 2 || r.Usage.InputTokens != 2 || r.Status != "incomplete" {
			t.Errorf("response text %q, usage %+v, status %q; want 2 tokens, 2 input tokens, incomplete", got, r.Usage, r.Status)
		}
	})

	if got := s.Requests(); got != 4 {
		t.Errorf("Requests() = %d, want 4 (3 embeddings, 1 responses)", got)
	}
}

func TestEveryResponseNamesTheModel(t *testing.T) {
	_, url := start(t, sim.Config{Model: "v9"})
	for _, path := range []string{"/health", "/v1/models", "/admin/config", "/nowhere"} {
		resp, _ := do(t, http.MethodGet, url+path, nil)
		if got := resp.Header.Get("x-sim-model"); got != "v9" {
			t.Errorf("GET %s: x-sim-model = %q, want v9", path, got)
		}
	}
}

// readEvent reads one SSE event and returns its data payload.
func readEvent(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var data string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read event: %v (partial %q)", err, line)
		}
		line = strings.TrimRight(line, "\n")
		if line == "" {
			return data
		}
		d, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("line %q is not a data line", line)
		}
		data += d
	}
}
