package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/modelslot/modelslot"
)

// ControllerLease is the name of the lease that the replica running
// rollouts holds.
const ControllerLease = "controller"

// Lease is a named lease row: one holder at a time, for a TTL that the
// holder renews. Each new holder gets a larger fencing token; writes made
// under a token (modelslot.WithFence) are refused once the lease has moved
// on, so a holder that was paused past its TTL (a long GC pause, a stopped
// VM) cannot act when it wakes up. Time is the database's clock, so
// replicas' clocks need not agree.
type Lease struct {
	db     *DB
	name   string
	holder string
	ttl    time.Duration
}

// Lease returns the lease called name, held (when acquired) by holder.
func (s *DB) Lease(name, holder string, ttl time.Duration) *Lease {
	return &Lease{db: s, name: name, holder: holder, ttl: ttl}
}

// Acquire takes the lease if it is free, expired, or already this
// holder's, and returns its fencing token; ok is false when another holder
// has it. A holder that takes the lease over (or takes it again after
// losing it) gets a new, larger token.
func (l *Lease) Acquire(ctx context.Context, current int64) (token int64, ok bool, err error) {
	err = l.db.pool.QueryRow(ctx, `INSERT INTO leases (name, holder, token, expires_at)
		VALUES ($1, $2, 1, now() + make_interval(secs => $3))
		ON CONFLICT (name) DO UPDATE SET
			token = CASE WHEN leases.holder = excluded.holder AND leases.token = $4 AND leases.expires_at > now()
				THEN leases.token ELSE leases.token + 1 END,
			holder = excluded.holder,
			expires_at = excluded.expires_at
		WHERE leases.expires_at <= now() OR (leases.holder = excluded.holder AND leases.token = $4)
		RETURNING token`, l.name, l.holder, l.ttl.Seconds(), current).Scan(&token)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, unavailable("lease "+l.name, err)
	}
	return token, true, nil
}

// Holder returns who holds the lease, if anyone does now.
func (l *Lease) Holder(ctx context.Context) (holder string, token int64, err error) {
	err = l.db.pool.QueryRow(ctx, `SELECT holder, token FROM leases WHERE name = $1 AND expires_at > now()`, l.name).Scan(&holder, &token)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, unavailable("lease "+l.name, err)
	}
	return holder, token, nil
}

// Release gives the lease up at once (a clean shutdown), so that another
// replica need not wait for the TTL.
func (l *Lease) Release(ctx context.Context, token int64) error {
	_, err := l.db.pool.Exec(ctx, `UPDATE leases SET expires_at = now() WHERE name = $1 AND holder = $2 AND token = $3`, l.name, l.holder, token)
	if err != nil {
		return unavailable("release lease "+l.name, err)
	}
	return nil
}

// checkFence refuses a write made under a fencing token (WithFence) once
// the controller's lease has another token or has expired. It locks the
// lease row for the transaction, so a takeover waits for the write to
// commit rather than slipping in between the check and the write.
func checkFence(ctx context.Context, tx pgx.Tx) error {
	token, fenced := modelslot.FenceOf(ctx)
	if !fenced {
		return nil
	}
	var current int64
	var live bool
	err := tx.QueryRow(ctx, `SELECT token, expires_at > now() FROM leases WHERE name = $1 FOR SHARE`, ControllerLease).Scan(&current, &live)
	if errors.Is(err, pgx.ErrNoRows) {
		current, live = 0, false
	} else if err != nil {
		return err
	}
	if current != token || !live {
		return modelslot.Errorf(modelslot.ECONFLICT, "fenced: this replica's rollout controller lease (token %d) has expired or moved to another replica (token %d): it no longer acts", token, current)
	}
	return nil
}
