package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/analysis"
	"github.com/modelslot/modelslot/client"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/events"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/rollout"
	"github.com/modelslot/modelslot/sim"
)

// The end-to-end tests of rollouts: a real daemon on loopback, real HTTP
// through the gateway, simulated model servers, and load generators that
// record which version answered every request.

// rolloutInterval replaces every plan's interval in these tests.
const rolloutInterval = 200 * time.Millisecond

// startRolloutDaemon starts a daemon whose controller looks every
// rolloutInterval, with production serving v1 and staging serving v2, two
// simulated versions that answer alike until a test makes one go bad.
func startRolloutDaemon(t *testing.T, cfg *config.Config) (e *env, v1, v2 *sim.Server) {
	t.Helper()
	e = startRolloutDaemonOnly(t, cfg)
	v1, u1 := startSim(t, simConfig("v1"))
	v2, u2 := startSim(t, simConfig("v2"))
	e.deploy("production", u1, "v1")
	e.deploy("staging", u2, "v2")
	return e, v1, v2
}

// startRolloutDaemonOnly starts a daemon on loopback with the tests'
// rollout interval and nothing deployed.
func startRolloutDaemonOnly(t *testing.T, cfg *config.Config) *env {
	t.Helper()
	if cfg == nil {
		cfg = config.Default()
	}
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	cfg.RolloutInterval = modelslot.Duration(rolloutInterval)
	return startDaemonWith(t, cfg)
}

func simConfig(model string) sim.Config {
	return sim.Config{Model: model, Tokens: 4, TTFT: 10 * time.Millisecond, Jitter: 0.8}
}

// makeBad turns a simulated version bad while it serves: 30% errors and a
// slow first token.
func makeBad(t *testing.T, s *sim.Server) {
	t.Helper()
	cfg := s.Config()
	cfg.ErrorRate = 0.3
	cfg.TTFT = 200 * time.Millisecond
	if err := s.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
}

// served is one request of a load generator.
type served struct {
	worker  string
	start   time.Time
	status  int
	slot    string
	version string
}

// load sends chat requests through the gateway from several workers until
// stopped, and records who answered each one.
type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	reqs   []served
	errs   int
}

// worker shapes the requests of one load goroutine.
type worker struct {
	name string
	mod  func(r *http.Request, n int)
}

func plainWorker(name string) worker { return worker{name: name} }

// cookieWorker sends every request with a routing cookie.
func cookieWorker(name string, c *http.Cookie) worker {
	return worker{name: name, mod: func(r *http.Request, _ int) { r.AddCookie(c) }}
}

// stickyWorker sends requests as 50 users named by the app's sticky key.
func stickyWorker(name, header string) worker {
	return worker{name: name, mod: func(r *http.Request, n int) { r.Header.Set(header, fmt.Sprintf("%s-user-%d", name, n%50)) }}
}

func startLoad(t *testing.T, gatewayURL string, workers ...worker) *load {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	for _, w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gatewayURL+"/v1/chat/completions", strings.NewReader(chatBody))
				req.Header.Set("Content-Type", "application/json")
				if w.mod != nil {
					w.mod(req, n)
				}
				start := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					l.mu.Lock()
					l.errs++
					l.mu.Unlock()
					if ctx.Err() == nil {
						time.Sleep(10 * time.Millisecond) // the daemon is down (kill tests)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				l.mu.Lock()
				l.reqs = append(l.reqs, served{worker: w.name, start: start, status: resp.StatusCode,
					slot: resp.Header.Get(gateway.HeaderSlot), version: resp.Header.Get(gateway.HeaderVersion)})
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.stop)
	return l
}

func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// since returns the requests that started after t.
func (l *load) since(t time.Time) []served {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []served
	for _, r := range l.reqs {
		if r.start.After(t) {
			out = append(out, r)
		}
	}
	return out
}

// waitSince waits until every worker has sent n requests that started
// after t.
func (l *load) waitSince(t *testing.T, after time.Time, n int, workers ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d requests of each worker after %s", n, after.Format(time.StampMilli)), 30*time.Second, func() bool {
		count := map[string]int{}
		for _, r := range l.since(after) {
			count[r.worker]++
		}
		for _, w := range workers {
			if count[w] < n {
				return false
			}
		}
		return true
	})
}

func isVersion(header, version string) bool { return strings.HasPrefix(header, version+"+") }

