package gateway

import (
	"github.com/modelslot/modelslot/internal/h1"

	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"
)

// The upstream client must behave as net/http's Transport does for every
// case a model server can produce; each test runs through both.
var upstreamModes = []struct {
	name string
	std  bool
}{{"upstream", false}, {"std-transport", true}}

// front serves g on a real listener, with the server the daemon uses.
func front(tb testing.TB, g *Gateway) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &h1.Server{Handler: g}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// countConns counts the connections a test backend accepts.
func countConns(ts *httptest.Server) *atomic.Int64 {
	var n atomic.Int64
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func post(t *testing.T, url, body string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestUpstreamReusesConnections(t *testing.T) {
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"echo":%q}`, b)
			}))
			conns := countConns(ts)
			ts.Start()
			defer ts.Close()
			g, _ := benchGateway(t, Config{StdUpstream: m.std}, ts.URL, "")
			url := front(t, g)
			for i := range 50 {
				body := fmt.Sprintf(`{"n":%d}`, i)
				code, got, _ := post(t, url, body)
				if code != 200 || got != fmt.Sprintf(`{"echo":%q}`, body) {
					t.Fatalf("request %d: %d %s", i, code, got)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Fatalf("50 sequential requests used %d backend connections, want 1 (keep-alive)", n)
			}
		})
	}
}

// A backend that closes idle connections (uvicorn, vLLM's server, closes
// them after 5 s) must not fail the next request.
func TestUpstreamBackendClosesIdleConnections(t *testing.T) {
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				io.WriteString(w, "ok")
			}))
			ts.Config.IdleTimeout = 20 * time.Millisecond
			conns := countConns(ts)
			ts.Start()
			defer ts.Close()
			g, _ := benchGateway(t, Config{StdUpstream: m.std}, ts.URL, "")
			url := front(t, g)
			for i := range 5 {
				if code, got, _ := post(t, url, `{"a":1}`); code != 200 || got != "ok" {
					t.Fatalf("request %d after an idle close: %d %s", i, code, got)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if n := conns.Load(); n != 5 {
				t.Fatalf("backend saw %d connections, want 5 (each idle one closed by the backend)", n)
			}
		})
	}
}

// rawBackend answers each connection with the scripted bytes after
// reading one request; used for framings net/http's server never sends.
func rawBackend(t *testing.T, answer func(n int, req *http.Request, c net.Conn)) string {
	t.Helper()
	var n atomic.Int64
	return serveRaw(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			answer(int(n.Add(1)), req, c)
		}
	})
}

func TestUpstreamResponseFramings(t *testing.T) {
	cases := []struct {
		name   string
		answer string
		want   string
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", "hello"},
		{"early hints first", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "hello"},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", ""},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", "hello"},
		// Sent in pieces ("|"), 20 ms apart: the wait for the answer ends
		// with its first piece, and the rest of the head is read after it.
		{"head in pieces", "HTTP/1.1 200 OK\r\nContent-|Length: 5\r\n\r|\nhel|lo", "hello"},
		{"chunked in pieces", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel|\r\n2\r\nlo\r\n0\r\n\r\n", "hello"},
	}
	for _, m := range upstreamModes {
		for _, tc := range cases {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				backend := rawBackend(t, func(_ int, _ *http.Request, c net.Conn) {
					for i, piece := range strings.Split(tc.answer, "|") {
						if i > 0 {
							time.Sleep(20 * time.Millisecond)
						}
						io.WriteString(c, piece)
					}
				})
				g, _ := benchGateway(t, Config{StdUpstream: m.std}, backend, "")
				url := front(t, g)
				for i := range 3 {
					code, got, _ := post(t, url, `{}`)
					if code/100 != 2 || got != tc.want {
						t.Fatalf("request %d: %d %q, want %q", i, code, got, tc.want)
					}
				}
			})
		}
	}
}

// A close-delimited answer (no length, no chunks) ends when the backend
// closes; the connection is not reused.
func TestUpstreamCloseDelimitedBody(t *testing.T) {
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			backend := rawBackend(t, func(_ int, _ *http.Request, c net.Conn) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
				c.Close()
			})
			g, _ := benchGateway(t, Config{StdUpstream: m.std}, backend, "")
			url := front(t, g)
			for i := range 3 {
				if code, got, _ := post(t, url, `{}`); code != 200 || got != "until close" {
					t.Fatalf("request %d: %d %q", i, code, got)
				}
			}
		})
	}
}

// A backend that writes stray bytes after an answer leaves its connection
// out of step: it must not be used again.
func TestUpstreamDropsConnectionWithStrayBytes(t *testing.T) {
	backend := rawBackend(t, func(n int, _ *http.Request, c net.Conn) {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n%02dGARBAGE", n%100)
	})
	g, _ := benchGateway(t, Config{}, backend, "")
	url := front(t, g)
	for i := range 5 {
		code, got, _ := post(t, url, `{}`)
		if code != 200 || len(got) != 2 {
			t.Fatalf("request %d: %d %q", i, code, got)
		}
	}
}

func TestUpstreamRequestBodies(t *testing.T) {
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			type seen struct {
				length   int64
				te       []string
				sum      string
				ua, host string
			}
			var mu sync.Mutex
			var got []seen
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := sha256.New()
				io.Copy(h, r.Body)
				mu.Lock()
				got = append(got, seen{r.ContentLength, r.TransferEncoding, hex.EncodeToString(h.Sum(nil)), r.UserAgent(), r.Host})
				mu.Unlock()
				io.WriteString(w, "ok")
			}))
			defer ts.Close()
			g, _ := benchGateway(t, Config{StdUpstream: m.std}, ts.URL, "")
			url := front(t, g)

			big := bytes.Repeat([]byte(`{"content":"0123456789abcdef"},`), 40000) // 1.2 MB
			sum := sha256.Sum256(big)
			// Known length.
			resp, err := http.Post(url+"/v1/chat/completions", "application/json", bytes.NewReader(big))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// Unknown length: the client sends chunks.
			resp, err = http.Post(url+"/v1/chat/completions", "application/json", io.MultiReader(bytes.NewReader(big[:1000]), bytes.NewReader(big[1000:])))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// No body.
			req, _ := http.NewRequest(http.MethodGet, url+"/v1/models", nil)
			req.Header.Set("User-Agent", "test-agent/1")
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()

			mu.Lock()
			defer mu.Unlock()
			if len(got) != 3 {
				t.Fatalf("backend saw %d requests, want 3", len(got))
			}
			if got[0].length != int64(len(big)) || got[0].sum != hex.EncodeToString(sum[:]) {
				t.Errorf("known-length body: length %d, want %d; intact %v", got[0].length, len(big), got[0].sum == hex.EncodeToString(sum[:]))
			}
			if got[1].length != -1 || len(got[1].te) != 1 || got[1].te[0] != "chunked" || got[1].sum != hex.EncodeToString(sum[:]) {
				t.Errorf("chunked body: length %d, transfer encoding %v, intact %v", got[1].length, got[1].te, got[1].sum == hex.EncodeToString(sum[:]))
			}
			if got[2].length != 0 || got[2].ua != "test-agent/1" {
				t.Errorf("GET: length %d, user agent %q", got[2].length, got[2].ua)
			}
			if want := strings.TrimPrefix(ts.URL, "http://"); got[0].host != want {
				t.Errorf("Host header %q, want the backend's %q", got[0].host, want)
			}
		})
	}
}

// A client that goes away mid-stream cancels the backend's request at
// once, so a long generation stops costing.
func TestUpstreamClientCancelReachesBackend(t *testing.T) {
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			cancelled := make(chan struct{})
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				for i := 0; ; i++ {
					if _, err := fmt.Fprintf(w, "data: {\"n\":%d}\n\n", i); err != nil {
						break
					}
					w.(http.Flusher).Flush()
					select {
					case <-r.Context().Done():
						close(cancelled)
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}))
			defer ts.Close()
			g, _ := benchGateway(t, Config{StdUpstream: m.std}, ts.URL, "")
			url := front(t, g)
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(resp.Body)
			for range 3 { // three events arrive, one by one
				if _, err := br.ReadString('\n'); err != nil {
					t.Fatal(err)
				}
			}
			cancel()
			resp.Body.Close()
			select {
			case <-cancelled:
			case <-time.After(10 * time.Second):
				t.Fatal("the backend's request was not cancelled after the client went away")
			}
		})
	}
}

// A client that leaves while the backend has not answered yet (the
// upstream client then waits for the answer's first byte, see
// rawio.WriteAwaitRead) still ends the backend's request.
func TestUpstreamClientCancelBeforeTheAnswer(t *testing.T) {
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			arrived, cancelled := make(chan struct{}), make(chan struct{})
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				// net/http sees a connection end only once the body is read.
				io.ReadAll(r.Body)
				close(arrived)
				<-r.Context().Done()
				close(cancelled)
			}))
			defer ts.Close()
			g, _ := benchGateway(t, Config{StdUpstream: m.std}, ts.URL, "")
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, front(t, g)+"/v1/chat/completions", strings.NewReader(`{}`))
			done := make(chan error, 1)
			go func() {
				_, err := http.DefaultClient.Do(req)
				done <- err
			}()
			<-arrived
			cancel()
			<-done
			select {
			case <-cancelled:
			case <-time.After(10 * time.Second):
				t.Fatal("the backend's request was not cancelled after the client went away")
			}
		})
	}
}

func TestUpstreamErrors(t *testing.T) {
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			// Nothing listens: 502 in OpenAI's error shape.
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			dead := "http://" + ln.Addr().String()
			ln.Close()
			g, _ := benchGateway(t, Config{StdUpstream: m.std}, dead, "")
			code, body, _ := post(t, front(t, g), `{}`)
			if code != http.StatusBadGateway || !strings.Contains(body, "backend_unavailable") {
				t.Errorf("dead backend: %d %s", code, body)
			}

			// Headers too slow: 504.
			slow := rawBackend(t, func(_ int, _ *http.Request, c net.Conn) { time.Sleep(2 * time.Second) })
			g, _ = benchGateway(t, Config{StdUpstream: m.std, ResponseHeaderTimeout: 100 * time.Millisecond}, slow, "")
			code, body, _ = post(t, front(t, g), `{}`)
			if code != http.StatusGatewayTimeout || !strings.Contains(body, "backend_timeout") {
				t.Errorf("slow backend: %d %s", code, body)
			}

			// The backend hangs up without answering: 502.
			rude := rawBackend(t, func(_ int, _ *http.Request, c net.Conn) { c.Close() })
			g, _ = benchGateway(t, Config{StdUpstream: m.std}, rude, "")
			code, body, _ = post(t, front(t, g), `{}`)
			if code != http.StatusBadGateway {
				t.Errorf("backend hung up: %d %s", code, body)
			}

			// The answer breaks mid-body: the client sees a truncated
			// answer (an aborted connection), never a complete one.
			broken := rawBackend(t, func(_ int, _ *http.Request, c net.Conn) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
				c.Close()
			})
			g, _ = benchGateway(t, Config{StdUpstream: m.std}, broken, "")
			resp, err := http.Post(front(t, g)+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil {
				t.Errorf("a body broken mid-way reached the client as complete")
			}
		})
	}
}

// TestHeaderTimeoutBounds: the header timeout, kept by a sweep, never ends
// a wait shorter than itself, ends one much longer with a 504, and leaves
// the connections after it sound. The backend waits for as long as the
// request's body says.
func TestHeaderTimeoutBounds(t *testing.T) {
	const timeout = 400 * time.Millisecond
	slow := rawBackend(t, func(_ int, r *http.Request, c net.Conn) {
		d, _ := time.ParseDuration(r.Header.Get("X-Wait"))
		time.Sleep(d)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			g, _ := benchGateway(t, Config{StdUpstream: m.std, ResponseHeaderTimeout: timeout}, slow, "")
			url := front(t, g) + "/v1/chat/completions"
			for _, tc := range []struct {
				wait time.Duration
				code int
			}{{0, 200}, {timeout * 3 / 4, 200}, {0, 200}, {3 * timeout, 504}, {0, 200}, {timeout * 3 / 4, 200}} {
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{}`))
				req.Header.Set("X-Wait", tc.wait.String())
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.code {
					t.Errorf("backend answering after %v with a header timeout of %v: %d, want %d", tc.wait, timeout, resp.StatusCode, tc.code)
				}
			}
		})
	}
}

