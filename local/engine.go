// Package local is the embedded platform: apps and slots served by this
// binary's gateway, with model-server processes supervised by the host
// package, state kept in a modelslot.Store. It implements modelslot.Platform.
package local

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/host"
)

var _ modelslot.Platform = (*Engine)(nil)

// Config wires an Engine.
type Config struct {
	Store   modelslot.Store
	Gateway *gateway.Gateway
	Host    *host.Host
	Events  modelslot.EventSink
	Logger  *slog.Logger
	// DrainTimeout bounds the wait for a swapped-out deployment's in-flight
	// requests before its process is restarted or stopped (default 10m).
	DrainTimeout time.Duration
	// WarmupRequestTimeout bounds one warm-up ping (default 90s, as Azure).
	WarmupRequestTimeout time.Duration
	// MaxSlots is the default per-app slot limit (default 5).
	MaxSlots int
	// Shared says that other daemons (replicas) share the store: deploys
	// of a command (--cmd) are refused, since each replica would run its
	// own copy of the model server; deploy a URL that every replica reaches.
	Shared bool
	// CheckDeployment, when set, may refuse a deployment before it is
	// deployed (the daemon refuses one that carries credentials on a
	// gateway open beyond loopback without client keys).
	CheckDeployment func(app, slot string, d *modelslot.Deployment) error
}

// Engine is the local platform.
type Engine struct {
	cfg    Config
	store  modelslot.Store
	gw     *gateway.Gateway
	host   *host.Host
	events modelslot.EventSink
	log    *slog.Logger
	client *http.Client

	// opMu serialises the control-plane operations of one app: a deploy
	// that waits minutes for a model to load blocks only its own app.
	opMu sync.Mutex
	ops  map[string]*sync.Mutex

	// mu guards the published state below; the gateway reads its own
	// immutable snapshot and never takes it.
	mu       sync.RWMutex
	apps     map[string]*modelslot.App
	backends map[string]*runtime // "app/slot" -> what serves the slot
	prepared map[string]*runtime // app -> the source prepared by a swap preview
	restores map[string]*restore // "app/slot" -> its backend being restored after a restart
	bg       sync.WaitGroup
	closed   chan struct{}
}

// runtime is a slot's live backend and, for a command deployment, its
// process.
type runtime struct {
	backend  *gateway.Backend
	proc     *host.Process
	revision string
	envKey   string // the environment the process was started with
}

// New returns an engine; Open loads the state and starts the backends.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Minute
	}
	if cfg.WarmupRequestTimeout <= 0 {
		cfg.WarmupRequestTimeout = 90 * time.Second
	}
	if cfg.MaxSlots <= 0 {
		cfg.MaxSlots = modelslot.DefaultMaxSlots
	}
	if cfg.Events == nil {
		cfg.Events = nopSink{}
	}
	return &Engine{
		cfg: cfg, store: cfg.Store, gw: cfg.Gateway, host: cfg.Host, events: cfg.Events, log: cfg.Logger,
		client:   &http.Client{Transport: cfg.Gateway.Transport()},
		ops:      map[string]*sync.Mutex{},
		apps:     map[string]*modelslot.App{},
		backends: map[string]*runtime{},
		prepared: map[string]*runtime{},
		restores: map[string]*restore{},
		closed:   make(chan struct{}),
	}
}

type nopSink struct{}

func (nopSink) Publish(context.Context, *modelslot.Event) {}

// Open loads apps from the store, marks swaps that a crash interrupted as
// failed, restarts managed processes and publishes routing. With no app at
// all it creates the app named "default".
func (e *Engine) Open(ctx context.Context) error {
	apps, err := e.store.Apps(ctx)
	if err != nil {
		return err
	}
	if len(apps) == 0 {
		a := e.newApp("default")
		if err := e.store.PutApp(ctx, a, nil); err != nil {
			return err
		}
		apps = []*modelslot.App{a}
	}
	for _, a := range apps {
		e.apps[a.Name] = a
		if err := e.recoverSwaps(ctx, a.Name); err != nil {
			return err
		}
	}
	// Servers that a killed daemon left running hold ports and memory (a
	// GPU, for a real model): stop them before starting their successors.
	if e.host != nil {
		if n := e.host.ReapOrphans(); n > 0 {
			e.log.Warn("stopped model servers left running by the previous daemon", "count", n)
		}
	}
	// Every slot's backend is restored in the background: the gateway
	// serves the last routing at once, and a slot whose backend is not
	// healthy yet gets no traffic (its share goes to production).
	e.mu.Lock()
	for _, a := range apps {
		// Previews do not survive a restart: their prepared process is gone.
		for _, s := range a.Slots {
			s.PreparedForSwap = ""
		}
		for _, s := range a.Slots {
			if s.Deployment != nil {
				e.startRestore(a.Name, s.Name, s.Deployment, s.StickySettings)
			}
		}
	}
	e.mu.Unlock()
	e.publish()
	return nil
}

