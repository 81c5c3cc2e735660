package analysis

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
)

// Check is the evidence about one metric.
type Check struct {
	// Metric is "errors", "latency", "ttft", "tokens_per_sec",
	// "tail_latency:p95", "tail_latency:p99", "output_tokens" or
	// "slo:<metric>:p<q>".
	Metric  string  `json:"metric"`
	Verdict Verdict `json:"verdict"`
	// CandidateN is the candidate's requests judged; BaselineN production's
	// (for U-score checks: the production requests they were ranked among;
	// for bucket-only latency, TTFT and tokens/s: time-matched buckets).
	CandidateN int `json:"candidateN"`
	BaselineN  int `json:"baselineN"`
	// Effect is, for errors, the candidate/production error-rate ratio; for
	// latency, TTFT and tokens/s, the share of production's requests of the
	// same minutes that the candidate's requests, less the margins, were
	// worse than (0.5 for an identical version; with bucket-only data the
	// ratio of mean latencies or tokens/s); for a tail, the candidate's share
	// of requests above production's p95 or p99 (less the margins); for
	// output_tokens the ratio of means; for an SLO, the observed quantile in
	// seconds. Unit names it.
	Effect float64 `json:"effect"`
	Unit   string  `json:"unit,omitempty"`
	// Lower and Upper bound Effect by a confidence sequence at level
	// 1 - Alpha: valid at every look at once.
	Lower float64 `json:"lower"`
	Upper float64 `json:"upper"`
	// EValue is the current value of the test's e-process; the check fails
	// when it reaches 1/Alpha.
	EValue float64 `json:"eValue"`
	// Alpha is the check's share of the gate's alpha.
	Alpha float64 `json:"alpha,omitempty"`
	// Threshold is the pass bound: a pass needs the interval entirely on the
	// good side of it. FailBound is the fail bound: a fail means the effect
	// is surely beyond it.
	Threshold float64 `json:"threshold"`
	FailBound float64 `json:"failBound,omitempty"`
	// Margin and MarginAbs (seconds) are the practical margins: the check
	// fails only when the candidate is worse than production by more than
	// Margin (relative; for errors the rate ratio minus 1) plus MarginAbs.
	Margin    float64 `json:"margin,omitempty"`
	MarginAbs float64 `json:"marginAbs,omitempty"`
	// Needed is a plain estimate of the candidate requests still needed to
	// conclude (pass or fail), assuming the interval narrows as 1/sqrt(n)
	// and the effect stays where it is; 0 when decided, -1 when unknown.
	Needed int `json:"needed"`
	// Reason says, in one plain sentence, what was compared, by how much the
	// candidate differs (with its interval), the margin and why that passes,
	// fails or does not decide yet. Detail has the statistics (e-value,
	// alpha, bounds).
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// Result is the verdict of a gate at one look, with the evidence.
type Result struct {
	Verdict Verdict `json:"verdict"`
	Checks  []Check `json:"checks"`
	Reason  string  `json:"reason"`
}

// Judge keeps the sequential state of one gate across looks. The e-processes
// accumulate over the rollout, and each request must be consumed once, so the
// controller keeps one Judge per gate and passes Observe only the data that
// is new since the previous call (windows [from, to) that follow each other).
//
// Every check that can fail gets Alpha/k, k = the number of checks the
// configured comparison metrics make (7 by default, tail_latency counting
// twice for p95 and p99, whether or not they have data) plus the number of
// SLOs (Bonferroni), so that the probability that the gate ever fails a
// candidate no worse than production (by the margins) stays <= Alpha.
//
// A Judge is not safe for concurrent use.
type Judge struct {
	cfg      Config
	metrics  []string
	explicit bool
	alphaK   float64
	st       judgeState
}

const stateVersion = 2

// judgeState is everything a Judge learns; State serialises it.
type judgeState struct {
	Version int `json:"version"`
	// Looks counts Observe calls; it also seeds the look's random order of
	// revelation and tie-breaking, so a restored judge continues
	// identically.
	Looks             uint64                `json:"looks"`
	CandidateRequests int64                 `json:"candidateRequests"`
	Incomplete        bool                  `json:"incomplete"`
	Errors            errorState            `json:"errors"`
	Latency           scoreState            `json:"latency"`
	TTFT              scoreState            `json:"ttft"`
	Tokens            scoreState            `json:"tokens"`
	Tail              tailState             `json:"tail"`
	Output            meanState             `json:"output"`
	BucketLatency     diffState             `json:"bucketLatency"`
	BucketTTFT        diffState             `json:"bucketTTFT"`
	BucketTokens      diffState             `json:"bucketTokens"`
	Pending           pendingMeans          `json:"pending"`
	SLO               []sloState            `json:"slo"`
	Hist              map[string]*histogram `json:"hist,omitempty"`
}

// checkCount is k of the Bonferroni split: tail_latency makes two checks.
func checkCount(metrics []string, slos int) int {
	k := slos
	for _, m := range metrics {
		k++
		if m == MetricTailLatency {
			k++
		}
	}
	return k
}

// NewJudge returns a Judge for one gate; the error names the invalid field.
func NewJudge(cfg Config) (*Judge, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ms, explicit := cfg.metrics()
	j := &Judge{cfg: cfg, metrics: ms, explicit: explicit}
	j.alphaK = cfg.Alpha / float64(checkCount(ms, len(cfg.SLO)))
	j.st = judgeState{Version: stateVersion, Errors: newErrorState(), SLO: make([]sloState, len(cfg.SLO))}
	for _, sc := range []*scoreState{&j.st.Latency, &j.st.TTFT, &j.st.Tokens} {
		sc.Bet = newBetState(j.alphaK, cfg.PassRisk)
	}
	for _, s := range cfg.SLO {
		if j.st.Hist == nil {
			j.st.Hist = map[string]*histogram{}
		}
		if j.st.Hist[s.Metric] == nil {
			j.st.Hist[s.Metric] = &histogram{Bins: map[int]int{}}
		}
	}
	return j, nil
}

// State returns the judge's sequential state as JSON. Persist it after each
// look; RestoreJudge with the same Config continues the same martingales.
func (j *Judge) State() json.RawMessage {
	b, err := json.Marshal(j.st)
	if err != nil { // cannot happen: the state holds finite numbers only
		panic(fmt.Sprintf("analysis: marshal judge state: %v", err))
	}
	return b
}

// RestoreJudge rebuilds a Judge from State. The Config must be the one the
// state was built with (the number of SLOs is checked). An empty state gives
// a fresh Judge.
func RestoreJudge(cfg Config, state json.RawMessage) (*Judge, error) {
	j, err := NewJudge(cfg)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(state)) == 0 || string(bytes.TrimSpace(state)) == "null" {
		return j, nil
	}
	var st judgeState
	dec := json.NewDecoder(bytes.NewReader(state))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, modelslot.Wrapf(err, modelslot.EINVALID, "restore judge: state is not a judge state: %v", err)
	}
	switch {
	case st.Version != stateVersion:
		return nil, modelslot.Errorf(modelslot.EINVALID, "restore judge: state version %d, want %d", st.Version, stateVersion)
	case len(st.Errors.LogLik) != 2*errHalf+1:
		return nil, modelslot.Errorf(modelslot.EINVALID, "restore judge: state has %d error-ratio grid points, want %d", len(st.Errors.LogLik), 2*errHalf+1)
	case len(st.Errors.AtMargin) != len(errMarginAlt)+1:
		return nil, modelslot.Errorf(modelslot.EINVALID, "restore judge: state has %d error-margin terms, want %d", len(st.Errors.AtMargin), len(errMarginAlt)+1)
	case len(st.SLO) != len(cfg.SLO):
		return nil, modelslot.Errorf(modelslot.EINVALID, "restore judge: state has %d SLOs, the config %d", len(st.SLO), len(cfg.SLO))
	case !st.Latency.Bet.valid() || !st.TTFT.Bet.valid() || !st.Tokens.Bet.valid():
		return nil, modelslot.Errorf(modelslot.EINVALID, "restore judge: state has a betting grid of the wrong size")
	}
	for _, s := range cfg.SLO {
		if st.Hist[s.Metric] == nil {
			return nil, modelslot.Errorf(modelslot.EINVALID, "restore judge: state has no %s histogram for the config's SLO", s.Metric)
		}
	}
	j.st = st
	return j, nil
}

