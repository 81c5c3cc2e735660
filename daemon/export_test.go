package daemon

import (
	"net/http"
	"time"

	"github.com/modelslot/modelslot/internal/h1"
)

// GatewayServer is the server on the gateway's listener (for tests).
func GatewayServer(d *Daemon) any { return d.gwSrv }

// IdleTimeouts are the gateway's and the admin listener's idle timeouts.
func IdleTimeouts(d *Daemon) []time.Duration {
	var out []time.Duration
	for _, s := range []httpServer{d.gwSrv, d.adminSrv} {
		switch s := s.(type) {
		case *h1.Server:
			out = append(out, s.IdleTimeout)
		case *http.Server:
			out = append(out, s.IdleTimeout)
		}
	}
	return out
}
