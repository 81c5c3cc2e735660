package loadgen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot/loadgen"
)

func run(t *testing.T, cfg loadgen.Config) *loadgen.Report {
	t.Helper()
	rep, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

func TestRequestCountHonoured(t *testing.T) {
	tests := []struct {
		name string
		cfg  loadgen.Config
	}{
		{"closed loop", loadgen.Config{Concurrency: 3, Requests: 17}},
		{"open loop constant", loadgen.Config{Rate: 400, Requests: 17}},
		{"open loop poisson", loadgen.Config{Rate: 400, Poisson: true, Requests: 17, Seed: 7}},
		{"open loop gamma", loadgen.Config{Rate: 400, Poisson: true, Burstiness: 0.5, Requests: 17}},
		{"streaming", loadgen.Config{Concurrency: 2, Requests: 17, Stream: true}},
		{"requests before duration", loadgen.Config{Concurrency: 2, Requests: 17, Duration: time.Minute}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeOpenAI{}
			tt.cfg.URL = f.start(t).URL
			rep := run(t, tt.cfg)
			if got := len(f.requests()); got != 17 {
				t.Errorf("server saw %d requests, want 17", got)
			}
			if rep.Requests != 17 || rep.Succeeded != 17 || rep.Failed != 0 || rep.Dropped != 0 {
				t.Errorf("got requests %d succeeded %d failed %d dropped %d, want 17/17/0/0",
					rep.Requests, rep.Succeeded, rep.Failed, rep.Dropped)
			}
			if rep.E2E.Count != 17 {
				t.Errorf("got %d E2E samples, want 17", rep.E2E.Count)
			}
		})
	}
}

func TestDurationEndsTheTest(t *testing.T) {
	f := &fakeOpenAI{}
	rep := run(t, loadgen.Config{URL: f.start(t).URL, Rate: 50, Duration: 200 * time.Millisecond})
	// Constant arrivals at 50/s during 200ms: offsets 0, 20, ..., 180ms.
	if rep.Requests != 10 {
		t.Errorf("got %d requests, want 10", rep.Requests)
	}
	rep = run(t, loadgen.Config{URL: f.start(t).URL, Concurrency: 2, Duration: 100 * time.Millisecond})
	if rep.Requests == 0 || rep.Failed != 0 {
		t.Errorf("closed loop for 100ms: got %d requests, %d failed", rep.Requests, rep.Failed)
	}
}

