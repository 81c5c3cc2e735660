// Package gateway is modelslot's OpenAI-compatible data plane: it picks a
// slot for every request from an immutable routing snapshot, proxies the
// request to the slot's backend with streams passed through event by event,
// and meters every response per slot and revision.
package gateway

import (
	"context"
	crand "crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/prometheus/client_golang/prometheus"
)

// RoutingParam is the query parameter and cookie that pin a user to a slot,
// named as on Azure.
const RoutingParam = "x-ms-routing-name"

// Response headers that say who answered.
const (
	HeaderSlot    = "X-Modelslot-Slot"
	HeaderVersion = "X-Modelslot-Version"
)

// HeaderSynthetic marks the daemon's own requests (the loadtest and eval
// gates): with the gateway's key as its value, the request is served as
// any other but left out of the slot's meter and of mirroring, so that a
// gate's load does not enter the analysis of the users' traffic. The
// header never reaches a backend; with a wrong value it is only dropped.
const HeaderSynthetic = "X-Modelslot-Synthetic"

// Config tunes the gateway; zero values take the defaults noted.
type Config struct {
	Logger *slog.Logger
	// MaxRequestBytes bounds a request body (default 32 MiB).
	MaxRequestBytes int64
	// CookieMaxAge is the life of a routing cookie (default 24h; Azure's
	// one hour lets a user flip versions mid-conversation).
	CookieMaxAge time.Duration
	// DialTimeout bounds connecting to a backend (default 5s).
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a backend's response
	// headers (default 10m: a long non-streaming generation is legitimate).
	ResponseHeaderTimeout time.Duration
	// MaxResponseHeaderBytes bounds a backend's response head (default
	// 1 MiB; net/http's Transport allows 10 MiB, far more than any model
	// server sends); beyond it the request gets a 502.
	MaxResponseHeaderBytes int64
	// MaxIdleConnsPerHost sizes the upstream connection pool (default 256).
	MaxIdleConnsPerHost int
	// DisableMeter turns metering off (for benchmarks of its cost).
	DisableMeter bool
	// StdUpstream sends every request through net/http's Transport instead
	// of the gateway's own HTTP/1.1 client for http:// backends (for
	// comparison in benchmarks, or as a way out).
	StdUpstream bool
	// SampleCapacity is how many recent requests each slot keeps for
	// analysis (default 65536).
	SampleCapacity int
	// MirrorMaxBytes bounds what mirrored requests queued or in flight
	// hold (their bodies, production's answer heads): beyond it a request
	// is not mirrored, and counted (default 64 MiB).
	MirrorMaxBytes int64
	// Registerer receives the Prometheus metrics (nil: not registered).
	Registerer prometheus.Registerer
	// SampleTap, when set, receives every metered request after the meter
	// records it (replicas ship their samples to the shared store with it).
	// It runs on the request's goroutine: it must not block.
	SampleTap func(app, slot string, s modelslot.Sample)
}

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 32 << 20
	}
	if c.CookieMaxAge <= 0 {
		c.CookieMaxAge = 24 * time.Hour
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ResponseHeaderTimeout <= 0 {
		c.ResponseHeaderTimeout = 10 * time.Minute
	}
	if c.MaxResponseHeaderBytes <= 0 {
		c.MaxResponseHeaderBytes = 1 << 20
	}
	if c.MaxIdleConnsPerHost <= 0 {
		c.MaxIdleConnsPerHost = 256
	}
	if c.MirrorMaxBytes <= 0 {
		c.MirrorMaxBytes = 64 << 20
	}
	if c.SampleCapacity <= 0 {
		c.SampleCapacity = 1 << 16
	}
	return c
}

// Gateway is an http.Handler serving the public, OpenAI-compatible API.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	snap      atomic.Pointer[snapshot]
	transport *http.Transport
	upstream  *upstream
	proxyRT   http.RoundTripper
	meter     *Meter
	cookieAge string
	mirror    *mirrorer
	// keys are the client keys that may use the gateway; nil: open.
	keys atomic.Pointer[keyring]
	// syntheticKey is the value of HeaderSynthetic that marks the
	// daemon's own requests; random per process.
	syntheticKey string
}

