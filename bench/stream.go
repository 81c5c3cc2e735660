package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// streamResult is one streamed chat completion as the client saw it.
type streamResult struct {
	Err string
	// Want is the number of content events the simulator sends (its
	// max_tokens); Got the number received.
	Want, Got int
	Done      bool // "data: [DONE]" arrived
	TTFT      time.Duration
	// Gaps between consecutive content events, in arrival order.
	Gaps []time.Duration
	// Reads is the number of body reads that completed a content event;
	// Coalesced those that completed more than one (events sent an
	// inter-token latency apart that arrived together: buffering).
	Reads, Coalesced, MaxPerRead int
	Backend                      string
}

var (
	tokDataPrefix = []byte("data: ")
	tokContentKey = []byte(`"content":"`)
	tokEmpty      = []byte(`"content":""`)
	tokDone       = []byte("data: [DONE]")
)

// streamOnce sends one streaming chat request for maxTokens tokens and
// reads the events as they arrive, one Read at a time. firstToken, when
// set, is closed at the first content event (for the idle-stream scenario,
// which then holds the stream open until ctx ends).
func streamOnce(ctx context.Context, client *http.Client, baseURL string, maxTokens int, firstToken func()) streamResult {
	body := `{"model":"default","stream":true,"max_tokens":` + strconv.Itoa(maxTokens) + `,"messages":[{"role":"user","content":"Tell me a story."}]}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return streamResult{Err: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	res := streamResult{Want: maxTokens}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer resp.Body.Close()
	res.Backend = resp.Header.Get("X-Sim-Model")
	if resp.StatusCode != http.StatusOK {
		res.Err = fmt.Sprintf("status %d", resp.StatusCode)
		return res
	}
	buf := make([]byte, 16<<10)
	var pending []byte
	var last time.Time
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			now := time.Now()
			pending = append(pending, buf[:n]...)
			inRead := 0
			for {
				i := bytes.Index(pending, []byte("\n\n"))
				if i < 0 {
					break
				}
				ev := pending[:i]
				pending = pending[i+2:]
				if bytes.HasPrefix(ev, tokDone) {
					res.Done = true
					continue
				}
				if !bytes.HasPrefix(ev, tokDataPrefix) || !bytes.Contains(ev, tokContentKey) || bytes.Contains(ev, tokEmpty) {
					continue
				}
				res.Got++
				inRead++
				if res.Got == 1 {
					res.TTFT = now.Sub(start)
					if firstToken != nil {
						firstToken()
					}
				} else {
					res.Gaps = append(res.Gaps, now.Sub(last))
				}
				last = now
			}
			if inRead > 0 {
				res.Reads++
				if inRead > 1 {
					res.Coalesced++
				}
				res.MaxPerRead = max(res.MaxPerRead, inRead)
			}
			pending = append(pending[:0], pending...)
		}
		if rerr != nil {
			if ctx.Err() == nil && !res.Done {
				res.Err = "stream ended before [DONE]: " + rerr.Error()
			}
			break
		}
	}
	if res.Err == "" && res.Got != res.Want {
		res.Err = fmt.Sprintf("%d content events received, %d sent", res.Got, res.Want)
	}
	return res
}

// streamStats aggregates streams of one run.
type streamStats struct {
	Streams, Failed          int
	EventsWant, EventsGot    int
	Reads, Coalesced, MaxPer int
	TTFT, Gap                *hdrhistogram.Histogram
	MaxGap                   time.Duration
	FirstErr                 string
}

func newStreamStats() *streamStats {
	return &streamStats{TTFT: newHist(), Gap: newHist()}
}

func (s *streamStats) add(r streamResult) {
	s.Streams++
	s.EventsWant += r.Want
	s.EventsGot += r.Got
	s.Reads += r.Reads
	s.Coalesced += r.Coalesced
	s.MaxPer = max(s.MaxPer, r.MaxPerRead)
	if r.Err != "" {
		s.Failed++
		if s.FirstErr == "" {
			s.FirstErr = r.Err
		}
	}
	if r.Got > 0 {
		recordDur(s.TTFT, r.TTFT)
	}
	for _, g := range r.Gaps {
		recordDur(s.Gap, g)
		s.MaxGap = max(s.MaxGap, g)
	}
}

func newStreamClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}}
}

// runStreams keeps `concurrent` streams open for d, each asking for a
// token count drawn from [minTok, maxTok].
func runStreams(ctx context.Context, baseURL string, concurrent, minTok, maxTok int, d time.Duration) *streamStats {
	client := newStreamClient(concurrent)
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(d)
	var mu sync.Mutex
	st := newStreamStats()
	var wg sync.WaitGroup
	for i := range concurrent {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			// Spread the starts over one token interval so that events of
			// different streams do not all fall on the same instant.
			time.Sleep(time.Duration(i) * 20 * time.Millisecond / time.Duration(concurrent))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				n := minTok + rng.IntN(maxTok-minTok+1)
				r := streamOnce(ctx, client, baseURL, n, nil)
				mu.Lock()
				st.add(r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return st
}

// burstStreams opens n streams of tokens events each, started over one
// second, and waits for them all.
func burstStreams(ctx context.Context, baseURL string, n, tokens int) *streamStats {
	client := newStreamClient(n)
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	st := newStreamStats()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * time.Second / time.Duration(n))
			r := streamOnce(ctx, client, baseURL, tokens, nil)
			mu.Lock()
			st.add(r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return st
}

// holdStreams opens n streams and returns once every one has received its
// first token (or failed); release closes them all.
func holdStreams(ctx context.Context, baseURL string, n int) (opened int, release func()) {
	ctx, cancel := context.WithCancel(ctx)
	client := newStreamClient(n)
	var first sync.WaitGroup
	var done sync.WaitGroup
	var mu sync.Mutex
	for i := range n {
		first.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			var once sync.Once
			mark := func() {
				once.Do(func() {
					mu.Lock()
					opened++
					mu.Unlock()
					first.Done()
				})
			}
			time.Sleep(time.Duration(i) * time.Millisecond / 2)
			streamOnce(ctx, client, baseURL, 4, mark)
			once.Do(first.Done) // failed before the first token
		}()
	}
	first.Wait()
	return opened, func() {
		cancel()
		done.Wait()
		client.CloseIdleConnections()
	}
}
