package daemon

import (
	"context"
	"log/slog"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/config"
)

// bus stores events; it is replaced by the events package's Bus (webhooks,
// subscribers) when that lands.
type bus struct {
	store modelslot.Store
	log   *slog.Logger
}

func newBus(store modelslot.Store, log *slog.Logger, _ []config.Webhook) *bus {
	return &bus{store: store, log: log}
}

func (b *bus) Publish(ctx context.Context, e *modelslot.Event) {
	if err := b.store.AddEvent(context.WithoutCancel(ctx), e); err != nil {
		b.log.Error("store event", "err", err)
	}
}

func (b *bus) Subscribe(ctx context.Context, f modelslot.EventFilter) <-chan *modelslot.Event {
	ch := make(chan *modelslot.Event)
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

func (b *bus) Close(context.Context) error { return nil }

// controller is the rollout controller's wiring; filled in when the
// rollout package lands.
type controller struct{}

func newController(ctx context.Context, d *Daemon, b *bus, log *slog.Logger) (*controller, error) {
	return &controller{}, nil
}

func (c *controller) mount(s *api.Server)             {}
func (c *controller) start()                          {}
func (c *controller) close(ctx context.Context) error { return nil }

func mountDashboard(s *api.Server) {}
