package gateway

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"testing"
)

// serveRaw is a raw-socket server on loopback for test backends: each
// connection is served by serve, with a reader over it, until serve returns
// (then it is closed). It returns the server's base URL.
func serveRaw(tb testing.TB, serve func(c net.Conn, br *bufio.Reader)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// cheapBackend is a model server that costs next to nothing: it reads each
// request's head and Content-Length body and writes a fixed answer, with
// no allocation per request, so that a benchmark through it measures the
// gateway.
func cheapBackend(tb testing.TB) string {
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(benchAnswer)) +
		"\r\nContent-Type: application/json\r\nX-Sim-Model: production\r\nDate: Sat, 05 Dec 2026 01:22:25 GMT\r\n\r\n" + benchAnswer)
	return serveRaw(tb, func(c net.Conn, br *bufio.Reader) {
		for {
			n, err := readHeadLength(br)
			if err != nil {
				return
			}
			if _, err := br.Discard(n); err != nil {
				return
			}
			if _, err := c.Write(answer); err != nil {
				return
			}
		}
	})
}

// readHeadLength reads a message head from br and returns its
// Content-Length (0 without one).
func readHeadLength(br *bufio.Reader) (int, error) {
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			return n, nil
		}
		if len(line) > 16 && bytes.EqualFold(line[:15], []byte("content-length:")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
		}
	}
}

// BenchmarkProxyRaw is the gateway's whole path (its HTTP/1.1 server, the
// proxy, the upstream client, the meter) between a raw-socket client and a
// raw-socket backend that allocate nothing per request: allocs/op and
// cpu-ns/op are the gateway's, but for the client's and backend's system
// calls.
func BenchmarkProxyRaw(b *testing.B) {
	g, _ := benchGateway(b, Config{}, cheapBackend(b), "")
	addr := front(b, g)[len("http://"):]
	req := []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(benchBody)) + "\r\n\r\n" + benchBody)
	b.ReportAllocs()
	b.SetParallelism(16)
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			n, err := readHeadLength(br)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := br.Discard(n); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
