package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/client"
	"github.com/modelslot/modelslot/rollout"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newRolloutCmd) }

func newRolloutCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Start and steer gated rollouts: start, status, pause, resume, promote, abort, history",
		Long: `A rollout moves a slot's deployment into production following a plan
(docs/ROLLOUTS.md, examples/plan-*.yaml): traffic steps, bakes judged by
anytime-valid statistics on errors, latency, time to first token and tokens/s,
a swap, and a watch after it. A failing verdict or an abort rolls back
automatically (traffic to 0 with routing cookies reset; a swap back after a
swap).`,
	}
	f.register(cmd)
	var planFile string
	var watch bool
	start := &cobra.Command{
		Use:   "start SLOT --plan plan.yaml [--watch]",
		Short: "Start a rollout of SLOT into production",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if planFile == "" {
				return modelslot.Errorf(modelslot.EINVALID, "rollout start: give the plan with --plan FILE (see examples/plan-canary.yaml)")
			}
			b, err := os.ReadFile(planFile)
			if err != nil {
				return modelslot.Errorf(modelslot.EINVALID, "rollout start: %v", err)
			}
			// Validate here too, so a bad plan fails before any request.
			if _, err := rollout.ParsePlan(b); err != nil {
				return err
			}
			ro, err := c.StartRollout(cmd.Context(), f.app, args[0], string(b))
			if err != nil {
				return err
			}
			if f.json() && !watch {
				return printJSON(cmd.OutOrStdout(), ro)
			}
			println(cmd.OutOrStdout(), "rollout %s started: %s into production", ro.ID, ro.Slot)
			if watch {
				return watchRollout(cmd.Context(), cmd.OutOrStdout(), c, ro.ID)
			}
			return nil
		},
	}
	start.Flags().StringVar(&planFile, "plan", "", "rollout plan (YAML)")
	start.Flags().BoolVar(&watch, "watch", false, "follow the rollout until it ends")
	cmd.AddCommand(start)

	var statusWatch bool
	var id string
	status := &cobra.Command{
		Use:   "status [--watch] [--id ID]",
		Short: "Show the app's active rollout (or --id): step, traffic, verdicts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			var ro *rollout.Rollout
			if id != "" {
				ro, err = c.Rollout(cmd.Context(), id)
			} else {
				ro, err = c.ActiveRollout(cmd.Context(), f.app)
				if modelslot.ErrorCode(err) == modelslot.ENOTFOUND {
					// No active one: show the latest.
					hist, herr := c.Rollouts(cmd.Context(), f.app, 1)
					if herr == nil && len(hist) > 0 {
						ro, err = hist[0], nil
					}
				}
			}
			if err != nil {
				return err
			}
			if statusWatch {
				return watchRollout(cmd.Context(), cmd.OutOrStdout(), c, ro.ID)
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), ro)
			}
			io.WriteString(cmd.OutOrStdout(), ro.Describe())
			return nil
		},
	}
	status.Flags().BoolVar(&statusWatch, "watch", false, "follow the rollout live until it ends")
	status.Flags().StringVar(&id, "id", "", "a rollout id (default: the app's active or latest rollout)")
	cmd.AddCommand(status)

	for _, op := range []struct{ name, short string }{
		{"pause", "Pause the active rollout where it is (traffic stays as it is)"},
		{"resume", "Resume a paused rollout"},
		{"promote", "Skip the rest of the analysis (recorded as a manual override) and go on to the end"},
		{"abort", "Abort the rollout and roll back: traffic to 0, and a swap back if it had swapped"},
	} {
		var reason string
		c := &cobra.Command{
			Use:   op.name,
			Short: op.short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := f.client()
				if err != nil {
					return err
				}
				ro, err := c.RolloutCommand(cmd.Context(), f.app, op.name, reason)
				if err != nil {
					return err
				}
				if f.json() {
					return printJSON(cmd.OutOrStdout(), ro)
				}
				println(cmd.OutOrStdout(), "rollout %s: %s (%s)", ro.ID, ro.State, ro.StepSummary())
				return nil
			},
		}
		if op.name == "abort" {
			c.Flags().StringVar(&reason, "reason", "", "why, for the record")
		}
		cmd.AddCommand(c)
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "history",
		Short: "List past rollouts with their outcome and reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			hist, err := c.Rollouts(cmd.Context(), f.app, 50)
			if err != nil {
				return err
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), hist)
			}
			tw := newTable(cmd.OutOrStdout())
			println(tw, "ID\tSTARTED\tSLOT\tSTATE\tSTEP\tREASON")
			for _, r := range hist {
				println(tw, "%s\t%s\t%s\t%s\t%s\t%s", r.ID, r.CreatedAt.Local().Format(time.DateTime), r.Slot, r.State, r.StepSummary(), oneLine(r.Reason, 100))
			}
			return tw.Flush()
		},
	})
	return cmd
}

func oneLine(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		s = s[:n-3] + "..."
	}
	return s
}

// watchRollout prints the rollout's progress as it changes until it ends.
func watchRollout(ctx context.Context, w io.Writer, c *client.Client, id string) error {
	var last string
	seen := 0
	for {
		ro, err := c.Rollout(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		line := fmt.Sprintf("[%s] %s: %s, %s, %s has %g%% of traffic", time.Now().Format("15:04:05"), ro.ID, ro.State, ro.StepSummary(), ro.Slot, ro.Traffic)
		if line[11:] != last {
			println(w, "%s", line)
			last = line[11:]
		}
		for ; seen < len(ro.Verdicts); seen++ {
			v := ro.Verdicts[seen]
			println(w, "    verdict at step %d (%s, %g%%): %s -> %s: %s", v.Step+1, v.StepKind, v.Percent, v.Verdict, v.Decision, v.Reason)
		}
		if !ro.State.Active() {
			io.WriteString(w, ro.Describe())
			if ro.State != rollout.Succeeded {
				return exitError{code: 3}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