// Requests the upstream client leaves to the Transport still work.
func TestUpstreamExpectContinueFallsBack(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	defer ts.Close()
	g, _ := benchGateway(t, Config{}, ts.URL, "")
	req, _ := http.NewRequest(http.MethodPost, front(t, g)+"/v1/chat/completions", strings.NewReader(`{"x":1}`))
	req.Header.Set("Expect", "100-continue")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != `{"x":1}` {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// Many clients at once share the pool without mixing answers up.
func TestUpstreamConcurrentRequestsKeepTheirAnswers(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if len(b)%3 == 0 {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			w.Write(b[len(b)/2:])
			return
		}
		w.Write(b)
	}))
	defer ts.Close()
	g, _ := benchGateway(t, Config{MaxIdleConnsPerHost: 4}, ts.URL, "")
	url := front(t, g)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 32 {
		wg.Go(func() {
			for i := range 50 {
				body := fmt.Sprintf(`{"worker":%d,"i":%d}`, w, i)
				resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != body {
					errs <- errors.New("worker got " + string(b) + " for " + body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// The daemon's own requests (gates) carry the gateway's key: they are
// served, but stay out of the slot's meter; the header never reaches the
// backend, and a wrong key only loses the header.
func TestSyntheticRequestsStayOutOfTheMeter(t *testing.T) {
	var leaked atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Header[HeaderSynthetic]; ok {
			leaked.Add(1)
		}
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"usage":{"completion_tokens":1}}`)
	}))
	defer ts.Close()
	g, app := benchGateway(t, Config{}, ts.URL, "")
	url := front(t, g)
	send := func(n int, key string) {
		for range n {
			req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions?"+RoutingParam+"=self", strings.NewReader(`{}`))
			if key != "" {
				req.Header.Set(HeaderSynthetic, key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
	}
	counted := func() int { return len(app.prod.meter.samples(time.Time{}, time.Now().Add(time.Minute))) }
	send(5, g.SyntheticKey())
	if n := counted(); n != 0 {
		t.Errorf("the meter counted %d synthetic requests, want 0", n)
	}
	send(3, "not-the-key")
	send(2, "")
	if n := counted(); n != 5 {
		t.Errorf("the meter counted %d requests, want the 5 without the key", n)
	}
	if n := leaked.Load(); n != 0 {
		t.Errorf("%s reached the backend %d times, want never", HeaderSynthetic, n)
	}
}

// TestCopyBody: copyBody copies as io.CopyN does, through bodies larger
// than the write buffer, and says io.EOF for a body that ends early.
func TestCopyBody(t *testing.T) {
	for _, tc := range []struct {
		size, n int
		err     error
	}{{0, 0, nil}, {10, 10, nil}, {4096, 4096, nil}, {10000, 10000, nil}, {10000, 9000, nil}, {100, 200, io.EOF}, {5000, 9000, io.EOF}} {
		src := strings.Repeat("abcdefghij", tc.size/10+1)[:tc.size]
		var out strings.Builder
		bw := bufio.NewWriterSize(&out, 4096)
		n, err := copyBody(bw, iotest.HalfReader(strings.NewReader(src)), int64(tc.n))
		bw.Flush()
		if err != tc.err || n != int64(min(tc.size, tc.n)) || out.String() != src[:n] {
			t.Errorf("copyBody of %d bytes, n %d: %d, %v (output %d bytes), want %d, %v", tc.size, tc.n, n, err, out.Len(), min(tc.size, tc.n), tc.err)
		}
	}
}