// A stalled request must not hide the latency of the requests scheduled
// while it stalls: each is measured from its scheduled send time, even
// when it could only be sent later.
func TestOpenLoopMeasuresFromScheduledTime(t *testing.T) {
	const n = 8
	tests := []struct {
		name     string
		serial   bool
		maxConns int
	}{
		// The server handles one request at a time: the others queue there.
		{"serial server", true, 0},
		// The client has one connection: the others queue in the client,
		// before they are sent.
		{"one connection", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu       sync.Mutex
				released time.Time
				records  []loadgen.Record
			)
			allDue := make(chan struct{})
			f := &fakeOpenAI{Serial: tt.serial, Before: func(i int) {
				if i == 0 {
					// Stall the first request until every request is due.
					<-allDue
					mu.Lock()
					released = time.Now()
					mu.Unlock()
				}
			}}
			srv := f.start(t)
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.MaxConnsPerHost = tt.maxConns
			due := 0
			client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				if due++; due == n {
					close(allDue)
				}
				mu.Unlock()
				return tr.RoundTrip(r)
			})}
			cfg := loadgen.Config{URL: srv.URL, Rate: 100, Requests: n, Client: client, OnRecord: func(r loadgen.Record) {
				mu.Lock()
				records = append(records, r)
				mu.Unlock()
			}}
			rep := run(t, cfg)
			if rep.Succeeded != n {
				t.Fatalf("got %d succeeded, want %d (errors %v)", rep.Succeeded, n, rep.Errors)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(records) != n {
				t.Fatalf("got %d records, want %d", len(records), n)
			}
			for _, r := range records {
				if !r.Scheduled.Before(released) {
					t.Fatalf("request %d scheduled after the stall ended", r.Index)
				}
				// Every request finished after the stall ended, so its
				// latency from its schedule covers the rest of the stall.
				if stall := released.Sub(r.Scheduled); r.E2E < stall {
					t.Errorf("request %d: latency %s is less than the stall it waited through (%s)", r.Index, r.E2E, stall)
				}
			}
			if rep.E2E.Max < float64(released.Sub(records[0].Scheduled))/1e6*0.99 {
				t.Errorf("max E2E %.2fms does not include the stall", rep.E2E.Max)
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestStreamingMetrics(t *testing.T) {
	tests := []struct {
		name       string
		usage      int
		wantTokens int
	}{
		{"tokens from usage", 9, 9},
		{"tokens from content events", -1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const firstDelay = 30 * time.Millisecond
			f := &fakeOpenAI{Tokens: 5, Usage: tt.usage,
				FirstDelay: func(int) time.Duration { return firstDelay },
				EventDelay: func(int) time.Duration { return time.Millisecond }}
			var records []loadgen.Record
			rep := run(t, loadgen.Config{URL: f.start(t).URL, Concurrency: 2, Requests: 4, Stream: true,
				OnRecord: func(r loadgen.Record) { records = append(records, r) }})
			if rep.Succeeded != 4 {
				t.Fatalf("got %d succeeded, want 4 (errors %v)", rep.Succeeded, rep.Errors)
			}
			for _, r := range records {
				if r.ContentEvents != 5 {
					t.Errorf("request %d: got %d content events, want 5", r.Index, r.ContentEvents)
				}
				if r.OutputTokens != tt.wantTokens {
					t.Errorf("request %d: got %d output tokens, want %d", r.Index, r.OutputTokens, tt.wantTokens)
				}
				if len(r.ITL) != 4 {
					t.Errorf("request %d: got %d inter-token gaps, want 4", r.Index, len(r.ITL))
				}
				// The empty role delta sent at once is not the first token.
				if !r.HasTTFT || r.TTFT < firstDelay || r.TTFT > r.E2E {
					t.Errorf("request %d: TTFT %s, want between %s and E2E %s", r.Index, r.TTFT, firstDelay, r.E2E)
				}
				tpot, ok := r.TPOT(true)
				if want := (r.E2E - r.TTFT) / time.Duration(tt.wantTokens-1); !ok || tpot != want {
					t.Errorf("request %d: TPOT %s (%v), want %s", r.Index, tpot, ok, want)
				}
			}
			if rep.TTFT.Count != 4 || rep.ITL.Count != 16 || rep.TPOT.Count != 4 {
				t.Errorf("got TTFT/ITL/TPOT counts %d/%d/%d, want 4/16/4", rep.TTFT.Count, rep.ITL.Count, rep.TPOT.Count)
			}
			if rep.TTFT.P50 < float64(firstDelay.Milliseconds()) || rep.TTFT.P50 > rep.E2E.P99 {
				t.Errorf("TTFT p50 %.2fms out of order with E2E p99 %.2fms", rep.TTFT.P50, rep.E2E.P99)
			}
			if got, want := rep.OutputTokens, int64(4*tt.wantTokens); got != want {
				t.Errorf("got %d output tokens, want %d", got, want)
			}
			for _, b := range f.requests() {
				opts, _ := b["stream_options"].(map[string]any)
				if b["stream"] != true || opts["include_usage"] != true {
					t.Errorf("request body %v: want stream and stream_options.include_usage", b)
				}
			}
		})
	}
}

func TestNonStreamingMetrics(t *testing.T) {
	for _, tt := range []struct {
		name  string
		usage int
		want  int
	}{{"usage", 11, 11}, {"words", -1, 6}} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeOpenAI{Tokens: 6, Usage: tt.usage}
			var records []loadgen.Record
			rep := run(t, loadgen.Config{URL: f.start(t).URL, Requests: 3,
				OnRecord: func(r loadgen.Record) { records = append(records, r) }})
			for _, r := range records {
				if r.OutputTokens != tt.want || r.TTFT != r.E2E {
					t.Errorf("request %d: tokens %d TTFT %s E2E %s, want %d tokens and TTFT = E2E", r.Index, r.OutputTokens, r.TTFT, r.E2E, tt.want)
				}
			}
			if rep.TPOT.Count != 0 || rep.ITL.Count != 0 {
				t.Errorf("non-streaming: got TPOT/ITL counts %d/%d, want 0", rep.TPOT.Count, rep.ITL.Count)
			}
			if rep.Requests != 3 || rep.OutputTokens != int64(3*tt.want) {
				t.Errorf("got %d requests and %d tokens", rep.Requests, rep.OutputTokens)
			}
		})
	}
}

