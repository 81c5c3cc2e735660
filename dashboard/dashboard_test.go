package dashboard_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
)

// startDaemon runs a real daemon on loopback with an empty state.
func startDaemon(t *testing.T) *daemon.Daemon {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg})
	if err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Close(ctx)
	})
	return d
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func do(t *testing.T, method, u string, body string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func login(t *testing.T, d *daemon.Daemon, token string, hdr map[string]string) *http.Response {
	t.Helper()
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": d.AdminURL()}
	for k, v := range hdr {
		h[k] = v
	}
	return do(t, http.MethodPost, d.AdminURL()+"/ui/login", url.Values{"token": {token}}.Encode(), h)
}

// session logs in and returns the Cookie header of the new session.
func session(t *testing.T, d *daemon.Daemon) string {
	t.Helper()
	c := sessionCookie(t, login(t, d, d.Token, nil))
	if c == nil {
		t.Fatal("login set no session cookie")
	}
	return c.Name + "=" + c.Value
}

func sessionCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == api.SessionCookie {
			return c
		}
	}
	return nil
}

func TestDashboardLoginLogout(t *testing.T) {
	d := startDaemon(t)

	t.Run("pages need a session", func(t *testing.T) {
		for _, p := range []string{"/", "/ui/"} {
			resp := do(t, http.MethodGet, d.AdminURL()+p, "", nil)
			if got, want := resp.StatusCode, http.StatusSeeOther; got != want {
				t.Fatalf("GET %s: status %d, want %d", p, got, want)
			}
			if got := resp.Header.Get("Location"); got != "/ui/login" {
				t.Errorf("GET %s: Location %q, want /ui/login", p, got)
			}
		}
	})

	cases := []struct {
		name   string
		token  string
		hdr    map[string]string
		status int
	}{
		{"wrong token", "nope", nil, http.StatusUnauthorized},
		{"empty token", "", nil, http.StatusUnauthorized},
		{"other origin", d.Token, map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"cross-site without origin", d.Token, map[string]string{"Origin": "", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := login(t, d, tc.token, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if c := sessionCookie(t, resp); c != nil {
				t.Fatalf("a refused login set the cookie %v", c)
			}
		})
	}

	resp := login(t, d, d.Token, nil)
	if got, want := resp.StatusCode, http.StatusSeeOther; got != want {
		t.Fatalf("login: status %d, want %d", got, want)
	}
	if got := resp.Header.Get("Location"); got != "/ui/" {
		t.Errorf("login: Location %q, want /ui/", got)
	}
	c := sessionCookie(t, resp)
	if c == nil {
		t.Fatal("login set no session cookie")
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 || len(c.Value) != 64 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, a positive Max-Age and a session id", c)
	}
	if c.Value == d.Token || strings.Contains(c.Value, d.Token) {
		t.Errorf("the session cookie carries the admin token")
	}
	if c.Secure {
		t.Errorf("cookie is Secure over plain HTTP: the browser would drop it")
	}
	cookie := map[string]string{"Cookie": c.Name + "=" + c.Value}

	page := do(t, http.MethodGet, d.AdminURL()+"/", "", cookie)
	if page.StatusCode != http.StatusOK || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / with a session: %d %s", page.StatusCode, page.Header.Get("Content-Type"))
	}
	js := do(t, http.MethodGet, d.AdminURL()+"/ui/assets/app.js", "", nil)
	if ct := js.Header.Get("Content-Type"); js.StatusCode != http.StatusOK || !strings.Contains(ct, "javascript") {
		t.Fatalf("GET app.js: %d %s, want 200 and a JavaScript type (modules need it)", js.StatusCode, ct)
	}

	t.Run("logout from another origin", func(t *testing.T) {
		resp := do(t, http.MethodPost, d.AdminURL()+"/ui/logout", "", map[string]string{"Origin": "http://evil.example", "Cookie": cookie["Cookie"]})
		if got, want := resp.StatusCode, http.StatusForbidden; got != want {
			t.Fatalf("status %d, want %d", got, want)
		}
	})
	out := do(t, http.MethodPost, d.AdminURL()+"/ui/logout", "", map[string]string{"Origin": d.AdminURL(), "Cookie": cookie["Cookie"]})
	if got, want := out.StatusCode, http.StatusSeeOther; got != want {
		t.Fatalf("logout: status %d, want %d", got, want)
	}
	gone := sessionCookie(t, out)
	if gone == nil || gone.MaxAge >= 0 || gone.Value != "" || !gone.HttpOnly || gone.Path != "/" {
		t.Fatalf("logout cookie %+v: want an empty, expired, HttpOnly cookie on /", gone)
	}
	// The session is revoked in the daemon, not only forgotten by the
	// browser: a copy of the old cookie no longer works.
	if resp := do(t, http.MethodGet, d.AdminURL()+"/api/v1/apps", "", cookie); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the cookie of a logged-out session: GET /api/v1/apps %d, want 401", resp.StatusCode)
	}
	if resp := do(t, http.MethodGet, d.AdminURL()+"/", "", cookie); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the cookie of a logged-out session: GET / %d, want a redirect to the login", resp.StatusCode)
	}
}

