// Package api serves modelslot's admin API: JSON under /api/v1/ behind a
// bearer token, Prometheus metrics at /metrics. Every error is JSON with a
// code and a message that says what to do.
package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/local"
	"github.com/modelslot/modelslot/rollout"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Subscriber streams events (the events package's Bus).
type Subscriber interface {
	Subscribe(ctx context.Context, f modelslot.EventFilter) <-chan *modelslot.Event
}

// Guard tells whether a rollout owns an app; manual changes are refused
// while one runs.
type Guard interface {
	Busy(app string) (rolloutID string, busy bool)
}

// Server is the admin API.
type Server struct {
	Engine *local.Engine
	Meter  *gateway.Meter
	// AllReplicas, when set, is the metric source with every replica's
	// requests (replicas on a shared store): the metrics endpoint
	// summarises it instead of this daemon's own meter.
	AllReplicas modelslot.MetricSource
	Store       modelslot.Store
	Events      Subscriber
	Guard       Guard
	Token       string
	// Sessions are the dashboard's sign-ins (NewSessions when nil).
	Sessions *Sessions
	// MetricsToken, when set, is also accepted on /metrics, so that a
	// Prometheus server needs no admin token.
	MetricsToken string
	// OpenMetrics serves /metrics without a token (a loopback admin
	// address only: the daemon decides).
	OpenMetrics bool
	Logger      *slog.Logger
	Gatherer    prometheus.Gatherer
	// Extra mounts more routes (rollouts, dashboard) on the same mux; each
	// handler registered here is behind the same authentication.
	Extra func(mux *http.ServeMux)
	// Public mounts routes that do their own authentication (the dashboard's
	// login page and assets).
	Public func(mux *http.ServeMux)

	rollouts *rollout.Manager
}

// Handler returns the admin API's handler.
func (s *Server) Handler() http.Handler {
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	if s.Sessions == nil {
		s.Sessions = NewSessions()
	}
	api := http.NewServeMux()
	api.HandleFunc("GET /api/v1/apps", s.listApps)
	api.HandleFunc("POST /api/v1/apps", s.createApp)
	api.HandleFunc("GET /api/v1/apps/{app}", s.status)
	api.HandleFunc("GET /api/v1/apps/{app}/slots", s.listSlots)
	api.HandleFunc("POST /api/v1/apps/{app}/slots", s.createSlot)
	api.HandleFunc("DELETE /api/v1/apps/{app}/slots/{slot}", s.deleteSlot)
	api.HandleFunc("POST /api/v1/apps/{app}/slots/{slot}/deploy", s.deploy)
	api.HandleFunc("GET /api/v1/apps/{app}/slots/{slot}/deployments", s.deployments)
	api.HandleFunc("GET /api/v1/apps/{app}/traffic", s.getTraffic)
	api.HandleFunc("PUT /api/v1/apps/{app}/traffic", s.setTraffic)
	api.HandleFunc("DELETE /api/v1/apps/{app}/traffic", s.clearTraffic)
	api.HandleFunc("PUT /api/v1/apps/{app}/mirror", s.setMirror)
	api.HandleFunc("DELETE /api/v1/apps/{app}/mirror", s.clearMirror)
	api.HandleFunc("POST /api/v1/apps/{app}/swap", s.swap)
	api.HandleFunc("GET /api/v1/apps/{app}/swaps", s.swaps)
	api.HandleFunc("GET /api/v1/apps/{app}/metrics", s.metrics)
	api.HandleFunc("GET /api/v1/events", s.events)
	api.HandleFunc("GET /api/v1/apps/{app}/events", s.events)
	if s.Extra != nil {
		s.Extra(api)
	}
	api.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, modelslot.Errorf(modelslot.ENOTFOUND, "no such API endpoint: %s %s (see docs/API.md)", r.Method, r.URL.Path))
	})

	root := http.NewServeMux()
	root.Handle("/api/", s.authenticate(api))
	g := s.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	var metrics http.Handler = promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	if !s.OpenMetrics {
		metrics = s.metricsAuth(metrics)
	}
	root.Handle("GET /metrics", metrics)
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	if s.Public != nil {
		s.Public(root)
	}
	return root
}

