package daemon

import (
	"net/http"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/gateway"
	// gates registers the loadtest, eval and shadow gate kinds on import.
	"github.com/modelslot/modelslot/gates"
)

// withShadow gives the rollout gates' metric source the gateway's shadow
// comparisons too, for the shadow gate.
func withShadow(src modelslot.MetricSource, gw *gateway.Gateway) modelslot.MetricSource {
	return shadowMetrics{MetricSource: src, gw: gw}
}

type shadowMetrics struct {
	modelslot.MetricSource
	gw *gateway.Gateway
}

var _ gates.ShadowSource = shadowMetrics{}

func (m shadowMetrics) ShadowSamples(app string, since time.Time) []gateway.ShadowPair {
	return m.gw.ShadowSamples(app, since)
}

// mountShadow serves the shadow comparisons on the admin API.
func mountShadow(s *api.Server, gw *gateway.Gateway) {
	extra := s.Extra
	s.Extra = func(mux *http.ServeMux) {
		if extra != nil {
			extra(mux)
		}
		s.MountShadow(mux, gw)
	}
}
