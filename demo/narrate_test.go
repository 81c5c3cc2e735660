package demo

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/rollout"
)

func TestVerdictText(t *testing.T) {
	samples := func(n, failed int, ttft time.Duration) []modelslot.Sample {
		var out []modelslot.Sample
		for i := 0; i < n; i++ {
			s := modelslot.Sample{Status: 200, Latency: 2 * ttft, TTFT: ttft, Streamed: true, OutputTokens: 12}
			if i < failed {
				s.Status = 500
			}
			out = append(out, s)
		}
		return out
	}
	evidence := func(checks ...string) []rollout.GateResult {
		var cs []map[string]string
		for i := 0; i < len(checks); i += 2 {
			cs = append(cs, map[string]string{"metric": checks[i], "verdict": checks[i+1]})
		}
		b, _ := json.Marshal(map[string]any{"checks": cs})
		return []rollout.GateResult{{Verdict: rollout.Fail, Evidence: b}}
	}
	c := summarise("v3", samples(100, 43, 250*time.Millisecond))
	b := summarise("v2", samples(100, 0, 25*time.Millisecond))
	for _, tc := range []struct {
		name string
		v    rollout.VerdictRecord
		last bool
		want string
	}{
		{"errors fail", rollout.VerdictRecord{Step: 1, StepKind: "bake", Percent: 10, Verdict: rollout.Fail, Decision: "rollback",
			Gates: evidence("errors", "fail", "ttft", "pass")}, false,
			"Step 2 (bake at 10%): v3's error rate was 43% against 0%: rolled back."},
		{"two fail", rollout.VerdictRecord{Step: 5, StepKind: "watch", Percent: 90, Verdict: rollout.Fail, Decision: "rollback",
			Gates: evidence("errors", "fail", "latency", "fail", "ttft", "fail")}, true,
			"Step 6 (watch after the swap): v3's error rate was 43% against 0%, v3's median latency was 500ms against 50ms and v3's median time to first token was 250ms against 25ms: rolled back."},
		{"pass", rollout.VerdictRecord{Step: 1, StepKind: "bake", Percent: 10, Verdict: rollout.Pass, Decision: "continue"}, false,
			"Step 2 (bake at 10%): v3 did as well as v2 over 100 of its requests (error rate 43% against 0%, median time to first token 250ms against 25ms): on to the next step."},
		{"last step passes", rollout.VerdictRecord{Step: 5, StepKind: "watch", Percent: 90, Verdict: rollout.Pass, Decision: "continue"}, true,
			"Step 6 (watch after the swap): v3 did as well as v2 over 100 of its requests (error rate 43% against 0%, median time to first token 250ms against 25ms): the last step is done."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := verdictText(tc.v, c, b, tc.last); got != tc.want {
				t.Errorf("verdictText:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}
