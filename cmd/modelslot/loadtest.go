package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/modelslot/modelslot/loadgen"
)

func init() { commands = append(commands, newLoadtestCmd) }

// newLoadtestCmd is `modelslot loadtest`: load against an OpenAI-compatible
// endpoint, measured as docs/LOADTEST.md describes.
func newLoadtestCmd() *cobra.Command {
	var (
		cfg          loadgen.Config
		prompts      string
		headers      []string
		output       string
		compareURL   string
		compareModel string
		rounds       int
		inputStddev  float64
		outputStddev float64
	)
	cmd := &cobra.Command{
		Use:   "loadtest --url URL [--rate R | --concurrency N] [--duration D | --requests N]",
		Short: "Load-test an OpenAI-compatible endpoint: TTFT, ITL, TPOT, throughput, goodput",
		Long: `Send chat completion requests to URL/v1/chat/completions and report latency
percentiles (TTFT, ITL, TPOT, end to end), throughput, errors and goodput.

With --rate the load is open loop: requests are sent at scheduled times
(constant, or Poisson/gamma with --poisson) and timed from their scheduled
time, so a stalled server cannot hide its latency. With --concurrency (or
neither) the load is closed loop: N workers each send their next request when
the previous one ends. The test stops after --duration or --requests,
whichever comes first; with neither, it runs for 30s.

With --compare URL2, the two endpoints run in interleaved rounds (A B A B ...)
and the report gives B/A ratios, the median across rounds.`,
		Example: `  modelslot loadtest --url http://127.0.0.1:8000 --rate 20 --duration 1m --stream --slo-ttft 500ms
  modelslot loadtest --url http://127.0.0.1:8000 --concurrency 16 --requests 1000 --output json
  modelslot loadtest --url http://127.0.0.1:8000 --compare http://127.0.0.1:8080 --rate 50 --requests 2000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fl := cmd.Flags()
			switch {
			case cfg.URL == "":
				return errors.New("--url is required, e.g. --url http://127.0.0.1:8000")
			case fl.Changed("rate") && fl.Changed("concurrency"):
				return errors.New("--rate (open loop) and --concurrency (closed loop) cannot be used together: choose one")
			case fl.Changed("rate") && cfg.Rate <= 0:
				return fmt.Errorf("--rate must be a positive number of requests per second, got %v", cfg.Rate)
			case fl.Changed("concurrency") && cfg.Concurrency <= 0:
				return fmt.Errorf("--concurrency must be at least 1, got %d", cfg.Concurrency)
			case cfg.Poisson && cfg.Rate == 0:
				return errors.New("--poisson needs --rate")
			case fl.Changed("burstiness") && !cfg.Poisson:
				return errors.New("--burstiness needs --poisson")
			case fl.Changed("burstiness") && cfg.Burstiness <= 0:
				return fmt.Errorf("--burstiness must be positive, got %v", cfg.Burstiness)
			case fl.Changed("duration") && cfg.Duration <= 0:
				return fmt.Errorf("--duration must be positive, got %s", cfg.Duration)
			case fl.Changed("requests") && cfg.Requests <= 0:
				return fmt.Errorf("--requests must be at least 1, got %d", cfg.Requests)
			case fl.Changed("max-in-flight") && cfg.Rate == 0:
				return errors.New("--max-in-flight applies to open loop only: add --rate")
			case prompts != "" && (fl.Changed("input-tokens") || fl.Changed("input-tokens-stddev")):
				return errors.New("--input-tokens applies to synthetic prompts only, not with --prompts")
			case cfg.InputTokens.Mean < 1 || cfg.OutputTokens.Mean < 1:
				return errors.New("--input-tokens and --output-tokens must be at least 1")
			case inputStddev < 0 || outputStddev < 0:
				return errors.New("--input-tokens-stddev and --output-tokens-stddev must not be negative")
			case compareURL == "" && (fl.Changed("rounds") || fl.Changed("compare-model")):
				return errors.New("--rounds and --compare-model need --compare URL2")
			case rounds < 1:
				return fmt.Errorf("--rounds must be at least 1, got %d", rounds)
			case output != "table" && output != "json":
				return fmt.Errorf("--output %q is not valid: use table or json", output)
			}
			cfg.InputTokens.Stddev, cfg.OutputTokens.Stddev = inputStddev, outputStddev
			if !cfg.Poisson {
				cfg.Burstiness = 0 // the flag's default applies to --poisson only
			}
			hs, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			cfg.Headers = hs
			if prompts != "" {
				if cfg.Prompts, err = loadgen.LoadPrompts(prompts); err != nil {
					return err
				}
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			return runLoadtest(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, compareURL, compareModel, rounds, output)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.URL, "url", "", "base URL of the OpenAI-compatible server (requests go to URL/v1/chat/completions)")
	f.StringVar(&cfg.Model, "model", "default", "model name sent in each request")
	f.Float64Var(&cfg.Rate, "rate", 0, "open loop: requests per second (constant arrivals unless --poisson)")
	f.BoolVar(&cfg.Poisson, "poisson", false, "open loop: Poisson arrivals (gamma with --burstiness)")
	f.Float64Var(&cfg.Burstiness, "burstiness", 1, "with --poisson: gamma shape of inter-arrival gaps; 1 is Poisson, <1 burstier, >1 steadier")
	f.IntVar(&cfg.Concurrency, "concurrency", 0, "closed loop: number of workers (default 1 when --rate is not given)")
	f.IntVar(&cfg.MaxInFlight, "max-in-flight", 0, "open loop: most requests open at once; arrivals beyond are dropped (default 10x rate, 16..1000)")
	f.DurationVar(&cfg.Duration, "duration", 0, "stop sending after this long (default 30s when --requests is not given)")
	f.IntVar(&cfg.Requests, "requests", 0, "stop after this many requests")
	f.DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "per-request timeout, counted from the scheduled send time")
	f.BoolVar(&cfg.Stream, "stream", false, "stream responses (SSE); needed for TTFT, ITL and TPOT")
	f.StringVar(&prompts, "prompts", "", `JSONL file of prompts: {"prompt": "..."} or {"messages": [...]}, optional "max_tokens"`)
	f.Float64Var(&cfg.InputTokens.Mean, "input-tokens", 128, "synthetic prompts: mean prompt length in tokens")
	f.Float64Var(&inputStddev, "input-tokens-stddev", 0, "synthetic prompts: standard deviation of the prompt length")
	f.Float64Var(&cfg.OutputTokens.Mean, "output-tokens", 64, "mean max_tokens of each request (when a prompt sets none)")
	f.Float64Var(&outputStddev, "output-tokens-stddev", 0, "standard deviation of max_tokens")
	f.DurationVar(&cfg.SLO.TTFT, "slo-ttft", 0, "goodput: most time to first token (0: not checked)")
	f.DurationVar(&cfg.SLO.TPOT, "slo-tpot", 0, "goodput: most time per output token, streaming only (0: not checked)")
	f.DurationVar(&cfg.SLO.E2E, "slo-e2e", 0, "goodput: most end-to-end latency (0: not checked)")
	f.StringArrayVar(&headers, "header", nil, "extra request header K=V (repeatable), e.g. --header 'Authorization=Bearer sk-...'")
	f.Int64Var(&cfg.Seed, "seed", 0, "random seed of arrivals and synthetic prompts")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.StringVar(&compareURL, "compare", "", "compare with this second base URL (B) in interleaved rounds")
	f.StringVar(&compareModel, "compare-model", "", "model name sent to the --compare URL (default: --model)")
	f.IntVar(&rounds, "rounds", 4, "with --compare: rounds, each with a share of --duration/--requests")
	return cmd
}

func runLoadtest(ctx context.Context, stdout, stderr io.Writer, cfg loadgen.Config, compareURL, compareModel string, rounds int, output string) error {
	p := &progressLine{w: stderr}
	if isTerminal(stderr) {
		cfg.Progress = p.show
	}
	defer p.clear()
	write := func(v interface{ WriteTable(io.Writer) error }) error {
		p.clear() // the live line goes before the report starts

		if output == "json" {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		}
		return v.WriteTable(stdout)
	}
	if compareURL == "" {
		rep, err := loadgen.Run(ctx, cfg)
		if rep != nil && (err == nil || errors.Is(err, context.Canceled)) {
			if err != nil {
				p.clear()
				fmt.Fprintln(stderr, "interrupted: the report covers the requests that finished")
			}
			if werr := write(rep); werr != nil {
				return werr
			}
		}
		return err
	}
	b := cfg
	b.URL = compareURL
	if compareModel != "" {
		b.Model = compareModel
	}
	cmp, err := loadgen.Compare(ctx, cfg, b, rounds)
	if err != nil {
		return err
	}
	return write(cmp)
}

// isTerminal reports whether w is a terminal, where a live status line
// makes sense (a variable: tests pretend).
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// parseHeaders turns K=V strings into a header map.
func parseHeaders(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	hs := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--header %q: want KEY=VALUE, e.g. --header 'Authorization=Bearer sk-...'", kv)
		}
		hs[k] = v
	}
	return hs, nil
}

// progressLine rewrites one status line on a terminal; once cleared it
// stays cleared, so that a late update cannot land inside the report.
type progressLine struct {
	mu      sync.Mutex
	w       io.Writer
	shown   bool
	cleared bool
}

func (p *progressLine) show(pr loadgen.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cleared {
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%5.1fs  requests %d  %.1f req/s  errors %d  dropped %d  in flight %d  p50 TTFT %.1fms",
		pr.Elapsed.Seconds(), pr.Requests, pr.RequestsPerSec, pr.Failed, pr.Dropped, pr.InFlight, pr.TTFTP50)
	p.shown = true
}

func (p *progressLine) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown && !p.cleared {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.cleared = true
}