// New returns a gateway with no apps; Update publishes routing.
func New(cfg Config) *Gateway {
	cfg = cfg.withDefaults()
	g := &Gateway{cfg: cfg, log: cfg.Logger}
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	g.transport = &http.Transport{
		Proxy:             nil, // never route model traffic through an environment proxy
		DialContext:       dialer.DialContext,
		ForceAttemptHTTP2: true,
		// Clients that want compression ask for it and get the backend's
		// bytes; the gateway never inflates answers itself.
		DisableCompression:     true,
		MaxIdleConns:           4 * cfg.MaxIdleConnsPerHost,
		MaxIdleConnsPerHost:    cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: cfg.MaxResponseHeaderBytes,
		ExpectContinueTimeout:  time.Second,
	}
	g.upstream = newUpstream(g.transport, dialer, cfg.MaxIdleConnsPerHost, g.transport.IdleConnTimeout, cfg.ResponseHeaderTimeout, cfg.MaxResponseHeaderBytes)
	g.proxyRT = g.upstream
	if cfg.StdUpstream {
		g.proxyRT = g.transport
	}
	g.meter = newMeter(cfg.SampleCapacity, cfg.Registerer)
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(newRouteCollector(g))
	}
	g.cookieAge = "; Path=/; Max-Age=" + strconv.Itoa(int(cfg.CookieMaxAge/time.Second)) + "; HttpOnly; SameSite=Lax"
	g.mirror = newMirrorer(g, cfg.MirrorMaxBytes, cfg.Registerer)
	var key [16]byte
	crand.Read(key[:])
	g.syntheticKey = hex.EncodeToString(key[:])
	g.snap.Store(&snapshot{apps: map[string]*appRoute{}})
	return g
}

// SyntheticKey is the value of HeaderSynthetic that keeps a request out
// of the meters (for the daemon's own gates; never shown to users).
func (g *Gateway) SyntheticKey() string { return g.syntheticKey }

// Meter returns the gateway's meter (a modelslot.MetricSource).
func (g *Gateway) Meter() *Meter { return g.meter }

// Transport returns the pooled upstream transport, shared with health checks
// and warm-up so that they exercise the same path as traffic.
func (g *Gateway) Transport() *http.Transport { return g.transport }

// Update publishes new routing; every request that starts after Update
// returns sees it.
func (g *Gateway) Update(apps []RouteApp) {
	g.snap.Store(g.buildSnapshot(apps))
}

// Close stops background work (mirroring) and closes idle connections.
func (g *Gateway) Close() {
	g.mirror.close()
	g.upstream.close()
}

// Backend is one upstream model server. Requests in flight are counted so
// that a swapped-out deployment can be drained before it is restarted or
// stopped.
type Backend struct {
	target   *url.URL
	proxy    *httputil.ReverseProxy
	inflight atomic.Int64
	headers  http.Header
	query    url.Values
	// ownsAuth: the deployment brings its own credentials (a secret, or
	// one of CredentialHeaders).
	ownsAuth bool
	// direct: requests take the gateway's direct proxy path (proxy.go).
	direct bool
}