// SharedSwapStale is how old a swap record must be before a replica
// starting on a shared store ends it as interrupted (the rollout
// controller waits as long for a swap that says it is running).
const SharedSwapStale = 15 * time.Minute

// recoverSwaps ends the swap records a stop interrupted. The flip is one
// transaction, so production is whatever the store says: untouched if the
// stop came before it, swapped if after. A swap past its flip (drain, or
// completed while its old deployment was settling) is done: the restore
// starts every slot's deployment with that slot's settings, which is what
// the settling would have done.
func (e *Engine) recoverSwaps(ctx context.Context, app string) error {
	swaps, err := e.store.Swaps(ctx, app, 10)
	if err != nil {
		return err
	}
	for _, sw := range swaps {
		if e.cfg.Shared && sw.Status != modelslot.SwapFailed && time.Since(sw.StartedAt) < SharedSwapStale {
			// On a shared store a recent swap may be another replica's,
			// still going: only one older than any swap takes is ended.
			continue
		}
		switch {
		case sw.Status == modelslot.SwapRunning && (sw.Phase == modelslot.PhaseDrain || sw.Phase == modelslot.PhaseDone):
			sw.Status, sw.Phase, sw.Error = modelslot.SwapCompleted, modelslot.PhaseDone, ""
		case sw.Status == modelslot.SwapRunning:
			sw.Status = modelslot.SwapFailed
			sw.Error = fmt.Sprintf("the daemon stopped during the %s phase; production was left as it was before the flip", sw.Phase)
		case sw.Status == modelslot.SwapCompleted && sw.Phase != modelslot.PhaseDone:
			sw.Phase = modelslot.PhaseDone
		default:
			continue
		}
		if sw.FinishedAt.IsZero() {
			sw.FinishedAt = time.Now().UTC()
		}
		if err := e.store.PutSwap(ctx, sw); err != nil {
			return err
		}
	}
	return nil
}

// Close stops background work and every managed process.
func (e *Engine) Close(ctx context.Context) error {
	close(e.closed)
	e.bg.Wait()
	if e.host != nil {
		return e.host.Close(ctx)
	}
	return nil
}

func key(app, slot string) string { return app + "/" + slot }

func (e *Engine) newApp(name string) *modelslot.App {
	now := time.Now().UTC()
	return &modelslot.App{
		Name: name, MaxSlots: e.cfg.MaxSlots, CreatedAt: now,
		Slots: []*modelslot.Slot{{Name: modelslot.Production, CreatedAt: now}},
	}
}

// lockApp serialises operations on one app.
func (e *Engine) lockApp(app string) func() {
	e.opMu.Lock()
	m := e.ops[app]
	if m == nil {
		m = &sync.Mutex{}
		e.ops[app] = m
	}
	e.opMu.Unlock()
	m.Lock()
	if e.cfg.Shared {
		e.syncLocked(app)
	}
	return m.Unlock
}

// app returns a private copy of the app's state for a mutation.
func (e *Engine) app(name string) (*modelslot.App, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	a := e.apps[name]
	if a == nil {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "no app named %q (apps: %s)", name, strings.Join(slices.Sorted(maps.Keys(e.apps)), ", "))
	}
	return a.Clone(), nil
}

// commit persists a mutated app (and a swap record in the same
// transaction), then publishes it to the gateway.
func (e *Engine) commit(ctx context.Context, a *modelslot.App, sw *modelslot.SwapRecord, backends map[string]*runtime) error {
	if err := e.store.PutApp(ctx, a, sw); err != nil {
		return fmt.Errorf("save app %s: %w", a.Name, err)
	}
	e.mu.Lock()
	e.apps[a.Name] = a
	for k, rt := range backends {
		if rt == nil {
			delete(e.backends, k)
		} else {
			e.backends[k] = rt
		}
	}
	e.mu.Unlock()
	e.publish()
	return nil
}

