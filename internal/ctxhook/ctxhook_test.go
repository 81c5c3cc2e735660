package ctxhook

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestHook: a hook runs once when the context or its parent is cancelled,
// not after Unhook; a second hook is refused while one is registered; a
// hook registered on a done context runs at once; Unhook reports whether
// the hook had not run.
func TestHook(t *testing.T) {
	for _, viaParent := range []bool{false, true} {
		parent, cancelParent := context.WithCancel(context.Background())
		ctx, cancel := New(parent)
		var runs atomic.Int32
		f := func() { runs.Add(1) }

		id, ok := ctx.Hook(f)
		if !ok {
			t.Fatal("first hook refused")
		}
		if _, ok := ctx.Hook(f); ok {
			t.Fatal("a second hook was accepted while one is registered")
		}
		if !ctx.Unhook(id) {
			t.Fatal("Unhook of a hook that has not run reported false")
		}
		if ctx.Unhook(id) {
			t.Fatal("a second Unhook reported true")
		}
		id, _ = ctx.Hook(f)
		if viaParent {
			cancelParent()
		} else {
			cancel()
		}
		deadline := time.Now().Add(10 * time.Second)
		for runs.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if runs.Load() != 1 {
			t.Fatalf("hook ran %d times after the cancellation, want 1", runs.Load())
		}
		if ctx.Unhook(id) {
			t.Fatal("Unhook after the hook ran reported true")
		}
		id, ok = ctx.Hook(f)
		if !ok || runs.Load() != 2 || ctx.Unhook(id) {
			t.Fatalf("a hook on a done context: ok %v, runs %d (want it run at once, and Unhook false)", ok, runs.Load())
		}
		cancel()
		cancelParent()
	}
}

// TestHookAllocatesNothing: registering and removing a hook allocates
// nothing (context.AfterFunc allocates twice).
func TestHookAllocatesNothing(t *testing.T) {
	ctx, cancel := New(context.Background())
	defer cancel()
	f := func() {}
	if n := testing.AllocsPerRun(1000, func() {
		id, _ := ctx.Hook(f)
		ctx.Unhook(id)
	}); n != 0 {
		t.Fatalf("Hook and Unhook allocate %v times, want 0", n)
	}
}
