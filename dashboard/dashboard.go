// Package dashboard serves modelslot's web dashboard on the admin listener:
// embedded HTML, CSS and JavaScript over the admin JSON API, a login form
// that trades the admin token for a session, and a time-series view of the
// gateway's meter for the charts.
package dashboard

import (
	"context"
	"crypto/subtle"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
)

//go:embed assets
var assetsFS embed.FS

// Apps looks an app up; the local engine is one.
type Apps interface {
	App(ctx context.Context, name string) (*modelslot.App, error)
}

// Config wires a Dashboard. Authorized, Token, Sessions, Apps and Metrics
// are required.
type Config struct {
	// Authorized reports whether a request carries the admin token, by
	// header or session cookie, with the CSRF check for changes
	// (api.Server.Authorized).
	Authorized func(r *http.Request) bool
	// Token is the admin token the login form compares with.
	Token string
	// Sessions keeps the sessions a login starts and a logout ends; the
	// cookie carries a session's id, never the token.
	Sessions *api.Sessions
	Apps     Apps
	Metrics  modelslot.MetricSource
	Logger   *slog.Logger
	// Now is the clock of the series endpoint (default time.Now).
	Now func() time.Time
	// SessionMaxAge bounds the session cookie's life (default 12h).
	SessionMaxAge time.Duration
}

// Dashboard serves the dashboard's pages, assets and series endpoint.
type Dashboard struct {
	cfg    Config
	assets http.Handler
	index  []byte
	login  *template.Template
}

// New returns a dashboard for cfg.
func New(cfg Config) *Dashboard {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionMaxAge == 0 {
		cfg.SessionMaxAge = 12 * time.Hour
	}
	sub, err := fs.Sub(assetsFS, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	index, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		panic(err)
	}
	return &Dashboard{
		cfg:    cfg,
		assets: http.StripPrefix("/ui/assets/", http.FileServerFS(sub)),
		index:  index,
		login:  template.Must(template.ParseFS(sub, "login.html")),
	}
}

// Mount registers the dashboard's routes. They do their own
// authentication: mount them with api.Server.Public.
func (d *Dashboard) Mount(mux *http.ServeMux) {
	mux.Handle("GET /{$}", secure(http.HandlerFunc(d.app)))
	mux.Handle("GET /ui", secure(http.RedirectHandler("/ui/", http.StatusMovedPermanently)))
	mux.Handle("GET /ui/{$}", secure(http.HandlerFunc(d.app)))
	mux.Handle("GET /ui/login", secure(http.HandlerFunc(d.loginPage)))
	mux.Handle("POST /ui/login", secure(http.HandlerFunc(d.doLogin)))
	mux.Handle("POST /ui/logout", secure(http.HandlerFunc(d.doLogout)))
	mux.Handle("GET /ui/assets/", secure(d.assets))
	mux.Handle("GET /ui/api/apps/{app}/series", secure(http.HandlerFunc(d.series)))
}

// secure sets the headers every dashboard response carries: nothing may
// frame it, load it from elsewhere or run scripts it did not ship.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "+
			"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		// "same-origin", not "no-referrer": with no-referrer a browser sends
		// "Origin: null" on its own posts, and the CSRF check refuses them.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		// Assets change with the binary; revalidation is cheap on loopback.
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// app serves the single-page dashboard, or sends a visitor without a
// session to the login form.
func (d *Dashboard) app(w http.ResponseWriter, r *http.Request) {
	if !d.cfg.Authorized(r) {
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(d.index)
}

type loginView struct{ Error string }

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request) {
	d.renderLogin(w, http.StatusOK, "")
}

func (d *Dashboard) renderLogin(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := d.login.Execute(w, loginView{Error: msg}); err != nil {
		d.cfg.Logger.Debug("render login", "err", err)
	}
}

func (d *Dashboard) doLogin(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		d.renderLogin(w, http.StatusForbidden, "This login came from another site and was refused. Open the dashboard's own address and sign in there.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	tok := r.PostFormValue("token")
	if d.cfg.Token == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(d.cfg.Token)) != 1 {
		d.cfg.Logger.Info("dashboard login refused", "remote", r.RemoteAddr)
		d.renderLogin(w, http.StatusUnauthorized, "That is not the admin token. Copy it from admin.token in the daemon's data directory.")
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	if name != "" && !api.ValidActorName(name) {
		d.renderLogin(w, http.StatusBadRequest, "A name is 1 to 40 letters, digits and . _ @ - (no spaces), e.g. alice or a.smith@example.com.")
		return
	}
	maxAge := int(d.cfg.SessionMaxAge / time.Second)
	id, err := d.cfg.Sessions.Create(d.cfg.SessionMaxAge)
	if err != nil {
		d.cfg.Logger.Warn("dashboard login", "err", err)
		d.renderLogin(w, http.StatusServiceUnavailable, modelslot.ErrorMessage(err))
		return
	}
	http.SetCookie(w, d.cookie(r, api.SessionCookie, id, maxAge))
	if name != "" {
		http.SetCookie(w, d.cookie(r, api.ActorCookie, name, maxAge))
	} else {
		http.SetCookie(w, d.cookie(r, api.ActorCookie, "", -1))
	}
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

func (d *Dashboard) doLogout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		api.WriteError(w, r, modelslot.Errorf(modelslot.EFORBIDDEN, "logout from another site refused"))
		return
	}
	if c, err := r.Cookie(api.SessionCookie); err == nil {
		d.cfg.Sessions.Revoke(c.Value)
	}
	http.SetCookie(w, d.cookie(r, api.SessionCookie, "", -1))
	http.SetCookie(w, d.cookie(r, api.ActorCookie, "", -1))
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}

func (d *Dashboard) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
}

// sameOrigin is the API's rule: a browser's form post names its origin,
// which must be this host.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		s := r.Header.Get("Sec-Fetch-Site")
		return s == "" || s == "same-origin"
	}
	return o == "http://"+r.Host || o == "https://"+r.Host
}
