package config_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
)

func TestDeploymentOfSecrets(t *testing.T) {
	c, err := config.Parse(strings.NewReader(`
apps:
  - name: chat
    slots:
      - name: production
        deployment:
          url: https://generativelanguage.example
          headers: {x-team: search}
          secretHeaders: {x-goog-api-key: "${GOOGLE_KEY}"}
          query: {alt: sse}
          secretQuery: {key: "${GOOGLE_KEY}"}
`))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GOOGLE_KEY": "AIza-from-env"}
	d, err := config.DeploymentOf(c.Apps[0].Slots[0].Deployment, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if d.Query["key"] != "AIza-from-env" || d.Query["alt"] != "sse" || !slices.Equal(d.SecretQuery, []string{"key"}) {
		t.Errorf("query %v, secretQuery %v", d.Query, d.SecretQuery)
	}
	if d.Headers["x-goog-api-key"] != "AIza-from-env" || !slices.Equal(d.SecretHeaders, []string{"x-goog-api-key"}) {
		t.Errorf("headers %v, secretHeaders %v", d.Headers, d.SecretHeaders)
	}
	r := d.Redacted()
	if r.Query["key"] != modelslot.RedactedValue || r.Headers["x-goog-api-key"] != modelslot.RedactedValue || r.Query["alt"] != "sse" {
		t.Errorf("redacted: query %v, headers %v", r.Query, r.Headers)
	}
	if d.Query["key"] != "AIza-from-env" {
		t.Error("Redacted changed the original")
	}

	delete(env, "GOOGLE_KEY")
	_, err = config.DeploymentOf(c.Apps[0].Slots[0].Deployment, func(k string) string { return env[k] })
	if err == nil || !strings.Contains(err.Error(), "${GOOGLE_KEY}") {
		t.Errorf("unset variable: %v, want an error naming it", err)
	}
}

func TestParseRefusesBadSecuritySettings(t *testing.T) {
	const hash = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	for _, tc := range []struct{ name, yaml, want string }{
		{"key not hashed", "gateway:\n  clientKeys:\n    - name: a\n      sha256: sk-the-key\n", "gateway.clientKeys[0].sha256"},
		{"key without name", "gateway:\n  clientKeys:\n    - sha256: " + hash + "\n", "gateway.clientKeys[0].name"},
		{"duplicate key name", "gateway:\n  clientKeys:\n    - {name: a, sha256: " + hash + "}\n    - {name: a, sha256: " + hash + "}\n", "used twice"},
		{"negative rate", "gateway:\n  clientKeys:\n    - {name: a, sha256: " + hash + ", requestsPerMinute: -1}\n", "must not be negative"},
		{"bad app", "gateway:\n  clientKeys:\n    - {name: a, sha256: " + hash + ", apps: [Chat]}\n", "gateway.clientKeys[0].apps"},
		{"unknown key field", "gateway:\n  clientKeys:\n    - {name: a, key: x}\n", "field key not found"},
		{"cert without key", "adminTLS:\n  cert: c.pem\n", "adminTLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one that says %q", err, tc.want)
			}
		})
	}
	c, err := config.Parse(strings.NewReader("insecureAdmin: true\nadminTLS: {cert: c.pem, key: k.pem}\ngateway:\n  openGateway: true\n  clientKeysFile: keys.yaml\n  clientKeys:\n    - {name: a, sha256: " + hash + ", apps: [chat], requestsPerMinute: 60, burst: 5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := c.Gateway.ClientKeys[0]; !c.InsecureAdmin || c.AdminTLS.Key != "k.pem" || !c.Gateway.OpenGateway || c.Gateway.ClientKeysFile != "keys.yaml" || k.Burst != 5 || k.RequestsPerMinute != 60 {
		t.Errorf("parsed %+v", c)
	}
}

// TestParseRefusesNegativeLimits: every size and timeout names itself when
// it is negative.
func TestParseRefusesNegativeLimits(t *testing.T) {
	for _, tc := range []struct{ yaml, field string }{
		{"gateway: {maxRequestBytes: -1}", "gateway.maxRequestBytes"},
		{"gateway: {maxHeaderBytes: -1}", "gateway.maxHeaderBytes"},
		{"gateway: {maxResponseHeaderBytes: -1}", "gateway.maxResponseHeaderBytes"},
		{"gateway: {mirrorMaxBytes: -1}", "gateway.mirrorMaxBytes"},
		// Durations are refused as they are decoded, named from where
		// the value is.
		{"gateway: {readHeaderTimeout: -1s}", "line 1: gateway.readHeaderTimeout: -1s is negative"},
		{"gateway:\n  idleTimeout: -1s\n", "line 2: gateway.idleTimeout: -1s is negative"},
		{"shutdown: {drainTimeout: -1s}", "shutdown.drainTimeout: -1s is negative"},
		{"apps:\n  - name: a\n    slots:\n      - name: s\n        deployment: {url: 'http://x', warmup: {timeout: soon}}\n", "apps[0].slots[0].deployment.warmup.timeout: \"soon\" is not a duration"},
		{"rolloutInterval: [1s]", "rolloutInterval: a list is not a duration"},
		{"leaseTTL: 500ms", "leaseTTL"},
		{"store: mysql://x", "store"},
	} {
		_, err := config.Parse(strings.NewReader(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want one naming %s", tc.yaml, err, tc.field)
		}
	}
}

// TestParseOTLP: the otlp block is checked at load, and an endpoint
// without a path gets OTLP's /v1/metrics.
func TestParseOTLP(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"no scheme", "otlp:\n  endpoint: collector:4318\n", `otlp.endpoint (--otlp-endpoint): "collector:4318" is not an OTLP/HTTP endpoint`},
		{"grpc scheme", "otlp:\n  endpoint: grpc://collector:4317\n", "otlp.endpoint"},
		{"credentials in the URL", "otlp:\n  endpoint: http://u:p@collector:4318\n", "otlp.endpoint"},
		{"interval too short", "otlp:\n  endpoint: http://c:4318\n  interval: 100ms\n", "otlp.interval (--otlp-interval): 100ms is too short: at least 1s"},
		{"bad header name", "otlp:\n  endpoint: http://c:4318\n  headers: {\"a b\": x}\n", "otlp.headers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one that says %q", err, tc.want)
			}
		})
	}
	for in, want := range map[string]string{
		"http://c:4318":                  "http://c:4318/v1/metrics",
		"https://c:4318/":                "https://c:4318/v1/metrics",
		"https://otlp.example/otlp/v1/m": "https://otlp.example/otlp/v1/m",
	} {
		c, err := config.Parse(strings.NewReader("otlp:\n  endpoint: " + in + "\n  interval: 15s\n  headers: {X-Api-Key: k}\n"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.OTLP.Resolve(func(string) string { return "" })
		if err != nil || got.Endpoint != want || got.Interval != 15*time.Second || got.Headers["X-Api-Key"] != "k" {
			t.Errorf("%s: %+v %v, want %s, 15s and the header", in, got, err, want)
		}
	}
}
