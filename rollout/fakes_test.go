package rollout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/rollout"
	"github.com/modelslot/modelslot/sqlite"
)

// fakePlatform keeps one app in memory and counts the calls the controller
// makes.
type fakePlatform struct {
	mu      sync.Mutex
	app     *modelslot.App
	swaps   []*modelslot.SwapRecord
	traffic []trafficCall
	// swapCalls counts Platform.Swap calls that swapped.
	swapCalls int
	// afterSwap, if set, runs after a swap took effect (e.g. to block like
	// a daemon killed before the answer was recorded).
	afterSwap func(ctx context.Context) error
	// now and changed: when each slot's traffic or deployment last
	// changed, by the rollout's clock (set now to record them).
	now     func() time.Time
	changed map[string]time.Time
}

// touch records a change of slot's traffic or deployment; p.mu is held.
func (p *fakePlatform) touch(slots ...string) {
	if p.now == nil {
		return
	}
	if p.changed == nil {
		p.changed = map[string]time.Time{}
	}
	for _, s := range slots {
		p.changed[s] = p.now()
	}
}

func (p *fakePlatform) changedAt(slot string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed[slot]
}

type trafficCall struct {
	Percent   float64 // the rollout slot's share
	ResetPins bool
}

func newFakePlatform() *fakePlatform {
	now := time.Unix(1_700_000_000, 0)
	app := &modelslot.App{Name: "chat", MaxSlots: 5, CreatedAt: now}
	for _, s := range []struct{ slot, version string }{{modelslot.Production, "v1"}, {"staging", "v2"}} {
		d := &modelslot.Deployment{Version: s.version, URL: "http://127.0.0.1:1/" + s.version}
		d.Revision = d.ComputeRevision()
		app.Slots = append(app.Slots, &modelslot.Slot{Name: s.slot, Deployment: d, CreatedAt: now})
	}
	return &fakePlatform{app: app}
}

func (p *fakePlatform) revision(slot string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.app.Slot(slot).Deployment.Revision
}

func (p *fakePlatform) percent(slot string) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.app.Routing.Percent(slot)
}

func (p *fakePlatform) trafficCalls() []trafficCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.traffic)
}

func (p *fakePlatform) swapCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.swapCalls
}

func (p *fakePlatform) App(ctx context.Context, app string) (*modelslot.App, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if app != p.app.Name {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "no app %q", app)
	}
	return p.app.Clone(), nil
}

func (p *fakePlatform) Status(ctx context.Context, app string) (*modelslot.AppStatus, error) {
	return nil, errors.New("not implemented")
}
func (p *fakePlatform) CreateSlot(ctx context.Context, app, slot string) (*modelslot.Slot, error) {
	return nil, errors.New("not implemented")
}
func (p *fakePlatform) DeleteSlot(ctx context.Context, app, slot string, force bool) error {
	return errors.New("not implemented")
}
func (p *fakePlatform) Deploy(ctx context.Context, app, slot string, d modelslot.DeployRequest) (*modelslot.Slot, error) {
	return nil, errors.New("not implemented")
}

func (p *fakePlatform) SetTraffic(ctx context.Context, app string, rules []modelslot.TrafficRule, opts modelslot.TrafficOptions) (modelslot.Routing, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	norm, err := modelslot.NormalizeRules(p.app, rules)
	if err != nil {
		return modelslot.Routing{}, err
	}
	p.app.Routing.Rules = norm
	p.touch(modelslot.Production, "staging")
	if opts.ResetPins {
		p.app.Routing.Generation++
	}
	p.traffic = append(p.traffic, trafficCall{Percent: p.app.Routing.Percent("staging"), ResetPins: opts.ResetPins})
	return p.app.Routing, nil
}

