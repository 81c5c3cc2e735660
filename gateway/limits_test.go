package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/internal/h1"
)

// countingConn counts the bytes the gateway reads from a client.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

// countedFront serves g as front does and reports how many bytes the
// gateway had read from its clients when each handler returned (its
// answer decided).
func countedFront(tb testing.TB, g *Gateway) (url string, readAtAnswer *atomic.Int64) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var read, atAnswer atomic.Int64
	srv := &h1.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { atAnswer.Store(read.Load()) }()
		g.ServeHTTP(w, r)
	})}
	go srv.Serve(countingListener{ln, &read})
	tb.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), &atAnswer
}

// limitGateway serves app "default" on backendURL, with the body reading
// of one path: sticky (routing by the "user" field over a split), rewrite
// (a public model name), mirror (every request copied to staging) or plain
// (a split, nothing read).
func limitGateway(tb testing.TB, path, backendURL string) *Gateway {
	tb.Helper()
	g := New(Config{})
	tb.Cleanup(g.Close)
	app := &modelslot.App{Name: "default", Routing: modelslot.Routing{Generation: 1}}
	switch path {
	case "sticky":
		app.StickyKey = "user"
		app.Routing.Rules = []modelslot.TrafficRule{{Slot: "staging", Percent: 10}}
	case "mirror":
		app.Mirror = &modelslot.MirrorRule{Slot: "staging", Percent: 100}
	case "plain":
		app.Routing.Rules = []modelslot.TrafficRule{{Slot: "staging", Percent: 10}}
	}
	backends := map[string]*Backend{}
	for _, name := range []string{modelslot.Production, "staging"} {
		d := &modelslot.Deployment{Revision: "rev-" + name, Version: "v-" + name, URL: backendURL}
		if path == "rewrite" {
			d.Model = "backend-model"
		}
		app.Slots = append(app.Slots, &modelslot.Slot{Name: name, Deployment: d})
		b, err := g.NewBackend(backendURL, d)
		if err != nil {
			tb.Fatal(err)
		}
		backends[name] = b
	}
	g.Update([]RouteApp{{App: app, Backends: backends}})
	return g
}

// memWatch measures how much memory the process took on from start to
// peak: on Linux its peak resident size (VmHWM, reset at start through
// clear_refs), elsewhere and under the race detector the Go heap's size
// (HeapSys, which grows with the largest heap the process needed).
type memWatch struct {
	rss  bool
	base int64
}

func watchMemory() *memWatch {
	runtime.GC()
	debug.FreeOSMemory()
	if !raceEnabled && os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil {
		if rss := procStatus("VmRSS"); rss > 0 {
			return &memWatch{rss: true, base: rss}
		}
	}
	return &memWatch{base: heapSys()}
}

// grew is the growth at peak since watchMemory.
func (m *memWatch) grew() int64 {
	if m.rss {
		return procStatus("VmHWM") - m.base
	}
	return heapSys() - m.base
}

func heapSys() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapSys)
}

