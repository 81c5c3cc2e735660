// Package client is the Go client of modelslot's admin API, used by the CLI.
// Errors from the daemon come back as *modelslot.Error with their code.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
)

// Client talks to one daemon.
type Client struct {
	// BaseURL is the admin address, e.g. http://127.0.0.1:8081.
	BaseURL string
	Token   string
	// Actor is sent with every change, for the event log.
	Actor string
	HTTP  *http.Client
}

// New returns a client; server may omit the scheme.
func New(server, token string) *Client {
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	return &Client{BaseURL: strings.TrimSuffix(server, "/"), Token: token, HTTP: &http.Client{Transport: &http.Transport{Proxy: nil}}}
}

// Do sends a request with a JSON body (nil for none) and decodes the JSON
// answer into out (nil to discard).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.auth(req)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return decodeError(resp)
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func (c *Client) auth(req *http.Request) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.Actor != "" {
		req.Header.Set("X-Modelslot-Actor", c.Actor)
	}
}

func (c *Client) connError(err error) error {
	var ne *net.OpError
	if errors.As(err, &ne) || strings.Contains(err.Error(), "connection refused") {
		return modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "cannot reach the modelslot daemon at %s: is `modelslot serve` running? (set --server or MODELSLOT_SERVER)", c.BaseURL)
	}
	return modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "cannot reach the modelslot daemon at %s: %v", c.BaseURL, err)
}

func decodeError(resp *http.Response) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &body) == nil && body.Error.Message != "" {
		code := body.Error.Code
		if code == "" {
			code = modelslot.EINTERNAL
		}
		return &modelslot.Error{Code: code, Message: body.Error.Message}
	}
	return modelslot.Errorf(modelslot.EINTERNAL, "the daemon answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
}

func esc(s string) string { return url.PathEscape(s) }

// App implements modelslot.Platform.
func (c *Client) App(ctx context.Context, app string) (*modelslot.App, error) {
	st, err := c.Status(ctx, app)
	if err != nil {
		return nil, err
	}
	a := &modelslot.App{Name: st.App, Routing: st.Routing, Mirror: st.Mirror}
	for _, s := range st.Slots {
		a.Slots = append(a.Slots, s.Slot)
	}
	return a, nil
}

