package daemon

import (
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
)

// listenAdmin opens the admin listener. An address beyond loopback needs
// TLS or an explicit insecureAdmin, and is logged as a warning either way:
// the admin token and the dashboard's session cross the network there. It
// reports whether the listener is on loopback only and whether it speaks
// TLS.
func listenAdmin(cfg *config.Config, log *slog.Logger) (ln net.Listener, loopback, useTLS bool, err error) {
	var cert tls.Certificate
	useTLS = cfg.AdminTLS.Cert != ""
	if useTLS {
		if cert, err = tls.LoadX509KeyPair(cfg.AdminTLS.Cert, cfg.AdminTLS.Key); err != nil {
			return nil, false, false, modelslot.Errorf(modelslot.EINVALID, "admin TLS: %v: give a PEM certificate and its key with --admin-tls-cert and --admin-tls-key (or adminTLS in the config)", err)
		}
	}
	if ln, err = listen(cfg.Admin, "admin API", "--admin", "admin"); err != nil {
		return nil, false, false, err
	}
	loopback = isLoopback(ln.Addr())
	if !loopback {
		if !useTLS && !cfg.InsecureAdmin {
			ln.Close()
			return nil, false, false, modelslot.Errorf(modelslot.EINVALID, "admin address %s is reachable beyond loopback: serve it over TLS with --admin-tls-cert FILE --admin-tls-key FILE (or adminTLS in the config), pass --insecure-admin to accept plain HTTP, or keep it on 127.0.0.1", cfg.Admin)
		}
		if useTLS {
			log.Warn("the admin API is reachable beyond loopback, over TLS: anyone with the admin token controls every slot", "addr", ln.Addr().String())
		} else {
			log.Warn("the admin API is reachable beyond loopback over plain HTTP (--insecure-admin): the admin token and dashboard sessions cross the network in clear text", "addr", ln.Addr().String())
		}
	}
	if useTLS {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	return ln, loopback, useTLS, nil
}

// isLoopback reports whether a listener's address is a loopback address
// (0.0.0.0 and :: are every address, so not).
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
