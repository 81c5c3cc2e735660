package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/postgres"
)

// DefaultLeaseTTL is the controller lease's default time to live.
const DefaultLeaseTTL = 15 * time.Second

// leaderCheck returns the rollout manager's Leader hook: nil with one
// daemon; on a shared store, an error naming the replica that runs the
// rollouts when this one does not.
func (c *controller) leaderCheck() func(context.Context) error {
	if c.shared == nil {
		return nil
	}
	return func(ctx context.Context) error {
		if c.leader.Load() {
			return nil
		}
		holder := "none yet (a replica takes the lease within its TTL)"
		if c.lease != nil {
			if h, _, err := c.lease.Holder(ctx); err != nil {
				return err
			} else if h != "" {
				holder = h
			}
		}
		return modelslot.Errorf(modelslot.ECONFLICT, "rollouts run on the replica holding the controller lease: %s; send rollout commands to its admin API (--server)", holder)
	}
}

// lead runs the rollouts while this replica holds the controller's lease
// in PostgreSQL: it tries to take the lease, renews it every third of its
// TTL, runs the rollout manager with the lease's fencing token on every
// write (a write after the lease moved on is refused by the store), and
// stops the manager as soon as it cannot be sure it still holds the lease.
// Another replica then resumes the rollouts from their persisted state.
func (c *controller) lead(ctx context.Context) {
	ttl := c.d.cfg.LeaseTTL.D()
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	host, _ := os.Hostname()
	holder := fmt.Sprintf("%s (host %s, pid %d, %s)", c.d.AdminURL(), host, os.Getpid(), hex.EncodeToString(suffix))
	c.lease = c.shared.Lease(postgres.ControllerLease, holder, ttl)

	var token int64
	var held time.Time // when the lease was last taken or renewed
	var stopRun func()
	var running chan struct{} // closed when the manager's Run returns
	run := func(t int64) {
		rctx, cancel := context.WithCancel(modelslot.WithFence(ctx, t))
		done, relayed := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			if err := c.m.Run(rctx); err != nil && rctx.Err() == nil {
				c.log.Error("rollout controller stopped; restarting it", "err", err)
			}
		}()
		go func() {
			defer close(relayed)
			c.relayWebhooks(rctx)
		}()
		running = done
		stopRun = func() { cancel(); <-done; <-relayed }
		c.leader.Store(true)
	}
	stop := func(why string) {
		if stopRun != nil {
			c.log.Warn("stopping the rollout controller", "why", why)
			c.leader.Store(false)
			stopRun()
			stopRun = nil
		}
		token = 0
	}
	defer func() {
		if stopRun != nil {
			t := token
			stop("shutting down")
			rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c.lease.Release(rctx, t)
			cancel()
		}
	}()
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		attempt := time.Now()
		t, ok, err := c.lease.Acquire(ctx, token)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// The store cannot be reached: the lease may lapse without our
			// knowing. Stop acting before it could have.
			if stopRun != nil && time.Since(held) > ttl*2/3 {
				stop("the store is unreachable, so the controller lease cannot be renewed: " + err.Error())
			}
		case !ok:
			stop("another replica holds the controller lease")
		case t != token:
			stop("a new lease term")
			token, held = t, attempt
			c.log.Info("this replica now runs the rollouts (controller lease taken)", "token", t, "ttl", ttl)
			run(t)
		default:
			held = attempt
			select {
			case <-running: // Run failed (the store was down when it loaded)
				stopRun()
				run(token)
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// webhookRelayInterval is how often the leader looks for new events to
// send to the webhooks.
var webhookRelayInterval = 500 * time.Millisecond

// relayWebhooks sends the webhooks of every replica's events while this
// replica holds the controller's lease (ctx carries its fencing token and
// ends with the lease). Events commit in id order; the last one sent is
// the store's webhook cursor. Each batch is claimed by moving the cursor
// under the fencing token before it is queued, so an event's webhooks go
// out once, from one replica: a replica that lost the lease can claim
// nothing more. As with one daemon, webhooks queued in memory by a replica
// that dies are lost with it.
func (c *controller) relayWebhooks(ctx context.Context) {
	if !c.bus.HasWebhooks() {
		return
	}
	tick := time.NewTicker(webhookRelayInterval)
	defer tick.Stop()
	cursor := int64(-1) // not read yet
	for {
		if err := c.relayOnce(ctx, &cursor); err != nil && ctx.Err() == nil {
			c.log.Warn("webhooks: could not read or claim events; trying again", "err", err)
			cursor = -1
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// relayOnce claims and queues the events after *cursor.
func (c *controller) relayOnce(ctx context.Context, cursor *int64) error {
	for {
		if *cursor < 0 {
			v, err := c.shared.WebhookCursor(ctx)
			if err != nil {
				return err
			}
			*cursor = v
		}
		evs, err := c.shared.Events(ctx, modelslot.EventFilter{AfterID: *cursor, Limit: 500})
		if err != nil || len(evs) == 0 {
			return err
		}
		last := evs[len(evs)-1].ID
		claimed, err := c.shared.ClaimWebhooks(ctx, *cursor, last)
		if err != nil {
			return err
		}
		if !claimed {
			*cursor = -1 // moved by another term: read it again
			continue
		}
		for _, e := range evs {
			c.bus.Deliver(e)
		}
		*cursor = last
		if len(evs) < 500 {
			return nil
		}
	}
}

// serveLeader answers GET /api/v1/controller: which replica runs the
// rollouts ("leader", with its lease's fencing token) and whether it is
// this one. With one daemon (SQLite) it is always this one.
func (c *controller) serveLeader(w http.ResponseWriter, r *http.Request) {
	if c.shared == nil || c.lease == nil {
		api.WriteJSON(w, map[string]any{"self": true, "shared": c.shared != nil})
		return
	}
	holder, token, err := c.lease.Holder(r.Context())
	if err != nil {
		api.WriteError(w, r, err)
		return
	}
	api.WriteJSON(w, map[string]any{"self": c.leader.Load(), "shared": true, "leader": holder, "token": token, "replica": c.d.Replica})
}
