package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelslot/modelslot/azure"
	"github.com/modelslot/modelslot/sim"
)

func init() { commands = append(commands, newSimCmd) }

// newSimCmd is `modelslot sim`: a simulated OpenAI-compatible model server.
func newSimCmd() *cobra.Command {
	var (
		listen      string
		revision    string
		answersPath string
		errorKind   string
		cfg         sim.Config
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a simulated OpenAI-compatible model server",
		Long: `Run a simulated OpenAI-compatible model server with configurable latency,
output length, failures and wrong answers. Its behaviour can be changed while
it runs with PATCH /admin/config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.ErrorKind = sim.ErrorKind(errorKind)
			if answersPath != "" {
				answers, err := sim.LoadAnswers(answersPath)
				if err != nil {
					return err
				}
				cfg.Answers = answers
			}
			srv, err := sim.NewChecked(cfg)
			if err != nil {
				return err
			}
			return serveSim(cmd.Context(), cmd, listen, showRevision(srv, revision), srv.Config().Model)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8000", "address to listen on")
	f.StringVar(&cfg.Model, "model", "sim", "model id reported in responses and /v1/models")
	f.StringVar(&revision, "revision", os.Getenv(revisionSetting), "revision shown in the "+revisionHeader+" header of every answer, as the Azure driver asks of a slot's health path (default $"+revisionSetting+", the app setting it deploys)")
	f.DurationVar(&cfg.TTFT, "ttft", 0, "time to first token (whole delay of a non-streaming response)")
	f.DurationVar(&cfg.ITL, "itl", 0, "inter-token latency of streamed tokens")
	f.Float64Var(&cfg.Jitter, "jitter", 0, "0..1: each delay is scaled by a uniform factor in [1-jitter, 1+jitter]")
	f.IntVar(&cfg.Tokens, "tokens", 16, "output tokens per response, capped by a request's max_tokens")
	f.Float64Var(&cfg.ErrorRate, "error-rate", 0, "0..1 share of completion requests that fail")
	f.StringVar(&errorKind, "error-kind", string(sim.Error500), `failure kind: "500", "429" or "mixed"`)
	f.DurationVar(&cfg.Startup, "startup", 0, "/health answers 503 for this long after start")
	f.Int64Var(&cfg.Seed, "seed", 0, "random seed; 0 picks one")
	f.StringVar(&answersPath, "answers", "", `JSONL file of canned answers: {"prompt": "...", "answer": "..."} per line`)
	f.Float64Var(&cfg.WrongRate, "wrong-rate", 0, `0..1 share of answers replaced by "I don't know."`)
	f.Float64Var(&cfg.MalformedRate, "malformed-rate", 0, "0..1 share of answers that are truncated JSON")
	f.Float64Var(&cfg.OutputScale, "output-scale", 1, "multiplies the number of output tokens")
	return cmd
}

// The Azure driver writes a deployment's revision into an app setting and
// waits until the slot's health path shows it in a header: the simulator
// does, so that it can stand in for a model server there.
const (
	revisionSetting = azure.SettingRevision
	revisionHeader  = azure.DefaultRevisionHeader
)

// showRevision sets the revision header on every answer of h (h itself
// when revision is empty).
func showRevision(h http.Handler, revision string) http.Handler {
	if revision == "" {
		return h
	}
	v := []string{revision}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()[revisionHeader] = v
		h.ServeHTTP(w, r)
	})
}

// serveSim serves srv on addr until ctx is cancelled, then shuts down,
// giving in-flight requests a few seconds to finish.
func serveSim(ctx context.Context, cmd *cobra.Command, addr string, srv http.Handler, model string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sim: listen: %w", err)
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(cmd.OutOrStdout(), "sim %s listening on http://%s\n", model, ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("sim: serve: %w", err)
	case <-ctx.Done():
	}
	// The parent context is done; shutdown needs a fresh deadline of its own.
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		hs.Close() //nolint:errcheck // already giving up on graceful shutdown
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("sim: serve: %w", err)
	}
	return nil
}
