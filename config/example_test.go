package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/config"
)

// TestExamplesLoad keeps every configuration file in examples/ valid, so
// that the files users copy (the systemd example first) start a daemon.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../examples/*/modelslot.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("examples/*/modelslot.yaml: %d files, %v", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f)), func(t *testing.T) {
			t.Setenv("AZURE_OPENAI_KEY", "test")
			t.Setenv("OPENAI_API_KEY", "test")
			if _, err := config.Load(f); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		})
	}
	c, err := config.Load("../examples/systemd/modelslot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Data != "/var/lib/modelslot" || c.Admin != "127.0.0.1:8081" {
		t.Errorf("systemd example: data %q admin %q, want /var/lib/modelslot (the unit's StateDirectory) and a loopback admin", c.Data, c.Admin)
	}
}

// TestConfigDocExample: the annotated file in docs/CONFIG.md, which users
// copy, loads.
func TestConfigDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/CONFIG.md has no yaml block")
	}
	c, err := config.Parse(strings.NewReader(block))
	if err != nil {
		t.Fatalf("docs/CONFIG.md's example: %v", err)
	}
	if c.OTLP.Endpoint == "" || c.Shutdown.DrainTimeout.D() != 30*time.Second {
		t.Errorf("parsed %+v", c)
	}
}
