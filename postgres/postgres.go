// Package postgres stores modelslot's state in PostgreSQL (through pgx), so
// that several daemons (replicas) share one state: apps with their slots and
// routing, deployment history, swaps, rollouts and events. It implements
// modelslot.Store with the same documents and semantics as the sqlite
// package, and passes the same contract tests (package storetest).
//
// Concurrency: an app is written only over the version it was read at
// (modelslot.App.StoreVersion, a version column checked in the UPDATE), so
// two replicas changing one app never lose an update: the later write gets
// ECONFLICT. Schema migrations are numbered and run once, under an advisory
// lock, however many replicas start together. Every app write sends a
// NOTIFY on channel "modelslot_apps" with the app's name.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modelslot/modelslot"
)

var _ modelslot.Store = (*DB)(nil)

// Channel is the LISTEN/NOTIFY channel on which app changes are announced
// (the payload is the app's name).
const Channel = "modelslot_apps"

// Advisory lock keys (arbitrary constants, "msl" + a number).
const (
	migrateLock = 0x6d736c01
	eventLock   = 0x6d736c02
)

// DB is a modelslot.Store on a PostgreSQL database.
type DB struct {
	pool *pgxpool.Pool
}

// Open connects to the database at url (postgres://USER@HOST:PORT/DB) and
// migrates its schema.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, modelslot.Errorf(modelslot.EINVALID, "store %s: %v (expected postgres://USER@HOST:PORT/DB)", Redact(url), err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, unavailable("connect", err)
	}
	s := &DB{pool: pool}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Redact hides the password of a connection URL for messages.