// authenticate requires the bearer token (or the dashboard's session
// cookie, which holds the same token).
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.Authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="modelslot"`)
			WriteError(w, r, modelslot.Errorf(modelslot.EUNAUTHORIZED, "missing or wrong admin token: pass it as 'Authorization: Bearer <token>'; the daemon wrote it to admin.token in its data directory (the CLI reads it from there, or from MODELSLOT_TOKEN)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// metricsAuth requires the admin token or the metrics token on /metrics.
func (s *Server) metricsAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !(s.tokenOK(tok) || s.MetricsToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.MetricsToken)) == 1) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="modelslot"`)
			WriteError(w, r, modelslot.Errorf(modelslot.EUNAUTHORIZED, "/metrics on an admin address beyond loopback needs a token: pass 'Authorization: Bearer <token>' with the metrics token (metrics.token in the daemon's data directory) or the admin token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SessionCookie is the dashboard's cookie: a session id (see Sessions),
// HttpOnly, SameSite=Strict, and Secure over TLS.
const SessionCookie = "modelslot_session"

// Authorized reports whether the request carries the admin token or a
// dashboard session. Requests authenticated by cookie must also pass the
// CSRF check when they change state.
func (s *Server) Authorized(r *http.Request) bool {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return s.tokenOK(tok)
	}
	if c, err := r.Cookie(SessionCookie); err == nil && s.Sessions.Valid(c.Value) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return true
		}
		// Cookie-authenticated changes need a same-origin header that a
		// cross-site form cannot send.
		return r.Header.Get("X-Modelslot-CSRF") == "1" && sameOrigin(r)
	}
	return false
}

func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Header.Get("Sec-Fetch-Site") == "" || r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	return o == "http://"+r.Host || o == "https://"+r.Host
}

func (s *Server) tokenOK(tok string) bool {
	return s.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.Token)) == 1
}

// LoadOrCreateToken returns the admin token stored in dir, creating it
// (mode 0600) at first start.
func LoadOrCreateToken(dir string) (string, error) { return loadOrCreate(dir, TokenFile) }

// LoadOrCreateMetricsToken returns the metrics token stored in dir,
// creating it (mode 0600) at first start.
func LoadOrCreateMetricsToken(dir string) (string, error) {
	return loadOrCreate(dir, MetricsTokenFile)
}

// MetricsTokenFile is the metrics token's file name in the data directory.
const MetricsTokenFile = "metrics.token"

func loadOrCreate(dir, name string) (string, error) {
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if err == nil {
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return tok, nil
}

// TokenFile is the admin token's file name in the data directory.
const TokenFile = "admin.token"

// ErrorBody is the JSON shape of every API error.
type ErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// StatusOf maps an error code to its HTTP status; the one place that does.
func StatusOf(code string) int {
	switch code {
	case modelslot.EINVALID:
		return http.StatusBadRequest
	case modelslot.ENOTFOUND:
		return http.StatusNotFound
	case modelslot.ECONFLICT:
		return http.StatusConflict
	case modelslot.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case modelslot.EFORBIDDEN:
		return http.StatusForbidden
	case modelslot.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// WriteError writes err as JSON; internal errors are logged, not shown.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var body ErrorBody
	body.Error.Code = modelslot.ErrorCode(err)
	body.Error.Message = modelslot.ErrorMessage(err)
	writeJSON(w, StatusOf(body.Error.Code), body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// WriteJSON writes v with status 200.
func WriteJSON(w http.ResponseWriter, v any) { writeJSON(w, http.StatusOK, v) }

// DecodeJSON reads a request body strictly.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return modelslot.Errorf(modelslot.EINVALID, "the request body is not valid: %v", err)
	}
	return nil
}

// ActorCookie holds the name a dashboard user gave at login, so that the
// event log says who acted ("dashboard:alice"). It is attribution, not
// authentication: whoever has the admin token may act under any name.
const ActorCookie = "modelslot_actor"

// ValidActorName reports whether name can be a dashboard user's name: 1 to
// 40 letters, digits and . _ @ -.
func ValidActorName(name string) bool {
	if len(name) == 0 || len(name) > 40 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._@-", c)) {
			return false
		}
	}
	return true
}

// Actor names who made a request, for the event log: the X-Modelslot-Actor
// header (the CLI sends "cli:<user>"), "dashboard:<name>" for the dashboard
// of a user who gave a name at login, and "api" otherwise.
func Actor(r *http.Request) string {
	a := r.Header.Get("X-Modelslot-Actor")
	if a == "dashboard" {
		if c, err := r.Cookie(ActorCookie); err == nil && ValidActorName(c.Value) {
			a += ":" + c.Value
		}
	}
	if a == "" {
		return "api"
	}
	if len(a) > 64 {
		a = a[:64]
	}
	return a
}

