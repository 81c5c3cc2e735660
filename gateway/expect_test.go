package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestExpectContinueThroughGateway: a request whose Content-Length is over
// the gateway's limit gets its 413 without being invited to send the body
// (no 100 Continue); one within it gets 100 Continue, then the backend's
// answer. Through either server the daemon can use.
func TestExpectContinueThroughGateway(t *testing.T) {
	var expected atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Expect") != "" {
			expected.Add(1)
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %d", len(b))
	}))
	defer backend.Close()
	for _, m := range serverModes {
		t.Run(m.name, func(t *testing.T) {
			_, url := servedGateway(t, backend.URL, m.stdServer, m.stdUpstream)
			exchange := func(n int64) (statuses []int, body string) {
				c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", n)
				br := bufio.NewReader(c)
				for {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("reading the answer: %v (statuses so far %v)", err, statuses)
					}
					statuses = append(statuses, resp.StatusCode)
					if resp.StatusCode == http.StatusContinue {
						go io.CopyN(c, strings.NewReader(strings.Repeat("x", int(n))), n)
						continue
					}
					b, _ := io.ReadAll(resp.Body)
					return statuses, string(b)
				}
			}
			if statuses, _ := exchange(1 << 40); len(statuses) != 1 || statuses[0] != http.StatusRequestEntityTooLarge {
				t.Errorf("Content-Length 2^40 with Expect: statuses %v, want [413] without 100 Continue", statuses)
			}
			// The gateway answers the expectation itself: the backend
			// never sees it, and so never sends a 100 Continue of its own
			// that the gateway would pass on after its own (the two raced:
			// the client got [100 100 200] one time in forty under load).
			for range 20 {
				if statuses, body := exchange(10); len(statuses) != 2 || statuses[0] != http.StatusContinue || statuses[1] != http.StatusOK || body != "got 10" {
					t.Fatalf("a small body with Expect: statuses %v, body %q, want [100 200] and %q", statuses, body, "got 10")
				}
			}
			if n := expected.Swap(0); n != 0 {
				t.Errorf("the backend saw Expect on %d requests, want none", n)
			}
		})
	}
}
