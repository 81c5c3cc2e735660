package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The overhead scenarios send one small, non-streaming chat request over
// keep-alive HTTP/1.1 connections with a lean client written for it: a
// precomputed request and a response parser that only looks for the
// status, the length and the header naming the backend, so that the load
// generator takes as little of the two cores as it can.

const chatBody = `{"model":"default","messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":16}`

var chatRequest = []byte("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
	strconv.Itoa(len(chatBody)) + "\r\n\r\n" + chatBody)

// newHist records microseconds from 1µs to 2 minutes at 3 significant digits.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, 120_000_000, 3) }

func recordDur(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < 1 {
		us = 1
	}
	if us > h.HighestTrackableValue() {
		us = h.HighestTrackableValue()
	}
	h.RecordValue(us)
}

// rawConn is one keep-alive client connection.
type rawConn struct {
	addr string
	c    net.Conn
	br   *bufio.Reader
}

func (rc *rawConn) close() {
	if rc.c != nil {
		rc.c.Close()
		rc.c = nil
	}
}

// do sends the chat request and reads the whole answer; it returns the
// status and the value of X-Sim-Model (which simulated slot answered).
func (rc *rawConn) do() (status int, backend string, err error) {
	if rc.c == nil {
		c, err := net.DialTimeout("tcp", rc.addr, 5*time.Second)
		if err != nil {
			return 0, "", err
		}
		rc.c = c
		if rc.br == nil {
			rc.br = bufio.NewReaderSize(c, 16<<10)
		} else {
			rc.br.Reset(c)
		}
	}
	rc.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := rc.c.Write(chatRequest); err != nil {
		rc.close()
		return 0, "", err
	}
	status, backend, err = rc.readResponse()
	if err != nil {
		rc.close()
	}
	return status, backend, err
}

var (
	hdrContentLength = []byte("content-length:")
	hdrTransferEnc   = []byte("transfer-encoding:")
	hdrSimModel      = []byte("x-sim-model:")
	hdrConnection    = []byte("connection:")
)

func hasPrefixFold(line, prefix []byte) bool {
	return len(line) >= len(prefix) && bytes.EqualFold(line[:len(prefix)], prefix)
}

func (rc *rawConn) readResponse() (status int, backend string, err error) {
	line, err := rc.br.ReadSlice('\n')
	if err != nil {
		return 0, "", err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, "", fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, "", fmt.Errorf("bad status line %q", line)
	}
	length, chunked, closeAfter := -1, false, false
	for {
		line, err = rc.br.ReadSlice('\n')
		if err != nil {
			return 0, "", err
		}
		if len(line) <= 2 {
			break
		}
		switch {
		case hasPrefixFold(line, hdrContentLength):
			length, err = strconv.Atoi(string(bytes.TrimSpace(line[len(hdrContentLength):])))
			if err != nil {
				return 0, "", fmt.Errorf("bad content-length %q", line)
			}
		case hasPrefixFold(line, hdrTransferEnc):
			chunked = bytes.Contains(bytes.ToLower(line), []byte("chunked"))
		case hasPrefixFold(line, hdrSimModel):
			backend = string(bytes.TrimSpace(line[len(hdrSimModel):]))
		case hasPrefixFold(line, hdrConnection):
			closeAfter = bytes.Contains(bytes.ToLower(line), []byte("close"))
		}
	}
	switch {
	case chunked:
		err = rc.discardChunked()
	case length >= 0:
		_, err = rc.br.Discard(length)
	default:
		_, err = io.Copy(io.Discard, rc.br)
		closeAfter = true
	}
	if err != nil {
		return 0, "", err
	}
	if closeAfter {
		rc.close()
	}
	return status, backend, nil
}

func (rc *rawConn) discardChunked() error {
	for {
		line, err := rc.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimSpace(line)
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(line), 16, 64)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers
				l, err := rc.br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(l) <= 2 {
					return nil
				}
			}
		}
		if _, err := rc.br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

// loadResult is one run of the request load against one target.
type loadResult struct {
	Requests int64
	Errors   int64
	Elapsed  time.Duration
	Hist     *hdrhistogram.Histogram
	Backends map[string]int64
	FirstErr string
}

func (r loadResult) rps() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// runLoad sends requests from `workers` connections for d. With rate > 0
// it is open loop: each worker follows its own constant-rate schedule
// (rate/workers) and latency is timed from the scheduled send time, so a
// stall is charged to every request it delays (no coordinated omission).
// With rate 0 it is closed loop: each worker sends as soon as its previous
// answer is in (saturation).
func runLoad(ctx context.Context, addr string, workers int, rate float64, d time.Duration) loadResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	type part struct {
		n, errs  int64
		h        *hdrhistogram.Histogram
		backends map[string]int64
		firstErr string
	}
	parts := make([]part, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &parts[i]
			p.h = newHist()
			p.backends = map[string]int64{}
			rc := &rawConn{addr: addr}
			defer rc.close()
			var period time.Duration
			next := start
			if rate > 0 {
				period = time.Duration(float64(workers) / rate * float64(time.Second))
				next = start.Add(period * time.Duration(i) / time.Duration(workers))
			}
			for ctx.Err() == nil {
				// from is when the request's latency starts. A worker that
				// is behind its schedule (the previous answer came late)
				// charges the delay to the server: latency runs from the
				// scheduled time. A worker that was idle at the scheduled
				// time but woke late (timer granularity, a busy client)
				// charges nothing: latency runs from the actual send.
				from := next
				if rate > 0 {
					if wait := time.Until(next); wait > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(wait):
						}
						from = time.Now()
					}
				} else {
					from = time.Now()
				}
				status, backend, err := rc.do()
				if ctx.Err() != nil && err != nil {
					return // the run ended mid-request: not the server's failure
				}
				lat := time.Since(from)
				p.n++
				if err == nil && status != 200 {
					err = fmt.Errorf("status %d", status)
				}
				if err != nil {
					p.errs++
					if p.firstErr == "" {
						p.firstErr = err.Error()
					}
					if errors.Is(err, context.DeadlineExceeded) {
						return
					}
					continue
				}
				recordDur(p.h, lat)
				p.backends[backend]++
				next = next.Add(period)
			}
		}()
	}
	wg.Wait()
	res := loadResult{Elapsed: time.Since(start), Hist: newHist(), Backends: map[string]int64{}}
	for _, p := range parts {
		res.Requests += p.n
		res.Errors += p.errs
		res.Hist.Merge(p.h)
		for k, v := range p.backends {
			res.Backends[k] += v
		}
		if res.FirstErr == "" {
			res.FirstErr = p.firstErr
		}
	}
	return res
}

func pct(h *hdrhistogram.Histogram, q float64) float64 { return float64(h.ValueAtQuantile(q)) }
