package dashboard

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
)

// Step is the width of a chart bucket.
const Step = 10 * time.Second

// MaxMinutes bounds the series endpoint's window.
const MaxMinutes = 60

// Series is what GET /ui/api/apps/{app}/series returns: per-slot columns
// over the same buckets, oldest first. Empty buckets hold null for every
// quantity that needs a request to exist.
type Series struct {
	App         string       `json:"app"`
	From        time.Time    `json:"from"`
	To          time.Time    `json:"to"`
	StepSeconds int          `json:"stepSeconds"`
	Times       []int64      `json:"times"` // bucket starts, Unix milliseconds
	Slots       []SlotSeries `json:"slots"`
}

// SlotSeries is one slot's columns.
type SlotSeries struct {
	Slot string `json:"slot"`
	// Revision is the slot's deployment now; Revisions lists those that
	// served requests in the window, oldest first (a swap shows as two).
	Revision  string   `json:"revision,omitempty"`
	Version   string   `json:"version,omitempty"`
	Revisions []string `json:"revisions"`
	// BucketRevision is the revision that served most of each bucket.
	BucketRevision []string   `json:"bucketRevision"`
	Requests       []int      `json:"requests"`
	RPS            []float64  `json:"rps"`
	ErrorRate      []*float64 `json:"errorRate"`
	LatencyP50MS   []*float64 `json:"latencyP50Ms"`
	LatencyP99MS   []*float64 `json:"latencyP99Ms"`
	TTFTP50MS      []*float64 `json:"ttftP50Ms"`
	TTFTP95MS      []*float64 `json:"ttftP95Ms"`
	// OutputTokensPerSec is the slot's output throughput: output tokens of
	// the bucket's requests over the bucket's time. (A per-request decode
	// rate, the admin API's decodeTokensPerSec, says little for
	// non-streaming answers, whose tokens all arrive at once.)
	OutputTokensPerSec []float64 `json:"outputTokensPerSec"`
}

func (d *Dashboard) series(w http.ResponseWriter, r *http.Request) {
	if !d.cfg.Authorized(r) {
		api.WriteError(w, r, modelslot.Errorf(modelslot.EUNAUTHORIZED, "sign in to the dashboard (or pass 'Authorization: Bearer <token>') to read its series"))
		return
	}
	minutes := 15
	if v := r.URL.Query().Get("minutes"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxMinutes {
			api.WriteError(w, r, modelslot.Errorf(modelslot.EINVALID, "minutes=%q is not valid: give a whole number from 1 to %d", v, MaxMinutes))
			return
		}
		minutes = n
	}
	app, err := d.cfg.Apps.App(r.Context(), r.PathValue("app"))
	if err != nil {
		api.WriteError(w, r, err)
		return
	}
	out, err := d.build(r, app, time.Duration(minutes)*time.Minute)
	if err != nil {
		d.cfg.Logger.Error("dashboard series", "app", app.Name, "err", err)
		api.WriteError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	api.WriteJSON(w, out)
}

func (d *Dashboard) build(r *http.Request, app *modelslot.App, window time.Duration) (*Series, error) {
	now := d.cfg.Now()
	// Buckets are aligned to the step so that they stay put between polls;
	// the last one is the current, partial one.
	to := now.Truncate(Step).Add(Step)
	n := int(window / Step)
	from := to.Add(-time.Duration(n) * Step)
	out := &Series{App: app.Name, From: from, To: to, StepSeconds: int(Step / time.Second), Times: make([]int64, n), Slots: []SlotSeries{}}
	for i := range n {
		out.Times[i] = from.Add(time.Duration(i) * Step).UnixMilli()
	}
	for _, sl := range app.Slots {
		data, err := d.cfg.Metrics.Series(r.Context(), modelslot.MetricQuery{App: app.Name, Slot: sl.Name, From: from, To: to})
		if err != nil {
			return nil, err
		}
		ss := bucketize(data.Samples, from, now, n)
		ss.Slot = sl.Name
		if sl.Deployment != nil {
			ss.Revision, ss.Version = sl.Deployment.Revision, sl.Deployment.Version
		}
		out.Slots = append(out.Slots, ss)
	}
	return out, nil
}

// bucketize spreads samples over n buckets of Step from from; rates in the
// bucket that holds now are over its elapsed part.
func bucketize(samples []modelslot.Sample, from, now time.Time, n int) SlotSeries {
	buckets := make([][]modelslot.Sample, n)
	ss := SlotSeries{Revisions: []string{}}
	for _, s := range samples {
		i := int(s.Time.Sub(from) / Step)
		if i < 0 || i >= n {
			continue
		}
		buckets[i] = append(buckets[i], s)
		if s.Revision != "" && !slices.Contains(ss.Revisions, s.Revision) {
			ss.Revisions = append(ss.Revisions, s.Revision)
		}
	}
	for i, b := range buckets {
		start := from.Add(time.Duration(i) * Step)
		span := min(Step, now.Sub(start))
		span = max(span, time.Second)
		ss.Requests = append(ss.Requests, len(b))
		ss.RPS = append(ss.RPS, round(float64(len(b))/span.Seconds()))
		var errs, tokens int
		var lat, ttft []float64
		revs := map[string]int{}
		for _, s := range b {
			if s.Failed() {
				errs++
			}
			lat = append(lat, float64(s.Latency)/1e6)
			if s.TTFT > 0 {
				ttft = append(ttft, float64(s.TTFT)/1e6)
			}
			tokens += s.OutputTokens
			revs[s.Revision]++
		}
		var er *float64
		if len(b) > 0 {
			er = ptr(float64(errs) / float64(len(b)))
		}
		slices.Sort(lat)
		slices.Sort(ttft)
		ss.ErrorRate = append(ss.ErrorRate, er)
		ss.LatencyP50MS = append(ss.LatencyP50MS, quantile(lat, 0.5))
		ss.LatencyP99MS = append(ss.LatencyP99MS, quantile(lat, 0.99))
		ss.TTFTP50MS = append(ss.TTFTP50MS, quantile(ttft, 0.5))
		ss.TTFTP95MS = append(ss.TTFTP95MS, quantile(ttft, 0.95))
		ss.OutputTokensPerSec = append(ss.OutputTokensPerSec, round(float64(tokens)/span.Seconds()))
		ss.BucketRevision = append(ss.BucketRevision, dominant(revs))
	}
	return ss
}

// quantile of sorted v, as the meter's Stats computes it; nil when empty.
func quantile(v []float64, p float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	return ptr(v[min(len(v)-1, int(p*float64(len(v))))])
}

func dominant(revs map[string]int) string {
	best, n := "", 0
	for r, c := range revs {
		if c > n || (c == n && r < best) {
			best, n = r, c
		}
	}
	return best
}

func ptr(v float64) *float64 { v = round(v); return &v }

// round keeps three decimals: the charts need no more and the JSON stays short.
func round(v float64) float64 { return math.Round(v*1000) / 1000 }
