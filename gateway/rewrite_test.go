package gateway

// An internal test: the rewriter is unexported, and the benchmarks compare
// its cost with the fast path inside one process, without a network.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/sim"
)

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("rewritten body is not JSON: %v\n%s", err, b)
	}
	return m
}

func TestRewriteRequest(t *testing.T) {
	full := &modelslot.Deployment{
		Model:        "meta-llama/Llama-3.1-8B",
		SystemPrompt: "Be brief.",
		Defaults:     map[string]any{"temperature": 0.2, "max_tokens": 256},
		Overrides:    map[string]any{"top_p": 0.9},
	}
	replace := *full
	replace.SystemPromptMode = "replace"
	tests := []struct {
		name string
		d    *modelslot.Deployment
		path string
		in   string
		want string // the rewritten body, compared as JSON
	}{
		{
			name: "chat prepend keeps the client's system message after the deployment's",
			d:    full, path: "/v1/chat/completions",
			in:   `{"model":"chat","messages":[{"role":"system","content":"Client rules."},{"role":"user","content":"hi"}],"temperature":1,"top_p":0.1}`,
			want: `{"model":"meta-llama/Llama-3.1-8B","messages":[{"role":"system","content":"Be brief."},{"role":"system","content":"Client rules."},{"role":"user","content":"hi"}],"temperature":1,"max_tokens":256,"top_p":0.9}`,
		},
		{
			name: "chat replace drops system and developer messages",
			d:    &replace, path: "/v1/chat/completions",
			in:   `{"model":"chat","messages":[{"role":"developer","content":"d"},{"role":"system","content":"s"},{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}`,
			want: `{"model":"meta-llama/Llama-3.1-8B","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}],"temperature":0.2,"max_tokens":256,"top_p":0.9}`,
		},
		{
			name: "a null parameter takes the default",
			d:    full, path: "/v1/chat/completions",
			in:   `{"model":"x","messages":[],"temperature":null}`,
			want: `{"model":"meta-llama/Llama-3.1-8B","messages":[{"role":"system","content":"Be brief."}],"temperature":0.2,"max_tokens":256,"top_p":0.9}`,
		},
		{
			name: "completions prompt string",
			d:    full, path: "/v1/completions",
			in:   `{"model":"chat","prompt":"Once upon"}`,
			want: `{"model":"meta-llama/Llama-3.1-8B","prompt":"Be brief.\n\nOnce upon","temperature":0.2,"max_tokens":256,"top_p":0.9}`,
		},
		{
			name: "completions prompt batch",
			d:    &replace, path: "/v1/completions",
			in:   `{"model":"chat","prompt":["a","b"]}`,
			want: `{"model":"meta-llama/Llama-3.1-8B","prompt":["Be brief.\n\na","Be brief.\n\nb"],"temperature":0.2,"max_tokens":256,"top_p":0.9}`,
		},
		{
			name: "completions token prompt passes",
			d:    full, path: "/v1/completions",
			in:   `{"model":"chat","prompt":[1,2,3]}`,
			want: `{"model":"meta-llama/Llama-3.1-8B","prompt":[1,2,3],"temperature":0.2,"max_tokens":256,"top_p":0.9}`,
		},
		{
			name: "responses prepend without instructions",
			d:    full, path: "/v1/responses",
			in:   `{"model":"chat","input":"hi"}`,
			want: `{"model":"meta-llama/Llama-3.1-8B","input":"hi","instructions":"Be brief.","temperature":0.2,"max_tokens":256,"top_p":0.9}`,
		},
		{
			name: "responses prepend before the client's instructions",
			d:    full, path: "/v1/responses",
			in:   `{"model":"chat","input":"hi","instructions":"Speak French."}`,
			want: `{"model":"meta-llama/Llama-3.1-8B","input":"hi","instructions":"Be brief.\n\nSpeak French.","temperature":0.2,"max_tokens":256,"top_p":0.9}`,
		},
		{
			name: "responses replace drops instructions and system items",
			d:    &replace, path: "/v1/responses",
			in:   `{"model":"chat","instructions":"Speak French.","input":[{"role":"system","content":"s"},{"role":"user","content":"hi"}]}`,
			want: `{"model":"meta-llama/Llama-3.1-8B","input":[{"role":"user","content":"hi"}],"instructions":"Be brief.","temperature":0.2,"max_tokens":256,"top_p":0.9}`,
		},
		{
			name: "embeddings get the model, never a prompt",
			d:    &modelslot.Deployment{Model: "bge", SystemPrompt: "Be brief."}, path: "/v1/embeddings",
			in:   `{"model":"chat","input":"hi"}`,
			want: `{"model":"bge","input":"hi"}`,
		},
		{
			name: "path unknown: the API is inferred from the body",
			d:    &modelslot.Deployment{SystemPrompt: "P"}, path: "",
			in:   `{"model":"chat","input":[{"role":"user","content":"hi"}]}`,
			want: `{"model":"chat","input":[{"role":"user","content":"hi"}],"instructions":"P"}`,
		},
		{
			name: "path unknown: embeddings with encoding_format get no prompt",
			d:    &modelslot.Deployment{SystemPrompt: "P"}, path: "",
			in:   `{"model":"chat","input":"hi","encoding_format":"float"}`,
			want: `{"model":"chat","input":"hi","encoding_format":"float"}`,
		},
		{
			name: "large integers and unknown fields keep their exact value",
			d:    &modelslot.Deployment{Model: "m"}, path: "/v1/chat/completions",
			in:   `{"model":"chat","seed":12345678901234567890,"messages":[{"role":"user","content":"<b>&"}],"x_vendor":{"a":[1.50]}}`,
			want: `{"model":"m","seed":12345678901234567890,"messages":[{"role":"user","content":"<b>&"}],"x_vendor":{"a":[1.50]}}`,
		},
		{
			name: "overrides win over the client and the defaults",
			d:    &modelslot.Deployment{Defaults: map[string]any{"n": 1}, Overrides: map[string]any{"n": 2, "stream": false}}, path: "/v1/chat/completions",
			in:   `{"model":"chat","messages":[],"stream":true}`,
			want: `{"model":"chat","messages":[],"n":2,"stream":false}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw := newRewriter("chat", tt.d)
			got, err := rw.requestFor(tt.path, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if g, w := decode(t, got), decode(t, []byte(tt.want)); !reflect.DeepEqual(g, w) {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if strings.Contains(tt.in, `seed`) && !bytes.Contains(got, []byte("12345678901234567890")) {
				t.Errorf("the seed lost precision: %s", got)
			}
		})
	}
}

func TestRewriteRequestPassesNonJSON(t *testing.T) {
	rw := newRewriter("chat", &modelslot.Deployment{Model: "m"})
	for _, in := range []string{"", "--boundary\r\n", "[1]"} {
		got, err := rw.requestFor("/v1/audio/transcriptions", []byte(in))
		if err != nil || string(got) != in {
			t.Errorf("requestFor(%q) = %q, %v; want it unchanged", in, got, err)
		}
	}
	if _, err := rw.requestFor("/v1/chat/completions", []byte(`{"model":`)); err == nil {
		t.Error("a broken JSON body was accepted")
	}
}

func TestRewriteResponse(t *testing.T) {
	rw := newRewriter("chat", &modelslot.Deployment{Model: "llama-3"})
	tests := []struct{ name, in, want string }{
		{"compact", `{"id":"c1","model":"llama-3","choices":[]}`, `{"id":"c1","model":"chat","choices":[]}`},
		{"python spacing", `{"id": "c1", "model": "llama-3", "choices": []}`, `{"id": "c1", "model": "chat", "choices": []}`},
		{"space before colon", `{"model" :  "llama-3"}`, `{"model" :  "chat"}`},
		{"pretty printed", "{\n  \"model\":\n    \"llama-3\"\n}", "{\n  \"model\":\n    \"chat\"\n}"},
		{"models list", `{"object":"list","data":[{"id":"llama-3","object":"model","root":"llama-3"}]}`, `{"object":"list","data":[{"id":"chat","object":"model","root":"llama-3"}]}`},
		{"SSE chunks in one write",
			"data: {\"model\":\"llama-3\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"model\": \"llama-3\",\"choices\":[]}\n\ndata: [DONE]\n\n",
			"data: {\"model\":\"chat\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"model\": \"chat\",\"choices\":[]}\n\ndata: [DONE]\n\n"},
		{"content naming the model is left alone", `{"model":"llama-3","content":"\"llama-3\" is my name","x":"llama-3"}`, `{"model":"chat","content":"\"llama-3\" is my name","x":"llama-3"}`},
		{"a longer id is not matched", `{"model":"llama-3.1"}`, `{"model":"llama-3.1"}`},
		{"another key ending in model", `{"base_model":"llama-3"}`, `{"base_model":"llama-3"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(rw.response([]byte(tt.in))); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
	// Without the id, the write is returned as it is: no copy.
	p := []byte(`data: {"choices":[{"delta":{"content":"x"}}]}`)
	if got := rw.response(p); &got[0] != &p[0] {
		t.Error("a write without the backend id was copied")
	}
}

func TestRewriteNoRewritesNoRewriter(t *testing.T) {
	for _, d := range []*modelslot.Deployment{
		{URL: "http://x"},
		{URL: "http://x", Headers: map[string]string{"api-key": "k"}, SecretHeaders: []string{"api-key"}, Query: map[string]string{"api-version": "2024-10-21"}},
	} {
		if rw := newRewriter("chat", d); rw != nil {
			t.Errorf("deployment %+v has a rewriter: its requests would be parsed", d)
		}
	}
}

// recorder is a backend that records what it received and answers with a
// simulated model.
type recorder struct {
	mu      sync.Mutex
	bodies  []string
	headers []http.Header
	queries []string
	h       http.Handler
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.bodies = append(rec.bodies, string(b))
	rec.headers = append(rec.headers, r.Header.Clone())
	rec.queries = append(rec.queries, r.URL.RawQuery)
	rec.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(b))
	rec.h.ServeHTTP(w, r)
}

func (rec *recorder) last() (string, http.Header, string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	n := len(rec.bodies) - 1
	return rec.bodies[n], rec.headers[n], rec.queries[n]
}

// gatewayFor serves app "chat" with d in production, backed by rec.
func gatewayFor(t *testing.T, d *modelslot.Deployment, rec *recorder) string {
	t.Helper()
	backend := httptest.NewServer(rec)
	t.Cleanup(backend.Close)
	g := New(Config{})
	t.Cleanup(g.Close)
	d.Revision = d.ComputeRevision()
	b, err := g.NewBackend(backend.URL, d)
	if err != nil {
		t.Fatal(err)
	}
	g.Update([]RouteApp{{
		App:      &modelslot.App{Name: "chat", Slots: []*modelslot.Slot{{Name: modelslot.Production, Deployment: d}}},
		Backends: map[string]*Backend{modelslot.Production: b},
	}})
	front := httptest.NewServer(g)
	t.Cleanup(front.Close)
	return front.URL
}

func TestRewriteFastPathForwardsBytes(t *testing.T) {
	// Headers and query parameters alone are not rewrites: the body is not
	// parsed, so even a body that is not JSON reaches the backend as sent.
	rec := &recorder{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"model":"upstream"}`) })}
	url := gatewayFor(t, &modelslot.Deployment{
		Headers: map[string]string{"api-key": "k1"}, SecretHeaders: []string{"api-key"},
		Query: map[string]string{"api-version": "2024-10-21"},
	}, rec)
	const body = `{"model": "chat",  "messages": [ ] ` // not even valid JSON
	resp, err := http.Post(url+"/v1/chat/completions?x=1", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != `{"model":"upstream"}` {
		t.Errorf("answer = %s; the fast path must not touch it", got)
	}
	gotBody, h, q := rec.last()
	if gotBody != body {
		t.Errorf("backend got %q, want the bytes sent %q", gotBody, body)
	}
	if h.Get("api-key") != "k1" {
		t.Errorf("api-key = %q, want k1", h.Get("api-key"))
	}
	if !strings.Contains(q, "api-version=2024-10-21") || !strings.Contains(q, "x=1") {
		t.Errorf("query = %q, want api-version added to x=1", q)
	}
}

func TestRewriteThroughGateway(t *testing.T) {
	rec := &recorder{h: sim.New(sim.Config{Model: "llama-3-8b", Tokens: 5})}
	url := gatewayFor(t, &modelslot.Deployment{Model: "llama-3-8b", SystemPrompt: "You are terse."}, rec)

	post := func(path, body string) (*http.Response, []byte) {
		resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}

	t.Run("non-streaming", func(t *testing.T) {
		resp, b := post("/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"model":"chat"`)) || bytes.Contains(b, []byte(`"llama-3-8b"`)) {
			t.Fatalf("status %d, body %s: want the public name only", resp.StatusCode, b)
		}
		var v struct{ Model string }
		if err := json.Unmarshal(b, &v); err != nil || v.Model != "chat" {
			t.Errorf("model = %q (%v), want chat", v.Model, err)
		}
		sent, _, _ := rec.last()
		if !strings.Contains(sent, `"model":"llama-3-8b"`) || !strings.Contains(sent, `"content":"You are terse."`) {
			t.Errorf("backend got %s", sent)
		}
	})
	t.Run("streaming", func(t *testing.T) {
		resp, err := http.Post(url+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("content type %q: the stream was not kept", ct)
		}
		sc := bufio.NewScanner(resp.Body)
		chunks := 0
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok || line == "[DONE]" {
				continue
			}
			chunks++
			var v struct{ Model string }
			if err := json.Unmarshal([]byte(line), &v); err != nil || v.Model != "chat" {
				t.Errorf("chunk %d: model %q (%v) in %s", chunks, v.Model, err, line)
			}
		}
		if chunks < 5 {
			t.Errorf("%d chunks, want one per token", chunks)
		}
	})
	t.Run("models list", func(t *testing.T) {
		resp, err := http.Get(url + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var v struct{ Data []struct{ ID string } }
		if err := json.Unmarshal(b, &v); err != nil || len(v.Data) != 1 || v.Data[0].ID != "chat" {
			t.Errorf("models = %s, want the public name", b)
		}
	})
	t.Run("completions and responses", func(t *testing.T) {
		for _, c := range []struct{ path, body, want string }{
			{"/v1/completions", `{"model":"chat","prompt":"Once"}`, `"prompt":"You are terse.\n\nOnce"`},
			{"/v1/responses", `{"model":"chat","input":"hi"}`, `"instructions":"You are terse."`},
		} {
			resp, b := post(c.path, c.body)
			if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"model":"chat"`)) {
				t.Errorf("%s: status %d, body %s", c.path, resp.StatusCode, b)
			}
			if sent, _, _ := rec.last(); !strings.Contains(sent, c.want) {
				t.Errorf("%s: backend got %s, want %s in it", c.path, sent, c.want)
			}
		}
	})
}

// rwBenchGateway serves app "chat" with d from an in-memory backend that
// answers every request with the same chat completion.
func rwBenchGateway(b *testing.B, d *modelslot.Deployment) *Gateway {
	b.Helper()
	g := New(Config{SampleCapacity: 1024})
	const answer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"llama-3-8b","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}`
	g.Transport().RegisterProtocol("http", rwRoundTrip(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
		return &http.Response{
			StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Content-Type": {"application/json"}},
			Body:          io.NopCloser(strings.NewReader(answer)),
			ContentLength: int64(len(answer)), Request: r,
		}, nil
	}))
	d.URL = "http://backend.invalid"
	d.Revision = d.ComputeRevision()
	be, err := g.NewBackend(d.URL, d)
	if err != nil {
		b.Fatal(err)
	}
	g.Update([]RouteApp{{
		App:      &modelslot.App{Name: "chat", Slots: []*modelslot.Slot{{Name: modelslot.Production, Deployment: d}}},
		Backends: map[string]*Backend{modelslot.Production: be},
	}})
	b.Cleanup(g.Close)
	return g
}

type rwRoundTrip func(*http.Request) (*http.Response, error)

func (f rwRoundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

const rwBenchBody = `{"model":"chat","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write a haiku about deployment slots and gated rollouts."}],"temperature":0.7,"max_tokens":128,"stream":false}`

func rwBenchServe(b *testing.B, g *Gateway) {
	b.ReportAllocs()
	b.SetBytes(int64(len(rwBenchBody)))
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(rwBenchBody))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkFastPath is a request through the gateway to a deployment
// without rewrites: the body is streamed to the backend unread.
func BenchmarkFastPath(b *testing.B) {
	rwBenchServe(b, rwBenchGateway(b, &modelslot.Deployment{}))
}

// BenchmarkRewriteRequest is the same request to a deployment with a model
// id, a system prompt, a default and an override: the body is parsed and
// re-encoded and the answer's model name replaced.
func BenchmarkRewriteRequest(b *testing.B) {
	rwBenchServe(b, rwBenchGateway(b, &modelslot.Deployment{
		Model: "llama-3-8b", SystemPrompt: "Answer in one short paragraph.",
		Defaults: map[string]any{"top_p": 0.95}, Overrides: map[string]any{"max_tokens": 256},
	}))
}

// BenchmarkRewriterOnly is the body rewrite and the answer rewrite alone,
// without proxying.
func BenchmarkRewriterOnly(b *testing.B) {
	rw := newRewriter("chat", &modelslot.Deployment{
		Model: "llama-3-8b", SystemPrompt: "Answer in one short paragraph.",
		Defaults: map[string]any{"top_p": 0.95}, Overrides: map[string]any{"max_tokens": 256},
	})
	body := []byte(rwBenchBody)
	answer := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"llama-3-8b","choices":[{"index":0,"delta":{"content":"Hi"}}]}` + "\n\n")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rw.requestFor("/v1/chat/completions", body); err != nil {
			b.Fatal(err)
		}
		rw.response(answer)
	}
}

func TestRewritePathMapsPublicModel(t *testing.T) {
	rw := newRewriter("chat", &modelslot.Deployment{Model: "gpt-4o-2024-08-06"})
	for in, want := range map[string]string{
		"/v1/models/chat":  "/v1/models/gpt-4o-2024-08-06",
		"/v1/models/other": "/v1/models/other",
		"/v1/models":       "/v1/models",
	} {
		if got := rw.path(in); got != want {
			t.Errorf("path(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDeploymentKeyReplacesClientCredentials(t *testing.T) {
	var got http.Header
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer backend.Close()
	g := New(Config{})
	defer g.Close()
	b, err := g.NewBackend(backend.URL, &modelslot.Deployment{Headers: map[string]string{"api-key": "k"}})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer client-key")
	b.proxy.ServeHTTP(httptest.NewRecorder(), req)
	if got.Get("Authorization") != "" || got.Get("Api-Key") != "k" {
		t.Fatalf("backend saw Authorization %q, api-key %q; want none and k", got.Get("Authorization"), got.Get("Api-Key"))
	}
}
