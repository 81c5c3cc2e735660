// Package sim is a simulated OpenAI-compatible model server: configurable
// latency, token counts, failures and wrong answers, for demos, tests and benchmarks.
//
// A Server is an http.Handler. Its behaviour can be changed while it runs,
// through SetConfig or PATCH /admin/config, which is how a test makes a
// version go bad mid-rollout.
//
// Timing model: a streamed response sends its headers and first token after
// TTFT, then one token per ITL; a non-streaming response is written whole
// after TTFT alone. Startup only affects /health, as a load balancer's
// health check is what keeps traffic off a loading version. Simulated
// failures (ErrorRate) are immediate and apply to chat, completions and
// responses; embeddings only take the TTFT delay.
//
// Answer selection, per request: a malformed answer (MalformedRate), else a
// wrong one (WrongRate), else the canned answer for the prompt, else
// generated text "<model> says hello ..." of Tokens tokens, deterministic for
// the prompt. OutputScale then scales the token count (padding with filler
// words or truncating), and max_tokens caps it with finish_reason "length".
package sim

import (
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the simulated model server. Its zero value is not usable; call
// New or NewChecked.
type Server struct {
	st       atomic.Pointer[state] // immutable snapshot read by every request
	mu       sync.Mutex            // serialises SetConfig and admin read-modify-write
	requests atomic.Int64
	inflight atomic.Int64
	ids      atomic.Uint64
}

// state is everything a request needs, derived once per config change so
// that the request path only reads.
type state struct {
	cfg        Config
	readyAt    time.Time
	rng        *lockedRand         // nil when Seed is 0: the runtime's lock-free source is used
	answers    map[string][]string // canned answers, pre-split into tokens
	intro      []string            // opening tokens of generated text: "<model> says hello"
	header     []string            // value of x-sim-model, shared read-only by every response
	modelJSON  []byte              // the model id as a quoted JSON string
	modelsBody []byte              // GET /v1/models
}

// New returns a server for cfg. Invalid values are clamped into range or
// replaced by their defaults rather than failing, so New never panics; use
// NewChecked to be told about them.
func New(cfg Config) *Server {
	s, err := NewChecked(cfg)
	if err == nil {
		return s
	}
	return newServer(sanitize(cfg))
}

// NewChecked returns a server for cfg, or an error naming each invalid field.
func NewChecked(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newServer(cfg), nil
}

func newServer(cfg Config) *Server {
	s := &Server{}
	s.st.Store(newState(cfg, nil, time.Now()))
	return s
}

// sanitize makes a defaulted config valid field by field, so New keeps
// every value the caller got right: out-of-range numbers are clamped to the
// nearest valid value, NaN and an unknown error kind become the defaults.
func sanitize(cfg Config) Config {
	cfg = cfg.withDefaults()
	def := Config{}.withDefaults()
	clampRate := func(v float64) float64 {
		if math.IsNaN(v) {
			return 0
		}
		return min(max(v, 0), 1)
	}
	cfg.TTFT = max(cfg.TTFT, 0)
	cfg.ITL = max(cfg.ITL, 0)
	cfg.Startup = max(cfg.Startup, 0)
	cfg.Jitter = clampRate(cfg.Jitter)
	cfg.ErrorRate = clampRate(cfg.ErrorRate)
	cfg.WrongRate = clampRate(cfg.WrongRate)
	cfg.MalformedRate = clampRate(cfg.MalformedRate)
	if cfg.Tokens < 0 {
		cfg.Tokens = def.Tokens
	}
	cfg.Tokens = min(cfg.Tokens, maxTokens)
	if math.IsNaN(cfg.OutputScale) || cfg.OutputScale < 0 {
		cfg.OutputScale = def.OutputScale
	}
	cfg.OutputScale = min(cfg.OutputScale, maxOutputScale)
	switch cfg.ErrorKind {
	case Error500, Error429, ErrorMixed:
	default:
		cfg.ErrorKind = def.ErrorKind
	}
	return cfg
}

func newState(cfg Config, prev *state, now time.Time) *state {
	st := &state{
		cfg:     cfg,
		readyAt: now.Add(cfg.Startup),
		header:  []string{cfg.Model},
	}
	st.cfg.Answers = cloneAnswers(cfg.Answers)
	if prev != nil && prev.cfg.Startup == cfg.Startup {
		// Only a new Startup restarts loading; other changes leave /health alone.
		st.readyAt = prev.readyAt
	}
	switch {
	case cfg.Seed == 0:
	case prev != nil && prev.cfg.Seed == cfg.Seed:
		st.rng = prev.rng // keep the sequence going rather than replaying it
	default:
		st.rng = newLockedRand(cfg.Seed)
	}
	if len(cfg.Answers) > 0 {
		st.answers = make(map[string][]string, len(cfg.Answers))
		for p, a := range cfg.Answers {
			st.answers[p] = splitTokens(a)
		}
	}
	st.intro = []string{cfg.Model, " says", " hello"}
	st.modelJSON = appendJSONString(nil, cfg.Model)

	b := []byte(`{"object":"list","data":[`)
	b = st.appendModel(b)
	st.modelsBody = append(b, "]}\n"...)
	return st
}

func (st *state) appendModel(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = append(b, st.modelJSON...)
	b = append(b, `,"object":"model","created":`...)
	b = appendInt(b, st.readyAt.Unix())
	return append(b, `,"owned_by":"modelslot-sim"}`...)
}

// Config returns the current configuration, with defaults filled in.
func (s *Server) Config() Config {
	cfg := s.st.Load().cfg
	cfg.Answers = cloneAnswers(cfg.Answers)
	return cfg
}

// SetConfig validates cfg and makes it the configuration of requests that
// start from now on; requests in flight finish with the old one. Changing
// Startup restarts the loading period, as if the version had just restarted.
func (s *Server) SetConfig(cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Store(newState(cfg, s.st.Load(), time.Now()))
	return nil
}

// Requests returns how many inference requests (chat, completions,
// responses and embeddings; failed and rejected ones included) the server
// has received.
func (s *Server) Requests() int64 { return s.requests.Load() }

// InFlight returns how many inference requests are being handled right now.
// Tests use it to prove a cancelled request's handler has returned.
func (s *Server) InFlight() int64 { return s.inflight.Load() }

// lockedRand is a seeded source shared by concurrent requests. Draws are
// deterministic for a sequence of requests, not across concurrent ones.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newLockedRand(seed int64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(uint64(seed), 0x6d6f64656c736c6f))}
}

