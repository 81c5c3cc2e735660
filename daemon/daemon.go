// Package daemon assembles a modelslot daemon: store, gateway, process host,
// local engine, event bus, rollout controller and admin API, on two
// listeners. `modelslot serve`, the demo and the end-to-end tests all start
// one through it.
package daemon

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/host"
	"github.com/modelslot/modelslot/internal/h1"
	"github.com/modelslot/modelslot/local"
	"github.com/modelslot/modelslot/postgres"
	"github.com/modelslot/modelslot/rollout"
	"github.com/modelslot/modelslot/sqlite"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Options start a daemon; Config may come from a file.
type Options struct {
	Config *config.Config
	Logger *slog.Logger
	// Getenv reads secrets named in the config (default os.Getenv).
	Getenv func(string) string
}

// httpServer is net/http's server or the gateway's own (internal/h1).
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// Daemon is a running modelslot daemon.
type Daemon struct {
	cfg   *config.Config
	log   *slog.Logger
	Store modelslot.Store
	// Replica names this daemon among those sharing a PostgreSQL store
	// (empty with SQLite): the "replica" label of its metrics.
	Replica  string
	Gateway  *gateway.Gateway
	Engine   *local.Engine
	Rollouts *rollout.Manager
	Token    string

	gwLn, adminLn   net.Listener
	gwSrv, adminSrv httpServer
	front           *front
	adminTLS        bool // the admin listener serves TLS
	adminLoopback   bool // only this machine reaches the admin listener
	closers         []func(context.Context) error
	wg              sync.WaitGroup
}