// NewBackend returns a backend for the server at rawURL; d supplies the
// extra headers and query parameters of hosted providers.
func (g *Gateway) NewBackend(rawURL string, d *modelslot.Deployment) (*Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, modelslot.Errorf(modelslot.EINVALID, "backend URL %q is not valid: give an http:// or https:// address such as http://127.0.0.1:8000", rawURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	// A URL given as ".../v1" is the OpenAI base URL; requests already carry /v1.
	u.Path = strings.TrimSuffix(u.Path, "/v1")
	b := &Backend{target: u, direct: u.Scheme == "http" && !g.cfg.StdUpstream}
	if d != nil {
		b.ownsAuth = CarriesCredentials(d)
		if len(d.Headers) > 0 {
			b.headers = http.Header{}
			for k, v := range d.Headers {
				b.headers.Set(k, v)
			}
		}
		if len(d.Query) > 0 {
			b.query = url.Values{}
			for k, v := range d.Query {
				b.query.Set(k, v)
			}
		}
	}
	b.proxy = &httputil.ReverseProxy{
		Rewrite:   b.rewrite,
		Transport: g.proxyRT,
		// FlushInterval 0: the proxy flushes every write of an SSE answer
		// (by content type) or of one of unknown length anyway, so streams
		// pass event by event; an answer of known length goes out in one
		// write, not headers and body apart from a timer goroutine.
		FlushInterval: 0,
		ErrorHandler:  g.proxyError,
		BufferPool:    bufferPool{},
		ErrorLog:      slog.NewLogLogger(g.log.Handler(), slog.LevelDebug),
	}
	return b, nil
}

// URL returns the backend's base URL.
func (b *Backend) URL() string { return b.target.String() }

// InFlight is the number of requests the backend is serving.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Drain waits until the backend has no request in flight or ctx ends.
func (b *Backend) Drain(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for b.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return modelslot.Errorf(modelslot.EUNAVAILABLE, "drain %s: %d requests still in flight when the drain timed out", b.target, b.inflight.Load())
		case <-t.C:
		}
	}
	return nil
}

func (b *Backend) rewrite(pr *httputil.ProxyRequest) { b.prepare(pr.Out) }

// prepare points an outgoing request at the backend with the deployment's
// headers and query parameters.
func (b *Backend) prepare(out *http.Request) {
	out.URL.Scheme = b.target.Scheme
	out.URL.Host = b.target.Host
	if b.target.Path != "" {
		out.URL.Path = b.target.Path + out.URL.Path
		out.URL.RawPath = ""
	}
	out.Host = ""
	if b.query != nil {
		q := out.URL.Query()
		for k, v := range b.query {
			q[k] = v
		}
		out.URL.RawQuery = q.Encode()
	}
	if b.ownsAuth {
		// The deployment brings its own key: the client's must not reach
		// the provider beside it (the client's key is for the gateway, or
		// for another provider).
		dropClientCredentials(out.Header)
	}
	for k, v := range b.headers {
		out.Header[k] = v
	}
	// The gateway's own headers stop here.
	delete(out.Header, "X-Modelslot-App")
}

