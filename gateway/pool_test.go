package gateway

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// strayBackend is a raw HTTP/1.1 server that answers each request with a
// JSON body naming the request's X-Id, padded to four times the upstream
// client's read buffer (so that the body's end is read straight from the
// socket and bytes after it stay there, not in the buffer). On path /chars it counts the body's
// length in characters, not bytes (its text is multibyte UTF-8), and on
// /twice it follows the answer with a second, unsolicited one; each answer
// goes out in one write.
func strayBackend(t *testing.T) string {
	t.Helper()
	return serveRaw(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			id := req.Header.Get("X-Id")
			var out string
			switch req.URL.Path {
			case "/v1/chars":
				body := `{"id":"` + id + `","text":"` + strings.Repeat("é", 16<<10) + `"}`
				out = answerHead(utf8.RuneCountInString(body)) + body
			case "/v1/twice":
				body := strayAnswer(id)
				other := strayAnswer(id + "-unsolicited")
				out = answerHead(len(body)) + body + answerHead(len(other)) + other
			default:
				body := strayAnswer(id)
				out = answerHead(len(body)) + body
			}
			if _, err := io.WriteString(c, out); err != nil {
				return
			}
		}
	})
}

func answerHead(n int) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", n)
}

func strayAnswer(id string) string {
	return `{"id":"` + id + `","pad":"` + strings.Repeat("x", 16<<10) + `"}`
}

// TestUpstreamNeverServesOneClientsAnswerToAnother: a backend that sends
// bytes after a complete answer, on some requests, shares the pool with
// other clients' requests; none of them may get bytes meant for another
// request. net/http's Transport is held to the same.
func TestUpstreamNeverServesOneClientsAnswerToAnother(t *testing.T) {
	// net/http's Transport logs every unsolicited answer it drops.
	log.SetOutput(io.Discard)
	t.Cleanup(func() { log.SetOutput(os.Stderr) })
	for _, m := range upstreamModes {
		t.Run(m.name, func(t *testing.T) {
			g, _ := benchGateway(t, Config{StdUpstream: m.std, MaxIdleConnsPerHost: 2}, strayBackend(t), "")
			url := front(t, g)
			// A wrong answer can also leave the gateway waiting for a head
			// that never comes: that is a failure too.
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 20 * time.Second}
			defer client.CloseIdleConnections()
			const perClient = 150
			var ok, wrong, failed atomic.Int64
			var examples sync.Map
			var wg sync.WaitGroup
			do := func(path, id string) (int, string, error) {
				req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader(`{}`))
				req.Header.Set("X-Id", id)
				resp, err := client.Do(req)
				if err != nil {
					return 0, "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b), err
			}
			// The backend's bad paths, two clients each.
			for w := range 4 {
				path := []string{"/v1/chars", "/v1/twice"}[w%2]
				wg.Go(func() {
					for i := range perClient {
						do(path, fmt.Sprintf("bad%d-%d", w, i))
					}
				})
			}
			// Other clients, each with answers of its own.
			for w := range 6 {
				wg.Go(func() {
					for i := range perClient {
						id := fmt.Sprintf("user%d-%d", w, i)
						code, body, err := do("/v1/chat/completions", id)
						switch {
						case err != nil || code != http.StatusOK:
							failed.Add(1)
							examples.LoadOrStore("failed", fmt.Sprintf("%d %v %.80s", code, err, body))
						case body != strayAnswer(id):
							wrong.Add(1)
							examples.LoadOrStore("wrong", fmt.Sprintf("%s got %.80s", id, body))
						default:
							ok.Add(1)
						}
					}
				})
			}
			wg.Wait()
			t.Logf("other clients: %d right, %d wrong, %d failed", ok.Load(), wrong.Load(), failed.Load())
			if m.std {
				// net/http's Transport is measured, not held to it: its
				// reader goroutine peeks for stray bytes only after it has
				// put the connection back in the pool, so a request taken
				// in between fails (the stray bytes are not an answer) or,
				// a few times in a thousand, gets the unsolicited answer
				// (golang/go#31259 is the same window).
				return
			}
			if wrong.Load() > 0 || failed.Load() > 0 {
				var ex []string
				examples.Range(func(k, v any) bool { ex = append(ex, fmt.Sprint(k, ": ", v)); return true })
				t.Errorf("%d of %d other clients' requests got another request's answer, %d failed; e.g. %s",
					wrong.Load(), 6*perClient, failed.Load(), strings.Join(ex, "; "))
			}
		})
	}
}

