package main

import (
	"io"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/client"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newTrafficCmd) }

func newTrafficCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "traffic",
		Short: "Set, show and clear the traffic split between slots",
	}
	f.register(cmd)
	var resetPins bool
	set := &cobra.Command{
		Use:   "set SLOT=PERCENT [SLOT=PERCENT...]",
		Short: "Replace all routing rules; production gets the rest (the shares add up to 100 at most)",
		Example: `  modelslot traffic set staging=10
  modelslot traffic set staging=10 canary=5 --reset-pins`,
		Args: someArgs("traffic set", "give each slot's share", "modelslot traffic set staging=10 (production gets the rest)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.backend(cmd)
			if err != nil {
				return err
			}
			rules, err := parseAssignments(args, "traffic set")
			if err != nil {
				return err
			}
			if _, err := c.SetTraffic(cmd.Context(), f.app, rules, modelslot.TrafficOptions{ResetPins: resetPins}); err != nil {
				return err
			}
			if resetPins && f.azure() {
				println(cmd.ErrOrStderr(), "note: --reset-pins: Azure cannot invalidate routing cookies: users pinned by the x-ms-routing-name cookie keep their slot until it expires (up to 1 hour); to move everyone at once, swap")
			}
			t, err := c.Traffic(cmd.Context(), f.app)
			if err != nil {
				return err
			}
			return f.printTraffic(cmd.OutOrStdout(), t)
		},
	}
	set.Flags().BoolVar(&resetPins, "reset-pins", false, "invalidate every routing cookie, so pinned users follow the new split too")
	cmd.AddCommand(set)
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Show the split, the routing generation and mirroring",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.backend(cmd)
			if err != nil {
				return err
			}
			t, err := c.Traffic(cmd.Context(), f.app)
			if err != nil {
				return err
			}
			return f.printTraffic(cmd.OutOrStdout(), t)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "clear",
		Short: "Send all traffic to production and invalidate routing cookies (on Azure: remove every rampUpRule)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.backend(cmd)
			if err != nil {
				return err
			}
			t, err := c.ClearTraffic(cmd.Context(), f.app)
			if err != nil {
				return err
			}
			return f.printTraffic(cmd.OutOrStdout(), t)
		},
	})
	mirror := noAzure(&cobra.Command{
		Use:   "mirror SLOT=PERCENT | clear",
		Short: "Mirror a share of production's requests to a slot in the background (shadow traffic)",
		Args:  oneArg("traffic mirror", "give the slot and the share of production's requests to mirror to it, or clear", "modelslot traffic mirror staging=5"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.backend(cmd)
			if err != nil {
				return err
			}
			m, ok := c.(mirrorPlatform)
			if !ok {
				return modelslot.Errorf(modelslot.EINVALID, "traffic mirror: Azure App Service cannot mirror traffic: shadow traffic is a feature of the local gateway (--platform local)")
			}
			var t *client.Traffic
			if args[0] == "clear" {
				t, err = m.ClearMirror(cmd.Context(), f.app)
			} else {
				rules, perr := parseAssignments(args, "traffic mirror")
				if perr != nil {
					return perr
				}
				if len(rules) != 1 {
					return modelslot.Errorf(modelslot.EINVALID, "traffic mirror: name one slot, e.g. staging=20")
				}
				t, err = m.SetMirror(cmd.Context(), f.app, modelslot.MirrorRule{Slot: rules[0].Slot, Percent: rules[0].Percent})
			}
			if err != nil {
				return err
			}
			return f.printTraffic(cmd.OutOrStdout(), t)
		},
	})
	cmd.AddCommand(mirror)
	return cmd
}

func (f *clientFlags) printTraffic(w io.Writer, t *client.Traffic) error {
	if f.json() {
		return printJSON(w, t)
	}
	tw := newTable(w)
	println(tw, "SLOT\tSHARE")
	for _, r := range t.Split {
		println(tw, "%s\t%s", r.Slot, pct(r.Percent))
	}
	tw.Flush()
	if f.azure() {
		println(w, "routing: rampUpRules of App Service app %s; users pinned by the x-ms-routing-name cookie keep their slot for up to an hour", f.app)
		return nil
	}
	println(w, "routing generation %d (cookies of older generations are ignored)", t.Routing.Generation)
	if t.Mirror != nil {
		println(w, "mirroring %s of production's requests to %s", pct(t.Mirror.Percent), t.Mirror.Slot)
	} else {
		println(w, "mirroring: off")
	}
	return nil
}
