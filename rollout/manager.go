package rollout

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/modelslot/modelslot"
)

// ManagerConfig wires a Manager.
type ManagerConfig struct {
	Platform modelslot.Platform
	// Metrics feeds the gates; nil: gates see no data (bakes can only end
	// by their policy or a promote).
	Metrics modelslot.MetricSource
	Store   modelslot.Store
	// Events receives every transition (nil: none are published).
	Events modelslot.EventSink
	Logger *slog.Logger
	// Now is the clock of durations and deadlines (default time.Now).
	Now func() time.Time
	// Interval, when set, replaces every plan's interval: how long the
	// controller waits between looks (tests, demos).
	Interval time.Duration
	// GatewayURL returns the gateway's base address for GateInput (nil:
	// unknown). A function, as the daemon's listener opens after the
	// controller is built.
	GatewayURL func() string
	// GatewayHeaders go on every request a gate sends through the gateway.
	GatewayHeaders http.Header
}

// Manager runs the rollouts of every app: one goroutine per active
// rollout, one active rollout per app.
type Manager struct {
	cfg ManagerConfig
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	runners map[string]*runner // by app
	ctx     context.Context    // set by Run
	cancel  context.CancelFunc
	closed  bool
	wg      sync.WaitGroup
}

// NewManager checks cfg and returns a Manager; call Run to start it.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.Platform == nil || cfg.Store == nil {
		return nil, errors.New("rollout: NewManager needs a Platform and a Store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Manager{cfg: cfg, log: cfg.Logger, now: cfg.Now, runners: map[string]*runner{}}, nil
}

// Run resumes every active rollout from the store and runs them, and those
// started later, until ctx ends or Close is called. It returns once every
// rollout goroutine has stopped; their state is in the store, and the next
// Run picks them up where they were.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.closed || m.ctx != nil {
		m.mu.Unlock()
		return errors.New("rollout: Manager.Run called twice or after Close")
	}
	recs, err := m.cfg.Store.Rollouts(ctx, "", true, 10000)
	if err != nil {
		m.mu.Unlock()
		return fmt.Errorf("resume rollouts: %w", err)
	}
	m.ctx, m.cancel = context.WithCancel(ctx)
	// Newest first: an app with two active records (which Start prevents)
	// keeps the newest.
	for _, rec := range recs {
		if m.runners[rec.App] != nil {
			if m.runners[rec.App].id != rec.ID {
				m.log.Error("two active rollouts for one app: ignoring the older", "app", rec.App, "rollout", rec.ID)
			}
			continue
		}
		doc, err := decodeRollout(rec)
		if doc == nil {
			m.log.Error("cannot resume rollout: unreadable document", "rollout", rec.ID, "err", err)
			continue
		}
		r := m.newRunner(doc)
		if err != nil {
			// Without its plan the rollout cannot go on; undo what it did.
			r.loadErr = err
		}
		m.runners[rec.App] = r
		m.log.Info("resuming rollout", "app", rec.App, "rollout", rec.ID, "state", doc.State, "step", doc.Step)
	}
	for _, r := range m.runners {
		m.launch(r)
	}
	m.mu.Unlock()

	<-m.ctx.Done()
	m.wg.Wait()
	return nil
}

// Close stops every rollout goroutine and waits for them. Active rollouts
// stay active in the store.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	if m.cancel != nil {
		m.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// launch starts r's goroutine; m.mu is held.
func (m *Manager) launch(r *runner) {
	if r.launched {
		return
	}
	r.launched = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		r.run(m.ctx)
	}()
}

func (m *Manager) remove(r *runner) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runners[r.app] == r {
		delete(m.runners, r.app)
	}
}

// Busy reports whether app has an active rollout, and its id. The engine
// refuses manual traffic and swap commands while it is busy (see
// CheckIdle for the error to return).
func (m *Manager) Busy(app string) (rolloutID string, busy bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.runners[app]; r != nil {
		return r.id, true
	}
	return "", false
}

// CheckIdle returns nil if app has no active rollout, else the ECONFLICT
// error that names it and says how to pause or abort it.
func (m *Manager) CheckIdle(app string) error {
	if id, busy := m.Busy(app); busy {
		return conflictError(app, id)
	}
	return nil
}

func conflictError(app, id string) error {
	return modelslot.Errorf(modelslot.ECONFLICT,
		"app %q is in the hands of rollout %s: wait for it to finish, pause it (modelslot rollout pause %s) or abort it (modelslot rollout abort %s) first",
		app, id, app, app)
}

