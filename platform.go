package modelslot

import (
	"context"
	"encoding/json"
	"time"
)

// Platform is where slots live: the local engine (this binary's gateway and
// process host) or Azure App Service. The rollout controller and the CLI
// speak to slots only through it.
type Platform interface {
	// App returns the app with its slots and routing.
	App(ctx context.Context, app string) (*App, error)
	// Status adds health, backends and the last swap.
	Status(ctx context.Context, app string) (*AppStatus, error)
	// CreateSlot adds an empty slot; DeleteSlot refuses production, and a
	// slot with traffic unless force is set.
	CreateSlot(ctx context.Context, app, slot string) (*Slot, error)
	DeleteSlot(ctx context.Context, app, slot string, force bool) error
	// Deploy puts d in the slot once it is healthy; if it never gets
	// healthy the old deployment keeps serving and the error says why.
	Deploy(ctx context.Context, app, slot string, d DeployRequest) (*Slot, error)
	// SetTraffic replaces every routing rule (SetWeight); it returns once
	// the new rules are in force for every new request (VerifyWeight).
	SetTraffic(ctx context.Context, app string, rules []TrafficRule, opts TrafficOptions) (Routing, error)
	// Swap runs a swap, preview or reset and returns its record.
	Swap(ctx context.Context, app string, req SwapRequest) (*SwapRecord, error)
	// Swaps lists the swap history, newest first.
	Swaps(ctx context.Context, app string, limit int) ([]*SwapRecord, error)
}

// DeployRequest is a deployment plus the slot-level settings that come with
// the deploy command.
type DeployRequest struct {
	Deployment Deployment `json:"deployment"`
	// StickySettings are merged into the slot's sticky settings.
	StickySettings map[string]string `json:"stickySettings,omitempty"`
	// Revision redeploys a past revision of this app instead of Deployment.
	Revision string `json:"revision,omitempty"`
	Actor    string `json:"actor,omitempty"`
}

// Event is one entry of the event log: a transition, a verdict, an
// operator's action.
type Event struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	App     string    `json:"app"`
	Rollout string    `json:"rollout,omitempty"`
	// Type is dotted: "slot.created", "deploy.completed", "traffic.set",
	// "swap.completed", "rollout.step", "rollout.verdict", ...
	Type    string          `json:"type"`
	Actor   string          `json:"actor,omitempty"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// EventFilter selects events; zero fields match everything.
type EventFilter struct {
	App     string
	Rollout string
	AfterID int64
	Limit   int
}

// RolloutRecord is the persisted state of one rollout. The rollout package
// owns the document's shape; the store keeps it whole and indexes the rest.
type RolloutRecord struct {
	ID        string          `json:"id"`
	App       string          `json:"app"`
	Slot      string          `json:"slot"`
	State     string          `json:"state"`
	Active    bool            `json:"active"`
	Doc       json.RawMessage `json:"doc"`
	CreatedAt time.Time       `json:"createdAt"`
	UpdatedAt time.Time       `json:"updatedAt"`
}

// Store keeps the daemon's state durably. The sqlite package (the embedded
// default) and the postgres package (replicas) implement it, and both pass
// the storetest package's contract tests.
type Store interface {
	// Apps returns every app, with slots and routing.
	Apps(ctx context.Context) ([]*App, error)
	// PutApp writes the whole app (slots, deployments, routing) atomically;
	// with a non-nil swap record it is written in the same transaction.
	// The write applies only if the stored app is still at
	// app.StoreVersion (0: the app must not exist yet); it then sets
	// app.StoreVersion to the new version. Otherwise it changes nothing and
	// returns an ECONFLICT error.
	PutApp(ctx context.Context, app *App, swap *SwapRecord) error
	DeleteApp(ctx context.Context, name string) error

	// AddSwap inserts a swap record and sets its ID; PutSwap updates it.
	AddSwap(ctx context.Context, s *SwapRecord) error
	PutSwap(ctx context.Context, s *SwapRecord) error
	Swaps(ctx context.Context, app string, limit int) ([]*SwapRecord, error)

	// AddDeployment records a deployment in the slot's history.
	AddDeployment(ctx context.Context, app, slot string, d *Deployment) error
	// Deployment finds a past revision of the app.
	Deployment(ctx context.Context, app, revision string) (*Deployment, error)
	Deployments(ctx context.Context, app, slot string, limit int) ([]*Deployment, error)

	PutRollout(ctx context.Context, r *RolloutRecord) error
	Rollout(ctx context.Context, id string) (*RolloutRecord, error)
	// Rollouts lists an app's rollouts, newest first ("" = every app).
	Rollouts(ctx context.Context, app string, activeOnly bool, limit int) ([]*RolloutRecord, error)

	AddEvent(ctx context.Context, e *Event) error
	Events(ctx context.Context, f EventFilter) ([]*Event, error)

	Close() error
}

// EventSink receives events. Publishing never blocks on slow consumers
// (webhooks are sent in the background) and never fails the caller's
// operation: a lost event is logged, not returned.
type EventSink interface {
	Publish(ctx context.Context, e *Event)
}

type fenceKey struct{}

// WithFence marks the store writes made with ctx as the rollout
// controller's, holding its lease with the given fencing token. A shared
// store (PostgreSQL) refuses such a write once another replica has taken
// the lease over (a newer token), so that a paused-then-revived old leader
// cannot act; a store with one daemon (SQLite) has no lease and ignores it.
func WithFence(ctx context.Context, token int64) context.Context {
	return context.WithValue(ctx, fenceKey{}, token)
}

// FenceOf returns the fencing token of ctx, if it has one.
func FenceOf(ctx context.Context) (int64, bool) {
	t, ok := ctx.Value(fenceKey{}).(int64)
	return t, ok
}
