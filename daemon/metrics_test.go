package daemon_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/sim"
)

func scrape(t *testing.T, e *env) string {
	t.Helper()
	resp, err := http.Get(e.d.AdminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestControlPlaneMetrics: /metrics counts swaps and rollbacks and shows
// the latest rollout's state, phase and step, beside the gateway's
// per-slot gauges.
func TestControlPlaneMetrics(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")
	ctx := context.Background()
	if _, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the swap counter", 10*time.Second, func() bool {
		return strings.Contains(scrape(t, e), `modelslot_swaps_total{app="default",result="completed"} 1`)
	})

	_, err := e.c.StartRollout(ctx, "default", "staging", "name: metrics\nsteps:\n  - traffic: 15\n  - pause\n")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rollout to reach its pause step", 30*time.Second, func() bool {
		m := scrape(t, e)
		return strings.Contains(m, `modelslot_rollout_phase{app="default",phase="pause"} 1`) &&
			strings.Contains(m, `modelslot_rollout_state{app="default",state="paused"} 1`) &&
			strings.Contains(m, `modelslot_rollout_step{app="default"} 2`)
	})
	m := scrape(t, e)
	for _, want := range []string{
		`modelslot_rollout_state{app="default",state="running"} 0`,
		`modelslot_gateway_traffic_weight_ratio{app="default",slot="staging"} 0.15`,
		`modelslot_gateway_traffic_weight_ratio{app="default",slot="production"} 0.85`,
		`modelslot_gateway_in_flight_requests{app="default",slot="production"} 0`,
		`modelslot_gateway_routing_generation{app="default"} `,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if _, err := e.c.RolloutCommand(ctx, "default", "abort", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rollout's rollback to show", 30*time.Second, func() bool {
		m := scrape(t, e)
		return strings.Contains(m, `modelslot_rollout_rollbacks_total{app="default",final="aborted"} 1`) &&
			strings.Contains(m, `modelslot_rollout_state{app="default",state="aborted"} 1`) &&
			strings.Contains(m, `modelslot_rollout_phase{app="default",phase="done"} 1`)
	})
}
