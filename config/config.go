// Package config reads the daemon's YAML file: listeners, data directory,
// gateway limits, webhooks, and the apps, slots, deployments and routing to
// declare at start. Decoding is strict: an unknown field or a bad value is
// an error that names the field. Every field is documented in
// docs/CONFIG.md.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
	"gopkg.in/yaml.v3"
)

// Config is the whole file.
type Config struct {
	// Listen is the public gateway address (default 127.0.0.1:8080).
	Listen string `yaml:"listen"`
	// Admin is the admin API address (default 127.0.0.1:8081, loopback).
	Admin string `yaml:"admin"`
	// AdminTLS serves the admin API and dashboard over HTTPS. An admin
	// address beyond loopback needs it, or InsecureAdmin.
	AdminTLS AdminTLS `yaml:"adminTLS"`
	// InsecureAdmin accepts an admin address beyond loopback over plain
	// HTTP (the token then crosses the network in clear text).
	InsecureAdmin bool `yaml:"insecureAdmin"`
	// Data is the state directory (default ./modelslot-data).
	Data string `yaml:"data"`
	// Store is where the state lives: empty for SQLite in Data (the
	// embedded default), or postgres://USER@HOST:PORT/DB for a PostgreSQL
	// database shared by several daemons (replicas).
	Store string `yaml:"store"`
	// LeaseTTL is how long the replica running rollouts holds the
	// controller's lease without renewing it (default 15s; PostgreSQL
	// store only): the longest a dead leader's rollouts wait for another
	// replica to take them over.
	LeaseTTL modelslot.Duration `yaml:"leaseTTL"`
	// Replica names this daemon among replicas on one PostgreSQL store (its
	// metrics' "replica" label, its rows of samples); default
	// <hostname>-<pid>-<random>.
	Replica string  `yaml:"replica"`
	Gateway Gateway `yaml:"gateway"`
	// Apps to declare at start; a daemon with none has one app, "default".
	Apps     []App     `yaml:"apps"`
	Webhooks []Webhook `yaml:"webhooks"`
	// RolloutInterval, when set, replaces every plan's interval (how often
	// gates look); for demos and tests.
	RolloutInterval modelslot.Duration `yaml:"rolloutInterval"`
	// Metrics chooses where rollout gates read their measurements.
	Metrics Metrics `yaml:"metrics"`
	// Shutdown tunes how the daemon stops (SIGTERM, SIGINT).
	Shutdown Shutdown `yaml:"shutdown"`
	// OTLP pushes the metrics of /metrics to an OpenTelemetry receiver.
	OTLP OTLP `yaml:"otlp"`
}

// OTLP exports the daemon's metrics (the same ones /metrics serves) over
// OTLP/HTTP with protobuf, to an OpenTelemetry Collector or any backend
// that takes OTLP.
type OTLP struct {
	// Endpoint is the receiver's URL, http:// or https://; a URL without
	// a path gets /v1/metrics (http://collector:4318 is
	// http://collector:4318/v1/metrics). Empty: no export (the default).
	Endpoint string `yaml:"endpoint"`
	// Interval is the time between exports (default 60s, at least 1s).
	Interval modelslot.Duration `yaml:"interval"`
	// Headers go with every export (a hosted backend's API key, say).
	Headers map[string]string `yaml:"headers"`
}

// DefaultOTLPInterval is the time between OTLP exports when
// otlp.interval is not set (OpenTelemetry's own default).
const DefaultOTLPInterval = 60 * time.Second

// OTLPSettings is an OTLP block ready to export with.
type OTLPSettings struct {
	// Endpoint is the receiver's URL, /v1/metrics added when it had no
	// path; empty when the export is off.
	Endpoint string
	Interval time.Duration
	// Headers hold the values read from the environment.
	Headers map[string]string
}

