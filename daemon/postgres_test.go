package daemon_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/modelslot/modelslot/internal/pgtest"
	"github.com/modelslot/modelslot/sim"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func pgConfig(t *testing.T, dsn string) *config.Config {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Store = dsn
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	return cfg
}

// A daemon on PostgreSQL keeps its state there: another daemon (its own
// data directory) started on the same database serves the same apps.
func TestPostgresStoreSharesState(t *testing.T) {
	dsn := pgtest.DSN(t)
	e := startDaemonWith(t, pgConfig(t, dsn))
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")
	e.traffic(rule("staging", 30))
	before, err := e.c.Status(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	e.stop()

	e2 := startDaemonWith(t, pgConfig(t, dsn))
	after, err := e2.c.Status(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Slots) != len(before.Slots) || after.Routing.Percent("staging") != 30 {
		t.Fatalf("state not shared: before %+v, after %+v", before, after)
	}
	seen := map[string]int{}
	for range 40 {
		_, v, _ := e2.chat(nil)
		seen[strings.SplitN(v, "+", 2)[0]]++
	}
	if seen["v1"] == 0 || seen["v2"] == 0 {
		t.Fatalf("the second daemon does not serve the stored split: %v", seen)
	}
}

// A daemon that starts while its PostgreSQL is down waits, says so, and
// starts once the database is back.
func TestStartWaitsForPostgres(t *testing.T) {
	pgtest.Shared(t) // skips or fails as the package's other PostgreSQL tests do
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgtest.Start(bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if err := c.PgCtl("stop", "-m", "fast"); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cfg := pgConfig(t, c.URL("postgres"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type result struct {
		d   *daemon.Daemon
		err error
	}
	done := make(chan result, 1)
	go func() {
		d, err := daemon.Start(ctx, daemon.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		done <- result{d, err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "waiting for the store") {
		if time.Now().After(deadline) {
			t.Fatalf("no 'waiting for the store' line; log:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("started without its store: %v", r.err)
	default:
	}
	if err := c.PgCtl("start"); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("start after the store came back: %v", r.err)
	}
	defer r.d.Close(context.Background())
	if _, err := r.d.Engine.Status(context.Background(), "default"); err != nil && modelslot.ErrorCode(err) != modelslot.ENOTFOUND {
		t.Fatal(err)
	}
}

