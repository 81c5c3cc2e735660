package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/events"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/postgres"
	"github.com/modelslot/modelslot/promql"
	"github.com/modelslot/modelslot/rollout"
)

// bus adapts the events package's Bus to the API's subscriber interface.
type bus struct{ *events.Bus }

func newBus(store modelslot.Store, log *slog.Logger, hooks []config.Webhook) *bus {
	var whs []events.Webhook
	for _, h := range hooks {
		whs = append(whs, events.Webhook{URL: h.URL, Types: h.Types, Secret: h.Secret})
	}
	return &bus{events.New(store, log, whs)}
}

func (b *bus) Subscribe(ctx context.Context, f modelslot.EventFilter) <-chan *modelslot.Event {
	return b.Bus.Subscribe(ctx, events.Filter{App: f.App, Rollout: f.Rollout})
}

// controller runs the rollout manager for the daemon's lifetime.
type controller struct {
	m      *rollout.Manager
	gw     *gateway.Gateway
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// On a shared store: the daemon, and whether this replica holds the
	// controller's lease (see leader.go).
	d      *Daemon
	shared *postgres.DB
	lease  *postgres.Lease
	leader atomic.Bool
	bus    *bus
}

// metricSource builds the rollout gates' metric source from the config.
func metricSource(d *Daemon) (modelslot.MetricSource, error) {
	mc := d.cfg.Metrics
	if mc.Source != "prometheus" {
		if pg, ok := d.Store.(*postgres.DB); ok {
			return pg, nil // every replica's samples
		}
		return d.Gateway.Meter(), nil
	}
	queries := promql.VLLMQueries()
	if mc.Prometheus.Preset == "otel" {
		queries = promql.OTelQueries()
	}
	for k, v := range mc.Prometheus.Queries {
		queries[k] = v
	}
	src, err := promql.New(promql.Config{URL: mc.Prometheus.URL, Queries: queries, Step: mc.Prometheus.Step.D(), Lag: mc.Prometheus.Lag.D()})
	if err != nil {
		return nil, fmt.Errorf("config: metrics.prometheus: %w", err)
	}
	return src, nil
}

func newController(ctx context.Context, d *Daemon, b *bus, log *slog.Logger) (*controller, error) {
	metrics, err := metricSource(d)
	if err != nil {
		return nil, err
	}
	c := &controller{gw: d.Gateway, log: log, d: d, bus: b}
	if pg, ok := d.Store.(*postgres.DB); ok {
		c.shared = pg
		// Webhooks go out once, from the replica holding the lease
		// (relayWebhooks), whichever replica published the event.
		b.Relay()
		b.SetReplica(d.Replica)
	}
	m, err := rollout.NewManager(rollout.ManagerConfig{
		Leader:   c.leaderCheck(),
		Platform: d.Engine,
		Metrics:  withShadow(metrics, d.Gateway),
		Store:    d.Store,
		Events:   b,
		Logger:   log.With("component", "rollout"),
		Interval: d.cfg.RolloutInterval.D(),
		// The loadtest and eval gates send requests through the gateway.
		GatewayURL: d.GatewayURL,
		// ... marked as the daemon's own, so that they stay out of the
		// meters the analysis reads.
		GatewayHeaders: http.Header{gateway.HeaderSynthetic: {d.Gateway.SyntheticKey()}},
	})
	if err != nil {
		return nil, err
	}
	d.Rollouts = m
	c.m = m
	return c, nil
}

func (c *controller) mount(s *api.Server) {
	mountShadow(s, c.gw)
	s.Guard = c.m
	extra := s.Extra
	s.Extra = func(mux *http.ServeMux) {
		if extra != nil {
			extra(mux)
		}
		s.MountRollouts(mux, c.m)
		mux.HandleFunc("GET /api/v1/controller", c.serveLeader)
	}
}

func (c *controller) start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(1)
	if c.shared != nil {
		go func() {
			defer c.wg.Done()
			c.lead(ctx)
		}()
		return
	}
	go func() {
		defer c.wg.Done()
		if err := c.m.Run(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("rollout controller stopped", "err", err)
		}
	}()
}

func (c *controller) close(ctx context.Context) error {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	return c.m.Close()
}
