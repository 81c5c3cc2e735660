package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
)

// Skipped is the verdict recorded for a phase an operator promoted past.
const Skipped Verdict = "skipped"

// maxSwapAttempts bounds the requests of one swap that the platform
// reports as not done (failed warm-up, ...).
const maxSwapAttempts = 3

// staleSwap is how long a swap record may say "running" before the
// controller stops waiting for it and asks again.
const staleSwap = 15 * time.Minute

// runner owns one rollout's document: only its goroutine touches doc.
type runner struct {
	m        *Manager
	id, app  string
	doc      *Rollout
	cmds     chan command
	done     chan struct{}
	launched bool
	// loadErr: the stored plan no longer parses; the rollout rolls back.
	loadErr error
}

func (m *Manager) newRunner(doc *Rollout) *runner {
	return &runner{m: m, id: doc.ID, app: doc.App, doc: doc, cmds: make(chan command), done: make(chan struct{})}
}

// permanentError marks a failure that retrying will not fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// isPermanent: the platform refused for a reason that will not go away.
func isPermanent(err error) bool {
	var p permanentError
	if errors.As(err, &p) {
		return true
	}
	switch modelslot.ErrorCode(err) {
	case modelslot.EINVALID, modelslot.ENOTFOUND, modelslot.EFORBIDDEN, modelslot.EUNAUTHORIZED:
		return true
	}
	return false
}

func (r *runner) now() time.Time { return r.m.now() }

func (r *runner) actor() string { return "rollout " + r.id }

func (r *runner) interval() time.Duration {
	if r.m.cfg.Interval > 0 {
		return r.m.cfg.Interval
	}
	if r.doc.Plan != nil && r.doc.Plan.Interval > 0 {
		return r.doc.Plan.Interval.D()
	}
	return DefaultInterval
}

func (r *runner) run(ctx context.Context) {
	defer close(r.done)
	defer r.m.remove(r)
	if r.loadErr != nil && r.doc.State != RollingBack {
		r.startRollback(RolledBack, fmt.Sprintf("the rollout cannot resume: %s", modelslot.ErrorMessage(r.loadErr)), r.actor())
		if err := r.save(ctx); err != nil {
			r.m.log.Error("save rollout", "rollout", r.id, "err", err)
		}
	}
	for r.doc.State.Active() {
		before := r.doc.State
		wait, err := r.advance(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil && before != RollingBack && r.doc.State == RollingBack {
			// A failing verdict rolls back at once, not an interval later:
			// every moment the candidate keeps its share hurts users.
			wait = false
		}
		if err != nil {
			if isPermanent(err) && r.doc.State != RollingBack {
				r.startRollback(RolledBack, fmt.Sprintf("step %d (%s) failed: %s", r.doc.Step+1, r.stepName(), modelslot.ErrorMessage(err)), r.actor())
				r.doc.Rollback.Final = Failed
				if err := r.save(ctx); err != nil {
					r.noteError(ctx, err)
				}
				continue
			}
			if isPermanent(err) && r.doc.State == RollingBack {
				r.finish(ctx, Failed, fmt.Sprintf("%s; the rollback could not complete: %s: check the app's traffic and slots", r.doc.Rollback.Reason, modelslot.ErrorMessage(err)))
				return
			}
			r.noteError(ctx, err)
			wait = true
		} else if r.doc.LastError != "" {
			r.doc.LastError, r.doc.LastErrorAt = "", time.Time{}
		}
		if wait && !r.sleep(ctx) {
			return
		}
	}
}

func (r *runner) stepName() string {
	if r.doc.Plan == nil || r.doc.Step >= len(r.doc.Plan.Steps) {
		return "completion"
	}
	return r.doc.Plan.Steps[r.doc.Step].Kind()
}

// noteError records a transient failure (published once per message) and
// leaves the rollout to retry at the next interval.
func (r *runner) noteError(ctx context.Context, err error) {
	msg := modelslot.ErrorMessage(err)
	r.m.log.Warn("rollout step failed; retrying", "rollout", r.id, "app", r.app, "step", r.doc.Step, "err", err)
	if msg == r.doc.LastError {
		return
	}
	r.doc.LastError, r.doc.LastErrorAt = msg, r.now()
	r.publish(ctx, "rollout.error", r.actor(), fmt.Sprintf("step %d (%s): %s; retrying every %v", r.doc.Step+1, r.stepName(), msg, r.interval()), nil)
	if err := r.save(ctx); err != nil {
		r.m.log.Error("save rollout", "rollout", r.id, "err", err)
	}
}

// sleep waits one interval, or less if a command arrives (applied here).
// It returns false when ctx ends.
func (r *runner) sleep(ctx context.Context) bool {
	t := time.NewTimer(r.interval())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case c := <-r.cmds:
		rep := commandReply{}
		rep.err = r.apply(ctx, c)
		if rep.err == nil && c.op == "abort" && r.doc.State == RollingBack {
			// Roll back before answering, so that when Abort returns no new
			// request reaches the candidate. If a step cannot finish now
			// (a swap still running), the answer says rolling_back and the
			// run loop completes it.
			if _, err := r.rollback(ctx); err != nil {
				r.noteError(ctx, err)
			}
		}
		if rep.err == nil {
			rep.r = r.doc.clone()
		}
		c.reply <- rep
		return true
	}
}