// Observe consumes the data of one window, the same for both slots, that
// follows the previous window. Raw samples are ranked as described in
// docs/ANALYSIS.md; when either side has only Buckets, both are judged from
// buckets (errors from counts, means from bucket means). A window that is
// not Complete is consumed too, but the gate cannot pass until a complete
// window has been observed after it.
func (j *Judge) Observe(candidate, baseline modelslot.Series) {
	j.st.Looks++
	j.st.Incomplete = !candidate.Complete || !baseline.Complete
	rng := rand.New(rand.NewPCG(windowSeed(candidate, baseline), j.st.Looks))
	if len(candidate.Buckets) > 0 || len(baseline.Buckets) > 0 {
		j.observeBuckets(candidate, baseline)
		return
	}
	j.observeSamples(candidate.Samples, baseline.Samples, rng)
}

// windowSeed hashes the window's request times and counts. The order of
// revelation must not depend on the values ranked, only be random; seeding
// it from the look number alone would give every rollout the same orders,
// and rank-driven scores (above all when the candidate is the larger side)
// would move together across rollouts. The same inputs still give the same
// seed, so a restored judge continues identically.
func windowSeed(c, b modelslot.Series) uint64 {
	h := fnv.New64a()
	var buf [8]byte
	put := func(x int64) {
		binary.LittleEndian.PutUint64(buf[:], uint64(x))
		h.Write(buf[:])
	}
	for _, s := range [2]modelslot.Series{c, b} {
		put(int64(len(s.Samples)))
		for _, x := range s.Samples {
			put(x.Time.UnixNano())
		}
		put(int64(len(s.Buckets)))
	}
	return h.Sum64() ^ 0x6d6f64656c736c6f
}

