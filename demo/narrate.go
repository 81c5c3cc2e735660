package demo

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/rollout"
)

// side is what one version's requests looked like in a verdict's window.
type side struct {
	version   string
	n         int
	errorRate float64
	ttftP50   time.Duration // streamed answers only
	latP50    time.Duration
	meanOut   float64
}

func summarise(version string, ss []modelslot.Sample) side {
	s := side{version: version, n: len(ss)}
	var ttft, lat []time.Duration
	failed, out := 0, 0
	for _, x := range ss {
		if x.Failed() {
			failed++
			continue
		}
		lat = append(lat, x.Latency)
		if x.Streamed && x.TTFT > 0 {
			ttft = append(ttft, x.TTFT)
		}
		out += x.OutputTokens
	}
	if len(ss) > 0 {
		s.errorRate = float64(failed) / float64(len(ss))
	}
	if len(lat) > 0 {
		s.meanOut = float64(out) / float64(len(lat))
	}
	s.ttftP50, s.latP50 = median(ttft), median(lat)
	return s
}

func median(v []time.Duration) time.Duration {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// failedMetrics lists the metrics whose checks failed, in the order the
// gates reported them.
func failedMetrics(v rollout.VerdictRecord) []string {
	var out []string
	for _, g := range v.Gates {
		var ev struct {
			Checks []struct {
				Metric  string `json:"metric"`
				Verdict string `json:"verdict"`
			} `json:"checks"`
		}
		if json.Unmarshal(g.Evidence, &ev) != nil {
			continue
		}
		for _, c := range ev.Checks {
			if c.Verdict == string(rollout.Fail) && !slices.Contains(out, c.Metric) {
				out = append(out, c.Metric)
			}
		}
	}
	return out
}

// comparison says one metric of the candidate against the baseline in
// words: "v3's error rate was 43% against 0%".
func comparison(metric string, c, b side) string {
	base, _, _ := strings.Cut(metric, ":")
	switch base {
	case "errors":
		return fmt.Sprintf("%s's error rate was %s against %s", c.version, percent(c.errorRate), percent(b.errorRate))
	case "ttft":
		return fmt.Sprintf("%s's median time to first token was %s against %s", c.version, msText(c.ttftP50), msText(b.ttftP50))
	case "latency", "tail_latency":
		return fmt.Sprintf("%s's median latency was %s against %s", c.version, msText(c.latP50), msText(b.latP50))
	case "output_tokens":
		return fmt.Sprintf("%s's answers were %.1f tokens long on average against %.1f", c.version, c.meanOut, b.meanOut)
	}
	return fmt.Sprintf("%s failed the %s check", c.version, metric)
}

func percent(f float64) string {
	if f == 0 {
		return "0%"
	}
	if f < 0.01 {
		return fmt.Sprintf("%.1f%%", 100*f)
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

func msText(d time.Duration) string {
	if d == 0 {
		return "none measured"
	}
	return d.Round(time.Millisecond).String()
}

var decisionWords = map[string]string{
	"continue": "on to the next step",
	"rollback": "rolled back",
	"pause":    "paused for an operator",
	"extend":   "not yet clear, so the step waits for more requests",
	"promoted": "promoted by an operator",
}

// verdictText says what a verdict means in words: which version did what
// against which, and what the rollout did about it; last: the verdict's
// step is the plan's last.
func verdictText(v rollout.VerdictRecord, c, b side, last bool) string {
	step := fmt.Sprintf("Step %d (%s at %g%%)", v.Step+1, v.StepKind, v.Percent)
	if v.StepKind == rollout.KindWatch {
		step = fmt.Sprintf("Step %d (watch after the swap)", v.Step+1)
	}
	what := decisionWords[v.Decision]
	if v.Decision == "continue" && last {
		what = "the last step is done"
	}
	if what == "" {
		what = v.Decision
	}
	switch v.Verdict {
	case rollout.Fail:
		var parts []string
		for _, m := range failedMetrics(v) {
			parts = append(parts, comparison(m, c, b))
		}
		if len(parts) == 0 {
			parts = []string{fmt.Sprintf("%s failed its gates", c.version)}
		}
		list := parts[0]
		if n := len(parts); n > 1 {
			list = strings.Join(parts[:n-1], ", ") + " and " + parts[n-1]
		}
		return fmt.Sprintf("%s: %s: %s.", step, list, what)
	case rollout.Pass:
		return fmt.Sprintf("%s: %s did as well as %s over %d of its requests (error rate %s against %s, median time to first token %s against %s): %s.",
			step, c.version, b.version, c.n, percent(c.errorRate), percent(b.errorRate), msText(c.ttftP50), msText(b.ttftP50), what)
	}
	return fmt.Sprintf("%s: no clear difference yet between %s and %s after %d of its requests: %s.", step, c.version, b.version, c.n, what)
}