// save persists the whole document.
func (r *runner) save(ctx context.Context) error {
	r.doc.UpdatedAt = r.now()
	rec, err := r.doc.record()
	if err != nil {
		return err
	}
	return r.m.cfg.Store.PutRollout(ctx, rec)
}

func (r *runner) publish(ctx context.Context, typ, actor, msg string, data any) {
	if r.m.cfg.Events == nil {
		return
	}
	e := &modelslot.Event{Time: r.now(), App: r.app, Rollout: r.id, Type: typ, Actor: actor, Message: msg}
	if data != nil {
		if b, err := json.Marshal(data); err == nil {
			e.Data = b
		}
	}
	r.m.cfg.Events.Publish(context.WithoutCancel(ctx), e)
}

// apply runs an operator's command.
func (r *runner) apply(ctx context.Context, c command) error {
	d := r.doc
	now := r.now()
	conflict := func(what string) error {
		return modelslot.Errorf(modelslot.ECONFLICT, "rollout %s is %s: cannot %s it", r.id, strings.ReplaceAll(string(d.State), "_", " "), what)
	}
	override := Override{Time: now, Action: c.op, Actor: c.actor, Step: d.Step, Reason: c.reason}
	switch c.op {
	case "pause":
		if d.State != Running {
			return conflict("pause")
		}
		d.State, d.PausedAt, d.Reason = Paused, now, "paused by "+c.actor
		if cur := d.Current; cur != nil {
			cur.PauseUntil = time.Time{} // a manual pause holds a timed pause step too
		}
		d.Overrides = append(d.Overrides, override)
		if err := r.save(ctx); err != nil {
			return err
		}
		r.publish(ctx, "rollout.paused", c.actor, fmt.Sprintf("paused at step %d (%s) by %s", d.Step+1, r.stepName(), c.actor), override)
	case "resume":
		if d.State != Paused {
			return conflict("resume")
		}
		r.resume(now)
		d.Overrides = append(d.Overrides, override)
		if err := r.save(ctx); err != nil {
			return err
		}
		r.publish(ctx, "rollout.resumed", c.actor, fmt.Sprintf("resumed at step %d (%s) by %s", d.Step+1, r.stepName(), c.actor), override)
	case "promote":
		if d.State != Running && d.State != Paused {
			return conflict("promote")
		}
		if d.State == Paused {
			r.resume(now)
		}
		d.Promoted = true
		d.Overrides = append(d.Overrides, override)
		if err := r.save(ctx); err != nil {
			return err
		}
		r.publish(ctx, "rollout.promoted", c.actor, fmt.Sprintf("manual override by %s at step %d: the rest of the analysis is skipped", c.actor, d.Step+1), override)
	case "abort":
		if d.State == RollingBack {
			return conflict("abort")
		}
		reason := "aborted by " + c.actor
		if c.reason != "" {
			reason += ": " + c.reason
		}
		d.Overrides = append(d.Overrides, override)
		r.startRollback(Aborted, reason, c.actor)
		if err := r.save(ctx); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown command %q", c.op)
	}
	return nil
}

// resume returns a paused rollout to running; a phase's deadline moves by
// the time spent paused, or by a whole span after an inconclusive pause.
func (r *runner) resume(now time.Time) {
	d := r.doc
	if ph := d.currentPhase(); ph != nil {
		if ph.AwaitingDecision {
			ph.AwaitingDecision = false
			ph.Deadline = now.Add(ph.Span.D())
		} else if !d.PausedAt.IsZero() {
			ph.Deadline = ph.Deadline.Add(now.Sub(d.PausedAt))
		}
	}
	d.State, d.PausedAt, d.Reason = Running, time.Time{}, ""
}

