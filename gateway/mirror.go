package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"
)

// ShadowHeader marks a mirrored request, so that a backend (and its logs)
// can tell shadow traffic from users'.
const ShadowHeader = "X-Modelslot-Shadow"

// Mirroring limits. The queue, its bytes (Config.MirrorMaxBytes) and the
// pool bound what shadow traffic can cost: a mirror that is slow or down
// fills the queue, and what does not fit is dropped and counted, never
// waited for.
const (
	mirrorQueue   = 256
	mirrorWorkers = 4
	// mirrorTimeout bounds one shadow request, end to end.
	mirrorTimeout = 5 * time.Minute
	// mirrorMaxAnswer is how much of a shadow answer is kept for the
	// comparison; the rest is read and discarded, so latency stays true.
	mirrorMaxAnswer = 4 << 20
	// prodHeadMax is what the meter keeps of production's answer.
	prodHeadMax = 64 << 10
	// shadowPairsKept is how many recent comparisons each app keeps.
	shadowPairsKept = 4096
	// shadowRecent is how many pairs ShadowStats shows.
	shadowRecent = 20
)

// mirrorRule mirrors a share of production requests to a slot.
type mirrorRule struct {
	slot      *slotRoute
	threshold int // out of buckets
	n         atomic.Uint64
}

// take decides whether this request is mirrored; a counter spreads the
// mirrored share evenly instead of drawing at random.
func (m *mirrorRule) take() bool {
	n := m.n.Add(1)
	return int((n*uint64(m.threshold))%buckets) < m.threshold
}

// mirrorJob is one mirrored request with production's side of the pair.
// It owns copies of everything it needs: the user's request is gone by the
// time a worker picks it up.
type mirrorJob struct {
	app      string
	slot     *slotRoute
	method   string
	path     string
	rawQuery string
	header   http.Header
	body     []byte
	prod     modelslot.Sample
	prodHead []byte
	// size is what the job holds against Config.MirrorMaxBytes.
	size int64
}

// mirrorer sends mirrored requests in the background through a bounded
// queue served by a fixed pool of workers; the user's request never waits
// for it. Workers start with the first mirrored request and stop in close.
type mirrorer struct {
	g     *Gateway
	queue chan *mirrorJob
	// maxBytes bounds bytes, what the queued and in-flight jobs hold.
	maxBytes int64
	bytes    atomic.Int64
	prom     mirrorMetrics

	startMu sync.Mutex
	started atomic.Bool
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	apps sync.Map // app name -> *shadowApp
}

func newMirrorer(g *Gateway, maxBytes int64, reg prometheus.Registerer) *mirrorer {
	ctx, cancel := context.WithCancel(context.Background())
	m := &mirrorer{g: g, queue: make(chan *mirrorJob, mirrorQueue), maxBytes: maxBytes, ctx: ctx, cancel: cancel}
	m.prom = newMirrorMetrics(reg, func() float64 { return float64(m.bytes.Load()) })
	return m
}

// mirrorMetrics are the mirror's Prometheus metrics.
type mirrorMetrics struct {
	dropped *prometheus.CounterVec
}

// Why a mirror was dropped (the reason label).
const (
	dropQueueFull = "queue_full"  // mirrorQueue mirrors wait already
	dropBytes     = "bytes_limit" // Config.MirrorMaxBytes would be exceeded
	dropStopped   = "stopped"     // the gateway is closing
)

func newMirrorMetrics(reg prometheus.Registerer, queued func() float64) mirrorMetrics {
	m := mirrorMetrics{dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelslot_gateway_mirror_dropped_total",
		Help: "Mirrored (shadow) requests not sent, by app and reason: queue_full, bytes_limit (gateway.mirrorMaxBytes), stopped.",
	}, []string{"app", "reason"})}
	if reg != nil {
		reg.MustRegister(m.dropped, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "modelslot_gateway_mirror_queued_bytes",
			Help: "Bytes held by mirrored requests queued or in flight, bounded by gateway.mirrorMaxBytes.",
		}, queued))
	}
	return m
}

