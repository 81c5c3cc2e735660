package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/internal/wire"
)

// TestProxyHeaders: hop-by-hop headers (and those the Connection header
// names) stop at the gateway both ways, forwarding headers from the client
// are dropped, "Te: trailers" and end-to-end headers pass, trailers reach
// the client. The same on the direct path and through the ReverseProxy.
func TestProxyHeaders(t *testing.T) {
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			seen := make(chan http.Header, 1)
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header.Clone()
				h := w.Header()
				h.Set("Connection", "X-Internal")
				h.Set("X-Internal", "1")
				h.Set("Keep-Alive", "timeout=5")
				h.Set("X-Request-Id", "abc")
				h.Set("Trailer", "X-Usage")
				io.WriteString(w, `{"ok":true}`)
				h.Set("X-Usage", "42")
			}))
			defer ts.Close()
			g, _ := benchGateway(t, Config{StdUpstream: m.std}, ts.URL, "")
			req, _ := http.NewRequest("POST", front(t, g)+"/v1/chat/completions", strings.NewReader(`{}`))
			for k, v := range map[string]string{
				"Connection": "X-Secret", "X-Secret": "1", "Keep-Alive": "300",
				"Proxy-Authorization": "Basic eA==", "X-Forwarded-For": "6.6.6.6",
				"Forwarded": "for=6.6.6.6", "Te": "trailers", "X-Custom": "kept",
				"X-Modelslot-App": "default",
			} {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			in := <-seen
			for _, k := range []string{"X-Secret", "Keep-Alive", "Proxy-Authorization", "X-Forwarded-For", "Forwarded", "X-Modelslot-App"} {
				if v, ok := in[k]; ok {
					t.Errorf("backend saw %s: %v", k, v)
				}
			}
			if in.Get("Te") != "trailers" || in.Get("X-Custom") != "kept" {
				t.Errorf("backend saw Te %q, X-Custom %q", in.Get("Te"), in.Get("X-Custom"))
			}
			if string(body) != `{"ok":true}` || resp.StatusCode != 200 {
				t.Fatalf("answer %d %q", resp.StatusCode, body)
			}
			for _, k := range []string{"X-Internal", "Keep-Alive"} {
				if v, ok := resp.Header[k]; ok {
					t.Errorf("client saw %s: %v", k, v)
				}
			}
			if resp.Header.Get("X-Request-Id") != "abc" || resp.Header.Get(HeaderSlot) == "" {
				t.Errorf("client headers %v", resp.Header)
			}
			if resp.Trailer.Get("X-Usage") != "42" {
				t.Errorf("client trailers %v, want X-Usage 42", resp.Trailer)
			}
		})
	}
}

// TestProxyUpgrade: a protocol upgrade (WebSocket, the Realtime API) passes
// through the gateway's server and the ReverseProxy, both ways.
func TestProxyUpgrade(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo " + line)
			brw.Flush()
		}
	}))
	defer ts.Close()
	g, _ := benchGateway(t, Config{}, ts.URL, "")
	c, err := net.Dial("tcp", strings.TrimPrefix(front(t, g), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /v1/realtime HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, msg := range []string{"one\n", "two\n"} {
		io.WriteString(c, msg)
		if got, err := br.ReadString('\n'); err != nil || got != "echo "+msg {
			t.Fatalf("after the upgrade: %q %v", got, err)
		}
	}
}

// TestRemoveHeaders: the outgoing request loses the hop-by-hop headers,
// those its Connection header names and the client's forwarding headers,
// and keeps the rest.
func TestRemoveHeaders(t *testing.T) {
	h := http.Header{
		"Connection": {"keep-alive, x-custom-hop", "Other-Hop"}, "Proxy-Connection": {"a"}, "Keep-Alive": {"b"},
		"Proxy-Authenticate": {"c"}, "Proxy-Authorization": {"d"}, "Te": {"e"}, "Trailer": {"f"},
		"Transfer-Encoding": {"g"}, "Upgrade": {"h"}, "X-Custom-Hop": {"i"}, "Other-Hop": {"j"},
		"Forwarded": {"k"}, "X-Forwarded-For": {"l"}, "X-Forwarded-Host": {"m"}, "X-Forwarded-Proto": {"n"},
		"Content-Type": {"application/json"}, "Authorization": {"Bearer x"}, "X-Request-Id": {"1"},
	}
	resp := h.Clone()
	removeHeaders(h, func(k string) bool { return wire.HopByHop(k) || forwardedHeader(k) })
	want := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer x"}, "X-Request-Id": {"1"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("request headers left: %v, want %v", h, want)
	}
	// An answer keeps the forwarding headers (they are not hop-by-hop).
	removeHeaders(resp, wire.HopByHop)
	want = http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer x"}, "X-Request-Id": {"1"},
		"Forwarded": {"k"}, "X-Forwarded-For": {"l"}, "X-Forwarded-Host": {"m"}, "X-Forwarded-Proto": {"n"}}
	if !reflect.DeepEqual(resp, want) {
		t.Errorf("answer headers left: %v, want %v", resp, want)
	}
}

// TestProxyHeadersPlainAnswer: an answer of known length, whose header
// fields go straight into the client's header map (the upstream's merge),
// loses its hop-by-hop fields and keeps the rest after the gateway's own.
func TestProxyHeadersPlainAnswer(t *testing.T) {
	backend := rawBackend(t, func(_ int, _ *http.Request, c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\n"+
			"Upgrade: h2c\r\nTrailer: X-T\r\nX-Request-Id: abc\r\nX-Modelslot-Slot: backend\r\nPragma: no-cache\r\nContent-Length: 2\r\n\r\n{}")
	})
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			g, _ := benchGateway(t, Config{StdUpstream: m.std}, backend, "")
			for i := range 3 { // the slot's header slice is shared between requests
				code, body, h := post(t, front(t, g), `{}`)
				if code != 200 || body != "{}" {
					t.Fatalf("request %d: %d %q", i, code, body)
				}
				for _, k := range []string{"Keep-Alive", "Proxy-Connection", "Upgrade", "Trailer"} {
					if v, ok := h[k]; ok {
						t.Errorf("client saw %s: %v", k, v)
					}
				}
				if got := h["X-Modelslot-Slot"]; len(got) != 2 || got[1] != "backend" {
					t.Errorf("X-Modelslot-Slot %q, want the gateway's then the backend's", got)
				}
				if h.Get("X-Request-Id") != "abc" || h.Get("Cache-Control") != "no-cache" || h.Get("Content-Length") != "2" {
					t.Errorf("client's headers: %v", h)
				}
			}
		})
	}
}
