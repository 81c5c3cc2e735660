package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newServeCmd) }

func newServeCmd() *cobra.Command {
	var (
		file, data, store, listen, admin, logLevel string
	)
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--data DIR] [--listen ADDR] [--admin ADDR]",
		Short: "Run the daemon: the OpenAI-compatible gateway and the admin API",
		Long: `Run the daemon. The gateway (--listen) serves the OpenAI-compatible API and
routes each request to a slot; the admin API (--admin, loopback by default)
serves /api/v1/ behind a bearer token written to <data>/admin.token at first
start, and Prometheus metrics at /metrics. State lives in SQLite in --data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var cfg *config.Config
			var err error
			if file != "" {
				cfg, err = config.Load(file)
			} else {
				cfg = config.Default()
			}
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("data") || cfg.Data == config.DefaultData && os.Getenv("MODELSLOT_DATA") != "" {
				cfg.Data = firstNonEmpty(data, os.Getenv("MODELSLOT_DATA"))
			}
			if cmd.Flags().Changed("store") {
				cfg.Store = store
			} else if env := os.Getenv("MODELSLOT_STORE"); env != "" && cfg.Store == "" {
				cfg.Store = env
			}
			if cmd.Flags().Changed("listen") {
				cfg.Listen = listen
			}
			if cmd.Flags().Changed("admin") {
				cfg.Admin = admin
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			d, err := daemon.Start(cmd.Context(), daemon.Options{Config: cfg, Logger: log})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "modelslot serving\n  gateway: %s (OpenAI-compatible: %s/v1)\n  admin:   %s (token in %s/admin.token)\n", d.GatewayURL(), d.GatewayURL(), d.AdminURL(), cfg.Data)
			return d.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&file, "config", "", "YAML file declaring apps, slots, deployments and routing (docs/CONFIG.md)")
	fl.StringVar(&data, "data", config.DefaultData, "state directory (SQLite database, admin token, process logs)")
	fl.StringVar(&store, "store", "", "shared state for replicas: postgres://USER@HOST:PORT/DB (also MODELSLOT_STORE, or store: in the config); default SQLite in --data (docs/HA.md)")
	fl.StringVar(&listen, "listen", config.DefaultListen, "gateway address (OpenAI-compatible API)")
	fl.StringVar(&admin, "admin", config.DefaultAdmin, "admin API address; keep it on loopback unless you mean it")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}
