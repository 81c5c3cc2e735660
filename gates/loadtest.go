package gates

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/loadgen"
	"github.com/modelslot/modelslot/rollout"
)

// loadtestSpec is a loadtest gate's entry in a plan (docs/SHADOW.md).
type loadtestSpec struct {
	// Rate is the open-loop arrival rate, requests per second, per target.
	Rate float64 `yaml:"rate"`
	// Duration is the test's length per target, shared by the rounds.
	Duration modelslot.Duration `yaml:"duration"`
	// Rounds alternate production and the candidate (default 2).
	Rounds int  `yaml:"rounds"`
	Stream bool `yaml:"stream"`
	// Prompts is a JSONL prompts file (loadgen's format); without it,
	// synthetic prompts of InputTokens tokens asking for OutputTokens.
	Prompts      string `yaml:"prompts"`
	InputTokens  int    `yaml:"inputTokens"`
	OutputTokens int    `yaml:"outputTokens"`
	SLO          struct {
		TTFT modelslot.Duration `yaml:"ttft"`
		TPOT modelslot.Duration `yaml:"tpot"`
		E2E  modelslot.Duration `yaml:"e2e"`
	} `yaml:"slo"`
	// MinGoodput is the least share of the candidate's requests that must
	// succeed within every SLO (default 0.95).
	MinGoodput *float64 `yaml:"minGoodput"`
	// MaxErrorRate bounds the candidate's error rate (default 0.01).
	MaxErrorRate *float64 `yaml:"maxErrorRate"`
	// MaxRatio bounds the candidate's median TTFT and end-to-end latency
	// over production's in the same run (default 1.25), beyond Slack.
	MaxRatio *float64 `yaml:"maxRatio"`
	// Slack is a latency difference too small to count (default 10ms):
	// sub-millisecond servers would otherwise fail ratios on noise.
	Slack *modelslot.Duration `yaml:"slack"`
}

type loadtestGate struct {
	rate             float64
	duration         time.Duration
	rounds           int
	stream           bool
	prompts          []loadgen.Prompt
	input, output    int
	slo              loadgen.SLO
	minGoodput       float64
	maxErrors, ratio float64
	slack            time.Duration
}

func newLoadtestGate(c rollout.GateConfig) (rollout.Gate, error) {
	var s loadtestSpec
	if err := c.Decode(&s); err != nil {
		return nil, err
	}
	g := &loadtestGate{
		rate: s.Rate, duration: s.Duration.D(), rounds: s.Rounds, stream: s.Stream,
		input: s.InputTokens, output: s.OutputTokens,
		slo:        loadgen.SLO{TTFT: s.SLO.TTFT.D(), TPOT: s.SLO.TPOT.D(), E2E: s.SLO.E2E.D()},
		minGoodput: 0.95, maxErrors: 0.01, ratio: 1.25, slack: 10 * time.Millisecond,
	}
	if s.MinGoodput != nil {
		g.minGoodput = *s.MinGoodput
	}
	if s.MaxErrorRate != nil {
		g.maxErrors = *s.MaxErrorRate
	}
	if s.MaxRatio != nil {
		g.ratio = *s.MaxRatio
	}
	if s.Slack != nil {
		g.slack = s.Slack.D()
	}
	if g.rounds == 0 {
		g.rounds = 2
	}
	switch {
	case !(s.Rate > 0) || math.IsInf(s.Rate, 0):
		return nil, invalid(c.Path+".rate", "is required: requests per second sent to each of production and the candidate, e.g. `rate: 5`")
	case g.duration <= 0:
		return nil, invalid(c.Path+".duration", "is required: how long each target is tested, e.g. `duration: 30s`")
	case g.duration > time.Hour:
		return nil, invalid(c.Path+".duration", "%s is longer than an hour: the rollout waits for the test", g.duration)
	case g.rounds < 1 || g.rounds > 20:
		return nil, invalid(c.Path+".rounds", "%d is out of range: 1 to 20", g.rounds)
	case g.minGoodput < 0 || g.minGoodput > 1:
		return nil, invalid(c.Path+".minGoodput", "%v is out of range: a share from 0 to 1", g.minGoodput)
	case g.maxErrors < 0 || g.maxErrors > 1:
		return nil, invalid(c.Path+".maxErrorRate", "%v is out of range: a share from 0 to 1", g.maxErrors)
	case !(g.ratio >= 1):
		return nil, invalid(c.Path+".maxRatio", "%v is out of range: at least 1 (1.25 lets the candidate be 25%% slower)", g.ratio)
	case g.slack < 0 || s.InputTokens < 0 || s.OutputTokens < 0:
		return nil, invalid(c.Path, "slack, inputTokens and outputTokens must not be negative")
	}
	if s.Prompts != "" {
		p, err := loadgen.LoadPrompts(s.Prompts)
		if err != nil {
			return nil, invalid(c.Path+".prompts", "%v", err)
		}
		g.prompts = p
	}
	return g, nil
}