// publish builds the gateway's routing from the current state.
func (e *Engine) publish() {
	e.mu.RLock()
	defer e.mu.RUnlock()
	routes := make([]gateway.RouteApp, 0, len(e.apps))
	for _, a := range e.apps {
		ra := gateway.RouteApp{App: a, Backends: map[string]*gateway.Backend{}}
		for _, s := range a.Slots {
			if rt := e.backends[key(a.Name, s.Name)]; rt != nil && s.Deployment != nil {
				ra.Backends[s.Name] = rt.backend
			} else if r := e.restores[key(a.Name, s.Name)]; r != nil && s.Deployment != nil {
				if ra.NotReady == nil {
					ra.NotReady = map[string]string{}
				}
				ra.NotReady[s.Name] = r.state()
			}
		}
		routes = append(routes, ra)
	}
	e.gw.Update(routes)
}

func (e *Engine) emit(ctx context.Context, app, typ, actor, format string, args ...any) {
	e.events.Publish(ctx, &modelslot.Event{Time: time.Now().UTC(), App: app, Type: typ, Actor: actor, Message: fmt.Sprintf(format, args...)})
}

// App implements modelslot.Platform.
func (e *Engine) App(ctx context.Context, name string) (*modelslot.App, error) {
	a, err := e.app(name)
	if err != nil {
		return nil, err
	}
	for _, s := range a.Slots {
		s.Deployment = s.Deployment.Redacted()
	}
	return a, nil
}

// Apps lists every app's name.
func (e *Engine) Apps() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return slices.Sorted(maps.Keys(e.apps))
}

// CreateApp adds an app with an empty production slot.
func (e *Engine) CreateApp(ctx context.Context, name, stickyKey string, maxSlots int) (*modelslot.App, error) {
	if err := modelslot.ValidateName("app", name); err != nil {
		return nil, err
	}
	if err := ValidateStickyKey(stickyKey); err != nil {
		return nil, err
	}
	unlock := e.lockApp(name)
	defer unlock()
	e.mu.RLock()
	_, exists := e.apps[name]
	e.mu.RUnlock()
	if exists {
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "app %q already exists", name)
	}
	a := e.newApp(name)
	a.StickyKey = stickyKey
	if maxSlots > 0 {
		a.MaxSlots = maxSlots
	}
	if err := e.commit(ctx, a, nil, nil); err != nil {
		return nil, err
	}
	e.emit(ctx, name, "app.created", "", "app %s created", name)
	return a.Clone(), nil
}

// ConfigureApp changes an app's sticky key and slot limit.
func (e *Engine) ConfigureApp(ctx context.Context, name, stickyKey string, maxSlots int) error {
	if err := ValidateStickyKey(stickyKey); err != nil {
		return err
	}
	unlock := e.lockApp(name)
	defer unlock()
	a, err := e.app(name)
	if err != nil {
		return err
	}
	a.StickyKey = stickyKey
	if maxSlots > 0 {
		if maxSlots < len(a.Slots) {
			return modelslot.Errorf(modelslot.EINVALID, "maxSlots %d is less than the %d slots app %s has", maxSlots, len(a.Slots), name)
		}
		a.MaxSlots = maxSlots
	}
	return e.commit(ctx, a, nil, nil)
}

// ValidateStickyKey checks an app's sticky key setting.
func ValidateStickyKey(k string) error {
	if k == "" || k == "user" {
		return nil
	}
	if h, ok := strings.CutPrefix(k, "header:"); ok && h != "" && !strings.ContainsAny(h, " :\t") {
		return nil
	}
	return modelslot.Errorf(modelslot.EINVALID, "stickyKey %q is not valid: use \"user\" (the OpenAI user field) or \"header:<Name>\", e.g. header:X-Session-Id", k)
}

