package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelslot/modelslot"
)

// HealthPath is the gateway listener's health endpoint for load balancers:
// 200 when the daemon can route, 503 while it starts or drains. App names
// are DNS labels, so no /<app>/... path can take it, and no OpenAI route
// starts with an underscore.
const HealthPath = "/_modelslot/healthz"

// DefaultShutdownDrainTimeout is how long a shutdown lets in-flight
// requests and streams finish before it cuts them.
const DefaultShutdownDrainTimeout = 30 * time.Second

// lockFile in the data directory is held (flock) by the daemon that uses
// the directory; it holds that daemon's pid.
const lockFile = "modelslot.lock"

// prepareData creates the data directory, checks that it is writable and
// takes its lock, so that two daemons never share one store (or reap each
// other's model servers).
func prepareData(dir string) (unlock func(), err error) {
	fix := "choose a directory this user can write with --data (or `data:` in the config), or fix its permissions"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, modelslot.Errorf(modelslot.EINVALID, "cannot create the data directory %s: %s: %s", dir, osReason(err), fix)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, modelslot.Errorf(modelslot.EINVALID, "the data directory %s is not writable: %s: %s", dir, osReason(err), fix)
	}
	if err := lockExclusive(f); err != nil {
		pid := "unknown"
		if b, rerr := os.ReadFile(path); rerr == nil && strings.TrimSpace(string(b)) != "" {
			pid = strings.TrimSpace(string(b))
		}
		f.Close()
		if errors.Is(err, errLocked) {
			return nil, modelslot.Errorf(modelslot.ECONFLICT, "the data directory %s is in use by another modelslot daemon (pid %s): stop that daemon, or give this one its own --data", dir, pid)
		}
		return nil, modelslot.Errorf(modelslot.EINVALID, "cannot lock the data directory %s: %s: %s", dir, osReason(err), fix)
	}
	// A probe write: a read-only file system lets the lock be taken.
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, modelslot.Errorf(modelslot.EINVALID, "the data directory %s is not writable: %s: %s", dir, osReason(err), fix)
		}
	} else {
		f.Close()
		return nil, modelslot.Errorf(modelslot.EINVALID, "the data directory %s is not writable: %s: %s", dir, osReason(err), fix)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// osReason is the end of an os error ("permission denied"), without the
// operation and path the message already names.
func osReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// listen opens one of the daemon's listeners, with a message that says
// what to do when it cannot.
func listen(addr, what, flag, field string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, modelslot.Errorf(modelslot.EINVALID, "the %s address %s is already in use (by another modelslot daemon or another program): stop it, or choose another address with %s (or `%s:` in the config)", what, addr, flag, field)
	case errors.Is(err, syscall.EACCES):
		return nil, modelslot.Errorf(modelslot.EINVALID, "not allowed to listen on %s for the %s: ports below 1024 need privileges; choose another address with %s (or `%s:` in the config)", addr, what, flag, field)
	}
	var oe *net.OpError
	reason := err.Error()
	if errors.As(err, &oe) && oe.Err != nil {
		reason = oe.Err.Error()
	}
	return nil, modelslot.Errorf(modelslot.EINVALID, "cannot listen on %q for the %s: %s: give a host:port such as 127.0.0.1:8080 with %s (or `%s:` in the config)", addr, what, reason, flag, field)
}

// front is the gateway listener's handler: the health endpoint, then the
// gateway. It counts the requests in flight so that a shutdown knows when
// the drain is over and how many it cut.
type front struct {
	next     http.Handler
	inflight atomic.Int64
	draining atomic.Bool
	started  atomic.Bool
	// ready says whether the routing can serve (nil: it can).
	ready func() (ok, starting bool, why string)
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == HealthPath {
		f.health(w)
		return
	}
	f.inflight.Add(1)
	defer f.inflight.Add(-1)
	if f.draining.Load() {
		// Served (a load balancer may not have seen the health change
		// yet), but the client's next request goes elsewhere.
		w.Header().Set("Connection", "close")
	}
	f.next.ServeHTTP(w, r)
}

