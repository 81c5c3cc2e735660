// Command bench measures modelslot's gateway against a direct connection
// to the model server and against nginx and haproxy doing the same 90/10
// split, in one run, as /work/shared/BENCHMARKS.md describes.
//
// Run it from the repository root:
//
//	go run ./bench                     # full run, ~12 minutes
//	go run ./bench -quick              # ~2 minutes, fewer rounds and levels
//	go run ./bench -duration 3s        # each target's share of a round
//	go run ./bench -out bench/RESULTS.md  # markdown; JSON goes next to it
//	go run ./bench -cpuprofile /tmp/gw.pprof  # profile the in-process gateway
//
// It builds the modelslot binary once, starts two `modelslot sim`
// processes as the slots, `modelslot serve` with a config file that
// deploys them 90/10, and nginx and haproxy (found on PATH or in
// /usr/sbin) configured for the same split with upstream keepalive. A
// peer that is missing is skipped and named in the results. Every figure
// is reported against direct (and nginx) measured in the same run, in
// interleaved rounds.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"
)

func main() {
	var (
		quick      = flag.Bool("quick", false, "a short run: 2 rounds, 1s per target, fewer levels")
		duration   = flag.Duration("duration", 0, "each target's share of one round (default 4s, quick 1s)")
		rounds     = flag.Int("rounds", 0, "interleaved rounds (default 5, quick 2)")
		out        = flag.String("out", "bench/RESULTS.md", "markdown results; the JSON is written beside it with .json")
		cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of the in-process gateway (metered) at saturation")
		gogc       = flag.String("gogc", "", "GOGC for the modelslot process (default: unset, 100)")
		gomaxprocs = flag.String("gomaxprocs", "", "GOMAXPROCS for the modelslot process (default: unset, all cores)")
		pin        = flag.Bool("pin", false, "pin proxies to CPU 0 and simulators to CPU 1 with taskset")
		baseline   = flag.String("baseline-bin", "", "also measure this modelslot binary as target modelslot-base (before/after in one run)")
		only       = flag.String("only", "", "comma-separated scenarios to run (latency,saturation,frontier,streaming,capacity,idle,split,swap,meter,replicas); default all")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, runOptions{
		Quick: *quick, Duration: *duration, Rounds: *rounds, Out: *out, CPUProfile: *cpuprofile,
		GOGC: *gogc, GOMAXPROCS: *gomaxprocs, Pin: *pin, Only: *only, Args: os.Args[1:], BaselineBin: *baseline,
	}); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type runOptions struct {
	Quick            bool
	Duration         time.Duration
	Rounds           int
	Out, CPUProfile  string
	GOGC, GOMAXPROCS string
	Pin              bool
	Only             string
	BaselineBin      string
	Args             []string
}

func paramsFor(o runOptions) params {
	p := params{
		Rounds: 5, Duration: 4 * time.Second, Rate1: 500, Rate16: 2000, SatConns: 64,
		Steps:   []float64{0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6},
		Streams: 32, Levels: []int{64, 128, 256, 384, 512, 768, 1024}, Idle: 1000,
		SwapLoad: 8 * time.Second, Swaps: 6,
	}
	if o.Quick {
		p.Rounds, p.Duration = 2, time.Second
		p.Steps = []float64{0.05, 0.1, 0.2, 0.3, 0.4}
		p.Levels = []int{64, 256, 512}
		p.Idle = 300
		p.SwapLoad, p.Swaps = 4*time.Second, 4
	}
	if o.Duration > 0 {
		p.Duration = o.Duration
	}
	if o.Rounds > 0 {
		p.Rounds = o.Rounds
	}
	return p
}

func run(ctx context.Context, o runOptions) error {
	dir, err := os.MkdirTemp("", "modelslot-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
	e, err := setup(ctx, envOptions{Dir: dir, Peers: true, GOGC: o.GOGC, GOMAXPROCS: o.GOMAXPROCS, Pin: o.Pin, BaselineBin: o.BaselineBin, Log: logf})
	if err != nil {
		return err
	}
	defer e.close()
	p := paramsFor(o)
	res := newResults(o, p, e)
	want := func(s string) bool {
		return o.Only == "" || strings.Contains(","+o.Only+",", ","+s+",")
	}
	for _, m := range e.Missing {
		logf("missing peer: %s", m)
	}

	// Warm-up: connections, pools, the JIT-free but cache-hungry rest.
	for _, t := range e.targets {
		runLoad(ctx, t.Addr, 16, 0, time.Second)
	}
	if want("split") {
		logf("split: 20000 requests through each proxy")
		res.Split = splitScenario(ctx, e, 20000)
	}
	if want("latency") {
		logf("added latency at c=1 (%.0f req/s) and c=16 (%.0f req/s)", p.Rate1, p.Rate16)
		res.Latency["c1"] = latencyScenario(ctx, e, p, 1, p.Rate1)
		res.Latency["c16"] = latencyScenario(ctx, e, p, 16, p.Rate16)
	}
	if want("saturation") || want("frontier") {
		logf("saturation: closed loop, %d connections", p.SatConns)
		res.Saturation = saturationScenario(ctx, e, p)
		res.computeRatios()
	}
	if want("frontier") {
		d := res.Saturation["direct"].RPS.Median
		logf("frontier: open loop at fractions of direct's %.0f req/s", d)
		res.Frontier = frontierScenario(ctx, e, p, d)
	}
	if want("streaming") || want("capacity") || want("idle") {
		res.Streaming = map[string]*StreamFig{}
		for _, t := range e.targets {
			res.Streaming[t.Name] = &StreamFig{}
		}
	}
	if want("streaming") {
		logf("streaming: %d concurrent streams, TTFT 0, ITL 20ms, 64-256 tokens", p.Streams)
		s, err := streamingScenario(ctx, e, p)
		if err != nil {
			return err
		}
		for k, v := range s {
			*res.Streaming[k] = *v
		}
	}
	if want("capacity") {
		logf("stream capacity: bursts of %v streams of 64 tokens", p.Levels)
		if err := capacityScenario(ctx, e, p, res.Streaming); err != nil {
			return err
		}
	}
	if want("meter") {
		logf("meter cost: in-process gateway, DisableMeter off and on")
		if res.Meter, err = meterScenario(ctx, e, p, o.CPUProfile); err != nil {
			return err
		}
	}
	if want("swap") {
		logf("swap under load: %d swaps in %v", p.Swaps, p.SwapLoad)
		if res.Swap, err = swapScenario(ctx, e, p); err != nil {
			return err
		}
	}
	if want("replicas") {
		logf("replicas: two serve processes on a throwaway PostgreSQL against the SQLite daemon, and admin-change propagation")
		if res.Replicas, err = replicasScenario(ctx, e, p); err != nil {
			return err
		}
	}
	if want("idle") {
		logf("memory per idle open stream: %d streams, fresh processes", p.Idle)
		if err := idleScenario(ctx, e, p, res.Streaming); err != nil {
			return err
		}
	}
	res.Finished = time.Now().UTC().Format(time.RFC3339)
	return res.write(o.Out)
}
