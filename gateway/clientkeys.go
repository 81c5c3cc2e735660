package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/time/rate"
)

// ClientKey is one key that may use the gateway. Only its SHA-256 is
// kept: client keys are random and long (32 bytes or more), so a plain
// hash is enough to make a leaked list useless; a slow password hash
// would only add latency to every request.
type ClientKey struct {
	// Name identifies the key in logs and errors (never the key).
	Name string
	Hash [sha256.Size]byte
	// Apps the key may call; empty: every app.
	Apps []string
	// RequestsPerMinute bounds the key's request rate (0: no limit);
	// Burst is how many requests may come at once (default: a second's
	// worth, at least 1).
	RequestsPerMinute float64
	Burst             int
}

// keyring is the published set of client keys; nil when the gateway is
// open to anyone who reaches it.
type keyring struct {
	keys []*keyState
}

type keyState struct {
	ClientKey
	limiter *rate.Limiter // nil: no limit
}

func (k *ClientKey) burst() int {
	if k.Burst > 0 {
		return k.Burst
	}
	return max(1, int(k.RequestsPerMinute/60+0.999))
}

// SetClientKeys replaces the keys that may use the gateway (rotation
// without a restart); an empty list opens the gateway to anyone. A key
// that stays (same name, hash and limit) keeps its rate limiter's state.
func (g *Gateway) SetClientKeys(keys []ClientKey) {
	if len(keys) == 0 {
		g.keys.Store(nil)
		return
	}
	old := map[string]*keyState{}
	if kr := g.keys.Load(); kr != nil {
		for _, k := range kr.keys {
			old[k.Name] = k
		}
	}
	kr := &keyring{}
	for _, k := range keys {
		st := &keyState{ClientKey: k}
		st.Apps = slices.Clone(k.Apps)
		if o := old[k.Name]; o != nil && o.Hash == k.Hash && o.RequestsPerMinute == k.RequestsPerMinute && o.burst() == k.burst() {
			st.limiter = o.limiter
		} else if k.RequestsPerMinute > 0 {
			st.limiter = rate.NewLimiter(rate.Limit(k.RequestsPerMinute/60), k.burst())
		}
		kr.keys = append(kr.keys, st)
	}
	g.keys.Store(kr)
}

// ClientKeysEnabled reports whether the gateway requires a client key.
func (g *Gateway) ClientKeysEnabled() bool { return g.keys.Load() != nil }

// clientKeyHeaders are where a client may put its key: OpenAI's SDKs send
// Authorization: Bearer, Azure's api-key, Anthropic's x-api-key.
var clientKeyHeaders = [...]string{"Authorization", "Api-Key", "X-Api-Key"}

// find returns the key r presents and the header it came in, comparing
// the presented key's hash with every key in constant time.
func (kr *keyring) find(r *http.Request) (*keyState, string) {
	for _, h := range clientKeyHeaders {
		v := r.Header.Get(h)
		if v == "" {
			continue
		}
		if h == "Authorization" {
			tok, ok := strings.CutPrefix(v, "Bearer ")
			if !ok {
				continue
			}
			v = tok
		}
		sum := sha256.Sum256([]byte(v))
		var found *keyState
		for _, k := range kr.keys {
			if subtle.ConstantTimeCompare(sum[:], k.Hash[:]) == 1 {
				found = k
			}
		}
		return found, h
	}
	return nil, ""
}

// authenticate finds the client key of r, before anything else is looked
// at; without a known key it answers 401 and returns nil. The key is then
// removed from the request: it is the gateway's, not the backend's.
func (kr *keyring) authenticate(w http.ResponseWriter, r *http.Request) *keyState {
	k, header := kr.find(r)
	if k == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="modelslot"`)
		writeErrorType(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key",
			"missing or unknown API key: this gateway takes client keys; pass yours as 'Authorization: Bearer <key>'")
		return nil
	}
	r.Header.Del(header)
	return k
}

// admit checks that the key may call app and is within its rate, before
// routing; otherwise it answers 403 or 429 and returns false.
func (k *keyState) admit(w http.ResponseWriter, app string) bool {
	if len(k.Apps) > 0 && !slices.Contains(k.Apps, app) {
		writeErrorType(w, http.StatusForbidden, "invalid_request_error", "app_not_allowed",
			"the API key "+k.Name+" may not call app "+app)
		return false
	}
	if k.limiter != nil && !k.limiter.Allow() {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(60/k.RequestsPerMinute+0.999))))
		writeErrorType(w, http.StatusTooManyRequests, "requests", "rate_limit_exceeded",
			"rate limit reached for the API key "+k.Name+" ("+strconv.FormatFloat(k.RequestsPerMinute, 'g', -1, 64)+" requests per minute): slow down and retry")
		return false
	}
	return true
}

// writeErrorType writes an OpenAI-style JSON error of the given type.
func writeErrorType(w http.ResponseWriter, status int, typ, code, msg string) {
	body, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": code}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(status)
	w.Write(body)
}
