package daemon

// GatewayServer is the server on the gateway's listener (for tests).
func GatewayServer(d *Daemon) any { return d.gwSrv }
