package events_test

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/events"
	"github.com/modelslot/modelslot/sqlite"
)

func openStore(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func closeBus(t *testing.T, b *events.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPublishStoresAndFansOut(t *testing.T) {
	store := openStore(t)
	bus := events.New(store, nil, nil)
	defer closeBus(t, bus)
	ctx := context.Background()

	chat := bus.Subscribe(ctx, events.Filter{App: "chat", Types: []string{"rollout."}})
	all := bus.Subscribe(ctx, events.Filter{})

	e1 := &modelslot.Event{App: "chat", Type: "rollout.step", Message: "step 1"}
	e2 := &modelslot.Event{App: "embed", Type: "rollout.step", Message: "other app"}
	e3 := &modelslot.Event{App: "chat", Type: "swap.completed", Message: "other type"}
	for _, e := range []*modelslot.Event{e1, e2, e3} {
		bus.Publish(ctx, e)
		if e.ID == 0 || e.Time.IsZero() {
			t.Fatalf("Publish did not set ID and Time: %+v", e)
		}
	}
	if got := <-chat; got.ID != e1.ID {
		t.Errorf("filtered subscriber got event %d, want %d", got.ID, e1.ID)
	}
	select {
	case e := <-chat:
		t.Errorf("filtered subscriber got unexpected event %+v", e)
	default:
	}
	for _, want := range []int64{e1.ID, e2.ID, e3.ID} {
		if got := <-all; got.ID != want {
			t.Errorf("subscriber got event %d, want %d", got.ID, want)
		}
	}
	stored, err := store.Events(ctx, modelslot.EventFilter{App: "chat"})
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2 {
		t.Errorf("stored %d chat events, want 2", len(stored))
	}
}

func TestSubscriptionEndsWithContext(t *testing.T) {
	bus := events.New(nil, nil, nil)
	defer closeBus(t, bus)
	ctx, cancel := context.WithCancel(context.Background())
	ch := bus.Subscribe(ctx, events.Filter{})
	cancel()
	eventually(t, "channel closed", func() bool {
		select {
		case _, ok := <-ch:
			return !ok
		default:
			return false
		}
	})
	bus.Publish(context.Background(), &modelslot.Event{Type: "x"}) // must not panic
}

func TestSlowSubscriberDropsWithoutBlocking(t *testing.T) {
	bus := events.New(nil, nil, nil)
	defer closeBus(t, bus)
	ctx := context.Background()
	slow := bus.Subscribe(ctx, events.Filter{Buffer: 2})
	for i := 0; i < 10; i++ {
		bus.Publish(ctx, &modelslot.Event{App: "chat", Type: "traffic.set"})
	}
	if got, want := bus.Stats().SubscriberDrops, int64(8); got != want {
		t.Errorf("drops = %d, want %d", got, want)
	}
	if got := len(slow); got != 2 {
		t.Errorf("buffered = %d, want 2", got)
	}
}

func TestWebhookRetriesThenSucceeds(t *testing.T) {
	var mu sync.Mutex
	var attempts int
	var bodies [][]byte
	var sigs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		bodies = append(bodies, b)
		sigs = append(sigs, r.Header.Get(events.SignatureHeader))
	}))
	defer srv.Close()

	bus := events.New(nil, nil, []events.Webhook{{
		URL: srv.URL, Secret: "s3cret", Types: []string{"rollout."},
		InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
	}})
	ctx := context.Background()
	bus.Publish(ctx, &modelslot.Event{App: "chat", Type: "swap.completed"}) // filtered out
	bus.Publish(ctx, &modelslot.Event{ID: 7, App: "chat", Type: "rollout.completed", Message: "done"})
	eventually(t, "delivery", func() bool { return bus.Stats().WebhookDelivered == 1 })
	closeBus(t, bus)

	mu.Lock()
	defer mu.Unlock()
	if attempts != 3 {
		t.Errorf("attempts = %d, want 3 (two failures, one success)", attempts)
	}
	var got modelslot.Event
	if err := json.Unmarshal(bodies[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != "rollout.completed" || got.Message != "done" {
		t.Errorf("delivered %+v", got)
	}
	if want := events.Sign("s3cret", bodies[0]); !hmac.Equal([]byte(sigs[0]), []byte(want)) {
		t.Errorf("signature = %q, want %q", sigs[0], want)
	}
	if st := bus.Stats(); st.WebhookFailed != 0 || st.WebhookDropped != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestWebhookGivesUpAfterMaxAttempts(t *testing.T) {
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	bus := events.New(nil, nil, []events.Webhook{{URL: srv.URL, MaxAttempts: 3, InitialBackoff: time.Millisecond}})
	bus.Publish(context.Background(), &modelslot.Event{Type: "rollout.step"})
	eventually(t, "failure", func() bool { return bus.Stats().WebhookFailed == 1 })
	closeBus(t, bus)
	if got := attempts.Load(); got != 3 {
		t.Errorf("attempts = %d, want 3", got)
	}
}

func TestHangingWebhookNeverBlocksPublish(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	bus := events.New(nil, nil, []events.Webhook{{URL: srv.URL, QueueSize: 3, Timeout: time.Minute}})
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		bus.Publish(ctx, &modelslot.Event{App: "chat", Type: "rollout.step"})
	}
	// One is in flight, three are queued, the rest were dropped.
	eventually(t, "drops counted", func() bool { return bus.Stats().WebhookDropped >= 16 })

	closeCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := bus.Close(closeCtx); err == nil {
		t.Error("Close drained a hanging webhook: want a deadline error")
	}
	st := bus.Stats()
	if st.WebhookDelivered != 0 || st.WebhookDropped != 20 {
		t.Errorf("stats = %+v, want 0 delivered and 20 dropped", st)
	}
}
