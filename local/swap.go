package local

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
)

// Swap implements modelslot.Platform, following Azure's phases: apply the
// target's sticky settings to the source, warm the source up, flip routing
// atomically, then let the old target deployment drain before it settles
// into the source slot. A failure before the flip leaves the target as it
// was.
func (e *Engine) Swap(ctx context.Context, app string, req modelslot.SwapRequest) (*modelslot.SwapRecord, error) {
	if req.Target == "" {
		req.Target = modelslot.Production
	}
	if req.Target == modelslot.Self {
		req.Target = modelslot.Production
	}
	if req.Source == modelslot.Self {
		req.Source = modelslot.Production
	}
	if req.Action == "" {
		req.Action = modelslot.SwapActionSwap
	}
	switch req.Action {
	case modelslot.SwapActionSwap, modelslot.SwapActionPreview, modelslot.SwapActionReset:
	default:
		return nil, modelslot.Errorf(modelslot.EINVALID, "swap: --action %q is not valid: use swap, preview or reset", req.Action)
	}
	// A slot still restored after a restart is waited for (outside the
	// app's lock, which the restore needs to finish).
	if req.Action != modelslot.SwapActionReset {
		if err := e.awaitRestores(ctx, app, req.Source, req.Target); err != nil {
			return nil, fmt.Errorf("swap: %w", err)
		}
	}
	unlock := e.lockApp(app)
	defer unlock()
	a, err := e.app(app)
	if err != nil {
		return nil, err
	}
	src, dst := a.Slot(req.Source), a.Slot(req.Target)
	for _, c := range []struct {
		name string
		s    *modelslot.Slot
	}{{req.Source, src}, {req.Target, dst}} {
		if c.s == nil {
			return nil, modelslot.Errorf(modelslot.ENOTFOUND, "swap: app %s has no slot %q (slots: %s)", app, c.name, strings.Join(a.SlotNames(), ", "))
		}
	}
	if src == dst {
		return nil, modelslot.Errorf(modelslot.EINVALID, "swap: source and target are both %s: name two different slots", src.Name)
	}
	rec := &modelslot.SwapRecord{
		App: app, Source: src.Name, Target: dst.Name, Action: req.Action, Actor: req.Actor,
		Status: modelslot.SwapRunning, Phase: modelslot.PhaseApplySettings, StartedAt: time.Now().UTC(),
	}
	if src.Deployment != nil {
		rec.SourceRevision = src.Deployment.Revision
	}
	if dst.Deployment != nil {
		rec.TargetRevision = dst.Deployment.Revision
	}
	pending := src.PreparedForSwap == dst.Name && dst.PreparedForSwap == src.Name
	if req.Action == modelslot.SwapActionReset {
		return e.resetPreview(ctx, a, src, dst, rec, pending)
	}
	if !pending {
		for _, s := range []*modelslot.Slot{src, dst} {
			if s.PreparedForSwap != "" {
				return nil, errPrepared(s.Name, s.PreparedForSwap)
			}
		}
	}
	if src.Deployment == nil {
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "swap: slot %s has no deployment to swap into %s: deploy to it first", src.Name, dst.Name)
	}
	if err := e.store.AddSwap(ctx, rec); err != nil {
		return nil, err
	}
	e.emit(ctx, app, "swap.started", req.Actor, "%s of %s (%s) into %s started", req.Action, src.Name, src.Deployment.Label(), dst.Name)

	e.mu.RLock()
	srcRT := e.backends[key(app, src.Name)]
	dstRT := e.backends[key(app, dst.Name)]
	prepared := e.prepared[app]
	e.mu.RUnlock()

	// Phase 1: the source gets the target's sticky settings. A managed
	// process whose environment changes is started anew beside the one that
	// keeps serving the source slot until the flip.
	prt := srcRT
	if pending && prepared != nil {
		prt = prepared
	} else if !pending {
		prt, err = e.prepare(ctx, app, src, dst, srcRT)
		if err != nil {
			return e.failSwap(ctx, rec, err)
		}
	}
	if prt == nil {
		return e.failSwap(ctx, rec, modelslot.Errorf(modelslot.EUNAVAILABLE, "slot %s has no running backend", src.Name))
	}
	if req.Action == modelslot.SwapActionPreview {
		src.PreparedForSwap, dst.PreparedForSwap = dst.Name, src.Name
		rec.Status, rec.Phase, rec.FinishedAt = modelslot.SwapPreviewed, modelslot.PhaseApplySettings, time.Now().UTC()
		if err := e.commit(ctx, a, rec, nil); err != nil {
			return nil, err
		}
		if prt != srcRT {
			e.mu.Lock()
			e.prepared[app] = prt
			e.mu.Unlock()
		}
		e.emit(ctx, app, "swap.previewed", req.Actor, "%s has the settings of %s applied; complete with `modelslot swap %s` or cancel with `--action reset`", src.Name, dst.Name, src.Name)
		return rec, nil
	}

	// Phase 2: warm-up.
	rec.Phase = modelslot.PhaseWarmup
	e.store.PutSwap(ctx, rec)
	if err := e.warmup(ctx, prt, src.Deployment); err != nil {
		if prt != srcRT {
			e.stopProc(prt)
			e.mu.Lock()
			delete(e.prepared, app)
			e.mu.Unlock()
			src.PreparedForSwap, dst.PreparedForSwap = "", ""
			e.commit(ctx, a, nil, nil)
		}
		return e.failSwap(ctx, rec, err)
	}

	// Phase 3: flip, in one transaction and one snapshot swap. The routing
	// generation changes so that no cookie still pins a user to the
	// deployment that moved away.
	rec.Phase = modelslot.PhaseFlip
	src.Deployment, dst.Deployment = dst.Deployment, src.Deployment
	src.PreparedForSwap, dst.PreparedForSwap = "", ""
	a.Routing.Generation++
	rec.Phase = modelslot.PhaseDrain
	if err := e.commit(ctx, a, rec, map[string]*runtime{key(app, dst.Name): prt, key(app, src.Name): dstRT}); err != nil {
		return e.failSwap(ctx, rec, err)
	}
	e.mu.Lock()
	delete(e.prepared, app)
	e.mu.Unlock()
	if prt != srcRT {
		e.retire(srcRT) // the source's old process, started with the source's settings
	}
	e.emit(ctx, app, "swap.flipped", req.Actor, "%s now serves %s; %s now holds %s", dst.Name, dst.Deployment.Label(), src.Name, src.Deployment.Label())

	// Phase 4: the old target deployment settles into the source slot. It
	// keeps serving (warm: a swap back is instant) unless the source's sticky
	// settings change its environment, in which case it is restarted after
	// its in-flight requests and streams finish.
	rec.Status = modelslot.SwapCompleted
	rec.FinishedAt = time.Now().UTC()
	if src.Deployment != nil && dstRT != nil && dstRT.proc != nil && envKey(envOf(src.Deployment, src.StickySettings)) != dstRT.envKey {
		e.settle(app, src.Name, src.Deployment, src.StickySettings, dstRT, rec)
	} else {
		rec.Phase = modelslot.PhaseDone
	}
	if err := e.store.PutSwap(ctx, rec); err != nil {
		e.log.Error("save swap", "err", err)
	}
	e.emit(ctx, app, "swap.completed", req.Actor, "swap of %s into %s completed", src.Name, dst.Name)
	out := *rec
	return &out, nil
}

