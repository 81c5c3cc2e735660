package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/modelslot/modelslot"
)

// Samples: every replica's gateway meters its own requests; the replica
// running the rollouts must judge them all. Each replica buffers its
// samples in memory (Shipper.Add, called from the gateway's meter, never
// blocks) and writes them every ShipInterval, one row per app and slot
// holding that second's samples packed (packSamples), then records
// how far its samples are complete ("shipped through"). The judge's metric
// source (DB.Series) reads the samples of a window from every replica and
// says the data is complete only up to the oldest "shipped through" of the
// replicas seen recently, so a look never takes a replica's late samples
// for missing ones. Cost: 15 to 30 bytes per request, in one row per
// replica, app and slot per interval (an UNLOGGED table: no write-ahead
// log), and one upsert per replica per interval; rows are kept for
// SampleRetention. A row per request cost PostgreSQL about 7% of a
// replica's throughput when it shared the machine (bench/RESULTS.md).

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
			sh.db.pool.Exec(ctx, `DELETE FROM sample_batches WHERE t_to < $1`, time.Now().Add(-SampleRetention).UnixNano())
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
			groups := map[[2]string][]modelslot.Sample{}
			var keys [][2]string
			for _, b := range batch {
				k := [2]string{b.app, b.slot}
				if _, ok := groups[k]; !ok {
					keys = append(keys, k)
				}
				groups[k] = append(groups[k], b.s)
			}
			rows := make([][]any, 0, len(keys))
			for _, k := range keys {
				g := groups[k]
				from, to := g[0].Time.UnixNano(), g[0].Time.UnixNano()
				for _, x := range g {
					t := x.Time.UnixNano()
					from, to = min(from, t), max(to, t)
				}
				rows = append(rows, []any{k[0], k[1], sh.replica, from, to, int32(len(g)), packSamples(g)})
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{"sample_batches"},
				[]string{"app", "slot", "replica", "t_from", "t_to", "n", "data"},
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
	rows, err := s.pool.Query(ctx, `SELECT data FROM sample_batches
		WHERE app = $1 AND slot = $2 AND t_to >= $3 AND t_from < $4`,
		q.App, slot, q.From.UnixNano(), q.To.UnixNano())
	if err != nil {
		return out, unavailable("read samples", err)
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return out, unavailable("read samples", err)
		}
		all, err := unpackSamples(data)
		if err != nil {
			return out, modelslot.Errorf(modelslot.EINTERNAL, "read samples: %v", err)
		}
		for _, x := range all {
			if !x.Time.Before(q.From) && x.Time.Before(q.To) {
				out.Samples = append(out.Samples, x)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return out, unavailable("read samples", err)
	}
	slices.SortStableFunc(out.Samples, func(a, b modelslot.Sample) int { return a.Time.Compare(b.Time) })
	return out, nil
}

// packSamples encodes samples of one app and slot: a version byte, the
// revisions named once, then per sample its time (nanoseconds, as the
// difference from the previous sample's), status, latency and TTFT
// (nanoseconds), output and input tokens, a flags byte (tokens counted,
// streamed) and its revision's index, in varints: 15 to 30 bytes a
// request.
func packSamples(ss []modelslot.Sample) []byte {
	var revs []string
	index := map[string]uint64{}
	for _, x := range ss {
		if _, ok := index[x.Revision]; !ok {
			index[x.Revision] = uint64(len(revs))
			revs = append(revs, x.Revision)
		}
	}
	b := make([]byte, 0, 16+16*len(ss))
	b = append(b, packVersion)
	b = binary.AppendUvarint(b, uint64(len(revs)))
	for _, r := range revs {
		b = binary.AppendUvarint(b, uint64(len(r)))
		b = append(b, r...)
	}
	b = binary.AppendUvarint(b, uint64(len(ss)))
	var prev int64
	for _, x := range ss {
		t := x.Time.UnixNano()
		b = binary.AppendVarint(b, t-prev)
		prev = t
		b = binary.AppendVarint(b, int64(x.Status))
		b = binary.AppendVarint(b, int64(x.Latency))
		b = binary.AppendVarint(b, int64(x.TTFT))
		b = binary.AppendVarint(b, int64(x.OutputTokens))
		b = binary.AppendVarint(b, int64(x.InputTokens))
		var flags byte
		if x.TokensCounted {
			flags |= 1
		}
		if x.Streamed {
			flags |= 2
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, index[x.Revision])
	}
	return b
}

const packVersion = 1

var errCorruptBatch = errors.New("a sample batch in the store is corrupt")

// unpackSamples decodes packSamples' bytes.
func unpackSamples(b []byte) ([]modelslot.Sample, error) {
	if len(b) == 0 || b[0] != packVersion {
		return nil, errCorruptBatch
	}
	b = b[1:]
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 { // binary.Varint's zig-zag over uv
		u := uv()
		if u&1 != 0 {
			return ^int64(u >> 1)
		}
		return int64(u >> 1)
	}
	nrev := uv()
	if b == nil || nrev > uint64(len(b)) {
		return nil, errCorruptBatch
	}
	revs := make([]string, nrev)
	for i := range revs {
		l := uv()
		if b == nil || l > uint64(len(b)) {
			return nil, errCorruptBatch
		}
		revs[i], b = string(b[:l]), b[l:]
	}
	n := uv()
	if b == nil || n > uint64(len(b)) {
		return nil, errCorruptBatch
	}
	out := make([]modelslot.Sample, 0, n)
	var t int64
	for range n {
		t += sv()
		status, lat, ttft, tokens, input := sv(), sv(), sv(), sv(), sv()
		if len(b) < 1 || b[0] > 3 {
			return nil, errCorruptBatch
		}
		flags := b[0]
		b = b[1:]
		ri := uv()
		if b == nil || ri >= uint64(len(revs)) {
			return nil, errCorruptBatch
		}
		out = append(out, modelslot.Sample{Time: time.Unix(0, t), Status: int(status), Latency: time.Duration(lat),
			TTFT: time.Duration(ttft), OutputTokens: int(tokens), InputTokens: int(input),
			TokensCounted: flags&1 != 0, Streamed: flags&2 != 0, Revision: revs[ri]})
	}
	if len(b) != 0 {
		return nil, errCorruptBatch
	}
	return out, nil
}