// BenchmarkUpstreamEndPeek is the cost of put's check at every answer's
// end: whole requests through ServeHTTP to a real backend, one at a time,
// in alternating batches with the check and without it (so that both see
// the same machine). For a small answer the check needs no system call
// (the answer's last read took all the socket held); for one of 32 KiB,
// whose end is read straight into the copy buffer, it peeks. peek-ns/req
// and nopeek-ns/req are the two kinds' wall time, ratio their quotient,
// the cpu- ones the process's CPU time; syscall-ns is the peek alone on an
// idle connection.
func BenchmarkUpstreamEndPeek(b *testing.B) {
	for _, size := range []struct {
		name   string
		answer string
	}{
		{"small", benchAnswer},
		{"32KiB", `{"pad":"` + strings.Repeat("x", 32<<10) + `"}`},
	} {
		b.Run(size.name, func(b *testing.B) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", strconv.Itoa(len(size.answer)))
				io.WriteString(w, size.answer)
			}))
			b.Cleanup(ts.Close)
			benchEndPeek(b, ts.URL)
		})
	}
}

func benchEndPeek(b *testing.B, backend string) {
	g, _ := benchGateway(b, Config{DisableMeter: true}, backend, "")
	w := &discardWriter{h: http.Header{}}
	serve := func() {
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(benchBody))
		clear(w.h)
		g.ServeHTTP(w, r)
	}
	serve() // a pooled connection
	const batch = 10
	var spent, cpu [2]time.Duration
	var count [2]int
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		mode := (i / batch) % 2
		g.upstream.noEndPeek = mode == 1
		n := min(batch, b.N-i)
		start, startCPU := time.Now(), processCPU()
		for range n {
			serve()
		}
		spent[mode] += time.Since(start)
		cpu[mode] += processCPU() - startCPU
		count[mode] += n
		i += n
	}
	b.StopTimer()
	g.upstream.noEndPeek = false
	if count[0] > 0 && count[1] > 0 {
		with := float64(spent[0]) / float64(count[0])
		without := float64(spent[1]) / float64(count[1])
		b.ReportMetric(with, "peek-ns/req")
		b.ReportMetric(without, "nopeek-ns/req")
		b.ReportMetric(with/without, "ratio")
		// CPU time (client, gateway and backend in this process) moves
		// less than wall time on a shared machine.
		withCPU := float64(cpu[0]) / float64(count[0])
		withoutCPU := float64(cpu[1]) / float64(count[1])
		b.ReportMetric(withCPU, "peek-cpu-ns/req")
		b.ReportMetric(withoutCPU, "nopeek-cpu-ns/req")
		if withoutCPU > 0 {
			b.ReportMetric(withCPU/withoutCPU, "cpu-ratio")
		}
	}

	// The system call alone, on the pooled connection.
	g.upstream.mu.Lock()
	var c *upConn
	for _, list := range g.upstream.idle {
		if len(list) > 0 {
			c = list[0]
		}
	}
	g.upstream.mu.Unlock()
	if c == nil {
		b.Fatal("no pooled connection")
	}
	const peeks = 10000
	start := time.Now()
	for range peeks {
		if !c.alive() {
			b.Fatal("an idle connection was found closed")
		}
	}
	b.ReportMetric(float64(time.Since(start))/peeks, "syscall-ns")
}
