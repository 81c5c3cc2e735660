package gates

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/evals"
	"github.com/modelslot/modelslot/rollout"
)

// evalSpec is an eval gate's entry in a plan (docs/SHADOW.md).
type evalSpec struct {
	// Golden is the golden set (JSONL, docs/EVALS.md), read by the daemon
	// when the gate runs.
	Golden string `yaml:"golden"`
	// Margin is how much lower the candidate's pass rate may be than
	// production's (default 0.1: ten points).
	Margin *float64 `yaml:"margin"`
	// MinCases is the least number of cases the golden set must have
	// (default 20).
	MinCases    int                `yaml:"minCases"`
	Concurrency int                `yaml:"concurrency"`
	Timeout     modelslot.Duration `yaml:"timeout"`
}

type evalGate struct {
	golden      string
	minCases    int
	margin      float64
	concurrency int
	timeout     time.Duration
}

func newEvalGate(c rollout.GateConfig) (rollout.Gate, error) {
	var s evalSpec
	if err := c.Decode(&s); err != nil {
		return nil, err
	}
	g := &evalGate{golden: s.Golden, margin: 0.1, concurrency: s.Concurrency, timeout: s.Timeout.D()}
	if s.Margin != nil {
		g.margin = *s.Margin
	}
	if s.MinCases == 0 {
		s.MinCases = 20
	}
	switch {
	case s.Golden == "":
		return nil, invalid(c.Path+".golden", "is required: the path of a golden set (JSONL, see docs/EVALS.md) on the daemon's machine")
	case g.margin < 0 || g.margin >= 1:
		return nil, invalid(c.Path+".margin", "%v is out of range: a share from 0 to 1 (0.05 allows five points lower)", g.margin)
	case s.MinCases < 1:
		return nil, invalid(c.Path+".minCases", "%d is out of range: at least 1", s.MinCases)
	case s.Concurrency < 0 || s.Timeout < 0:
		return nil, invalid(c.Path, "concurrency and timeout must not be negative")
	}
	g.minCases = s.MinCases
	return g, nil
}

// load reads the golden set. It is read when the gate runs, by the daemon,
// not when the plan is parsed (perhaps by a CLI on another machine): a
// missing or short file makes the look a failed measurement that says why.
func (g *evalGate) load() ([]evals.Case, error) {
	cases, err := evals.LoadGoldenSet(g.golden)
	if err != nil {
		return nil, err
	}
	if len(cases) < g.minCases {
		return nil, fmt.Errorf("golden set %s has %d cases, fewer than minCases %d: a small set cannot tell a regression from noise", g.golden, len(cases), g.minCases)
	}
	return cases, nil
}

func (g *evalGate) Kind() string { return KindEval }

// evalEvidence is what an eval verdict stores: the comparison without the
// answers of cases that did not change.
type evalEvidence struct {
	Golden       string          `json:"golden"`
	Cases        int             `json:"cases"`
	Margin       float64         `json:"margin"`
	Baseline     string          `json:"baseline"`
	Candidate    string          `json:"candidate"`
	BasePassRate float64         `json:"basePassRate"`
	CandPassRate float64         `json:"candidatePassRate"`
	Difference   float64         `json:"difference"`
	DifferenceCI evals.Interval  `json:"differenceCi95"`
	McNemarP     float64         `json:"mcnemarP"`
	Changed      []evals.Change  `json:"changed"`
	BaseFailed   []string        `json:"baseFailed,omitempty"`
	Verdict      rollout.Verdict `json:"verdict"`
}

// Evaluate runs the golden set against production and the candidate at the
// phase's first look and returns its result at every later look.
func (g *evalGate) Evaluate(ctx context.Context, in rollout.GateInput) (rollout.GateResult, error) {
	if res, ok := cached(in); ok {
		return res, nil
	}
	cases, err := g.load()
	if err != nil {
		return rollout.GateResult{}, fmt.Errorf("eval: %w", err)
	}
	base, cand, done, err := gatewayClients(in, max(g.concurrency, 4))
	if err != nil {
		return rollout.GateResult{}, err
	}
	defer done()
	cfg := func(client *http.Client) evals.Config {
		return evals.Config{URL: in.GatewayURL, Model: in.App, Concurrency: g.concurrency, Timeout: g.timeout, Client: client}
	}
	cmp, err := evals.Compare(ctx, cfg(base), cfg(cand), cases)
	if err != nil {
		return rollout.GateResult{}, fmt.Errorf("eval: %w", err)
	}
	ev := evalEvidence{
		Golden: g.golden, Cases: len(cases), Margin: g.margin, Baseline: in.Baseline, Candidate: in.Candidate,
		BasePassRate: cmp.Base.PassRate, CandPassRate: cmp.Candidate.PassRate,
		Difference: cmp.Difference, DifferenceCI: cmp.DifferenceCI, McNemarP: cmp.McNemarP, Changed: cmp.Changed,
	}
	for _, c := range cmp.Base.Cases {
		if !c.Pass {
			ev.BaseFailed = append(ev.BaseFailed, c.ID)
		}
	}
	ci := cmp.DifferenceCI
	summary := fmt.Sprintf("pass rate %.1f%% (%d/%d) against production's %.1f%% (%d/%d): difference %+.1f points, 95%% CI [%+.1f, %+.1f]",
		100*cmp.Candidate.PassRate, cmp.Candidate.Passed, cmp.Candidate.Total, 100*cmp.Base.PassRate, cmp.Base.Passed, cmp.Base.Total,
		100*cmp.Difference, 100*ci.Low, 100*ci.High)
	var v rollout.Verdict
	var reason string
	switch {
	case ci.High < -g.margin:
		v, reason = rollout.Fail, fmt.Sprintf("%s: worse than production by more than %.1f points", summary, 100*g.margin)
	case ci.Low >= -g.margin:
		v, reason = rollout.Pass, fmt.Sprintf("%s: not worse than production by more than %.1f points", summary, 100*g.margin)
	default:
		v, reason = rollout.Inconclusive, fmt.Sprintf("%s: the interval straddles -%.1f points; a larger golden set would decide", summary, 100*g.margin)
	}
	ev.Verdict = v
	return remember(v, reason, ev)
}
