package main

import (
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newSlotCmd) }

func newSlotCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "slot",
		Short: "Create, list and delete deployment slots",
	}
	f.register(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the app's slots with their deployments and traffic",
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
			if f.json() {
				return printJSON(cmd.OutOrStdout(), st.Slots)
			}
			tw := newTable(cmd.OutOrStdout())
			println(tw, "SLOT\tVERSION\tREVISION\tTRAFFIC\tHEALTHY\tBACKEND")
			for _, s := range st.Slots {
				version, rev := "-", "-"
				if d := s.Slot.Deployment; d != nil {
					version, rev = firstNonEmpty(d.Version, "-"), d.Revision
				}
				println(tw, "%s\t%s\t%s\t%s\t%s\t%s", s.Slot.Name, version, rev, pct(s.Percent), yesNo(s.Healthy, s.Health), firstNonEmpty(s.Backend, "-"))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			printPreviews(cmd.OutOrStdout(), st.Slots)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "create NAME",
		Short: "Create an empty slot (a DNS label; at most 5 per app unless configured)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.backend(cmd)
			if err != nil {
				return err
			}
			s, err := c.CreateSlot(cmd.Context(), f.app, args[0])
			if err != nil {
				return err
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), s)
			}
			how := "--url ..."
			if f.azure() {
				how = "--platform azure --image ..."
			}
			println(cmd.OutOrStdout(), "slot %s created in app %s; deploy to it with `modelslot deploy %s %s`", s.Name, f.app, s.Name, how)
			return nil
		},
	})
	var force bool
	del := &cobra.Command{
		Use:   "delete NAME [--force]",
		Short: "Delete a slot (production cannot be deleted; a slot with traffic needs --force)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.backend(cmd)
			if err != nil {
				return err
			}
			if err := c.DeleteSlot(cmd.Context(), f.app, args[0], force); err != nil {
				return err
			}
			println(cmd.OutOrStdout(), "slot %s deleted", args[0])
			return nil
		},
	}
	del.Flags().BoolVar(&force, "force", false, "delete even if the slot receives traffic (its share goes back to production)")
	cmd.AddCommand(del)
	return cmd
}

func yesNo(ok bool, why string) string {
	if ok {
		return "yes"
	}
	if why == "" {
		return "no"
	}
	return "no (" + why + ")"
}
