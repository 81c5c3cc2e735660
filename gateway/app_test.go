package gateway

import (
	"net/http/httptest"
	"testing"

	"github.com/modelslot/modelslot"
)

// TestAppSelection holds the gateway to the order docs/CONFIG.md gives for
// picking a request's app: the only app; else X-Modelslot-App (unknown:
// none); else a first path segment naming an app (stripped); else
// "default".
func TestAppSelection(t *testing.T) {
	apps := func(names ...string) []RouteApp {
		var out []RouteApp
		for _, n := range names {
			out = append(out, RouteApp{App: &modelslot.App{Name: n, Slots: []*modelslot.Slot{{Name: modelslot.Production}}}})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		apps     []string
		header   string
		path     string
		wantApp  string // "" for none (404 app_not_found)
		wantPath string
	}{
		{"only app takes everything", []string{"chat"}, "other", "/other/v1/models", "chat", "/other/v1/models"},
		{"header", []string{"default", "chat"}, "chat", "/v1/chat/completions", "chat", "/v1/chat/completions"},
		{"header beats path", []string{"default", "chat"}, "default", "/chat/v1/models", "default", "/chat/v1/models"},
		{"unknown header: no fallback", []string{"default", "chat"}, "nope", "/v1/models", "", ""},
		{"path segment stripped", []string{"default", "chat"}, "", "/chat/v1/chat/completions", "chat", "/v1/chat/completions"},
		{"default app", []string{"default", "chat"}, "", "/v1/chat/completions", "default", "/v1/chat/completions"},
		{"no default app", []string{"chat", "code"}, "", "/v1/chat/completions", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New(Config{})
			defer g.Close()
			g.Update(apps(tc.apps...))
			r := httptest.NewRequest("POST", tc.path, nil)
			if tc.header != "" {
				r.Header.Set("X-Modelslot-App", tc.header)
			}
			app, path := g.snap.Load().appFor(r)
			got := ""
			if app != nil {
				got = app.name
			}
			if got != tc.wantApp || (app != nil && path != tc.wantPath) {
				t.Errorf("app %q path %q, want app %q path %q", got, path, tc.wantApp, tc.wantPath)
			}
		})
	}
}
