package gateway

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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

// TestProxyBrokenAnswer: a backend that breaks off its answer leaves the
// client with a truncated answer (an error), never one that looks whole.
func TestProxyBrokenAnswer(t *testing.T) {
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			backend := rawBackend(t, func(_ int, _ *http.Request, c net.Conn) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
				c.Close()
			})
			g, _ := benchGateway(t, Config{StdUpstream: m.std}, backend, "")
			resp, err := http.Post(front(t, g)+"/v1/chat/completions", "application/json", strings.NewReader(`{}`))
			if err != nil {
				return // broken before the head left the gateway's buffer
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("a broken answer read as complete: %q", b)
			}
		})
	}
}
