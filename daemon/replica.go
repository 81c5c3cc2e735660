package daemon

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/modelslot/modelslot/postgres"
)

// RefreshInterval is how often a replica checks the store's app versions
// when no change notification arrives (a lost NOTIFY, a dropped LISTEN
// connection): the bound on how stale a replica can be.
const RefreshInterval = 2 * time.Second

// watchStore keeps this replica's engine in step with the shared store.
// One goroutine LISTENs for the notifications that every replica's app
// writes send; another refreshes the engine on each notification and every
// RefreshInterval. While the store is unreachable the replica keeps serving
// the routing it has, and says so once. It returns the function that stops
// both.
func (d *Daemon) watchStore(db *postgres.DB, log *slog.Logger) func(context.Context) error {
	ctx, cancel := context.WithCancel(context.Background())
	kick := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			err := listen(ctx, db, kick)
			if ctx.Err() == nil {
				log.Debug("LISTEN connection lost; polling until it is back", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(RefreshInterval):
				}
			}
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(RefreshInterval)
		defer tick.Stop()
		down := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			case <-tick.C:
			}
			err := d.Engine.Refresh(ctx)
			switch {
			case err != nil && ctx.Err() == nil && !down:
				log.Warn("store unreachable: serving the last routing until it is back", "err", err)
				down = true
			case err == nil && down:
				log.Info("store reachable again: routing follows it")
				down = false
			}
		}
	}()
	return func(context.Context) error {
		cancel()
		wg.Wait()
		return nil
	}
}

// listen holds one connection on LISTEN and kicks the refresher on every
// notification, until the connection fails or ctx ends.
func listen(ctx context.Context, db *postgres.DB, kick chan<- struct{}) error {
	pooled, err := db.Pool().Acquire(ctx)
	if err != nil {
		return err
	}
	// The connection's session state (LISTEN) must not go back to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+postgres.Channel); err != nil {
		return err
	}
	signal := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	signal() // a change made before the LISTEN took effect
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		signal()
	}
}
