package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// start serves h on a loopback listener and returns its address.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ln.Addr().String()
}

// dialRaw connects to addr for a test that writes raw requests and reads
// the answers from the returned reader, within ten seconds.
func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// exchange writes raw request bytes and returns everything the server
// sends until it closes the connection or a second passes quietly.
func exchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestKeepAliveAndFraming(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/small": // unknown length, short: sent with a Content-Length
			fmt.Fprintf(w, "got %q from %s", body, r.RemoteAddr)
		case "/known":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		case "/big": // unknown length, larger than what is held back: chunked
			io.WriteString(w, strings.Repeat("x", 3*pendLimit))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		}
	})})
	var conns atomic.Int32
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		conns.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}}}
	for i := range 3 {
		for _, path := range []string{"/small", "/known", "/big", "/empty"} {
			resp, err := client.Post("http://"+addr+path, "text/plain", strings.NewReader("req"+fmt.Sprint(i)))
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(path, err)
			}
			switch path {
			case "/small":
				if want := fmt.Sprintf("got %q from 127.0.0.1:", "req"+fmt.Sprint(i)); !strings.HasPrefix(string(body), want) || resp.ContentLength != int64(len(body)) {
					t.Fatalf("/small: %q, length %d", body, resp.ContentLength)
				}
			case "/known":
				if string(body) != "hello" || resp.ContentLength != 5 {
					t.Fatalf("/known: %q, length %d", body, resp.ContentLength)
				}
			case "/big":
				if len(body) != 3*pendLimit || resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 {
					t.Fatalf("/big: %d bytes, length %d, encoding %v", len(body), resp.ContentLength, resp.TransferEncoding)
				}
			case "/empty":
				if resp.StatusCode != http.StatusNoContent || len(body) != 0 {
					t.Fatalf("/empty: %d %q", resp.StatusCode, body)
				}
			}
			if resp.Header.Get("Date") == "" {
				t.Fatal("no Date header")
			}
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 12 requests, want 1 (keep-alive)", n)
	}
}

// TestStreamNotCoalesced: every flushed event reaches the client before
// the handler writes the next one.
func TestStreamNotCoalesced(t *testing.T) {
	next := make(chan struct{})
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 5 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			<-next // the client has read the event
		}
	})})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i := range 5 {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q %v", i, line, err)
		}
		br.ReadString('\n')
		next <- struct{}{}
	}
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Fatalf("after the events: %q", rest)
	}
}

func TestRawProtocolCases(t *testing.T) {
	addr := start(t, &Server{MaxHeaderBytes: 1024, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A handler may reuse the request as its own outgoing one (the
		// gateway does): the server keeps what the client asked.
		defer func() { r.Close, r.Method, r.Proto, r.ProtoMinor = false, "POST", "HTTP/1.1", 1 }()
		if r.URL.Path == "/head" {
			w.Header().Set("Content-Length", "11")
		}
		if r.URL.Path == "/flush" {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			io.WriteString(w, "b")
			return
		}
		io.WriteString(w, "hello world")
	})})
	cases := []struct {
		name, raw string
		want      []string
		not       []string
	}{
		{"pipelined", "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 200 OK", "Content-Length: 11\r\n", "hello worldHTTP/1.1 200 OK", "Connection: close"}, nil},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			[]string{"HTTP/1.1 200 OK", "Connection: keep-alive", "hello world"}, nil},
		{"HTTP/1.0 closes", "GET / HTTP/1.0\r\n\r\n",
			[]string{"HTTP/1.1 200 OK", "Connection: close", "hello world"}, []string{"keep-alive"}},
		{"HTTP/1.0 stream is close-delimited", "GET /flush HTTP/1.0\r\n\r\n",
			[]string{"Connection: close", "\r\n\r\nab"}, []string{"chunked"}},
		{"HTTP/1.1 stream is chunked", "GET /flush HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"Transfer-Encoding: chunked", "1\r\na\r\n1\r\nb\r\n0\r\n\r\n"}, nil},
		{"HEAD", "HEAD /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			[]string{"HTTP/1.1 200 OK", "Content-Length: 11"}, []string{"hello"}},
		{"chunked request body", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			[]string{"HTTP/1.1 200 OK", "hello world"}, nil},
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", []string{"HTTP/1.1 400 Bad Request", "missing required Host header"}, nil},
		{"malformed", "GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n", []string{"HTTP/1.1 400 Bad Request"}, nil},
		{"space in a header name", "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n", []string{"HTTP/1.1 400 Bad Request"}, nil},
		{"control byte in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", []string{"HTTP/1.1 400 Bad Request"}, nil},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", []string{"HTTP/1.1 400 Bad Request"}, nil},
		{"head too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n",
			[]string{"HTTP/1.1 431 Request Header Fields Too Large"}, nil},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", []string{"HTTP/1.1 505"}, nil},
		{"bad Expect", "GET / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n", []string{"HTTP/1.1 417"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := exchange(t, addr, tc.raw)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("answer lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(got, w) {
					t.Errorf("answer has %q:\n%s", w, got)
				}
			}
		})
	}
}