func (p *fakePlatform) Swap(ctx context.Context, app string, req modelslot.SwapRequest) (*modelslot.SwapRecord, error) {
	p.mu.Lock()
	src, dst := p.app.Slot(req.Source), p.app.Slot(req.Target)
	rec := &modelslot.SwapRecord{
		ID: int64(len(p.swaps) + 1), App: app, Source: req.Source, Target: req.Target, Action: modelslot.SwapActionSwap,
		Status: modelslot.SwapCompleted, Phase: modelslot.PhaseDone, SourceRevision: src.Deployment.Revision,
		TargetRevision: dst.Deployment.Revision, Actor: req.Actor, StartedAt: time.Now(), FinishedAt: time.Now(),
	}
	src.Deployment, dst.Deployment = dst.Deployment, src.Deployment
	p.touch(req.Source, req.Target)
	p.app.Routing.Generation++
	p.swaps = append(p.swaps, rec)
	p.swapCalls++
	hook := p.afterSwap
	p.mu.Unlock()
	if hook != nil {
		if err := hook(ctx); err != nil {
			return nil, err
		}
	}
	c := *rec
	return &c, nil
}

func (p *fakePlatform) Swaps(ctx context.Context, app string, limit int) ([]*modelslot.SwapRecord, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*modelslot.SwapRecord
	for i := len(p.swaps) - 1; i >= 0 && (limit <= 0 || len(out) < limit); i-- {
		c := *p.swaps[i]
		out = append(out, &c)
	}
	return out, nil
}

// fakeMetrics makes deterministic per-request samples for each slot,
// proportional to its current share: the same window always yields the
// same data. Revisions listed in bad have 30% errors and double latency;
// revisions listed in cold have double latency and TTFT for coldFor after
// their slot's traffic or deployment changed (platform.now must be set).
type fakeMetrics struct {
	p       *fakePlatform
	rps     float64
	mu      sync.Mutex
	bad     map[string]bool
	cold    map[string]bool
	coldFor time.Duration
}

func (m *fakeMetrics) setBad(rev string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bad[rev] = true
}

func hash(parts ...any) uint64 {
	h := fnv.New64a()
	fmt.Fprint(h, parts...)
	return h.Sum64()
}

func (m *fakeMetrics) Series(ctx context.Context, q modelslot.MetricQuery) (modelslot.Series, error) {
	share := m.p.percent(q.Slot) / 100
	rev := m.p.revision(q.Slot)
	m.mu.Lock()
	bad := m.bad[rev]
	var coldUntil time.Time
	if m.cold[rev] {
		coldUntil = m.p.changedAt(q.Slot).Add(m.coldFor)
	}
	m.mu.Unlock()
	out := modelslot.Series{Slot: q.Slot, Complete: true}
	rate := m.rps * share
	for sec := q.From.Truncate(time.Second); sec.Before(q.To); sec = sec.Add(time.Second) {
		k := float64(sec.Unix())
		n := int(math.Floor(rate*(k+1)) - math.Floor(rate*k))
		for i := 0; i < n; i++ {
			t := sec.Add(time.Duration(i) * time.Millisecond)
			if t.Before(q.From) || !t.Before(q.To) {
				continue
			}
			h := hash(q.Slot, t.UnixNano())
			jitter := time.Duration(h%400) * time.Millisecond
			s := modelslot.Sample{Time: t, Status: 200, Latency: time.Second + jitter, TTFT: 200*time.Millisecond + jitter/4, OutputTokens: 100, Revision: rev}
			if t.Before(coldUntil) {
				s.Latency *= 2
				s.TTFT *= 2
			}
			if bad {
				s.Latency *= 2
				if h%10 < 3 {
					s.Status = 500
				}
			}
			out.Samples = append(out.Samples, s)
		}
	}
	return out, nil
}

// autoClock moves forward by step at every reading, so that a rollout of
// many fake minutes runs in milliseconds without any test waiting on time.
type autoClock struct {
	ns   atomic.Int64
	step time.Duration
}

func newClock() *autoClock {
	c := &autoClock{step: time.Second}
	c.ns.Store(time.Unix(1_700_000_000, 0).UnixNano())
	return c
}

func (c *autoClock) Now() time.Time { return time.Unix(0, c.ns.Add(int64(c.step))) }

