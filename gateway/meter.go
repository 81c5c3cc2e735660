package gateway

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/prometheus/client_golang/prometheus"
)

var _ modelslot.MetricSource = (*Meter)(nil)

// Meter keeps, per app and slot, a ring of the most recent requests (what
// the rollout gates judge and the admin API summarises) and feeds the
// Prometheus metrics.
type Meter struct {
	capacity int
	mu       sync.Mutex
	slots    map[[2]string]*slotMeter
	prom     *promMetrics
}

func newMeter(capacity int, reg prometheus.Registerer) *Meter {
	return &Meter{capacity: capacity, slots: map[[2]string]*slotMeter{}, prom: newPromMetrics(reg)}
}

// slot returns the meter of one slot, creating it once; it outlives
// snapshots so that a routing change keeps the history.
func (m *Meter) slot(app, slot string) *slotMeter {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{app, slot}
	sm := m.slots[k]
	if sm == nil {
		sm = &slotMeter{app: app, slot: slot, ring: make([]modelslot.Sample, m.capacity), prom: m.prom}
		m.slots[k] = sm
	}
	return sm
}

type slotMeter struct {
	app, slot string
	prom      *promMetrics

	mu   sync.Mutex
	ring []modelslot.Sample
	next int  // index of the next write
	full bool // the ring has wrapped
	// children resolved once per revision, not per request
	children map[string]*promChildren
	current  *promChildren
}

func (sm *slotMeter) bindRevision(revision, version string) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if sm.children == nil {
		sm.children = map[string]*promChildren{}
	}
	c := sm.children[revision]
	if c == nil {
		c = sm.prom.children(sm.app, sm.slot, revision, version)
		sm.children[revision] = c
	}
	sm.current = c
}

func (sm *slotMeter) record(s modelslot.Sample) {
	sm.mu.Lock()
	sm.ring[sm.next] = s
	sm.next++
	if sm.next == len(sm.ring) {
		sm.next = 0
		sm.full = true
	}
	c := sm.children[s.Revision]
	sm.mu.Unlock()
	if c != nil {
		c.observe(s)
	}
}

// samples returns the recorded samples that finished in [from, to), oldest
// first.
func (sm *slotMeter) samples(from, to time.Time) []modelslot.Sample {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	var out []modelslot.Sample
	collect := func(part []modelslot.Sample) {
		for _, s := range part {
			if !s.Time.Before(from) && s.Time.Before(to) {
				out = append(out, s)
			}
		}
	}
	if sm.full {
		collect(sm.ring[sm.next:])
	}
	collect(sm.ring[:sm.next])
	return out
}

// Series implements modelslot.MetricSource over the recent requests.
func (m *Meter) Series(ctx context.Context, q modelslot.MetricQuery) (modelslot.Series, error) {
	slot := q.Slot
	if slot == modelslot.Self {
		slot = modelslot.Production
	}
	m.mu.Lock()
	sm := m.slots[[2]string{q.App, slot}]
	m.mu.Unlock()
	out := modelslot.Series{Slot: slot, Complete: true}
	if sm != nil {
		out.Samples = sm.samples(q.From, q.To)
	}
	return out, nil
}

// Stats summarises one slot's requests in a window.
type Stats struct {
	App      string  `json:"app"`
	Slot     string  `json:"slot"`
	Revision string  `json:"revision,omitempty"`
	Window   string  `json:"window"`
	Requests int     `json:"requests"`
	RPS      float64 `json:"rps"`
	// Requests by status class: "2xx", "4xx", "5xx", "error" (no answer),
	// "cancelled" (the client went away).
	ByClass map[string]int `json:"byClass"`
	// ErrorRate is the share of failed requests, as the rollout analysis
	// counts them (modelslot.Sample.Failed): no answer, 5xx, 429 and other
	// 4xx but 499.
	ErrorRate    float64   `json:"errorRate"`
	LatencyMS    Quantiles `json:"latencyMs"`
	TTFTMS       Quantiles `json:"ttftMs"`
	OutputTokens int       `json:"outputTokens"`
	// DecodeTokensPerSec is a per-request decode rate: the mean over
	// requests of output tokens per second after the first token
	// (modelslot.Sample.TokensPerSecond). Not a throughput: that is
	// outputTokensPerSec in the dashboard's series.
	DecodeTokensPerSec float64 `json:"decodeTokensPerSec"`
}

