// Package sqlite stores modelslot's state in an embedded SQLite database
// (pure Go, WAL mode): apps with their slots and routing, deployment history,
// swaps, rollouts and events. It implements modelslot.Store.
package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/modelslot/modelslot"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

var _ modelslot.Store = (*DB)(nil)

// DB is a modelslot.Store on one SQLite file.
type DB struct {
	db *sql.DB
}

// Open opens (creating if needed) the database at path and migrates it.
func Open(ctx context.Context, path string) (*DB, error) {
	// The database holds deployment secrets (provider API keys): create it
	// readable by the daemon's user only; SQLite gives its -wal and -shm
	// files the same mode.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	} else {
		f.Close()
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One writer at a time is what SQLite does anyway; a single connection
	// also keeps transactions from failing with SQLITE_BUSY.
	db.SetMaxOpenConns(1)
	s := &DB{db: db}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *DB) Close() error { return s.db.Close() }

var migrations = []string{
	`CREATE TABLE apps (
		name TEXT PRIMARY KEY,
		doc TEXT NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE TABLE deployments (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		app TEXT NOT NULL,
		slot TEXT NOT NULL,
		revision TEXT NOT NULL,
		doc TEXT NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE INDEX deployments_app_rev ON deployments(app, revision);
	CREATE INDEX deployments_app_slot ON deployments(app, slot, id);
	CREATE TABLE swaps (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		app TEXT NOT NULL,
		doc TEXT NOT NULL
	);
	CREATE INDEX swaps_app ON swaps(app, id);
	CREATE TABLE rollouts (
		id TEXT PRIMARY KEY,
		app TEXT NOT NULL,
		slot TEXT NOT NULL,
		state TEXT NOT NULL,
		active INTEGER NOT NULL,
		doc TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		updated_at INTEGER NOT NULL
	);
	CREATE INDEX rollouts_app ON rollouts(app, created_at);
	CREATE TABLE events (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		time INTEGER NOT NULL,
		app TEXT NOT NULL,
		rollout TEXT NOT NULL,
		type TEXT NOT NULL,
		actor TEXT NOT NULL,
		message TEXT NOT NULL,
		data TEXT
	);
	CREATE INDEX events_app ON events(app, id);
	CREATE INDEX events_rollout ON events(rollout, id);`,
	// 2: optimistic concurrency on apps (see modelslot.Store.PutApp).
	`ALTER TABLE apps ADD COLUMN version INTEGER NOT NULL DEFAULT 1;`,
}

func (s *DB) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var v int
	err := s.db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := s.db.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if v > len(migrations) {
		return modelslot.Errorf(modelslot.EINVALID, "the data directory was written by a newer modelslot (schema %d, this binary knows %d): upgrade modelslot", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, i+1); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
}

func (s *DB) Apps(ctx context.Context) ([]*modelslot.App, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT doc, version FROM apps ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	defer rows.Close()
	var apps []*modelslot.App
	for rows.Next() {
		var doc string
		var version int64
		if err := rows.Scan(&doc, &version); err != nil {
			return nil, fmt.Errorf("list apps: %w", err)
		}
		var a modelslot.App
		if err := json.Unmarshal([]byte(doc), &a); err != nil {
			return nil, fmt.Errorf("list apps: decode: %w", err)
		}
		a.StoreVersion = version
		apps = append(apps, &a)
	}
	return apps, rows.Err()
}

