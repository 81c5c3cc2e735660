package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/sim"
)

// mirrorGateway serves app "default" from prodURL with percent of its
// requests mirrored to a staging slot served by shadowURL.
func mirrorGateway(tb testing.TB, prodURL, shadowURL string, percent float64) (*gateway.Gateway, string) {
	tb.Helper()
	g := gateway.New(gateway.Config{})
	app := &modelslot.App{Name: "default", Routing: modelslot.Routing{Generation: 1}}
	if percent > 0 {
		app.Mirror = &modelslot.MirrorRule{Slot: "staging", Percent: percent}
	}
	backends := map[string]*gateway.Backend{}
	for name, u := range map[string]string{modelslot.Production: prodURL, "staging": shadowURL} {
		d := &modelslot.Deployment{Revision: "rev-" + name, Version: "v-" + name, URL: u}
		app.Slots = append(app.Slots, &modelslot.Slot{Name: name, Deployment: d})
		b, err := g.NewBackend(u, d)
		if err != nil {
			tb.Fatal(err)
		}
		backends[name] = b
	}
	g.Update([]gateway.RouteApp{{App: app, Backends: backends}})
	srv := httptest.NewServer(g)
	tb.Cleanup(func() {
		srv.Close()
		g.Close()
	})
	return g, srv.URL
}