func (d *Rollout) currentPhase() *Phase {
	if d.Current == nil || d.Current.Index != d.Step {
		return nil
	}
	return d.Current.Phase
}

func (r *runner) startRollback(final State, reason, actor string) {
	d := r.doc
	d.State, d.Reason, d.PausedAt = RollingBack, reason, time.Time{}
	d.Rollback = &Rollback{Final: final, Reason: reason, Actor: actor, StartedAt: r.now()}
	r.publish(context.Background(), "rollout.rollback", actor, "rolling back: "+reason, d.Rollback)
}

// finish ends the rollout in a terminal state.
func (r *runner) finish(ctx context.Context, st State, reason string) {
	d := r.doc
	d.State, d.Reason, d.FinishedAt = st, reason, r.now()
	d.Current = nil
	// Not busy from here: Start's check of the store covers the instant
	// until the terminal state is saved.
	r.m.remove(r)
	for {
		err := r.save(ctx)
		if err == nil {
			break
		}
		r.m.log.Error("save finished rollout; retrying", "rollout", r.id, "err", err)
		if !r.sleepOnly(ctx) {
			return
		}
	}
	r.publish(ctx, "rollout.completed", r.actor(), fmt.Sprintf("rollout %s %s: %s", r.id, strings.ReplaceAll(string(st), "_", " "), reason), map[string]any{"state": st, "reason": reason})
}