// Start opens the state and the listeners, serves the last routing at
// once while the slots' backends are restored in the background, applies
// the config's declarations and starts the rollout controller. Close or
// Shutdown (or cancelling Run's context) stops it. A start that fails stops
// everything it had started, model servers included, and returns an error
// that says what to do.
func Start(ctx context.Context, opts Options) (*Daemon, error) {
	cfg := opts.Config
	if cfg == nil {
		cfg = config.Default()
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	d := &Daemon{cfg: cfg, log: log}
	if err := d.start(ctx, getenv); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if cerr := d.Close(cctx); cerr != nil {
			log.Warn("stop after a failed start", "err", cerr)
		}
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start(ctx context.Context, getenv func(string) string) (err error) {
	cfg, log := d.cfg, d.log
	// Checked before anything starts; flags may have set it after the
	// file's validation.
	otlp, err := cfg.OTLP.Resolve(getenv)
	if err != nil {
		return err
	}
	unlock, err := prepareData(cfg.Data)
	if err != nil {
		return err
	}
	d.closers = append(d.closers, func(context.Context) error { unlock(); return nil })
	// Listeners first: a busy port is reported before any model server
	// starts.
	if d.gwLn, err = listen(cfg.Listen, "gateway", "--listen", "listen"); err != nil {
		return err
	}
	if d.adminLn, d.adminLoopback, d.adminTLS, err = listenAdmin(cfg, log); err != nil {
		return err
	}
	if d.Token, err = api.LoadOrCreateToken(cfg.Data); err != nil {
		return modelslot.Wrapf(err, modelslot.EINVALID, "the data directory %s is not usable: %v: fix its permissions or choose another with --data", cfg.Data, err)
	}
	if d.Store, err = openStore(ctx, cfg, log); err != nil {
		return err
	}
	d.closers = append([]func(context.Context) error{func(context.Context) error { return d.Store.Close() }}, d.closers...)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var gwReg prometheus.Registerer = reg
	var tap func(app, slot string, s modelslot.Sample)
	if pg, ok := d.Store.(*postgres.DB); ok {
		// A replica: its samples go to the store for the judge, and its
		// own counters carry its name.
		d.Replica = replicaName(cfg)
		gwReg = prometheus.WrapRegistererWith(prometheus.Labels{"replica": d.Replica}, reg)
		shipper := pg.NewShipper(d.Replica, log.With("component", "samples"))
		// Joined before the gateway serves: the judged window waits for
		// the replicas in the store's list, and a replica not in it yet
		// would serve requests whose samples could land behind the
		// judge's cursor, never counted. (An empty first shipment puts it
		// there.)
		if err := shipper.Flush(ctx); err != nil {
			return err
		}
		tap = shipper.Add
		sctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); shipper.Run(sctx) }()
		d.closers = append([]func(context.Context) error{func(ctx context.Context) error {
			cancel()
			<-done
			return shipper.Leave(ctx)
		}}, d.closers...)
	}
	d.Gateway = gateway.New(gateway.Config{
		Logger:          log.With("component", "gateway"),
		MaxRequestBytes: cfg.Gateway.MaxRequestBytes,
		MirrorMaxBytes:  cfg.Gateway.MirrorMaxBytes,
		CookieMaxAge:    cfg.Gateway.CookieMaxAge.D(),
		StdUpstream:     cfg.Gateway.StdTransport,
		Registerer:      gwReg,
		SampleTap:       tap,

		MaxResponseHeaderBytes: cfg.Gateway.MaxResponseHeaderBytes,
	})
	if err := d.startClientKeys(); err != nil {
		return err
	}
	hostLogs := filepath.Join(cfg.Data, "logs")
	if err := os.MkdirAll(hostLogs, 0o700); err != nil {
		return modelslot.Wrapf(err, modelslot.EINVALID, "the data directory %s is not usable: %v: fix its permissions or choose another with --data", cfg.Data, err)
	}
	bus := newBus(d.Store, log.With("component", "events"), cfg.Webhooks)
	d.closers = append([]func(context.Context) error{func(ctx context.Context) error {
		// Undelivered webhooks are logged and counted by the bus; they do
		// not make the stop a failure.
		if err := bus.Close(ctx); err != nil {
			log.Warn("stop", "err", err)
		}
		return nil
	}}, d.closers...)
	d.Engine = local.New(local.Config{
		Store:        d.Store,
		Gateway:      d.Gateway,
		Host:         host.New(log.With("component", "host"), hostLogs),
		Events:       bus,
		Logger:       log.With("component", "engine"),
		DrainTimeout: cfg.Gateway.DrainTimeout.D(),
		Shared:       cfg.Store != "",
		// A deployment with credentials deployed after the start (API,
		// CLI) meets the same rule as those checkOpenGateway sees.
		CheckDeployment: d.checkOpenDeployment,
	})
	// The engine's Close stops every model server it started, also when
	// Open or a later step fails.
	d.closers = append([]func(context.Context) error{d.Engine.Close}, d.closers...)
	if err := d.Engine.Open(ctx); err != nil {
		return err
	}
	if pg, ok := d.Store.(*postgres.DB); ok {
		stop := d.watchStore(pg, log.With("component", "replica"))
		d.closers = append([]func(context.Context) error{stop}, d.closers...)
	}

	ctrl, err := newController(ctx, d, bus, log)
	if err != nil {
		return err
	}
	d.closers = append([]func(context.Context) error{ctrl.close}, d.closers...)
	registerControlMetrics(reg, d, bus, log.With("component", "metrics"))
	if otlp.Endpoint != "" {
		stop, err := startOTLP(otlp, reg, d.Replica, log.With("component", "otlp"))
		if err != nil {
			return err
		}
		// First of the closers, which run after the listeners' drain:
		// the last export has the final counts, read while the store is
		// still open.
		d.closers = append([]func(context.Context) error{stop}, d.closers...)
	}
	srv := &api.Server{
		Engine: d.Engine, Meter: d.Gateway.Meter(), Store: d.Store, Events: bus,
		Token: d.Token, Sessions: api.NewSessions(), Logger: log.With("component", "api"), Gatherer: reg,
	}
	if srv.MetricsToken, err = api.LoadOrCreateMetricsToken(cfg.Data); err != nil {
		return err
	}
	if d.Replica != "" {
		srv.AllReplicas = d.metricsOfAll()
	}
	ctrl.mount(srv)
	mountDashboard(srv, d)

	if err := d.checkOpenGateway(ctx); err != nil {
		return err
	}
	// Metrics without a token only where only this machine can ask.
	srv.OpenMetrics = d.adminLoopback
	maxHeader := cfg.Gateway.MaxHeaderBytes
	if maxHeader == 0 {
		maxHeader = 1 << 20
	}
	readHeader := cfg.Gateway.ReadTimeout.D()
	if readHeader == 0 {
		readHeader = 30 * time.Second
	}
	idle := cfg.Gateway.IdleTimeout.D()
	if idle == 0 {
		idle = 2 * time.Minute
	}
	d.front = &front{next: d.Gateway, ready: d.Engine.Ready}
	if cfg.Gateway.StdServer {
		d.gwSrv = &http.Server{Handler: d.front, MaxHeaderBytes: maxHeader, ReadHeaderTimeout: readHeader,
			IdleTimeout: idle, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	} else {
		d.gwSrv = &h1.Server{Handler: d.front, MaxHeaderBytes: maxHeader, ReadHeaderTimeout: readHeader,
			IdleTimeout: idle, Log: log}
	}
	d.adminSrv = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: readHeader, IdleTimeout: idle,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	// Serve the last routing now: slots whose backends are not restored
	// yet get no traffic, and the health endpoint says "starting".
	for _, p := range []struct {
		s  httpServer
		ln net.Listener
	}{{d.gwSrv, d.gwLn}, {d.adminSrv, d.adminLn}} {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := p.s.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve", "addr", p.ln.Addr(), "err", err)
			}
		}()
	}
	if err := d.declare(ctx, getenv); err != nil {
		return err
	}
	ctrl.start()
	d.front.started.Store(true)
	log.Info("modelslot daemon started", "gateway", d.GatewayURL(), "admin", d.AdminURL(), "data", cfg.Data)
	return nil
}

