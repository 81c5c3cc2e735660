package config_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
)

// FuzzParse: any file is a valid config or an EINVALID error with a
// message, never a panic; an accepted config passes Validate again and
// every declared deployment converts (or says why not).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "*", "modelslot.yaml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"", "listen: 127.0.0.1:8080\nadmin: 127.0.0.1:8081\n",
		"apps:\n  - name: chat\n    stickyKey: user\n    slots:\n      - name: staging\n        deployment: {url: http://127.0.0.1:9001, secretHeaders: {api-key: '${KEY}'}, secretQuery: {key: v}}\n    traffic: {staging: 10}\n    mirror: {staging: 5}\n",
		"gateway:\n  maxRequestBytes: -1\n", "gateway:\n  clientKeys:\n    - {name: a, sha256: zz}\n",
		"adminTLS: {cert: a}\n", "apps: [{name: Bad}]\n", "metrics: {source: prometheus, prometheus: {url: x}}\n",
		"webhooks: [{url: ftp://x}]\n", "rolloutInterval: 1s\n", "apps: [{name: a, traffic: {x: 200}}]\n", "[1, 2]\n", "a: &a [*a, *a]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(bytes.NewReader(data))
		if err != nil {
			if modelslot.ErrorCode(err) != modelslot.EINVALID || modelslot.ErrorMessage(err) == "" {
				t.Fatalf("error %v: want EINVALID with a message", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("an accepted config fails Validate: %v", err)
		}
		for _, a := range c.Apps {
			for _, s := range a.Slots {
				if s.Deployment == nil {
					continue
				}
				if _, err := config.DeploymentOf(s.Deployment, func(string) string { return "" }); err != nil && modelslot.ErrorCode(err) != modelslot.EINVALID {
					t.Fatalf("DeploymentOf: %v", err)
				}
			}
		}
	})
}
