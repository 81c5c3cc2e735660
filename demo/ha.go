package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/client"
	"github.com/modelslot/modelslot/internal/pgtest"
	"github.com/modelslot/modelslot/rollout"
	"github.com/modelslot/modelslot/sim"
)

// haPlan is the gated rollout of the HA demo: short, so that the takeover
// is the story.
const haPlan = `
name: ha-demo
warmup: {duration: 2s, requests: 20}
analysis: {alpha: 0.01, metrics: [errors, latency]}
steps:
  - traffic: 20
  - bake: {duration: 8s, max: 2m}
  - swap: {baselineTraffic: 20}
  - watch: {duration: 5s, max: 2m}
`

// replica is one `modelslot serve` process of the HA demo.
type replica struct {
	name, gateway, admin, dir string
	cmd                       *exec.Cmd
	exited                    chan struct{}
	c                         *client.Client
	load                      *traffic
}

// RunHA runs the loop on three replicas of `modelslot serve` (this binary)
// sharing a throwaway PostgreSQL cluster: a change through one replica is
// in force on the others, and a gated rollout survives its leader being
// killed (SIGKILL) mid-bake: another replica takes the controller lease
// and finishes it. It needs PostgreSQL's server binaries (initdb, pg_ctl).
func RunHA(ctx context.Context, o Options) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Rate <= 0 {
		o.Rate = 60
	}
	d := &demo{o: o, out: o.Out, start: time.Now()}
	defer d.cleanup()
	bin, err := pgtest.BinDir()
	if err != nil {
		return fmt.Errorf("demo --ha runs three replicas on a local PostgreSQL: %v (macOS: brew install postgresql)", err)
	}
	exe := o.Binary
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	if d.dir, err = os.MkdirTemp("", "modelslot-ha-demo-"); err != nil {
		return err
	}
	d.say("Starting a throwaway PostgreSQL cluster (%s)", bin)
	pg, err := pgtest.Start(bin)
	if err != nil {
		return err
	}
	d.stops = append(d.stops, pg.Stop)
	dsn := pg.URL("postgres")
	d.detail("store: %s", dsn)

	token := make([]byte, 16)
	rand.Read(token)
	tok := hex.EncodeToString(token)
	var rs []*replica
	d.stops = append(d.stops, func() {
		for _, r := range rs {
			r.stop()
		}
	})
	for i := range 3 {
		r := &replica{name: fmt.Sprintf("replica-%c", 'a'+i), dir: filepath.Join(d.dir, fmt.Sprintf("r%d", i+1))}
		if r.gateway, err = freeAddr(); err != nil {
			return err
		}
		if r.admin, err = freeAddr(); err != nil {
			return err
		}
		if err := r.start(exe, dsn, tok); err != nil {
			return err
		}
		rs = append(rs, r)
		d.say("%s serving: gateway http://%s, admin http://%s", r.name, r.gateway, r.admin)
	}

	for _, v := range []string{"v1", "v2"} {
		if err := d.startSim(ctx, v, sim.Config{}); err != nil {
			return err
		}
	}
	c := rs[0].c
	if _, err := c.Deploy(ctx, "default", "production", modelslot.DeployRequest{Deployment: modelslot.Deployment{URL: d.sims["v1"].url, Version: "v1"}}); err != nil {
		return err
	}
	if _, err := c.CreateSlot(ctx, "default", "staging"); err != nil {
		return err
	}
	if _, err := c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{URL: d.sims["v2"].url, Version: "v2"}}); err != nil {
		return err
	}
	d.say("Deployed v1 to production and v2 to staging through %s", rs[0].name)
	// The other replicas follow within moments (they health-check the new
	// backends first); traffic starts once every replica routes.
	for _, r := range rs {
		if err := waitFor(ctx, 30*time.Second, func() bool {
			st, err := r.c.Status(ctx, "default")
			if err != nil || len(st.Slots) < 2 {
				return false
			}
			for _, s := range st.Slots {
				if s.Slot.Deployment == nil || !s.Healthy {
					return false
				}
			}
			return true
		}); err != nil {
			return fmt.Errorf("%s did not pick up the deployments: %w", r.name, err)
		}
	}
	for _, r := range rs {
		r.load = newTraffic("http://"+r.gateway, o.Rate)
		r.load.start()
		d.stops = append(d.stops, r.load.stop)
	}
	d.say("Live traffic: %g requests/s through each replica's gateway", o.Rate)

	// A change through one replica is in force on the others.
	start := time.Now()
	if _, err := rs[1].c.SetTraffic(ctx, "default", []modelslot.TrafficRule{{Slot: "staging", Percent: 10}}, modelslot.TrafficOptions{}); err != nil {
		return err
	}
	for _, r := range []*replica{rs[0], rs[2]} {
		for {
			st, err := r.c.Status(ctx, "default")
			if err == nil && st.Routing.Percent("staging") == 10 {
				break
			}
			if time.Since(start) > 10*time.Second {
				return fmt.Errorf("%s did not follow the traffic change within 10s", r.name)
			}
			time.Sleep(5 * time.Millisecond)
		}
		d.say("traffic set staging=10 through %s: in force on %s after %v", rs[1].name, r.name, time.Since(start).Round(time.Millisecond))
	}
	if _, err := rs[1].c.ClearTraffic(ctx, "default"); err != nil {
		return err
	}

	// The gated rollout, and the leader's death.
	var leader *replica
	for _, r := range rs {
		var info struct {
			Self bool `json:"self"`
		}
		if err := r.c.Do(ctx, http.MethodGet, "/api/v1/controller", nil, &info); err == nil && info.Self {
			leader = r
		}
	}
	if leader == nil {
		return errors.New("no replica holds the controller lease")
	}
	d.say("%s holds the controller lease: rollouts run there", leader.name)
	ro, err := leader.c.StartRollout(ctx, "default", "staging", haPlan)
	if err != nil {
		return err
	}
	d.say("Started rollout %s of v2 (20%% -> bake -> swap -> watch)", ro.ID)
	if err := waitFor(ctx, 60*time.Second, func() bool {
		r, err := leader.c.Rollout(ctx, ro.ID)
		return err == nil && r.Step == 1 && r.Current != nil && r.Current.Phase != nil && r.Current.Phase.CandidateRequests > 20
	}); err != nil {
		return fmt.Errorf("the rollout did not reach its bake: %w", err)
	}
	leader.kill()
	killed := time.Now()
	d.say("SIGKILLed %s, the leader, in the middle of the bake", leader.name)
	var alive []*replica
	for _, r := range rs {
		if r != leader {
			alive = append(alive, r)
		}
	}
	var next *replica
	if err := waitFor(ctx, 60*time.Second, func() bool {
		for _, r := range alive {
			var info struct {
				Self bool `json:"self"`
			}
			if err := r.c.Do(ctx, http.MethodGet, "/api/v1/controller", nil, &info); err == nil && info.Self {
				next = r
				return true
			}
		}
		return false
	}); err != nil {
		return errors.New("no replica took the controller lease over")
	}
	d.say("%s took the controller lease over %v after the kill and resumes the rollout from its saved state", next.name, time.Since(killed).Round(100*time.Millisecond))
	var done *rollout.Rollout
	if err := waitFor(ctx, 120*time.Second, func() bool {
		r, err := next.c.Rollout(ctx, ro.ID)
		if err == nil && !r.State.Active() {
			done = r
			return true
		}
		return false
	}); err != nil {
		return fmt.Errorf("the rollout did not finish after the takeover: %w", err)
	}
	for _, v := range done.Verdicts {
		d.detail("step %d: %s", v.Step+1, v.Reason)
	}
	if done.State != rollout.Succeeded {
		return fmt.Errorf("rollout %s ended %s: %s", done.ID, done.State, done.Reason)
	}
	swaps := 0
	if all, err := next.c.Swaps(ctx, "default", 100); err == nil {
		for _, s := range all {
			if s.Actor == "rollout "+done.ID {
				swaps++
			}
		}
	}
	d.say("Rollout %s succeeded on %s: v2 is in production (%d swap, every step judged once)", done.ID, next.name, swaps)
	failed, sent := int64(0), int64(0)
	for _, r := range alive {
		failed += r.load.failed.Load()
		sent += r.load.sent.Load()
		if e, ok := r.load.lastErr.Load().(string); ok {
			d.detail("%s: last failure: %s", r.name, e)
		}
	}
	d.say("The surviving replicas served %d requests, %d failed", sent, failed)
	if swaps != 1 {
		return fmt.Errorf("the rollout made %d swaps, want 1", swaps)
	}
	return nil
}

