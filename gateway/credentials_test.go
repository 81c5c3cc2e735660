package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
)

// TestClientCredentialsDropped: when a deployment brings its own key (a
// secret header, a secret query parameter, or a credential header), none of
// the client's credential headers reaches its backend, on the direct path,
// through the ReverseProxy, and in a mirrored request; a deployment
// without credentials gets the client's key as before.
func TestClientCredentialsDropped(t *testing.T) {
	deployments := []struct {
		name string
		d    modelslot.Deployment
		// own is the deployment's key header, whose value must arrive.
		own, ownValue string
	}{
		{"secret header", modelslot.Deployment{Headers: map[string]string{"x-api-key": "dep-key"}, SecretHeaders: []string{"x-api-key"}}, "X-Api-Key", "dep-key"},
		{"secret query", modelslot.Deployment{Query: map[string]string{"key": "dep-key"}, SecretQuery: []string{"key"}}, "", ""},
		{"plain credential header", modelslot.Deployment{Headers: map[string]string{"x-goog-api-key": "dep-key"}}, "X-Goog-Api-Key", "dep-key"},
	}
	for _, m := range upstreamModes {
		for _, tc := range deployments {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				seen := make(chan *http.Request, 1)
				backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					seen <- r.Clone(r.Context())
					io.WriteString(w, `{}`)
				}))
				defer backend.Close()
				g := New(Config{StdUpstream: m.std})
				defer g.Close()
				d := tc.d
				b, err := g.NewBackend(backend.URL, &d)
				if err != nil {
					t.Fatal(err)
				}
				g.Update([]RouteApp{{
					App:      &modelslot.App{Name: "default", Slots: []*modelslot.Slot{{Name: modelslot.Production, Deployment: &d}}},
					Backends: map[string]*Backend{modelslot.Production: b},
				}})
				req, _ := http.NewRequest(http.MethodPost, front(t, g)+"/v1/chat/completions", strings.NewReader(`{}`))
				for _, h := range CredentialHeaders {
					req.Header.Set(h, "client-"+h)
				}
				req.Header.Set("X-Custom", "kept")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				in := <-seen
				for k, vv := range in.Header {
					for _, v := range vv {
						if strings.HasPrefix(v, "client-") {
							t.Errorf("the backend got the client's %s", k)
						}
					}
				}
				if tc.own != "" && in.Header.Get(tc.own) != tc.ownValue {
					t.Errorf("the backend got %s %q, want the deployment's %q", tc.own, in.Header.Get(tc.own), tc.ownValue)
				}
				if q, _ := url.ParseQuery(in.URL.RawQuery); tc.d.Query != nil && q.Get("key") != "dep-key" {
					t.Errorf("the backend got query %q, want the deployment's key", in.URL.RawQuery)
				}
				if in.Header.Get("X-Custom") != "kept" {
					t.Errorf("X-Custom %q: other headers must pass", in.Header.Get("X-Custom"))
				}
			})
		}
	}
	t.Run("no credentials", func(t *testing.T) {
		got := make(chan string, 1)
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Get("Authorization") }))
		defer backend.Close()
		g, _ := benchGateway(t, Config{}, backend.URL, "")
		req, _ := http.NewRequest(http.MethodPost, front(t, g)+"/v1/chat/completions?"+RoutingParam+"=self", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer client")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if a := <-got; a != "Bearer client" {
			t.Errorf("a backend without credentials got Authorization %q, want the client's", a)
		}
	})
}

// TestMirrorDropsClientCredentials: a shadow slot that brings its own key
// gets none of the client's credential headers, and never production's.
func TestMirrorDropsClientCredentials(t *testing.T) {
	prod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{}`) }))
	defer prod.Close()
	got := make(chan http.Header, 1)
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Clone():
		default:
		}
		io.WriteString(w, `{}`)
	}))
	defer shadow.Close()
	g := New(Config{})
	defer g.Close()
	app := &modelslot.App{Name: "default", Mirror: &modelslot.MirrorRule{Slot: "staging", Percent: 100}}
	deps := map[string]*modelslot.Deployment{
		modelslot.Production: {Revision: "p", URL: prod.URL, Headers: map[string]string{"api-key": "prod-secret"}, SecretHeaders: []string{"api-key"}},
		"staging":            {Revision: "s", URL: shadow.URL, Headers: map[string]string{"authorization": "Bearer shadow-secret"}, SecretHeaders: []string{"authorization"}},
	}
	backends := map[string]*Backend{}
	for name, d := range deps {
		app.Slots = append(app.Slots, &modelslot.Slot{Name: name, Deployment: d})
		b, err := g.NewBackend(d.URL, d)
		if err != nil {
			t.Fatal(err)
		}
		backends[name] = b
	}
	g.Update([]RouteApp{{App: app, Backends: backends}})
	req, _ := http.NewRequest(http.MethodPost, front(t, g)+"/v1/chat/completions", strings.NewReader(`{}`))
	for _, h := range CredentialHeaders {
		req.Header.Set(h, "client-"+h)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	select {
	case h := <-got:
		for k, vv := range h {
			for _, v := range vv {
				if strings.HasPrefix(v, "client-") || strings.Contains(v, "prod-secret") {
					t.Errorf("the shadow got %s: %q", k, v)
				}
			}
		}
		if h.Get("Authorization") != "Bearer shadow-secret" {
			t.Errorf("the shadow got Authorization %q, want its own key", h.Get("Authorization"))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no mirrored request reached the shadow")
	}
}