// Resolve checks the block and reads the headers' ${ENV_NAME} values from
// getenv (nil: only checks them). Errors name the field and its flag.
func (o OTLP) Resolve(getenv func(string) string) (OTLPSettings, error) {
	bad := func(field, format string, args ...any) error {
		return modelslot.Errorf(modelslot.EINVALID, "config: %s: %s", field, fmt.Sprintf(format, args...))
	}
	out := OTLPSettings{Interval: o.Interval.D(), Headers: make(map[string]string, len(o.Headers))}
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return out, bad("otlp.endpoint (--otlp-endpoint)", "%q is not an OTLP/HTTP endpoint: use http://HOST:PORT or https://HOST:PORT, with a path when the receiver's is not /v1/metrics", o.Endpoint)
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/metrics"
		}
		out.Endpoint = u.String()
	}
	if out.Interval == 0 {
		out.Interval = DefaultOTLPInterval
	}
	if out.Interval < time.Second {
		return out, bad("otlp.interval (--otlp-interval)", "%v is too short: at least 1s", out.Interval)
	}
	for k, v := range o.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			return out, bad("otlp.headers", "%q is not a header name", k)
		}
		if getenv != nil {
			var err error
			if v, err = fromEnv("otlp.headers", k, v, getenv); err != nil {
				return out, err
			}
		}
		out.Headers[k] = v
	}
	return out, nil
}

// fromEnv returns v, or the environment's value of NAME when v is
// ${NAME}; an unset variable is an error that names the field.
func fromEnv(kind, k, v string, getenv func(string) string) (string, error) {
	if name, ok := strings.CutPrefix(v, "${"); ok && strings.HasSuffix(name, "}") {
		name = strings.TrimSuffix(name, "}")
		if v = getenv(name); v == "" {
			return "", modelslot.Errorf(modelslot.EINVALID, "config: %s %s reads ${%s}, which is not set in the daemon's environment", kind, k, name)
		}
	}
	return v, nil
}

// Shutdown tunes the daemon's stop.
type Shutdown struct {
	// DrainTimeout is how long requests and streams in flight on the
	// gateway may take to finish once a stop begins; the rest are cut
	// (default 30s).
	DrainTimeout modelslot.Duration `yaml:"drainTimeout"`
}

// AdminTLS names the PEM files of the admin listener's certificate and
// key.
type AdminTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Metrics selects the metric source of rollout gates.
type Metrics struct {
	// Source is "gateway" (default: the gateway's own meter) or
	// "prometheus" (PromQL over a Prometheus HTTP API, for model servers
	// that already export vLLM or OpenTelemetry GenAI metrics).
	Source     string     `yaml:"source"`
	Prometheus Prometheus `yaml:"prometheus"`
}

// Prometheus configures the PromQL metric source.
type Prometheus struct {
	URL string `yaml:"url"`
	// Preset picks default queries: "vllm" (default) or "otel".
	Preset string `yaml:"preset"`
	// Queries override the preset's, by name: requests, errors,
	// latency_mean, ttft_mean, tokens_per_sec (text/template with {{.App}},
	// {{.Slot}}, {{.Window}}).
	Queries map[string]string  `yaml:"queries"`
	Step    modelslot.Duration `yaml:"step"`
	Lag     modelslot.Duration `yaml:"lag"`
}

// Gateway limits.
type Gateway struct {
	MaxRequestBytes int64              `yaml:"maxRequestBytes"` // default 33554432 (32 MiB)
	MaxHeaderBytes  int                `yaml:"maxHeaderBytes"`  // default 1048576 (1 MiB)
	CookieMaxAge    modelslot.Duration `yaml:"cookieMaxAge"`    // default 24h
	ReadTimeout     modelslot.Duration `yaml:"readHeaderTimeout"`
	DrainTimeout    modelslot.Duration `yaml:"drainTimeout"` // default 10m
	// MirrorMaxBytes bounds what shadow requests queued or in flight hold
	// (default 67108864, 64 MiB); beyond it requests are not mirrored.
	MirrorMaxBytes int64 `yaml:"mirrorMaxBytes"`
	// IdleTimeout closes a keep-alive connection of the gateway's or the
	// admin listener that waits longer for its next request (default 2m).
	IdleTimeout modelslot.Duration `yaml:"idleTimeout"`
	// StdTransport sends every backend request through net/http's
	// Transport instead of the gateway's own HTTP/1.1 client (a way out).
	StdTransport bool `yaml:"stdTransport"`
	// StdServer serves the gateway's listener with net/http's server
	// instead of the gateway's own HTTP/1.1 server (a way out).
	StdServer bool `yaml:"stdServer"`
	// MaxResponseHeaderBytes bounds a backend's response head; beyond it
	// the client gets a 502 (default 1048576, 1 MiB).
	MaxResponseHeaderBytes int64 `yaml:"maxResponseHeaderBytes"`
	// ClientKeys may use the gateway. With none here nor in
	// ClientKeysFile, anyone who reaches the gateway may.
	ClientKeys []ClientKey `yaml:"clientKeys"`
	// ClientKeysFile holds more client keys (a YAML file with a
	// clientKeys list); the daemon re-reads it when it changes and on
	// SIGHUP, so keys rotate without a restart.
	ClientKeysFile string `yaml:"clientKeysFile"`
	// OpenGateway lets the gateway listen beyond loopback with a
	// deployment that carries credentials and no client keys.
	OpenGateway bool `yaml:"openGateway"`
}