// TestDashboardCookieIsNotTheToken: the admin token itself in the session
// cookie is refused; only a session id from a login is accepted.
func TestDashboardCookieIsNotTheToken(t *testing.T) {
	d := startDaemon(t)
	for name, c := range map[string]string{"the admin token": api.SessionCookie + "=" + d.Token, "a login's session": session(t, d)} {
		resp := do(t, http.MethodGet, d.AdminURL()+"/api/v1/apps", "", map[string]string{"Cookie": c})
		want := http.StatusOK
		if name == "the admin token" {
			want = http.StatusUnauthorized
		}
		if resp.StatusCode != want {
			t.Errorf("cookie with %s: %d, want %d", name, resp.StatusCode, want)
		}
	}
}

func TestDashboardCSRF(t *testing.T) {
	d := startDaemon(t)
	cookie := session(t, d)
	traffic := d.AdminURL() + "/api/v1/apps/default/traffic"
	cases := []struct {
		name   string
		hdr    map[string]string
		status int
	}{
		{"no CSRF header", map[string]string{"Origin": d.AdminURL()}, http.StatusUnauthorized},
		{"wrong CSRF header", map[string]string{"Origin": d.AdminURL(), "X-Modelslot-CSRF": "yes"}, http.StatusUnauthorized},
		{"other origin", map[string]string{"Origin": "http://evil.example", "X-Modelslot-CSRF": "1"}, http.StatusUnauthorized},
		{"cross-site fetch without origin", map[string]string{"Sec-Fetch-Site": "cross-site", "X-Modelslot-CSRF": "1"}, http.StatusUnauthorized},
		{"same origin with header", map[string]string{"Origin": d.AdminURL(), "X-Modelslot-CSRF": "1"}, http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.hdr["Cookie"] = cookie
			tc.hdr["Content-Type"] = "application/json"
			resp := do(t, http.MethodPut, traffic, `{"rules":[]}`, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
				t.Errorf("Access-Control-Allow-Origin %q: nothing is shared with other origins", v)
			}
		})
	}
}

func TestDashboardSecurityHeaders(t *testing.T) {
	d := startDaemon(t)
	cookie := map[string]string{"Cookie": session(t, d), "Origin": "http://evil.example"}
	for _, p := range []string{"/", "/ui/", "/ui/login", "/ui/assets/app.js", "/ui/assets/style.css", "/ui/api/apps/default/series"} {
		t.Run(p, func(t *testing.T) {
			resp := do(t, http.MethodGet, d.AdminURL()+p, "", cookie)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			h := resp.Header
			if got := h.Get("Content-Security-Policy"); !strings.Contains(got, "default-src 'self'") || !strings.Contains(got, "frame-ancestors 'none'") || strings.Contains(got, "unsafe") {
				t.Errorf("Content-Security-Policy %q: want default-src 'self', frame-ancestors 'none' and nothing unsafe", got)
			}
			for k, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"} {
				if got := h.Get(k); got != want {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
			if got := h.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("Access-Control-Allow-Origin %q: want none", got)
			}
		})
	}
}