// ServeHTTP routes and proxies one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	synthetic := false
	if v, ok := r.Header[HeaderSynthetic]; ok {
		synthetic = len(v) == 1 && subtle.ConstantTimeCompare([]byte(v[0]), []byte(g.syntheticKey)) == 1
		delete(r.Header, HeaderSynthetic)
	}
	var key *keyState
	if kr := g.keys.Load(); kr != nil && !synthetic {
		if key = kr.authenticate(w, r); key == nil {
			return
		}
	}
	snap := g.snap.Load()
	app, path := snap.appFor(r)
	if app == nil {
		writeError(w, http.StatusNotFound, "app_not_found", "no app serves this request: name it with the X-Modelslot-App header or a /<app>/v1/... path")
		return
	}
	if key != nil && !key.admit(w, app.name) {
		return
	}
	if path != r.URL.Path {
		r.URL.Path = path
		r.URL.RawPath = ""
	}
	// The body's limit holds before anything reads the body (routing by
	// the "user" field does): over it by its Content-Length, the request
	// is refused unread; of unknown length, no reader gets past it.
	if r.ContentLength > g.cfg.MaxRequestBytes {
		writeBodyError(w, tooLarge{g.cfg.MaxRequestBytes})
		return
	}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength < 0 {
		// (A body of known length is no longer than its Content-Length:
		// the server's body reader ends there.)
		r.Body = http.MaxBytesReader(w, r.Body, g.cfg.MaxRequestBytes)
	}
	// Expect: 100-continue ends here, as with nginx: the gateway's server
	// invites the body when the body is first read, and the backend never
	// sees the expectation. Forwarded, the backend's own 100 Continue (sent
	// on by the ReverseProxy) raced the server's, and the client got two.
	delete(r.Header, "Expect")
	slot, setCookie, err := g.route(app, r)
	if err != nil {
		var nr notReadyError
		if errors.As(err, &nr) {
			writeError(w, http.StatusServiceUnavailable, "slot_not_ready", err.Error())
			return
		}
		var re routingError
		if errors.As(err, &re) {
			writeError(w, http.StatusBadRequest, "invalid_routing_name", err.Error())
		} else {
			writeBodyError(w, err)
		}
		return
	}
	if slot == nil {
		if why, ok := app.notReady[modelslot.Production]; ok {
			writeError(w, http.StatusServiceUnavailable, "slot_not_ready", notReadyError{app.name, modelslot.Production, why}.Error())
			return
		}
		writeError(w, http.StatusServiceUnavailable, "no_deployment", "app "+app.name+" has no deployment in production: deploy one with `modelslot deploy production --url ...`")
		return
	}
	h := w.Header()
	h[HeaderSlot] = slot.slotHdr
	h[HeaderVersion] = slot.versionHdr
	if setCookie {
		h.Add("Set-Cookie", RoutingParam+"="+slot.name+app.genSuffix+g.cookieAge)
	}
	var mirrorBody []byte
	mirror := app.mirror != nil && slot == app.prod && !synthetic
	if slot.rewrite != nil || mirror {
		body, err := readBody(r, g.cfg.MaxRequestBytes)
		if err != nil {
			writeBodyError(w, err)
			return
		}
		if mirror && app.mirror.take() {
			mirrorBody = body
		}
		if slot.rewrite != nil {
			r.URL.Path = slot.rewrite.path(r.URL.Path)
			if body, err = slot.rewrite.requestFor(r.URL.Path, body); err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
				return
			}
		}
		setBody(r, body)
	}

	b := slot.backend
	b.inflight.Add(1)
	if (g.cfg.DisableMeter || synthetic) && slot.rewrite == nil && mirrorBody == nil {
		defer b.inflight.Add(-1)
		g.proxy(b, w, r)
		return
	}
	var job *mirrorJob
	if mirrorBody != nil {
		job = g.mirror.capture(app, r)
	}
	mw := getMeterWriter(w, start, slot.rewrite)
	mw.keepHead = mirrorBody != nil
	aborted := g.serve(b, mw, r)
	b.inflight.Add(-1)
	s := mw.sample(slot.revision)
	// The stream broke after the headers were sent: the client saw a
	// truncated answer, which counts as a failure. Unless the client had
	// the whole answer and hung up before the backend's end of body came
	// (a client may close once it has read data: [DONE]).
	failed := aborted && !(mw.delivered && r.Context().Err() != nil)
	if failed {
		s.Status = 0
	}
	if mirrorBody != nil && !failed {
		g.mirror.submit(job, mirrorBody, s, mw.firstBytes())
	}
	putMeterWriter(mw)
	if !g.cfg.DisableMeter && !synthetic {
		slot.meter.record(s)
		if g.cfg.SampleTap != nil {
			g.cfg.SampleTap(slot.meter.app, slot.meter.slot, s)
		}
	}
	if aborted {
		panic(http.ErrAbortHandler)
	}
}

// serve proxies one request; the reverse proxy aborts a response whose
// backend breaks mid-body with http.ErrAbortHandler, which is recovered
// here so that the request is still counted and metered, then re-raised.
func (g *Gateway) serve(b *Backend, w http.ResponseWriter, r *http.Request) (aborted bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			aborted = true
		}
	}()
	g.proxy(b, w, r)
	return false
}

