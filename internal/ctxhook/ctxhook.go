// Package ctxhook lets a context run one function when it is cancelled,
// registered and removed without allocating: context.AfterFunc costs a
// request two allocations, a lock and a map insert and delete in its
// parent, which the gateway paid for every proxied request to stop the
// backend's exchange when the client hangs up.
package ctxhook

import (
	"context"
	"sync"
)

// Context is a context with a single cancellation hook. Hook registers f
// (ok false: another hook is registered; use context.AfterFunc); if the
// context is done already, f runs at once, on the caller's goroutine.
// Unhook removes the hook registered as id and reports whether it had not
// run, as the stop function of context.AfterFunc does.
type Context interface {
	context.Context
	Hook(f func()) (id uint64, ok bool)
	Unhook(id uint64) bool
}

// New returns a Context derived from parent and its cancel function.
// Cancelling it, or parent, runs the hook (on a goroutine of its own).
func New(parent context.Context) (Context, context.CancelFunc) {
	inner, cancel := context.WithCancel(parent)
	x := &hookCtx{Context: inner}
	context.AfterFunc(inner, x.fire)
	return x, cancel
}

type hookCtx struct {
	context.Context
	mu    sync.Mutex
	hook  func()
	id    uint64
	fired bool
}

func (x *hookCtx) Hook(f func()) (uint64, bool) {
	x.mu.Lock()
	if x.fired {
		x.mu.Unlock()
		f()
		return 0, true // Unhook(0) reports that it ran
	}
	if x.hook != nil {
		x.mu.Unlock()
		return 0, false
	}
	x.id++
	x.hook = f
	id := x.id
	x.mu.Unlock()
	return id, true
}

func (x *hookCtx) Unhook(id uint64) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.hook == nil || id != x.id {
		return false
	}
	x.hook = nil
	return true
}

func (x *hookCtx) fire() {
	x.mu.Lock()
	x.fired = true
	f := x.hook
	x.hook = nil
	x.mu.Unlock()
	if f != nil {
		f()
	}
}
