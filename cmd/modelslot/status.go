package main

import (
	"time"

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
			println(tw, "SLOT\tVERSION\tREVISION\tTRAFFIC\tHEALTHY\tIN-FLIGHT\tBACKEND")
			for _, s := range st.Slots {
				version, rev := "-", "-"
				if d := s.Slot.Deployment; d != nil {
					version, rev = firstNonEmpty(d.Version, "-"), d.Revision
				}
				println(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s", s.Slot.Name, version, rev, pct(s.Percent), yesNo(s.Healthy, s.Health), s.InFlight, firstNonEmpty(s.Backend, "-"))
			}
			tw.Flush()
			if st.Mirror != nil {
				println(w, "mirroring %s of production's requests to %s", pct(st.Mirror.Percent), st.Mirror.Slot)
			}
			if sw := st.LastSwap; sw != nil {
				println(w, "last swap: #%d %s %s -> %s, %s at %s%s", sw.ID, sw.Action, sw.Source, sw.Target, sw.Status, sw.StartedAt.Local().Format(time.DateTime), errSuffix(sw.Error))
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

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}
