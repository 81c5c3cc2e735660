package config_test

import (
	"slices"
	"strings"
	"testing"

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
