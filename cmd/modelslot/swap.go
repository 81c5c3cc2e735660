package main

import (
	"github.com/modelslot/modelslot"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newSwapCmd) }

func newSwapCmd() *cobra.Command {
	var (
		f              clientFlags
		target, action string
		history        bool
	)
	cmd := &cobra.Command{
		Use:   "swap SLOT [--target-slot production] [--action swap|preview|reset]",
		Short: "Swap a slot's deployment into production (with warm-up and draining); swap again to roll back",
		Long: `Swap SLOT's deployment into the target slot (production by default), as Azure
does: apply the target's sticky settings to the source, warm it up, flip routing
atomically, and let the old production deployment finish its in-flight requests
and streams before it settles into SLOT (it stays warm, so swapping back is
instant). --action preview stops after the settings phase and locks both slots
until 'swap' completes it or 'reset' cancels it. A failed swap leaves production
untouched and says which phase failed. 'swap --history' lists past swaps.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if history {
				return cobra.NoArgs(cmd, args)
			}
			return oneArg("swap", "name the slot to swap into production", "modelslot swap staging")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.backend(cmd)
			if err != nil {
				return err
			}
			if history {
				recs, err := c.Swaps(cmd.Context(), f.app, 50)
				if err != nil {
					return err
				}
				if f.json() {
					return printJSON(cmd.OutOrStdout(), recs)
				}
				tw := newTable(cmd.OutOrStdout())
				println(tw, "ID\tSTARTED\tACTION\tSOURCE\tTARGET\tSTATUS\tPHASE\tERROR")
				for _, r := range recs {
					println(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", idOrDash(r.ID), r.StartedAt.Local().Format("2006-01-02 15:04:05"), r.Action, r.Source, r.Target, r.Status, r.Phase, r.Error)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if f.azure() {
					println(cmd.ErrOrStderr(), "note: Azure keeps only the last swap of an app (slotSwapStatus)")
				}
				return nil
			}
			rec, err := c.Swap(cmd.Context(), f.app, modelslot.SwapRequest{Source: args[0], Target: target, Action: modelslot.SwapAction(action)})
			if err != nil {
				return err
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), rec)
			}
			switch rec.Status {
			case modelslot.SwapPreviewed:
				println(cmd.OutOrStdout(), "preview ready: %s has the settings of %s; complete with `modelslot swap %s` or cancel with `modelslot swap %s --action reset`", rec.Source, rec.Target, rec.Source, rec.Source)
			case modelslot.SwapReset:
				println(cmd.OutOrStdout(), "preview of %s into %s cancelled", rec.Source, rec.Target)
			default:
				println(cmd.OutOrStdout(), "swapped: %s now serves revision %s; %s holds revision %s (swap again to roll back)", rec.Target, rec.SourceRevision, rec.Source, firstNonEmpty(rec.TargetRevision, "none"))
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&target, "target-slot", "production", "slot to swap into")
	cmd.Flags().StringVar(&action, "action", "swap", "swap, preview or reset")
	cmd.Flags().BoolVar(&history, "history", false, "list past swaps instead")
	return cmd
}