// recorder is an EventSink that keeps the events.
type recorder struct {
	mu     sync.Mutex
	events []*modelslot.Event
}

func (r *recorder) Publish(ctx context.Context, e *modelslot.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) types() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		out = append(out, e.Type)
	}
	return out
}

// wait polls until an event of type typ whose message contains substr
// has been published.
func (r *recorder) wait(t *testing.T, typ, substr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !r.has(typ, substr) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s event containing %q; events: %v", typ, substr, r.types())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (r *recorder) has(typ, substr string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Type == typ && strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

// staticGate is a test gate kind: `{kind: static, verdict: pass|fail|inconclusive, after: N}`
// says verdict from look N on (inconclusive before).
type staticGate struct {
	Verdict string `yaml:"verdict"`
	After   int    `yaml:"after"`
}

func init() {
	rollout.RegisterGate("static", func(c rollout.GateConfig) (rollout.Gate, error) {
		g := &staticGate{}
		if err := c.Decode(g); err != nil {
			return nil, err
		}
		return g, nil
	})
}

func (g *staticGate) Kind() string { return "static" }

func (g *staticGate) Evaluate(ctx context.Context, in rollout.GateInput) (rollout.GateResult, error) {
	var looks int
	if len(in.State) > 0 {
		json.Unmarshal(in.State, &looks)
	}
	looks++
	st, _ := json.Marshal(looks)
	v := rollout.Verdict(g.Verdict)
	if looks <= g.After {
		v = rollout.Inconclusive
	}
	return rollout.GateResult{Verdict: v, Reason: fmt.Sprintf("static %s at look %d", v, looks), State: st}, nil
}

// env is one test's world: platform, metrics, store, events, clock.
type env struct {
	t        *testing.T
	platform *fakePlatform
	metrics  *fakeMetrics
	store    *sqlite.DB
	events   *recorder
	clock    *autoClock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	p := newFakePlatform()
	return &env{t: t, platform: p, metrics: &fakeMetrics{p: p, rps: 40, bad: map[string]bool{}}, store: db, events: &recorder{}, clock: newClock()}
}

// running is a Manager with its Run goroutine.
type running struct {
	*rollout.Manager
	cancel context.CancelFunc
	done   chan error
}

// start runs a new Manager over the env until the test ends or kill.
func (e *env) start() *running {
	e.t.Helper()
	m, err := rollout.NewManager(rollout.ManagerConfig{
		Platform: e.platform, Metrics: e.metrics, Store: e.store, Events: e.events,
		Now: e.clock.Now, Interval: time.Millisecond,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Manager: m, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- m.Run(ctx) }()
	e.t.Cleanup(r.kill)
	return r
}

// kill cancels the Manager abruptly, as SIGKILL would stop it between two
// persisted transitions, and waits for its goroutines.
func (r *running) kill() {
	r.cancel()
	<-r.done
	r.done <- nil // kill may be called again by Cleanup
}

func mustPlan(t *testing.T, yaml string) *rollout.Plan {
	t.Helper()
	p, err := rollout.ParsePlan([]byte(yaml))
	if err != nil {
		t.Fatalf("ParsePlan: %v", err)
	}
	return p
}

// waitFor polls the app's latest rollout until cond holds.
func (e *env) waitFor(m *rollout.Manager, what string, cond func(*rollout.Rollout) bool) *rollout.Rollout {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last *rollout.Rollout
	for time.Now().Before(deadline) {
		h, err := m.History(context.Background(), "chat", 1)
		if err != nil {
			e.t.Fatal(err)
		}
		if len(h) > 0 {
			last = h[0]
			if cond(last) {
				return last
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if last != nil {
		e.t.Fatalf("timed out waiting for %s; rollout:\n%s", what, last.Describe())
	}
	e.t.Fatalf("timed out waiting for %s: no rollout", what)
	return nil
}

func (e *env) waitState(m *rollout.Manager, st rollout.State) *rollout.Rollout {
	e.t.Helper()
	return e.waitFor(m, "state "+string(st), func(r *rollout.Rollout) bool { return r.State == st })
}
