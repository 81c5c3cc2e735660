package demo_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/demo"
	"github.com/modelslot/modelslot/internal/pgtest"
)

// TestDemoHA runs `demo --ha`: three serve processes on a throwaway
// PostgreSQL, the leader killed mid-rollout, another replica finishing it.
func TestDemoHA(t *testing.T) {
	if _, err := pgtest.BinDir(); err != nil {
		if os.Getenv(pgtest.RequireEnv) == "1" {
			t.Fatal(err)
		}
		t.Skipf("skipping: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "modelslot")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/modelslot/modelslot/cmd/modelslot").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	err := demo.RunHA(ctx, demo.Options{Out: &out, Binary: bin, Rate: 50})
	t.Logf("demo --ha:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"in force on replica-", "SIGKILLed", "took the controller lease over", "succeeded on replica-", ", 0 failed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
}
