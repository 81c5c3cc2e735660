package client

import (
	"context"
	"net/http"
	"strconv"

	"github.com/modelslot/modelslot/rollout"
)

// StartRollout starts a rollout of slot with the plan's YAML text.
func (c *Client) StartRollout(ctx context.Context, app, slot, plan string) (*rollout.Rollout, error) {
	var ro rollout.Rollout
	if err := c.Do(ctx, http.MethodPost, "/api/v1/apps/"+esc(app)+"/rollouts", map[string]string{"slot": slot, "plan": plan}, &ro); err != nil {
		return nil, err
	}
	return &ro, nil
}

// ActiveRollout returns the app's running rollout (a not_found error when
// there is none).
func (c *Client) ActiveRollout(ctx context.Context, app string) (*rollout.Rollout, error) {
	var ro rollout.Rollout
	if err := c.Do(ctx, http.MethodGet, "/api/v1/apps/"+esc(app)+"/rollouts/active", nil, &ro); err != nil {
		return nil, err
	}
	return &ro, nil
}

// Rollout returns one rollout by id.
func (c *Client) Rollout(ctx context.Context, id string) (*rollout.Rollout, error) {
	var ro rollout.Rollout
	if err := c.Do(ctx, http.MethodGet, "/api/v1/rollouts/"+esc(id), nil, &ro); err != nil {
		return nil, err
	}
	return &ro, nil
}

// Rollouts lists past and present rollouts, newest first.
func (c *Client) Rollouts(ctx context.Context, app string, limit int) ([]*rollout.Rollout, error) {
	var out struct {
		Rollouts []*rollout.Rollout `json:"rollouts"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/apps/"+esc(app)+"/rollouts?limit="+strconv.Itoa(limit), nil, &out)
	return out.Rollouts, err
}

// RolloutCommand sends pause, resume, promote or abort.
func (c *Client) RolloutCommand(ctx context.Context, app, op, reason string) (*rollout.Rollout, error) {
	var ro rollout.Rollout
	var body any
	if reason != "" {
		body = map[string]string{"reason": reason}
	}
	if err := c.Do(ctx, http.MethodPost, "/api/v1/apps/"+esc(app)+"/rollout/"+op, body, &ro); err != nil {
		return nil, err
	}
	return &ro, nil
}
