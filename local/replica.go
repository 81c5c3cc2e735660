package local

import (
	"context"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
)

// Refresh brings the engine up to the store's state. Replicas that share a
// store (PostgreSQL) call it when another replica announces a change, and
// periodically in case an announcement was lost. For each app whose stored
// version is newer than the one served here it takes the stored app,
// reuses the backends of revisions it already serves (a swap moves them
// between slots, so in-flight requests and streams are not touched),
// starts backends for new revisions (waiting for their health, as a
// deploy does), retires those no slot serves any more (after draining),
// and publishes the new routing. Apps deleted from the store are dropped.
func (e *Engine) Refresh(ctx context.Context) error {
	apps, err := e.store.Apps(ctx)
	if err != nil {
		return err
	}
	stored := make(map[string]bool, len(apps))
	for _, a := range apps {
		stored[a.Name] = true
		if e.servedVersion(a.Name) >= a.StoreVersion {
			continue
		}
		e.refreshApp(ctx, a)
	}
	e.mu.RLock()
	var gone []string
	for name := range e.apps {
		if !stored[name] {
			gone = append(gone, name)
		}
	}
	e.mu.RUnlock()
	for _, name := range gone {
		e.dropApp(name)
	}
	return nil
}

func (e *Engine) servedVersion(app string) int64 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if a := e.apps[app]; a != nil {
		return a.StoreVersion
	}
	return -1
}

func (e *Engine) refreshApp(ctx context.Context, a *modelslot.App) {
	unlock := e.lockApp(a.Name) // which refreshes the app itself
	unlock()
}

// syncLocked brings one app up to the store's version before an operation
// on it (the caller holds its lock), so that a command sent to this
// replica right after a change through another one sees that change. When
// the store cannot be read the operation goes on with what is served; its
// write then fails, or conflicts, with the store's answer.
func (e *Engine) syncLocked(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	apps, err := e.store.Apps(ctx)
	if err != nil {
		return
	}
	for _, a := range apps {
		if a.Name == name && e.servedVersion(name) < a.StoreVersion {
			e.refreshLocked(ctx, a)
		}
	}
}

// refreshLocked replaces the served app by a, the store's newer version;
// the caller holds the app's lock.
func (e *Engine) refreshLocked(ctx context.Context, a *modelslot.App) {
	// The runtimes this replica has for the app, by revision.
	prefix := a.Name + "/"
	have := map[string][]*runtime{}
	e.mu.RLock()
	for k, rt := range e.backends {
		if strings.HasPrefix(k, prefix) && rt != nil {
			have[rt.revision] = append(have[rt.revision], rt)
		}
	}
	e.mu.RUnlock()
	used := map[*runtime]bool{}
	next := map[string]*runtime{}
	for _, s := range a.Slots {
		k := key(a.Name, s.Name)
		if s.Deployment == nil {
			next[k] = nil
			continue
		}
		if rts := have[s.Deployment.Revision]; len(rts) > 0 {
			next[k], have[s.Deployment.Revision] = rts[0], rts[1:]
			used[rts[0]] = true
			continue
		}
		rt, err := e.startRuntime(ctx, a.Name, s.Name, s.Deployment, s.StickySettings)
		if err != nil {
			// The replica that deployed it found it healthy; this one
			// cannot reach it. The slot gets no traffic here until the
			// next refresh that succeeds.
			e.log.Error("replica: start the backend of a slot changed by another replica", "app", a.Name, "slot", s.Name, "revision", s.Deployment.Revision, "err", err)
			next[k] = nil
			continue
		}
		next[k] = rt
	}
	// Slots that are gone lose their runtime too.
	e.mu.RLock()
	var retired []*runtime
	for k, rt := range e.backends {
		if !strings.HasPrefix(k, prefix) || rt == nil {
			continue
		}
		if _, ok := next[k]; !ok {
			next[k] = nil
		}
		if !used[rt] {
			retired = append(retired, rt)
		}
	}
	e.mu.RUnlock()
	for _, s := range a.Slots {
		s.PreparedForSwap = "" // a preview's prepared process lives on the replica that made it
	}
	e.mu.Lock()
	e.apps[a.Name] = a
	for k, rt := range next {
		if rt == nil {
			delete(e.backends, k)
		} else {
			e.backends[k] = rt
		}
	}
	e.mu.Unlock()
	e.publish()
	for _, rt := range retired {
		e.retire(rt)
	}
	e.log.Info("replica: applied a change made by another replica", "app", a.Name, "version", a.StoreVersion)
}

func (e *Engine) dropApp(name string) {
	unlock := e.lockApp(name)
	defer unlock()
	prefix := name + "/"
	e.mu.Lock()
	delete(e.apps, name)
	var retired []*runtime
	for k, rt := range e.backends {
		if strings.HasPrefix(k, prefix) {
			retired = append(retired, rt)
			delete(e.backends, k)
		}
	}
	e.mu.Unlock()
	e.publish()
	for _, rt := range retired {
		e.retire(rt)
	}
}
