package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelslot/modelslot/evals"
)

func init() { commands = append(commands, newEvalCmd) }

// newEvalCmd is `modelslot eval`: a golden set against a deployment, as
// docs/EVALS.md describes.
func newEvalCmd() *cobra.Command {
	var (
		golden       string
		cfg          evals.Config
		headers      []string
		compareURL   string
		compareModel string
		judge        evals.JudgeConfig
		judgeHeaders []string
		output       string
		minPassRate  float64
	)
	cmd := &cobra.Command{
		Use:   "eval --golden FILE --url URL",
		Short: "Check a deployment's answers against a golden set",
		Long: `Send each case of a golden set (JSONL) to URL/v1/chat/completions, check the
answers (exact, contains, regex, json, json_schema, max_tokens, max_latency and
optionally an LLM judge) and report the pass rate with its 95% confidence
interval.

With --compare-url, the same cases run against a candidate too: the report
gives both pass rates, their difference with a 95% interval for paired data,
and the cases that changed outcome. --min-pass-rate makes the command exit
with status 2 when the pass rate (the candidate's, when comparing) is lower.`,
		Example: `  modelslot eval --golden golden.jsonl --url http://127.0.0.1:8000 --min-pass-rate 0.9
  modelslot eval --golden golden.jsonl --url http://blue:8000 --compare-url http://green:8000
  modelslot eval --golden golden.jsonl --url http://127.0.0.1:8000 \
      --judge-url http://127.0.0.1:9000 --judge-model grader --rubric "Correct and polite." --judge-threshold 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			switch {
			case golden == "":
				return errors.New("--golden is required: a JSONL file of cases (see docs/EVALS.md)")
			case cfg.URL == "":
				return errors.New("--url is required, e.g. --url http://127.0.0.1:8000")
			case judge.URL == "" && (fl.Changed("judge-model") || fl.Changed("rubric") || fl.Changed("judge-threshold") || fl.Changed("judge-header")):
				return errors.New("--judge-model, --rubric, --judge-threshold and --judge-header need --judge-url")
			case judge.Threshold < 1 || judge.Threshold > 10:
				return fmt.Errorf("--judge-threshold must be between 1 and 10, got %d", judge.Threshold)
			case compareURL == "" && fl.Changed("compare-model"):
				return errors.New("--compare-model needs --compare-url")
			case fl.Changed("min-pass-rate") && (minPassRate < 0 || minPassRate > 1):
				return fmt.Errorf("--min-pass-rate must be between 0 and 1 (e.g. 0.9), got %v", minPassRate)
			case cfg.Concurrency < 1:
				return fmt.Errorf("--concurrency must be at least 1, got %d", cfg.Concurrency)
			case cfg.Timeout <= 0:
				return fmt.Errorf("--timeout must be positive, got %s", cfg.Timeout)
			case output != "table" && output != "json":
				return fmt.Errorf("--output %q is not valid: use table or json", output)
			}
			var err error
			if cfg.Headers, err = parseHeaders(headers); err != nil {
				return err
			}
			cases, err := evals.LoadGoldenSet(golden)
			if err != nil {
				return err
			}
			if judge.URL != "" {
				if judge.Headers, err = parseHeaders(judgeHeaders); err != nil {
					return err
				}
				cfg.Judge = &judge
			}
			stdout := cmd.OutOrStdout()
			write := func(v interface{ WriteTable(io.Writer) error }) error {
				if output == "json" {
					enc := json.NewEncoder(stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(v)
				}
				return v.WriteTable(stdout)
			}
			var gated *evals.Result
			if compareURL == "" {
				res, err := evals.Run(cmd.Context(), cfg, cases)
				if err != nil {
					return err
				}
				if err := write(res); err != nil {
					return err
				}
				gated = res
			} else {
				cand := cfg
				cand.URL = compareURL
				if compareModel != "" {
					cand.Model = compareModel
				}
				cmp, err := evals.Compare(cmd.Context(), cfg, cand, cases)
				if err != nil {
					return err
				}
				if err := write(cmp); err != nil {
					return err
				}
				gated = cmp.Candidate
			}
			if fl.Changed("min-pass-rate") && gated.PassRate < minPassRate {
				fmt.Fprintf(cmd.ErrOrStderr(), "pass rate %.1f%% (%d/%d) of %s is below --min-pass-rate %.1f%%\n",
					100*gated.PassRate, gated.Passed, gated.Total, gated.URL, 100*minPassRate)
				return exitError{code: 2}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&golden, "golden", "", "golden set: JSONL file of cases")
	f.StringVar(&cfg.URL, "url", "", "base URL of the OpenAI-compatible server (the base, when comparing)")
	f.StringVar(&cfg.Model, "model", "default", "model name sent in each request")
	f.StringArrayVar(&headers, "header", nil, "extra request header K=V (repeatable), sent to --url and --compare-url")
	f.IntVar(&cfg.Concurrency, "concurrency", 4, "cases run at once")
	f.DurationVar(&cfg.Timeout, "timeout", 60*time.Second, "per-request timeout (also for judge calls)")
	f.StringVar(&compareURL, "compare-url", "", "candidate base URL: run the golden set against both and compare")
	f.StringVar(&compareModel, "compare-model", "", "model name sent to --compare-url (default: --model)")
	f.StringVar(&judge.URL, "judge-url", "", "base URL of an OpenAI-compatible judge model; grades every answer 1-10")
	f.StringVar(&judge.Model, "judge-model", "default", "judge model name")
	f.StringVar(&judge.Rubric, "rubric", "", "what a good answer is, for the judge (a case's \"rubric\" overrides it)")
	f.IntVar(&judge.Threshold, "judge-threshold", 7, "lowest passing judge score, 1-10")
	f.StringArrayVar(&judgeHeaders, "judge-header", nil, "extra judge request header K=V (repeatable)")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.Float64Var(&minPassRate, "min-pass-rate", 0, "exit with status 2 when the pass rate (the candidate's, when comparing) is below this, 0..1")
	return cmd
}
