package daemon

import "time"

// GatewayServer is the server on the gateway's listener (for tests).
func GatewayServer(d *Daemon) any { return d.gwSrv }

// SetClientKeysPoll changes how often the client keys file is checked.
func SetClientKeysPoll(d time.Duration) func() {
	old := clientKeysPoll
	clientKeysPoll = d
	return func() { clientKeysPoll = old }
}