func Redact(url string) string {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil || cfg.Password == "" {
		return url
	}
	return fmt.Sprintf("postgres://%s:xxxxx@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// Pool is the connection pool, for LISTEN and leases.
func (s *DB) Pool() *pgxpool.Pool { return s.pool }

// Close closes the pool.
func (s *DB) Close() error { s.pool.Close(); return nil }

// unavailable wraps an error that means "the database cannot be reached"
// as EUNAVAILABLE ("store unavailable: ..."); other errors are returned
// with the operation's name.
func unavailable(op string, err error) error {
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || pgconn.SafeToRetry(err) {
		return modelslot.Errorf(modelslot.EUNAVAILABLE, "store unavailable: %s: %v", op, err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || pe.Code[:2] == "08") {
		return modelslot.Errorf(modelslot.EUNAVAILABLE, "store unavailable: %s: %v", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

var migrations = []string{
	`CREATE TABLE apps (
		name TEXT PRIMARY KEY,
		doc TEXT NOT NULL,
		version BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE TABLE deployments (
		id BIGSERIAL PRIMARY KEY,
		app TEXT NOT NULL,
		slot TEXT NOT NULL,
		revision TEXT NOT NULL,
		doc TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE INDEX deployments_app_rev ON deployments(app, revision);
	CREATE INDEX deployments_app_slot ON deployments(app, slot, id);
	CREATE TABLE swaps (
		id BIGSERIAL PRIMARY KEY,
		app TEXT NOT NULL,
		doc TEXT NOT NULL
	);
	CREATE INDEX swaps_app ON swaps(app, id);
	CREATE TABLE rollouts (
		id TEXT PRIMARY KEY,
		app TEXT NOT NULL,
		slot TEXT NOT NULL,
		state TEXT NOT NULL,
		active BOOLEAN NOT NULL,
		doc TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX rollouts_app ON rollouts(app, created_at);
	CREATE TABLE events (
		id BIGSERIAL PRIMARY KEY,
		time BIGINT NOT NULL,
		app TEXT NOT NULL,
		rollout TEXT NOT NULL,
		type TEXT NOT NULL,
		actor TEXT NOT NULL,
		message TEXT NOT NULL,
		data TEXT
	);
	CREATE INDEX events_app ON events(app, id);
	CREATE INDEX events_rollout ON events(rollout, id);`,
	// 2: the rollout controller's lease (see lease.go).
	`CREATE TABLE leases (
		name TEXT PRIMARY KEY,
		holder TEXT NOT NULL,
		token BIGINT NOT NULL,
		expires_at TIMESTAMPTZ NOT NULL
	);`,
	// 3: every replica's metered requests, for the judge (see samples.go).
	// Samples are transient (judged within minutes, kept 2 hours): an
	// UNLOGGED table skips the write-ahead log, which is most of the cost of
	// taking every request's row, at the price of losing them if PostgreSQL
	// crashes. The retention delete uses a BRIN index on time, which costs
	// next to nothing to maintain for rows that arrive in time order.
	`CREATE UNLOGGED TABLE samples (
		app TEXT NOT NULL,
		slot TEXT NOT NULL,
		time BIGINT NOT NULL,
		replica TEXT NOT NULL,
		status INTEGER NOT NULL,
		latency BIGINT NOT NULL,
		ttft BIGINT NOT NULL,
		output_tokens INTEGER NOT NULL,
		tokens_counted BOOLEAN NOT NULL,
		revision TEXT NOT NULL
	);
	CREATE INDEX samples_slot_time ON samples(app, slot, time);
	CREATE INDEX samples_time ON samples USING brin(time);
	CREATE TABLE replicas (
		name TEXT PRIMARY KEY,
		shipped_through BIGINT NOT NULL,
		seen_at TIMESTAMPTZ NOT NULL
	);`,
	// 4: the last event whose webhooks were sent: the replica holding the
	// controller lease sends every replica's events' webhooks, once, from
	// there (see WebhookCursor). It starts at the events already stored,
	// which are not sent again.
	`CREATE TABLE webhook_cursor (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		last_event BIGINT NOT NULL
	);
	INSERT INTO webhook_cursor (id, last_event) SELECT 1, COALESCE(max(id), 0) FROM events;`,
	// 5: samples in batches, one row per replica, app and slot per ship
	// (about a second), packed (see samples.go): a row per request cost
	// PostgreSQL a heap and an index insert each, 25,000 a second per
	// replica at saturation, on the machines that serve the traffic in the
	// benchmark. The rows of migration 3 are transient and dropped.
	`DROP TABLE samples;
	CREATE UNLOGGED TABLE sample_batches (
		app TEXT NOT NULL,
		slot TEXT NOT NULL,
		replica TEXT NOT NULL,
		t_from BIGINT NOT NULL,
		t_to BIGINT NOT NULL,
		n INTEGER NOT NULL,
		data BYTEA NOT NULL
	);
	CREATE INDEX sample_batches_slot_time ON sample_batches(app, slot, t_to);`,
}

// migrate applies the migrations not yet applied, each in its own
// transaction, holding an advisory lock so that replicas starting together
// apply each exactly once (the others wait, then find nothing to do).
func (s *DB) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return unavailable("migrate", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLock); err != nil {
		return unavailable("migrate", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLock)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
	)`); err != nil {
		return unavailable("migrate", err)
	}
	var v int
	if err := conn.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return unavailable("migrate", err)
	}
	if v > len(migrations) {
		return modelslot.Errorf(modelslot.EINVALID, "the database was written by a newer modelslot (schema %d, this binary knows %d): upgrade modelslot", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, i+1)
			return err
		})
		if err != nil {
			return unavailable(fmt.Sprintf("migration %d", i+1), err)
		}
	}
	return nil
}

// SchemaVersion is the number of migrations applied.
func (s *DB) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.pool.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

func (s *DB) Apps(ctx context.Context) ([]*modelslot.App, error) {
	rows, err := s.pool.Query(ctx, `SELECT doc, version FROM apps ORDER BY name`)
	if err != nil {
		return nil, unavailable("list apps", err)
	}
	defer rows.Close()
	var apps []*modelslot.App
	for rows.Next() {
		var doc string
		var version int64
		if err := rows.Scan(&doc, &version); err != nil {
			return nil, unavailable("list apps", err)
		}
		var a modelslot.App
		if err := json.Unmarshal([]byte(doc), &a); err != nil {
			return nil, fmt.Errorf("list apps: decode: %w", err)
		}
		a.StoreVersion = version
		apps = append(apps, &a)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("list apps", err)
	}
	return apps, nil
}

func (s *DB) PutApp(ctx context.Context, app *modelslot.App, swap *modelslot.SwapRecord) error {
	from := app.StoreVersion
	app.StoreVersion = from + 1
	doc, err := json.Marshal(app)
	app.StoreVersion = from
	if err != nil {
		return fmt.Errorf("put app %s: %w", app.Name, err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx); err != nil {
			return err
		}
		var tag pgconn.CommandTag
		var err error
		now := time.Now().UnixNano()
		if from == 0 {
			tag, err = tx.Exec(ctx, `INSERT INTO apps (name, doc, version, updated_at) VALUES ($1, $2, 1, $3)
				ON CONFLICT (name) DO NOTHING`, app.Name, string(doc), now)
		} else {
			tag, err = tx.Exec(ctx, `UPDATE apps SET doc = $1, version = $2, updated_at = $3 WHERE name = $4 AND version = $5`,
				string(doc), from+1, now, app.Name, from)
		}
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return modelslot.ErrStaleApp(app.Name, from)
		}
		if swap != nil {
			if err := putSwap(ctx, tx, swap); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, app.Name)
		return err
	})
	if err != nil {
		if modelslot.ErrorCode(err) != "" && modelslot.ErrorCode(err) != modelslot.EINTERNAL {
			return err
		}
		return unavailable("put app "+app.Name, err)
	}
	app.StoreVersion = from + 1
	return nil
}

func (s *DB) DeleteApp(ctx context.Context, name string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM apps WHERE name = $1`, name); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, Channel, name)
		return err
	})
	if err != nil {
		return unavailable("delete app "+name, err)
	}
	return nil
}

func (s *DB) AddSwap(ctx context.Context, sw *modelslot.SwapRecord) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `INSERT INTO swaps (app, doc) VALUES ($1, '{}') RETURNING id`, sw.App).Scan(&sw.ID); err != nil {
			return err
		}
		return putSwap(ctx, tx, sw) // the id lives inside the document too
	})
	return wrap("add swap", err)
}

