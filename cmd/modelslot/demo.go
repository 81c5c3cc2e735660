package main

import (
	"github.com/modelslot/modelslot/demo"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newDemoCmd) }

func newDemoCmd() *cobra.Command {
	var o demo.Options
	var ha bool
	cmd := &cobra.Command{
		Use:   "demo [--keep]",
		Short: "Run the whole loop on the embedded default: slots, split, swap, swap back, gated rollouts",
		Long: `Run modelslot end to end in one process, with no cloud account: a daemon on a
fresh SQLite store in a temporary directory, simulated model versions, live
traffic, a staging validation (load test and golden-set eval), a 10% split, a
swap and a swap back, then a gated rollout that promotes a good v2 step by step
and one that rolls a bad v3 back automatically. It exits 0 only when every
outcome happened as expected; --keep leaves it running afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Out = cmd.OutOrStdout()
			if ha {
				return demo.RunHA(cmd.Context(), o)
			}
			return demo.Run(cmd.Context(), o)
		},
	}
	cmd.Flags().BoolVar(&o.Keep, "keep", false, "leave the daemon running afterwards and print the gateway URL and a curl line")
	cmd.Flags().Float64Var(&o.Rate, "rate", 200, "live traffic in requests per second")
	cmd.Flags().BoolVar(&ha, "ha", false, "run the loop on three replicas sharing a local PostgreSQL (needs its server binaries: apt-get install postgresql) and kill the rollout's leader mid-bake (docs/HA.md)")
	cmd.Flags().BoolVar(&o.Short, "short", false, "skip the rollouts (slots, split and swaps only)")
	cmd.Flags().StringVar(&o.Listen, "listen", "", "gateway address (default: a free loopback port)")
	cmd.Flags().StringVar(&o.Admin, "admin", "", "admin address (default: a free loopback port)")
	return cmd
}