func (s *Server) guard(app string) error {
	if s.Guard == nil {
		return nil
	}
	if id, busy := s.Guard.Busy(app); busy {
		flag := rollout.CLIAppFlag(app)
		return modelslot.Errorf(modelslot.ECONFLICT, "rollout %s is running on app %s and owns its traffic and swaps: pause it (`modelslot rollout pause%s`) or abort it (`modelslot rollout abort%s`) first", id, app, flag, flag)
	}
	return nil
}

func (s *Server) logErr(r *http.Request, err error) {
	if modelslot.ErrorCode(err) == modelslot.EINTERNAL {
		s.Logger.Error("api", "method", r.Method, "path", r.URL.Path, "err", err)
	}
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.logErr(r, err)
	WriteError(w, r, err)
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, map[string]any{"apps": s.Engine.Apps()})
}

func (s *Server) createApp(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name      string `json:"name"`
		StickyKey string `json:"stickyKey"`
		MaxSlots  int    `json:"maxSlots"`
	}
	if err := DecodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	a, err := s.Engine.CreateApp(r.Context(), req.Name, req.StickyKey, req.MaxSlots)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, a)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.Engine.Status(r.Context(), r.PathValue("app"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.rollouts != nil {
		if ro, err := s.rollouts.Active(r.Context(), st.App); err == nil && ro != nil {
			st.Rollout = ro.Brief()
		}
	}
	WriteJSON(w, st)
}

func (s *Server) listSlots(w http.ResponseWriter, r *http.Request) {
	a, err := s.Engine.App(r.Context(), r.PathValue("app"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	type slotView struct {
		*modelslot.Slot
		Percent float64 `json:"percent"`
	}
	out := make([]slotView, len(a.Slots))
	for i, sl := range a.Slots {
		out[i] = slotView{sl, a.Routing.Percent(sl.Name)}
	}
	WriteJSON(w, map[string]any{"slots": out})
}

func (s *Server) createSlot(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := DecodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	sl, err := s.Engine.CreateSlot(r.Context(), r.PathValue("app"), req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, sl)
}

func (s *Server) deleteSlot(w http.ResponseWriter, r *http.Request) {
	force, _ := strconv.ParseBool(r.URL.Query().Get("force"))
	if err := s.Engine.DeleteSlot(r.Context(), r.PathValue("app"), r.PathValue("slot"), force); err != nil {
		s.fail(w, r, err)
		return
	}
	WriteJSON(w, map[string]any{"deleted": r.PathValue("slot")})
}

func (s *Server) deploy(w http.ResponseWriter, r *http.Request) {
	var req modelslot.DeployRequest
	if err := DecodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	req.Actor = Actor(r)
	sl, err := s.Engine.Deploy(r.Context(), r.PathValue("app"), r.PathValue("slot"), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteJSON(w, sl)
}

func (s *Server) deployments(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	ds, err := s.Engine.Deployments(r.Context(), r.PathValue("app"), r.PathValue("slot"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteJSON(w, map[string]any{"deployments": ds})
}

// TrafficView is what GET .../traffic returns.
type TrafficView struct {
	Routing modelslot.Routing       `json:"routing"`
	Split   []modelslot.TrafficRule `json:"split"` // every slot with a share, production included
	Mirror  *modelslot.MirrorRule   `json:"mirror,omitempty"`
}

func trafficView(a *modelslot.App) TrafficView {
	v := TrafficView{Routing: a.Routing, Mirror: a.Mirror}
	v.Split = append(v.Split, modelslot.TrafficRule{Slot: modelslot.Production, Percent: a.Routing.Percent(modelslot.Production)})
	v.Split = append(v.Split, a.Routing.Rules...)
	return v
}

func (s *Server) getTraffic(w http.ResponseWriter, r *http.Request) {
	a, err := s.Engine.App(r.Context(), r.PathValue("app"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteJSON(w, trafficView(a))
}

// TrafficRequest is the body of PUT .../traffic.
type TrafficRequest struct {
	Rules     []modelslot.TrafficRule `json:"rules"`
	ResetPins bool                    `json:"resetPins"`
}

func (s *Server) setTraffic(w http.ResponseWriter, r *http.Request) {
	var req TrafficRequest
	if err := DecodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	s.applyTraffic(w, r, req.Rules, req.ResetPins)
}

func (s *Server) clearTraffic(w http.ResponseWriter, r *http.Request) {
	s.applyTraffic(w, r, nil, true)
}

func (s *Server) applyTraffic(w http.ResponseWriter, r *http.Request, rules []modelslot.TrafficRule, reset bool) {
	app := r.PathValue("app")
	if err := s.guard(app); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.Engine.SetTraffic(r.Context(), app, rules, modelslot.TrafficOptions{ResetPins: reset, Actor: Actor(r)}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.getTraffic(w, r)
}

func (s *Server) setMirror(w http.ResponseWriter, r *http.Request) {
	var m modelslot.MirrorRule
	if err := DecodeJSON(r, &m); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.Engine.SetMirror(r.Context(), r.PathValue("app"), &m, Actor(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	s.getTraffic(w, r)
}

func (s *Server) clearMirror(w http.ResponseWriter, r *http.Request) {
	if err := s.Engine.SetMirror(r.Context(), r.PathValue("app"), nil, Actor(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	s.getTraffic(w, r)
}

func (s *Server) swap(w http.ResponseWriter, r *http.Request) {
	var req modelslot.SwapRequest
	if err := DecodeJSON(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	app := r.PathValue("app")
	if err := s.guard(app); err != nil {
		s.fail(w, r, err)
		return
	}
	req.Actor = Actor(r)
	rec, err := s.Engine.Swap(r.Context(), app, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteJSON(w, rec)
}

func (s *Server) swaps(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	recs, err := s.Engine.Swaps(r.Context(), r.PathValue("app"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	WriteJSON(w, map[string]any{"swaps": recs})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	if _, err := s.Engine.App(r.Context(), app); err != nil {
		s.fail(w, r, err)
		return
	}
	window := time.Minute
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 24*time.Hour {
			s.fail(w, r, modelslot.Errorf(modelslot.EINVALID, "window %q is not valid: give a duration such as 60s or 5m (at most 24h)", v))
			return
		}
		window = d
	}
	now := time.Now()
	if s.AllReplicas == nil {
		WriteJSON(w, map[string]any{"app": app, "window": window.String(), "slots": s.Meter.Stats(app, window, now)})
		return
	}
	a, _ := s.Engine.App(r.Context(), app)
	stats := []gateway.Stats{}
	for _, name := range slices.Sorted(slices.Values(a.SlotNames())) {
		ser, err := s.AllReplicas.Series(r.Context(), modelslot.MetricQuery{App: app, Slot: name, From: now.Add(-window), To: now.Add(time.Nanosecond)})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		stats = append(stats, gateway.Summarise(app, name, window, ser.Samples)...)
	}
	WriteJSON(w, map[string]any{"app": app, "window": window.String(), "slots": stats, "replicas": "all"})
}

// events lists events, or streams them as server-sent events with
// ?follow=true (or Accept: text/event-stream).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := modelslot.EventFilter{App: r.PathValue("app"), Rollout: q.Get("rollout")}
	if f.App == "" {
		f.App = q.Get("app")
	}
	f.AfterID, _ = strconv.ParseInt(q.Get("after"), 10, 64)
	f.Limit, _ = strconv.Atoi(q.Get("limit"))
	follow, _ := strconv.ParseBool(q.Get("follow"))
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		follow = true
	}
	if !follow {
		evs, err := s.Store.Events(r.Context(), f)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if evs == nil {
			evs = []*modelslot.Event{}
		}
		WriteJSON(w, map[string]any{"events": evs})
		return
	}
	if s.Events == nil {
		s.fail(w, r, modelslot.Errorf(modelslot.EUNAVAILABLE, "event streaming is not enabled in this daemon"))
		return
	}
	// Subscribe first, then replay what is stored, so nothing falls between.
	ch := s.Events.Subscribe(r.Context(), modelslot.EventFilter{App: f.App, Rollout: f.Rollout})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	last := f.AfterID
	send := func(e *modelslot.Event) {
		if e.ID <= last {
			return
		}
		last = e.ID
		b, _ := json.Marshal(e)
		fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.ID, e.Type, b)
	}
	past, err := s.Store.Events(r.Context(), f)
	if err == nil {
		for _, e := range past {
			send(e)
		}
	}
	rc.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			send(e)
			rc.Flush()
		case <-keepalive.C:
			io.WriteString(w, ": keepalive\n\n")
			rc.Flush()
		}
	}
}
