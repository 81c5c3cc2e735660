package main

import (
	"context"
	"fmt"
	"math"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/internal/h1"
)

// params size a run.
type params struct {
	Rounds   int
	Duration time.Duration // one target's share of one round
	Rate1    float64       // open-loop rate at c=1
	Rate16   float64       // open-loop rate at c=16
	SatConns int           // closed-loop connections at saturation
	Steps    []float64     // frontier rates, as fractions of direct's saturation
	Streams  int           // concurrent streams in the streaming scenario
	Levels   []int         // stream-capacity levels
	Idle     int           // idle open streams for memory per stream
	SwapLoad time.Duration
	Swaps    int
}

// spread is the median of per-round figures with their range.
type spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func spreadOf(v []float64) spread {
	if len(v) == 0 {
		return spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// order rotates the targets each round so that none always runs first.
func order(ts []*target, round int) []*target {
	out := make([]*target, len(ts))
	for i := range ts {
		out[i] = ts[(i+round)%len(ts)]
	}
	return out
}

// LatencyFig is one target's latency at one concurrency: absolute
// percentiles and the same minus direct, per round, in microseconds.
type LatencyFig struct {
	P50        spread `json:"p50Us"`
	P99        spread `json:"p99Us"`
	AddedP50   spread `json:"addedP50Us"`
	AddedP99   spread `json:"addedP99Us"`
	Requests   int64  `json:"requests"`
	Errors     int64  `json:"errors"`
	FirstError string `json:"firstError,omitempty"`
}

// latencyScenario measures added latency at `conns` connections and a
// total open-loop rate, interleaving the targets round by round.
func latencyScenario(ctx context.Context, e *env, p params, conns int, rate float64) map[string]*LatencyFig {
	type acc struct{ p50, p99, a50, a99 []float64 }
	accs := map[string]*acc{}
	out := map[string]*LatencyFig{}
	for _, t := range e.targets {
		accs[t.Name] = &acc{}
		out[t.Name] = &LatencyFig{}
	}
	for r := range p.Rounds {
		round := map[string]loadResult{}
		for _, t := range order(e.targets, r) {
			res := runLoad(ctx, t.Addr, conns, rate, p.Duration)
			round[t.Name] = res
			f := out[t.Name]
			f.Requests += res.Requests
			f.Errors += res.Errors
			if f.FirstError == "" {
				f.FirstError = res.FirstErr
			}
		}
		d := round["direct"].Hist
		for name, res := range round {
			a := accs[name]
			a.p50 = append(a.p50, pct(res.Hist, 50))
			a.p99 = append(a.p99, pct(res.Hist, 99))
			a.a50 = append(a.a50, pct(res.Hist, 50)-pct(d, 50))
			a.a99 = append(a.a99, pct(res.Hist, 99)-pct(d, 99))
		}
		e.logf("  c=%d round %d: %s", conns, r+1, summariseRound(e, round))
	}
	for name, a := range accs {
		f := out[name]
		f.P50, f.P99, f.AddedP50, f.AddedP99 = spreadOf(a.p50), spreadOf(a.p99), spreadOf(a.a50), spreadOf(a.a99)
	}
	return out
}

func summariseRound(e *env, round map[string]loadResult) string {
	s := ""
	for _, t := range e.targets {
		r := round[t.Name]
		s += fmt.Sprintf("%s p50=%.0fµs p99=%.0fµs (%d req, %d err)  ", t.Name, pct(r.Hist, 50), pct(r.Hist, 99), r.Requests, r.Errors)
	}
	return s
}

// SatFig is one target at saturation.
type SatFig struct {
	RPS spread `json:"rps"`
	// RoundRPS is each round's rate, in round order (for paired ratios).
	RoundRPS    []float64 `json:"roundRps"`
	CPUUsPerReq spread    `json:"cpuUsPerRequest"`
	RSSMiB      float64   `json:"rssMiB"`
	Errors      int64     `json:"errors"`
	FirstError  string    `json:"firstError,omitempty"`
}

// saturationScenario runs closed-loop load from SatConns connections and
// charges each proxy's CPU time (utime+stime of its processes) to the
// requests it served.
func saturationScenario(ctx context.Context, e *env, p params) map[string]*SatFig {
	rps := map[string][]float64{}
	cpu := map[string][]float64{}
	out := map[string]*SatFig{}
	for _, t := range e.targets {
		out[t.Name] = &SatFig{}
	}
	for r := range p.Rounds {
		line := ""
		for _, t := range order(e.targets, r) {
			var c0 time.Duration
			if t.proc != nil {
				c0 = t.proc.cpuTime()
			}
			res := runLoad(ctx, t.Addr, p.SatConns, 0, p.Duration)
			f := out[t.Name]
			f.Errors += res.Errors
			if f.FirstError == "" {
				f.FirstError = res.FirstErr
			}
			rps[t.Name] = append(rps[t.Name], res.rps())
			if t.proc != nil && res.Requests > 0 {
				cpu[t.Name] = append(cpu[t.Name], float64((t.proc.cpuTime()-c0).Microseconds())/float64(res.Requests))
				f.RSSMiB = float64(t.proc.rss()) / (1 << 20)
			}
			line += fmt.Sprintf("%s %.0f req/s  ", t.Name, res.rps())
		}
		e.logf("  saturation round %d: %s", r+1, line)
	}
	for name, f := range out {
		f.RoundRPS = rps[name]
		f.RPS = spreadOf(rps[name])
		f.CPUUsPerReq = spreadOf(cpu[name])
	}
	return out
}

// FrontierFig is the highest open-loop rate a target sustains with its
// p99 at most 1 ms (and 5 ms) above direct's at the same rate.
type FrontierFig struct {
	Under1ms float64     `json:"maxRateAdded1ms"`
	Under5ms float64     `json:"maxRateAdded5ms"`
	Steps    []FrontStep `json:"steps"`
}

type FrontStep struct {
	Rate       float64 `json:"rate"`
	P99Us      float64 `json:"p99Us"`
	AddedP99Us float64 `json:"addedP99Us"`
	Errors     int64   `json:"errors"`
}

func frontierScenario(ctx context.Context, e *env, p params, directRPS float64) map[string]*FrontierFig {
	out := map[string]*FrontierFig{}
	for _, t := range e.targets {
		out[t.Name] = &FrontierFig{}
	}
	failed := map[string]bool{}
	for i, f := range p.Steps {
		rate := math.Round(f * directRPS)
		round := map[string]loadResult{}
		for _, t := range order(e.targets, i) {
			if failed[t.Name] {
				continue
			}
			round[t.Name] = runLoad(ctx, t.Addr, frontierConns, rate, p.Duration)
		}
		d := round["direct"]
		line := ""
		for _, t := range e.targets {
			res, ok := round[t.Name]
			if !ok {
				continue
			}
			added := pct(res.Hist, 99) - pct(d.Hist, 99)
			if res.Requests == 0 {
				added = math.Inf(1)
			}
			fig := out[t.Name]
			fig.Steps = append(fig.Steps, FrontStep{Rate: rate, P99Us: pct(res.Hist, 99), AddedP99Us: added, Errors: res.Errors})
			// The achieved rate must match the offered one, else the
			// target fell behind its schedule.
			kept := res.rps() >= 0.95*rate && res.Errors == 0
			if kept && added <= 1000 {
				fig.Under1ms = rate
			}
			if kept && added <= 5000 {
				fig.Under5ms = rate
			} else if t.Name != "direct" {
				failed[t.Name] = true
			}
			line += fmt.Sprintf("%s p99=%.0fµs  ", t.Name, pct(res.Hist, 99))
		}
		e.logf("  frontier %.0f req/s: %s", rate, line)
	}
	return out
}

// StreamFig is one target's streaming figures.
type StreamFig struct {
	Streams      int     `json:"streams"`
	Failed       int     `json:"failed"`
	EventsSent   int     `json:"contentEventsSent"`
	EventsGot    int     `json:"contentEventsReceived"`
	Reads        int     `json:"readsWithEvents"`
	Coalesced    int     `json:"coalescedReads"`
	MaxPerRead   int     `json:"maxEventsPerRead"`
	TTFTP50Us    spread  `json:"ttftP50Us"`
	AddedTTFTUs  spread  `json:"addedTtftP50Us"`
	GapP99Us     spread  `json:"gapP99Us"`
	AddedGapP99  spread  `json:"addedGapP99Us"`
	MaxGapMs     float64 `json:"maxGapMs"`
	FirstError   string  `json:"firstError,omitempty"`
	MaxStreams   int     `json:"maxConcurrentStreams"`
	StalledAt    int     `json:"stalledAt,omitempty"`
	StallReason  string  `json:"stallReason,omitempty"`
	IdleStreams  int     `json:"idleStreams,omitempty"`
	IdleRSSDelta float64 `json:"idleRssDeltaMiB,omitempty"`
	KiBPerStream float64 `json:"kibPerIdleStream,omitempty"`
}

// streamingScenario: TTFT 0, 20 ms between tokens, 64-256 tokens.
func streamingScenario(ctx context.Context, e *env, p params) (map[string]*StreamFig, error) {
	if err := e.setSims(ctx, `{"ttft":"0s","itl":"20ms","tokens":256}`); err != nil {
		return nil, err
	}
	defer e.setSims(context.Background(), `{"ttft":"0s","itl":"0s","tokens":16}`)
	out := map[string]*StreamFig{}
	ttft := map[string][]float64{}
	gap := map[string][]float64{}
	for _, t := range e.targets {
		out[t.Name] = &StreamFig{}
	}
	for r := range p.Rounds {
		round := map[string]*streamStats{}
		for _, t := range order(e.targets, r) {
			round[t.Name] = runStreams(ctx, t.URL(), p.Streams, 64, 256, p.Duration+3*time.Second)
		}
		d := round["direct"]
		line := ""
		for _, t := range e.targets {
			s := round[t.Name]
			f := out[t.Name]
			f.Streams += s.Streams
			f.Failed += s.Failed
			f.EventsSent += s.EventsWant
			f.EventsGot += s.EventsGot
			f.Reads += s.Reads
			f.Coalesced += s.Coalesced
			f.MaxPerRead = max(f.MaxPerRead, s.MaxPer)
			f.MaxGapMs = max(f.MaxGapMs, float64(s.MaxGap.Microseconds())/1000)
			if f.FirstError == "" {
				f.FirstError = s.FirstErr
			}
			ttft[t.Name+"abs"] = append(ttft[t.Name+"abs"], pct(s.TTFT, 50))
			ttft[t.Name] = append(ttft[t.Name], pct(s.TTFT, 50)-pct(d.TTFT, 50))
			gap[t.Name+"abs"] = append(gap[t.Name+"abs"], pct(s.Gap, 99))
			gap[t.Name] = append(gap[t.Name], pct(s.Gap, 99)-pct(d.Gap, 99))
			line += fmt.Sprintf("%s ttft=%.0fµs gap99=%.1fms coalesced=%d  ", t.Name, pct(s.TTFT, 50), pct(s.Gap, 99)/1000, s.Coalesced)
		}
		e.logf("  streams round %d: %s", r+1, line)
	}
	for name, f := range out {
		f.TTFTP50Us, f.AddedTTFTUs = spreadOf(ttft[name+"abs"]), spreadOf(ttft[name])
		f.GapP99Us, f.AddedGapP99 = spreadOf(gap[name+"abs"]), spreadOf(gap[name])
	}
	return out, nil
}

// stallGap is the inter-token gap that counts as a stall at 20 ms ITL.
const stallGap = 250 * time.Millisecond

// capacityScenario opens bursts of ever more concurrent 64-token streams
// and keeps the largest level at which no stream failed or stalled.
func capacityScenario(ctx context.Context, e *env, p params, out map[string]*StreamFig) error {
	if err := e.setSims(ctx, `{"ttft":"0s","itl":"20ms","tokens":256}`); err != nil {
		return err
	}
	defer e.setSims(context.Background(), `{"ttft":"0s","itl":"0s","tokens":16}`)
	stopped := map[string]bool{}
	for _, n := range p.Levels {
		line := ""
		for _, t := range e.targets {
			if stopped[t.Name] {
				continue
			}
			s := burstStreams(ctx, t.URL(), n, 64)
			f := out[t.Name]
			switch {
			case s.Failed > 0:
				stopped[t.Name] = true
				f.StalledAt, f.StallReason = n, fmt.Sprintf("%d of %d streams failed: %s", s.Failed, n, s.FirstErr)
			case s.MaxGap > stallGap:
				stopped[t.Name] = true
				f.StalledAt, f.StallReason = n, fmt.Sprintf("an inter-token gap of %v (stall threshold %v)", s.MaxGap.Round(time.Millisecond), stallGap)
			default:
				f.MaxStreams = n
			}
			line += fmt.Sprintf("%s maxgap=%v failed=%d  ", t.Name, s.MaxGap.Round(time.Millisecond), s.Failed)
			time.Sleep(200 * time.Millisecond)
		}
		e.logf("  %d streams: %s", n, line)
	}
	return nil
}

// idleScenario measures memory per idle open stream: a fresh proxy
// process, its RSS before and with N streams open and waiting for their
// next token.
func idleScenario(ctx context.Context, e *env, p params, out map[string]*StreamFig) error {
	if err := e.setSims(ctx, `{"ttft":"0s","itl":"60s","tokens":4}`); err != nil {
		return err
	}
	defer e.setSims(context.Background(), `{"ttft":"0s","itl":"0s","tokens":16}`)
	for _, t := range e.targets {
		if t.restart == nil {
			continue
		}
		if err := t.restart(ctx); err != nil {
			return err
		}
		// Warm the pools a little, as a serving proxy would be.
		runLoad(ctx, t.Addr, 4, 0, 300*time.Millisecond)
		time.Sleep(300 * time.Millisecond)
		before := t.proc.rss()
		opened, release := holdStreams(ctx, t.URL(), p.Idle)
		time.Sleep(500 * time.Millisecond)
		after := t.proc.rss()
		release()
		f := out[t.Name]
		f.IdleStreams = opened
		f.IdleRSSDelta = float64(after-before) / (1 << 20)
		if opened > 0 {
			f.KiBPerStream = float64(after-before) / 1024 / float64(opened)
		}
		e.logf("  idle %s: %d streams, RSS %.1f -> %.1f MiB, %.1f KiB/stream", t.Name, opened, float64(before)/(1<<20), float64(after)/(1<<20), f.KiBPerStream)
	}
	return nil
}

// SplitFig is the observed split of one proxy.
type SplitFig struct {
	Production int64   `json:"production"`
	Staging    int64   `json:"staging"`
	StagingPct float64 `json:"stagingPct"`
	Chi2       float64 `json:"chi2"`
	Within     bool    `json:"withinBound"`
}

// chi2Bound is the 99.9th percentile of chi-square with one degree of
// freedom: a fair 90/10 draw exceeds it one time in a thousand.
const chi2Bound = 10.83

func splitOf(backends map[string]int64) SplitFig {
	f := SplitFig{Production: backends[simNames[0]], Staging: backends[simNames[1]]}
	n := float64(f.Production + f.Staging)
	if n == 0 {
		return f
	}
	f.StagingPct = 100 * float64(f.Staging) / n
	ep, es := 0.9*n, 0.1*n
	f.Chi2 = (float64(f.Production)-ep)*(float64(f.Production)-ep)/ep + (float64(f.Staging)-es)*(float64(f.Staging)-es)/es
	f.Within = f.Chi2 <= chi2Bound
	return f
}

// splitScenario sends n requests through each proxy and counts which
// simulator answered.
func splitScenario(ctx context.Context, e *env, n int) map[string]SplitFig {
	out := map[string]SplitFig{}
	for _, t := range e.targets {
		if t.Name == "direct" {
			continue
		}
		backends := map[string]int64{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		per := n / 8
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rc := &rawConn{addr: t.Addr}
				defer rc.close()
				local := map[string]int64{}
				for range per {
					if _, b, err := rc.do(); err == nil {
						local[b]++
					}
				}
				mu.Lock()
				for k, v := range local {
					backends[k] += v
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		out[t.Name] = splitOf(backends)
	}
	return out
}

// SwapFig is swap under load through modelslot.
type SwapFig struct {
	Swaps         int     `json:"swaps"`
	SwapErrors    int     `json:"swapErrors"`
	Requests      int64   `json:"requests"`
	Failed        int64   `json:"failedRequests"`
	Streams       int     `json:"streams"`
	BrokenStreams int     `json:"brokenStreams"`
	SwapMsP50     float64 `json:"swapApiMsP50"`
	FirstError    string  `json:"firstError,omitempty"`
}

// swapScenario swaps staging into production repeatedly while open-loop
// requests and 5 ms-per-token streams run through the gateway.
func swapScenario(ctx context.Context, e *env, p params) (*SwapFig, error) {
	t := e.target("modelslot")
	if err := e.setSims(ctx, `{"ttft":"0s","itl":"5ms","tokens":32}`); err != nil {
		return nil, err
	}
	defer e.setSims(context.Background(), `{"ttft":"0s","itl":"0s","tokens":16}`)
	var load loadResult
	var streams *streamStats
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); load = runLoad(ctx, t.Addr, 8, 400, p.SwapLoad) }()
	go func() { defer wg.Done(); streams = runStreams(ctx, t.URL(), 8, 16, 32, p.SwapLoad) }()
	fig := &SwapFig{}
	var durs []float64
	interval := p.SwapLoad / time.Duration(p.Swaps+1)
	for range p.Swaps {
		time.Sleep(interval)
		start := time.Now()
		if err := e.swap(ctx); err != nil {
			fig.SwapErrors++
			if fig.FirstError == "" {
				fig.FirstError = err.Error()
			}
			continue
		}
		fig.Swaps++
		durs = append(durs, float64(time.Since(start).Microseconds())/1000)
	}
	wg.Wait()
	fig.Requests, fig.Failed = load.Requests, load.Errors
	if load.FirstErr != "" && fig.FirstError == "" {
		fig.FirstError = load.FirstErr
	}
	fig.Streams, fig.BrokenStreams = streams.Streams, streams.Failed
	if streams.FirstErr != "" && fig.FirstError == "" {
		fig.FirstError = streams.FirstErr
	}
	fig.SwapMsP50 = spreadOf(durs).Median
	return fig, nil
}

// MeterFig is the cost of metering: an in-process gateway with
// DisableMeter off and on, interleaved, at saturation.
type MeterFig struct {
	RPSMeter   spread  `json:"rpsMeter"`
	RPSNoMeter spread  `json:"rpsNoMeter"`
	CostPct    float64 `json:"costPct"`
}

// meterScenario serves two in-process gateways over the same simulators,
// one metering and one not; the harness's own load shares the process, so
// only the ratio means anything. With profile set it writes a CPU profile
// of the metered runs.
func meterScenario(ctx context.Context, e *env, p params, profile string) (*MeterFig, error) {
	addrs := map[bool]string{}
	for _, disable := range []bool{false, true} {
		g := gateway.New(gateway.Config{DisableMeter: disable})
		defer g.Close()
		app := &modelslot.App{Name: "default", Routing: modelslot.Routing{Rules: []modelslot.TrafficRule{{Slot: "staging", Percent: 10}}, Generation: 1}}
		backends := map[string]*gateway.Backend{}
		for i, name := range []string{modelslot.Production, "staging"} {
			d := &modelslot.Deployment{Revision: "r" + name, Version: "v" + name, URL: "http://" + e.sims[i]}
			app.Slots = append(app.Slots, &modelslot.Slot{Name: name, Deployment: d})
			b, err := g.NewBackend(d.URL, d)
			if err != nil {
				return nil, err
			}
			backends[name] = b
		}
		g.Update([]gateway.RouteApp{{App: app, Backends: backends}})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		srv := &h1.Server{Handler: g} // as the daemon serves it
		go srv.Serve(ln)
		defer srv.Close()
		addrs[disable] = ln.Addr().String()
	}
	var on, off []float64
	// The cost is a few percent against round-to-round noise of 10% or more
	// on a shared host: more rounds than the other scenarios (8 at least).
	for r := range max(p.Rounds, 8) {
		for _, disable := range []bool{r%2 == 1, r%2 == 0} {
			var prof *os.File
			if !disable && profile != "" && r == 0 {
				f, err := os.Create(profile)
				if err != nil {
					return nil, err
				}
				prof = f
				pprof.StartCPUProfile(f)
			}
			res := runLoad(ctx, addrs[disable], p.SatConns, 0, p.Duration)
			if prof != nil {
				pprof.StopCPUProfile()
				prof.Close()
			}
			if disable {
				off = append(off, res.rps())
			} else {
				on = append(on, res.rps())
			}
			runtime.GC()
		}
		e.logf("  meter round %d: on %.0f req/s, off %.0f req/s", r+1, on[len(on)-1], off[len(off)-1])
	}
	fig := &MeterFig{RPSMeter: spreadOf(on), RPSNoMeter: spreadOf(off)}
	// The cost from per-round ratios, so that drift between rounds cancels.
	var ratios []float64
	for i := range on {
		ratios = append(ratios, 100*(1-on[i]/off[i]))
	}
	fig.CostPct = spreadOf(ratios).Median
	return fig, nil
}

// frontierConns carry the open-loop frontier load: enough for the rate
// times the latency, few enough that the client's timers stay cheap.
const frontierConns = 32
