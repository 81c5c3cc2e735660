package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/demo"
)

// TestDemo runs the whole demo: it must end with both rollout outcomes as
// expected and no failed request during the splits and swaps.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about a minute")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := demo.Run(ctx, demo.Options{Out: &out, Rate: 150}); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{"staging passed validation", "succeeded", "rolled back automatically", "Both outcomes happened as expected"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
