package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/modelslot/modelslot"
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
swap).

With --platform azure there is no daemon: 'rollout start' runs the controller
in the foreground against the App Service app, with Azure Monitor as metric
source and the rollout's state in a local SQLite file (--state, default
modelslot-azure.db in --data or the current directory). It prints progress
until the rollout ends: exit status 0 when it succeeded, 3 when it rolled
back. Ctrl-C stops it between two actions (exit status 130); the same command
resumes it from the state file. 'resume', 'promote' and 'abort' run the
controller in the foreground the same way; 'status' and 'history' read the
state file.`,
	}
	f.register(cmd)
	var (
		state    string
		interval time.Duration
	)
	cmd.PersistentFlags().StringVar(&state, "state", "", "--platform azure: the rollout state file (SQLite; default "+DefaultAzureState+" in --data or the current directory)")
	cmd.PersistentFlags().DurationVar(&interval, "interval", 0, "replace the plan's interval between looks (tests, demos)")
	cmd.PersistentFlags().MarkHidden("interval")
	markGroup(cmd.PersistentFlags(), groupAzure, "state")
	// onAzure resolves --platform and refuses the azure-only flags locally.
	onAzure := func(cmd *cobra.Command) (bool, error) {
		p, err := f.resolvePlatform(cmd)
		if err != nil {
			return false, err
		}
		if p != platformAzure {
			for _, name := range []string{"state", "interval"} {
				if cmd.Flags().Changed(name) {
					return false, modelslot.Errorf(modelslot.EINVALID, "--%s applies only to --platform azure: the local daemon runs and records its rollouts itself", name)
				}
			}
		}
		return p == platformAzure, nil
	}
	var planFile string
	var watch bool
	start := &cobra.Command{
		Use:   "start SLOT --plan plan.yaml [--watch]",
		Short: "Start a rollout of SLOT into production",
		Args:  oneArg("rollout start", "name the slot to roll out into production", "modelslot rollout start staging --plan examples/plan-quick-demo.yaml --watch"),
		RunE: func(cmd *cobra.Command, args []string) error {
			az, err := onAzure(cmd)
			if err != nil {
				return err
			}
			if planFile == "" {
				return modelslot.Errorf(modelslot.EINVALID, "rollout start: give the plan with --plan FILE (see examples/plan-canary.yaml)")
			}
			b, err := os.ReadFile(planFile)
			if err != nil {
				return modelslot.Errorf(modelslot.EINVALID, "rollout start: cannot read the plan file %s: %v", planFile, unwrapPathErr(err))
			}
			// Validate here too, so a bad plan fails before any request.
			if _, err := rollout.ParsePlan(b); err != nil {
				return modelslot.Wrapf(err, modelslot.EINVALID, "%s: %s", planFile, modelslot.ErrorMessage(err))
			}
			if az {
				return f.runAzureRollout(cmd, state, interval, azureRolloutOp{name: "start", slot: args[0], plan: b})
			}
			c, err := f.client()
			if err != nil {
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
			for _, w := range ro.Warnings {
				println(cmd.ErrOrStderr(), "warning: %s", w)
			}
			if watch {
				return f.watchLocal(cmd, c.Rollout, ro.ID)
			}
			return nil
		},
	}
	start.Flags().StringVar(&planFile, "plan", "", "rollout plan (YAML)")
	start.Flags().BoolVar(&watch, "watch", false, "follow the rollout until it ends (always, with --platform azure)")
	cmd.AddCommand(start)

	var statusWatch bool
	var id string
	status := &cobra.Command{
		Use:   "status [--watch] [--id ID]",
		Short: "Show the app's active rollout (or --id): step, traffic, verdicts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			src, closeSrc, err := f.rolloutSource(cmd, onAzure, state)
			if err != nil {
				return err
			}
			defer closeSrc()
			var ro *rollout.Rollout
			if id != "" {
				ro, err = src.get(cmd.Context(), id)
			} else {
				ro, err = src.active(cmd.Context(), f.app)
				if modelslot.ErrorCode(err) == modelslot.ENOTFOUND {
					// No active one: show the latest.
					hist, herr := src.history(cmd.Context(), f.app, 1)
					if herr == nil && len(hist) > 0 {
						ro, err = hist[0], nil
					}
				}
			}
			if err != nil {
				return err
			}
			if statusWatch {
				if f.azure() {
					return watchRollout(cmd.Context(), cmd.OutOrStdout(), src.get, ro.ID, time.Second)
				}
				return f.watchLocal(cmd, src.get, ro.ID)
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), ro)
			}
			io.WriteString(cmd.OutOrStdout(), ro.Describe())
			io.WriteString(cmd.OutOrStdout(), ro.Progress(time.Now()))
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
				az, err := onAzure(cmd)
				if err != nil {
					return err
				}
				if az {
					if op.name == "pause" {
						return modelslot.Errorf(modelslot.EINVALID, "rollout pause: with --platform azure the rollout runs inside `modelslot rollout start`: stop that process with Ctrl-C; the rollout waits in its state file until `rollout start`, `resume`, `promote` or `abort` runs it again")
					}
					return f.runAzureRollout(cmd, state, interval, azureRolloutOp{name: op.name, reason: reason})
				}
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
		if op.name == "pause" {
			noAzure(c) // the Azure controller runs in the foreground: Ctrl-C it
		}
		cmd.AddCommand(c)
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "history",
		Short: "List past rollouts with their outcome and reason",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			src, closeSrc, err := f.rolloutSource(cmd, onAzure, state)
			if err != nil {
				return err
			}
			defer closeSrc()
			hist, err := src.history(cmd.Context(), f.app, 50)
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

// rolloutSource reads rollouts: the daemon's API, or the state file of
// --platform azure.
type rolloutSource struct {
	get     func(ctx context.Context, id string) (*rollout.Rollout, error)
	active  func(ctx context.Context, app string) (*rollout.Rollout, error)
	history func(ctx context.Context, app string, limit int) ([]*rollout.Rollout, error)
}

func (f *clientFlags) rolloutSource(cmd *cobra.Command, onAzure func(*cobra.Command) (bool, error), state string) (*rolloutSource, func(), error) {
	az, err := onAzure(cmd)
	if err != nil {
		return nil, nil, err
	}
	if az {
		ar, err := f.openAzureRollouts(cmd, state, 0, nil, false)
		if err != nil {
			return nil, nil, err
		}
		return &rolloutSource{get: ar.m.Get, active: ar.m.Active, history: ar.m.History}, ar.close, nil
	}
	c, err := f.client()
	if err != nil {
		return nil, nil, err
	}
	return &rolloutSource{get: c.Rollout, active: c.ActiveRollout, history: c.Rollouts}, func() {}, nil
}

// watchLocal follows a rollout of the daemon until it ends; interrupted,
// it says that the rollout goes on and how to steer it.
func (f *clientFlags) watchLocal(cmd *cobra.Command, get func(context.Context, string) (*rollout.Rollout, error), id string) error {
	err := watchRollout(cmd.Context(), cmd.OutOrStdout(), get, id, time.Second)
	if err != nil || cmd.Context().Err() == nil {
		return err
	}
	app := ""
	if f.app != "default" {
		app = " --app " + f.app
	}
	println(cmd.ErrOrStderr(), "\nstopped watching: rollout %s goes on in the daemon. Follow it again with `modelslot rollout status --watch%s`; pause it with `modelslot rollout pause%s`, or abort it (roll back) with `modelslot rollout abort%s`.", id, app, app, app)
	return exitError{code: 130}
}

// watchRollout prints the rollout's progress as it changes until it ends,
// reading it every period: a line per change of state or step, each
// verdict, and the judged phase's numbers at every look.
func watchRollout(ctx context.Context, w io.Writer, get func(context.Context, string) (*rollout.Rollout, error), id string, every time.Duration) error {
	var last string
	var lastLook time.Time
	seen := 0
	for {
		ro, err := get(ctx, id)
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
		if ph := ro.Current.GetPhase(); ph != nil && ph.LookedAt.After(lastLook) {
			lastLook = ph.LookedAt
			io.WriteString(w, ro.Progress(time.Now()))
		}
		for ; seen < len(ro.Verdicts); seen++ {
			v := ro.Verdicts[seen]
			println(w, "    verdict at step %d (%s, %g%%): %s -> %s: %s%s", v.Step+1, v.StepKind, v.Percent, v.Verdict, v.Decision, v.Reason, v.JudgedSpan())
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
		case <-time.After(every):
		}
	}
}