type slotCounts struct{ nc, ec, nb, eb int64 }

// errBucket groups errors for the counts test; scoreBlock groups requests
// for the U-scores (production's distribution of the same minute).
const (
	errBucket  = 10 * time.Second
	scoreBlock = time.Minute
)

// block holds one score block's successful values per slot.
type block struct {
	lat, ttft, tps [2][]float64 // [0] candidate (transformed), [1] production
}

func (j *Judge) observeSamples(cand, base []modelslot.Sample, rng *rand.Rand) {
	j.st.CandidateRequests += int64(len(cand))
	ekey := func(t time.Time) int64 { return floorDiv(t.UnixNano(), int64(errBucket)) }
	bkey := func(t time.Time) int64 { return floorDiv(t.UnixNano(), int64(scoreBlock)) }

	counts := map[int64]*slotCounts{}
	blocks := map[int64]*block{}
	getC := func(k int64) *slotCounts {
		c := counts[k]
		if c == nil {
			c = &slotCounts{}
			counts[k] = c
		}
		return c
	}
	getB := func(k int64) *block {
		b := blocks[k]
		if b == nil {
			b = &block{}
			blocks[k] = b
		}
		return b
	}
	for side, ss := range [2][]modelslot.Sample{cand, base} {
		for _, s := range ss {
			c := getC(ekey(s.Time))
			failed := s.Failed()
			if side == 0 {
				c.nc++
				if failed {
					c.ec++
				}
			} else {
				c.nb++
				if failed {
					c.eb++
				}
			}
			if failed {
				continue // failures are the errors check's business
			}
			b := getB(bkey(s.Time))
			if s.Latency > 0 {
				v := s.Latency.Seconds()
				if side == 0 {
					v = j.transform(v, true)
				}
				b.lat[side] = append(b.lat[side], v)
			}
			if s.TTFT > 0 {
				v := s.TTFT.Seconds()
				if side == 0 {
					v = j.transform(v, true)
				}
				b.ttft[side] = append(b.ttft[side], v)
			}
			if v := s.TokensPerSecond(); v > 0 {
				if side == 0 {
					v = j.transform(v, false)
				}
				b.tps[side] = append(b.tps[side], v)
			}
		}
	}
	keys := make([]int64, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return keys[a] < keys[b] })
	for _, k := range keys {
		c := counts[k]
		j.st.Errors.add(c.nc, c.ec, c.nb, c.eb, j.cfg.ErrorRatioMargin)
	}
	bkeys := make([]int64, 0, len(blocks))
	for k := range blocks {
		bkeys = append(bkeys, k)
	}
	sort.Slice(bkeys, func(a, b int) bool { return bkeys[a] < bkeys[b] })
	for _, k := range bkeys {
		b := blocks[k]
		if len(b.lat[0]) > 0 {
			j.st.Latency.Reference += int64(len(b.lat[1]))
			for _, u := range uScores(b.lat[0], b.lat[1], true, rng) {
				j.st.Latency.Bet.add(u)
				j.st.Tail.N++
				if u > 0.95 {
					j.st.Tail.Above95++
				}
				if u > 0.99 {
					j.st.Tail.Above99++
				}
				if u > 0.995 {
					j.st.Tail.Above995++
				}
			}
		}
		if len(b.ttft[0]) > 0 {
			j.st.TTFT.Reference += int64(len(b.ttft[1]))
			for _, u := range uScores(b.ttft[0], b.ttft[1], true, rng) {
				j.st.TTFT.Bet.add(u)
			}
		}
		if len(b.tps[0]) > 0 {
			j.st.Tokens.Reference += int64(len(b.tps[1]))
			for _, u := range uScores(b.tps[0], b.tps[1], false, rng) {
				j.st.Tokens.Bet.add(u)
			}
		}
	}

	// Output tokens and SLOs: successful requests only.
	for _, s := range cand {
		if s.Failed() {
			continue
		}
		if s.OutputTokens > 0 || s.TokensCounted {
			j.st.Output.Cand.add(float64(s.OutputTokens))
		}
		for i, slo := range j.cfg.SLO {
			v := s.Latency
			if slo.Metric == MetricTTFT {
				v = s.TTFT
			}
			if v <= 0 {
				continue
			}
			j.st.SLO[i].N++
			if v > slo.Max {
				j.st.SLO[i].Above++
			}
		}
		if h := j.st.Hist[MetricLatency]; h != nil && s.Latency > 0 {
			h.add(s.Latency.Seconds())
		}
		if h := j.st.Hist[MetricTTFT]; h != nil && s.TTFT > 0 {
			h.add(s.TTFT.Seconds())
		}
	}
	for _, s := range base {
		if (s.OutputTokens > 0 || s.TokensCounted) && !s.Failed() {
			j.st.Output.Base.add(float64(s.OutputTokens))
		}
	}
	j.st.Output.freezeTau()
}

