package main

import (
	"fmt"
	"io"
	"time"

	"github.com/modelslot/modelslot"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newStatusCmd) }

func newStatusCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show an app's slots, deployments, health, traffic, last swap and rollout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.backend(cmd)
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context(), f.app)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if f.json() {
				return printJSON(w, st)
			}
			if f.azure() {
				println(w, "%s", f.azureHeader())
			} else {
				println(w, "app %s (routing generation %d)", st.App, st.Routing.Generation)
			}
			tw := newTable(w)
			// Azure does not tell how many requests a slot is serving.
			inFlight := !f.azure()
			if inFlight {
				println(tw, "SLOT\tVERSION\tREVISION\tTRAFFIC\tHEALTHY\tIN-FLIGHT\tBACKEND")
			} else {
				println(tw, "SLOT\tVERSION\tREVISION\tTRAFFIC\tHEALTHY\tBACKEND")
			}
			for _, s := range st.Slots {
				version, rev := "-", "-"
				if d := s.Slot.Deployment; d != nil {
					version, rev = firstNonEmpty(d.Version, "-"), d.Revision
				}
				if inFlight {
					println(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s", s.Slot.Name, version, rev, pct(s.Percent), yesNo(s.Healthy, s.Health), s.InFlight, firstNonEmpty(s.Backend, "-"))
				} else {
					println(tw, "%s\t%s\t%s\t%s\t%s\t%s", s.Slot.Name, version, rev, pct(s.Percent), yesNo(s.Healthy, s.Health), firstNonEmpty(s.Backend, "-"))
				}
			}
			tw.Flush()
			printPreviews(w, st.Slots)
			if st.Mirror != nil {
				println(w, "mirroring %s of production's requests to %s", pct(st.Mirror.Percent), st.Mirror.Slot)
			}
			if sw := st.LastSwap; sw != nil {
				id := ""
				if sw.ID != 0 { // Azure keeps no swap ids
					id = fmt.Sprintf("#%d ", sw.ID)
				}
				println(w, "last swap: %s%s %s -> %s, %s at %s%s", id, sw.Action, sw.Source, sw.Target, sw.Status, sw.StartedAt.Local().Format(time.DateTime), errSuffix(sw.Error))
			} else {
				println(w, "last swap: none")
			}
			if r := st.Rollout; r != nil {
				println(w, "rollout %s on %s: %s, step %s", r.ID, r.Slot, r.State, r.Step)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// printPreviews names every pending swap preview once (both slots of a
// preview show it): until it is completed or reset, both slots refuse
// changes.
func printPreviews(w io.Writer, slots []modelslot.SlotStatus) {
	seen := map[string]bool{}
	for _, s := range slots {
		other := s.Slot.PreparedForSwap
		if other == "" || seen[other] {
			continue
		}
		seen[s.Slot.Name] = true
		src, dst := s.Slot.Name, other
		if src == modelslot.Production {
			src, dst = dst, src
		}
		swap := "modelslot swap " + src
		if dst != modelslot.Production {
			swap += " --target-slot " + dst
		}
		println(w, "swap preview pending: %s is prepared for swap with %s (it runs with %s's slot settings); complete it with `%s` or cancel it with `%s --action reset`", src, dst, dst, swap, swap)
	}
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