// capture copies what the mirror needs of r before it is proxied: the
// direct proxy path turns r into the production backend's own request (its
// URL, query and credentials), which must never reach the shadow.
func (m *mirrorer) capture(app *appRoute, r *http.Request) *mirrorJob {
	rule := app.mirror
	if rule == nil {
		return nil
	}
	h := r.Header.Clone()
	for _, k := range [...]string{"Content-Length", "Cookie", "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "X-Modelslot-App", "Accept-Encoding"} {
		h.Del(k)
	}
	h.Set(ShadowHeader, "1")
	return &mirrorJob{app: app.name, slot: rule.slot, method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery, header: h}
}

// submit queues job (from capture) with the request body and production's
// outcome, or drops it when the queue is full. It never blocks.
func (m *mirrorer) submit(job *mirrorJob, body []byte, prod modelslot.Sample, prodHead []byte) {
	if job == nil || prod.Status == statusClientClosed {
		return
	}
	st := m.stats(job.app)
	if !m.started.Load() && !m.start() {
		m.drop(st, job.app, dropStopped)
		return
	}
	// What the job holds until a worker is done with it: the body, the
	// copy a rewriting slot makes of it, production's answer head.
	size := int64(len(body) + len(prodHead))
	if job.slot.rewrite != nil {
		size += int64(len(body))
	}
	if m.bytes.Add(size) > m.maxBytes {
		m.bytes.Add(-size)
		st.droppedBytes.Add(1)
		m.drop(st, job.app, dropBytes)
		return
	}
	job.body, job.prod, job.prodHead, job.size = body, prod, bytes.Clone(prodHead), size
	select {
	case m.queue <- job:
	default:
		m.bytes.Add(-size)
		m.drop(st, job.app, dropQueueFull)
	}
}

func (m *mirrorer) drop(st *shadowApp, app, reason string) {
	st.dropped.Add(1)
	m.prom.dropped.WithLabelValues(app, reason).Inc()
}

// start launches the workers once; it reports false after close.
func (m *mirrorer) start() bool {
	m.startMu.Lock()
	defer m.startMu.Unlock()
	if m.closed {
		return false
	}
	if !m.started.Load() {
		for range mirrorWorkers {
			m.wg.Add(1)
			go m.work()
		}
		m.started.Store(true)
	}
	return true
}

// close stops the workers; mirrors in flight are cancelled and queued ones
// are abandoned.
func (m *mirrorer) close() {
	m.startMu.Lock()
	m.closed = true
	m.startMu.Unlock()
	m.cancel()
	m.wg.Wait()
}

func (m *mirrorer) work() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case job := <-m.queue:
			m.mirror(job)
			m.bytes.Add(-job.size)
		}
	}
}

// mirror sends one job to its slot's backend and records the comparison.
func (m *mirrorer) mirror(job *mirrorJob) {
	st := m.stats(job.app)
	st.sent.Add(1)
	shadow, err := m.send(job)
	if err != nil {
		if m.ctx.Err() != nil {
			return // shutting down: not the shadow's failure
		}
		st.failed.Add(1)
		m.g.log.Debug("shadow request failed", "app", job.app, "slot", job.slot.name, "err", safeErr(err))
	}
	st.add(comparePair(job, shadow, err))
}

// shadowAnswer is what a worker saw of the shadow's answer.
type shadowAnswer struct {
	status  int
	latency time.Duration
	ttft    time.Duration
	tokens  int
	body    []byte
	stream  bool
	trunc   bool
}

