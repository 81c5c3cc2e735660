package modelslot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Production is the slot that always exists. Routing calls it "self", as
// Azure does.
const (
	Production = "production"
	Self       = "self"
)

// DefaultMaxSlots is the number of slots an app may have (production
// included), as on Azure's Standard tier.
const DefaultMaxSlots = 5

// App is one public model endpoint with its slots and routing.
type App struct {
	Name string `json:"name"`
	// MaxSlots bounds the number of slots, production included.
	MaxSlots int `json:"maxSlots"`
	// StickyKey names what pins a user to a slot: "header:X-Session-Id"
	// hashes that header; "user" hashes the OpenAI "user" field of the body.
	// Empty: no stickiness beyond the routing cookie.
	StickyKey string  `json:"stickyKey,omitempty"`
	Routing   Routing `json:"routing"`
	// Mirror copies a share of production's requests to a slot, in the
	// background (shadow traffic); nil when off.
	Mirror *MirrorRule `json:"mirror,omitempty"`
	// Slots in creation order; production first.
	Slots     []*Slot   `json:"slots"`
	CreatedAt time.Time `json:"createdAt"`
	// StoreVersion counts the app's saved changes. A store writes an app
	// only over the version it was read at (optimistic concurrency) and
	// then increments it, so two writers (two replicas on one PostgreSQL)
	// never lose each other's change: the later one gets ECONFLICT.
	StoreVersion int64 `json:"storeVersion,omitempty"`
}

