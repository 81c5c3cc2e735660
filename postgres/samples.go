package postgres

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/modelslot/modelslot"
)

// Samples: every replica's gateway meters its own requests; the replica
// running the rollouts must judge them all. Each replica buffers its
// samples in memory (Shipper.Add, called from the gateway's meter, never
// blocks) and writes them every ShipInterval with one COPY, then records
// how far its samples are complete ("shipped through"). The judge's metric
// source (DB.Series) reads the samples of a window from every replica and
// says the data is complete only up to the oldest "shipped through" of the
// replicas seen recently, so a look never takes a replica's late samples
// for missing ones. Cost: one row (about 100 bytes, in an UNLOGGED table: no write-ahead log) per request, one COPY
// and one upsert per replica per interval, rows kept for SampleRetention.

// ShipInterval is how often a replica writes its samples.
const ShipInterval = time.Second

// SampleRetention is how long samples are kept.
const SampleRetention = 2 * time.Hour

// replicaGone is how long a replica that stopped shipping still holds the
// judged window back (then it is taken as gone: a killed replica must not
// stall every rollout).
const replicaGone = 10 * time.Second

// maxBuffered bounds the samples a replica keeps while the store is down.
const maxBuffered = 200_000

// lateness is the margin between a sample's time (when its request ended)
// and its reaching the shipper's buffer.
const lateness = 500 * time.Millisecond

type shippedSample struct {
	app, slot string
	s         modelslot.Sample
}

// Shipper writes one replica's samples to the store.
type Shipper struct {
	db      *DB
	replica string
	log     *slog.Logger

	mu      sync.Mutex
	buf     []shippedSample
	dropped int64
}

// NewShipper returns the shipper of the named replica.
func (s *DB) NewShipper(replica string, log *slog.Logger) *Shipper {
	return &Shipper{db: s, replica: replica, log: log}
}

// Add buffers a sample; it never blocks on the store.
func (sh *Shipper) Add(app, slot string, s modelslot.Sample) {
	sh.mu.Lock()
	if len(sh.buf) < maxBuffered {
		sh.buf = append(sh.buf, shippedSample{app, slot, s})
	} else {
		sh.dropped++
	}
	sh.mu.Unlock()
}

// Run ships every ShipInterval until ctx ends, then once more.
func (sh *Shipper) Run(ctx context.Context) {
	tick := time.NewTicker(ShipInterval)
	defer tick.Stop()
	failing := false
	n := 0
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			sh.Flush(fctx)
			cancel()
			return
		case <-tick.C:
		}
		err := sh.Flush(ctx)
		switch {
		case err != nil && !failing:
			sh.log.Warn("cannot ship samples to the store: keeping them until it answers", "err", err)
			failing = true
		case err == nil && failing:
			sh.log.Info("shipping samples again")
			failing = false
		}
		if n++; n%60 == 0 && err == nil {
			sh.db.pool.Exec(ctx, `DELETE FROM samples WHERE time < $1`, time.Now().Add(-SampleRetention).UnixNano())
		}
	}
}

// Flush writes the buffered samples and the replica's progress.
func (sh *Shipper) Flush(ctx context.Context) error {
	through := time.Now().Add(-lateness)
	sh.mu.Lock()
	batch := sh.buf
	sh.buf = nil
	dropped := sh.dropped
	sh.dropped = 0
	sh.mu.Unlock()
	if dropped > 0 {
		sh.log.Warn("dropped samples: the store was unreachable for too long", "count", dropped)
	}
	err := pgx.BeginFunc(ctx, sh.db.pool, func(tx pgx.Tx) error {
		if len(batch) > 0 {
			rows := make([][]any, len(batch))
			for i, b := range batch {
				rows[i] = []any{b.app, b.slot, b.s.Time.UnixNano(), sh.replica, int32(b.s.Status), int64(b.s.Latency), int64(b.s.TTFT), int32(b.s.OutputTokens), b.s.TokensCounted, b.s.Revision}
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"samples"},
				[]string{"app", "slot", "time", "replica", "status", "latency", "ttft", "output_tokens", "tokens_counted", "revision"},
				pgx.CopyFromRows(rows)); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO replicas (name, shipped_through, seen_at) VALUES ($1, $2, now())
			ON CONFLICT (name) DO UPDATE SET shipped_through = excluded.shipped_through, seen_at = excluded.seen_at`,
			sh.replica, through.UnixNano())
		return err
	})
	if err != nil {
		sh.mu.Lock()
		if room := maxBuffered - len(sh.buf); room > 0 {
			sh.buf = append(batch[:min(len(batch), room):min(len(batch), room)], sh.buf...)
		}
		sh.mu.Unlock()
		return unavailable("ship samples", err)
	}
	return nil
}

// Leave removes the replica from the set whose progress holds the judged
// window back (a clean shutdown, after the last Flush).
func (sh *Shipper) Leave(ctx context.Context) error {
	_, err := sh.db.pool.Exec(ctx, `DELETE FROM replicas WHERE name = $1`, sh.replica)
	return err
}

var _ modelslot.MetricSource = (*DB)(nil)

// Series implements modelslot.MetricSource over every replica's samples.
func (s *DB) Series(ctx context.Context, q modelslot.MetricQuery) (modelslot.Series, error) {
	slot := q.Slot
	if slot == modelslot.Self {
		slot = modelslot.Production
	}
	out := modelslot.Series{Slot: slot}
	var through *int64
	err := s.pool.QueryRow(ctx, `SELECT min(shipped_through) FROM replicas WHERE seen_at > now() - make_interval(secs => $1)`,
		replicaGone.Seconds()).Scan(&through)
	if err != nil {
		return out, unavailable("read samples", err)
	}
	if through == nil {
		// No replica has shipped yet (they all just started): nothing is
		// known to be complete. The replica asking ships too, so this
		// lasts a moment.
		out.Settled = q.From
	} else {
		out.Settled = time.Unix(0, *through)
		out.Complete = !out.Settled.Before(q.To)
	}
	rows, err := s.pool.Query(ctx, `SELECT time, status, latency, ttft, output_tokens, tokens_counted, revision FROM samples
		WHERE app = $1 AND slot = $2 AND time >= $3 AND time < $4 ORDER BY time`,
		q.App, slot, q.From.UnixNano(), q.To.UnixNano())
	if err != nil {
		return out, unavailable("read samples", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t, lat, ttft int64
		var status, tokens int32
		var x modelslot.Sample
		if err := rows.Scan(&t, &status, &lat, &ttft, &tokens, &x.TokensCounted, &x.Revision); err != nil {
			return out, unavailable("read samples", err)
		}
		x.Time, x.Status, x.Latency, x.TTFT, x.OutputTokens = time.Unix(0, t), int(status), time.Duration(lat), time.Duration(ttft), int(tokens)
		out.Samples = append(out.Samples, x)
	}
	if err := rows.Err(); err != nil {
		return out, unavailable("read samples", err)
	}
	return out, nil
}