func (r *runner) sleepOnly(ctx context.Context) bool {
	t := time.NewTimer(r.interval())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// advance does the next piece of work. wait asks for an interval (or a
// command) before the next call.
func (r *runner) advance(ctx context.Context) (wait bool, err error) {
	d := r.doc
	switch d.State {
	case RollingBack:
		return r.rollback(ctx)
	case Paused:
		if c := d.Current; c != nil && c.Index == d.Step && c.PauseEntered && !c.PauseUntil.IsZero() && !r.now().Before(c.PauseUntil) {
			d.State, d.Reason, d.PausedAt = Running, "", time.Time{}
			if err := r.save(ctx); err != nil {
				return true, err
			}
			r.publish(ctx, "rollout.resumed", r.actor(), fmt.Sprintf("pause step %d ended after %v", d.Step+1, d.Plan.Steps[d.Step].Pause.Duration.D()), nil)
			return false, nil
		}
		return true, nil
	}
	if d.Step >= len(d.Plan.Steps) {
		return r.complete(ctx)
	}
	step := d.Plan.Steps[d.Step]
	if d.Current == nil || d.Current.Index != d.Step {
		d.Current = &StepState{Index: d.Step, Kind: step.Kind(), StartedAt: r.now()}
		if err := r.save(ctx); err != nil {
			return true, err
		}
		r.publish(ctx, "rollout.step", r.actor(), fmt.Sprintf("step %d/%d started: %s", d.Step+1, len(d.Plan.Steps), step), map[string]any{"step": d.Step, "kind": step.Kind(), "status": "started"})
	}
	switch {
	case step.Traffic != nil:
		if err := r.setShare(ctx, *step.Traffic, false); err != nil {
			return true, err
		}
		return r.nextStep(ctx, fmt.Sprintf("slot %q has %g%% of the traffic", d.Slot, *step.Traffic))
	case step.Pause != nil:
		return r.pauseStep(ctx, step.Pause)
	case step.Swap != nil:
		return r.swapStep(ctx, step.Swap)
	case step.Bake != nil:
		return r.bakeStep(ctx, step.Bake, d.Slot, modelslot.Production)
	case step.Watch != nil:
		return r.bakeStep(ctx, step.Watch, modelslot.Production, d.Slot)
	case step.RampUp != nil:
		return r.rampStep(ctx, step.RampUp)
	}
	return true, permanentError{fmt.Errorf("step %d has no kind", d.Step+1)}
}

func (r *runner) nextStep(ctx context.Context, outcome string) (bool, error) {
	d := r.doc
	i := d.Step
	d.Step++
	d.Current = nil
	if err := r.save(ctx); err != nil {
		d.Step-- // the step is redone: every step is safe to repeat
		return true, err
	}
	r.publish(ctx, "rollout.step", r.actor(), fmt.Sprintf("step %d/%d done: %s", i+1, len(d.Plan.Steps), outcome), map[string]any{"step": i, "kind": d.Plan.Steps[i].Kind(), "status": "done", "outcome": outcome})
	return false, nil
}

// setShare gives the rollout's slot pct% of the traffic, leaving the other
// slots' rules as they are (SetTraffic replaces them all).
func (r *runner) setShare(ctx context.Context, pct float64, resetPins bool) error {
	a, err := r.m.cfg.Platform.App(ctx, r.app)
	if err != nil {
		return err
	}
	rules := make([]modelslot.TrafficRule, 0, len(a.Routing.Rules)+1)
	for _, rule := range a.Routing.Rules {
		if rule.Slot != r.doc.Slot {
			rules = append(rules, rule)
		}
	}
	if pct > 0 {
		rules = append(rules, modelslot.TrafficRule{Slot: r.doc.Slot, Percent: pct})
	}
	if _, err := r.m.cfg.Platform.SetTraffic(ctx, r.app, rules, modelslot.TrafficOptions{ResetPins: resetPins, Actor: r.actor()}); err != nil {
		return fmt.Errorf("set traffic of %s to %g%%: %w", r.doc.Slot, pct, err)
	}
	r.doc.Traffic = pct
	return nil
}

func (r *runner) pauseStep(ctx context.Context, p *Pause) (bool, error) {
	d := r.doc
	c := d.Current
	if d.Promoted {
		return r.nextStep(ctx, "skipped: promoted")
	}
	if c.PauseEntered {
		return r.nextStep(ctx, "resumed")
	}
	c.PauseEntered = true
	d.State, d.PausedAt = Paused, r.now()
	d.Reason = "pause step: waiting for resume or promote"
	if p.Duration > 0 {
		c.PauseUntil = d.PausedAt.Add(p.Duration.D())
		d.Reason += " (or until " + c.PauseUntil.UTC().Format(time.RFC3339) + ")"
	}
	if err := r.save(ctx); err != nil {
		c.PauseEntered, d.State = false, Running
		return true, err
	}
	r.publish(ctx, "rollout.paused", r.actor(), fmt.Sprintf("step %d: %s", d.Step+1, d.Reason), nil)
	return true, nil
}

func (r *runner) swapStep(ctx context.Context, s *Swap) (bool, error) {
	d := r.doc
	if d.Swap == nil {
		d.Swap = &SwapOp{Source: d.Slot, Target: modelslot.Production}
	}
	if !d.Swapped {
		done, err := r.ensureSwap(ctx, d.Swap)
		if err != nil || !done {
			return true, err
		}
		d.Swapped = true
		if err := r.save(ctx); err != nil {
			return true, err
		}
		r.publish(ctx, "rollout.swap", r.actor(), fmt.Sprintf("slot %q (revision %s) swapped into production", d.Slot, d.Swap.SourceRevision), d.Swap)
	}
	if err := r.setShare(ctx, s.BaselineTraffic, false); err != nil {
		return true, err
	}
	return r.nextStep(ctx, fmt.Sprintf("swapped into production; slot %q (now the previous deployment) keeps %g%%", d.Slot, s.BaselineTraffic))
}

// ensureSwap makes op happen exactly once, across restarts. It returns
// done=false without an error while a swap is still in progress.
func (r *runner) ensureSwap(ctx context.Context, op *SwapOp) (bool, error) {
	if op.Done {
		return true, nil
	}
	p := r.m.cfg.Platform
	if !op.RequestedAt.IsZero() {
		st, err := r.checkSwap(ctx, op)
		if err != nil {
			return false, err
		}
		switch st {
		case swapDone:
			op.Done, op.Error = true, ""
			return true, r.save(ctx)
		case swapRunning:
			return false, nil
		}
		if op.Attempts >= maxSwapAttempts {
			return false, permanentError{fmt.Errorf("swap %s -> %s did not happen after %d attempts: %s", op.Source, op.Target, op.Attempts, op.Error)}
		}
	}
	a, err := p.App(ctx, r.app)
	if err != nil {
		return false, err
	}
	op.SourceRevision, op.TargetRevision = revision(a, op.Source), revision(a, op.Target)
	hist, err := p.Swaps(ctx, r.app, 1)
	if err != nil {
		return false, err
	}
	op.HistoryMark = 0
	if len(hist) > 0 {
		op.HistoryMark = hist[0].ID
	}
	op.RequestedAt = r.now()
	op.Attempts++
	// Persisted before the call: a restart from here checks, never repeats.
	if err := r.save(ctx); err != nil {
		return false, err
	}
	rec, err := p.Swap(ctx, r.app, modelslot.SwapRequest{Source: op.Source, Target: op.Target, Action: modelslot.SwapActionSwap, Actor: r.actor()})
	if err != nil {
		op.Error = modelslot.ErrorMessage(err)
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		// Whether it happened is checked at the next call.
		if isPermanent(err) && modelslot.ErrorCode(err) != modelslot.ECONFLICT {
			return false, permanentError{fmt.Errorf("swap %s -> %s: %w", op.Source, op.Target, err)}
		}
		return false, fmt.Errorf("swap %s -> %s: %w", op.Source, op.Target, err)
	}
	if rec != nil && rec.Status != modelslot.SwapCompleted {
		op.Error = fmt.Sprintf("swap ended %s: %s", rec.Status, rec.Error)
		return false, fmt.Errorf("swap %s -> %s: %s", op.Source, op.Target, op.Error)
	}
	op.Done, op.Error = true, ""
	if rec != nil {
		op.RecordID = rec.ID
	}
	return true, r.save(ctx)
}

type swapStatus int

const (
	swapNotDone swapStatus = iota
	swapRunning
	swapDone
)

func revision(a *modelslot.App, slot string) string {
	if s := a.Slot(slot); s != nil && s.Deployment != nil {
		return s.Deployment.Revision
	}
	return ""
}

// checkSwap finds out whether a requested swap happened: by the slots'
// revisions when they differ, else by the platform's swap history.
func (r *runner) checkSwap(ctx context.Context, op *SwapOp) (swapStatus, error) {
	p := r.m.cfg.Platform
	a, err := p.App(ctx, r.app)
	if err != nil {
		return swapNotDone, err
	}
	hist, err := p.Swaps(ctx, r.app, 50)
	if err != nil {
		return swapNotDone, err
	}
	var mine *modelslot.SwapRecord
	for _, rec := range hist { // newest first
		if rec.ID > op.HistoryMark && rec.Source == op.Source && (rec.Target == op.Target || rec.Target == "" && op.Target == modelslot.Production) &&
			(rec.Action == "" || rec.Action == modelslot.SwapActionSwap) {
			mine = rec
			break
		}
	}
	if op.SourceRevision != op.TargetRevision {
		if revision(a, op.Target) == op.SourceRevision && revision(a, op.Source) == op.TargetRevision {
			if mine != nil {
				op.RecordID = mine.ID
			}
			return swapDone, nil
		}
		if mine != nil && mine.Status == modelslot.SwapRunning && r.now().Sub(op.RequestedAt) < staleSwap {
			return swapRunning, nil
		}
		return swapNotDone, nil
	}
	if mine == nil {
		return swapNotDone, nil
	}
	switch mine.Status {
	case modelslot.SwapCompleted:
		op.RecordID = mine.ID
		return swapDone, nil
	case modelslot.SwapRunning:
		if r.now().Sub(op.RequestedAt) < staleSwap {
			return swapRunning, nil
		}
	default:
		op.Error = fmt.Sprintf("swap %s: %s", mine.Status, mine.Error)
	}
	return swapNotDone, nil
}

// judged describes one judged phase.
type judged struct {
	gates               []*GateSpec
	candidate, baseline string
	minDuration         time.Duration
	minRequests         int64
	span                time.Duration
	policy              Policy
}

type outcome int

const (
	pending outcome = iota
	passed
	stopped // rolled back or paused: the state says which
)

func (r *runner) gatesFor(step []GateSpec) []*GateSpec {
	var out []*GateSpec
	if g := r.doc.Plan.Analysis.Gates; g != nil {
		for i := range *g {
			out = append(out, &(*g)[i])
		}
	}
	for i := range step {
		out = append(out, &step[i])
	}
	return out
}

func (r *runner) newPhase(j judged) *Phase {
	now := r.now()
	ph := &Phase{StartedAt: now, Deadline: now.Add(j.span), Span: modelslot.Duration(j.span), Cursor: now}
	for _, g := range j.gates {
		ph.Gates = append(ph.Gates, GateState{Kind: g.Kind})
	}
	return ph
}

func (r *runner) bakeStep(ctx context.Context, b *Bake, candidate, baseline string) (bool, error) {
	c := r.doc.Current
	j := judged{
		gates: r.gatesFor(b.Gates), candidate: candidate, baseline: baseline,
		minDuration: b.Duration.D(), minRequests: int64(b.MinRequests), span: b.Max.D(), policy: b.OnInconclusive,
	}
	if c.Phase == nil {
		c.Phase = r.newPhase(j)
		if err := r.save(ctx); err != nil {
			c.Phase = nil
			return true, err
		}
	}
	out, err := r.judge(ctx, c.Phase, j)
	if err != nil || out != passed {
		return true, err
	}
	return r.nextStep(ctx, "gates passed: "+c.Phase.Reason)
}

func (r *runner) rampStep(ctx context.Context, ru *RampUp) (bool, error) {
	d := r.doc
	c := d.Current
	bound := *ru.Max
	if ru.ChangeStep < 0 {
		bound = *ru.Min
	}
	if d.Promoted {
		if err := r.setShare(ctx, bound, false); err != nil {
			return true, err
		}
		return r.nextStep(ctx, fmt.Sprintf("promoted: ramp jumped to %g%%", bound))
	}
	j := judged{
		gates: r.gatesFor(ru.Gates), candidate: d.Slot, baseline: modelslot.Production,
		minDuration: ru.Every(), minRequests: int64(ru.MinRequests), span: ru.Every(), policy: ru.OnInconclusive,
	}
	if c.Phase == nil {
		// Set the next level: the first one moves from the current share.
		from := d.Traffic
		if c.Levels > 0 {
			from = c.Percent
		}
		level := clamp(from+ru.ChangeStep, *ru.Min, *ru.Max)
		if err := r.setShare(ctx, level, false); err != nil {
			return true, err
		}
		c.Percent = level
		c.Levels++
		c.Phase = r.newPhase(j)
		if err := r.save(ctx); err != nil {
			return true, err
		}
		r.publish(ctx, "rollout.step", r.actor(), fmt.Sprintf("step %d: ramp level %d: slot %q has %g%% of the traffic", d.Step+1, c.Levels, d.Slot, level), map[string]any{"step": d.Step, "kind": KindRampUp, "status": "level", "percent": level})
		return true, nil
	}
	out, err := r.judge(ctx, c.Phase, j)
	if err != nil || out != passed {
		return true, err
	}
	if c.Percent == bound {
		return r.nextStep(ctx, fmt.Sprintf("ramp reached %g%% after %d levels", bound, c.Levels))
	}
	c.Phase = nil // the next call sets the next level
	return false, r.save(ctx)
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

// judge takes one look at a phase and decides: pending, passed, or stopped
// (rolled back or paused, with the verdict recorded and published).
func (r *runner) judge(ctx context.Context, ph *Phase, j judged) (outcome, error) {
	d := r.doc
	if ph.AwaitingDecision {
		return pending, nil
	}
	if d.Promoted {
		r.recordVerdict(ctx, ph, Skipped, "promoted", "analysis skipped: promoted by an operator", d.lastPromoter())
		return passed, nil
	}
	now := r.now()
	ph.Looks++
	var candData, baseData modelslot.Series
	var measureErr error
	if ms := r.m.cfg.Metrics; ms != nil && now.After(ph.Cursor) {
		settle := d.Plan.metricsDelay()
		cs, err := ms.Series(ctx, modelslot.MetricQuery{App: r.app, Slot: j.candidate, From: ph.Cursor, To: now, Settle: settle})
		if err == nil {
			var bs modelslot.Series
			bs, err = ms.Series(ctx, modelslot.MetricQuery{App: r.app, Slot: j.baseline, From: ph.Cursor, To: now, Settle: settle})
			if err == nil {
				end := minTime(covered(cs, ph.Cursor, now), covered(bs, ph.Cursor, now))
				candData, baseData = trim(cs, end), trim(bs, end)
				ph.Cursor = end
				ph.Judged = appendBuckets(ph.Judged, candData)
				ph.CandidateRequests += requests(candData)
				ph.BaselineRequests += requests(baseData)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return pending, ctx.Err()
			}
			measureErr = err
		}
	}
	var gatewayURL string
	if f := r.m.cfg.GatewayURL; f != nil {
		gatewayURL = f()
	}
	results := make([]GateResult, len(j.gates))
	for i, g := range j.gates {
		gs := &ph.Gates[i]
		in := GateInput{
			App: r.app, Candidate: j.candidate, Baseline: j.baseline, From: ph.StartedAt, To: now,
			CandidateData: candData, BaselineData: baseData,
			Platform: r.m.cfg.Platform, Metrics: r.m.cfg.Metrics, GatewayURL: gatewayURL, GatewayHeaders: r.m.cfg.GatewayHeaders, State: gs.State,
		}
		res, err := g.gate.Evaluate(ctx, in)
		if err != nil {
			if ctx.Err() != nil {
				return pending, ctx.Err()
			}
			res = GateResult{Verdict: Inconclusive, Reason: "measurement failed: " + err.Error()}
		} else {
			gs.State = res.State
		}
		if measureErr != nil && res.Verdict != Fail {
			res.Verdict = Inconclusive
			res.Reason = "metrics unavailable: " + modelslot.ErrorMessage(measureErr) + "; " + res.Reason
		}
		gs.Result = &res
		results[i] = res
	}
	verdict, reason := aggregate(j.gates, results)
	ph.Verdict, ph.Reason = verdict, reason
	elapsed := now.Sub(ph.StartedAt)
	if r.m.cfg.Metrics != nil && ph.Cursor.Before(now) {
		// A source that reports late (Azure Monitor) has judged less
		// than the wall time: the phase's duration counts judged time.
		elapsed = ph.Cursor.Sub(ph.StartedAt)
	}

	switch {
	case verdict == Fail:
		r.recordVerdict(ctx, ph, Fail, "rollback", reason, "")
		r.startRollback(RolledBack, fmt.Sprintf("step %d (%s) failed its gates: %s", d.Step+1, r.stepName(), reason), r.actor())
		return stopped, r.save(ctx)
	case verdict == Pass && elapsed >= j.minDuration && ph.CandidateRequests >= j.minRequests:
		r.recordVerdict(ctx, ph, Pass, "continue", reason, "")
		return passed, nil // the caller moves on and saves
	case now.Before(ph.Deadline):
		return pending, r.save(ctx)
	}

	// The deadline passed without a pass.
	why := reason
	if verdict == Pass {
		why = fmt.Sprintf("gates pass but the phase has %d of the %d candidate requests it needs", ph.CandidateRequests, j.minRequests)
	}
	switch {
	case j.policy == InconclusiveExtend && !ph.Extended:
		ph.Extended = true
		ph.Deadline = now.Add(j.span)
		r.recordVerdict(ctx, ph, Inconclusive, "extend", why+"; collecting for another "+j.span.String(), "")
	case j.policy == InconclusivePause:
		ph.AwaitingDecision = true
		d.State, d.PausedAt = Paused, now
		d.Reason = fmt.Sprintf("step %d (%s) is inconclusive at its deadline: %s; promote to accept, resume to collect for another %v, abort to roll back", d.Step+1, r.stepName(), why, j.span)
		r.recordVerdict(ctx, ph, Inconclusive, "pause", why, "")
		r.publish(ctx, "rollout.paused", r.actor(), d.Reason, nil)
		return stopped, r.save(ctx)
	default:
		if ph.Extended {
			why += " (still, after an extension)"
		}
		r.recordVerdict(ctx, ph, Inconclusive, "rollback", why, "")
		r.startRollback(RolledBack, fmt.Sprintf("step %d (%s) is inconclusive at its deadline: %s", d.Step+1, r.stepName(), why), r.actor())
		return stopped, r.save(ctx)
	}
	return pending, r.save(ctx)
}

func (d *Rollout) lastPromoter() string {
	for i := len(d.Overrides) - 1; i >= 0; i-- {
		if d.Overrides[i].Action == "promote" {
			return d.Overrides[i].Actor
		}
	}
	return ""
}

func aggregate(gates []*GateSpec, results []GateResult) (Verdict, string) {
	if len(results) == 0 {
		return Pass, "no gates: time and request minimums only"
	}
	v := Pass
	var reasons []string
	for i, res := range results {
		reasons = append(reasons, gates[i].Kind+": "+res.Reason)
		switch {
		case res.Verdict == Fail:
			v = Fail
		case res.Verdict != Pass && v != Fail:
			v = Inconclusive
		}
	}
	return v, strings.Join(reasons, "; ")
}

func (r *runner) recordVerdict(ctx context.Context, ph *Phase, v Verdict, decision, reason, actor string) {
	d := r.doc
	rec := VerdictRecord{
		Time: r.now(), Step: d.Step, StepKind: r.stepName(), Percent: d.Traffic, Verdict: v, Decision: decision,
		Reason: reason, From: ph.StartedAt, To: ph.Cursor, CandidateRequests: ph.CandidateRequests, BaselineRequests: ph.BaselineRequests,
		Actor: actor, Judged: ph.Judged,
	}
	if rec.Actor == "" {
		rec.Actor = r.actor()
	}
	for _, g := range ph.Gates {
		if g.Result != nil {
			rec.Gates = append(rec.Gates, *g.Result)
		}
	}
	d.Verdicts = append(d.Verdicts, rec)
	r.publish(ctx, "rollout.verdict", rec.Actor, fmt.Sprintf("step %d (%s at %g%%): %s -> %s: %s", d.Step+1, rec.StepKind, rec.Percent, v, decision, reason), rec)
}

// covered returns how far a series' data is final: to for a complete
// series, else its Settled time, else the end of its last bucket (or
// from: nothing yet).
func covered(s modelslot.Series, from, to time.Time) time.Time {
	if s.Complete {
		return to
	}
	if !s.Settled.IsZero() {
		return minTime(maxTime(s.Settled, from), to)
	}
	end := from
	for _, b := range s.Buckets {
		if e := b.Start.Add(b.Grain); e.After(end) && !e.After(to) {
			end = e
		}
	}
	return end
}

// trim keeps the data before end and marks it complete.
func trim(s modelslot.Series, end time.Time) modelslot.Series {
	out := modelslot.Series{Slot: s.Slot, Complete: true}
	for _, x := range s.Samples {
		if x.Time.Before(end) {
			out.Samples = append(out.Samples, x)
		}
	}
	for _, b := range s.Buckets {
		if !b.Start.Add(b.Grain).After(end) {
			out.Buckets = append(out.Buckets, b)
		}
	}
	return out
}

// appendBuckets adds the start of each of s's buckets to list (the minutes
// a source with buckets gave the gates), keeping at most maxJudged.
func appendBuckets(list []time.Time, s modelslot.Series) []time.Time {
	for _, b := range s.Buckets {
		if len(list) < maxJudged {
			list = append(list, b.Start)
		}
	}
	return list
}

// maxJudged bounds Phase.Judged: a day of minutes.
const maxJudged = 1440

func requests(s modelslot.Series) int64 {
	n := int64(len(s.Samples))
	for _, b := range s.Buckets {
		n += b.Requests
	}
	return n
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// complete ends a rollout whose steps all passed.
func (r *runner) complete(ctx context.Context) (bool, error) {
	d := r.doc
	if d.Swapped && d.Traffic != 0 {
		// The slot now serves the previous deployment: it gets nothing.
		if err := r.setShare(ctx, 0, false); err != nil {
			return true, err
		}
	}
	reason := fmt.Sprintf("all %d steps done", len(d.Plan.Steps))
	if d.Swapped {
		reason += "; the candidate is in production"
	}
	if d.Promoted {
		reason += "; analysis skipped by " + d.lastPromoter() + " (manual override)"
	}
	r.finish(ctx, Succeeded, reason)
	return false, nil
}

// rollback undoes the rollout: swap back if it swapped, then the slot's
// traffic to 0 with pins reset. Every part is safe to repeat.
func (r *runner) rollback(ctx context.Context) (bool, error) {
	d := r.doc
	rb := d.Rollback
	// A swap whose outcome is unknown must be settled first.
	if op := d.Swap; op != nil && !op.Done && !op.RequestedAt.IsZero() && !d.Swapped {
		st, err := r.checkSwap(ctx, op)
		if err != nil {
			return true, err
		}
		switch st {
		case swapRunning:
			return true, nil
		case swapDone:
			op.Done, d.Swapped = true, true
		default:
			op.RequestedAt = time.Time{}
			op.Error = "abandoned by the rollback"
		}
		if err := r.save(ctx); err != nil {
			return true, err
		}
	}
	if d.Swapped {
		if rb.SwapBack == nil {
			rb.SwapBack = &SwapOp{Source: d.Slot, Target: modelslot.Production}
		}
		done, err := r.ensureSwap(ctx, rb.SwapBack)
		if err != nil || !done {
			return true, err
		}
		d.Swapped = false
		if err := r.save(ctx); err != nil {
			return true, err
		}
		r.publish(ctx, "rollout.rollback", r.actor(), fmt.Sprintf("swapped back: production serves revision %s again", rb.SwapBack.SourceRevision), rb.SwapBack)
	}
	if !rb.TrafficReset {
		if err := r.setShare(ctx, 0, true); err != nil {
			return true, err
		}
		rb.TrafficReset = true
		if err := r.save(ctx); err != nil {
			return true, err
		}
		r.publish(ctx, "rollout.rollback", r.actor(), fmt.Sprintf("slot %q has 0%% of the traffic; routing pins reset", d.Slot), nil)
	}
	r.finish(ctx, rb.Final, rb.Reason)
	return false, nil
}