// Slot returns the named slot ("self" means production) or nil.
func (a *App) Slot(name string) *Slot {
	if name == Self {
		name = Production
	}
	for _, s := range a.Slots {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// SlotNames lists the app's slot names in order.
func (a *App) SlotNames() []string {
	names := make([]string, len(a.Slots))
	for i, s := range a.Slots {
		names[i] = s.Name
	}
	return names
}

// Clone returns a deep copy, so that a mutation can be prepared, persisted
// and only then published.
func (a *App) Clone() *App {
	b, err := json.Marshal(a)
	if err != nil {
		panic(err) // every field is plain data
	}
	var c App
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return &c
}

// Slot is a named place in an app that serves one deployment.
type Slot struct {
	Name       string      `json:"name"`
	Deployment *Deployment `json:"deployment,omitempty"`
	// StickySettings stay with the slot across swaps ("deployment slot
	// settings" on Azure); a managed process gets them on top of its
	// deployment's settings.
	StickySettings map[string]string `json:"stickySettings,omitempty"`
	// PreparedForSwap is set while a swap preview involving this slot is
	// pending: it names the other slot. Changes are refused until the swap
	// completes or is reset.
	PreparedForSwap string    `json:"preparedForSwap,omitempty"`
	CreatedAt       time.Time `json:"createdAt"`
}

// Warmup says how a slot's deployment is judged ready before it takes
// traffic, both at deploy time and in a swap.
type Warmup struct {
	Path     string   `json:"path,omitempty"`     // default /health
	Statuses []int    `json:"statuses,omitempty"` // default: any 2xx
	Timeout  Duration `json:"timeout,omitempty"`  // default 5m: models load slowly
	Retries  int      `json:"retries,omitempty"`  // swap warm-up pings after the first healthy answer; default 3
}

// Deployment is what runs in a slot: one versioned unit of backend, model
// id, prompt, sampling settings and configuration.
type Deployment struct {
	// Revision is derived from the content (see ComputeRevision); it is
	// immutable and identifies the deployment in metrics and history.
	Revision string `json:"revision"`
	// Version is the operator's label, e.g. "v2" or "llama-3.1-ft-2026-11".
	Version string `json:"version,omitempty"`
	// Exactly one of URL and Command is set.
	URL     string `json:"url,omitempty"`
	Command string `json:"command,omitempty"`
	// Settings travel with the deployment in a swap (environment of a
	// managed process).
	Settings map[string]string `json:"settings,omitempty"`
	Warmup   Warmup            `json:"warmup"`

	// Model is the backend's own model id; the gateway rewrites the request's
	// model field to it. Empty: the request is forwarded as it is.
	Model string `json:"model,omitempty"`
	// SystemPrompt is added as the first system message (SystemPromptMode
	// "prepend", the default) or replaces the client's system messages
	// ("replace").
	SystemPrompt     string `json:"systemPrompt,omitempty"`
	SystemPromptMode string `json:"systemPromptMode,omitempty"`
	// Defaults apply when the request does not set the parameter; Overrides
	// always apply.
	Defaults  map[string]any `json:"defaults,omitempty"`
	Overrides map[string]any `json:"overrides,omitempty"`
	// Headers and Query are added to every upstream request (for hosted
	// providers: Authorization, api-key, api-version). Values of the
	// headers listed in SecretHeaders and of the query parameters listed in
	// SecretQuery (some providers take their key as ?key=...) are never
	// shown.
	Headers       map[string]string `json:"headers,omitempty"`
	SecretHeaders []string          `json:"secretHeaders,omitempty"`
	Query         map[string]string `json:"query,omitempty"`
	SecretQuery   []string          `json:"secretQuery,omitempty"`

	DeployedAt time.Time `json:"deployedAt"`
}

// RedactedValue is what a secret value is shown as.
const RedactedValue = "[redacted]"

// Redacted returns a copy with the values of secret headers and secret
// query parameters replaced, for every output that leaves the daemon (API,
// CLI, events, logs).
func (d *Deployment) Redacted() *Deployment {
	if d == nil {
		return nil
	}
	c := *d
	if len(d.Headers) > 0 {
		c.Headers = make(map[string]string, len(d.Headers))
		for k, v := range d.Headers {
			if d.IsSecretHeader(k) {
				v = RedactedValue
			}
			c.Headers[k] = v
		}
	}
	if len(d.Query) > 0 {
		c.Query = make(map[string]string, len(d.Query))
		for k, v := range d.Query {
			if d.IsSecretQuery(k) {
				v = RedactedValue
			}
			c.Query[k] = v
		}
	}
	return &c
}

// IsSecretQuery reports whether the query parameter's value must never be
// shown. Query names are case-sensitive, unlike header names.
func (d *Deployment) IsSecretQuery(name string) bool {
	return slices.Contains(d.SecretQuery, name)
}

// HasSecrets reports whether the deployment carries a secret: a provider
// key that anyone who can reach the gateway could spend.
func (d *Deployment) HasSecrets() bool {
	return d != nil && (len(d.SecretHeaders) > 0 || len(d.SecretQuery) > 0)
}

// IsSecretHeader reports whether the header's value must never be shown.
func (d *Deployment) IsSecretHeader(name string) bool {
	for _, s := range d.SecretHeaders {
		if strings.EqualFold(s, name) {
			return true
		}
	}
	return false
}

// HasRewrites reports whether requests must be parsed and rewritten; when
// false, the gateway takes the fast path and never reads the body.
func (d *Deployment) HasRewrites() bool {
	return d.Model != "" || d.SystemPrompt != "" || len(d.Defaults) > 0 || len(d.Overrides) > 0
}

// ComputeRevision derives the immutable revision id from the deployment's
// content. Secret header values are included only through their hash, so
// rotating a key is a new revision without the key being recoverable.
func (d *Deployment) ComputeRevision() string {
	type content struct {
		Version, URL, Command, Model, SystemPrompt, SystemPromptMode string
		Settings, Headers, Query                                     map[string]string
		Defaults, Overrides                                          map[string]any
		Warmup                                                       Warmup
	}
	c := content{
		Version: d.Version, URL: d.URL, Command: d.Command, Model: d.Model,
		SystemPrompt: d.SystemPrompt, SystemPromptMode: d.SystemPromptMode,
		Settings: d.Settings, Query: d.Query, Defaults: d.Defaults, Overrides: d.Overrides,
		Warmup: d.Warmup,
	}
	secret := func(v string) string {
		sum := sha256.Sum256([]byte(v))
		return "secret:" + hex.EncodeToString(sum[:8])
	}
	if len(d.Headers) > 0 {
		c.Headers = make(map[string]string, len(d.Headers))
		for k, v := range d.Headers {
			if d.IsSecretHeader(k) {
				v = secret(v)
			}
			c.Headers[strings.ToLower(k)] = v
		}
	}
	if len(d.SecretQuery) > 0 {
		c.Query = make(map[string]string, len(d.Query))
		for k, v := range d.Query {
			if d.IsSecretQuery(k) {
				v = secret(v)
			}
			c.Query[k] = v
		}
	}
	// encoding/json sorts map keys, so the encoding is canonical.
	b, _ := json.Marshal(c)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// Label is what the x-modelslot-version header shows: "v2+3f2a9c01d2e4".
func (d *Deployment) Label() string {
	if d == nil {
		return ""
	}
	if d.Version == "" {
		return d.Revision
	}
	return d.Version + "+" + d.Revision
}

// Routing is an app's traffic split.
type Routing struct {
	// Rules give non-production slots a share of traffic; production gets
	// the rest. Sorted by slot name so that sticky buckets are stable.
	Rules []TrafficRule `json:"rules"`
	// Generation is stamped into routing cookies; bumping it (a swap, a
	// rollback, "traffic clear") invalidates every pinned user at once.
	Generation int64 `json:"generation"`
}

// Percent returns the share of the named slot; production's is the rest.
func (r Routing) Percent(slot string) float64 {
	if slot == Production || slot == Self {
		total := 0.0
		for _, rule := range r.Rules {
			total += rule.Percent
		}
		return 100 - total
	}
	for _, rule := range r.Rules {
		if rule.Slot == slot {
			return rule.Percent
		}
	}
	return 0
}

// TrafficRule sends Percent of the app's traffic to Slot.
type TrafficRule struct {
	Slot    string  `json:"slot"`
	Percent float64 `json:"percent"`
}

// MirrorRule mirrors Percent of production's requests to Slot.
type MirrorRule struct {
	Slot    string  `json:"slot"`
	Percent float64 `json:"percent"`
}

// TrafficOptions modify SetTraffic.
type TrafficOptions struct {
	// ResetPins invalidates every routing cookie, so that users pinned to a
	// slot by a cookie follow the new rules too (a rollback must reach them).
	ResetPins bool `json:"resetPins,omitempty"`
	// Actor is recorded in the event ("cli", "rollout r-12", "dashboard:alice").
	Actor string `json:"actor,omitempty"`
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateName checks that name is a DNS label, as slot and app names must be.
func ValidateName(kind, name string) error {
	if !dnsLabel.MatchString(name) {
		return Errorf(EINVALID, "%s name %q is not valid: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit", kind, name)
	}
	if kind == "slot" && name == Self {
		return Errorf(EINVALID, "slot name %q is reserved: it means production in routing", name)
	}
	return nil
}

// NormalizeRules validates rules against the app's slots and returns them
// sorted by slot name, without zero entries. Production cannot have a rule:
// it takes the rest.
func NormalizeRules(app *App, rules []TrafficRule) ([]TrafficRule, error) {
	seen := map[string]bool{}
	total := 0.0
	out := make([]TrafficRule, 0, len(rules))
	for _, r := range rules {
		if r.Slot == Production || r.Slot == Self {
			return nil, Errorf(EINVALID, "traffic: production cannot be given a share: it receives whatever the other slots leave (100 minus their sum)")
		}
		s := app.Slot(r.Slot)
		if s == nil {
			return nil, Errorf(ENOTFOUND, "traffic: app %q has no slot %q (slots: %s)", app.Name, r.Slot, strings.Join(app.SlotNames(), ", "))
		}
		if seen[r.Slot] {
			return nil, Errorf(EINVALID, "traffic: slot %q is listed twice", r.Slot)
		}
		seen[r.Slot] = true
		if r.Percent < 0 || r.Percent > 100 || r.Percent != r.Percent {
			return nil, Errorf(EINVALID, "traffic: %s=%g is out of range: a share is a percentage from 0 to 100", r.Slot, r.Percent)
		}
		total += r.Percent
		if r.Percent > 0 {
			out = append(out, r)
		}
	}
	if total > 100+1e-9 {
		return nil, Errorf(EINVALID, "traffic: the shares add up to %g%%, more than 100%%", total)
	}
	for _, r := range out {
		if app.Slot(r.Slot).Deployment == nil {
			return nil, Errorf(ECONFLICT, "traffic: slot %q has no deployment: deploy to it before giving it traffic", r.Slot)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out, nil
}

// SwapAction is what a swap request does.
type SwapAction string

const (
	SwapActionSwap    SwapAction = "swap"    // full swap (completes a pending preview)
	SwapActionPreview SwapAction = "preview" // phase 1 only: apply the target's sticky settings to the source
	SwapActionReset   SwapAction = "reset"   // cancel a pending preview
)

// SwapRequest asks to swap Source into Target (production by default).
type SwapRequest struct {
	Source string     `json:"source"`
	Target string     `json:"target,omitempty"`
	Action SwapAction `json:"action,omitempty"`
	Actor  string     `json:"actor,omitempty"`
}

// Swap phases, as on Azure, plus draining.
const (
	PhaseApplySettings = "apply-settings"
	PhaseWarmup        = "warm-up"
	PhaseFlip          = "flip"
	PhaseDrain         = "drain"
	PhaseDone          = "done"
)

// Swap statuses.
const (
	SwapRunning   = "running"
	SwapCompleted = "completed"
	SwapPreviewed = "previewed"
	SwapReset     = "reset"
	SwapFailed    = "failed"
)

// SwapRecord is one swap in an app's history.
type SwapRecord struct {
	ID     int64      `json:"id"`
	App    string     `json:"app"`
	Source string     `json:"source"`
	Target string     `json:"target"`
	Action SwapAction `json:"action"`
	Status string     `json:"status"`
	Phase  string     `json:"phase"`
	Error  string     `json:"error,omitempty"`
	// Revisions before the swap: SourceRevision moves to Target.
	SourceRevision string    `json:"sourceRevision,omitempty"`
	TargetRevision string    `json:"targetRevision,omitempty"`
	Actor          string    `json:"actor,omitempty"`
	StartedAt      time.Time `json:"startedAt"`
	FinishedAt     time.Time `json:"finishedAt,omitzero"`
}

// Duration is a time.Duration that reads and writes as "90s" in JSON and
// YAML, and also accepts a number of seconds.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return d.set(v)
}

func (d *Duration) UnmarshalText(b []byte) error { return d.set(string(b)) }

// UnmarshalYAML decodes a YAML duration, saying where a wrong one is (the
// config names the field from the position: see PositionError).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &PositionError{Line: n.Line, Column: n.Column, Err: fmt.Errorf("a %s is not a duration: write it like 90s, 5m or 1h30m", kindName(n.Kind))}
	}
	if n.Tag == "!!null" {
		*d = 0
		return nil
	}
	if err := d.set(n.Value); err != nil {
		return &PositionError{Line: n.Line, Column: n.Column, Err: err}
	}
	return nil
}

// PositionError is a value of a YAML document that could not be decoded,
// at Line and Column (1-based).
type PositionError struct {
	Line, Column int
	Err          error
}

func (e *PositionError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *PositionError) Unwrap() error { return e.Err }

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

func (d *Duration) set(v any) error {
	switch v := v.(type) {
	case float64:
		*d = Duration(v * float64(time.Second))
	case string:
		if v == "" { // as if not set
			*d = 0
			return nil
		}
		x, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%q is not a duration: write it like 90s, 5m or 1h30m", v)
		}
		*d = Duration(x)
	case nil:
		*d = 0
	default:
		return fmt.Errorf("%v is not a duration: write it like 90s, 5m or 1h30m", v)
	}
	if *d < 0 {
		return fmt.Errorf("%v is negative", time.Duration(*d))
	}
	return nil
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// SlotStatus is the status of one slot as the CLI and dashboard show it.
type SlotStatus struct {
	Slot    *Slot   `json:"slot"`
	Percent float64 `json:"percent"`
	Healthy bool    `json:"healthy"`
	Health  string  `json:"health,omitempty"` // why not healthy
	// Starting: the deployment's backend is being restored after a
	// restart; the slot gets no traffic until it is healthy.
	Starting bool   `json:"starting,omitempty"`
	Backend  string `json:"backend,omitempty"`
	// InFlight counts requests being served by the slot's backend.
	InFlight int64 `json:"inFlight"`
}

// AppStatus is the whole picture of one app.
type AppStatus struct {
	App      string        `json:"app"`
	Routing  Routing       `json:"routing"`
	Mirror   *MirrorRule   `json:"mirror,omitempty"`
	Slots    []SlotStatus  `json:"slots"`
	LastSwap *SwapRecord   `json:"lastSwap,omitempty"`
	Rollout  *RolloutBrief `json:"rollout,omitempty"`
}

// RolloutBrief is the running rollout of an app, for status views.
type RolloutBrief struct {
	ID    string `json:"id"`
	Slot  string `json:"slot"`
	State string `json:"state"`
	Step  string `json:"step"`
}

// StatusAllowed reports whether v is in list; an empty list allows any 2xx.
func StatusAllowed(list []int, v int) bool {
	if len(list) == 0 {
		return v >= 200 && v < 300
	}
	return slices.Contains(list, v)
}
