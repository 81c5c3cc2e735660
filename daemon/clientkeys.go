package daemon

import (
	"context"
	"encoding/hex"
	"os"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/gateway"
)

// clientKeysPoll is how often the client keys file is checked for a change.
var clientKeysPoll = 2 * time.Second

// ReloadClientKeys reads the client keys of the config and of its keys
// file and publishes them to the gateway. On error the gateway keeps the
// keys it had.
func (d *Daemon) ReloadClientKeys() error {
	keys := d.cfg.Gateway.ClientKeys
	if f := d.cfg.Gateway.ClientKeysFile; f != "" {
		more, err := config.LoadClientKeys(f)
		if err != nil {
			return err
		}
		keys = append(keys[:len(keys):len(keys)], more...)
		if err := config.ValidateClientKeys(keys, "gateway.clientKeys and clientKeysFile"); err != nil {
			return err
		}
	}
	out := make([]gateway.ClientKey, len(keys))
	for i, k := range keys {
		out[i] = gateway.ClientKey{Name: k.Name, Apps: k.Apps, RequestsPerMinute: k.RequestsPerMinute, Burst: k.Burst}
		hex.Decode(out[i].Hash[:], []byte(k.SHA256)) // validated
	}
	d.Gateway.SetClientKeys(out)
	return nil
}

// watchClientKeys re-reads the client keys file whenever its size or
// modification time changes, until ctx ends.
func (d *Daemon) watchClientKeys(ctx context.Context, every time.Duration) {
	path := d.cfg.Gateway.ClientKeysFile
	stamp := func() (time.Time, int64) {
		fi, err := os.Stat(path)
		if err != nil {
			return time.Time{}, -1
		}
		return fi.ModTime(), fi.Size()
	}
	mt, size := stamp()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m, s := stamp()
		if m.Equal(mt) && s == size {
			continue
		}
		mt, size = m, s
		if err := d.ReloadClientKeys(); err != nil {
			d.log.Error("client keys not reloaded; the gateway keeps the previous keys", "err", modelslot.ErrorMessage(err))
			continue
		}
		d.log.Info("client keys reloaded", "file", path)
	}
}

// startClientKeys loads the client keys and, with a keys file, watches it.
func (d *Daemon) startClientKeys() error {
	if err := d.ReloadClientKeys(); err != nil {
		return err
	}
	if d.cfg.Gateway.ClientKeysFile == "" {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	every := clientKeysPoll
	go func() {
		defer close(done)
		d.watchClientKeys(ctx, every)
	}()
	d.closers = append(d.closers, func(context.Context) error {
		cancel()
		<-done
		return nil
	})
	return nil
}

// checkOpenGateway refuses a gateway reachable beyond loopback that would
// let anyone spend a deployment's credentials: with such a deployment, it
// needs client keys or an explicit openGateway.
func (d *Daemon) checkOpenGateway(ctx context.Context) error {
	if !d.openToAll() {
		return nil
	}
	// Declared deployments are deployed after the listeners serve: check
	// them here, before, as well as those in the store.
	for _, ac := range d.cfg.Apps {
		for _, sc := range ac.Slots {
			if dc := sc.Deployment; dc != nil && declaresCredentials(dc) {
				return errOpenGateway(d.cfg.Listen, ac.Name, sc.Name)
			}
		}
	}
	for _, name := range d.Engine.Apps() {
		a, err := d.Engine.App(ctx, name)
		if err != nil {
			return err
		}
		for _, s := range a.Slots {
			if gateway.CarriesCredentials(s.Deployment) {
				return errOpenGateway(d.cfg.Listen, name, s.Name)
			}
		}
	}
	d.log.Warn("the gateway is reachable beyond loopback without client keys: anyone who reaches it may use every app", "addr", d.gwLn.Addr().String())
	return nil
}

// checkOpenDeployment refuses a deployment that carries credentials when
// the gateway is open beyond loopback without client keys or openGateway:
// checkOpenGateway's rule, for deploys after the start.
func (d *Daemon) checkOpenDeployment(app, slot string, dep *modelslot.Deployment) error {
	if d.openToAll() && gateway.CarriesCredentials(dep) {
		return errOpenGateway(d.cfg.Listen, app, slot)
	}
	return nil
}

// openToAll reports whether anyone beyond this machine may use the
// gateway: it listens beyond loopback, without client keys, and was not
// told openGateway.
func (d *Daemon) openToAll() bool {
	return d.gwLn != nil && !isLoopback(d.gwLn.Addr()) && !d.Gateway.ClientKeysEnabled() && !d.cfg.Gateway.OpenGateway
}

// declaresCredentials reports whether a declared deployment will carry
// credentials once deployed (its secrets are not read yet).
func declaresCredentials(dc *config.Deployment) bool {
	d := modelslot.Deployment{Headers: dc.Headers}
	for k := range dc.SecretHeaders {
		d.SecretHeaders = append(d.SecretHeaders, k)
	}
	for k := range dc.SecretQuery {
		d.SecretQuery = append(d.SecretQuery, k)
	}
	return gateway.CarriesCredentials(&d)
}

func errOpenGateway(listen, app, slot string) error {
	return modelslot.Errorf(modelslot.EINVALID, "gateway address %s is reachable beyond loopback and slot %s of app %s carries provider credentials that anyone could spend: add client keys (gateway.clientKeys or --client-keys FILE), pass --open-gateway to accept it, or keep --listen on 127.0.0.1", listen, slot, app)
}