// GatewayURL is the public OpenAI-compatible base address.
func (d *Daemon) GatewayURL() string { return "http://" + d.gwLn.Addr().String() }

// AdminURL is the admin API's address.
func (d *Daemon) AdminURL() string {
	if d.adminTLS {
		return "https://" + d.adminLn.Addr().String()
	}
	return "http://" + d.adminLn.Addr().String()
}

// DataDir is the state directory.
func (d *Daemon) DataDir() string { return d.cfg.Data }

// Run blocks until ctx ends, then shuts down gracefully (see Shutdown).
func (d *Daemon) Run(ctx context.Context) error {
	<-ctx.Done()
	st, err := d.Shutdown(context.Background())
	d.log.Info(st.String())
	return err
}

// Close stops the listeners (letting in-flight requests and streams
// finish within ctx), the controller, the engine and its processes, the
// event bus and the store. It does not drain first: see Shutdown.
func (d *Daemon) Close(ctx context.Context) error {
	var errs []error
	for _, s := range []httpServer{d.gwSrv, d.adminSrv} {
		if s != nil {
			if err := s.Shutdown(ctx); err != nil {
				s.Close()
			}
		}
	}
	// Listeners opened by a start that failed before serving.
	if d.gwSrv == nil && d.gwLn != nil {
		d.gwLn.Close()
	}
	if d.adminSrv == nil && d.adminLn != nil {
		d.adminLn.Close()
	}
	d.wg.Wait()
	if d.Gateway != nil {
		d.Gateway.Close()
	}
	for _, c := range d.closers {
		if err := c(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	d.closers = nil
	return errors.Join(errs...)
}

// declare applies the config file's apps, slots, deployments and routing.
// A declaration is applied when it is new or changed since the last start
// (its fingerprint is kept in declared.json in the data directory), so that
// a restart with the same file does not undo what happened at run time: a
// swap, a rollout, a deploy or a traffic change through the API.
func (d *Daemon) declare(ctx context.Context, getenv func(string) string) error {
	e := d.Engine
	applied := loadDeclared(d.cfg.Data)
	defer saveDeclared(d.cfg.Data, applied, d.log)
	changed := func(key string, v any) (string, bool) {
		b, _ := json.Marshal(v)
		sum := sha256.Sum256(b)
		fp := hex.EncodeToString(sum[:8])
		return fp, applied[key] != fp
	}
	for _, ac := range d.cfg.Apps {
		if _, err := e.App(ctx, ac.Name); modelslot.ErrorCode(err) == modelslot.ENOTFOUND {
			if _, err := e.CreateApp(ctx, ac.Name, ac.StickyKey, ac.MaxSlots); err != nil {
				return fmt.Errorf("config: apps %s: %w", ac.Name, err)
			}
		} else if err != nil {
			return err
		} else if err := e.ConfigureApp(ctx, ac.Name, ac.StickyKey, ac.MaxSlots); err != nil {
			return fmt.Errorf("config: apps %s: %w", ac.Name, err)
		}
		a, err := e.App(ctx, ac.Name)
		if err != nil {
			return err
		}
		for _, sc := range ac.Slots {
			if a.Slot(sc.Name) == nil {
				if _, err := e.CreateSlot(ctx, ac.Name, sc.Name); err != nil {
					return fmt.Errorf("config: apps %s slot %s: %w", ac.Name, sc.Name, err)
				}
			}
			if sc.Deployment == nil {
				continue
			}
			key := ac.Name + "/" + sc.Name
			fp, isNew := changed(key, sc)
			if !isNew {
				continue
			}
			dep, err := config.DeploymentOf(sc.Deployment, getenv)
			if err != nil {
				return err
			}
			if _, err := e.Deploy(ctx, ac.Name, sc.Name, modelslot.DeployRequest{Deployment: dep, StickySettings: sc.StickySettings, Actor: "config"}); err != nil {
				if modelslot.ErrorCode(err) != modelslot.EUNAVAILABLE {
					return fmt.Errorf("config: apps %s slot %s: %w", ac.Name, sc.Name, err)
				}
				// A model that does not come up must not keep the daemon
				// (and the other slots) down: report it, retry next start.
				d.log.Error("declared deployment is not healthy; the slot keeps what it had", "app", ac.Name, "slot", sc.Name, "err", modelslot.ErrorMessage(err))
				continue
			}
			applied[key] = fp
		}
		if ac.Traffic != nil {
			key := ac.Name + "/traffic"
			if fp, isNew := changed(key, ac.Traffic); isNew {
				var rules []modelslot.TrafficRule
				for slot, p := range ac.Traffic {
					rules = append(rules, modelslot.TrafficRule{Slot: slot, Percent: p})
				}
				a, _ := e.App(ctx, ac.Name)
				if !sameRules(a.Routing.Rules, rules) {
					if _, err := e.SetTraffic(ctx, ac.Name, rules, modelslot.TrafficOptions{Actor: "config"}); err != nil {
						return fmt.Errorf("config: apps %s traffic: %w", ac.Name, err)
					}
				}
				applied[key] = fp
			}
		}
		if ac.Mirror != nil {
			key := ac.Name + "/mirror"
			if fp, isNew := changed(key, ac.Mirror); isNew {
				for slot, p := range ac.Mirror {
					if err := e.SetMirror(ctx, ac.Name, &modelslot.MirrorRule{Slot: slot, Percent: p}, "config"); err != nil {
						return fmt.Errorf("config: apps %s mirror: %w", ac.Name, err)
					}
				}
				applied[key] = fp
			}
		}
	}
	return nil
}

const declaredFile = "declared.json"

func loadDeclared(dir string) map[string]string {
	m := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(dir, declaredFile)); err == nil {
		json.Unmarshal(b, &m)
	}
	return m
}

func saveDeclared(dir string, m map[string]string, log *slog.Logger) {
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, declaredFile), b, 0o600); err != nil {
		log.Warn("save declared.json", "err", err)
	}
}