func (r *replica) start(exe, dsn, token string) error {
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return err
	}
	// One admin token for every replica, so one client reaches them all.
	if err := os.WriteFile(filepath.Join(r.dir, api.TokenFile), []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf("listen: %s\nadmin: %s\ndata: %s\nstore: %s\nleaseTTL: 3s\nreplica: %s\nrolloutInterval: 500ms\n", r.gateway, r.admin, r.dir, dsn, r.name)
	file := filepath.Join(r.dir, "modelslot.yaml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(r.dir, "serve.log"))
	if err != nil {
		return err
	}
	r.cmd = exec.Command(exe, "serve", "--config", file, "--log-level", "warn")
	r.cmd.Stdout, r.cmd.Stderr = log, log
	if err := r.cmd.Start(); err != nil {
		return err
	}
	log.Close()
	r.exited = make(chan struct{})
	go func() { r.cmd.Wait(); close(r.exited) }()
	r.c = client.New(r.admin, token)
	err = waitFor(context.Background(), 60*time.Second, func() bool {
		select {
		case <-r.exited:
			return true
		default:
		}
		_, err := r.c.Status(context.Background(), "default")
		return err == nil
	})
	select {
	case <-r.exited:
		b, _ := os.ReadFile(filepath.Join(r.dir, "serve.log"))
		return fmt.Errorf("%s exited at start:\n%s", r.name, b)
	default:
	}
	return err
}

func (r *replica) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.exited
	}
}

func (r *replica) stop() {
	select {
	case <-r.exited:
		return
	default:
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(15 * time.Second):
		r.kill()
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