// ClientKey is one key that may use the gateway, stored as its SHA-256
// (modelslot client-key new makes one).
type ClientKey struct {
	Name string `yaml:"name"`
	// SHA256 is the hex SHA-256 of the key; the key itself is never
	// written down.
	SHA256 string `yaml:"sha256"`
	// Apps the key may call; empty: every app.
	Apps []string `yaml:"apps"`
	// RequestsPerMinute bounds the key's rate (0: no limit); Burst is how
	// many may come at once (default: a second's worth, at least 1).
	RequestsPerMinute float64 `yaml:"requestsPerMinute"`
	Burst             int     `yaml:"burst"`
}

// ClientKeysFile is the shape of gateway.clientKeysFile.
type ClientKeysFile struct {
	ClientKeys []ClientKey `yaml:"clientKeys"`
}

// LoadClientKeys reads and validates a client keys file.
func LoadClientKeys(path string) ([]ClientKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, modelslot.Errorf(modelslot.EINVALID, "client keys file: %v", err)
	}
	var f ClientKeysFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, modelslot.Errorf(modelslot.EINVALID, "client keys file %s: %s", path, yamlError(err))
	}
	if err := ValidateClientKeys(f.ClientKeys, "clientKeys"); err != nil {
		return nil, modelslot.Errorf(modelslot.EINVALID, "client keys file %s: %s", path, strings.TrimPrefix(modelslot.ErrorMessage(err), "config: "))
	}
	return f.ClientKeys, nil
}

// ValidateClientKeys checks a list of client keys; field names the list
// in errors.
func ValidateClientKeys(keys []ClientKey, field string) error {
	names := map[string]bool{}
	for i, k := range keys {
		f := fmt.Sprintf("%s[%d]", field, i)
		if k.Name == "" {
			return modelslot.Errorf(modelslot.EINVALID, "config: %s.name: every key needs a name (it is shown in logs and errors instead of the key)", f)
		}
		if names[k.Name] {
			return modelslot.Errorf(modelslot.EINVALID, "config: %s.name: %q is used twice", f, k.Name)
		}
		names[k.Name] = true
		if h, err := hex.DecodeString(k.SHA256); err != nil || len(h) != sha256.Size {
			return modelslot.Errorf(modelslot.EINVALID, "config: %s.sha256: want the 64 hex digits of the key's SHA-256 (`modelslot client-key new` prints it), not the key", f)
		}
		if k.RequestsPerMinute < 0 || k.Burst < 0 {
			return modelslot.Errorf(modelslot.EINVALID, "config: %s: requestsPerMinute and burst must not be negative", f)
		}
		for _, a := range k.Apps {
			if err := modelslot.ValidateName("app", a); err != nil {
				return modelslot.Errorf(modelslot.EINVALID, "config: %s.apps: %s", f, modelslot.ErrorMessage(err))
			}
		}
	}
	return nil
}

// App declares one app.
type App struct {
	Name      string `yaml:"name"`
	StickyKey string `yaml:"stickyKey"`
	MaxSlots  int    `yaml:"maxSlots"`
	Slots     []Slot `yaml:"slots"`
	// Traffic maps slot names to percentages; production gets the rest.
	Traffic map[string]float64 `yaml:"traffic"`
	// Mirror maps one slot name to the share of production requests
	// mirrored to it.
	Mirror map[string]float64 `yaml:"mirror"`
}