func (s *DB) PutSwap(ctx context.Context, sw *modelslot.SwapRecord) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx); err != nil {
			return err
		}
		return putSwap(ctx, tx, sw)
	})
	return wrap(fmt.Sprintf("put swap %d", sw.ID), err)
}

// wrap passes modelslot errors (a refused fence) through and maps the
// others as unavailable does.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if c := modelslot.ErrorCode(err); c != "" && c != modelslot.EINTERNAL {
		return err
	}
	return unavailable(op, err)
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func putSwap(ctx context.Context, e execer, sw *modelslot.SwapRecord) error {
	doc, err := json.Marshal(sw)
	if err != nil {
		return err
	}
	_, err = e.Exec(ctx, `UPDATE swaps SET doc = $1 WHERE id = $2`, string(doc), sw.ID)
	return err
}

func (s *DB) Swaps(ctx context.Context, app string, limit int) ([]*modelslot.SwapRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT doc FROM swaps WHERE app = $1 ORDER BY id DESC LIMIT $2`, app, limit)
	if err != nil {
		return nil, unavailable("list swaps", err)
	}
	return scanDocs[modelslot.SwapRecord](rows, "list swaps")
}

func (s *DB) AddDeployment(ctx context.Context, app, slot string, d *modelslot.Deployment) error {
	doc, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO deployments (app, slot, revision, doc, created_at) VALUES ($1, $2, $3, $4, $5)`,
		app, slot, d.Revision, string(doc), time.Now().UnixNano()); err != nil {
		return unavailable("record deployment "+d.Revision, err)
	}
	return nil
}

func (s *DB) Deployment(ctx context.Context, app, revision string) (*modelslot.Deployment, error) {
	var doc string
	err := s.pool.QueryRow(ctx, `SELECT doc FROM deployments WHERE app = $1 AND revision = $2 ORDER BY id DESC LIMIT 1`, app, revision).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "app %q has no deployment with revision %q: `modelslot status` and the slot's history list the revisions", app, revision)
	} else if err != nil {
		return nil, unavailable("find revision "+revision, err)
	}
	var d modelslot.Deployment
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return nil, fmt.Errorf("find revision %s: %w", revision, err)
	}
	return &d, nil
}

func (s *DB) Deployments(ctx context.Context, app, slot string, limit int) ([]*modelslot.Deployment, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT doc FROM deployments WHERE app = $1 AND ($2 = '' OR slot = $2) ORDER BY id DESC LIMIT $3`, app, slot, limit)
	if err != nil {
		return nil, unavailable("list deployments", err)
	}
	return scanDocs[modelslot.Deployment](rows, "list deployments")
}

func (s *DB) PutRollout(ctx context.Context, r *modelslot.RolloutRecord) error {
	now := time.Now()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now
	}
	r.UpdatedAt = now
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO rollouts (id, app, slot, state, active, doc, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state, active = excluded.active, doc = excluded.doc, updated_at = excluded.updated_at`,
			r.ID, r.App, r.Slot, r.State, r.Active, string(r.Doc), r.CreatedAt.UnixNano(), r.UpdatedAt.UnixNano())
		return err
	})
	return wrap("put rollout "+r.ID, err)
}

const rolloutCols = `id, app, slot, state, active, doc, created_at, updated_at`