// TestUnreadBody: a small unread body is skipped and the connection goes
// on; a large one ends the connection after an answer the client can read.
func TestUnreadBody(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		io.WriteString(w, "ok")
	})})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for range 2 {
		fmt.Fprintf(c, "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatal(resp, err)
		}
		io.ReadAll(resp.Body)
	}
	// 32 MiB that the handler refuses: the client still gets its answer.
	req, _ := http.NewRequest("POST", "http://"+addr+"/refuse", strings.NewReader(strings.Repeat("x", 32<<20)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("large refused body: %v (the answer was lost to a reset)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Fatalf("large refused body: status %d, close %v", resp.StatusCode, resp.Close)
	}
}

func TestReadHeaderTimeout(t *testing.T) {
	addr := start(t, &Server{ReadHeaderTimeout: 100 * time.Millisecond, Handler: http.NotFoundHandler()})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // never finished
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || len(b) != 0 {
		t.Fatalf("a head never finished: read %q, %v; want the connection closed", b, err)
	}
	// A connection that never sends anything is dropped too.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(silent); err != nil || len(b) != 0 {
		t.Fatalf("a silent new connection: read %q, %v; want it closed", b, err)
	}
}

// TestClientGoneCancelsRequest: a long request's context ends when its
// client hangs up, so that the upstream request can stop.
func TestClientGoneCancelsRequest(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan error, 1)
	addr := start(t, &Server{WatchAfter: 10 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		close(started)
		select {
		case <-r.Context().Done():
			cancelled <- r.Context().Err()
		case <-time.After(20 * time.Second):
			cancelled <- nil
		}
	})})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	<-started
	c.Close()
	if err := <-cancelled; err == nil {
		t.Fatal("the request's context was not cancelled when its client hung up")
	}
}

// TestClientGoneAfterQuickRequests: the watch's timer is set once for
// requests back to back (see conn.watchTimer); a long request after many
// quick ones on the same connection is still watched from its own
// WatchAfter, and its context cancelled when its client hangs up.
func TestClientGoneAfterQuickRequests(t *testing.T) {
	started := make(chan struct{})
	cancelled := make(chan time.Duration, 1)
	addr := start(t, &Server{WatchAfter: 30 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/long" {
			io.WriteString(w, "ok")
			return
		}
		begin := time.Now()
		close(started)
		select {
		case <-r.Context().Done():
			cancelled <- time.Since(begin)
		case <-time.After(20 * time.Second):
			cancelled <- -1
		}
	})})
	c, br := dialRaw(t, addr)
	// Quick requests for longer than WatchAfter, so that the timer fires
	// while requests come and go.
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
		io.WriteString(c, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("quick request: %s", resp.Status)
		}
	}
	io.WriteString(c, "GET /long HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	c.Close()
	if d := <-cancelled; d < 0 {
		t.Fatal("the long request's context was not cancelled when its client hung up")
	}
}

