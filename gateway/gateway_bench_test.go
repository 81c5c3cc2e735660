package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
)

// benchGateway returns a gateway with one app, "default", split 90/10
// between production and staging, both served by backendURL.
func benchGateway(tb testing.TB, cfg Config, backendURL, stickyKey string) (*Gateway, *appRoute) {
	tb.Helper()
	g := New(cfg)
	tb.Cleanup(g.Close)
	app := &modelslot.App{
		Name:      "default",
		StickyKey: stickyKey,
		Routing:   modelslot.Routing{Rules: []modelslot.TrafficRule{{Slot: "staging", Percent: 10}}, Generation: 3},
	}
	backends := map[string]*Backend{}
	for _, name := range []string{modelslot.Production, "staging"} {
		d := &modelslot.Deployment{Revision: "rev-" + name, Version: "v-" + name, URL: backendURL}
		app.Slots = append(app.Slots, &modelslot.Slot{Name: name, Deployment: d})
		b, err := g.NewBackend(backendURL, d)
		if err != nil {
			tb.Fatal(err)
		}
		backends[name] = b
	}
	g.Update([]RouteApp{{App: app, Backends: backends}})
	return g, g.snap.Load().only
}

// routeCases are the routing decisions of the hot path: a weighted draw,
// a routing cookie of the current generation, and a sticky header.
var routeCases = []struct {
	name, sticky string
	mod          func(*http.Request)
}{
	{"weighted", "", nil},
	{"cookie", "", func(r *http.Request) { r.Header.Set("Cookie", "a=b; "+RoutingParam+"=staging.3; c=d") }},
	{"sticky-header", "header:X-Session-Id", func(r *http.Request) { r.Header.Set("X-Session-Id", "user-42") }},
}

func routeRequest(mod func(*http.Request)) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	if mod != nil {
		mod(r)
	}
	return r
}

// TestRouteAllocatesNothing holds the per-request routing decision to zero
// allocations: it runs for every request at any load.
func TestRouteAllocatesNothing(t *testing.T) {
	for _, tc := range routeCases {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := benchGateway(t, Config{}, "http://127.0.0.1:1", tc.sticky)
			r := routeRequest(tc.mod)
			allocs := testing.AllocsPerRun(1000, func() {
				app, _ := g.snap.Load().appFor(r)
				if s, _, err := g.route(app, r); s == nil || err != nil {
					t.Fatalf("route: %v, %v", s, err)
				}
			})
			if allocs != 0 {
				t.Fatalf("route allocates %v times per request, want 0", allocs)
			}
		})
	}
}

func BenchmarkRoute(b *testing.B) {
	for _, tc := range routeCases {
		b.Run(tc.name, func(b *testing.B) {
			g, _ := benchGateway(b, Config{}, "http://127.0.0.1:1", tc.sticky)
			r := routeRequest(tc.mod)
			b.ReportAllocs()
			for b.Loop() {
				app, _ := g.snap.Load().appFor(r)
				g.route(app, r)
			}
		})
	}
}

// BenchmarkMeterRecord is the per-request cost of metering a sample: the
// ring write and the Prometheus observations.
func BenchmarkMeterRecord(b *testing.B) {
	g, app := benchGateway(b, Config{}, "http://127.0.0.1:1", "")
	sm := app.prod.meter
	s := modelslot.Sample{Time: time.Now(), Status: 200, Latency: 3 * time.Millisecond, TTFT: time.Millisecond, OutputTokens: 16, Revision: app.prod.revision}
	_ = g
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sm.record(s)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				sm.record(s)
			}
		})
	})
}

// BenchmarkMeterWriter scans a streamed answer: 64 content events.
func BenchmarkMeterWriter(b *testing.B) {
	ev := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"sim","choices":[{"index":0,"delta":{"content":"word "},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	w := &discardWriter{h: http.Header{"Content-Type": {"text/event-stream"}}}
	b.ReportAllocs()
	b.SetBytes(int64(64 * len(ev)))
	for b.Loop() {
		mw := getMeterWriter(w, time.Now(), nil)
		mw.WriteHeader(200)
		for range 64 {
			mw.Write(ev)
		}
		mw.sample("rev")
		putMeterWriter(mw)
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Flush()                      {}

const benchAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"sim","choices":[{"index":0,"message":{"role":"assistant","content":"sim says hello to you all"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":6,"total_tokens":15}}`

const benchBody = `{"model":"default","messages":[{"role":"user","content":"hello"}],"max_tokens":16}`

func benchBackend(b *testing.B) *httptest.Server {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, benchAnswer)
	}))
	b.Cleanup(ts.Close)
	return ts
}

// BenchmarkProxy is the whole gateway path in process: ServeHTTP with a
// real upstream round trip to an httptest backend, with and without the
// meter (their ratio is the cost of metering), and through net/http's
// Transport instead of the gateway's upstream client.
func BenchmarkProxy(b *testing.B) {
	ts := benchBackend(b)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"meter", Config{}},
		{"nometer", Config{DisableMeter: true}},
		{"std-upstream", Config{StdUpstream: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			g, _ := benchGateway(b, tc.cfg, ts.URL, "")
			b.ReportAllocs()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(benchBody))
					r.Header.Set("Content-Type", "application/json")
					clear(w.h)
					g.ServeHTTP(w, r)
				}
			})
		})
	}
}

// BenchmarkProxyHTTP adds the front listener: a client round trip to the
// gateway over loopback in the same process.
func BenchmarkProxyHTTP(b *testing.B) {
	ts := benchBackend(b)
	g, _ := benchGateway(b, Config{}, ts.URL, "")
	// The gateway's own server (as the daemon runs it) and net/http's
	// (gateway.stdServer), each with a client over loopback in the same
	// process.
	std := httptest.NewServer(g)
	b.Cleanup(std.Close)
	for _, f := range []struct{ name, url string }{{"h1", front(b, g)}, {"net-http", std.URL}} {
		b.Run(f.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
			defer client.CloseIdleConnections()
			b.ReportAllocs()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Post(f.url+"/v1/chat/completions", "application/json", strings.NewReader(benchBody))
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// reportCPU starts counting the process's CPU time and returns the function
// that reports it per operation ("cpu-ns/op": client, gateway and backend
// together). On a shared 2-core machine a request's CPU time moves much
// less than its wall time, which depends on who else had the cores.
func reportCPU(b *testing.B) func() {
	start := processCPU()
	return func() {
		b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
	}
}