// prepare returns the runtime that will serve the source's deployment with
// the target's sticky settings: the current one when nothing changes.
func (e *Engine) prepare(ctx context.Context, app string, src, dst *modelslot.Slot, cur *runtime) (*runtime, error) {
	d := src.Deployment
	if d.Command == "" && cur != nil {
		return cur, nil // a URL backend has no environment to change
	}
	if cur != nil && envKey(envOf(d, dst.StickySettings)) == cur.envKey {
		return cur, nil
	}
	rt, err := e.startRuntime(ctx, app, src.Name, d, dst.StickySettings)
	if err != nil {
		return nil, fmt.Errorf("apply the settings of %s to %s: %w", dst.Name, src.Name, err)
	}
	return rt, nil
}

// warmup pings the source's warm-up path until Retries answers in a row are
// allowed statuses; each ping waits up to WarmupRequestTimeout and a failed
// one is retried up to 5 times, as on Azure.
func (e *Engine) warmup(ctx context.Context, rt *runtime, d *modelslot.Deployment) error {
	need := max(d.Warmup.Retries, 1)
	var last error
	for ok, fails := 0, 0; ok < need; {
		pctx, cancel := context.WithTimeout(ctx, e.cfg.WarmupRequestTimeout)
		err := e.ping(pctx, rt.backend.URL(), d)
		cancel()
		if err == nil {
			ok++
			continue
		}
		last = err
		fails++
		if fails >= 5 || ctx.Err() != nil {
			return modelslot.Errorf(modelslot.EUNAVAILABLE, "warm-up of %s failed: %v (5 tries); check the warm-up path and statuses (--warmup-path, --warmup-status)", d.Label(), last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(fails) * 200 * time.Millisecond):
		}
	}
	return nil
}

