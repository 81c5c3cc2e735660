package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Run runs one load test and reports on it. It returns an error before
// sending anything when the configuration is invalid. When ctx ends
// early, Run stops sending, abandons the requests in flight and returns
// the report of what finished together with ctx's error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	endpoint, err := chatURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	seed := uint64(cfg.Seed)
	gen := &bodies{cfg: cfg, rnd: rand.New(rand.NewPCG(seed, 1))}

	var inFlight atomic.Int64
	records := make(chan Record, 256)
	col := newCollector(cfg)
	start := time.Now()
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		col.run(records, start, &inFlight)
	}()

	if cfg.Rate > 0 {
		arr := &arrivals{rate: cfg.Rate, rnd: rand.New(rand.NewPCG(seed, 2))}
		if cfg.Poisson {
			arr.shape = cfg.Burstiness
		}
		openLoop(ctx, &cfg, endpoint, start, arr, gen, records, &inFlight)
	} else {
		closedLoop(ctx, &cfg, endpoint, start, gen, records, &inFlight)
	}
	end := time.Now()
	close(records)
	<-collected
	return col.report(end.Sub(start)), ctx.Err()
}

func chatURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", invalid("URL %q must be an http:// or https:// base URL such as http://127.0.0.1:8080", base)
	}
	return strings.TrimRight(base, "/") + "/v1/chat/completions", nil
}

// openLoop sends requests at their scheduled times, whatever the state of
// earlier requests, up to cfg.MaxInFlight at once.
func openLoop(ctx context.Context, cfg *Config, endpoint string, start time.Time, arr *arrivals, gen *bodies, records chan<- Record, inFlight *atomic.Int64) {
	sem := make(chan struct{}, cfg.MaxInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; cfg.Requests == 0 || i < cfg.Requests; i++ {
		off := arr.next()
		if cfg.Duration > 0 && off >= cfg.Duration {
			return
		}
		scheduled := start.Add(off)
		body := gen.next()
		if d := time.Until(scheduled); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		select {
		case sem <- struct{}{}:
			inFlight.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec := send(ctx, cfg, endpoint, i, scheduled, body)
				inFlight.Add(-1)
				<-sem
				records <- rec
			}()
		default:
			records <- Record{Index: i, Scheduled: scheduled, Err: ErrDropped}
		}
	}
}

// closedLoop runs cfg.Concurrency workers, each sending its next request
// as soon as its previous one ends.
func closedLoop(ctx context.Context, cfg *Config, endpoint string, start time.Time, gen *bodies, records chan<- Record, inFlight *atomic.Int64) {
	var (
		mu   sync.Mutex // guards gen and next
		next int
		wg   sync.WaitGroup
	)
	deadline := start.Add(cfg.Duration)
	take := func() (int, []byte, bool) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil || (cfg.Requests > 0 && next >= cfg.Requests) ||
			(cfg.Duration > 0 && !time.Now().Before(deadline)) {
			return 0, nil, false
		}
		i := next
		next++
		return i, gen.next(), true
	}
	for range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i, body, ok := take()
				if !ok {
					return
				}
				inFlight.Add(1)
				rec := send(ctx, cfg, endpoint, i, time.Now(), body)
				inFlight.Add(-1)
				records <- rec
			}
		}()
	}
	wg.Wait()
}

// Describe returns a one-line summary of the load shape, e.g.
// "open loop, Poisson arrivals at 10 req/s, 100 requests".
func (c Config) Describe() string {
	c = c.withDefaults()
	var b strings.Builder
	switch {
	case c.Rate > 0 && c.Poisson && c.Burstiness == 1:
		fmt.Fprintf(&b, "open loop, Poisson arrivals at %g req/s", c.Rate)
	case c.Rate > 0 && c.Poisson:
		fmt.Fprintf(&b, "open loop, gamma arrivals (burstiness %g) at %g req/s", c.Burstiness, c.Rate)
	case c.Rate > 0:
		fmt.Fprintf(&b, "open loop, constant arrivals at %g req/s", c.Rate)
	default:
		fmt.Fprintf(&b, "closed loop, concurrency %d", c.Concurrency)
	}
	if c.Requests > 0 {
		fmt.Fprintf(&b, ", %d requests", c.Requests)
	}
	if c.Duration > 0 {
		fmt.Fprintf(&b, ", %s", c.Duration)
	}
	if c.Stream {
		b.WriteString(", streaming")
	}
	return b.String()
}
