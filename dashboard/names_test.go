package dashboard_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/modelslot/modelslot/dashboard"
	"github.com/modelslot/modelslot/gateway"
)

// TestOneMeaningPerName keeps the two token rates apart: the admin API's
// per-request decode rate is decodeTokensPerSec, the dashboard series'
// throughput is outputTokensPerSec, and no JSON, script or doc calls
// either of them plain tokensPerSec.
func TestOneMeaningPerName(t *testing.T) {
	keys := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	stats := keys(gateway.Stats{DecodeTokensPerSec: 1})
	series := keys(dashboard.SlotSeries{OutputTokensPerSec: []float64{1}})
	if !strings.Contains(stats, `"decodeTokensPerSec":`) || strings.Contains(stats, `"tokensPerSec"`) {
		t.Errorf("admin API metrics: %s, want decodeTokensPerSec", stats)
	}
	if !strings.Contains(series, `"outputTokensPerSec":`) || strings.Contains(series, `"tokensPerSec"`) {
		t.Errorf("dashboard series: %s, want outputTokensPerSec", series)
	}
	for _, f := range []string{"assets/app.js", "../docs/DASHBOARD.md", "../docs/API.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.NewReplacer("decodeTokensPerSec", "", "outputTokensPerSec", "").Replace(string(b))
		if strings.Contains(s, "tokensPerSec") {
			t.Errorf("%s still says tokensPerSec", f)
		}
	}
}
