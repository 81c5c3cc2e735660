// Package demo runs modelslot's whole loop on the embedded default, in one
// process: a daemon on a temporary data directory, simulated model
// versions, live traffic, staging validation, a traffic split, a swap and a
// swap back, then a gated rollout that promotes a good version and one that
// rolls a bad version back by itself.
package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/client"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/modelslot/modelslot/evals"
	"github.com/modelslot/modelslot/loadgen"
	"github.com/modelslot/modelslot/rollout"
	"github.com/modelslot/modelslot/sim"
)

// Options tune the demo.
type Options struct {
	Out io.Writer
	// Keep leaves the daemon running after the demo until ctx ends.
	Keep bool
	// Rate is the live traffic in requests per second (default 200).
	Rate float64
	// Listen and Admin fix the daemon's addresses (default: free ports).
	Listen, Admin string
	// Short skips the rollouts (issue 2's loop only).
	Short bool
	// Binary is the modelslot binary whose `serve` the HA demo runs as
	// replicas (default: this executable).
	Binary string
	// Verbose adds the statistics behind each verdict (e-values,
	// confidence bounds) and the validation's latency ratios.
	Verbose bool
}

// Run runs the demo; it returns an error unless every outcome happened as
// expected.
func Run(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Rate <= 0 {
		o.Rate = 200
	}
	d := &demo{o: o, out: o.Out, start: time.Now()}
	defer d.cleanup()
	return d.run(ctx)
}

type demo struct {
	o     Options
	out   io.Writer
	start time.Time
	dir   string
	d     *daemon.Daemon
	c     *client.Client
	sims  map[string]*simProc
	load  *traffic
	stops []func()
}

type simProc struct {
	s   *sim.Server
	url string
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) detail(format string, args ...any) {
	fmt.Fprintf(d.out, "         %s\n", fmt.Sprintf(format, args...))
}

func (d *demo) cleanup() {
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
}

// answers are the simulator's canned answers, so that the eval has
// something to check.
var answers = map[string]string{
	"What is the capital of France?": "Paris",
	"What is 2+2?":                   "4",
	"Name a primary colour.":         "Red",
	"Return an empty JSON object.":   "{}",
}

func (d *demo) startSim(ctx context.Context, model string, cfg sim.Config) error {
	cfg.Model = model
	if cfg.TTFT == 0 {
		cfg.TTFT = 25 * time.Millisecond
	}
	if cfg.ITL == 0 {
		cfg.ITL = 2 * time.Millisecond
	}
	if cfg.Tokens == 0 {
		cfg.Tokens = 12
	}
	cfg.Jitter = 0.3
	cfg.Answers = answers
	s, err := sim.NewChecked(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s}
	go srv.Serve(ln)
	d.stops = append(d.stops, func() { srv.Close() })
	if d.sims == nil {
		d.sims = map[string]*simProc{}
	}
	d.sims[model] = &simProc{s: s, url: "http://" + ln.Addr().String()}
	return nil
}