func simURL(tb testing.TB, cfg sim.Config) string {
	tb.Helper()
	s, err := sim.NewChecked(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(s)
	tb.Cleanup(srv.Close)
	return srv.URL
}

var answers = map[string]string{
	"capital of France?": "Paris.",
	"2+2?":               "4",
	"color of the sky?":  "Blue.",
}

func prompts() []string { return []string{"capital of France?", "2+2?", "color of the sky?"} }

func chat(tb testing.TB, url, prompt string, stream bool) *http.Response {
	tb.Helper()
	body := `{"model":"default","messages":[{"role":"user","content":"` + prompt + `"}]`
	if stream {
		body += `,"stream":true`
	}
	body += "}"
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// waitCompared polls until n pairs were compared.
func waitCompared(t *testing.T, g *gateway.Gateway, n int64) gateway.ShadowStats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := g.ShadowStats("default")
		if st.Compared >= n {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("compared %d pairs, want %d (stats %+v)", st.Compared, n, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMirrorComparesAnswers(t *testing.T) {
	prod := simURL(t, sim.Config{Answers: answers, Seed: 1})
	tests := []struct {
		name   string
		shadow sim.Config
		stream bool
		check  func(t *testing.T, st gateway.ShadowStats)
	}{
		{"same answers", sim.Config{Answers: answers, Seed: 2}, false, func(t *testing.T, st gateway.ShadowStats) {
			if st.ExactMatchRate != 1 || st.TextCompared != 30 {
				t.Errorf("exact match %v over %d texts, want 1 over 30", st.ExactMatchRate, st.TextCompared)
			}
			if st.StatusMismatches != 0 || st.Shadow.Refused != 0 || st.Shadow.Empty != 0 {
				t.Errorf("mismatches %d, refused %d, empty %d, want 0", st.StatusMismatches, st.Shadow.Refused, st.Shadow.Empty)
			}
			if st.OutputLengthRatio < 0.99 || st.OutputLengthRatio > 1.01 {
				t.Errorf("output length ratio %v, want 1", st.OutputLengthRatio)
			}
		}},
		{"same answers streamed", sim.Config{Answers: answers, Seed: 2}, true, func(t *testing.T, st gateway.ShadowStats) {
			if st.ExactMatchRate != 1 || st.TextCompared != 30 {
				t.Errorf("exact match %v over %d texts, want 1 over 30", st.ExactMatchRate, st.TextCompared)
			}
		}},
		{"wrong answers", sim.Config{Answers: answers, WrongRate: 1, Seed: 2}, false, func(t *testing.T, st gateway.ShadowStats) {
			if st.ExactMatchRate != 0 {
				t.Errorf("exact match %v, want 0", st.ExactMatchRate)
			}
			if got, want := st.Shadow.Refused, 30; got != want {
				t.Errorf("shadow refused %d, want %d", got, want)
			}
			if st.Production.Refused != 0 {
				t.Errorf("production refused %d, want 0", st.Production.Refused)
			}
		}},
		{"malformed answers", sim.Config{Answers: answers, MalformedRate: 1, Seed: 2}, true, func(t *testing.T, st gateway.ShadowStats) {
			if st.Shadow.JSONAnswers != 30 || st.Shadow.JSONValidRate != 0 {
				t.Errorf("shadow JSON answers %d, valid rate %v, want 30 and 0", st.Shadow.JSONAnswers, st.Shadow.JSONValidRate)
			}
			if st.Production.JSONAnswers != 0 || st.Production.JSONValidRate != 1 {
				t.Errorf("production JSON answers %d, valid rate %v, want 0 and 1", st.Production.JSONAnswers, st.Production.JSONValidRate)
			}
		}},
		{"longer answers", sim.Config{Answers: answers, OutputScale: 3, Seed: 2}, false, func(t *testing.T, st gateway.ShadowStats) {
			if st.OutputLengthRatio < 2.9 || st.OutputLengthRatio > 3.1 {
				t.Errorf("output length ratio %v, want 3", st.OutputLengthRatio)
			}
		}},
		{"failing shadow", sim.Config{ErrorRate: 1, Seed: 2}, false, func(t *testing.T, st gateway.ShadowStats) {
			if st.StatusMismatches != 30 || st.Shadow.Errors != 30 || st.TextCompared != 0 {
				t.Errorf("mismatches %d, shadow errors %d, texts %d, want 30, 30, 0", st.StatusMismatches, st.Shadow.Errors, st.TextCompared)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, url := mirrorGateway(t, prod, simURL(t, tc.shadow), 100)
			for i := range 30 {
				if resp := chat(t, url, prompts()[i%3], tc.stream); resp.StatusCode != http.StatusOK {
					t.Fatalf("user request: status %d", resp.StatusCode)
				}
			}
			st := waitCompared(t, g, 30)
			if st.Sent != 30 || st.Dropped != 0 || st.Slot != "staging" || st.Percent != 100 {
				t.Errorf("sent %d, dropped %d, rule %s=%v; want 30, 0, staging=100", st.Sent, st.Dropped, st.Slot, st.Percent)
			}
			if len(st.Recent) == 0 || st.Recent[len(st.Recent)-1].Stream != tc.stream {
				t.Errorf("recent pairs %+v, want stream=%v", st.Recent, tc.stream)
			}
			tc.check(t, st)
		})
	}
}

func TestMirrorShare(t *testing.T) {
	g, url := mirrorGateway(t, simURL(t, sim.Config{}), simURL(t, sim.Config{}), 25)
	for range 40 {
		chat(t, url, "hi", false)
	}
	st := waitCompared(t, g, 10)
	if st.Sent != 10 {
		t.Errorf("sent %d mirrors of 40 requests at 25%%, want 10", st.Sent)
	}
}

// TestMirrorNeverBlocksUsers: a shadow that never answers fills the queue;
// users still get every answer, the overflow is dropped and counted, and
// Close does not wait for the shadow.
func TestMirrorNeverBlocksUsers(t *testing.T) {
	release := make(chan struct{})
	var shadowHeader atomic.Value
	var seen atomic.Int64
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		shadowHeader.Store(r.Header.Get(gateway.ShadowHeader))
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer shadow.Close()
	defer close(release)
	var prodShadowHeader atomic.Bool
	prod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(gateway.ShadowHeader) != "" {
			prodShadowHeader.Store(true)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"choices":[{"message":{"role":"assistant","content":"ok"}}]}`)
	}))
	defer prod.Close()

	g := gateway.New(gateway.Config{})
	app := &modelslot.App{Name: "default", Mirror: &modelslot.MirrorRule{Slot: "staging", Percent: 100}}
	backends := map[string]*gateway.Backend{}
	for name, u := range map[string]string{modelslot.Production: prod.URL, "staging": shadow.URL} {
		d := &modelslot.Deployment{Revision: name, URL: u}
		app.Slots = append(app.Slots, &modelslot.Slot{Name: name, Deployment: d})
		backends[name], _ = g.NewBackend(u, d)
	}
	g.Update([]gateway.RouteApp{{App: app, Backends: backends}})
	front := httptest.NewServer(g)
	defer front.Close()

	const users = 400
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < users; i += 8 {
				resp, err := http.Post(front.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"messages":[]}`))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d user requests failed, want 0", n, users)
	}
	st := g.ShadowStats("default")
	if st.Dropped == 0 {
		t.Errorf("dropped %d mirrors with a stuck shadow, want > 0", st.Dropped)
	}
	if st.Sent+st.Dropped > users {
		t.Errorf("sent %d + dropped %d mirrors of %d requests", st.Sent, st.Dropped, users)
	}
	if prodShadowHeader.Load() {
		t.Error("production got the shadow header")
	}
	deadline := time.Now().Add(10 * time.Second)
	for seen.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h, _ := shadowHeader.Load().(string); h != "1" {
		t.Errorf("shadow request header %s = %q, want 1", gateway.ShadowHeader, h)
	}

	closed := make(chan struct{})
	go func() {
		g.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for a stuck shadow")
	}
}

// TestMirrorShadowDown: a shadow that refuses connections counts failures
// and never touches users' answers.
func TestMirrorShadowDown(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	g, url := mirrorGateway(t, simURL(t, sim.Config{}), deadURL, 100)
	for range 20 {
		if resp := chat(t, url, "hi", true); resp.StatusCode != http.StatusOK {
			t.Fatalf("user request: status %d", resp.StatusCode)
		}
	}
	st := waitCompared(t, g, 20)
	if st.Failed != 20 || st.StatusMismatches != 20 {
		t.Errorf("failed %d, mismatches %d, want 20 and 20", st.Failed, st.StatusMismatches)
	}
	if e := st.Recent[0].Shadow.Error; e == "" {
		t.Error("a failed shadow request has no error text")
	}
}

func TestShadowSamplesSince(t *testing.T) {
	g, url := mirrorGateway(t, simURL(t, sim.Config{}), simURL(t, sim.Config{}), 100)
	for range 5 {
		chat(t, url, "hi", false)
	}
	waitCompared(t, g, 5)
	mark := time.Now()
	for range 3 {
		chat(t, url, "hi", false)
	}
	waitCompared(t, g, 8)
	if got := len(g.ShadowSamples("default", mark)); got != 3 {
		t.Errorf("samples since the mark: %d, want 3", got)
	}
	if got := len(g.ShadowSamples("other", time.Time{})); got != 0 {
		t.Errorf("samples of an unknown app: %d, want 0", got)
	}
}

// BenchmarkMirrorOverhead measures a user's request with mirroring off and
// with every request mirrored (to a fast shadow), and logs the ratio.
func BenchmarkMirrorOverhead(b *testing.B) {
	backend := func() string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"choices":[{"message":{"role":"assistant","content":"The answer is 42."}}],"usage":{"completion_tokens":5}}`)
		}))
		b.Cleanup(s.Close)
		return s.URL
	}
	prod, shadow := backend(), backend()
	var nsPerOp [2]float64
	for i, mode := range []struct {
		name    string
		percent float64
	}{{"off", 0}, {"on", 100}} {
		b.Run(mode.name, func(b *testing.B) {
			_, url := mirrorGateway(b, prod, shadow, mode.percent)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
			body := `{"model":"default","messages":[{"role":"user","content":"What is the answer?"}]}`
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			nsPerOp[i] = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
	}
	if nsPerOp[0] > 0 {
		b.Logf("user request latency: mirroring off %.0f ns, on %.0f ns, ratio on/off %.3f", nsPerOp[0], nsPerOp[1], nsPerOp[1]/nsPerOp[0])
	}
}

// TestMirrorGetsTheClientsRequest: the shadow receives the client's
// request, never the one made for the production backend (its base path,
// query parameters and key), on the direct proxy path too.
func TestMirrorGetsTheClientsRequest(t *testing.T) {
	s, err := sim.NewChecked(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	prod := httptest.NewServer(http.StripPrefix("/base", s))
	defer prod.Close()
	type seen struct {
		path, query string
		header      http.Header
	}
	got := make(chan seen, 1)
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- seen{r.URL.Path, r.URL.RawQuery, r.Header.Clone()}:
		default:
		}
		s.ServeHTTP(w, r)
	}))
	defer shadow.Close()

	g := gateway.New(gateway.Config{})
	defer g.Close()
	app := &modelslot.App{Name: "default", Routing: modelslot.Routing{Generation: 1},
		Mirror: &modelslot.MirrorRule{Slot: "staging", Percent: 100}}
	deps := map[string]*modelslot.Deployment{
		modelslot.Production: {Revision: "p", Version: "v1", URL: prod.URL + "/base",
			Headers: map[string]string{"api-key": "prod-secret"}, Query: map[string]string{"api-version": "2024-10-21"}},
		"staging": {Revision: "s", Version: "v2", URL: shadow.URL},
	}
	backends := map[string]*gateway.Backend{}
	for name, d := range deps {
		app.Slots = append(app.Slots, &modelslot.Slot{Name: name, Deployment: d})
		b, err := g.NewBackend(d.URL, d)
		if err != nil {
			t.Fatal(err)
		}
		backends[name] = b
	}
	g.Update([]gateway.RouteApp{{App: app, Backends: backends}})
	front := httptest.NewServer(g)
	defer front.Close()

	resp := chat(t, front.URL, "2+2?", false)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("production answered %d", resp.StatusCode)
	}
	select {
	case r := <-got:
		if r.path != "/v1/chat/completions" || r.query != "" || r.header.Get("Api-Key") != "" {
			t.Fatalf("the shadow got path %q, query %q, api-key %q: production's request, not the client's", r.path, r.query, r.header.Get("Api-Key"))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no mirrored request reached the shadow")
	}
}