func (s *DB) PutApp(ctx context.Context, app *modelslot.App, swap *modelslot.SwapRecord) error {
	from := app.StoreVersion
	app.StoreVersion = from + 1
	doc, err := json.Marshal(app)
	app.StoreVersion = from
	if err != nil {
		return fmt.Errorf("put app %s: %w", app.Name, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("put app %s: %w", app.Name, err)
	}
	defer tx.Rollback()
	var res sql.Result
	if from == 0 {
		res, err = tx.ExecContext(ctx, `INSERT INTO apps (name, doc, updated_at, version) VALUES (?, ?, ?, 1)
			ON CONFLICT(name) DO NOTHING`, app.Name, string(doc), time.Now().UnixNano())
	} else {
		res, err = tx.ExecContext(ctx, `UPDATE apps SET doc = ?, updated_at = ?, version = ? WHERE name = ? AND version = ?`,
			string(doc), time.Now().UnixNano(), from+1, app.Name, from)
	}
	if err != nil {
		return fmt.Errorf("put app %s: %w", app.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("put app %s: %w", app.Name, err)
	} else if n != 1 {
		return modelslot.ErrStaleApp(app.Name, from)
	}
	if swap != nil {
		if err := putSwap(ctx, tx, swap); err != nil {
			return fmt.Errorf("put app %s: %w", app.Name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("put app %s: %w", app.Name, err)
	}
	app.StoreVersion = from + 1
	return nil
}

func (s *DB) DeleteApp(ctx context.Context, name string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM apps WHERE name = ?`, name); err != nil {
		return fmt.Errorf("delete app %s: %w", name, err)
	}
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (s *DB) AddSwap(ctx context.Context, sw *modelslot.SwapRecord) error {
	doc, err := json.Marshal(sw)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO swaps (app, doc) VALUES (?, ?)`, sw.App, string(doc))
	if err != nil {
		return fmt.Errorf("add swap: %w", err)
	}
	sw.ID, err = res.LastInsertId()
	if err != nil {
		return fmt.Errorf("add swap: %w", err)
	}
	return s.PutSwap(ctx, sw) // store the id inside the document too
}

func (s *DB) PutSwap(ctx context.Context, sw *modelslot.SwapRecord) error {
	if err := putSwap(ctx, s.db, sw); err != nil {
		return fmt.Errorf("put swap %d: %w", sw.ID, err)
	}
	return nil
}

func putSwap(ctx context.Context, e execer, sw *modelslot.SwapRecord) error {
	doc, err := json.Marshal(sw)
	if err != nil {
		return err
	}
	_, err = e.ExecContext(ctx, `UPDATE swaps SET doc = ? WHERE id = ?`, string(doc), sw.ID)
	return err
}

func (s *DB) Swaps(ctx context.Context, app string, limit int) ([]*modelslot.SwapRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT doc FROM swaps WHERE app = ? ORDER BY id DESC LIMIT ?`, app, limit)
	if err != nil {
		return nil, fmt.Errorf("list swaps: %w", err)
	}
	return scanDocs[modelslot.SwapRecord](rows)
}

func (s *DB) AddDeployment(ctx context.Context, app, slot string, d *modelslot.Deployment) error {
	doc, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO deployments (app, slot, revision, doc, created_at) VALUES (?, ?, ?, ?, ?)`,
		app, slot, d.Revision, string(doc), time.Now().UnixNano()); err != nil {
		return fmt.Errorf("record deployment %s: %w", d.Revision, err)
	}
	return nil
}

func (s *DB) Deployment(ctx context.Context, app, revision string) (*modelslot.Deployment, error) {
	var doc string
	err := s.db.QueryRowContext(ctx, `SELECT doc FROM deployments WHERE app = ? AND revision = ? ORDER BY id DESC LIMIT 1`, app, revision).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "app %q has no deployment with revision %q: `modelslot status` and the slot's history list the revisions", app, revision)
	} else if err != nil {
		return nil, fmt.Errorf("find revision %s: %w", revision, err)
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
	rows, err := s.db.QueryContext(ctx, `SELECT doc FROM deployments WHERE app = ? AND (? = '' OR slot = ?) ORDER BY id DESC LIMIT ?`, app, slot, slot, limit)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return scanDocs[modelslot.Deployment](rows)
}

func (s *DB) PutRollout(ctx context.Context, r *modelslot.RolloutRecord) error {
	now := time.Now()
	if r.CreatedAt.IsZero() {
		r.CreatedAt = now
	}
	r.UpdatedAt = now
	_, err := s.db.ExecContext(ctx, `INSERT INTO rollouts (id, app, slot, state, active, doc, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET state = excluded.state, active = excluded.active, doc = excluded.doc, updated_at = excluded.updated_at`,
		r.ID, r.App, r.Slot, r.State, r.Active, string(r.Doc), r.CreatedAt.UnixNano(), r.UpdatedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("put rollout %s: %w", r.ID, err)
	}
	return nil
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
	r, err := scanRollout(s.db.QueryRowContext(ctx, `SELECT `+rolloutCols+` FROM rollouts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "no rollout %q: `modelslot rollout history` lists them", id)
	} else if err != nil {
		return nil, fmt.Errorf("get rollout %s: %w", id, err)
	}
	return r, nil
}

func (s *DB) Rollouts(ctx context.Context, app string, activeOnly bool, limit int) ([]*modelslot.RolloutRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+rolloutCols+` FROM rollouts
		WHERE (? = '' OR app = ?) AND (? = 0 OR active = 1) ORDER BY created_at DESC, id DESC LIMIT ?`,
		app, app, activeOnly, limit)
	if err != nil {
		return nil, fmt.Errorf("list rollouts: %w", err)
	}
	defer rows.Close()
	var out []*modelslot.RolloutRecord
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			return nil, fmt.Errorf("list rollouts: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *DB) AddEvent(ctx context.Context, e *modelslot.Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	var data any
	if len(e.Data) > 0 {
		data = string(e.Data)
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO events (time, app, rollout, type, actor, message, data) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		e.Time.UnixNano(), e.App, e.Rollout, e.Type, e.Actor, e.Message, data)
	if err != nil {
		return fmt.Errorf("add event: %w", err)
	}
	e.ID, err = res.LastInsertId()
	return err
}

func (s *DB) Events(ctx context.Context, f modelslot.EventFilter) ([]*modelslot.Event, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, time, app, rollout, type, actor, message, data FROM events
		WHERE (? = '' OR app = ?) AND (? = '' OR rollout = ?) AND id > ? ORDER BY id LIMIT ?`,
		f.App, f.App, f.Rollout, f.Rollout, f.AfterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []*modelslot.Event
	for rows.Next() {
		var e modelslot.Event
		var t int64
		var data sql.NullString
		if err := rows.Scan(&e.ID, &t, &e.App, &e.Rollout, &e.Type, &e.Actor, &e.Message, &data); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Time = time.Unix(0, t)
		if data.Valid {
			e.Data = json.RawMessage(data.String)
		}
		out = append(out, &e)
	}
	return out, rows.Err()
}

func scanDocs[T any](rows *sql.Rows) ([]*T, error) {
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		v := new(T)
		if err := json.Unmarshal([]byte(doc), v); err != nil {
			return nil, fmt.Errorf("decode: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