// agg is one slot's aggregate over one bucket.
type agg struct {
	req, err          int64
	lat, ttft, tps    float64 // sums of values weighted by requests
	latN, ttftN, tpsN float64
}

// pendingMeans holds bucket sums not yet judged: a bucket mean of a few
// heavy-tailed requests is far from normal, and the mean tests take one
// observation per group of buckets that has at least minGroupRequests
// successful requests on each side.
type pendingMeans struct {
	Sums [2][6]float64 `json:"sums"` // per side: lat, latN, ttft, ttftN, tps, tpsN
}

const minGroupRequests = 100

func (p *pendingMeans) add(side int, a *agg) {
	for i, v := range [6]float64{a.lat, a.latN, a.ttft, a.ttftN, a.tps, a.tpsN} {
		p.Sums[side][i] += v
	}
}

func (a *agg) mean(sum, n float64) float64 {
	if n <= 0 {
		return 0
	}
	return sum / n
}

func (j *Judge) observeBuckets(cand, base modelslot.Series) {
	grain := time.Minute
	for _, s := range []modelslot.Series{cand, base} {
		if len(s.Buckets) > 0 && s.Buckets[0].Grain > 0 {
			grain = s.Buckets[0].Grain
			break
		}
	}
	key := func(t time.Time) int64 { return floorDiv(t.UnixNano(), int64(grain)) }
	collect := func(s modelslot.Series) map[int64]*agg {
		m := map[int64]*agg{}
		get := func(k int64) *agg {
			a := m[k]
			if a == nil {
				a = &agg{}
				m[k] = a
			}
			return a
		}
		for _, b := range s.Buckets {
			a := get(key(b.Start))
			a.req += b.Requests
			a.err += b.Errors
			w := float64(b.Requests)
			if b.MeanLatency > 0 {
				a.lat += w * b.MeanLatency.Seconds()
				a.latN += w
			}
			if b.MeanTTFT > 0 {
				a.ttft += w * b.MeanTTFT.Seconds()
				a.ttftN += w
			}
			if b.MeanTokensPerSec > 0 {
				a.tps += w * b.MeanTokensPerSec
				a.tpsN += w
			}
		}
		for _, x := range s.Samples {
			a := get(key(x.Time))
			a.req++
			if x.Failed() {
				a.err++
				continue
			}
			if x.Latency > 0 {
				a.lat += x.Latency.Seconds()
				a.latN++
			}
			if x.TTFT > 0 {
				a.ttft += x.TTFT.Seconds()
				a.ttftN++
			}
			if v := x.TokensPerSecond(); v > 0 {
				a.tps += v
				a.tpsN++
			}
		}
		return m
	}
	cm, bm := collect(cand), collect(base)
	keys := make([]int64, 0, len(cm)+len(bm))
	for k := range cm {
		keys = append(keys, k)
	}
	for k := range bm {
		if cm[k] == nil {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(a, b int) bool { return keys[a] < keys[b] })
	zero := &agg{}
	for _, k := range keys {
		c, b := cm[k], bm[k]
		if c == nil {
			c = zero
		}
		if b == nil {
			b = zero
		}
		j.st.CandidateRequests += c.req
		j.st.Errors.add(c.req, c.err, b.req, b.err, j.cfg.ErrorRatioMargin)
		j.st.Pending.add(0, c)
		j.st.Pending.add(1, b)
		pc, pb := j.st.Pending.Sums[0], j.st.Pending.Sums[1]
		if max(pc[1], pc[3], pc[5]) < minGroupRequests || max(pb[1], pb[3], pb[5]) < minGroupRequests {
			continue
		}
		for i, d := range []*diffState{&j.st.BucketLatency, &j.st.BucketTTFT, &j.st.BucketTokens} {
			if pc[2*i+1] > 0 && pb[2*i+1] > 0 {
				d.add(pc[2*i]/pc[2*i+1], pb[2*i]/pb[2*i+1])
			}
		}
		j.st.Pending = pendingMeans{}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (j *Judge) needMore() string {
	return fmt.Sprintf(" (a pass needs %d candidate requests; %d so far)", j.cfg.MinSamples, j.st.CandidateRequests)
}

// Result returns the gate's verdict on everything observed so far:
//   - fail if any check fails (an e-value reached k/Alpha, or an SLO's
//     confidence sequence lies above its limit);
//   - pass if every check with data passes, no metric named in Config.Metrics
//     lacks data, there are at least MinSamples candidate requests and the
//     latest window was complete;
//   - inconclusive otherwise, and always when there is no candidate data.
func (j *Judge) Result() Result {
	enough := j.st.CandidateRequests >= int64(j.cfg.MinSamples)
	var checks []Check
	var missing []string
	addCheck := func(ch Check, hasData bool) {
		if !hasData {
			if j.explicit {
				ch.Verdict = Inconclusive
				checks = append(checks, ch)
				missing = append(missing, ch.Metric)
			}
			return
		}
		checks = append(checks, ch)
	}
	for _, m := range j.metrics {
		switch m {
		case MetricErrors:
			ch, ok := j.errorsCheck(enough)
			// Errors are always judged: no data there means no data at all.
			checks = append(checks, ch)
			if !ok {
				missing = append(missing, m)
			}
		case MetricLatency, MetricTTFT:
			sc, d := j.st.Latency, j.st.BucketLatency
			unit := "s (bucket means)"
			if m == MetricTTFT {
				sc, d = j.st.TTFT, j.st.BucketTTFT
			}
			if sc.Bet.N > 0 || d.D.N == 0 {
				addCheck(j.scoreCheck(m, sc, true, enough))
			} else {
				addCheck(j.meanCheck(d.test(m, unit), true, enough), true)
			}
		case MetricTokensPerSec:
			if j.st.Tokens.Bet.N > 0 || j.st.BucketTokens.D.N == 0 {
				addCheck(j.scoreCheck(m, j.st.Tokens, false, enough))
			} else {
				addCheck(j.meanCheck(j.st.BucketTokens.test(m, "tokens/s (bucket means)"), false, enough), true)
			}
		case MetricTailLatency:
			addCheck(j.tailCheck(0.95, enough))
			addCheck(j.tailCheck(0.99, enough))
		case MetricOutputTokens:
			t := j.st.Output.test()
			t.metric, t.unit = MetricOutputTokens, "tokens per answer"
			addCheck(j.bandCheck(t, enough), t.nc > 0 && t.nb > 0)
		}
	}
	for i := range j.cfg.SLO {
		ch := j.sloCheck(i, enough)
		checks = append(checks, ch)
		if ch.CandidateN == 0 {
			missing = append(missing, ch.Metric)
		}
	}

	// A check whose interval is already clear still waits for MinSamples.
	for i := range checks {
		if checks[i].Verdict == Inconclusive && !enough && checks[i].Needed >= 0 {
			checks[i].Needed = max(checks[i].Needed, j.cfg.MinSamples-int(j.st.CandidateRequests))
		}
	}
	r := Result{Verdict: Inconclusive, Checks: checks}
	var failed, open []string
	for _, ch := range checks {
		switch ch.Verdict {
		case Fail:
			failed = append(failed, ch.Reason)
		case Inconclusive:
			open = append(open, ch.Metric)
		}
	}
	switch {
	case len(failed) > 0:
		r.Verdict = Fail
		r.Reason = "fail: " + strings.Join(failed, "; ")
	case j.st.CandidateRequests == 0:
		r.Reason = "inconclusive: no candidate requests yet"
	case len(missing) > 0:
		r.Reason = "inconclusive: no data yet for " + strings.Join(missing, ", ")
	case !enough:
		r.Reason = fmt.Sprintf("inconclusive: %d of the %d candidate requests a pass needs", j.st.CandidateRequests, j.cfg.MinSamples)
	case j.st.Incomplete:
		r.Reason = "inconclusive: the latest window was incomplete (data still arriving)"
	case len(open) > 0:
		r.Reason = "inconclusive: not enough evidence yet for " + strings.Join(open, ", ")
		most := 0
		for _, ch := range checks {
			if ch.Verdict == Inconclusive {
				if ch.Needed < 0 { // one check has nothing to go on: no estimate
					most = -1
					break
				}
				most = max(most, ch.Needed)
			}
		}
		if most > 0 {
			r.Reason += fmt.Sprintf(" (roughly %d more candidate requests at the current effects)", most)
		}
	default:
		r.Verdict = Pass
		r.Reason = fmt.Sprintf("pass: after %d candidate requests, all %d checks show the candidate is not worse than production by more than their margins", j.st.CandidateRequests, len(checks))
	}
	return r
}