func TestErrorsByType(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + closed.Addr().String()
	closed.Close()

	tests := []struct {
		name   string
		fail   string
		stream bool
		url    string
		want   string
	}{
		{"server error", "500", false, "", "http_500"},
		{"rate limited", "429", true, "", "http_429"},
		{"timeout", "hang", false, "", loadgen.ErrTimeout},
		{"timeout while streaming", "hang", true, "", loadgen.ErrTimeout},
		{"connection dropped", "close", false, "", loadgen.ErrConnection},
		{"connection refused", "", false, refused, loadgen.ErrConnection},
		{"stream without DONE", "break", true, "", loadgen.ErrStreamBroken},
		{"malformed event", "garbage", true, "", loadgen.ErrStreamBroken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeOpenAI{Fail: func(int) string { return tt.fail }}
			url := tt.url
			if url == "" {
				url = f.start(t).URL
			}
			rep := run(t, loadgen.Config{URL: url, Concurrency: 1, Requests: 3, Stream: tt.stream, Timeout: 150 * time.Millisecond})
			if rep.Failed != 3 || rep.Succeeded != 0 {
				t.Errorf("got %d failed, %d succeeded, want 3, 0", rep.Failed, rep.Succeeded)
			}
			if got := rep.Errors[tt.want]; got != 3 || len(rep.Errors) != 1 {
				t.Errorf("got errors %v, want {%s: 3}", rep.Errors, tt.want)
			}
			if rep.ErrorRate != 1 || rep.Goodput != 0 {
				t.Errorf("got error rate %v goodput %v, want 1 and 0", rep.ErrorRate, rep.Goodput)
			}
		})
	}
}

func TestDroppedWhenInFlightBoundReached(t *testing.T) {
	release := make(chan struct{})
	f := &fakeOpenAI{Before: func(int) { <-release }}
	dropped := 0
	rep := run(t, loadgen.Config{URL: f.start(t).URL, Rate: 1000, Requests: 5, MaxInFlight: 1,
		OnRecord: func(r loadgen.Record) {
			if r.Err == loadgen.ErrDropped {
				if dropped++; dropped == 4 {
					close(release)
				}
			}
		}})
	if rep.Requests != 5 || rep.Succeeded != 1 || rep.Dropped != 4 || rep.Errors[loadgen.ErrDropped] != 4 {
		t.Errorf("got requests %d succeeded %d dropped %d errors %v, want 5/1/4",
			rep.Requests, rep.Succeeded, rep.Dropped, rep.Errors)
	}
	if got := len(f.requests()); got != 1 {
		t.Errorf("server saw %d requests, want 1", got)
	}
	if rep.ErrorRate != 0.8 {
		t.Errorf("got error rate %v, want 0.8", rep.ErrorRate)
	}
}

func TestGoodput(t *testing.T) {
	const slow = 600 * time.Millisecond
	// Requests 0 and 1 are slow to their first token, 2 fails, 3..5 are fast.
	f := &fakeOpenAI{
		FirstDelay: func(n int) time.Duration {
			if n < 2 {
				return slow
			}
			return 0
		},
		Fail: func(n int) string {
			if n == 2 {
				return "500"
			}
			return ""
		},
	}
	rep := run(t, loadgen.Config{URL: f.start(t).URL, Concurrency: 1, Requests: 6, Stream: true,
		SLO: loadgen.SLO{TTFT: slow - 100*time.Millisecond}})
	if rep.Requests != 6 || rep.Succeeded != 5 {
		t.Fatalf("got %d requests, %d succeeded, want 6, 5", rep.Requests, rep.Succeeded)
	}
	if rep.Goodput != 0.5 {
		t.Errorf("got goodput %v, want 0.5 (3 of 6 requests)", rep.Goodput)
	}
	if rep.GoodputRPS <= 0 || rep.GoodputRPS > rep.RequestsPerSec {
		t.Errorf("got goodput %v req/s for %v req/s", rep.GoodputRPS, rep.RequestsPerSec)
	}

	// With no SLO set, every succeeded request counts.
	f = &fakeOpenAI{Fail: func(n int) string {
		if n == 0 {
			return "503"
		}
		return ""
	}}
	rep = run(t, loadgen.Config{URL: f.start(t).URL, Concurrency: 1, Requests: 4})
	if rep.Goodput != 0.75 {
		t.Errorf("no SLO: got goodput %v, want 0.75", rep.Goodput)
	}
}