// Health is the body of the health endpoint's answer.
type Health struct {
	// Status is ready, starting, draining or unavailable.
	Status string `json:"status"`
	// Reason says why the daemon is not ready.
	Reason string `json:"reason,omitempty"`
}

func (f *front) health(w http.ResponseWriter) {
	h, code := Health{Status: "ready"}, http.StatusOK
	switch {
	case f.draining.Load():
		h, code = Health{Status: "draining", Reason: "the daemon is shutting down"}, http.StatusServiceUnavailable
	case !f.started.Load():
		h, code = Health{Status: "starting", Reason: "the daemon is applying its configuration"}, http.StatusServiceUnavailable
	case f.ready != nil:
		if ok, starting, why := f.ready(); !ok {
			h, code = Health{Status: "unavailable", Reason: why}, http.StatusServiceUnavailable
			if starting {
				h.Status = "starting"
			}
		}
	}
	b, _ := json.Marshal(h)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// Stopped reports a shutdown.
type Stopped struct {
	// Cut is how many gateway requests (streams, mostly) were still in
	// flight when the drain timeout ended them.
	Cut int
	// Drained is how long the drain took.
	Drained time.Duration
	// DrainTimeout is the limit it had.
	DrainTimeout time.Duration
}

func (s Stopped) String() string {
	if s.Cut == 0 {
		return fmt.Sprintf("modelslot stopped: every request in flight finished (drain took %s of %s)", s.Drained.Round(time.Millisecond), s.DrainTimeout)
	}
	what := "requests or streams were"
	if s.Cut == 1 {
		what = "request or stream was"
	}
	return fmt.Sprintf("modelslot stopped: %d %s still in flight after the drain timeout (%s) and cut; raise shutdown.drainTimeout to give them longer", s.Cut, what, s.DrainTimeout)
}

// Shutdown stops the daemon gracefully: the health endpoint answers 503 at
// once, requests and streams in flight get up to the configured drain
// timeout to finish (new ones are still served, with Connection: close,
// until the listener closes), the rest are cut; then the rollout
// controller, the model servers and the store stop. ctx bounds the steps
// after the drain.
func (d *Daemon) Shutdown(ctx context.Context) (Stopped, error) {
	st := Stopped{DrainTimeout: d.drainTimeout()}
	if d.front != nil && d.gwSrv != nil {
		start := time.Now()
		d.front.draining.Store(true)
		d.log.Info("draining: the health endpoint answers 503; waiting for requests in flight", "inflight", d.front.inflight.Load(), "drainTimeout", st.DrainTimeout)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.DrainTimeout)
		t := time.NewTicker(10 * time.Millisecond)
		for d.front.inflight.Load() > 0 && dctx.Err() == nil {
			select {
			case <-dctx.Done():
			case <-t.C:
			}
		}
		t.Stop()
		if err := d.gwSrv.Shutdown(dctx); err != nil {
			st.Cut = int(d.front.inflight.Load())
			d.gwSrv.Close()
		}
		cancel()
		st.Drained = time.Since(start)
		if st.Cut > 0 {
			d.log.Warn("drain timeout: requests in flight were cut", "cut", st.Cut, "drainTimeout", st.DrainTimeout)
		}
	}
	if d.adminSrv != nil {
		// The admin API's event streams end only when the client goes:
		// they get a short grace, then are closed.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := d.adminSrv.Shutdown(actx); err != nil {
			d.adminSrv.Close()
		}
		cancel()
	}
	d.gwSrv, d.adminSrv = nil, nil // done with: Close need not stop them again
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return st, d.Close(cctx)
}

func (d *Daemon) drainTimeout() time.Duration {
	if t := d.cfg.Shutdown.DrainTimeout.D(); t > 0 {
		return t
	}
	return DefaultShutdownDrainTimeout
}