func (m *mirrorer) send(job *mirrorJob) (shadowAnswer, error) {
	var out shadowAnswer
	b := job.slot.backend
	body := job.body
	if rw := job.slot.rewrite; rw != nil {
		var err error
		if body, err = rw.request(body); err != nil {
			return out, err
		}
	}
	u := *b.target
	u.Path = b.target.Path + job.path
	u.RawPath = ""
	u.RawQuery = job.rawQuery
	if b.query != nil {
		q, _ := url.ParseQuery(job.rawQuery)
		for k, v := range b.query {
			q[k] = v
		}
		u.RawQuery = q.Encode()
	}
	ctx, cancel := context.WithTimeout(m.ctx, mirrorTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, job.method, u.String(), bytes.NewReader(body))
	if err != nil {
		return out, err
	}
	req.Header = job.header
	if b.ownsAuth {
		dropClientCredentials(req.Header)
	}
	for k, v := range b.headers {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := m.g.proxyRT.RoundTrip(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	out.status = resp.StatusCode
	out.stream = eventStream(resp.Header)
	if out.stream {
		err = out.readStream(resp.Body, start)
	} else {
		err = out.readWhole(resp.Body, start)
	}
	out.latency = time.Since(start)
	if err != nil {
		out.status = 0 // a broken answer counts as a failure, as for users
		return out, err
	}
	if out.tokens < 0 || (!out.stream && out.tokens == 0) {
		out.tokens = max(0, int(gjson.GetBytes(out.body, "usage.completion_tokens").Int()))
	}
	if out.ttft == 0 && out.status >= 200 && out.status < 300 {
		out.ttft = out.latency
	}
	return out, nil
}

// readStream reads an SSE answer to its end, noting when the first content
// event came and counting content events.
func (a *shadowAnswer) readStream(r io.Reader, start time.Time) error {
	br := bufio.NewReaderSize(r, 32<<10)
	usage := -1
	for {
		line, err := br.ReadBytes('\n')
		if bytes.HasPrefix(line, tokData) {
			if hasContent(line) {
				a.tokens++
				if a.ttft == 0 {
					a.ttft = time.Since(start)
				}
			}
			if i := bytes.Index(line, tokUsage); i >= 0 {
				usage = parseInt(line[i+len(tokUsage):])
			}
		}
		a.keep(line)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if usage >= 0 {
		a.tokens = usage
	}
	return nil
}

func (a *shadowAnswer) readWhole(r io.Reader, start time.Time) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 && a.ttft == 0 && a.status < 300 {
			a.ttft = time.Since(start)
		}
		a.keep(buf[:n])
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (a *shadowAnswer) keep(p []byte) {
	if room := mirrorMaxAnswer - len(a.body); room < len(p) {
		p = p[:max(room, 0)]
		a.trunc = true
	}
	a.body = append(a.body, p...)
}

// ShadowSide is one side of a shadow comparison.
type ShadowSide struct {
	Status       int     `json:"status"`
	LatencyMS    float64 `json:"latencyMs"`
	TTFTMS       float64 `json:"ttftMs"`
	OutputTokens int     `json:"outputTokens"`
	// Chars is the answer text's length in bytes.
	Chars int `json:"chars"`
	// HasText: the answer's text could be read (a chat, completion or
	// response answer, complete within the kept bytes).
	HasText bool `json:"hasText"`
	Empty   bool `json:"empty,omitempty"`
	Refused bool `json:"refused,omitempty"`
	// JSON: the answer looks like JSON (starts with { or [, a ```json
	// fence allowed); JSONValid: and it parses.
	JSON      bool `json:"json,omitempty"`
	JSONValid bool `json:"jsonValid,omitempty"`
	// Error says why a shadow request failed (transport error, timeout).
	Error string `json:"error,omitempty"`
}

// ShadowPair is one mirrored request: production's answer and the
// shadow's, side by side. Answer texts are not kept.
type ShadowPair struct {
	Time       time.Time  `json:"time"`
	Slot       string     `json:"slot"`
	Revision   string     `json:"revision,omitempty"`
	Stream     bool       `json:"stream,omitempty"`
	Production ShadowSide `json:"production"`
	Shadow     ShadowSide `json:"shadow"`
	// StatusMatch: both answered with the same status class.
	StatusMatch bool `json:"statusMatch"`
	// Comparable: both answered 2xx with readable texts, so the texts
	// were compared; ExactMatch is then whether they are equal (trimmed).
	Comparable bool `json:"comparable"`
	ExactMatch bool `json:"exactMatch,omitempty"`
}

func comparePair(job *mirrorJob, sh shadowAnswer, err error) ShadowPair {
	p := ShadowPair{Time: time.Now(), Slot: job.slot.name, Revision: job.slot.revision}
	p.Production = ShadowSide{
		Status: job.prod.Status, LatencyMS: ms(job.prod.Latency), TTFTMS: ms(job.prod.TTFT), OutputTokens: job.prod.OutputTokens,
	}
	prodStream := looksSSE(job.prodHead)
	p.Stream = prodStream
	var prodText, shadowText string
	if ok2xx(job.prod.Status) && len(job.prodHead) < prodHeadMax && !gzipped(job.prodHead) {
		prodText, p.Production.HasText = answerText(job.prodHead, prodStream)
	}
	p.Production.describe(prodText)
	p.Shadow = ShadowSide{Status: sh.status, LatencyMS: ms(sh.latency), TTFTMS: ms(sh.ttft), OutputTokens: sh.tokens}
	if err != nil {
		p.Shadow.Error = errorText(err)
	} else if ok2xx(sh.status) && !sh.trunc && !gzipped(sh.body) {
		shadowText, p.Shadow.HasText = answerText(sh.body, sh.stream)
	}
	p.Shadow.describe(shadowText)
	p.StatusMatch = err == nil && statusClass(job.prod.Status) == statusClass(sh.status)
	p.Comparable = p.Production.HasText && p.Shadow.HasText
	if p.Comparable {
		p.ExactMatch = strings.TrimSpace(prodText) == strings.TrimSpace(shadowText)
	}
	return p
}

func (s *ShadowSide) describe(text string) {
	if !s.HasText {
		return
	}
	t := strings.TrimSpace(text)
	s.Chars = len(text)
	s.Empty = t == ""
	s.Refused = refused(t)
	if j, ok := jsonBody(t); ok {
		s.JSON = true
		s.JSONValid = json.Valid([]byte(j))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ok2xx(status int) bool { return status >= 200 && status < 300 }

func statusClass(status int) int { return status / 100 }

func gzipped(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }

func looksSSE(b []byte) bool {
	b = bytes.TrimLeft(b, " \r\n")
	return bytes.HasPrefix(b, tokData) || bytes.HasPrefix(b, []byte("event:")) || bytes.HasPrefix(b, []byte(":"))
}

// answerText extracts the answer's text from a chat completion, a
// completion or a response, whole or streamed; ok is false for other
// answers (embeddings, errors, unknown shapes).
func answerText(body []byte, stream bool) (text string, ok bool) {
	if !stream {
		if !gjson.ValidBytes(body) {
			return "", false
		}
		for _, path := range [...]string{"choices.0.message.content", "choices.0.text", "output_text"} {
			if v := gjson.GetBytes(body, path); v.Exists() {
				return v.String(), true
			}
		}
		// A response's output: the text parts of its message items.
		if out := gjson.GetBytes(body, "output"); out.IsArray() {
			var sb strings.Builder
			for _, item := range out.Array() {
				for _, c := range item.Get("content").Array() {
					if c.Get("type").String() == "output_text" {
						sb.WriteString(c.Get("text").String())
					}
				}
			}
			return sb.String(), true
		}
		return "", false
	}
	var sb strings.Builder
	for line := range bytes.Lines(body) {
		data, found := bytes.CutPrefix(bytes.TrimSpace(line), tokData)
		if !found {
			continue
		}
		data = bytes.TrimSpace(data)
		if len(data) == 0 || string(data) == "[DONE]" || !gjson.ValidBytes(data) {
			continue
		}
		for _, path := range [...]string{"choices.0.delta.content", "choices.0.text"} {
			if v := gjson.GetBytes(data, path); v.Exists() {
				sb.WriteString(v.String())
				ok = true
				break
			}
		}
		if gjson.GetBytes(data, "type").String() == "response.output_text.delta" {
			sb.WriteString(gjson.GetBytes(data, "delta").String())
			ok = true
		}
		if gjson.GetBytes(data, "choices").Exists() {
			ok = true // a role-only or finish chunk: still a chat stream
		}
	}
	return sb.String(), ok
}

// refusals open answers that decline or give nothing (compared in lower
// case, with ’ read as ').
var refusals = []string{
	"i can't", "i cannot", "i can not", "i'm sorry", "i am sorry", "sorry, i", "i'm unable", "i am unable",
	"i won't", "i will not", "i'm not able", "i am not able", "as an ai", "i don't know", "i do not know",
}

func refused(t string) bool {
	if len(t) > 200 {
		t = t[:200]
	}
	t = strings.ToLower(strings.ReplaceAll(t, "’", "'"))
	t = strings.TrimLeft(t, "\"'` ")
	for _, r := range refusals {
		if strings.HasPrefix(t, r) {
			return true
		}
	}
	return strings.Contains(t, "as an ai language model")
}

// jsonBody returns the JSON of an answer that looks like JSON, without a
// ```json fence.
func jsonBody(t string) (string, bool) {
	if rest, ok := strings.CutPrefix(t, "```"); ok {
		rest = strings.TrimPrefix(rest, "json")
		rest, _ = strings.CutSuffix(strings.TrimSpace(rest), "```")
		t = strings.TrimSpace(rest)
	}
	if t == "" || (t[0] != '{' && t[0] != '[') {
		return "", false
	}
	return t, true
}

// shadowApp holds one app's shadow counters and recent comparisons,
// apart from the slot meters that rollout gates judge.
type shadowApp struct {
	sent, dropped, failed atomic.Int64
	droppedBytes          atomic.Int64

	mu       sync.Mutex
	compared int64
	ring     []ShadowPair
	next     int
	full     bool
}

func (m *mirrorer) stats(app string) *shadowApp {
	if v, ok := m.apps.Load(app); ok {
		return v.(*shadowApp)
	}
	v, _ := m.apps.LoadOrStore(app, &shadowApp{ring: make([]ShadowPair, shadowPairsKept)})
	return v.(*shadowApp)
}

func (s *shadowApp) add(p ShadowPair) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.compared++
	s.ring[s.next] = p
	s.next++
	if s.next == len(s.ring) {
		s.next, s.full = 0, true
	}
}

// pairs returns the kept pairs that finished at or after since, oldest
// first.
func (s *shadowApp) pairs(since time.Time) []ShadowPair {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ShadowPair
	collect := func(part []ShadowPair) {
		for _, p := range part {
			if !p.Time.Before(since) {
				out = append(out, p)
			}
		}
	}
	if s.full {
		collect(s.ring[s.next:])
	}
	collect(s.ring[:s.next])
	return out
}

// ShadowSamples returns an app's shadow comparisons that finished at or
// after since (the most recent few thousand are kept), oldest first.
func (g *Gateway) ShadowSamples(app string, since time.Time) []ShadowPair {
	v, ok := g.mirror.apps.Load(app)
	if !ok {
		return nil
	}
	return v.(*shadowApp).pairs(since)
}

// ShadowSideStats sums one side over the compared pairs.
type ShadowSideStats struct {
	MeanLatencyMS    float64 `json:"meanLatencyMs"`
	MeanTTFTMS       float64 `json:"meanTtftMs"`
	MeanOutputTokens float64 `json:"meanOutputTokens"`
	// Errors counts answers that were not 2xx (or, for the shadow, did
	// not come at all).
	Errors  int `json:"errors"`
	Empty   int `json:"empty"`
	Refused int `json:"refused"`
	// JSONAnswers counts answers that look like JSON; JSONValidRate is
	// the share of them that parse (1 when there are none).
	JSONAnswers   int     `json:"jsonAnswers"`
	JSONValid     int     `json:"jsonValid"`
	JSONValidRate float64 `json:"jsonValidRate"`
}

// ShadowStats summarises an app's shadow traffic: counters since the
// gateway started, comparisons over the kept pairs.
type ShadowStats struct {
	App string `json:"app"`
	// Slot and Percent are the mirror rule in force ("" when off).
	Slot    string  `json:"slot,omitempty"`
	Percent float64 `json:"percent,omitempty"`
	// Sent mirrored requests were sent to the shadow; Dropped ones were
	// not (the queue was full, or its bytes limit reached:
	// DroppedOverBytes of them); Failed ones got no answer; Compared ones
	// were paired with production's answer (failed ones included).
	Sent             int64 `json:"sent"`
	Dropped          int64 `json:"dropped"`
	DroppedOverBytes int64 `json:"droppedOverBytes"`
	Failed           int64 `json:"failed"`
	Compared         int64 `json:"compared"`
	// QueuedBytes is what the mirrors of every app queued or in flight
	// hold now, at most MaxQueuedBytes (gateway.mirrorMaxBytes).
	QueuedBytes    int64 `json:"queuedBytes"`
	MaxQueuedBytes int64 `json:"maxQueuedBytes"`
	// Window is the number of kept pairs the fields below summarise.
	Window           int `json:"window"`
	StatusMismatches int `json:"statusMismatches"`
	// Ratios are shadow over production, of the means over the pairs
	// where both answered 2xx (0 when undefined).
	LatencyRatio      float64 `json:"latencyRatio"`
	TTFTRatio         float64 `json:"ttftRatio"`
	OutputLengthRatio float64 `json:"outputLengthRatio"`
	// TextCompared pairs had readable texts on both sides; ExactMatchRate
	// is the share of them whose texts are equal.
	TextCompared   int             `json:"textCompared"`
	ExactMatches   int             `json:"exactMatches"`
	ExactMatchRate float64         `json:"exactMatchRate"`
	Production     ShadowSideStats `json:"production"`
	Shadow         ShadowSideStats `json:"shadow"`
	// Recent are the last pairs, newest last.
	Recent []ShadowPair `json:"recent"`
}

// ShadowStats summarises an app's shadow traffic.
func (g *Gateway) ShadowStats(app string) ShadowStats {
	st := ShadowStats{App: app, Recent: []ShadowPair{}, QueuedBytes: g.mirror.bytes.Load(), MaxQueuedBytes: g.mirror.maxBytes}
	if a := g.snap.Load().apps[app]; a != nil && a.mirror != nil {
		st.Slot, st.Percent = a.mirror.slot.name, float64(a.mirror.threshold)*100/buckets
	}
	v, ok := g.mirror.apps.Load(app)
	if !ok {
		st.Production.JSONValidRate, st.Shadow.JSONValidRate = 1, 1
		return st
	}
	sa := v.(*shadowApp)
	st.Sent, st.Dropped, st.Failed = sa.sent.Load(), sa.dropped.Load(), sa.failed.Load()
	st.DroppedOverBytes = sa.droppedBytes.Load()
	sa.mu.Lock()
	st.Compared = sa.compared
	sa.mu.Unlock()
	pairs := sa.pairs(time.Time{})
	st.Window = len(pairs)
	if n := min(len(pairs), shadowRecent); n > 0 {
		st.Recent = pairs[len(pairs)-n:]
	}
	s := SummarisePairs(pairs)
	st.StatusMismatches, st.TextCompared, st.ExactMatches = s.StatusMismatches, s.TextCompared, s.ExactMatches
	st.LatencyRatio, st.TTFTRatio, st.OutputLengthRatio, st.ExactMatchRate = s.LatencyRatio, s.TTFTRatio, s.OutputLengthRatio, s.ExactMatchRate
	st.Production, st.Shadow = s.Production, s.Shadow
	return st
}

// PairSummary sums a set of shadow pairs.
type PairSummary struct {
	Pairs             int
	StatusMismatches  int
	Both2xx           int
	LatencyRatio      float64
	TTFTRatio         float64
	OutputLengthRatio float64
	TextCompared      int
	ExactMatches      int
	ExactMatchRate    float64
	Production        ShadowSideStats
	Shadow            ShadowSideStats
}

// SummarisePairs sums pairs the way ShadowStats does (the shadow gate
// uses it over a phase's pairs).
func SummarisePairs(pairs []ShadowPair) PairSummary {
	s := PairSummary{Pairs: len(pairs)}
	var lat, ttft, out [2]float64
	side := func(ss *ShadowSideStats, x ShadowSide) {
		if !ok2xx(x.Status) {
			ss.Errors++
		}
		if x.Empty {
			ss.Empty++
		}
		if x.Refused {
			ss.Refused++
		}
		if x.JSON {
			ss.JSONAnswers++
			if x.JSONValid {
				ss.JSONValid++
			}
		}
	}
	for _, p := range pairs {
		side(&s.Production, p.Production)
		side(&s.Shadow, p.Shadow)
		if !p.StatusMatch {
			s.StatusMismatches++
		}
		if ok2xx(p.Production.Status) && ok2xx(p.Shadow.Status) {
			s.Both2xx++
			lat[0] += p.Production.LatencyMS
			lat[1] += p.Shadow.LatencyMS
			ttft[0] += p.Production.TTFTMS
			ttft[1] += p.Shadow.TTFTMS
			a, b := OutputLength(p)
			out[0] += a
			out[1] += b
		}
		if p.Comparable {
			s.TextCompared++
			if p.ExactMatch {
				s.ExactMatches++
			}
		}
	}
	ratio := func(v [2]float64) float64 {
		if v[0] <= 0 {
			return 0
		}
		return v[1] / v[0]
	}
	s.LatencyRatio, s.TTFTRatio, s.OutputLengthRatio = ratio(lat), ratio(ttft), ratio(out)
	if n := float64(s.Both2xx); n > 0 {
		s.Production.MeanLatencyMS, s.Shadow.MeanLatencyMS = lat[0]/n, lat[1]/n
		s.Production.MeanTTFTMS, s.Shadow.MeanTTFTMS = ttft[0]/n, ttft[1]/n
	}
	var tok [2]float64
	for _, p := range pairs {
		tok[0] += float64(p.Production.OutputTokens)
		tok[1] += float64(p.Shadow.OutputTokens)
	}
	if n := float64(len(pairs)); n > 0 {
		s.Production.MeanOutputTokens, s.Shadow.MeanOutputTokens = tok[0]/n, tok[1]/n
	}
	if s.TextCompared > 0 {
		s.ExactMatchRate = float64(s.ExactMatches) / float64(s.TextCompared)
	}
	for _, ss := range []*ShadowSideStats{&s.Production, &s.Shadow} {
		ss.JSONValidRate = 1
		if ss.JSONAnswers > 0 {
			ss.JSONValidRate = float64(ss.JSONValid) / float64(ss.JSONAnswers)
		}
	}
	return s
}

// OutputLength is a pair's output lengths, production's then the
// shadow's: output tokens when both sides report them, else text length.
func OutputLength(p ShadowPair) (prod, shadow float64) {
	if p.Production.OutputTokens > 0 && p.Shadow.OutputTokens > 0 {
		return float64(p.Production.OutputTokens), float64(p.Shadow.OutputTokens)
	}
	return float64(p.Production.Chars), float64(p.Shadow.Chars)
}