// procStatus returns a size field of /proc/self/status in bytes (0 if
// unknown).
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// rawRequest sends head and then body (each piece of it written as it
// comes from next, until next returns nil or the answer arrives) on a new
// connection, and returns the answer's status.
func rawRequest(t *testing.T, url, head string, next func() []byte) int {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	answered := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		for {
			select {
			case <-answered:
				return
			default:
			}
			p := next()
			if p == nil {
				return
			}
			if _, err := c.Write(p); err != nil {
				return // the gateway closed the connection
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	close(answered)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	c.Close()
	<-sent
	return resp.StatusCode
}

// TestBodyLimitBeforeAnyRead: on every path that reads request bodies, a
// Content-Length over the limit is refused from the head alone, and a
// chunked body of 400 MiB after at most the limit plus 64 KiB; the
// gateway still answers after, and its heap never grew by 64 MiB.
func TestBodyLimitBeforeAnyRead(t *testing.T) {
	const limit = 32 << 20 // the default
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"model":"backend-model","choices":[]}`)
	}))
	t.Cleanup(backend.Close)
	const prefix = `{"user":"u1",`
	for _, path := range []string{"sticky", "rewrite", "mirror", "plain"} {
		t.Run(path, func(t *testing.T) {
			g := limitGateway(t, path, backend.URL)
			url, readAtAnswer := countedFront(t, g)
			mem := watchMemory()

			// 10^12 announced, 13 bytes sent.
			sentPrefix := false
			code := rawRequest(t, url, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n", func() []byte {
				if sentPrefix {
					return nil
				}
				sentPrefix = true
				return []byte(prefix)
			})
			if code != http.StatusRequestEntityTooLarge {
				t.Fatalf("Content-Length 10^12: %d, want 413", code)
			}
			if n := readAtAnswer.Load(); n > 64<<10 {
				t.Errorf("Content-Length 10^12: %d bytes read before the answer, want it refused from the head", n)
			}

			// 400 MiB in chunks of 64 KiB, until the answer comes.
			readAtAnswer.Store(0)
			start := readAtAnswer.Load()
			chunk := append(fmt.Appendf(nil, "%x\r\n", 64<<10), bytes.Repeat([]byte("a"), 64<<10)...)
			chunk = append(chunk, "\r\n"...)
			first := fmt.Appendf(nil, "%x\r\n%s\r\n", len(prefix), prefix)
			sent := 0
			code = rawRequest(t, url, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n", func() []byte {
				switch {
				case sent == 0:
					sent += len(prefix)
					return first
				case sent > 400<<20:
					return nil
				case sent+64<<10 > 400<<20:
					sent = 400<<20 + 1
					return []byte("0\r\n\r\n")
				}
				sent += 64 << 10
				return chunk
			})
			if code != http.StatusRequestEntityTooLarge {
				t.Fatalf("chunked 400 MiB: %d, want 413", code)
			}
			// The body's bytes and its chunks' framing (8 bytes a chunk).
			if n := readAtAnswer.Load() - start; n > limit+64<<10+limit/(64<<10)*8 {
				t.Errorf("chunked 400 MiB: %d bytes read before the answer, want at most the limit %d + 64 KiB", n, limit)
			}

			grew := mem.grew()
			t.Logf("chunked: %d bytes read before the answer; memory grew by %.1f MiB at peak", readAtAnswer.Load()-start, float64(grew)/(1<<20))
			if grew > 64<<20 {
				t.Errorf("memory grew by %d MiB, want < 64", grew>>20)
			}
			if code, body, _ := post(t, url, `{"user":"u2","messages":[]}`); code != http.StatusOK {
				t.Fatalf("after: %d %s", code, body)
			}
		})
	}
}

// errReader fails after its bytes.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}

func TestReadBody(t *testing.T) {
	const limit = 1 << 20
	body := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		name    string
		length  int64 // -1: unknown (chunked)
		body    io.Reader
		want    string
		tooLong bool
		broken  bool
	}{
		{"small", 5, strings.NewReader("hello"), "hello", false, false},
		{"empty", 0, strings.NewReader(""), "", false, false},
		{"chunked small", -1, strings.NewReader("hello"), "hello", false, false},
		{"chunked at the limit", -1, strings.NewReader(body(limit)), body(limit), false, false},
		{"chunked over the limit", -1, strings.NewReader(body(limit + 1)), "", true, false},
		{"length at the limit", limit, strings.NewReader(body(limit)), body(limit), false, false},
		{"length over the limit", limit + 1, strings.NewReader(body(limit + 1)), "", true, false},
		{"many pieces", 700 << 10, strings.NewReader(body(700 << 10)), body(700 << 10), false, false},
		{"broken", -1, &errReader{strings.NewReader("he"), io.ErrUnexpectedEOF}, "", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", tc.body)
			r.ContentLength = tc.length
			got, err := readBody(r, limit)
			var tl tooLarge
			switch {
			case tc.tooLong:
				if !errors.As(err, &tl) {
					t.Fatalf("got %d bytes, err %v; want too large", len(got), err)
				}
			case tc.broken:
				if err == nil || errors.As(err, &tl) {
					t.Fatalf("got err %v, want the read's", err)
				}
			case err != nil || string(got) != tc.want:
				t.Fatalf("got %d bytes, err %v; want %d bytes", len(got), err, len(tc.want))
			}
		})
	}
}

// writeHead answers with a head of about size bytes (header lines of 1 KiB)
// and a body "ok", or stops when the gateway hangs up.
func writeHead(w io.Writer, size int) {
	line := "X-Pad: " + strings.Repeat("x", 1024-len("X-Pad: \r\n")) + "\r\n"
	block := strings.Repeat(line, 64)
	if _, err := io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"); err != nil {
		return
	}
	for sent := 0; sent < size; sent += len(block) {
		n := min(len(block), (size-sent+len(line)-1)/len(line)*len(line))
		if _, err := io.WriteString(w, block[:n]); err != nil {
			return
		}
	}
	io.WriteString(w, "\r\nok")
}

// headBackends serve the answer of writeHead with the size a request asks
// for (X-Head-Bytes), over plain TCP and over TLS.
func headBackends(t *testing.T) (plain string, tlsServer *httptest.Server) {
	t.Helper()
	size := func(r *http.Request) int { n, _ := strconv.Atoi(r.Header.Get("X-Head-Bytes")); return n }
	plain = rawBackend(t, func(_ int, r *http.Request, c net.Conn) { writeHead(c, size(r)) })
	tlsServer = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		writeHead(brw, size(r))
		brw.Flush()
	}))
	tlsServer.StartTLS()
	t.Cleanup(tlsServer.Close)
	return plain, tlsServer
}

// TestResponseHeadLimit: a backend's response head over the limit (1 MiB
// by default) gets the client a 502 in OpenAI's error shape, through the
// gateway's own client, net/http's Transport and an https backend, and a
// head of 200 MiB does not grow the process by 64 MiB; a head under the
// limit passes.
func TestResponseHeadLimit(t *testing.T) {
	plain, tlsServer := headBackends(t)
	paths := []struct {
		name, url string
		std       bool
	}{
		{"upstream", plain, false},
		{"std-transport", plain, true},
		{"https", tlsServer.URL, false},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			g, _ := benchGateway(t, Config{StdUpstream: p.std}, p.url, "")
			g.transport.TLSClientConfig = tlsServer.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
			url := front(t, g)
			ask := func(size int) (int, string) {
				t.Helper()
				req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(`{}`))
				req.Header.Set("X-Head-Bytes", strconv.Itoa(size))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := ask(512 << 10); code != http.StatusOK || body != "ok" {
				t.Fatalf("a head of 512 KiB: %d %.200s, want 200", code, body)
			}
			if code, body := ask(1<<20 + 64<<10); code != http.StatusBadGateway || !strings.Contains(body, `"type":"server_error"`) {
				t.Fatalf("a head of 1 MiB + 64 KiB: %d %.200s, want 502 with an OpenAI-style error", code, body)
			} else {
				t.Logf("over the limit: %s", body)
			}
			mem := watchMemory()
			if code, body := ask(200 << 20); code != http.StatusBadGateway {
				t.Fatalf("a head of 200 MiB: %d %.200s, want 502", code, body)
			}
			grew := mem.grew()
			t.Logf("a head of 200 MiB: memory grew by %.1f MiB at peak", float64(grew)/(1<<20))
			if grew > 64<<20 {
				t.Errorf("memory grew by %d MiB, want < 64", grew>>20)
			}
			if code, _ := ask(0); code != http.StatusOK {
				t.Fatalf("after: %d, want 200", code)
			}
		})
	}
}

// Informational answers count toward the head's limit (as in net/http's
// Transport): a few pass, an endless run ends in a 502. Through the
// ReverseProxy (https backends, stdTransport) each is passed on to the
// client instead, and net/http then bounds each head alone, not the run,
// which ends with the response header timeout.
func TestUpstreamInformationalAnswersAreBounded(t *testing.T) {
	const hint = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
	backend := rawBackend(t, func(_ int, r *http.Request, c net.Conn) {
		hints, _ := strconv.Atoi(r.Header.Get("X-Hints"))
		for range hints {
			if _, err := io.WriteString(c, hint); err != nil {
				return
			}
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			g, _ := benchGateway(t, Config{StdUpstream: m.std, MaxResponseHeaderBytes: 64 << 10}, backend, "")
			url := front(t, g)
			cases := []struct{ hints, want int }{{6, http.StatusOK}, {100000, http.StatusBadGateway}}
			if m.std {
				cases = cases[:1]
			}
			for _, tc := range cases {
				req, _ := http.NewRequest(http.MethodPost, url+"/v1/chat/completions", strings.NewReader(`{}`))
				req.Header.Set("X-Hints", strconv.Itoa(tc.hints))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("%d informational answers: %d, want %d", tc.hints, resp.StatusCode, tc.want)
				}
			}
		})
	}
}