// Quantiles of a distribution in milliseconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Stats returns per-slot, per-revision summaries of the last window.
func (m *Meter) Stats(app string, window time.Duration, now time.Time) []Stats {
	m.mu.Lock()
	var sms []*slotMeter
	for k, sm := range m.slots {
		if app == "" || k[0] == app {
			sms = append(sms, sm)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(sms, func(a, b *slotMeter) int {
		if c := cmpStr(a.app, b.app); c != 0 {
			return c
		}
		return cmpStr(a.slot, b.slot)
	})
	var out []Stats
	for _, sm := range sms {
		out = append(out, Summarise(sm.app, sm.slot, window, sm.samples(now.Add(-window), now.Add(time.Nanosecond)))...)
	}
	return out
}

// Summarise gives per-revision summaries of one slot's samples, in the
// order revisions first appear (replicas summarise the samples of all of
// them with it).
func Summarise(app, slot string, window time.Duration, samples []modelslot.Sample) []Stats {
	byRev := map[string][]modelslot.Sample{}
	var order []string
	for _, s := range samples {
		if _, ok := byRev[s.Revision]; !ok {
			order = append(order, s.Revision)
		}
		byRev[s.Revision] = append(byRev[s.Revision], s)
	}
	var out []Stats
	for _, rev := range order {
		out = append(out, summarise(app, slot, rev, window, byRev[rev]))
	}
	return out
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func summarise(app, slot, rev string, window time.Duration, ss []modelslot.Sample) Stats {
	st := Stats{App: app, Slot: slot, Revision: rev, Window: window.String(), Requests: len(ss), ByClass: map[string]int{}}
	var lat, ttft []float64
	var tpsSum float64
	var tpsN, errs int
	for _, s := range ss {
		switch {
		case s.Status == 0:
			st.ByClass["error"]++
		case s.Status == statusClientClosed:
			st.ByClass["cancelled"]++
		default:
			st.ByClass[string(rune('0'+s.Status/100))+"xx"]++
		}
		if s.Failed() {
			errs++
		}
		lat = append(lat, float64(s.Latency)/1e6)
		if s.TTFT > 0 {
			ttft = append(ttft, float64(s.TTFT)/1e6)
		}
		st.OutputTokens += s.OutputTokens
		if tps := s.TokensPerSecond(); tps > 0 {
			tpsSum += tps
			tpsN++
		}
	}
	if len(ss) > 0 {
		st.ErrorRate = float64(errs) / float64(len(ss))
		st.RPS = float64(len(ss)) / window.Seconds()
	}
	if tpsN > 0 {
		st.DecodeTokensPerSec = tpsSum / float64(tpsN)
	}
	st.LatencyMS = quantiles(lat)
	st.TTFTMS = quantiles(ttft)
	return st
}

func quantiles(v []float64) Quantiles {
	if len(v) == 0 {
		return Quantiles{}
	}
	slices.Sort(v)
	q := func(p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }
	return Quantiles{P50: q(0.5), P90: q(0.9), P95: q(0.95), P99: q(0.99)}
}

// meterWriter wraps the client's ResponseWriter to see the status, the
// first content token and the output tokens, without buffering anything.
type meterWriter struct {
	http.ResponseWriter
	start      time.Time
	status     int
	stream     bool
	ttft       time.Duration
	events     int  // content events seen in a stream
	streamErr  bool // an error event came in a 200 stream
	usage      int  // completion_tokens from a usage object, -1 when absent
	prompt     int  // prompt_tokens from a usage object, -1 when absent
	tail       [32]byte
	tailN      int
	rw         *rewriter
	head       []byte // first bytes of the answer, kept for shadow comparison
	keepHead   bool
	wroteBytes bool
	// ended: the stream's last event (data: [DONE], or a Responses API
	// stream's final event) was written; delivered: and flushed to the
	// client, which then has the whole answer.
	ended, delivered bool
}

var meterWriters = sync.Pool{New: func() any { return new(meterWriter) }}

func getMeterWriter(w http.ResponseWriter, start time.Time, rw *rewriter) *meterWriter {
	mw := meterWriters.Get().(*meterWriter)
	*mw = meterWriter{ResponseWriter: w, start: start, usage: -1, prompt: -1, rw: rw, head: mw.head[:0]}
	return mw
}

func putMeterWriter(mw *meterWriter) {
	mw.ResponseWriter = nil
	mw.rw = nil
	meterWriters.Put(mw)
}

func (mw *meterWriter) WriteHeader(code int) {
	if mw.status == 0 {
		mw.status = code
		h := mw.Header()
		mw.stream = eventStream(h)
		if mw.rw != nil && !mw.stream {
			// The body's length changes when the model name is rewritten.
			delete(h, "Content-Length")
		}
	}
	mw.ResponseWriter.WriteHeader(code)
}

var (
	tokContent = []byte(`"content":"`)
	tokText    = []byte(`"text":"`)
	tokArgs    = []byte(`"arguments":"`) // a streamed tool call's tokens
	tokUsage   = []byte(`"completion_tokens":`)
	tokPrompt  = []byte(`"prompt_tokens":`)
	tokData    = []byte("data:")
)

func (mw *meterWriter) Write(p []byte) (int, error) {
	if mw.status == 0 {
		mw.WriteHeader(http.StatusOK)
	}
	if mw.stream {
		mw.scanStream(p)
	} else if !mw.wroteBytes && mw.status < 300 {
		// A non-streaming answer's "first token" is its first byte.
		mw.ttft = time.Since(mw.start)
	}
	mw.wroteBytes = true
	mw.scanUsage(p)
	if mw.keepHead && len(mw.head) < 64<<10 {
		mw.head = append(mw.head, p[:min(len(p), 64<<10-len(mw.head))]...)
	}
	var n int
	var err error
	if mw.rw != nil {
		// The proxy checks that every byte it gave was written.
		_, err = mw.ResponseWriter.Write(mw.rw.response(p))
		n = len(p)
	} else {
		n, err = mw.ResponseWriter.Write(p)
	}
	if mw.stream && err == nil && !mw.ended {
		mw.ended = streamEnds(p, mw.tail[:mw.tailN])
	}
	return n, err
}

var (
	tokDone         = []byte("[DONE]")
	tokResponseDone = [...][]byte{[]byte(`"type":"response.completed"`), []byte(`"type":"response.incomplete"`), []byte(`"type":"response.failed"`)}
)

// streamEnds reports whether a write ends an SSE answer with its last
// event, complete up to its line end: "data: [DONE]" (chat and
// completions) or a Responses API stream's final event. tail is the
// stream's last bytes, this write included, for a marker split across
// writes.
func streamEnds(p, tail []byte) bool {
	if len(p) == 0 || p[len(p)-1] != '\n' {
		return false
	}
	t := bytes.TrimRight(tail, "\r\n ")
	if bytes.HasSuffix(t, tokDone) {
		t = bytes.TrimRight(t[:len(t)-len(tokDone)], " ")
		return bytes.HasSuffix(t, tokData)
	}
	if i := bytes.LastIndex(p, tokData); i >= 0 {
		for _, tok := range tokResponseDone {
			if bytes.Contains(p[i:], tok) {
				return true
			}
		}
	}
	return false
}

// scanStream counts SSE events that carry content and notes when the first
// one passed. Events split across writes are counted when their "data:"
// prefix is seen; content detection looks within the write.
func (mw *meterWriter) scanStream(p []byte) {
	for rest := p; ; {
		i := bytes.Index(rest, tokData)
		if i < 0 {
			return
		}
		rest = rest[i+len(tokData):]
		end := bytes.Index(rest, tokData)
		ev := rest
		if end >= 0 {
			ev = rest[:end]
		}
		if hasContent(ev) {
			mw.events++
			if mw.ttft == 0 {
				mw.ttft = time.Since(mw.start)
			}
		} else if isErrorEvent(ev) {
			mw.streamErr = true
		}
	}
}

var tokError = []byte(`{"error"`)

// isErrorEvent reports whether an event is an error object, as OpenAI and
// vLLM send when a stream fails after its 200 (`data: {"error": {...}}`).
func isErrorEvent(ev []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(ev, " "), tokError)
}

// hasContent reports whether an event carries a non-empty content, text or
// tool-call arguments delta (a role-only first chunk does not count as a
// token).
func hasContent(ev []byte) bool {
	for _, tok := range [...][]byte{tokContent, tokText, tokArgs} {
		if i := bytes.Index(ev, tok); i >= 0 && i+len(tok) < len(ev) && ev[i+len(tok)] != '"' {
			return true
		}
	}
	return false
}

// scanUsage finds "completion_tokens":N and "prompt_tokens":N, also
// across a write boundary.
func (mw *meterWriter) scanUsage(p []byte) {
	mw.usage = mw.scanInt(p, tokUsage, mw.usage)
	mw.prompt = mw.scanInt(p, tokPrompt, mw.prompt)
	if len(p) >= len(mw.tail) {
		mw.tailN = copy(mw.tail[:], p[len(p)-len(mw.tail):])
	} else {
		keep := min(mw.tailN, len(mw.tail)-len(p))
		copy(mw.tail[:], mw.tail[mw.tailN-keep:mw.tailN])
		mw.tailN = keep + copy(mw.tail[keep:], p)
	}
}

// scanInt returns the number after tok in p, or in the tail of the previous
// write joined to p; else old.
func (mw *meterWriter) scanInt(p, tok []byte, old int) int {
	if i := indexTokens(p, tok); i >= 0 {
		return parseInt(p[i+len(tok):])
	}
	if mw.tailN > 0 {
		var joined [64]byte
		n := copy(joined[:], mw.tail[:mw.tailN])
		n += copy(joined[n:], p[:min(len(p), 32)])
		if i := indexTokens(joined[:n], tok); i >= 0 {
			return parseInt(joined[i+len(tok) : n])
		}
	}
	return old
}

// tokTokens ends tokUsage and tokPrompt.
var tokTokens = []byte(`_tokens":`)

// indexTokens is bytes.Index(p, tok) for a tok that ends in tokTokens. It
// looks for the '_' of that end, rare in JSON, where bytes.Index looks
// for tok's first byte, a quote, which a JSON answer has every few bytes
// (and then falls back to a slower search): a fifth of the meter's cost
// on a plain answer.
func indexTokens(p, tok []byte) int {
	pre := tok[:len(tok)-len(tokTokens)]
	for off := len(pre); off < len(p); {
		i := bytes.Index(p[off:], tokTokens)
		if i < 0 {
			return -1
		}
		i += off
		if bytes.Equal(p[i-len(pre):i], pre) {
			return i - len(pre)
		}
		off = i + 1
	}
	return -1
}

func parseInt(b []byte) int {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	n, any := 0, false
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
		any = true
	}
	if !any {
		return -1
	}
	return n
}

// Flush passes SSE events on at once.
func (mw *meterWriter) Flush() { mw.FlushError() }

// FlushError is Flush with its error (http.ResponseController uses it);
// a flush that succeeds after the stream's last event delivers the answer.
func (mw *meterWriter) FlushError() error {
	var err error
	switch f := mw.ResponseWriter.(type) {
	case interface{ FlushError() error }:
		err = f.FlushError()
	case http.Flusher:
		f.Flush()
	default:
		return http.ErrNotSupported
	}
	if err == nil && mw.ended {
		mw.delivered = true
	}
	return err
}

// Unwrap lets http.ResponseController reach the real writer.
func (mw *meterWriter) Unwrap() http.ResponseWriter { return mw.ResponseWriter }

func (mw *meterWriter) firstBytes() []byte { return mw.head }

func (mw *meterWriter) sample(revision string) modelslot.Sample {
	// One read of the monotonic clock; the end's wall time from the
	// start's.
	lat := time.Since(mw.start)
	s := modelslot.Sample{Time: mw.start.Add(lat), Status: mw.status, Latency: lat, TTFT: mw.ttft, Revision: revision}
	if mw.status == 0 {
		s.Status = 0
	}
	switch {
	case mw.usage >= 0:
		s.OutputTokens = mw.usage
	default:
		s.OutputTokens = mw.events
	}
	s.TokensCounted = mw.usage >= 0 || mw.stream
	s.Streamed = mw.stream
	if mw.prompt > 0 {
		s.InputTokens = mw.prompt
	}
	if mw.streamErr && s.Status < 300 {
		// The stream said it failed: the user got an error, not an answer.
		s.Status = 0
	}
	if s.TTFT == 0 && s.Status >= 200 && s.Status < 300 {
		s.TTFT = s.Latency
	}
	return s
}
