package local

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/modelslot/modelslot"
)

// restore is a slot's backend being brought back after a restart: started
// and health-checked in the background, retried with backoff until it is
// healthy, the slot is deployed again or deleted, or the engine closes.
type restore struct {
	cancel   context.CancelFunc
	revision string
	since    time.Time
	// done is closed after the first attempt, whatever its outcome, or
	// when the restore ends.
	done     chan struct{}
	doneSet  bool
	attempts int
	lastErr  string
}

// state says where the restore is, for status and the gateway's 503.
// Callers hold e.mu.
func (r *restore) state() string {
	if r.attempts == 0 {
		return fmt.Sprintf("starting: its backend is being restored after the daemon's restart (since %s)", r.since.Format(time.TimeOnly))
	}
	return fmt.Sprintf("not healthy yet after the daemon's restart (%d tries, retrying): %s", r.attempts, r.lastErr)
}

// firstDone closes done once. Callers hold e.mu.
func (r *restore) firstDone() {
	if !r.doneSet {
		r.doneSet = true
		close(r.done)
	}
}

// restoreBackoff is the wait before retry n (from 1) of a failed restore.
func restoreBackoff(n int) time.Duration {
	return min(5*time.Second<<min(n-1, 6), 2*time.Minute)
}

// startRestore starts restoring a slot's backend. Callers hold e.mu.
func (e *Engine) startRestore(app, slot string, d *modelslot.Deployment, sticky map[string]string) {
	ctx, cancel := context.WithCancel(context.Background())
	r := &restore{cancel: cancel, revision: d.Revision, since: time.Now(), done: make(chan struct{})}
	k := key(app, slot)
	e.restores[k] = r
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		defer cancel()
		defer func() {
			e.mu.Lock()
			r.firstDone()
			e.mu.Unlock()
		}()
		go func() {
			select {
			case <-e.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		for {
			rt, err := e.startRuntime(ctx, app, slot, d, sticky)
			if err == nil {
				if e.finishRestore(app, slot, r, rt) {
					e.log.Info("slot restored", "app", app, "slot", slot, "revision", d.Revision, "took", time.Since(r.since).Round(time.Millisecond))
				}
				return
			}
			if ctx.Err() != nil {
				return
			}
			e.mu.Lock()
			r.attempts++
			r.lastErr = modelslot.ErrorMessage(err)
			n := r.attempts
			r.firstDone()
			e.mu.Unlock()
			e.publish()
			wait := restoreBackoff(n)
			e.log.Error("restore slot: its deployment is not healthy; it gets no traffic until it is", "app", app, "slot", slot, "try", n, "retry_in", wait, "err", modelslot.ErrorMessage(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}()
}

// finishRestore installs a restored backend if the slot still holds the
// same deployment and nothing replaced the restore meanwhile.
func (e *Engine) finishRestore(app, slot string, r *restore, rt *runtime) bool {
	unlock := e.lockApp(app)
	defer unlock()
	k := key(app, slot)
	e.mu.Lock()
	ok := e.restores[k] == r && e.backends[k] == nil
	if a := e.apps[app]; ok && a != nil {
		s := a.Slot(slot)
		ok = s != nil && s.Deployment != nil && s.Deployment.Revision == r.revision
	}
	if ok {
		e.backends[k] = rt
		delete(e.restores, k)
	}
	r.firstDone()
	r.attempts = max(r.attempts, 1)
	e.mu.Unlock()
	if !ok {
		e.stopProc(rt)
		return false
	}
	e.publish()
	return true
}

// cancelRestore stops restoring a slot: it was deployed again or deleted.
func (e *Engine) cancelRestore(app, slot string) {
	e.mu.Lock()
	r := e.restores[key(app, slot)]
	delete(e.restores, key(app, slot))
	e.mu.Unlock()
	if r != nil {
		r.cancel()
	}
}

// awaitRestores waits until the named slots' restores have had their first
// attempt, then fails if one of them is still not served: a swap needs
// both sides running.
func (e *Engine) awaitRestores(ctx context.Context, app string, slots ...string) error {
	for _, slot := range slots {
		e.mu.RLock()
		r := e.restores[key(app, slot)]
		e.mu.RUnlock()
		if r == nil {
			continue
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			return modelslot.Wrapf(ctx.Err(), modelslot.EUNAVAILABLE, "slot %s is still starting after the daemon's restart", slot)
		}
		e.mu.RLock()
		r, state := e.restores[key(app, slot)], ""
		if r != nil {
			state = r.state()
		}
		e.mu.RUnlock()
		if r != nil {
			return modelslot.Errorf(modelslot.ECONFLICT, "slot %s is %s: wait until `modelslot status` shows it healthy, or deploy to it again", slot, state)
		}
	}
	return nil
}

// Ready says whether the gateway can route: some app's production slot is
// served, and no production slot is still on its first restore attempt
// (starting). why names what is missing.
func (e *Engine) Ready() (ok, starting bool, why string) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	served := false
	var missing []string
	for _, name := range slices.Sorted(maps.Keys(e.apps)) {
		a := e.apps[name]
		s := a.Slot(modelslot.Production)
		switch {
		case s == nil || s.Deployment == nil:
			missing = append(missing, fmt.Sprintf("app %s has no deployment in production", name))
		case e.backends[key(name, s.Name)] != nil:
			served = true
		default:
			if r := e.restores[key(name, s.Name)]; r != nil {
				starting = starting || r.attempts == 0
				missing = append(missing, fmt.Sprintf("app %s: production is %s", name, r.state()))
			} else {
				missing = append(missing, fmt.Sprintf("app %s: production has no running backend", name))
			}
		}
	}
	if served && !starting {
		return true, false, ""
	}
	if len(missing) > 0 {
		why = missing[0]
		if len(missing) > 1 {
			why += fmt.Sprintf(" (and %d more)", len(missing)-1)
		}
	}
	return false, starting, why
}