// Slot declares one slot and, optionally, its deployment.
type Slot struct {
	Name           string            `yaml:"name"`
	StickySettings map[string]string `yaml:"stickySettings"`
	Deployment     *Deployment       `yaml:"deployment"`
}

// Deployment mirrors modelslot.Deployment in YAML.
type Deployment struct {
	Version          string            `yaml:"version"`
	URL              string            `yaml:"url"`
	Command          string            `yaml:"command"`
	Settings         map[string]string `yaml:"settings"`
	Warmup           Warmup            `yaml:"warmup"`
	Model            string            `yaml:"model"`
	SystemPrompt     string            `yaml:"systemPrompt"`
	SystemPromptMode string            `yaml:"systemPromptMode"`
	Defaults         map[string]any    `yaml:"defaults"`
	Overrides        map[string]any    `yaml:"overrides"`
	Headers          map[string]string `yaml:"headers"`
	// SecretHeaders are headers whose values are never shown; a value may
	// be "${ENV_NAME}" to read it from the daemon's environment.
	SecretHeaders map[string]string `yaml:"secretHeaders"`
	Query         map[string]string `yaml:"query"`
	// SecretQuery are query parameters whose values are never shown (for
	// providers that take their key as ?key=...); "${ENV_NAME}" as for
	// secretHeaders.
	SecretQuery map[string]string `yaml:"secretQuery"`
}

// Warmup mirrors modelslot.Warmup.
type Warmup struct {
	Path     string             `yaml:"path"`
	Statuses []int              `yaml:"statuses"`
	Timeout  modelslot.Duration `yaml:"timeout"`
	Retries  int                `yaml:"retries"`
}

// Webhook receives events as JSON POSTs.
type Webhook struct {
	URL    string   `yaml:"url"`
	Types  []string `yaml:"types"`  // event type prefixes; empty = all
	Secret string   `yaml:"secret"` // HMAC-SHA256 signature key
}

// Defaults.
const (
	DefaultListen = "127.0.0.1:8080"
	DefaultAdmin  = "127.0.0.1:8081"
	DefaultData   = "modelslot-data"
)

// Load reads and validates a file.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, modelslot.Errorf(modelslot.EINVALID, "config: %v", err)
	}
	defer f.Close()
	c, err := Parse(f)
	if err != nil {
		return nil, modelslot.Errorf(modelslot.EINVALID, "config %s: %s", path, strings.TrimPrefix(modelslot.ErrorMessage(err), "config: "))
	}
	return c, nil
}

// Parse decodes strictly and validates.
func Parse(r io.Reader) (*Config, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var pe *modelslot.PositionError
		if errors.As(err, &pe) {
			// Name the field as the file does, from the value's position.
			var root yaml.Node
			if yaml.Unmarshal(b, &root) == nil {
				if key := keyAt(&root, pe.Line, pe.Column, ""); key != "" {
					return nil, modelslot.Errorf(modelslot.EINVALID, "config: line %d: %s: %v (docs/CONFIG.md lists every field)", pe.Line, key, pe.Err)
				}
			}
		}
		return nil, modelslot.Errorf(modelslot.EINVALID, "config: %s", yamlError(err))
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// keyAt is the path (gateway.idleTimeout, apps[0].slots[1].name) of the
// value at line and column in the document n, or "".
func keyAt(n *yaml.Node, line, col int, path string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAt(c, line, col, path); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			if k := keyAt(n.Content[i+1], line, col, p); k != "" {
				return k
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if k := keyAt(c, line, col, fmt.Sprintf("%s[%d]", path, i)); k != "" {
				return k
			}
		}
	}
	if n.Line == line && n.Column == col && path != "" {
		return path
	}
	return ""
}

