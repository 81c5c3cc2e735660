package evals

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Comparison is the outcome of the same golden set against a base and a
// candidate deployment, paired case by case.
type Comparison struct {
	Base      *Result `json:"base"`
	Candidate *Result `json:"candidate"`
	// Difference is the candidate's pass rate minus the base's, with the
	// 95% interval of Newcombe's method for paired proportions.
	Difference   float64  `json:"difference"`
	DifferenceCI Interval `json:"difference_ci95"`
	// McNemarP is the two-sided exact McNemar p-value of the changed
	// cases: how likely so lopsided a split of them is by chance.
	McNemarP float64 `json:"mcnemar_p"`
	// Changed lists the cases whose outcome differs, in golden-set order.
	Changed []Change `json:"changed"`
}

// Change is a case whose outcome differs between base and candidate.
type Change struct {
	ID string `json:"id"`
	// Direction is "pass->fail" (a regression) or "fail->pass" (a fix).
	Direction string `json:"direction"`
	// Failures are the candidate's failures for a regression, the base's
	// for a fix.
	Failures []Failure `json:"failures"`
}

// Directions of a Change.
const (
	Regressed = "pass->fail"
	Fixed     = "fail->pass"
)

// Compare runs cases against base, then against cand, and compares the
// outcomes case by case.
func Compare(ctx context.Context, base, cand Config, cases []Case) (*Comparison, error) {
	if err := base.Validate(); err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	if err := cand.Validate(); err != nil {
		return nil, fmt.Errorf("candidate: %w", err)
	}
	rb, err := Run(ctx, base, cases)
	if err != nil {
		return nil, err
	}
	rc, err := Run(ctx, cand, cases)
	if err != nil {
		return nil, err
	}
	return compareResults(rb, rc), nil
}

func compareResults(rb, rc *Result) *Comparison {
	cmp := &Comparison{Base: rb, Candidate: rc, Difference: rc.PassRate - rb.PassRate}
	var p pairs
	for i := range rb.Cases {
		b, c := rb.Cases[i], rc.Cases[i]
		switch {
		case b.Pass && c.Pass:
			p.both++
		case b.Pass:
			p.baseOnly++
			cmp.Changed = append(cmp.Changed, Change{ID: b.ID, Direction: Regressed, Failures: c.Failures})
		case c.Pass:
			p.candOnly++
			cmp.Changed = append(cmp.Changed, Change{ID: b.ID, Direction: Fixed, Failures: b.Failures})
		default:
			p.neither++
		}
	}
	cmp.DifferenceCI = newcombePaired(p)
	cmp.McNemarP = mcnemarExact(p.baseOnly, p.candOnly)
	return cmp
}

// WriteTable writes the result as aligned text: a line per case, then
// the pass rate.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CASE\tRESULT\tLATENCY\tTOKENS\tJUDGE\tFAILURES")
	for _, c := range r.Cases {
		judge := "-"
		if c.JudgeScore > 0 {
			judge = fmt.Sprint(c.JudgeScore)
		}
		fmt.Fprintf(tw, "%s\t%s\t%dms\t%d\t%s\t%s\n", c.ID, outcome(c.Pass), c.Latency.Milliseconds(), c.OutputTokens, judge, failures(c.Failures))
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "%s (%s)\tpass rate %s\n", r.URL, r.Model, rate(r))
	return tw.Flush()
}

// WriteTable writes the comparison as aligned text.
func (c *Comparison) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Base:\t%s (%s)\tpass rate %s\n", c.Base.URL, c.Base.Model, rate(c.Base))
	fmt.Fprintf(tw, "Candidate:\t%s (%s)\tpass rate %s\n", c.Candidate.URL, c.Candidate.Model, rate(c.Candidate))
	fmt.Fprintf(tw, "Difference:\t%+.1f points\t95%% CI [%+.1f, %+.1f], McNemar p = %.3g\n",
		100*c.Difference, 100*c.DifferenceCI.Low, 100*c.DifferenceCI.High, c.McNemarP)
	if len(c.Changed) == 0 {
		fmt.Fprintln(tw, "Changed:\tnone")
		return tw.Flush()
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "CHANGED\tDIRECTION\tFAILURES")
	for _, ch := range c.Changed {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ch.ID, ch.Direction, failures(ch.Failures))
	}
	return tw.Flush()
}

func outcome(pass bool) string {
	if pass {
		return "pass"
	}
	return "FAIL"
}

func rate(r *Result) string {
	return fmt.Sprintf("%.1f%% (%d/%d), 95%% CI [%.1f%%, %.1f%%]",
		100*r.PassRate, r.Passed, r.Total, 100*r.PassRateCI.Low, 100*r.PassRateCI.High)
}

func failures(fs []Failure) string {
	if len(fs) == 0 {
		return "-"
	}
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.Check + ": " + f.Reason
	}
	return strings.Join(parts, "; ")
}