// Start begins a rollout of slot's deployment into production by plan
// (from ParsePlan). It returns once the rollout is persisted; the Manager
// runs it.
func (m *Manager) Start(ctx context.Context, app, slot string, plan *Plan, actor string) (*Rollout, error) {
	if plan == nil || plan.Source() == "" {
		return nil, modelslot.Errorf(modelslot.EINVALID, "rollout: a plan is required (parse it with ParsePlan)")
	}
	if err := checkMeasurable(plan, m.cfg.Metrics); err != nil {
		return nil, err
	}
	if slot == modelslot.Production || slot == modelslot.Self {
		return nil, modelslot.Errorf(modelslot.EINVALID, "rollout: the candidate cannot be production itself: deploy the new version to a slot (e.g. staging) and roll that slot out")
	}
	a, err := m.cfg.Platform.App(ctx, app)
	if err != nil {
		return nil, fmt.Errorf("start rollout: %w", err)
	}
	s := a.Slot(slot)
	if s == nil {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "rollout: app %q has no slot %q", app, slot)
	}
	if s.Deployment == nil {
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "rollout: slot %q has no deployment: deploy the candidate to it first", slot)
	}
	if s.PreparedForSwap != "" {
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "rollout: slot %q has a swap preview pending with %q: complete or reset it first", slot, s.PreparedForSwap)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, modelslot.Errorf(modelslot.EUNAVAILABLE, "rollout: the controller is shutting down")
	}
	if r := m.runners[app]; r != nil {
		return nil, conflictError(app, r.id)
	}
	// Before Run has loaded them, active rollouts are only in the store.
	active, err := m.cfg.Store.Rollouts(ctx, app, true, 1)
	if err != nil {
		return nil, fmt.Errorf("start rollout: %w", err)
	}
	if len(active) > 0 {
		return nil, conflictError(app, active[0].ID)
	}
	now := m.now()
	doc := &Rollout{
		ID: newID(now), App: app, Slot: slot, State: Running, Actor: actor,
		Plan: plan, PlanSource: plan.Source(),
		Traffic:   a.Routing.Percent(slot),
		CreatedAt: now, UpdatedAt: now,
	}
	doc.CandidateRevision = s.Deployment.Revision
	if p := a.Slot(modelslot.Production); p != nil && p.Deployment != nil {
		doc.BaselineRevision = p.Deployment.Revision
	}
	r := m.newRunner(doc)
	if err := r.save(ctx); err != nil {
		return nil, fmt.Errorf("start rollout: %w", err)
	}
	out := doc.clone()
	r.publish(ctx, "rollout.started", actor, fmt.Sprintf("rollout %s of slot %q started: %d steps (%s)", doc.ID, slot, len(plan.Steps), planSummary(plan)), nil)
	m.runners[app] = r
	if m.ctx != nil {
		m.launch(r)
	}
	return out, nil
}

func planSummary(p *Plan) string {
	s := ""
	for i, st := range p.Steps {
		if i > 0 {
			s += ", "
		}
		s += st.String()
	}
	return s
}

func newID(now time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	return "r-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// Get returns a rollout by id.
func (m *Manager) Get(ctx context.Context, id string) (*Rollout, error) {
	rec, err := m.cfg.Store.Rollout(ctx, id)
	if err != nil {
		return nil, err
	}
	return viewRollout(rec)
}

// Active returns the app's active rollout, or an ENOTFOUND error.
func (m *Manager) Active(ctx context.Context, app string) (*Rollout, error) {
	recs, err := m.cfg.Store.Rollouts(ctx, app, true, 1)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "app %q has no active rollout", app)
	}
	return viewRollout(recs[0])
}

// History lists the app's rollouts, newest first ("" = every app).
func (m *Manager) History(ctx context.Context, app string, limit int) ([]*Rollout, error) {
	recs, err := m.cfg.Store.Rollouts(ctx, app, false, limit)
	if err != nil {
		return nil, err
	}
	out := make([]*Rollout, 0, len(recs))
	for _, rec := range recs {
		r, err := viewRollout(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// viewRollout decodes a stored rollout for display: a plan that no longer
// parses (a gate kind gone) is shown as stored.
func viewRollout(rec *modelslot.RolloutRecord) (*Rollout, error) {
	r, err := decodeRollout(rec)
	if r == nil {
		return nil, err
	}
	if r.Plan == nil {
		r.Plan = &Plan{}
	}
	return r, nil
}

// Pause holds the app's rollout at its current step: gates stop looking
// and no step starts until Resume or Promote.
func (m *Manager) Pause(ctx context.Context, app, actor string) (*Rollout, error) {
	return m.command(ctx, app, command{op: "pause", actor: actor})
}

// Resume continues a paused rollout. At a pause step it moves on; at a
// phase that reached its deadline inconclusive, the phase gets another
// deadline span.
func (m *Manager) Resume(ctx context.Context, app, actor string) (*Rollout, error) {
	return m.command(ctx, app, command{op: "resume", actor: actor})
}

// Promote skips the rest of the analysis: bakes, watches and pauses pass
// at once, a ramp jumps to its last level, traffic and swap steps still
// run. It is recorded as a manual override.
func (m *Manager) Promote(ctx context.Context, app, actor string) (*Rollout, error) {
	return m.command(ctx, app, command{op: "promote", actor: actor})
}

// Abort rolls the rollout back: the candidate's traffic goes to 0 (pins
// reset) and, if it was swapped in, it is swapped back out.
func (m *Manager) Abort(ctx context.Context, app, actor, reason string) (*Rollout, error) {
	return m.command(ctx, app, command{op: "abort", actor: actor, reason: reason})
}

type command struct {
	op, actor, reason string
	reply             chan commandReply
}

type commandReply struct {
	r   *Rollout
	err error
}

// command hands c to the app's runner, which applies it between two
// actions (a swap in progress finishes first), and waits for the result.
func (m *Manager) command(ctx context.Context, app string, c command) (*Rollout, error) {
	m.mu.Lock()
	r := m.runners[app]
	running := m.ctx != nil && !m.closed
	m.mu.Unlock()
	if r == nil {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "app %q has no active rollout", app)
	}
	if !running {
		return nil, modelslot.Errorf(modelslot.EUNAVAILABLE, "the rollout controller is not running")
	}
	c.reply = make(chan commandReply, 1)
	select {
	case r.cmds <- c:
	case <-r.done:
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "rollout %s has just finished", r.id)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case rep := <-c.reply:
		return rep.r, rep.err
	case <-r.done:
		// A command that ends the rollout (promote to the end, abort)
		// replies and then finishes: both are ready, and select picks
		// either. The reply wins.
		select {
		case rep := <-c.reply:
			return rep.r, rep.err
		default:
		}
		return nil, modelslot.Errorf(modelslot.EUNAVAILABLE, "rollout %s stopped before applying %s", r.id, c.op)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
