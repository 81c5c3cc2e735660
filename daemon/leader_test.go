package daemon_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/internal/pgtest"
	"github.com/modelslot/modelslot/rollout"
	"github.com/modelslot/modelslot/sim"
)

// TestLeaderKilledMidRollout runs two `modelslot serve` processes on one
// PostgreSQL with load through both. Rollouts run on the replica holding
// the controller lease; the test SIGKILLs that replica at a random point
// of each rollout (during the first bake, right after the swap, or during
// the watch, after a random delay), restarts it as a follower, and checks
// that the other replica takes over and finishes the rollout exactly as an
// uninterrupted one ends: every step's verdict once, one swap, the
// candidate in production. MODELSLOT_HA_ROLLOUTS sets the number of
// rollouts (default 4; the HA acceptance run uses 20).
func TestLeaderKilledMidRollout(t *testing.T) {
	t.Parallel() // minutes of waiting on warm-ups and judges: alongside the other long rollouts
	dsn := pgtest.DSN(t)
	n := 4
	if v, err := strconv.Atoi(os.Getenv("MODELSLOT_HA_ROLLOUTS")); err == nil && v > 0 {
		n = v
	}
	extra := []string{"store: " + dsn, "leaseTTL: 2s"}
	ps := []*serveProc{newServeProc(t, extra...), newServeProc(t, extra...)}
	ps[0].start()
	ps[1].start()
	ctx := context.Background()
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 4, TTFT: 10 * time.Millisecond, Jitter: 0.8})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 4, TTFT: 10 * time.Millisecond, Jitter: 0.8})
	if _, err := ps[0].c.Deploy(ctx, "default", "production", modelslot.DeployRequest{Deployment: modelslot.Deployment{URL: v1, Version: "v1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ps[0].c.CreateSlot(ctx, "default", "staging"); err != nil {
		t.Fatal(err)
	}
	if _, err := ps[0].c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{URL: v2, Version: "v2"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		startLoad(t, "http://"+p.gateway, plainWorker(p.admin+"-a"), plainWorker(p.admin+"-b"))
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	points := []struct {
		name string
		cond func(*rollout.Rollout) bool
	}{
		{"first bake", judging(1, 1)},
		{"after the swap", func(r *rollout.Rollout) bool { return r.Swapped }},
		{"watch", judging(5, 1)},
	}
	for i := range n {
		// The rollout goes to whichever replica holds the lease; the
		// other answers with a conflict that names it.
		var leader, other *serveProc
		var ro *rollout.Rollout
		waitFor(t, "a replica to take the rollout", 30*time.Second, func() bool {
			for j, p := range ps {
				r, err := p.c.StartRollout(ctx, "default", "staging", killPlan)
				if err == nil {
					leader, other, ro = p, ps[1-j], r
					return true
				}
				if !strings.Contains(err.Error(), "controller lease") {
					t.Fatalf("start rollout %d on %s: %v", i+1, p.admin, err)
				}
			}
			return false
		})
		st, err := leader.c.Status(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		candidate := ""
		for _, s := range st.Slots {
			if s.Slot.Name == "staging" {
				candidate = s.Slot.Deployment.Revision
			}
		}
		pt := points[rng.IntN(len(points))]
		waitRollout(t, leader.c, ro.ID, pt.name, 60*time.Second, pt.cond)
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		killed := time.Now()
		leader.kill(pt.name)
		leader.start() // back as a follower
		done := waitRollout(t, other.c, ro.ID, "the other replica to finish the rollout", 120*time.Second, inState(rollout.Succeeded))
		var steps []string
		for _, v := range done.Verdicts {
			steps = append(steps, fmt.Sprintf("%d %s %s", v.Step, v.StepKind, v.Verdict))
		}
		if got, want := strings.Join(steps, ", "), "1 bake pass, 3 bake pass, 5 watch pass"; got != want {
			t.Fatalf("rollout %d (leader killed %s): verdicts %q, want %q\n%s", i+1, pt.name, got, want, done.Describe())
		}
		if sw := rolloutSwaps(t, other.c, ro.ID); len(sw) != 1 || sw[0].Status != modelslot.SwapCompleted {
			t.Fatalf("rollout %d (leader killed %s): swaps %+v, want exactly one completed", i+1, pt.name, sw)
		}
		st, err = other.c.Status(ctx, "default")
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Slots[0].Slot.Deployment.Revision; got != candidate {
			t.Fatalf("rollout %d: production holds %s, want the candidate %s", i+1, got, candidate)
		}
		t.Logf("rollout %d: leader killed %s; finished by the other replica %v after the kill", i+1, pt.name, time.Since(killed).Round(100*time.Millisecond))
	}
}
