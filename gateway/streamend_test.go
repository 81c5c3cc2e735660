package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/internal/h1"
	"github.com/modelslot/modelslot/loadgen"
	"github.com/modelslot/modelslot/sim"
)

// servedGateway serves app "default" from backendURL through a gateway on a
// real listener, with the daemon's server (h1) or net/http's, and the
// gateway's upstream client or net/http's Transport.
func servedGateway(tb testing.TB, backendURL string, stdServer, stdUpstream bool) (*gateway.Gateway, string) {
	tb.Helper()
	g := gateway.New(gateway.Config{StdUpstream: stdUpstream})
	d := &modelslot.Deployment{Revision: "r1", Version: "v1", URL: backendURL}
	b, err := g.NewBackend(backendURL, d)
	if err != nil {
		tb.Fatal(err)
	}
	app := &modelslot.App{Name: "default", Slots: []*modelslot.Slot{{Name: modelslot.Production, Deployment: d}}}
	g.Update([]gateway.RouteApp{{App: app, Backends: map[string]*gateway.Backend{modelslot.Production: b}}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var srv interface {
		Serve(net.Listener) error
		Close() error
	}
	if stdServer {
		srv = &http.Server{Handler: g}
	} else {
		srv = &h1.Server{Handler: g}
	}
	go srv.Serve(ln)
	tb.Cleanup(func() {
		srv.Close()
		g.Close()
	})
	return g, "http://" + ln.Addr().String()
}

// serverModes are the four ways the daemon can serve and proxy.
var serverModes = []struct {
	name                   string
	stdServer, stdUpstream bool
}{
	{"h1+upstream", false, false},
	{"h1+std-transport", false, true},
	{"std-server+upstream", true, false},
	{"std-server+std-transport", true, true},
}

// classes waits until the meter holds n requests of app "default" and
// returns them by class.
func classes(t *testing.T, g *gateway.Gateway, n int) map[string]int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := map[string]int{}
		total := 0
		for _, st := range g.Meter().Stats("default", time.Hour, time.Now()) {
			for k, v := range st.ByClass {
				got[k] += v
				total += v
			}
		}
		if total >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the meter has %d requests (%v), want %d", total, got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawStream sends a streaming chat request on a new connection, reads the
// answer until a line contains until, and hangs up.
func rawStream(t *testing.T, base, until string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if strings.Contains(line, until) {
			return
		}
		if err != nil {
			t.Fatalf("the stream ended before %q: %v", until, err)
		}
	}
}

// TestStreamReadToDoneIsSuccess: a client that hangs up right after
// "data: [DONE]" got the whole answer, whose request is metered 2xx even
// when the backend's end of body (the last chunk) had not reached the
// gateway yet. A client that hangs up before the end is not a success.
func TestStreamReadToDoneIsSuccess(t *testing.T) {
	// The backend sends the whole stream but holds back the end of its
	// body until the gateway gives up on it (its client went away).
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d\"}}]}\n\n", i)
			w.(http.Flusher).Flush()
		}
		if r.Header.Get("X-Cut") == "" {
			io.WriteString(w, "data: [DONE]\n\n")
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	}))
	defer backend.Close()
	for _, m := range serverModes {
		t.Run(m.name, func(t *testing.T) {
			g, url := servedGateway(t, backend.URL, m.stdServer, m.stdUpstream)
			const n = 5
			for range n {
				rawStream(t, url, "[DONE]")
			}
			got := classes(t, g, n)
			if got["2xx"] != n {
				t.Errorf("streams read to [DONE], then closed: metered %v, want %d 2xx", got, n)
			}
		})
	}
	t.Run("cut before the end", func(t *testing.T) {
		// The control: the client leaves after an event, without [DONE].
		g, url := servedGateway(t, backend.URL, false, false)
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		body := `{"stream":true}`
		fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Cut: 1\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(line, `"t2"`) {
				break
			}
		}
		c.Close()
		if got := classes(t, g, 1); got["2xx"] != 0 {
			t.Errorf("a stream cut before its end: metered %v, want no 2xx", got)
		}
	})
}

// TestLoadtestStreamsMeteredAsSuccess: the load generator's streams, which
// close their connection once they have read [DONE], through a real
// gateway to the simulator: every one succeeds for the client and none is
// metered as an error.
func TestLoadtestStreamsMeteredAsSuccess(t *testing.T) {
	s, err := sim.NewChecked(sim.Config{TTFT: 5 * time.Millisecond, ITL: 2 * time.Millisecond, Tokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	backend := httptest.NewServer(s)
	defer backend.Close()
	g, url := servedGateway(t, backend.URL, false, false)
	const n = 300
	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: url, Stream: true, Concurrency: 16, Requests: n, Timeout: time.Minute,
		OutputTokens: loadgen.Dist{Mean: 12},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Succeeded != n {
		t.Fatalf("load generator: %d of %d streams succeeded (errors %v)", rep.Succeeded, n, rep.Errors)
	}
	got := classes(t, g, n)
	if got["2xx"] != n {
		t.Errorf("%d streams complete for the client: metered %v, want %d 2xx", n, got, n)
	}
}