// CreateSlot implements modelslot.Platform.
func (e *Engine) CreateSlot(ctx context.Context, app, slot string) (*modelslot.Slot, error) {
	if err := modelslot.ValidateName("slot", slot); err != nil {
		return nil, err
	}
	unlock := e.lockApp(app)
	defer unlock()
	a, err := e.app(app)
	if err != nil {
		return nil, err
	}
	if a.Slot(slot) != nil {
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "app %s already has a slot named %q", app, slot)
	}
	if len(a.Slots) >= a.MaxSlots {
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "app %s already has %d slots, its limit (production included): delete one, or raise maxSlots in the config", app, a.MaxSlots)
	}
	s := &modelslot.Slot{Name: slot, CreatedAt: time.Now().UTC()}
	a.Slots = append(a.Slots, s)
	if err := e.commit(ctx, a, nil, nil); err != nil {
		return nil, err
	}
	e.emit(ctx, app, "slot.created", "", "slot %s created", slot)
	return s, nil
}

// DeleteSlot implements modelslot.Platform.
func (e *Engine) DeleteSlot(ctx context.Context, app, slot string, force bool) error {
	unlock := e.lockApp(app)
	defer unlock()
	a, err := e.app(app)
	if err != nil {
		return err
	}
	if slot == modelslot.Production || slot == modelslot.Self {
		return modelslot.Errorf(modelslot.EINVALID, "the production slot cannot be deleted")
	}
	s := a.Slot(slot)
	if s == nil {
		return modelslot.Errorf(modelslot.ENOTFOUND, "app %s has no slot %q (slots: %s)", app, slot, strings.Join(a.SlotNames(), ", "))
	}
	if s.PreparedForSwap != "" {
		return errPrepared(slot, s.PreparedForSwap)
	}
	if p := a.Routing.Percent(slot); p > 0 {
		if !force {
			return modelslot.Errorf(modelslot.ECONFLICT, "slot %s receives %g%% of traffic: set its share to 0 first (`modelslot traffic set %s=0`) or delete with --force", slot, p, slot)
		}
		a.Routing.Rules = slices.DeleteFunc(a.Routing.Rules, func(r modelslot.TrafficRule) bool { return r.Slot == slot })
		a.Routing.Generation++
	}
	if a.Mirror != nil && a.Mirror.Slot == slot {
		a.Mirror = nil
	}
	a.Slots = slices.DeleteFunc(a.Slots, func(x *modelslot.Slot) bool { return x.Name == slot })
	e.mu.RLock()
	old := e.backends[key(app, slot)]
	e.mu.RUnlock()
	if err := e.commit(ctx, a, nil, map[string]*runtime{key(app, slot): nil}); err != nil {
		return err
	}
	e.cancelRestore(app, slot)
	e.retire(old)
	e.emit(ctx, app, "slot.deleted", "", "slot %s deleted", slot)
	return nil
}

func errPrepared(slot, other string) error {
	return modelslot.Errorf(modelslot.ECONFLICT, "slot %s has been prepared for a swap with %s: complete it with `modelslot swap` or cancel it with `--action reset` first", slot, other)
}

// retire drains a backend that no longer serves a slot and stops its
// process, in the background.
func (e *Engine) retire(rt *runtime) {
	if rt == nil {
		return
	}
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.DrainTimeout)
		defer cancel()
		go func() {
			select {
			case <-e.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		if err := rt.backend.Drain(ctx); err != nil {
			e.log.Warn("drain", "backend", rt.backend.URL(), "err", err)
		}
		if rt.proc != nil {
			stopCtx, cancelStop := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancelStop()
			if err := rt.proc.Stop(stopCtx); err != nil {
				e.log.Warn("stop process", "id", rt.proc.ID(), "err", err)
			}
		}
	}()
}

// Status implements modelslot.Platform.
func (e *Engine) Status(ctx context.Context, app string) (*modelslot.AppStatus, error) {
	a, err := e.app(app) // with secrets: the health probe sends them
	if err != nil {
		return nil, err
	}
	st := &modelslot.AppStatus{App: a.Name, Routing: a.Routing, Mirror: a.Mirror}
	st.Slots = make([]modelslot.SlotStatus, len(a.Slots))
	var wg sync.WaitGroup
	for i, s := range a.Slots {
		ss := &st.Slots[i]
		shown := *s
		shown.Deployment = s.Deployment.Redacted()
		ss.Slot = &shown
		ss.Percent = a.Routing.Percent(s.Name)
		e.mu.RLock()
		rt := e.backends[key(app, s.Name)]
		e.mu.RUnlock()
		if s.Deployment != nil && rt == nil {
			e.mu.RLock()
			if r := e.restores[key(app, s.Name)]; r != nil {
				ss.Starting = true
				ss.Health = r.state()
			} else {
				ss.Health = "no running backend"
			}
			e.mu.RUnlock()
			continue
		}
		if s.Deployment == nil || rt == nil {
			ss.Health = "no deployment"
			continue
		}
		ss.Backend = rt.backend.URL()
		ss.InFlight = rt.backend.InFlight()
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := e.ping(pctx, rt.backend.URL(), s.Deployment); err != nil {
				ss.Health = err.Error()
			} else {
				ss.Healthy = true
			}
		}()
	}
	wg.Wait()
	if swaps, err := e.store.Swaps(ctx, app, 1); err == nil && len(swaps) > 0 {
		st.LastSwap = swaps[0]
	}
	return st, nil
}