// TestQuickRequestsKeepTheirContext: requests that end before WatchAfter,
// and long ones whose client stays, are not cancelled; a pipelined request
// read by the watch is served.
func TestQuickRequestsKeepTheirContext(t *testing.T) {
	addr := start(t, &Server{WatchAfter: time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(20 * time.Millisecond)
		}
		if err := r.Context().Err(); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		io.WriteString(w, r.URL.Path)
	})})
	got := exchange(t, addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if strings.Count(got, "200 OK") != 3 || !strings.Contains(got, "/slow") || !strings.Contains(got, "/a") {
		t.Fatalf("answers:\n%s", got)
	}
}

// TestAbortTruncates: a handler that panics with http.ErrAbortHandler
// mid-stream leaves the client with a broken answer, not a complete one.
func TestAbortTruncates(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("aborted answer read as complete: %q", b)
	}
}

func TestTrailersAndInformational(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
		w.Header().Set(http.TrailerPrefix+"X-Late", "yes")
	})})
	var hints []int
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error { hints = append(hints, code); return nil },
	}))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || resp.Trailer.Get("X-Sum") != "42" || resp.Trailer.Get("X-Late") != "yes" || resp.Header.Get("X-Sum") != "" {
		t.Fatalf("body %q, trailer %v, header %v", b, resp.Trailer, resp.Header)
	}
	if len(hints) != 1 || hints[0] != http.StatusEarlyHints {
		t.Fatalf("1xx answers %v, want [103]", hints)
	}
}

func TestExpectContinue(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})})
	client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 10 * time.Second}}
	req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "payload" {
		t.Fatalf("echo %q", b)
	}
	if time.Since(start) > 9*time.Second {
		t.Fatal("the client waited out its 100-continue timeout: no 100 Continue was sent")
	}
}

func TestHijack(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo " + line)
		brw.Flush()
	})})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhi\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 101") || !strings.HasSuffix(string(b), "echo hi\n") {
		t.Fatalf("upgrade: %q", b)
	}
}

// TestShutdown: in-flight requests finish, idle connections close, Serve
// returns ErrServerClosed.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "done")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr := ln.Addr().String()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(idle), nil); err != nil || resp.StatusCode != 200 {
		t.Fatal(resp, err)
	}
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// The idle connection is closed while the slow request goes on.
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(idle); err != nil || len(b) != 0 {
		t.Fatalf("idle connection at shutdown: %q %v", b, err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	if got := <-slow; got != "done" {
		t.Fatalf("in-flight request at shutdown: %q", got)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("the listener still accepts after Shutdown")
	}
}

// TestHandlerPanic: a panicking handler costs its connection, is logged,
// and the server goes on.
func TestHandlerPanic(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	addr := start(t, &Server{Log: log, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		io.WriteString(w, "fine")
	})})
	if _, err := http.Get("http://" + addr + "/panic"); err == nil {
		t.Fatal("a panicking handler's request got an answer")
	}
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "boom") || !strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("panic not logged as an error: %s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestLateBodyRead: a read of a request's body after its handler returned
// (net/http's transport, still sending it to an https backend, can do that)
// fails and leaves the next request on the connection alone.
func TestLateBodyRead(t *testing.T) {
	late := make(chan error, 1)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/first" {
			body := r.Body
			go func() {
				time.Sleep(50 * time.Millisecond) // the handler has returned
				_, err := body.Read(make([]byte, 64))
				late <- err
			}()
			io.WriteString(w, "first")
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})})
	c, br := dialRaw(t, addr)
	io.WriteString(c, "POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd")
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatal(resp, err)
	} else {
		io.ReadAll(resp.Body)
	}
	io.WriteString(c, "POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n")
	select {
	case err := <-late:
		if err == nil {
			t.Fatal("a read of the first body after its handler returned succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read of the first body after its handler returned is still waiting (on the next request's bytes)")
	}
	io.WriteString(c, strings.Repeat("z", 40))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != strings.Repeat("z", 40) {
		t.Fatalf("second request's body arrived as %q", b)
	}
}