// route decides the slot: a routing query parameter (which also sets the
// cookie), a cookie of the current generation, a sticky key, or a weighted
// draw.
func (g *Gateway) route(app *appRoute, r *http.Request) (slot *slotRoute, setCookie bool, err error) {
	if q := r.URL.RawQuery; q != "" && strings.Contains(q, RoutingParam) {
		values := r.URL.Query()
		if name := values.Get(RoutingParam); name != "" {
			slot = app.lookup(name)
			if why, ok := app.notReady[app.canonical(name)]; slot == nil && ok {
				return nil, false, notReadyError{app.name, app.canonical(name), why}
			}
			if slot == nil {
				return nil, false, routingError("routing: no slot named " + name + " has a deployment in app " + app.name + " (use a slot name or self)")
			}
			values.Del(RoutingParam)
			r.URL.RawQuery = values.Encode()
			return slot, true, nil
		}
	}
	if c := r.Header["Cookie"]; len(c) > 0 {
		if name, ok := routingCookie(c, app.genSuffix); ok {
			if slot = app.lookup(name); slot != nil {
				return slot, false, nil
			}
		}
	}
	if len(app.ranges) == 0 {
		return app.prod, false, nil
	}
	if app.stickyHeader != "" {
		if v := r.Header.Get(app.stickyHeader); v != "" {
			return app.pick(fnv1a(v)), false, nil
		}
	} else if app.stickyUser {
		user, err := peekUser(r, g.cfg.MaxRequestBytes)
		if err != nil {
			return nil, false, err
		}
		if user != "" {
			return app.pick(fnv1a(user)), false, nil
		}
	}
	return app.pick(rand.IntN(buckets)), false, nil
}

// routingError is a routing parameter that names no slot.
type routingError string

func (e routingError) Error() string { return string(e) }

// writeBodyError answers a request whose body could not be read: 413 for
// one over the limit, 400 for a broken one (a malformed chunk, a client
// that stopped sending).
func writeBodyError(w http.ResponseWriter, err error) {
	var tl tooLarge
	if errors.As(err, &tl) {
		writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", tl.Error())
		return
	}
	writeError(w, http.StatusBadRequest, "invalid_request", "the request body could not be read: "+errorText(err))
}

// routingCookie finds "x-ms-routing-name=<slot>.<generation>" without
// parsing every cookie; a cookie of an older generation is ignored.
func routingCookie(headers []string, genSuffix string) (string, bool) {
	for _, h := range headers {
		i := strings.Index(h, RoutingParam+"=")
		if i < 0 {
			continue
		}
		v := h[i+len(RoutingParam)+1:]
		if j := strings.IndexByte(v, ';'); j >= 0 {
			v = v[:j]
		}
		v = strings.TrimSpace(v)
		if !strings.HasSuffix(v, genSuffix) {
			return "", false
		}
		return v[:len(v)-len(genSuffix)], true
	}
	return "", false
}

func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; the backend request is cancelled with it.
		if mw, ok := w.(*meterWriter); ok {
			mw.status = statusClientClosed
		}
		return
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "the request body is larger than the gateway's limit of "+strconv.Itoa(int(mbe.Limit))+" bytes")
		return
	}
	slot := w.Header().Get(HeaderSlot)
	g.log.Warn("backend error", "slot", slot, "err", safeErr(err))
	var htl headTooLarge
	if errors.As(err, &htl) {
		writeError(w, http.StatusBadGateway, "backend_response_too_large", "the model backend of slot "+slot+" sent a "+htl.Error()+" (gateway.maxResponseHeaderBytes)")
		return
	}
	status, code := http.StatusBadGateway, "backend_unavailable"
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status, code = http.StatusGatewayTimeout, "backend_timeout"
	}
	writeError(w, status, code, "the model backend of slot "+slot+" did not answer: "+errorText(err))
}

// errorText keeps the useful end of a transport error ("connection
// refused") without internal URLs of other components.
func errorText(err error) string {
	s := safeErr(err).Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		return s[i+2:]
	}
	return s
}

// statusClientClosed records a request the client abandoned (nginx's 499).
const statusClientClosed = 499

// writeError writes an OpenAI-style JSON error.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	typ := "invalid_request_error"
	if status >= 500 {
		typ = "server_error"
	}
	body, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "code": code}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(status)
	w.Write(body)
}

type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(copyBuffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
