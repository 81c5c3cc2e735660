package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/internal/pgtest"
	"github.com/modelslot/modelslot/postgres"
	"github.com/modelslot/modelslot/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) func() (modelslot.Store, error) {
		dsn := pgtest.DSN(t)
		return func() (modelslot.Store, error) { return postgres.Open(context.Background(), dsn) }
	})
}

// Replicas that start together on a new database apply each migration
// exactly once (the advisory lock), and all of them open.
func TestMigrationsRunOnceUnderConcurrentStarts(t *testing.T) {
	dsn := pgtest.DSN(t)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	dbs := make([]*postgres.DB, 6)
	for i := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = postgres.Open(context.Background(), dsn)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer dbs[i].Close()
	}
	var n, max int
	if err := dbs[0].Pool().QueryRow(context.Background(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	if n != max || n < 1 {
		t.Fatalf("schema_migrations has %d rows for version %d: a migration ran twice or none ran", n, max)
	}
}

func TestUnreachableStoreSaysSo(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
	if modelslot.ErrorCode(err) != modelslot.EUNAVAILABLE {
		t.Fatalf("err = %v (%s), want unavailable", err, modelslot.ErrorCode(err))
	}
	if got := err.Error(); !strings.Contains(got, "store unavailable") {
		t.Fatalf("message %q does not say the store is unavailable", got)
	}
}

func TestBadURL(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://a:b@[::1")
	if modelslot.ErrorCode(err) != modelslot.EINVALID {
		t.Fatalf("err = %v, want invalid", err)
	}
}

// The controller's lease: one holder at a time, renewals keep the token, a
// takeover after the TTL gets a larger one, and writes fenced with the old
// token are refused from then on.
func TestLeaseAndFencing(t *testing.T) {
	ctx := context.Background()
	db, err := postgres.Open(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := db.Lease(postgres.ControllerLease, "replica-a", time.Second)
	b := db.Lease(postgres.ControllerLease, "replica-b", time.Second)
	ta, ok, err := a.Acquire(ctx, 0)
	if err != nil || !ok {
		t.Fatalf("a: %v %v", ok, err)
	}
	if _, ok, err := b.Acquire(ctx, 0); err != nil || ok {
		t.Fatalf("b took a held lease: %v %v", ok, err)
	}
	if again, ok, err := a.Acquire(ctx, ta); err != nil || !ok || again != ta {
		t.Fatalf("renewal: token %d -> %d, %v %v", ta, again, ok, err)
	}
	app := &modelslot.App{Name: "chat", Slots: []*modelslot.Slot{{Name: "production"}}}
	if err := db.PutApp(modelslot.WithFence(ctx, ta), app, nil); err != nil {
		t.Fatalf("a write under the live lease: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // a is paused past its TTL
	tb, ok, err := b.Acquire(ctx, 0)
	if err != nil || !ok || tb <= ta {
		t.Fatalf("takeover: token %d after %d, %v %v", tb, ta, ok, err)
	}
	if h, tok, err := b.Holder(ctx); err != nil || h != "replica-b" || tok != tb {
		t.Fatalf("holder = %q %d %v", h, tok, err)
	}
	fenced := modelslot.WithFence(ctx, ta)
	app.Routing.Generation++
	for name, write := range map[string]func() error{
		"PutApp":  func() error { return db.PutApp(fenced, app, nil) },
		"AddSwap": func() error { return db.AddSwap(fenced, &modelslot.SwapRecord{App: "chat"}) },
		"PutSwap": func() error { return db.PutSwap(fenced, &modelslot.SwapRecord{ID: 1, App: "chat"}) },
		"PutRollout": func() error {
			return db.PutRollout(fenced, &modelslot.RolloutRecord{ID: "r", App: "chat", Doc: []byte(`{}`)})
		},
	} {
		err := write()
		if modelslot.ErrorCode(err) != modelslot.ECONFLICT || !strings.Contains(err.Error(), "fenced") {
			t.Errorf("%s with the old leader's token: %v, want refused", name, err)
		}
	}
	if _, ok, err := a.Acquire(ctx, ta); err != nil || ok {
		t.Fatalf("the old leader renewed a lease it lost: %v %v", ok, err)
	}
	if err := db.PutApp(modelslot.WithFence(ctx, tb), app, nil); err != nil {
		t.Fatalf("the new leader's write: %v", err)
	}
	if err := b.Release(ctx, tb); err != nil {
		t.Fatal(err)
	}
	if ta2, ok, err := a.Acquire(ctx, 0); err != nil || !ok || ta2 <= tb {
		t.Fatalf("after a release: token %d, %v %v", ta2, ok, err)
	}
}