func (d *demo) run(ctx context.Context) error {
	var err error
	if d.dir, err = os.MkdirTemp("", "modelslot-demo-"); err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Data = filepath.Join(d.dir, "data")
	cfg.Listen = firstNonEmpty(d.o.Listen, "127.0.0.1:0")
	cfg.Admin = firstNonEmpty(d.o.Admin, "127.0.0.1:0")
	cfg.RolloutInterval = modelslot.Duration(time.Second)
	d.say("Starting the modelslot daemon on a fresh SQLite store in %s", cfg.Data)
	if d.d, err = daemon.Start(ctx, daemon.Options{Config: cfg}); err != nil {
		return err
	}
	d.stops = append(d.stops, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		d.d.Close(sctx)
	})
	d.c = client.New(d.d.AdminURL(), d.d.Token)
	d.c.Actor = "demo"
	d.detail("gateway (OpenAI-compatible): %s/v1    admin API: %s", d.d.GatewayURL(), d.d.AdminURL())

	for _, v := range []string{"v1", "v2"} {
		if err := d.startSim(ctx, v, sim.Config{}); err != nil {
			return err
		}
	}
	d.say("Started two simulated model versions: v1 at %s, v2 at %s", d.sims["v1"].url, d.sims["v2"].url)
	if err := d.deploy(ctx, modelslot.Production, "v1"); err != nil {
		return err
	}
	if _, err := d.c.CreateSlot(ctx, "default", "staging"); err != nil {
		return err
	}
	d.say("Created the staging slot")
	if err := d.deploy(ctx, "staging", "v2"); err != nil {
		return err
	}

	d.load = newTraffic(d.d.GatewayURL(), d.o.Rate)
	d.load.start()
	d.stops = append(d.stops, d.load.stop)
	d.say("Sending live traffic through the gateway: %.0f requests/s, half of them streamed", d.o.Rate)
	time.Sleep(2 * time.Second)
	d.showSplit("with no rule, production takes everything", 2*time.Second)

	if err := d.validate(ctx); err != nil {
		return err
	}

	if err := d.setTraffic(ctx, 10); err != nil {
		return err
	}
	d.showSplit("staging should get about 10%", 6*time.Second)

	if err := d.swap(ctx, "Swapping staging (v2) into production: warm-up, atomic flip, old version drains into staging"); err != nil {
		return err
	}
	d.showVersions("after the swap, production serves v2", 3*time.Second)
	if err := d.swap(ctx, "Swapping back (a rollback is the same swap again)"); err != nil {
		return err
	}
	d.showVersions("after the swap back, production serves v1 again", 3*time.Second)
	if err := d.setTraffic(ctx, 0); err != nil {
		return err
	}
	if failed := d.load.failed.Load(); failed > 0 {
		return fmt.Errorf("%d live requests failed during the splits and swaps (want 0): %s", failed, d.load.lastErr.Load())
	}
	d.say("So far %d live requests, %d failed", d.load.sent.Load(), d.load.failed.Load())

	if d.o.Short {
		return d.finish(ctx)
	}
	good, err := d.rollout(ctx, "v2", "v1", nil)
	if err != nil {
		return err
	}
	// production is now v2; a new candidate v3 will go bad halfway.
	if err := d.startSim(ctx, "v3", sim.Config{}); err != nil {
		return err
	}
	if err := d.deploy(ctx, "staging", "v3"); err != nil {
		return err
	}
	bad, err := d.rollout(ctx, "v3", "v2", func() {
		d.say("Making v3 go bad through the simulator's admin endpoint: 25%% errors and first tokens 10x slower")
		patch := `{"errorRate":0.25,"ttft":"250ms"}`
		req, _ := http.NewRequest(http.MethodPatch, d.sims["v3"].url+"/admin/config", strings.NewReader(patch))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	if err != nil {
		return err
	}
	var problems []string
	if good.State != rollout.Succeeded {
		problems = append(problems, fmt.Sprintf("the good v2 rollout ended %s, want succeeded: %s", good.State, good.Reason))
	}
	if bad.State != rollout.RolledBack {
		problems = append(problems, fmt.Sprintf("the bad v3 rollout ended %s, want rolled_back: %s", bad.State, bad.Reason))
	}
	if st, err := d.c.Status(ctx, "default"); err == nil {
		if v := st.Slots[0].Slot.Deployment; v == nil || v.Version != "v2" {
			problems = append(problems, "production does not serve v2 at the end")
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	d.say("Both outcomes happened as expected: v2 was promoted step by step, v3 was rolled back automatically")
	return d.finish(ctx)
}

func (d *demo) finish(ctx context.Context) error {
	d.say("Live traffic: %d requests sent, %d failed (errors injected into v3 count as failed only while it had traffic)", d.load.sent.Load(), d.load.failed.Load())
	if !d.o.Keep {
		d.say("Done. Run `modelslot demo --keep` to leave it running and try it yourself.")
		return nil
	}
	d.load.stop()
	d.say("The daemon keeps running (Ctrl-C to stop).")
	d.detail("dashboard: %s/ (sign in with the admin token %s, also in %s)", d.d.AdminURL(), d.d.Token, filepath.Join(d.d.DataDir(), "admin.token"))
	d.say("Try:")
	d.detail("curl -s %s/v1/chat/completions -H 'Content-Type: application/json' -d '{\"model\":\"default\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}' -i", d.d.GatewayURL())
	d.detail("export MODELSLOT_SERVER=%s MODELSLOT_TOKEN=%s", d.d.AdminURL(), d.d.Token)
	d.detail("modelslot status; modelslot traffic set staging=10; modelslot swap staging; modelslot rollout history")
	<-ctx.Done()
	return nil
}

func (d *demo) deploy(ctx context.Context, slot, version string) error {
	s, err := d.c.Deploy(ctx, "default", slot, modelslot.DeployRequest{Deployment: modelslot.Deployment{URL: d.sims[version].url, Version: version}})
	if err != nil {
		return err
	}
	d.say("Deployed %s to %s (revision %s); it answered its health check before taking traffic", version, slot, s.Deployment.Revision)
	return nil
}

func (d *demo) setTraffic(ctx context.Context, pct float64) error {
	var rules []modelslot.TrafficRule
	if pct > 0 {
		rules = []modelslot.TrafficRule{{Slot: "staging", Percent: pct}}
	}
	if _, err := d.c.SetTraffic(ctx, "default", rules, modelslot.TrafficOptions{ResetPins: pct == 0}); err != nil {
		return err
	}
	d.say("Set staging's share of traffic to %g%%; production gets %g%%", pct, 100-pct)
	return nil
}

func (d *demo) swap(ctx context.Context, what string) error {
	d.say("%s", what)
	rec, err := d.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging"})
	if err != nil {
		return err
	}
	d.detail("swap #%d %s in %v; in-flight requests during the swap failed: %d", rec.ID, rec.Status, rec.FinishedAt.Sub(rec.StartedAt).Round(time.Millisecond), d.load.failed.Load())
	return nil
}

func (d *demo) showSplit(what string, window time.Duration) {
	d.load.reset()
	time.Sleep(window)
	bySlot, _ := d.load.counts()
	total := 0
	for _, n := range bySlot {
		total += n
	}
	d.say("Observed over %v (%s):", window, what)
	for _, slot := range []string{"production", "staging"} {
		n := bySlot[slot]
		d.detail("%-10s %5d requests  %5.1f%%", slot, n, 100*float64(n)/math.Max(1, float64(total)))
	}
}

func (d *demo) showVersions(what string, window time.Duration) {
	d.load.reset()
	time.Sleep(window)
	_, byVersion := d.load.counts()
	var parts []string
	for v, n := range byVersion {
		parts = append(parts, fmt.Sprintf("%s: %d", v, n))
	}
	d.say("Observed over %v (%s): production answered as %s", window, what, strings.Join(parts, ", "))
}

// validate is step 2 of the seed: test staging under the expected load and
// check its answers before it gets any traffic.
func (d *demo) validate(ctx context.Context) error {
	d.say("Validating staging before it gets traffic: a short load test against both versions, then the golden set")
	prod, stg := d.sims["v1"].url, d.sims["v2"].url
	base := loadgen.Config{Rate: 20, Duration: 2 * time.Second, Stream: true, OutputTokens: loadgen.Dist{Mean: 12}, SLO: loadgen.SLO{TTFT: 500 * time.Millisecond}, Seed: 1}
	a, b := base, base
	a.URL, b.URL = prod, stg
	cmp, err := loadgen.Compare(ctx, a, b, 2)
	if err != nil {
		return err
	}
	d.detail("load test, 2 interleaved rounds at 20 req/s: staging's error rate %s against production's %s (at most 1%% passes)",
		percent(cmp.B.ErrorRate), percent(cmp.A.ErrorRate))
	// Latency is not judged here: two seconds on a shared machine move a
	// ratio more than a regression would; the rollout's gates judge it on
	// live traffic with enough requests.
	d.detail("its latency is judged later, by the rollout's gates on live traffic: this test is too short to tell")
	if d.o.Verbose {
		d.detail("(staging/production time to first token: p50 ratio %.2f, p99 ratio %.2f; not a validation criterion)", cmp.Ratio.TTFTP50.Median, cmp.Ratio.TTFTP99.Median)
	}
	var golden bytes.Buffer
	for q, a := range answers {
		fmt.Fprintf(&golden, `{"id":%q,"prompt":%q,"checks":[{"type":"contains","value":%q}]}`+"\n", q, q, a)
	}
	path := filepath.Join(d.dir, "golden.jsonl")
	if err := os.WriteFile(path, golden.Bytes(), 0o600); err != nil {
		return err
	}
	cases, err := evals.LoadGoldenSet(path)
	if err != nil {
		return err
	}
	ec, err := evals.Compare(ctx, evals.Config{URL: prod}, evals.Config{URL: stg}, cases)
	if err != nil {
		return err
	}
	d.detail("golden set of %d cases: production passes %d, staging passes %d; %d cases changed outcome",
		len(cases), ec.Base.Passed, ec.Candidate.Passed, len(ec.Changed))
	if ec.Candidate.Passed < ec.Base.Passed || cmp.B.ErrorRate > 0.01 {
		return fmt.Errorf("staging failed validation")
	}
	d.detail("staging passed validation")
	return nil
}

const demoPlan = `name: demo
interval: 1s
onInconclusive: fail
warmup: {duration: 2s, requests: 20}
analysis:
  minSamples: 100
  maxErrorRate: 0.05
  maxErrorRatio: 3
  maxSlowerProb: 0.7
  metrics: [errors, ttft, latency, output_tokens]
steps:
  - traffic: 10
  - bake: {duration: 10s, max: 60s}
  - traffic: 50
  - bake: {duration: 5s, max: 45s}
  - swap: {baselineTraffic: 10}
  - watch: {duration: 5s, max: 45s}
`

// rollout runs the demo plan for the version in staging against the
// baseline in production; goBad, when set, runs once the first bake has
// begun.
func (d *demo) rollout(ctx context.Context, version, baseline string, goBad func()) (*rollout.Rollout, error) {
	d.say("Starting a gated rollout of %s from staging (plan: 10%% -> bake -> 50%% -> bake -> swap -> watch; every second the gates compare errors, TTFT, latency and answer length with production using anytime-valid tests)", version)
	ro, err := d.c.StartRollout(ctx, "default", "staging", demoPlan)
	if err != nil {
		return nil, err
	}
	lastStep, seen, wentBad := "", 0, false
	deadline := time.Now().Add(150 * time.Second)
	for time.Now().Before(deadline) {
		if ro, err = d.c.Rollout(ctx, ro.ID); err != nil {
			return nil, err
		}
		for ; seen < len(ro.Verdicts); seen++ {
			v := ro.Verdicts[seen]
			c, b := d.sides(ctx, v, version, baseline)
			d.detail("%s", verdictText(v, c, b, v.Step == len(ro.Plan.Steps)-1))
			if d.o.Verbose {
				d.detail("  the statistics: %s", v.Reason)
			}
		}
		if step := fmt.Sprintf("%d", ro.Step); step != lastStep && ro.State.Active() && ro.Step < len(ro.Plan.Steps) {
			kind := ro.Plan.Steps[ro.Step].Kind()
			if ro.Swapped {
				d.say("Rollout step %d/%d: %s (%s is in production; the previous version keeps %g%% in staging as the baseline)", ro.Step+1, len(ro.Plan.Steps), kind, version, ro.Traffic)
			} else {
				d.say("Rollout step %d/%d: %s (staging has %g%% of traffic)", ro.Step+1, len(ro.Plan.Steps), kind, ro.Traffic)
			}
			lastStep = step
		}
		if goBad != nil && !wentBad && ro.Step == 1 && ro.Current != nil && ro.Current.Phase != nil {
			goBad()
			wentBad = true
		}
		if !ro.State.Active() {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if ro.State.Active() {
		return ro, fmt.Errorf("rollout %s still %s after %v", ro.ID, ro.State, 150*time.Second)
	}
	switch ro.State {
	case rollout.Succeeded:
		d.say("Rollout %s succeeded: %s is in production. %s", ro.ID, version, ro.Reason)
	case rollout.RolledBack:
		d.say("Rollout %s was rolled back automatically: %s has no traffic and production serves %s", ro.ID, version, baseline)
		if d.o.Verbose {
			d.detail("%s", ro.Reason)
		}
		d.showVersions("after the rollback every user is back on the previous version", 3*time.Second)
	default:
		d.say("Rollout %s ended %s: %s", ro.ID, ro.State, ro.Reason)
	}
	return ro, nil
}

// sides summarises the candidate's and the baseline's requests in a
// verdict's window, as the gateway's meter recorded them. Before the swap
// the candidate is in staging; in the watch after it, in production.
func (d *demo) sides(ctx context.Context, v rollout.VerdictRecord, version, baseline string) (side, side) {
	cand, base := "staging", modelslot.Production
	if v.StepKind == rollout.KindWatch {
		cand, base = base, cand
	}
	get := func(slot string) []modelslot.Sample {
		s, err := d.d.Gateway.Meter().Series(ctx, modelslot.MetricQuery{App: "default", Slot: slot, From: v.From, To: v.To})
		if err != nil {
			return nil
		}
		return s.Samples
	}
	return summarise(version, get(cand)), summarise(baseline, get(base))
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// traffic is the demo's live load: open-loop arrivals at a fixed rate,
// counting answers by slot and version.
type traffic struct {
	url     string
	rate    float64
	client  *http.Client
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	sent    atomic.Int64
	failed  atomic.Int64
	lastErr atomic.Value
	mu      sync.Mutex
	bySlot  map[string]int
	byVer   map[string]int
	once    sync.Once
}

func newTraffic(url string, rate float64) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	return &traffic{url: url, rate: rate, ctx: ctx, cancel: cancel, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}, Timeout: 30 * time.Second},
		bySlot: map[string]int{}, byVer: map[string]int{}}
}

func (t *traffic) start() {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(time.Duration(float64(time.Second) / t.rate))
		defer tick.Stop()
		sem := make(chan struct{}, 256)
		for i := 0; ; i++ {
			select {
			case <-t.ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				continue // the demo's own client is saturated; skip rather than pile up
			}
			t.wg.Add(1)
			go func() {
				defer func() { <-sem; t.wg.Done() }()
				t.one(i%2 == 0)
			}()
		}
	}()
}

func (t *traffic) one(stream bool) {
	body := `{"model":"default","max_tokens":12,"messages":[{"role":"user","content":"Tell me something."}]`
	if stream {
		body += `,"stream":true}`
	} else {
		body += `}`
	}
	req, _ := http.NewRequestWithContext(t.ctx, http.MethodPost, t.url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	t.sent.Add(1)
	resp, err := t.client.Do(req)
	if err != nil {
		if t.ctx.Err() == nil {
			t.failed.Add(1)
			t.lastErr.Store(err.Error())
		}
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if t.ctx.Err() != nil {
		return
	}
	if err != nil || resp.StatusCode != http.StatusOK || (stream && !bytes.Contains(b, []byte("[DONE]"))) {
		t.failed.Add(1)
		t.lastErr.Store(fmt.Sprintf("status %d %v %.200s", resp.StatusCode, err, b))
	}
	version, _, _ := strings.Cut(resp.Header.Get("X-Modelslot-Version"), "+")
	t.mu.Lock()
	t.bySlot[resp.Header.Get("X-Modelslot-Slot")]++
	if resp.Header.Get("X-Modelslot-Slot") == "production" {
		t.byVer[version]++
	}
	t.mu.Unlock()
}

func (t *traffic) reset() {
	t.mu.Lock()
	t.bySlot, t.byVer = map[string]int{}, map[string]int{}
	t.mu.Unlock()
}

// counts returns copies: the load goroutines keep counting.
func (t *traffic) counts() (map[string]int, map[string]int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.bySlot), maps.Clone(t.byVer)
}

func (t *traffic) stop() {
	t.once.Do(func() {
		t.cancel()
		t.wg.Wait()
	})
}