func (e *Engine) failSwap(ctx context.Context, rec *modelslot.SwapRecord, err error) (*modelslot.SwapRecord, error) {
	rec.Status = modelslot.SwapFailed
	rec.Error = modelslot.ErrorMessage(err)
	rec.FinishedAt = time.Now().UTC()
	// Use a fresh context: the caller's may be the reason we failed.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if perr := e.store.PutSwap(sctx, rec); perr != nil {
		e.log.Error("save swap", "err", perr)
	}
	e.emit(sctx, rec.App, "swap.failed", rec.Actor, "swap of %s into %s failed in the %s phase; %s is untouched: %s", rec.Source, rec.Target, rec.Phase, rec.Target, rec.Error)
	return rec, modelslot.Wrapf(err, modelslot.ErrorCode(err), "swap %s into %s failed in the %s phase (%s keeps serving as before): %s", rec.Source, rec.Target, rec.Phase, rec.Target, modelslot.ErrorMessage(err))
}

func (e *Engine) resetPreview(ctx context.Context, a *modelslot.App, src, dst *modelslot.Slot, rec *modelslot.SwapRecord, pending bool) (*modelslot.SwapRecord, error) {
	if !pending {
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "swap: no preview is pending between %s and %s: nothing to reset", src.Name, dst.Name)
	}
	src.PreparedForSwap, dst.PreparedForSwap = "", ""
	rec.Status, rec.Phase, rec.FinishedAt = modelslot.SwapReset, modelslot.PhaseApplySettings, time.Now().UTC()
	if err := e.store.AddSwap(ctx, rec); err != nil {
		return nil, err
	}
	if err := e.commit(ctx, a, rec, nil); err != nil {
		return nil, err
	}
	e.mu.Lock()
	prepared := e.prepared[a.Name]
	delete(e.prepared, a.Name)
	e.mu.Unlock()
	if prepared != nil {
		e.retire(prepared)
	}
	e.emit(ctx, a.Name, "swap.reset", rec.Actor, "swap preview of %s into %s cancelled", src.Name, dst.Name)
	return rec, nil
}

// settle restarts the deployment that moved into a slot with that slot's
// sticky settings once its in-flight requests are done.
func (e *Engine) settle(app, slot string, d *modelslot.Deployment, sticky map[string]string, old *runtime, rec *modelslot.SwapRecord) {
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
		// However the settling ends, the swap record leaves the drain
		// phase: the swap itself completed at the flip.
		defer func() {
			rec := *rec
			rec.Phase = modelslot.PhaseDone
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := e.store.PutSwap(sctx, &rec); err != nil {
				e.log.Error("save swap", "err", err)
			}
		}()
		rt, err := e.startRuntime(ctx, app, slot, d, sticky)
		if err != nil {
			e.log.Error("settle swapped deployment: it keeps serving with its previous settings", "app", app, "slot", slot, "err", err)
			return
		}
		unlock := e.lockApp(app)
		e.mu.Lock()
		cur := e.backends[key(app, slot)]
		if cur == old {
			e.backends[key(app, slot)] = rt
		}
		e.mu.Unlock()
		unlock()
		if cur != old {
			e.stopProc(rt) // the slot changed meanwhile
			return
		}
		e.publish()
		e.retire(old)
	}()
}