// TestPipelinedDuringHandler: a request the client pipelines while the
// previous one's handler runs arrives after the server's last read and
// before the answer's write, which then waits for the next request
// (awaitNext) without being woken by it: the bounded wait still serves it.
// A client that sends its next request after the answer wakes the wait.
func TestPipelinedDuringHandler(t *testing.T) {
	running := make(chan struct{}, 2)
	proceed := make(chan struct{}, 2)
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		if r.URL.Path == "/wait" {
			running <- struct{}{}
			<-proceed
		}
		io.WriteString(w, r.URL.Path)
	})})
	c, br := dialRaw(t, addr)
	read := func(want string) {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if string(body) != want {
			t.Fatalf("answer %q, want %q", body, want)
		}
	}
	const post = "POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"
	for range 3 {
		fmt.Fprintf(c, post, "/wait")
		<-running
		fmt.Fprintf(c, post, "/next") // while the handler runs
		time.Sleep(10 * time.Millisecond)
		proceed <- struct{}{}
		read("/wait")
		read("/next")
	}
	// Not pipelined: each request after the previous answer, the last
	// one's head in two pieces (the wait ends with the first).
	for range 3 {
		fmt.Fprintf(c, post, "/plain")
		read("/plain")
	}
	io.WriteString(c, "POST /pieces HTTP/1.1\r\nHo")
	time.Sleep(20 * time.Millisecond)
	io.WriteString(c, "st: h\r\nContent-Length: 2\r\n\r\n{}")
	read("/pieces")
}

// TestAnswerOutlivesTheAwaitDeadline: the last write of an answer waits for
// the next request until the watchdog ends the wait. On a loaded
// machine the goroutine can be descheduled past that deadline before the
// write; the answer must still go out whole and the connection go on. (The
// netpoller refused the wait before the write, the timeout was taken for a
// write error, and the client got EOF instead of its answer: one request
// in a few hundred under the race detector on two cores.) A deadline
// already passed (endWaits) makes every answer take that path.
func TestAnswerOutlivesTheAwaitDeadline(t *testing.T) {
	addr := start(t, &Server{endWaits: true, IdleTimeout: time.Minute, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Write(body)
	})})
	var conns atomic.Int32
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		conns.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}}}
	for i := range 20 {
		want := fmt.Sprintf("request %d", i)
		resp, err := client.Post("http://"+addr+"/", "text/plain", strings.NewReader(want))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != want {
			t.Fatalf("request %d: %q, %v; want %q", i, body, err, want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 20 requests, want 1 (keep-alive)", n)
	}
}

// TestAwaitWatchdogStops: the watchdog of awaitNext's waits runs while
// connections wait and stops when none does, and a keep-alive connection
// idle past the bound of its wait is served as usual after it.
func TestAwaitWatchdogStops(t *testing.T) {
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})}
	addr := start(t, s)
	c, br := dialRaw(t, addr)
	for i := range 3 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(3 * awaitFallback) // past the wait's bound
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.awaitWatch.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the await watchdog still runs 10s after the last answer")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHandlerDeadlineCleared: a deadline a handler sets through
// http.ResponseController holds for its request only: the connection's
// next request, sent at once, reads its body after that deadline has
// passed and is served.
func TestHandlerDeadlineCleared(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/short" {
			if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
				t.Error(err)
			}
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		io.WriteString(w, r.URL.Path+" "+string(b))
	})})
	c, br := dialRaw(t, addr)
	io.WriteString(c, "GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// The next request at once (the wait after the answer ends by the
	// request, not by the await watchdog), its body after the deadline.
	io.WriteString(c, "POST /next HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab")
	time.Sleep(300 * time.Millisecond)
	io.WriteString(c, "cd")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "/next abcd" {
		t.Fatalf("next request: %s %q", resp.Status, b)
	}
}