func (st *state) float64() float64 {
	if st.rng == nil {
		return rand.Float64()
	}
	st.rng.mu.Lock()
	defer st.rng.mu.Unlock()
	return st.rng.r.Float64()
}

// chance reports whether an event of probability p happens. The common
// p == 0 case draws nothing, so it takes no lock.
func (st *state) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	return st.float64() < p
}

// jittered returns d scaled by a uniform factor in [1-Jitter, 1+Jitter].
func (st *state) jittered(d time.Duration) time.Duration {
	if d <= 0 || st.cfg.Jitter == 0 {
		return d
	}
	f := 1 + st.cfg.Jitter*(2*st.float64()-1)
	return time.Duration(float64(d) * f)
}

// ServeHTTP routes the OpenAI-compatible, health and admin endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := s.st.Load()
	w.Header()["X-Sim-Model"] = st.header
	switch r.URL.Path {
	case "/v1/chat/completions":
		s.inference(w, r, st, kindChat)
	case "/v1/completions":
		s.inference(w, r, st, kindText)
	case "/v1/responses":
		s.inference(w, r, st, kindResponses)
	case "/v1/embeddings":
		s.inference(w, r, st, kindEmbeddings)
	case "/v1/models":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		writeJSON(w, http.StatusOK, st.modelsBody)
	case "/health":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		if time.Now().Before(st.readyAt) {
			writeJSON(w, http.StatusServiceUnavailable, []byte(`{"status":"loading"}`+"\n"))
			return
		}
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`+"\n"))
	case "/admin/config":
		s.admin(w, r)
	default:
		if id, ok := strings.CutPrefix(r.URL.Path, "/v1/models/"); ok {
			s.model(w, r, st, id)
			return
		}
		writeError(w, http.StatusNotFound, "invalid_request_error", "not_found", "no route for "+r.Method+" "+r.URL.Path)
	}
}

func (s *Server) model(w http.ResponseWriter, r *http.Request, st *state, id string) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	if id != st.cfg.Model {
		writeError(w, http.StatusNotFound, "invalid_request_error", "model_not_found", "model "+id+" does not exist; this server serves "+st.cfg.Model)
		return
	}
	writeJSON(w, http.StatusOK, append(st.appendModel(nil), '\n'))
}

// admin serves GET and PATCH/POST /admin/config.
func (s *Server) admin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeAdminConfig(w, s.Config())
	case http.MethodPatch, http.MethodPost:
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_body", "read body: "+err.Error())
			return
		}
		// Hold the lock across read-merge-write so concurrent patches do not
		// overwrite each other's fields.
		s.mu.Lock()
		prev := s.st.Load()
		cfg, err := mergePatch(prev.cfg, body)
		if err == nil {
			cfg = cfg.withDefaults()
			err = cfg.validate()
		}
		if err == nil {
			s.st.Store(newState(cfg, prev, time.Now()))
		}
		s.mu.Unlock()
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_config", err.Error())
			return
		}
		writeAdminConfig(w, s.Config())
	default:
		allow(w, r, http.MethodGet, http.MethodPatch, http.MethodPost)
	}
}

func writeAdminConfig(w http.ResponseWriter, cfg Config) {
	b, err := json.Marshal(toAdmin(cfg))
	if err != nil { // cannot happen for this plain struct; answer rather than panic
		writeError(w, http.StatusInternalServerError, "server_error", "internal_error", "encode config")
		return
	}
	writeJSON(w, http.StatusOK, append(b, '\n'))
}

// allow answers 405 unless r uses one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	list := strings.Join(methods, ", ")
	w.Header().Set("Allow", list)
	writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "method_not_allowed", "method "+r.Method+" not allowed; use "+list)
	return false
}

var (
	contentTypeJSON = []string{"application/json"}
	contentTypeSSE  = []string{"text/event-stream"}
	noCache         = []string{"no-cache"}
	retryAfterOne   = []string{"1"}
)

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // the client has gone; nothing to do
}

// writeError writes an OpenAI-style error object.
func writeError(w http.ResponseWriter, status int, typ, code, msg string) {
	b := make([]byte, 0, 128+len(msg))
	b = append(b, `{"error":{"message":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"param":null,"code":`...)
	b = appendJSONString(b, code)
	b = append(b, "}}\n"...)
	writeJSON(w, status, b)
}

// Simulated failures are fixed bytes: they are the hot path of an error-rate test.
var (
	body500 = []byte(`{"error":{"message":"simulated server error","type":"server_error","param":null,"code":"internal_error"}}` + "\n")
	body429 = []byte(`{"error":{"message":"simulated rate limit; retry after 1 second","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}` + "\n")
)
