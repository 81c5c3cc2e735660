package api

import (
	"net/http"

	"github.com/modelslot/modelslot/gateway"
)

// ShadowSource has an app's shadow-traffic comparisons (the gateway).
type ShadowSource interface {
	ShadowStats(app string) gateway.ShadowStats
}

// MountShadow serves GET /api/v1/apps/{app}/shadow: what mirroring sent,
// dropped and found when it compared the shadow's answers with
// production's (docs/SHADOW.md).
func (s *Server) MountShadow(mux *http.ServeMux, src ShadowSource) {
	mux.HandleFunc("GET /api/v1/apps/{app}/shadow", func(w http.ResponseWriter, r *http.Request) {
		app := r.PathValue("app")
		if _, err := s.Engine.App(r.Context(), app); err != nil {
			s.fail(w, r, err)
			return
		}
		WriteJSON(w, src.ShadowStats(app))
	})
}