func sameRules(have, want []modelslot.TrafficRule) bool {
	m := map[string]float64{}
	for _, r := range want {
		if r.Percent > 0 {
			m[r.Slot] = r.Percent
		}
	}
	if len(m) != len(have) {
		return false
	}
	for _, r := range have {
		if m[r.Slot] != r.Percent {
			return false
		}
	}
	return true
}

// openStore opens the state: SQLite in the data directory, or the
// PostgreSQL database of cfg.Store. A PostgreSQL that cannot be reached is
// waited for (replicas may start before their database), saying so every
// few seconds, until ctx ends.
func openStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (modelslot.Store, error) {
	if cfg.Store == "" {
		db, err := sqlite.Open(ctx, filepath.Join(cfg.Data, "modelslot.db"))
		if err != nil {
			return nil, err // not a nil *sqlite.DB in a non-nil interface
		}
		return db, nil
	}
	if !config.IsPostgres(cfg.Store) {
		return nil, modelslot.Errorf(modelslot.EINVALID, "store %q: use postgres://USER@HOST:PORT/DB, or no --store for SQLite in the data directory", cfg.Store)
	}
	wait := time.Second
	for {
		db, err := postgres.Open(ctx, cfg.Store)
		if err == nil {
			log.Info("state in PostgreSQL", "store", postgres.Redact(cfg.Store))
			return db, nil
		}
		if modelslot.ErrorCode(err) != modelslot.EUNAVAILABLE {
			return nil, err
		}
		log.Warn("waiting for the store", "store", postgres.Redact(cfg.Store), "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("gave up waiting for the store: %w", err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// replicaName is the config's replica name, or host-pid-random.
func replicaName(cfg *config.Config) string {
	if cfg.Replica != "" {
		return cfg.Replica
	}
	host, _ := os.Hostname()
	b := make([]byte, 2)
	rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// metricsOfAll is the metric source with every replica's requests: the
// shared store's samples for a replica, else the gateway's own meter.
func (d *Daemon) metricsOfAll() modelslot.MetricSource {
	if pg, ok := d.Store.(*postgres.DB); ok {
		return pg
	}
	return d.Gateway.Meter()
}
