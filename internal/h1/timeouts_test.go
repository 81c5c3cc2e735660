package h1

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serverKinds runs a test against this server and, for the difference,
// net/http's with the same handler and limits.
var serverKinds = []string{"h1", "net/http"}

// serveKind serves h with the given timeouts on a loopback listener.
func serveKind(t *testing.T, kind string, h http.Handler, readHeader, idle time.Duration) string {
	t.Helper()
	if kind == "h1" {
		return start(t, &Server{Handler: h, ReadHeaderTimeout: readHeader, IdleTimeout: idle})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeader, IdleTimeout: idle}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// closedWithin reads from c until the server closes it and reports
// whether it did before the deadline.
func closedWithin(c net.Conn, br *bufio.Reader, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, br)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestIdleTimeout: a keep-alive connection that waits for its next request
// longer than IdleTimeout is closed; before, it is served.
func TestIdleTimeout(t *testing.T) {
	for _, kind := range serverKinds {
		t.Run(kind, func(t *testing.T) {
			addr := serveKind(t, kind, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "ok")
			}), 10*time.Second, 300*time.Millisecond)
			c, br := dialRaw(t, addr)
			// Waits shorter than the idle timeout keep the connection.
			for _, wait := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond} {
				time.Sleep(wait)
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("after a wait of %v (idle timeout 300ms): %v", wait, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if !closedWithin(c, br, 10*time.Second) {
				t.Fatal("an idle keep-alive connection is still open 10s after a 300ms idle timeout")
			}
		})
	}
}

// TestHeaderTimeoutIsOneDeadline: a client that sends its head a byte at
// a time is cut when the header timeout has passed since the connection
// began, however late its first byte: the deadline is not set again at
// the first byte (which made a 30s timeout up to 60s). On a keep-alive
// connection the head's time counts from its first byte, as in net/http.
func TestHeaderTimeoutIsOneDeadline(t *testing.T) {
	const timeout = 3 * time.Second
	head := "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 1000)
	// trickle sends head a byte every 50ms until the connection breaks.
	trickle := func(c net.Conn) {
		for i := 0; ; i++ {
			if _, err := c.Write([]byte{head[i%len(head)]}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, kind := range serverKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			addr := serveKind(t, kind, http.NotFoundHandler(), timeout, time.Minute)
			c, br := dialRaw(t, addr)
			began := time.Now()
			// The first byte comes late, most of the timeout after the
			// connection began: a deadline set again at that byte would
			// end at began + 2.5s + 3s.
			time.Sleep(timeout - 500*time.Millisecond)
			go trickle(c)
			if !closedWithin(c, br, 10*time.Second) {
				t.Fatal("a head sent a byte at a time was never cut")
			}
			if took := time.Since(began); took > timeout+1500*time.Millisecond {
				t.Errorf("the connection was cut %v after it began, want about the header timeout (%v), not up to twice it", took.Round(time.Millisecond), timeout)
			}
		})
	}
	for _, kind := range serverKinds {
		t.Run(kind+"/keep-alive", func(t *testing.T) {
			t.Parallel()
			addr := serveKind(t, kind, http.NotFoundHandler(), 500*time.Millisecond, time.Minute)
			c, br := dialRaw(t, addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			go trickle(c)
			if !closedWithin(c, br, 10*time.Second) {
				t.Fatal("a second head sent a byte at a time was never cut")
			}
		})
	}
}

// expectExchange sends a head with Expect: 100-continue and a body of n
// bytes, sending the body only if the server asks for it, and returns the
// status lines the server sent and the final answer's body.
func expectExchange(t *testing.T, addr string, n int) (statuses []int, body string) {
	t.Helper()
	c, br := dialRaw(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: "+strconv.Itoa(n)+"\r\n\r\n")
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading the answer: %v (statuses so far %v)", err, statuses)
		}
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == http.StatusContinue {
			go c.Write([]byte(strings.Repeat("p", n)))
			continue
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return statuses, string(b)
	}
}

// TestExpectContinueOnlyWhenRead: 100 Continue is sent when the handler
// first reads the body; a request the handler refuses from its head (a
// body over its limit) gets its answer without being invited to send the
// body, as from net/http's server.
func TestExpectContinueOnlyWhenRead(t *testing.T) {
	const limit = 1000
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "got "+strconv.Itoa(len(b)))
	})
	for _, kind := range serverKinds {
		t.Run(kind, func(t *testing.T) {
			addr := serveKind(t, kind, h, 10*time.Second, time.Minute)
			statuses, _ := expectExchange(t, addr, 100000)
			if len(statuses) != 1 || statuses[0] != http.StatusRequestEntityTooLarge {
				t.Errorf("a body over the limit: statuses %v, want [413] (no 100 Continue)", statuses)
			}
			statuses, body := expectExchange(t, addr, 7)
			if len(statuses) != 2 || statuses[0] != http.StatusContinue || statuses[1] != http.StatusOK || body != "got 7" {
				t.Errorf("a body within the limit: statuses %v, body %q, want [100 200] and %q", statuses, body, "got 7")
			}
		})
	}
}

// TestExpectContinueBodyReadElsewhere: a handler that reads the body on
// another goroutine while it writes its answer (a transport sending the
// body upstream) sends the 100 Continue at most once and never inside
// the answer.
func TestExpectContinueBodyReadElsewhere(t *testing.T) {
	addr := start(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done := make(chan int)
		go func() {
			b, _ := io.ReadAll(r.Body)
			done <- len(b)
		}()
		n := <-done
		w.Header().Set("Content-Length", strconv.Itoa(len("got ")+len(strconv.Itoa(n))))
		io.WriteString(w, "got "+strconv.Itoa(n))
	})})
	for range 20 {
		statuses, body := expectExchange(t, addr, 5)
		if len(statuses) != 2 || statuses[0] != http.StatusContinue || body != "got 5" {
			t.Fatalf("statuses %v, body %q, want [100 200] and %q", statuses, body, "got 5")
		}
	}
}
