package rollout_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/rollout"
)

// FuzzParsePlan: any input is a plan or an EINVALID error with a message;
// never a panic. The seeds are the example plans and a few odd documents.
func FuzzParsePlan(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join("..", "examples", "*", "plan.yaml"))
	for _, p := range append(files, more...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"", "steps: []", "steps:\n  - traffic: 10\n  - bake: 5m\n  - swap: {}\n",
		"steps: [{traffic: 1e400}]", "steps: [{bake: -1s}]", "steps: &a [*a]", "---\n---\n",
		"steps:\n  - traffic: 10\n    gates: {errors: {max: 2%}}\n", "{\"steps\": [{\"traffic\": 5}]}",
		"steps:\n  - rampUp: {to: 50, by: 10, every: 1m}\n", "steps: [{unknown: 1}]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := rollout.ParsePlan(data)
		if err != nil {
			if modelslot.ErrorCode(err) != modelslot.EINVALID || modelslot.ErrorMessage(err) == "" {
				t.Fatalf("error %v: want EINVALID with a message", err)
			}
			return
		}
		if p == nil || p.Source() != string(data) {
			t.Fatal("a plan without its source")
		}
	})
}