// Swaps implements modelslot.Platform.
func (e *Engine) Swaps(ctx context.Context, app string, limit int) ([]*modelslot.SwapRecord, error) {
	if _, err := e.app(app); err != nil {
		return nil, err
	}
	return e.store.Swaps(ctx, app, limit)
}

// Deployments lists a slot's deployment history, newest first.
func (e *Engine) Deployments(ctx context.Context, app, slot string, limit int) ([]*modelslot.Deployment, error) {
	if _, err := e.app(app); err != nil {
		return nil, err
	}
	ds, err := e.store.Deployments(ctx, app, slot, limit)
	for i, d := range ds {
		ds[i] = d.Redacted()
	}
	return ds, err
}

// SetTraffic implements modelslot.Platform.
func (e *Engine) SetTraffic(ctx context.Context, app string, rules []modelslot.TrafficRule, opts modelslot.TrafficOptions) (modelslot.Routing, error) {
	unlock := e.lockApp(app)
	defer unlock()
	a, err := e.app(app)
	if err != nil {
		return modelslot.Routing{}, err
	}
	norm, err := modelslot.NormalizeRules(a, rules)
	if err != nil {
		return modelslot.Routing{}, err
	}
	a.Routing.Rules = norm
	if opts.ResetPins {
		a.Routing.Generation++
	}
	if err := e.commit(ctx, a, nil, nil); err != nil {
		return modelslot.Routing{}, err
	}
	e.emit(ctx, app, "traffic.set", opts.Actor, "traffic set: %s%s", describeRules(a.Routing), map[bool]string{true: " (routing cookies reset)"}[opts.ResetPins])
	return a.Routing, nil
}

// SetMirror mirrors a share of production's requests to a slot (nil: off).
func (e *Engine) SetMirror(ctx context.Context, app string, m *modelslot.MirrorRule, actor string) error {
	unlock := e.lockApp(app)
	defer unlock()
	a, err := e.app(app)
	if err != nil {
		return err
	}
	if m != nil {
		s := a.Slot(m.Slot)
		switch {
		case s == nil:
			return modelslot.Errorf(modelslot.ENOTFOUND, "mirror: app %s has no slot %q (slots: %s)", app, m.Slot, strings.Join(a.SlotNames(), ", "))
		case s.Name == modelslot.Production:
			return modelslot.Errorf(modelslot.EINVALID, "mirror: production cannot mirror to itself: name another slot")
		case m.Percent < 0 || m.Percent > 100 || m.Percent != m.Percent:
			return modelslot.Errorf(modelslot.EINVALID, "mirror: %s=%g is out of range: a share is a percentage from 0 to 100", m.Slot, m.Percent)
		case s.Deployment == nil && m.Percent > 0:
			return modelslot.Errorf(modelslot.ECONFLICT, "mirror: slot %s has no deployment: deploy to it first", m.Slot)
		}
		if m.Percent == 0 {
			m = nil
		}
	}
	a.Mirror = m
	if err := e.commit(ctx, a, nil, nil); err != nil {
		return err
	}
	if m == nil {
		e.emit(ctx, app, "mirror.cleared", actor, "mirroring off")
	} else {
		e.emit(ctx, app, "mirror.set", actor, "mirroring %g%% of production's requests to %s", m.Percent, m.Slot)
	}
	return nil
}

func describeRules(r modelslot.Routing) string {
	var parts []string
	for _, rule := range r.Rules {
		parts = append(parts, fmt.Sprintf("%s=%g%%", rule.Slot, rule.Percent))
	}
	parts = append(parts, fmt.Sprintf("production=%g%%", r.Percent(modelslot.Production)))
	return strings.Join(parts, ", ")
}