func TestPromptsAndHeaders(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prompts.jsonl")
	data := `{"prompt": "hello there", "max_tokens": 7}

{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	prompts, err := loadgen.LoadPrompts(path)
	if err != nil {
		t.Fatalf("LoadPrompts: %v", err)
	}
	var auth []string
	var mu sync.Mutex
	f := &fakeOpenAI{}
	srv := f.start(t)
	check := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			auth = append(auth, r.Header.Get("Authorization"))
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	}
	srv.Config.Handler = check(f)
	run(t, loadgen.Config{URL: srv.URL + "/", Model: "m1", Prompts: prompts, Requests: 3,
		OutputTokens: loadgen.Dist{Mean: 20}, Headers: map[string]string{"Authorization": "Bearer k"}})
	got := f.requests()
	if len(got) != 3 {
		t.Fatalf("got %d requests, want 3", len(got))
	}
	msgs := func(b map[string]any) string {
		out, _ := json.Marshal(b["messages"])
		return string(out)
	}
	if m := msgs(got[0]); m != `[{"content":"hello there","role":"user"}]` || got[0]["max_tokens"] != 7.0 || got[0]["model"] != "m1" {
		t.Errorf("request 0: %v", got[0])
	}
	if m := msgs(got[1]); !strings.Contains(m, "be brief") || got[1]["max_tokens"] != 20.0 {
		t.Errorf("request 1: %v", got[1])
	}
	if msgs(got[2]) != msgs(got[0]) {
		t.Errorf("prompts are not used in turn: %v", got[2])
	}
	for _, a := range auth {
		if a != "Bearer k" {
			t.Errorf("got Authorization %q, want %q", a, "Bearer k")
		}
	}
}

func TestSyntheticPrompts(t *testing.T) {
	f := &fakeOpenAI{}
	run(t, loadgen.Config{URL: f.start(t).URL, Requests: 3, InputTokens: loadgen.Dist{Mean: 50}, OutputTokens: loadgen.Dist{Mean: 9}})
	for _, b := range f.requests() {
		content := b["messages"].([]any)[0].(map[string]any)["content"].(string)
		if n := len(strings.Fields(content)); n != 50 || b["max_tokens"] != 9.0 || b["model"] != "default" {
			t.Errorf("got %d words, max_tokens %v, model %v; want 50, 9, default", n, b["max_tokens"], b["model"])
		}
	}
}

func TestLoadPromptsErrors(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"unknown field", `{"prompt": "a"}` + "\n" + `{"promt": "b"}`, `:2: json: unknown field "promt"`},
		{"neither", `{"max_tokens": 3}`, `:1: set "prompt" or "messages"`},
		{"both", `{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}`, "not both"},
		{"bad json", `{"prompt": `, ":1:"},
		{"empty", "\n\n", "no prompts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.jsonl")
			os.WriteFile(path, []byte(tt.data), 0o600)
			_, err := loadgen.LoadPrompts(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  loadgen.Config
	}{
		{"no url", loadgen.Config{}},
		{"rate and concurrency", loadgen.Config{URL: "http://x", Rate: 1, Concurrency: 2}},
		{"negative rate", loadgen.Config{URL: "http://x", Rate: -1}},
		{"negative concurrency", loadgen.Config{URL: "http://x", Concurrency: -1}},
		{"negative requests", loadgen.Config{URL: "http://x", Requests: -1}},
		{"negative duration", loadgen.Config{URL: "http://x", Duration: -time.Second}},
		{"poisson without rate", loadgen.Config{URL: "http://x", Poisson: true}},
		{"burstiness without poisson", loadgen.Config{URL: "http://x", Rate: 1, Burstiness: 2}},
		{"negative slo", loadgen.Config{URL: "http://x", SLO: loadgen.SLO{TTFT: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadgen.Run(context.Background(), tt.cfg)
			if !errors.Is(err, loadgen.ErrInvalidConfig) {
				t.Errorf("got %v, want ErrInvalidConfig", err)
			}
		})
	}
	_, err := loadgen.Run(context.Background(), loadgen.Config{URL: "127.0.0.1:8080", Requests: 1})
	if !errors.Is(err, loadgen.ErrInvalidConfig) {
		t.Errorf("URL without scheme: got %v, want ErrInvalidConfig", err)
	}
}

func TestCanceledRunReturnsPartialReport(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeOpenAI{Before: func(n int) {
		if n == 2 {
			cancel()
		}
	}}
	rep, err := loadgen.Run(ctx, loadgen.Config{URL: f.start(t).URL, Concurrency: 1, Requests: 100})
	if !errors.Is(err, context.Canceled) || rep == nil {
		t.Fatalf("got %v, %v; want a report and context.Canceled", rep, err)
	}
	if rep.Failed != 0 || rep.Succeeded > 3 {
		t.Errorf("got %d succeeded %d failed, want at most 3 and 0", rep.Succeeded, rep.Failed)
	}
}

func TestProgress(t *testing.T) {
	f := &fakeOpenAI{}
	var last loadgen.Progress
	calls := 0
	run(t, loadgen.Config{URL: f.start(t).URL, Requests: 5, Stream: true, Progress: func(p loadgen.Progress) {
		calls++
		last = p
	}})
	if calls == 0 || last.Requests != 5 || last.Succeeded != 5 || last.TTFTP50 <= 0 {
		t.Errorf("got %d calls, last %+v", calls, last)
	}
}

func TestReportJSONAndTable(t *testing.T) {
	f := &fakeOpenAI{Fail: func(n int) string {
		if n == 1 {
			return "500"
		}
		return ""
	}}
	rep := run(t, loadgen.Config{URL: f.start(t).URL, Requests: 4, Stream: true, SLO: loadgen.SLO{E2E: 5 * time.Second}})
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"load", "requests", "succeeded", "failed", "dropped", "errors", "error_rate",
		"duration_seconds", "requests_per_sec", "output_tokens", "output_tokens_per_sec",
		"ttft", "itl", "tpot", "e2e", "goodput", "goodput_rps", "slo"} {
		if _, ok := got[key]; !ok {
			t.Errorf("JSON report has no %q: %s", key, data)
		}
	}
	ttft := got["ttft"].(map[string]any)
	for _, key := range []string{"count", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms"} {
		if _, ok := ttft[key]; !ok {
			t.Errorf("ttft has no %q", key)
		}
	}
	if got["slo"].(map[string]any)["e2e_ms"] != 5000.0 {
		t.Errorf("got slo %v, want e2e_ms 5000", got["slo"])
	}
	if got["errors"].(map[string]any)["http_500"] != 1.0 || got["requests"] != 4.0 {
		t.Errorf("got errors %v requests %v", got["errors"], got["requests"])
	}

	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Requests:", "4 (succeeded 3, failed 1, dropped 0)", "http_500 1", "TTFT", "ITL", "TPOT", "E2E", "Goodput:", "E2E<=5s"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table has no %q:\n%s", want, buf.String())
		}
	}
}

func TestCompare(t *testing.T) {
	var mu sync.Mutex
	var order []string
	target := func(name string, failEvery int) *fakeOpenAI {
		return &fakeOpenAI{Fail: func(n int) string {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			if n%failEvery == 0 {
				return "500"
			}
			return ""
		}}
	}
	a, b := target("A", 4), target("B", 2)
	cfgA := loadgen.Config{URL: a.start(t).URL, Concurrency: 1, Requests: 16}
	cfgB := cfgA
	cfgB.URL = b.start(t).URL
	cmp, err := loadgen.Compare(context.Background(), cfgA, cfgB, 4)
	if err != nil {
		t.Fatalf("Compare: %v", err)
	}
	if want := strings.Repeat("AAAABBBB", 4); strings.Join(order, "") != want {
		t.Errorf("got order %s, want %s", strings.Join(order, ""), want)
	}
	if len(cmp.Reports) != 4 || cmp.Rounds != 4 {
		t.Fatalf("got %d rounds", len(cmp.Reports))
	}
	if cmp.A.ErrorRate != 0.25 || cmp.B.ErrorRate != 0.5 {
		t.Errorf("got error rates %v and %v, want 0.25 and 0.5", cmp.A.ErrorRate, cmp.B.ErrorRate)
	}
	if got := cmp.Ratio.ErrorRate; got.Median != 2 || got.Min != 2 || got.Max != 2 || got.Rounds != 4 {
		t.Errorf("got error-rate ratio %+v, want 2 in every round", got)
	}
	if r := cmp.Ratio.E2EP50; r.Rounds != 4 || r.Median <= 0 {
		t.Errorf("got E2E p50 ratio %+v", r)
	}
	if r := cmp.Ratio.TTFTP99; r.Min > r.Median || r.Median > r.Max {
		t.Errorf("got TTFT p99 ratio %+v, want min <= median <= max", r)
	}
	var buf bytes.Buffer
	cmp.WriteTable(&buf)
	if !strings.Contains(buf.String(), "Error rate") || !strings.Contains(buf.String(), "2.000") {
		t.Errorf("table:\n%s", buf.String())
	}
	if _, err := json.Marshal(cmp); err != nil {
		t.Errorf("JSON: %v", err)
	}

	if _, err := loadgen.Compare(context.Background(), loadgen.Config{URL: cfgA.URL, Requests: 3}, cfgB, 4); !errors.Is(err, loadgen.ErrInvalidConfig) {
		t.Errorf("3 requests in 4 rounds: got %v, want ErrInvalidConfig", err)
	}
}