// Apps lists the daemon's apps.
func (c *Client) Apps(ctx context.Context) ([]string, error) {
	var out struct {
		Apps []string `json:"apps"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/apps", nil, &out)
	return out.Apps, err
}

// Status implements modelslot.Platform.
func (c *Client) Status(ctx context.Context, app string) (*modelslot.AppStatus, error) {
	var st modelslot.AppStatus
	if err := c.Do(ctx, http.MethodGet, "/api/v1/apps/"+esc(app), nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// CreateSlot implements modelslot.Platform.
func (c *Client) CreateSlot(ctx context.Context, app, slot string) (*modelslot.Slot, error) {
	var s modelslot.Slot
	err := c.Do(ctx, http.MethodPost, "/api/v1/apps/"+esc(app)+"/slots", map[string]string{"name": slot}, &s)
	return &s, err
}

// DeleteSlot implements modelslot.Platform.
func (c *Client) DeleteSlot(ctx context.Context, app, slot string, force bool) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/apps/"+esc(app)+"/slots/"+esc(slot)+"?force="+strconv.FormatBool(force), nil, nil)
}

// Deploy implements modelslot.Platform.
func (c *Client) Deploy(ctx context.Context, app, slot string, req modelslot.DeployRequest) (*modelslot.Slot, error) {
	var s modelslot.Slot
	err := c.Do(ctx, http.MethodPost, "/api/v1/apps/"+esc(app)+"/slots/"+esc(slot)+"/deploy", req, &s)
	return &s, err
}

// Deployments lists a slot's history.
func (c *Client) Deployments(ctx context.Context, app, slot string) ([]*modelslot.Deployment, error) {
	var out struct {
		Deployments []*modelslot.Deployment `json:"deployments"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/apps/"+esc(app)+"/slots/"+esc(slot)+"/deployments", nil, &out)
	return out.Deployments, err
}

// Traffic is the answer of the traffic endpoints.
type Traffic struct {
	Routing modelslot.Routing       `json:"routing"`
	Split   []modelslot.TrafficRule `json:"split"`
	Mirror  *modelslot.MirrorRule   `json:"mirror,omitempty"`
}

// Traffic returns the app's split.
func (c *Client) Traffic(ctx context.Context, app string) (*Traffic, error) {
	var t Traffic
	err := c.Do(ctx, http.MethodGet, "/api/v1/apps/"+esc(app)+"/traffic", nil, &t)
	return &t, err
}

// SetTraffic implements modelslot.Platform.
func (c *Client) SetTraffic(ctx context.Context, app string, rules []modelslot.TrafficRule, opts modelslot.TrafficOptions) (modelslot.Routing, error) {
	var t Traffic
	if rules == nil {
		rules = []modelslot.TrafficRule{}
	}
	err := c.Do(ctx, http.MethodPut, "/api/v1/apps/"+esc(app)+"/traffic", map[string]any{"rules": rules, "resetPins": opts.ResetPins}, &t)
	return t.Routing, err
}

// ClearTraffic sends all traffic to production and resets routing cookies.
func (c *Client) ClearTraffic(ctx context.Context, app string) (*Traffic, error) {
	var t Traffic
	err := c.Do(ctx, http.MethodDelete, "/api/v1/apps/"+esc(app)+"/traffic", nil, &t)
	return &t, err
}

// SetMirror mirrors a share of production's requests to a slot.
func (c *Client) SetMirror(ctx context.Context, app string, m modelslot.MirrorRule) (*Traffic, error) {
	var t Traffic
	err := c.Do(ctx, http.MethodPut, "/api/v1/apps/"+esc(app)+"/mirror", m, &t)
	return &t, err
}

// ClearMirror stops mirroring.
func (c *Client) ClearMirror(ctx context.Context, app string) (*Traffic, error) {
	var t Traffic
	err := c.Do(ctx, http.MethodDelete, "/api/v1/apps/"+esc(app)+"/mirror", nil, &t)
	return &t, err
}

// Swap implements modelslot.Platform.
func (c *Client) Swap(ctx context.Context, app string, req modelslot.SwapRequest) (*modelslot.SwapRecord, error) {
	var rec modelslot.SwapRecord
	if err := c.Do(ctx, http.MethodPost, "/api/v1/apps/"+esc(app)+"/swap", req, &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// Swaps implements modelslot.Platform.
func (c *Client) Swaps(ctx context.Context, app string, limit int) ([]*modelslot.SwapRecord, error) {
	var out struct {
		Swaps []*modelslot.SwapRecord `json:"swaps"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/apps/"+esc(app)+"/swaps?limit="+strconv.Itoa(limit), nil, &out)
	return out.Swaps, err
}

// Metrics returns the per-slot summaries of the last window.
func (c *Client) Metrics(ctx context.Context, app string, window time.Duration) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.Do(ctx, http.MethodGet, "/api/v1/apps/"+esc(app)+"/metrics?window="+window.String(), nil, &out)
	return out, err
}

// Events lists events after an id.
func (c *Client) Events(ctx context.Context, app string, after int64) ([]*modelslot.Event, error) {
	var out struct {
		Events []*modelslot.Event `json:"events"`
	}
	err := c.Do(ctx, http.MethodGet, "/api/v1/apps/"+esc(app)+"/events?after="+strconv.FormatInt(after, 10), nil, &out)
	return out.Events, err
}

// FollowEvents streams events until ctx ends, calling fn for each.
func (c *Client) FollowEvents(ctx context.Context, app, rollout string, after int64, fn func(*modelslot.Event)) error {
	q := url.Values{"follow": {"true"}, "after": {strconv.FormatInt(after, 10)}}
	if rollout != "" {
		q.Set("rollout", rollout)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+"/api/v1/apps/"+esc(app)+"/events?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	c.auth(req)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return decodeError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var e modelslot.Event
			if json.Unmarshal([]byte(data), &e) == nil {
				fn(&e)
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}

var _ modelslot.Platform = (*Client)(nil)
