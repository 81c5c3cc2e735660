package gateway

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelslot/modelslot"
)

func clientKey(name, key string, apps []string, rpm float64, burst int) ClientKey {
	return ClientKey{Name: name, Hash: sha256.Sum256([]byte(key)), Apps: apps, RequestsPerMinute: rpm, Burst: burst}
}

// TestClientKeys: with client keys, a request without a known key gets an
// OpenAI-style 401 before anything is routed (an unknown app included); a
// known key reaches the apps it may call, within its rate (then 429), and
// never reaches the backend; keys rotate without a restart; the daemon's
// own synthetic requests need none.
func TestClientKeys(t *testing.T) {
	seen := make(chan http.Header, 100)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		io.WriteString(w, `{"ok":true}`)
	}))
	defer backend.Close()
	g := New(Config{})
	defer g.Close()
	var routes []RouteApp
	for _, name := range []string{"chat", "embed"} {
		d := &modelslot.Deployment{Revision: "r-" + name, URL: backend.URL}
		b, err := g.NewBackend(backend.URL, d)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, RouteApp{
			App:      &modelslot.App{Name: name, Slots: []*modelslot.Slot{{Name: modelslot.Production, Deployment: d}}},
			Backends: map[string]*Backend{modelslot.Production: b},
		})
	}
	g.Update(routes)
	g.SetClientKeys([]ClientKey{
		clientKey("everything", "key-all", nil, 0, 0),
		clientKey("chat-only", "key-chat", []string{"chat"}, 0, 0),
		clientKey("slow", "key-slow", nil, 1, 2), // one a minute after a burst of two
	})
	base := front(t, g)

	type answer struct {
		status int
		typ    string
		code   string
		header http.Header
	}
	send := func(app string, hdr map[string]string) answer {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/"+app+"/v1/chat/completions", strings.NewReader(`{}`))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		a := answer{status: resp.StatusCode, header: resp.Header}
		if resp.StatusCode != 200 {
			var body struct {
				Error struct {
					Message, Type, Code string
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error.Message == "" {
				t.Errorf("%d answer is not an OpenAI error: %v", resp.StatusCode, err)
			}
			a.typ, a.code = body.Error.Type, body.Error.Code
		} else {
			h := <-seen
			for _, k := range clientKeyHeaders {
				if v := h.Get(k); strings.Contains(v, "key-") {
					t.Errorf("the backend got the client key in %s", k)
				}
			}
		}
		return a
	}
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }

	for _, tc := range []struct {
		name      string
		app       string
		hdr       map[string]string
		status    int
		typ, code string
	}{
		{"no key", "chat", nil, 401, "invalid_request_error", "invalid_api_key"},
		{"no key, unknown app", "nope", nil, 401, "invalid_request_error", "invalid_api_key"},
		{"wrong key", "chat", bearer("key-wrong"), 401, "invalid_request_error", "invalid_api_key"},
		{"basic auth", "chat", map[string]string{"Authorization": "Basic a2V5LWFsbA=="}, 401, "invalid_request_error", "invalid_api_key"},
		{"bearer", "chat", bearer("key-all"), 200, "", ""},
		{"api-key header", "embed", map[string]string{"Api-Key": "key-all"}, 200, "", ""},
		{"x-api-key header", "embed", map[string]string{"X-Api-Key": "key-all"}, 200, "", ""},
		{"allowed app", "chat", bearer("key-chat"), 200, "", ""},
		{"other app", "embed", bearer("key-chat"), 403, "invalid_request_error", "app_not_allowed"},
		{"synthetic", "chat", map[string]string{HeaderSynthetic: g.SyntheticKey()}, 200, "", ""},
		{"wrong synthetic", "chat", map[string]string{HeaderSynthetic: "x"}, 401, "invalid_request_error", "invalid_api_key"},
		{"rate 1", "chat", bearer("key-slow"), 200, "", ""},
		{"rate 2", "chat", bearer("key-slow"), 200, "", ""},
		{"rate 3", "chat", bearer("key-slow"), 429, "requests", "rate_limit_exceeded"},
	} {
		a := send(tc.app, tc.hdr)
		if a.status != tc.status || a.typ != tc.typ || a.code != tc.code {
			t.Errorf("%s: %d %s %s, want %d %s %s", tc.name, a.status, a.typ, a.code, tc.status, tc.typ, tc.code)
		}
		if tc.status == 401 && a.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: a 401 without WWW-Authenticate", tc.name)
		}
		if tc.status == 429 && a.header.Get("Retry-After") != "60" {
			t.Errorf("%s: Retry-After %q, want 60", tc.name, a.header.Get("Retry-After"))
		}
	}

	// Rotation: the new set applies to the next request; a key that stays
	// keeps its limiter (the slow key is still out of requests).
	g.SetClientKeys([]ClientKey{clientKey("rotated", "key-new", nil, 0, 0), clientKey("slow", "key-slow", nil, 1, 2)})
	if a := send("chat", bearer("key-all")); a.status != 401 {
		t.Errorf("a removed key: %d, want 401", a.status)
	}
	if a := send("chat", bearer("key-new")); a.status != 200 {
		t.Errorf("a new key: %d, want 200", a.status)
	}
	if a := send("chat", bearer("key-slow")); a.status != 429 {
		t.Errorf("a kept key got a fresh limit: %d, want 429", a.status)
	}
	g.SetClientKeys(nil)
	if a := send("chat", nil); a.status != 200 {
		t.Errorf("no keys: %d, want 200 (the gateway is open)", a.status)
	}
}