// waitRollout polls the rollout through the API until cond holds; it fails
// at once if the rollout ends without cond holding.
func waitRollout(t *testing.T, c *client.Client, id, what string, timeout time.Duration, cond func(*rollout.Rollout) bool) *rollout.Rollout {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *rollout.Rollout
	for {
		r, err := c.Rollout(context.Background(), id)
		if err == nil {
			last = r
			if cond(r) {
				return r
			}
			if !r.State.Active() {
				t.Fatalf("rollout ended %s before %s:\n%s", r.State, what, r.Describe())
			}
		}
		if time.Now().After(deadline) {
			if last != nil {
				t.Fatalf("timed out waiting for %s:\n%s", what, last.Describe())
			}
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inState(st rollout.State) func(*rollout.Rollout) bool {
	return func(r *rollout.Rollout) bool { return r.State == st }
}

// judging holds once the rollout is at step i (a bake or a watch) and its
// phase has at least n candidate requests.
func judging(i int, n int64) func(*rollout.Rollout) bool {
	return func(r *rollout.Rollout) bool {
		return r.Step == i && r.Current != nil && r.Current.Index == i && r.Current.Phase != nil && r.Current.Phase.CandidateRequests >= n
	}
}

func readPlan(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rolloutSwaps returns the app's swap records made by rollout id.
func rolloutSwaps(t *testing.T, c *client.Client, id string) []*modelslot.SwapRecord {
	t.Helper()
	all, err := c.Swaps(context.Background(), "default", 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []*modelslot.SwapRecord
	for _, s := range all {
		if s.Actor == "rollout "+id {
			out = append(out, s)
		}
	}
	return out
}

// checkEvidence checks that a metrics verdict carries the judge's evidence:
// sample counts, effect and its interval, e-value and threshold.
func checkEvidence(t *testing.T, v rollout.VerdictRecord) {
	t.Helper()
	if v.CandidateRequests == 0 || v.BaselineRequests == 0 || v.From.IsZero() || !v.To.After(v.From) {
		t.Errorf("verdict at step %d has no window or request counts: %+v", v.Step+1, v)
	}
	if len(v.Gates) == 0 {
		t.Fatalf("verdict at step %d has no gate results", v.Step+1)
	}
	var res analysis.Result
	if err := json.Unmarshal(v.Gates[0].Evidence, &res); err != nil {
		t.Fatalf("verdict at step %d: evidence is not an analysis result: %v: %s", v.Step+1, err, v.Gates[0].Evidence)
	}
	if len(res.Checks) == 0 {
		t.Fatalf("verdict at step %d: evidence has no checks: %s", v.Step+1, v.Gates[0].Evidence)
	}
	for _, c := range res.Checks {
		if c.CandidateN == 0 || c.Threshold == 0 || c.EValue == 0 || c.Reason == "" || c.Lower > c.Upper {
			t.Errorf("verdict at step %d: check %s lacks evidence: %+v", v.Step+1, c.Metric, c)
		}
	}
}

// TestRolloutHappyPathUnderLoad runs examples/plan-smoke-test.yaml through
// the API while clients send requests through the gateway: every step
// passes on real measurements and the candidate ends in production.
func TestRolloutHappyPathUnderLoad(t *testing.T) {
	e, _, _ := startRolloutDaemon(t, nil)
	ctx := context.Background()
	l := startLoad(t, e.d.GatewayURL(), plainWorker("a"), plainWorker("b"), plainWorker("c"), plainWorker("d"))
	plan := readPlan(t, "plan-smoke-test.yaml")
	start := time.Now()
	ro, err := e.c.StartRollout(ctx, "default", "staging", plan)
	if err != nil {
		t.Fatal(err)
	}
	if ro.State != rollout.Running || ro.Slot != "staging" || ro.Step != 0 {
		t.Fatalf("started rollout: state %s slot %s step %d", ro.State, ro.Slot, ro.Step)
	}
	done := waitRollout(t, e.c, ro.ID, "the rollout to succeed", 60*time.Second, inState(rollout.Succeeded))
	t.Logf("rollout succeeded in %v: %s", time.Since(start).Round(time.Millisecond), done.Reason)
	l.stop()

	if !done.Swapped || done.Step != len(done.Plan.Steps) || !strings.Contains(done.Reason, "the candidate is in production") {
		t.Fatalf("finished rollout:\n%s", done.Describe())
	}
	// Three judged phases (two bakes and the watch), each passed on data.
	var passed []rollout.VerdictRecord
	for _, v := range done.Verdicts {
		if v.Verdict != rollout.Pass || v.Decision != "continue" {
			t.Errorf("verdict at step %d: %s -> %s: %s", v.Step+1, v.Verdict, v.Decision, v.Reason)
		}
		passed = append(passed, v)
	}
	if got, want := len(passed), 3; got != want {
		t.Fatalf("got %d passing verdicts, want %d:\n%s", got, want, done.Describe())
	}
	for i, want := range []struct {
		step    int
		kind    string
		percent float64
	}{{1, "bake", 10}, {3, "bake", 50}, {5, "watch", 20}} {
		v := passed[i]
		if v.Step != want.step || v.StepKind != want.kind || v.Percent != want.percent {
			t.Errorf("verdict %d: step %d %s at %g%%, want step %d %s at %g%%", i, v.Step, v.StepKind, v.Percent, want.step, want.kind, want.percent)
		}
		if v.CandidateRequests < 40 {
			t.Errorf("verdict %d passed on %d candidate requests, fewer than minSamples 40", i, v.CandidateRequests)
		}
		checkEvidence(t, v)
	}

	st, err := e.c.Status(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Routing.Percent("staging"); p != 0 {
		t.Errorf("after success staging keeps %g%% of the traffic, want 0", p)
	}
	for _, s := range st.Slots {
		want := map[string]string{"production": "v2", "staging": "v1"}[s.Slot.Name]
		if s.Slot.Deployment == nil || s.Slot.Deployment.Version != want {
			t.Errorf("slot %s holds %+v, want %s", s.Slot.Name, s.Slot.Deployment, want)
		}
	}
	if sw := rolloutSwaps(t, e.c, ro.ID); len(sw) != 1 || sw[0].Status != modelslot.SwapCompleted {
		t.Errorf("swaps of the rollout: %+v, want one completed", sw)
	}
	for i := 0; i < 20; i++ {
		if _, v, _ := e.chat(nil); !isVersion(v, "v2") {
			t.Fatalf("after the rollout a request reached %s, want v2 in production", v)
		}
	}
	var failed int
	for _, r := range l.since(start) {
		if r.status != http.StatusOK {
			failed++
		}
	}
	if failed != 0 {
		t.Errorf("%d requests failed during a rollout of two healthy versions", failed)
	}
}

// badPlan bakes long enough for a test to turn the candidate bad mid-bake.
const badPlan = `
name: e2e-bad-candidate
warmup: {duration: 0s, requests: 0}   # this test is not about warm-ups
onInconclusive: fail
analysis: {alpha: 0.05, minSamples: 40, maxErrorRate: 0.1, maxSlowerProb: 0.9}
steps:
  - traffic: 30
  - bake: {duration: 30s, max: 60s}
  - swap
`

// routingCookie asks the gateway to pin a user to slot and returns the
// cookie it sets (stamped with the current routing generation).
func routingCookie(t *testing.T, e *env, slot string) *http.Cookie {
	t.Helper()
	_, _, resp := e.chat(func(r *http.Request) { r.URL.RawQuery = gateway.RoutingParam + "=" + slot })
	for _, c := range resp.Cookies() {
		if c.Name == gateway.RoutingParam {
			return c
		}
	}
	t.Fatalf("the routing override set no cookie")
	return nil
}

// loadMix is the concurrent load of the rollback tests: plain requests,
// users pinned to the candidate by a routing cookie, and sticky-key users.
func loadMix(t *testing.T, e *env) *load {
	t.Helper()
	if err := e.d.Engine.ConfigureApp(context.Background(), "default", "header:X-Session-Id", 0); err != nil {
		t.Fatal(err)
	}
	pinned := routingCookie(t, e, "staging")
	return startLoad(t, e.d.GatewayURL(),
		plainWorker("plain1"), plainWorker("plain2"), plainWorker("plain3"),
		cookieWorker("pinned1", pinned), cookieWorker("pinned2", pinned),
		stickyWorker("sticky1", "X-Session-Id"), stickyWorker("sticky2", "X-Session-Id"))
}

var mixWorkers = []string{"plain1", "plain2", "plain3", "pinned1", "pinned2", "sticky1", "sticky2"}

// reached counts, by worker, the requests in rs that version answered.
func reached(rs []served, version string) (n int, by map[string]int) {
	by = map[string]int{}
	for _, r := range rs {
		if isVersion(r.version, version) {
			n++
			by[r.worker]++
		}
	}
	return n, by
}

// TestRolloutRollsBackBadCandidate turns the candidate bad in the middle of
// a bake: the gates fail it, the rollout rolls back on its own, and from
// the moment the rollback is visible no request reaches the bad version,
// not even from users pinned to it by a cookie or by their sticky key.
func TestRolloutRollsBackBadCandidate(t *testing.T) {
	e, _, v2 := startRolloutDaemon(t, nil)
	ctx := context.Background()
	l := loadMix(t, e)
	ro, err := e.c.StartRollout(ctx, "default", "staging", badPlan)
	if err != nil {
		t.Fatal(err)
	}
	waitRollout(t, e.c, ro.ID, "the bake to have data", 30*time.Second, judging(1, 40))
	before, err := e.c.Status(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if p := before.Routing.Percent("staging"); p != 30 {
		t.Fatalf("during the bake staging has %g%%, want 30", p)
	}
	if n, by := reached(l.since(time.Time{}), "v2"); n == 0 || by["pinned1"] == 0 || by["sticky1"]+by["sticky2"] == 0 {
		t.Fatalf("before the failure the candidate got %d requests (%v): the load does not exercise it", n, by)
	}
	makeBad(t, v2)
	done := waitRollout(t, e.c, ro.ID, "the rollout to roll back", 30*time.Second, inState(rollout.RolledBack))
	visible := time.Now()
	l.waitSince(t, visible, 20, mixWorkers...)
	l.stop()

	if n, by := reached(l.since(visible), "v2"); n != 0 {
		t.Errorf("%d requests that started after the rollback was visible reached the bad version: %v", n, by)
	}
	if !strings.Contains(done.Reason, "failed its gates") || done.Rollback == nil || !done.Rollback.TrafficReset || done.Swapped {
		t.Errorf("rolled back rollout:\n%s", done.Describe())
	}
	last := done.Verdicts[len(done.Verdicts)-1]
	if last.Verdict != rollout.Fail || last.Decision != "rollback" || last.Step != 1 {
		t.Fatalf("last verdict: %s -> %s at step %d: %s", last.Verdict, last.Decision, last.Step+1, last.Reason)
	}
	checkEvidence(t, last)
	var res analysis.Result
	json.Unmarshal(last.Gates[0].Evidence, &res)
	failedChecks := 0
	for _, c := range res.Checks {
		if c.Verdict == analysis.Fail {
			failedChecks++
			if c.EValue < c.Threshold && c.Metric == "errors" {
				t.Errorf("errors check failed with e-value %g", c.EValue)
			}
		}
	}
	if failedChecks == 0 {
		t.Errorf("the failing verdict has no failing check: %s", last.Reason)
	}
	after, err := e.c.Status(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if p := after.Routing.Percent("staging"); p != 0 {
		t.Errorf("after the rollback staging has %g%%, want 0", p)
	}
	if after.Routing.Generation <= before.Routing.Generation {
		t.Errorf("routing generation %d -> %d: the rollback did not reset the pins", before.Routing.Generation, after.Routing.Generation)
	}
	if sw := rolloutSwaps(t, e.c, ro.ID); len(sw) != 0 {
		t.Errorf("a rollback before the swap swapped: %+v", sw)
	}
}

// TestRolloutAbortStopsCandidateTrafficAtOnce aborts rollouts under
// concurrent load, during a bake and during the watch after the swap: once
// the Abort call has returned, no request that starts reaches the
// candidate, whether it comes by the split, a routing cookie or a sticky
// key, and whether the candidate is in its slot or in production.
func TestRolloutAbortStopsCandidateTrafficAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name, plan string
		step       int
		swaps      int
	}{
		{"during the bake", `
name: e2e-abort-bake
warmup: {duration: 0s, requests: 0}   # this test is not about warm-ups
analysis: {gates: []}
steps:
  - traffic: 50
  - bake: {duration: 10m}
  - swap
`, 1, 0},
		{"during the watch", `
name: e2e-abort-watch
warmup: {duration: 0s, requests: 0}   # this test is not about warm-ups
analysis: {gates: []}
steps:
  - traffic: 50
  - bake: {duration: 300ms}
  - swap: {baselineTraffic: 20}
  - watch: {duration: 10m}
`, 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := startRolloutDaemon(t, nil)
			ctx := context.Background()
			l := loadMix(t, e)
			ro, err := e.c.StartRollout(ctx, "default", "staging", tc.plan)
			if err != nil {
				t.Fatal(err)
			}
			waitRollout(t, e.c, ro.ID, "the step to abort", 30*time.Second, func(r *rollout.Rollout) bool { return r.Step == tc.step })
			l.waitSince(t, time.Now(), 10, mixWorkers...)
			gen := statusOf(t, e).Routing.Generation

			ab, err := e.c.RolloutCommand(ctx, "default", "abort", "e2e: the candidate is bad")
			returned := time.Now()
			if err != nil {
				t.Fatal(err)
			}
			done := waitRollout(t, e.c, ro.ID, "the rollout to end aborted", 30*time.Second, inState(rollout.Aborted))
			l.waitSince(t, returned, 20, mixWorkers...)
			l.stop()

			if !strings.Contains(done.Reason, "aborted by api: e2e: the candidate is bad") {
				t.Errorf("reason %q does not name the operator and their reason", done.Reason)
			}
			if len(done.Overrides) != 1 || done.Overrides[0].Action != "abort" || done.Overrides[0].Step != tc.step {
				t.Errorf("overrides: %+v, want one abort at step %d", done.Overrides, tc.step+1)
			}
			st := statusOf(t, e)
			if p := st.Routing.Percent("staging"); p != 0 || st.Routing.Generation <= gen {
				t.Errorf("after the abort: staging %g%%, generation %d (was %d)", p, st.Routing.Generation, gen)
			}
			if sw := rolloutSwaps(t, e.c, ro.ID); len(sw) != tc.swaps {
				t.Errorf("swaps of the rollout: %d, want %d", len(sw), tc.swaps)
			}
			if _, v, _ := e.chat(nil); !isVersion(v, "v1") {
				t.Errorf("after the abort production serves %s, want v1", v)
			}
			n, by := reached(l.since(returned), "v2")
			t.Logf("Abort answered with state %s; of the %d requests started after it, %d reached the candidate", ab.State, len(l.since(returned)), n)
			if n != 0 {
				t.Errorf("%d requests that started after Abort returned (its answer says %q) reached the candidate: %v", n, ab.State, by)
			}
			if ab.State != rollout.Aborted {
				t.Errorf("Abort answered with state %s, want aborted (the rollback done)", ab.State)
			}
		})
	}
}

func statusOf(t *testing.T, e *env) *modelslot.AppStatus {
	t.Helper()
	st, err := e.c.Status(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRolloutWatchFailureSwapsBack turns the new production version bad
// during the watch after the swap: the rollout swaps back once, production
// serves the previous version again and staging gets no traffic.
func TestRolloutWatchFailureSwapsBack(t *testing.T) {
	e, _, v2 := startRolloutDaemon(t, nil)
	ctx := context.Background()
	l := loadMix(t, e)
	ro, err := e.c.StartRollout(ctx, "default", "staging", `
name: e2e-watch-fails
warmup: {duration: 0s, requests: 0}   # this test is not about warm-ups
onInconclusive: fail
analysis: {alpha: 0.05, minSamples: 40, maxErrorRate: 0.1, maxSlowerProb: 0.9}
steps:
  - traffic: 20
  - bake: {duration: 500ms, max: 30s, gates: []}
  - swap: {baselineTraffic: 20}
  - watch: {duration: 30s, max: 60s}
`)
	if err != nil {
		t.Fatal(err)
	}
	waitRollout(t, e.c, ro.ID, "the watch to have data", 30*time.Second, judging(3, 40))
	if _, v, _ := e.chat(func(r *http.Request) { r.URL.RawQuery = gateway.RoutingParam + "=self" }); !isVersion(v, "v2") {
		t.Fatalf("during the watch production serves %s, want v2", v)
	}
	makeBad(t, v2)
	done := waitRollout(t, e.c, ro.ID, "the rollout to roll back", 30*time.Second, inState(rollout.RolledBack))
	visible := time.Now()
	l.waitSince(t, visible, 20, mixWorkers...)
	l.stop()

	if done.Swapped || done.Rollback == nil || done.Rollback.SwapBack == nil || !done.Rollback.SwapBack.Done {
		t.Fatalf("rollback after the swap:\n%s", done.Describe())
	}
	if last := done.Verdicts[len(done.Verdicts)-1]; last.Verdict != rollout.Fail || last.StepKind != "watch" {
		t.Errorf("last verdict: %s at %s", last.Verdict, last.StepKind)
	}
	sw := rolloutSwaps(t, e.c, ro.ID)
	if len(sw) != 2 || sw[0].Status != modelslot.SwapCompleted || sw[1].Status != modelslot.SwapCompleted {
		t.Fatalf("swaps of the rollout: %+v, want the swap and the swap back", sw)
	}
	st := statusOf(t, e)
	for _, s := range st.Slots {
		want := map[string]string{"production": "v1", "staging": "v2"}[s.Slot.Name]
		if s.Slot.Deployment.Version != want {
			t.Errorf("after the swap back slot %s holds %s, want %s", s.Slot.Name, s.Slot.Deployment.Version, want)
		}
	}
	if p := st.Routing.Percent("staging"); p != 0 {
		t.Errorf("after the swap back staging has %g%%, want 0", p)
	}
	if n, by := reached(l.since(visible), "v2"); n != 0 {
		t.Errorf("%d requests that started after the rollback was visible reached the bad version: %v", n, by)
	}
	for i := 0; i < 10; i++ {
		if _, v, _ := e.chat(func(r *http.Request) { r.URL.RawQuery = gateway.RoutingParam + "=self" }); !isVersion(v, "v1") {
			t.Fatalf("after the swap back production serves %s, want v1", v)
		}
	}
}

// holdPlan parks a rollout in a long bake without analysis, so that a test
// acts on it while it runs.
const holdPlan = `
name: e2e-hold
warmup: {duration: 0s, requests: 0}   # this test is not about warm-ups
analysis: {gates: []}
steps:
  - traffic: 10
  - bake: {duration: 10m}
  - swap
`

// apiStatus sends a raw admin request and returns the status and error code.
func apiStatus(t *testing.T, e *env, method, path, body string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(method, e.d.AdminURL()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.d.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&eb)
	return resp.StatusCode, eb.Error.Code, eb.Error.Message
}

// TestRolloutOnePerAppAndGuards checks that a running rollout owns its
// app: a second rollout, manual traffic changes and manual swaps are
// refused with a conflict that names it.
func TestRolloutOnePerAppAndGuards(t *testing.T) {
	e, _, _ := startRolloutDaemon(t, nil)
	ctx := context.Background()
	_, canary := startSim(t, simConfig("v3"))
	e.deploy("canary", canary, "v3")
	ro, err := e.c.StartRollout(ctx, "default", "staging", holdPlan)
	if err != nil {
		t.Fatal(err)
	}
	waitRollout(t, e.c, ro.ID, "the bake", 30*time.Second, func(r *rollout.Rollout) bool { return r.Step == 1 })

	planJSON, _ := json.Marshal(map[string]string{"slot": "staging", "plan": holdPlan})
	canaryJSON, _ := json.Marshal(map[string]string{"slot": "canary", "plan": holdPlan})
	cases := []struct {
		name, method, path, body string
	}{
		{"second rollout", "POST", "/api/v1/apps/default/rollouts", string(planJSON)},
		{"rollout of another slot", "POST", "/api/v1/apps/default/rollouts", string(canaryJSON)},
		{"traffic set", "PUT", "/api/v1/apps/default/traffic", `{"rules":[{"slot":"staging","percent":50}]}`},
		{"traffic clear", "DELETE", "/api/v1/apps/default/traffic", ""},
		{"swap", "POST", "/api/v1/apps/default/swap", `{"source":"staging"}`},
		{"swap of another slot", "POST", "/api/v1/apps/default/swap", `{"source":"canary"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, code, msg := apiStatus(t, e, tc.method, tc.path, tc.body)
			if status != http.StatusConflict || code != modelslot.ECONFLICT || !strings.Contains(msg, ro.ID) {
				t.Errorf("got %d %s %q, want 409 conflict naming rollout %s", status, code, msg, ro.ID)
			}
		})
	}
	// The Go client gets the same error, with its code.
	if _, err := e.c.StartRollout(ctx, "default", "staging", holdPlan); modelslot.ErrorCode(err) != modelslot.ECONFLICT || !strings.Contains(err.Error(), ro.ID) {
		t.Errorf("client StartRollout: got %v, want a conflict naming %s", err, ro.ID)
	}
	if _, err := e.c.SetTraffic(ctx, "default", []modelslot.TrafficRule{rule("staging", 0)}, modelslot.TrafficOptions{}); modelslot.ErrorCode(err) != modelslot.ECONFLICT || !strings.Contains(err.Error(), ro.ID) {
		t.Errorf("client SetTraffic: got %v, want a conflict naming %s", err, ro.ID)
	}
	st := statusOf(t, e)
	if p := st.Routing.Percent("staging"); p != 10 || st.Routing.Percent("canary") != 0 {
		t.Errorf("refused commands changed the traffic: %+v", st.Routing)
	}
	if sw, _ := e.c.Swaps(ctx, "default", 10); len(sw) != 0 {
		t.Errorf("a refused swap left records: %+v", sw)
	}
	if st.Rollout == nil || st.Rollout.ID != ro.ID {
		t.Errorf("app status shows rollout %+v, want %s", st.Rollout, ro.ID)
	}
	if active, err := e.c.ActiveRollout(ctx, "default"); err != nil || active.ID != ro.ID {
		t.Errorf("active rollout: %v %v", active, err)
	}

	// Once it has ended, the app is free again.
	if _, err := e.c.RolloutCommand(ctx, "default", "abort", ""); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, e.c, ro.ID, "the abort", 30*time.Second, inState(rollout.Aborted))
	if _, err := e.c.ActiveRollout(ctx, "default"); modelslot.ErrorCode(err) != modelslot.ENOTFOUND {
		t.Errorf("active rollout after the abort: got %v, want not found", err)
	}
	if _, err := e.c.SetTraffic(ctx, "default", []modelslot.TrafficRule{rule("canary", 5)}, modelslot.TrafficOptions{}); err != nil {
		t.Errorf("traffic set after the rollout ended: %v", err)
	}
	if _, err := e.c.SetTraffic(ctx, "default", nil, modelslot.TrafficOptions{}); err != nil {
		t.Fatal(err)
	}
	next, err := e.c.StartRollout(ctx, "default", "canary", holdPlan)
	if err != nil || next.ID == ro.ID {
		t.Fatalf("a new rollout after the first ended: %v", err)
	}
	if _, err := e.c.RolloutCommand(ctx, "default", "abort", ""); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, e.c, next.ID, "the second abort", 30*time.Second, inState(rollout.Aborted))
}

// TestRolloutOperatorCommands pauses, resumes and promotes one rollout and
// aborts another through the API; the history keeps both with their
// outcomes, reasons and overrides.
func TestRolloutOperatorCommands(t *testing.T) {
	e, _, _ := startRolloutDaemon(t, nil)
	ctx := context.Background()
	e.c.Actor = "alice"
	ro, err := e.c.StartRollout(ctx, "default", "staging", `
name: e2e-operator
warmup: {duration: 0s, requests: 0}   # this test is not about warm-ups
analysis: {gates: []}
steps:
  - traffic: 10
  - bake: {duration: 10m}
  - pause
  - swap
  - watch: {duration: 10m}
`)
	if err != nil {
		t.Fatal(err)
	}
	if ro.Actor != "alice" {
		t.Errorf("rollout actor %q, want alice", ro.Actor)
	}
	waitRollout(t, e.c, ro.ID, "the bake", 30*time.Second, func(r *rollout.Rollout) bool { return r.Step == 1 })

	p, err := e.c.RolloutCommand(ctx, "default", "pause", "")
	if err != nil || p.State != rollout.Paused || !strings.Contains(p.Reason, "alice") {
		t.Fatalf("pause: %+v %v", p, err)
	}
	if _, err := e.c.RolloutCommand(ctx, "default", "pause", ""); modelslot.ErrorCode(err) != modelslot.ECONFLICT {
		t.Errorf("pause of a paused rollout: got %v, want conflict", err)
	}
	if r, _ := e.c.Rollout(ctx, ro.ID); r.State != rollout.Paused || r.Step != 1 {
		t.Errorf("paused rollout moved on: %s at step %d", r.State, r.Step+1)
	}
	r, err := e.c.RolloutCommand(ctx, "default", "resume", "")
	if err != nil || r.State != rollout.Running || r.Step != 1 {
		t.Fatalf("resume: %+v %v", r, err)
	}
	if _, err := e.c.RolloutCommand(ctx, "default", "resume", ""); modelslot.ErrorCode(err) != modelslot.ECONFLICT {
		t.Errorf("resume of a running rollout: got %v, want conflict", err)
	}
	if _, err := e.c.RolloutCommand(ctx, "default", "promote", "looks good"); err != nil {
		t.Fatal(err)
	}
	done := waitRollout(t, e.c, ro.ID, "the promoted rollout to succeed", 30*time.Second, inState(rollout.Succeeded))
	if !done.Promoted || !done.Swapped || !strings.Contains(done.Reason, "manual override") || !strings.Contains(done.Reason, "alice") {
		t.Errorf("promoted rollout:\n%s", done.Describe())
	}
	var actions []string
	for _, o := range done.Overrides {
		actions = append(actions, o.Action+" by "+o.Actor)
	}
	if got, want := strings.Join(actions, ", "), "pause by alice, resume by alice, promote by alice"; got != want {
		t.Errorf("overrides: got %q, want %q", got, want)
	}
	// The bake, the pause step and the watch are skipped by the promote,
	// each with a verdict that says so.
	if len(done.Verdicts) != 2 {
		t.Fatalf("verdicts of the promoted rollout:\n%s", done.Describe())
	}
	for _, v := range done.Verdicts {
		if v.Verdict != rollout.Skipped || v.Decision != "promoted" || v.Actor != "alice" {
			t.Errorf("verdict at step %d: %s -> %s by %s, want skipped -> promoted by alice", v.Step+1, v.Verdict, v.Decision, v.Actor)
		}
	}
	if _, v, _ := e.chat(nil); !isVersion(v, "v2") {
		t.Errorf("after the promoted rollout production serves %s", v)
	}

	// A second rollout (staging now holds v1) is aborted.
	ro2, err := e.c.StartRollout(ctx, "default", "staging", holdPlan)
	if err != nil {
		t.Fatal(err)
	}
	waitRollout(t, e.c, ro2.ID, "the bake", 30*time.Second, func(r *rollout.Rollout) bool { return r.Step == 1 })
	if _, err := e.c.RolloutCommand(ctx, "default", "abort", "wrong build"); err != nil {
		t.Fatal(err)
	}
	waitRollout(t, e.c, ro2.ID, "the abort", 30*time.Second, inState(rollout.Aborted))
	for _, op := range []string{"pause", "resume", "promote", "abort"} {
		if _, err := e.c.RolloutCommand(ctx, "default", op, ""); modelslot.ErrorCode(err) != modelslot.ENOTFOUND {
			t.Errorf("%s without an active rollout: got %v, want not found", op, err)
		}
	}

	hist, err := e.c.Rollouts(ctx, "default", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].ID != ro2.ID || hist[1].ID != ro.ID {
		t.Fatalf("history: %d rollouts, want %s then %s", len(hist), ro2.ID, ro.ID)
	}
	if h := hist[0]; h.State != rollout.Aborted || h.Reason != "aborted by alice: wrong build" || h.FinishedAt.IsZero() {
		t.Errorf("history[0]: %s %q", h.State, h.Reason)
	}
	if h := hist[1]; h.State != rollout.Succeeded || !strings.Contains(h.Reason, "manual override") || len(h.Overrides) != 3 {
		t.Errorf("history[1]: %s %q with %d overrides", h.State, h.Reason, len(h.Overrides))
	}
}

// webhookReceiver records the events POSTed to it, checking signatures.
type webhookReceiver struct {
	mu     sync.Mutex
	events []*modelslot.Event
	// senders are the events' ReplicaHeader values, in the same order.
	senders []string
	bad     []string
}

func (wr *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var e modelslot.Event
	wr.mu.Lock()
	defer wr.mu.Unlock()
	switch {
	case r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json":
		wr.bad = append(wr.bad, r.Method+" "+r.Header.Get("Content-Type"))
	case r.Header.Get(events.SignatureHeader) != events.Sign("e2e-secret", body):
		wr.bad = append(wr.bad, "bad signature on "+string(body))
	case json.Unmarshal(body, &e) != nil || e.Type != r.Header.Get("X-Modelslot-Event"):
		wr.bad = append(wr.bad, "bad body "+string(body))
	default:
		wr.events = append(wr.events, &e)
		wr.senders = append(wr.senders, r.Header.Get(events.ReplicaHeader))
	}
}

func (wr *webhookReceiver) types(rolloutID string) []string {
	wr.mu.Lock()
	defer wr.mu.Unlock()
	var out []string
	for _, e := range wr.events {
		if e.Rollout == rolloutID {
			out = append(out, e.Type)
		}
	}
	return out
}

// TestRolloutEvents checks the event log of a rollout: the list has every
// transition and verdict, the SSE stream delivers them live, and a webhook
// from the config file receives them as signed JSON POSTs.
func TestRolloutEvents(t *testing.T) {
	wr := &webhookReceiver{}
	hook := httptest.NewServer(wr)
	t.Cleanup(hook.Close)
	file := filepath.Join(t.TempDir(), "modelslot.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
webhooks:
  - url: %s/hooks/modelslot
    types: ["rollout."]
    secret: e2e-secret
`, hook.URL)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	e, _, _ := startRolloutDaemon(t, cfg)
	ctx := context.Background()

	// Follow the app's events from the last one stored: its replay shows
	// that the stream is open before the rollout starts.
	past, err := e.c.Events(ctx, "default", 0)
	if err != nil || len(past) == 0 {
		t.Fatalf("events before the rollout: %d, %v", len(past), err)
	}
	lastID := past[len(past)-1].ID
	var (
		mu   sync.Mutex
		live []*modelslot.Event
	)
	fctx, stopFollow := context.WithCancel(ctx)
	followDone := make(chan error, 1)
	go func() {
		followDone <- e.c.FollowEvents(fctx, "default", "", lastID-1, func(ev *modelslot.Event) {
			mu.Lock()
			live = append(live, ev)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() { stopFollow(); <-followDone })
	liveTypes := func(id string) (types []string, replayed bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range live {
			if ev.ID == lastID {
				replayed = true
			}
			if ev.Rollout == id && id != "" {
				types = append(types, ev.Type)
			}
		}
		return types, replayed
	}
	waitFor(t, "the event stream to open", 10*time.Second, func() bool { _, ok := liveTypes(""); return ok })

	ro, err := e.c.StartRollout(ctx, "default", "staging", `
name: e2e-events
warmup: {duration: 0s, requests: 0}   # this test is not about warm-ups
analysis: {gates: []}
steps:
  - traffic: 10
  - bake: {duration: 300ms}
  - swap
  - watch: {duration: 300ms}
`)
	if err != nil {
		t.Fatal(err)
	}
	done := waitRollout(t, e.c, ro.ID, "the rollout to succeed", 30*time.Second, inState(rollout.Succeeded))

	// The list: every step started and done, every verdict, the swap and
	// the end, in order.
	var list struct {
		Events []*modelslot.Event `json:"events"`
	}
	if err := e.c.Do(ctx, http.MethodGet, "/api/v1/apps/default/events?rollout="+ro.ID, nil, &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	verdicts := 0
	for _, ev := range list.Events {
		if ev.Rollout != ro.ID || ev.App != "default" || ev.Message == "" || ev.Actor == "" {
			t.Errorf("event %+v", ev)
		}
		typ := ev.Type
		switch typ {
		case "rollout.step":
			var d struct {
				Step   int    `json:"step"`
				Status string `json:"status"`
			}
			json.Unmarshal(ev.Data, &d)
			typ += fmt.Sprintf(" %d %s", d.Step, d.Status)
		case "rollout.verdict":
			var v rollout.VerdictRecord
			if err := json.Unmarshal(ev.Data, &v); err != nil || v.Verdict != rollout.Pass {
				t.Errorf("verdict event data: %s", ev.Data)
			}
			verdicts++
		}
		got = append(got, typ)
	}
	want := []string{"rollout.started",
		"rollout.step 0 started", "rollout.step 0 done",
		"rollout.step 1 started", "rollout.verdict", "rollout.step 1 done",
		"rollout.step 2 started", "rollout.swap", "rollout.step 2 done",
		"rollout.step 3 started", "rollout.verdict", "rollout.step 3 done",
		"rollout.completed"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events of the rollout:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if verdicts != len(done.Verdicts) {
		t.Errorf("%d verdict events for %d verdicts", verdicts, len(done.Verdicts))
	}

	// The stream delivered the same transitions as they happened.
	waitFor(t, "the stream to deliver the completion", 10*time.Second, func() bool {
		types, _ := liveTypes(ro.ID)
		return len(types) > 0 && types[len(types)-1] == "rollout.completed"
	})
	if types, _ := liveTypes(ro.ID); len(types) != len(list.Events) {
		t.Errorf("the stream delivered %d events of the rollout, the list has %d:\n%s", len(types), len(list.Events), strings.Join(types, "\n"))
	}

	// The webhook got them all, signed.
	waitFor(t, "the webhook to receive the completion", 20*time.Second, func() bool {
		types := wr.types(ro.ID)
		return len(types) > 0 && types[len(types)-1] == "rollout.completed"
	})
	if types := wr.types(ro.ID); len(types) != len(list.Events) {
		t.Errorf("the webhook received %d events of the rollout, want %d:\n%s", len(types), len(list.Events), strings.Join(types, "\n"))
	}
	wr.mu.Lock()
	defer wr.mu.Unlock()
	if len(wr.bad) > 0 {
		t.Errorf("bad webhook deliveries: %q", wr.bad)
	}
	for _, ev := range wr.events {
		if !strings.HasPrefix(ev.Type, "rollout.") {
			t.Errorf("the webhook filtered on rollout. received %s", ev.Type)
		}
	}
}

// TestRolloutOfAnswersCutShortRollsBack: the candidate is the same model
// server, deployed with a max_tokens override of 1 (a typo for 1000). It
// is faster than production and never fails, so only the length of its
// answers shows the harm: the output_tokens check must roll it back.
func TestRolloutOfAnswersCutShortRollsBack(t *testing.T) {
	e := startRolloutDaemonOnly(t, nil)
	_, u := startSim(t, simConfig("v1"))
	e.deploy("production", u, "v1")
	ctx := context.Background()
	if _, err := e.c.CreateSlot(ctx, "default", "staging"); err != nil && modelslot.ErrorCode(err) != modelslot.ECONFLICT {
		t.Fatal(err)
	}
	if _, err := e.c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{
		URL: u, Version: "v1-cut", Overrides: map[string]any{"max_tokens": 1},
	}}); err != nil {
		t.Fatal(err)
	}
	l := startLoad(t, e.d.GatewayURL(), plainWorker("a"), plainWorker("b"), plainWorker("c"))
	defer l.stop()
	// The smoke test's plan, judging output length besides errors and latency.
	plan := strings.Replace(readPlan(t, "plan-smoke-test.yaml"), "metrics: [errors, latency]", "metrics: [errors, latency, output_tokens]", 1)
	if !strings.Contains(plan, "output_tokens") {
		t.Fatal("examples/plan-smoke-test.yaml no longer lists metrics: [errors, latency]")
	}
	ro, err := e.c.StartRollout(ctx, "default", "staging", plan)
	if err != nil {
		t.Fatal(err)
	}
	done := waitRollout(t, e.c, ro.ID, "the rollout to end", 60*time.Second, func(r *rollout.Rollout) bool { return !r.State.Active() })
	if done.State != rollout.RolledBack || done.Swapped || !strings.Contains(done.Reason, "output_tokens") {
		t.Fatalf("answers cut at 1 token: rollout %s (swapped %v), want rolled back by output_tokens:\n%s", done.State, done.Swapped, done.Describe())
	}
	t.Log(done.Reason)
}