func scanRollout(sc interface{ Scan(...any) error }) (*modelslot.RolloutRecord, error) {
	var r modelslot.RolloutRecord
	var doc string
	var created, updated int64
	if err := sc.Scan(&r.ID, &r.App, &r.Slot, &r.State, &r.Active, &doc, &created, &updated); err != nil {
		return nil, err
	}
	r.Doc = json.RawMessage(doc)
	r.CreatedAt = time.Unix(0, created)
	r.UpdatedAt = time.Unix(0, updated)
	return &r, nil
}

func (s *DB) Rollout(ctx context.Context, id string) (*modelslot.RolloutRecord, error) {
	r, err := scanRollout(s.pool.QueryRow(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "no rollout %q: `modelslot rollout history` lists them", id)
	} else if err != nil {
		return nil, unavailable("get rollout "+id, err)
	}
	return r, nil
}

func (s *DB) Rollouts(ctx context.Context, app string, activeOnly bool, limit int) ([]*modelslot.RolloutRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, `SELECT `+rolloutCols+` FROM rollouts
		WHERE ($1 = '' OR app = $1) AND (NOT $2 OR active) ORDER BY created_at DESC, id DESC LIMIT $3`,
		app, activeOnly, limit)
	if err != nil {
		return nil, unavailable("list rollouts", err)
	}
	defer rows.Close()
	var out []*modelslot.RolloutRecord
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, unavailable("list rollouts", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("list rollouts", err)
	}
	return out, nil
}

// AddEvent inserts an event. Inserts are serialised by a transaction-level
// advisory lock so that event ids commit in increasing order: a reader
// polling with AfterID never skips an event that a slower replica's
// transaction commits later with a smaller id.
func (s *DB) AddEvent(ctx context.Context, e *modelslot.Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	var data *string
	if len(e.Data) > 0 {
		d := string(e.Data)
		data = &d
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, eventLock); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO events (time, app, rollout, type, actor, message, data) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
			e.Time.UnixNano(), e.App, e.Rollout, e.Type, e.Actor, e.Message, data).Scan(&e.ID)
	})
	if err != nil {
		return unavailable("add event", err)
	}
	return nil
}

// WebhookCursor is the id of the last event whose webhooks were sent
// (events commit in id order: see AddEvent).
func (s *DB) WebhookCursor(ctx context.Context) (int64, error) {
	var id int64
	if err := s.pool.QueryRow(ctx, `SELECT last_event FROM webhook_cursor WHERE id = 1`).Scan(&id); err != nil {
		return 0, unavailable("read the webhook cursor", err)
	}
	return id, nil
}

// ClaimWebhooks moves the webhook cursor from from to to, claiming the
// events in between for the caller to send. It is a controller write:
// under a fencing token (modelslot.WithFence) it is refused once the
// lease has moved, so a replica that lost the lease sends nothing more.
// It reports false when the cursor was not at from (another replica moved
// it): the caller reads it again.
func (s *DB) ClaimWebhooks(ctx context.Context, from, to int64) (bool, error) {
	var moved bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := checkFence(ctx, tx); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE webhook_cursor SET last_event = $2 WHERE id = 1 AND last_event = $1`, from, to)
		moved = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, wrap("claim webhooks", err)
	}
	return moved, nil
}

func (s *DB) Events(ctx context.Context, f modelslot.EventFilter) ([]*modelslot.Event, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.pool.Query(ctx, `SELECT id, time, app, rollout, type, actor, message, data FROM events
		WHERE ($1 = '' OR app = $1) AND ($2 = '' OR rollout = $2) AND id > $3 ORDER BY id LIMIT $4`,
		f.App, f.Rollout, f.AfterID, limit)
	if err != nil {
		return nil, unavailable("list events", err)
	}
	defer rows.Close()
	var out []*modelslot.Event
	for rows.Next() {
		var e modelslot.Event
		var t int64
		var data *string
		if err := rows.Scan(&e.ID, &t, &e.App, &e.Rollout, &e.Type, &e.Actor, &e.Message, &data); err != nil {
			return nil, unavailable("list events", err)
		}
		e.Time = time.Unix(0, t)
		if data != nil {
			e.Data = json.RawMessage(*data)
		}
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("list events", err)
	}
	return out, nil
}

func scanDocs[T any](rows pgx.Rows, op string) ([]*T, error) {
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, unavailable(op, err)
		}
		v := new(T)
		if err := json.Unmarshal([]byte(doc), v); err != nil {
			return nil, fmt.Errorf("%s: decode: %w", op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(op, err)
	}
	return out, nil
}
