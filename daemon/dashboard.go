package daemon

import (
	"net/http"

	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/dashboard"
)

// mountDashboard serves the web dashboard on the admin listener, next to
// the API it calls.
func mountDashboard(s *api.Server, d *Daemon) {
	ui := dashboard.New(dashboard.Config{
		Authorized: s.Authorized,
		Token:      s.Token,
		Apps:       d.Engine,
		Metrics:    d.metricsOfAll(),
		Logger:     d.log.With("component", "dashboard"),
	})
	public := s.Public
	s.Public = func(mux *http.ServeMux) {
		if public != nil {
			public(mux)
		}
		ui.Mount(mux)
	}
}