func TestDashboardSeriesAuth(t *testing.T) {
	d := startDaemon(t)
	const series = "/ui/api/apps/default/series"
	cases := []struct {
		name, path string
		hdr        map[string]string
		status     int
	}{
		{"no credentials", series, nil, http.StatusUnauthorized},
		{"wrong cookie", series, map[string]string{"Cookie": api.SessionCookie + "=nope"}, http.StatusUnauthorized},
		{"token as cookie", series, map[string]string{"Cookie": api.SessionCookie + "=" + d.Token}, http.StatusUnauthorized},
		{"cookie", series, map[string]string{"Cookie": session(t, d)}, http.StatusOK},
		{"bearer", series, map[string]string{"Authorization": "Bearer " + d.Token}, http.StatusOK},
		{"bad minutes", series + "?minutes=0", map[string]string{"Authorization": "Bearer " + d.Token}, http.StatusBadRequest},
		{"too many minutes", series + "?minutes=61", map[string]string{"Authorization": "Bearer " + d.Token}, http.StatusBadRequest},
		{"unknown app", "/ui/api/apps/nope/series", map[string]string{"Authorization": "Bearer " + d.Token}, http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := do(t, http.MethodGet, d.AdminURL()+tc.path, "", tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			var body map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			if tc.status == http.StatusOK {
				if got, want := len(body["times"].([]any)), 15*6; got != want {
					t.Errorf("%d buckets, want %d (15 minutes of 10s)", got, want)
				}
			} else if body["error"] == nil {
				t.Errorf("error body %v has no error object", body)
			}
		})
	}
}

// A cookie jar proves the cookie works the way a browser keeps it.
func TestDashboardSessionInJar(t *testing.T) {
	d := startDaemon(t)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(d.AdminURL()+"/ui/login", url.Values{"token": {d.Token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/" {
		t.Fatalf("after login: %d at %s, want 200 at /ui/", resp.StatusCode, resp.Request.URL.Path)
	}
	resp, err = c.Get(d.AdminURL() + "/api/v1/apps")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v1/apps with the session cookie: %d", resp.StatusCode)
	}
}

// A name given at login goes into the event log with every action taken
// from the dashboard; a bad name is refused with the rule and no session.
func TestDashboardLoginNameIsTheActor(t *testing.T) {
	d := startDaemon(t)
	form := func(name string) string { return url.Values{"token": {d.Token}, "name": {name}}.Encode() }
	hdr := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": d.AdminURL()}
	for _, bad := range []string{"alice smith", "<script>", strings.Repeat("a", 41), "ålice"} {
		resp := do(t, http.MethodPost, d.AdminURL()+"/ui/login", form(bad), hdr)
		if resp.StatusCode != http.StatusBadRequest || sessionCookie(t, resp) != nil {
			t.Errorf("name %q: status %d, session %v; want 400 and no session", bad, resp.StatusCode, sessionCookie(t, resp))
		}
	}

	for _, tc := range []struct{ name, actor string }{{"alice@example.com", "dashboard:alice@example.com"}, {"", "dashboard"}} {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		resp, err := c.PostForm(d.AdminURL()+"/ui/login", url.Values{"token": {d.Token}, "name": {tc.name}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		req, _ := http.NewRequest(http.MethodPut, d.AdminURL()+"/api/v1/apps/default/traffic", strings.NewReader(`{"rules":[]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", d.AdminURL())
		req.Header.Set("X-Modelslot-CSRF", "1")
		req.Header.Set("X-Modelslot-Actor", "dashboard") // what app.js sends
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("name %q: set traffic: %d", tc.name, resp.StatusCode)
		}
		resp, err = c.Get(d.AdminURL() + "/api/v1/apps/default/events")
		if err != nil {
			t.Fatal(err)
		}
		var evs struct {
			Events []struct {
				Type, Actor string
			} `json:"events"`
		}
		err = json.NewDecoder(resp.Body).Decode(&evs)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		last := ""
		for _, ev := range evs.Events {
			if ev.Type == "traffic.set" {
				last = ev.Actor
			}
		}
		if last != tc.actor {
			t.Errorf("name %q: the last traffic.set was by %q, want %q", tc.name, last, tc.actor)
		}
	}
}
