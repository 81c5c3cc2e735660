package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"

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
