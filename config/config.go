// Package config reads the daemon's YAML file: listeners, data directory,
// gateway limits, webhooks, and the apps, slots, deployments and routing to
// declare at start. Decoding is strict: an unknown field or a bad value is
// an error that names the field. Every field is documented in
// docs/CONFIG.md.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
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
		return nil, modelslot.Errorf(modelslot.EINVALID, "config: %s", yamlError(err))
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// yamlError rewords yaml.v3's messages to name the field the way the file
// does.
func yamlError(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	s = strings.ReplaceAll(s, "unmarshal errors:\n  ", "")
	s = strings.ReplaceAll(s, "\n  ", "; ")
	for _, t := range []string{"config.Config", "config.Gateway", "config.App", "config.Slot", "config.Deployment", "config.Warmup", "config.Webhook"} {
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
	if c.Gateway.MaxRequestBytes < 0 {
		return bad("gateway.maxRequestBytes", "must not be negative")
	}
	if c.Gateway.MaxHeaderBytes < 0 {
		return bad("gateway.maxHeaderBytes", "must not be negative")
	}
	if c.Gateway.ReadTimeout < 0 {
		return bad("gateway.readHeaderTimeout", "must not be negative")
	}
	if c.Gateway.IdleTimeout < 0 {
		return bad("gateway.idleTimeout", "must not be negative")
	}
	if c.Gateway.MirrorMaxBytes < 0 {
		return bad("gateway.mirrorMaxBytes", "must not be negative")
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
		Defaults: d.Defaults, Overrides: d.Overrides, Query: d.Query,
	}
	if len(d.Headers)+len(d.SecretHeaders) > 0 {
		out.Headers = map[string]string{}
		for k, v := range d.Headers {
			out.Headers[k] = v
		}
		for k, v := range d.SecretHeaders {
			if name, ok := strings.CutPrefix(v, "${"); ok && strings.HasSuffix(name, "}") {
				name = strings.TrimSuffix(name, "}")
				v = getenv(name)
				if v == "" {
					return out, modelslot.Errorf(modelslot.EINVALID, "config: secret header %s reads ${%s}, which is not set in the daemon's environment", k, name)
				}
			}
			out.Headers[k] = v
			out.SecretHeaders = append(out.SecretHeaders, k)
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