func (g *loadtestGate) Kind() string { return KindLoadtest }

// loadtestEvidence is what a loadtest verdict stores.
type loadtestEvidence struct {
	Checks     []check             `json:"checks"`
	Baseline   string              `json:"baseline"`
	Candidate  string              `json:"candidate"`
	Rate       float64             `json:"rate"`
	Duration   string              `json:"duration"`
	Goodput    float64             `json:"candidateGoodput"`
	Comparison *loadgen.Comparison `json:"comparison"`
}

// Evaluate runs the test at the phase's first look and returns its result
// at every later look.
func (g *loadtestGate) Evaluate(ctx context.Context, in rollout.GateInput) (rollout.GateResult, error) {
	if res, ok := cached(in); ok {
		return res, nil
	}
	conns := min(max(int(math.Ceil(10*g.rate)), 16), 1000)
	base, cand, done, err := gatewayClients(in, conns)
	if err != nil {
		return rollout.GateResult{}, err
	}
	defer done()
	cfg := func(client *http.Client) loadgen.Config {
		return loadgen.Config{
			URL: in.GatewayURL, Model: in.App, Rate: g.rate, Duration: g.duration, Stream: g.stream,
			Prompts: g.prompts, InputTokens: dist(g.input), OutputTokens: dist(g.output),
			SLO: g.slo, Client: client, Seed: 1, Timeout: 2 * time.Minute,
		}
	}
	cmp, err := loadgen.Compare(ctx, cfg(base), cfg(cand), g.rounds)
	if err != nil {
		return rollout.GateResult{}, fmt.Errorf("loadtest: %w", err)
	}
	ev := loadtestEvidence{Baseline: in.Baseline, Candidate: in.Candidate, Rate: g.rate, Duration: g.duration.String(), Comparison: cmp}
	var good, total float64
	for _, r := range cmp.Reports {
		good += r.B.Goodput * float64(r.B.Requests)
		total += float64(r.B.Requests)
	}
	if total > 0 {
		ev.Goodput = good / total
	}
	ev.Checks = append(ev.Checks, g.goodput(ev.Goodput), g.errors(cmp.B.ErrorRate),
		g.slower("ttft_p50", cmp.A.TTFTP50, cmp.B.TTFTP50),
		g.slower("e2e_p50", cmp.A.E2EP50, cmp.B.E2EP50))
	v, reason := combine(ev.Checks)
	reason = fmt.Sprintf("%s (candidate goodput %.1f%%, TTFT p50 %.1fms vs %.1fms, e2e p50 %.1fms vs %.1fms)",
		reason, 100*ev.Goodput, cmp.B.TTFTP50, cmp.A.TTFTP50, cmp.B.E2EP50, cmp.A.E2EP50)
	return remember(v, reason, ev)
}

func dist(mean int) loadgen.Dist {
	if mean <= 0 {
		return loadgen.Dist{}
	}
	return loadgen.Dist{Mean: float64(mean)}
}

func verdictIf(ok bool) rollout.Verdict {
	if ok {
		return rollout.Pass
	}
	return rollout.Fail
}

func (g *loadtestGate) goodput(v float64) check {
	return check{Name: "goodput", Value: v, Limit: fmt.Sprintf(">= %g", g.minGoodput), Verdict: verdictIf(v >= g.minGoodput),
		Note: fmt.Sprintf("%.1f%% of the candidate's requests met the SLOs, want at least %.1f%%", 100*v, 100*g.minGoodput)}
}

func (g *loadtestGate) errors(v float64) check {
	return check{Name: "error_rate", Value: v, Limit: fmt.Sprintf("<= %g", g.maxErrors), Verdict: verdictIf(v <= g.maxErrors),
		Note: fmt.Sprintf("the candidate's error rate is %.2f%%, at most %.2f%% allowed", 100*v, 100*g.maxErrors)}
}

// slower checks a candidate median against production's in the same run.
func (g *loadtestGate) slower(name string, baseMS, candMS float64) check {
	limit := baseMS*g.ratio + float64(g.slack)/float64(time.Millisecond)
	c := check{Name: name, Value: candMS, Limit: fmt.Sprintf("<= %.2fms (%g x production's %.2fms + %s)", limit, g.ratio, baseMS, g.slack),
		Verdict: verdictIf(candMS <= limit)}
	c.Note = fmt.Sprintf("%.2fms against production's %.2fms", candMS, baseMS)
	return c
}