// yamlError rewords yaml.v3's messages to name the field the way the file
// does.
func yamlError(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.ReplaceAll(s, "unmarshal errors:\n  ", "")
	s = strings.ReplaceAll(s, "\n  ", "; ")
	for _, t := range []string{"config.Config", "config.AdminTLS", "config.Gateway", "config.App", "config.Slot", "config.Deployment", "config.Warmup", "config.Webhook", "config.Shutdown", "config.ClientKeysFile", "config.ClientKey"} {
		s = strings.ReplaceAll(s, " in type "+t, " ("+strings.ToLower(strings.TrimPrefix(t, "config."))+")")
	}
	return s + " (docs/CONFIG.md lists every field)"
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Admin == "" {
		c.Admin = DefaultAdmin
	}
	if c.Data == "" {
		c.Data = DefaultData
	}
}

// Validate checks values that decoding cannot.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return modelslot.Errorf(modelslot.EINVALID, "config: %s: %s", field, fmt.Sprintf(format, args...))
	}
	if c.Store != "" && !IsPostgres(c.Store) {
		return bad("store", "%q is not a PostgreSQL URL: use postgres://USER@HOST:PORT/DB, or leave it empty for SQLite in the data directory", c.Store)
	}
	if c.LeaseTTL < 0 || c.LeaseTTL > 0 && c.LeaseTTL.D() < time.Second {
		return bad("leaseTTL", "must be at least 1s")
	}
	if (c.AdminTLS.Cert == "") != (c.AdminTLS.Key == "") {
		return bad("adminTLS", "set both cert and key (PEM files), or neither")
	}
	for _, f := range []struct {
		name     string
		negative bool
	}{
		{"gateway.maxRequestBytes", c.Gateway.MaxRequestBytes < 0},
		{"gateway.maxHeaderBytes", c.Gateway.MaxHeaderBytes < 0},
		{"gateway.maxResponseHeaderBytes", c.Gateway.MaxResponseHeaderBytes < 0},
		{"gateway.mirrorMaxBytes", c.Gateway.MirrorMaxBytes < 0},
		{"gateway.readHeaderTimeout", c.Gateway.ReadTimeout < 0},
		{"gateway.idleTimeout", c.Gateway.IdleTimeout < 0},
		{"shutdown.drainTimeout", c.Shutdown.DrainTimeout < 0},
	} {
		if f.negative {
			return bad(f.name, "must not be negative")
		}
	}
	if _, err := c.OTLP.Resolve(nil); err != nil {
		return err
	}
	if err := ValidateClientKeys(c.Gateway.ClientKeys, "gateway.clientKeys"); err != nil {
		return err
	}
	names := map[string]bool{}
	for i, a := range c.Apps {
		f := fmt.Sprintf("apps[%d]", i)
		if err := modelslot.ValidateName("app", a.Name); err != nil {
			return bad(f+".name", "%s", modelslot.ErrorMessage(err))
		}
		if names[a.Name] {
			return bad(f+".name", "app %q is declared twice", a.Name)
		}
		names[a.Name] = true
		if a.MaxSlots < 0 {
			return bad(f+".maxSlots", "must not be negative")
		}
		if a.MaxSlots > 0 && len(a.Slots) > a.MaxSlots {
			return bad(f+".slots", "%d slots declared, more than maxSlots %d", len(a.Slots), a.MaxSlots)
		}
		slots := map[string]bool{modelslot.Production: true}
		for j, s := range a.Slots {
			sf := fmt.Sprintf("%s.slots[%d]", f, j)
			if err := modelslot.ValidateName("slot", s.Name); err != nil {
				return bad(sf+".name", "%s", modelslot.ErrorMessage(err))
			}
			if slots[s.Name] && s.Name != modelslot.Production {
				return bad(sf+".name", "slot %q is declared twice", s.Name)
			}
			slots[s.Name] = true
			if d := s.Deployment; d != nil {
				if (d.URL == "") == (d.Command == "") {
					return bad(sf+".deployment", "set exactly one of url and command")
				}
				if d.Command != "" && !strings.Contains(d.Command, "{port}") {
					return bad(sf+".deployment.command", "must contain {port}, where the daemon puts the port it chose")
				}
				for _, st := range d.Warmup.Statuses {
					if st < 100 || st > 599 {
						return bad(sf+".deployment.warmup.statuses", "%d is not an HTTP status", st)
					}
				}
				switch d.SystemPromptMode {
				case "", "prepend", "replace":
				default:
					return bad(sf+".deployment.systemPromptMode", "%q is not valid: use prepend or replace", d.SystemPromptMode)
				}
			}
		}
		total := 0.0
		for slot, p := range a.Traffic {
			if !slots[slot] || slot == modelslot.Production {
				return bad(f+".traffic."+slot, "no such non-production slot is declared")
			}
			if p < 0 || p > 100 {
				return bad(f+".traffic."+slot, "%g is out of range: a share is a percentage from 0 to 100", p)
			}
			total += p
		}
		if total > 100 {
			return bad(f+".traffic", "the shares add up to %g%%, more than 100%%", total)
		}
		if len(a.Mirror) > 1 {
			return bad(f+".mirror", "mirror to one slot at most")
		}
		for slot, p := range a.Mirror {
			if !slots[slot] || slot == modelslot.Production {
				return bad(f+".mirror."+slot, "no such non-production slot is declared")
			}
			if p < 0 || p > 100 {
				return bad(f+".mirror."+slot, "%g is out of range: a share is a percentage from 0 to 100", p)
			}
		}
	}
	switch c.Metrics.Source {
	case "", "gateway":
	case "prometheus":
		if !strings.HasPrefix(c.Metrics.Prometheus.URL, "http://") && !strings.HasPrefix(c.Metrics.Prometheus.URL, "https://") {
			return bad("metrics.prometheus.url", "%q is not an http(s) URL of a Prometheus server", c.Metrics.Prometheus.URL)
		}
		switch c.Metrics.Prometheus.Preset {
		case "", "vllm", "otel":
		default:
			return bad("metrics.prometheus.preset", "%q is not valid: use vllm or otel", c.Metrics.Prometheus.Preset)
		}
	default:
		return bad("metrics.source", "%q is not valid: use gateway or prometheus", c.Metrics.Source)
	}
	for i, w := range c.Webhooks {
		if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
			return bad(fmt.Sprintf("webhooks[%d].url", i), "%q is not an http(s) URL", w.URL)
		}
	}
	return nil
}

