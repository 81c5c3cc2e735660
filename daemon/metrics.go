package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/events"
	"github.com/modelslot/modelslot/rollout"
	"github.com/prometheus/client_golang/prometheus"
)

// controlMetrics are the control plane's Prometheus metrics (docs/METRICS.md):
// swaps and rollbacks counted from the event bus as they happen, and each
// app's latest rollout read from the store at scrape time.
type controlMetrics struct {
	d         *Daemon
	log       *slog.Logger
	swaps     *prometheus.CounterVec
	rollbacks *prometheus.CounterVec
	state     *prometheus.Desc
	phase     *prometheus.Desc
	step      *prometheus.Desc
}

var rolloutStates = []rollout.State{rollout.Running, rollout.Paused, rollout.RollingBack, rollout.Succeeded, rollout.Failed, rollout.RolledBack, rollout.Aborted}

// registerControlMetrics registers the metrics and counts the bus's swap
// and rollback events until the bus closes.
func registerControlMetrics(reg prometheus.Registerer, d *Daemon, b *bus, log *slog.Logger) {
	m := &controlMetrics{
		d:   d,
		log: log,
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelslot_swaps_total",
			Help: "Swaps that finished since the daemon started, by app and result (completed, failed); rollouts' swaps and swaps back included.",
		}, []string{"app", "result"}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelslot_rollout_rollbacks_total",
			Help: "Rollbacks that rollouts started since the daemon started, by app and the state they end in (rolled_back, aborted).",
		}, []string{"app", "final"}),
		state: prometheus.NewDesc("modelslot_rollout_state",
			"The app's latest rollout's state: 1 for its state, 0 for the others.", []string{"app", "state"}, nil),
		phase: prometheus.NewDesc("modelslot_rollout_phase",
			"The app's latest rollout's phase: its current step's kind (traffic, bake, rampUp, pause, swap, watch), rollback, or done; 1 for the phase it is in.", []string{"app", "phase"}, nil),
		step: prometheus.NewDesc("modelslot_rollout_step",
			"The app's latest rollout's current step, 1-based (the number of steps once done).", []string{"app"}, nil),
	}
	reg.MustRegister(m.swaps, m.rollbacks, m)
	ch := b.Bus.Subscribe(context.Background(), events.Filter{Types: []string{"swap.completed", "swap.failed", "rollout.rollback"}, Buffer: 1024})
	go m.count(ch)
}

// count ends when the bus closes the subscription.
func (m *controlMetrics) count(ch <-chan *modelslot.Event) {
	for e := range ch {
		switch e.Type {
		case "swap.completed":
			m.swaps.WithLabelValues(e.App, "completed").Inc()
		case "swap.failed":
			m.swaps.WithLabelValues(e.App, "failed").Inc()
		case "rollout.rollback":
			// The rollback's first event carries the Rollback record; the
			// later ones (swapped back, traffic reset) report its progress.
			var rb struct {
				Final rollout.State `json:"final"`
			}
			if json.Unmarshal(e.Data, &rb) == nil && rb.Final != "" {
				m.rollbacks.WithLabelValues(e.App, string(rb.Final)).Inc()
			}
		}
	}
}

func (m *controlMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.state
	ch <- m.phase
	ch <- m.step
}

func (m *controlMetrics) Collect(ch chan<- prometheus.Metric) {
	if m.d.Rollouts == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	apps, err := m.d.Store.Apps(ctx)
	if err != nil {
		m.log.Warn("metrics: list apps", "err", err)
		return
	}
	for _, app := range apps {
		rs, err := m.d.Rollouts.History(ctx, app.Name, 1)
		if err != nil {
			m.log.Warn("metrics: latest rollout", "app", app.Name, "err", err)
			continue
		}
		if len(rs) == 0 {
			continue
		}
		r := rs[0]
		for _, s := range rolloutStates {
			v := 0.0
			if r.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(m.state, prometheus.GaugeValue, v, app.Name, string(s))
		}
		phase, step := "done", len(r.Plan.Steps)
		switch {
		case r.State == rollout.RollingBack:
			phase = "rollback"
		case r.State.Active() && r.Step < len(r.Plan.Steps):
			phase, step = r.Plan.Steps[r.Step].Kind(), r.Step+1
		}
		ch <- prometheus.MustNewConstMetric(m.phase, prometheus.GaugeValue, 1, app.Name, phase)
		ch <- prometheus.MustNewConstMetric(m.step, prometheus.GaugeValue, float64(step), app.Name)
	}
}