// DeploymentOf converts a declared deployment, reading secret values from
// the environment where they are written as ${NAME}.
func DeploymentOf(d *Deployment, getenv func(string) string) (modelslot.Deployment, error) {
	out := modelslot.Deployment{
		Version: d.Version, URL: d.URL, Command: d.Command, Settings: d.Settings,
		Warmup: modelslot.Warmup{Path: d.Warmup.Path, Statuses: d.Warmup.Statuses, Timeout: d.Warmup.Timeout, Retries: d.Warmup.Retries},
		Model:  d.Model, SystemPrompt: d.SystemPrompt, SystemPromptMode: d.SystemPromptMode,
		Defaults: d.Defaults, Overrides: d.Overrides,
	}
	secret := func(kind, k, v string) (string, error) { return fromEnv(kind, k, v, getenv) }
	if len(d.Headers)+len(d.SecretHeaders) > 0 {
		out.Headers = map[string]string{}
		for k, v := range d.Headers {
			out.Headers[k] = v
		}
		for _, k := range slices.Sorted(maps.Keys(d.SecretHeaders)) {
			v, err := secret("secret header", k, d.SecretHeaders[k])
			if err != nil {
				return out, err
			}
			out.Headers[k] = v
			out.SecretHeaders = append(out.SecretHeaders, k)
		}
	}
	if len(d.Query)+len(d.SecretQuery) > 0 {
		out.Query = map[string]string{}
		for k, v := range d.Query {
			out.Query[k] = v
		}
		for _, k := range slices.Sorted(maps.Keys(d.SecretQuery)) {
			v, err := secret("secret query parameter", k, d.SecretQuery[k])
			if err != nil {
				return out, err
			}
			out.Query[k] = v
			out.SecretQuery = append(out.SecretQuery, k)
		}
	}
	return out, nil
}

// Default is the configuration of a daemon started without a file.
func Default() *Config {
	c := &Config{}
	c.setDefaults()
	return c
}

// IsPostgres reports whether a store setting names a PostgreSQL database.
func IsPostgres(store string) bool {
	return strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://")
}
