package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newServeCmd) }

func newServeCmd() *cobra.Command {
	var (
		file, data, store, listen, admin, logLevel string
		adminCert, adminKey, clientKeys            string
		otlpEndpoint                               string
		otlpInterval                               time.Duration
		insecureAdmin, openGateway                 bool
	)
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--data DIR] [--listen ADDR] [--admin ADDR]",
		Short: "Run the daemon: the OpenAI-compatible gateway and the admin API",
		Long: `Run the daemon. The gateway (--listen) serves the OpenAI-compatible API and
routes each request to a slot; the admin API (--admin, loopback by default)
serves /api/v1/ behind a bearer token written to <data>/admin.token at first
start, the dashboard, and Prometheus metrics at /metrics. State lives in
SQLite in --data, or in PostgreSQL with --store (replicas: docs/HA.md).

Listeners open at once with the last routing; slots' backends are restored
in the background and get traffic once healthy. The gateway answers
load-balancer health checks at /_modelslot/healthz (200 ready; 503 starting
or draining). SIGTERM or SIGINT drains: health turns 503, requests and
streams in flight get shutdown.drainTimeout (default 30s) to finish, the
rest are cut and counted; the exit status is 0.

A --listen address beyond loopback with a deployment that carries provider
credentials needs client keys (--client-keys FILE) or --open-gateway.
An --admin address beyond loopback needs TLS (--admin-tls-cert and
--admin-tls-key) or --insecure-admin; /metrics there takes the token in
<data>/metrics.token (or the admin token). docs/SECURITY.md says more.`,
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
			if cmd.Flags().Changed("admin-tls-cert") || cmd.Flags().Changed("admin-tls-key") {
				cfg.AdminTLS = config.AdminTLS{Cert: adminCert, Key: adminKey}
				if adminCert == "" || adminKey == "" {
					return fmt.Errorf("--admin-tls-cert and --admin-tls-key go together: give both PEM files")
				}
			}
			if insecureAdmin {
				cfg.InsecureAdmin = true
			}
			if cmd.Flags().Changed("client-keys") {
				cfg.Gateway.ClientKeysFile = clientKeys
			}
			if openGateway {
				cfg.Gateway.OpenGateway = true
			}
			if cmd.Flags().Changed("otlp-endpoint") {
				cfg.OTLP.Endpoint = otlpEndpoint
			}
			if cmd.Flags().Changed("otlp-interval") {
				cfg.OTLP.Interval = modelslot.Duration(otlpInterval)
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
			fmt.Fprintf(cmd.OutOrStdout(), "modelslot serving\n  gateway: %s (OpenAI-compatible: %s/v1; health: %s%s)\n  admin:   %s (token in %s/admin.token)\n", d.GatewayURL(), d.GatewayURL(), d.GatewayURL(), daemon.HealthPath, d.AdminURL(), cfg.Data)
			stop := reloadOnHangup(cmd.Context(), d, log)
			defer stop()
			<-cmd.Context().Done()
			fmt.Fprintln(cmd.OutOrStdout(), "modelslot stopping: draining the requests in flight")
			st, err := d.Shutdown(context.Background())
			fmt.Fprintln(cmd.OutOrStdout(), st)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&file, "config", "", "YAML file declaring apps, slots, deployments and routing (docs/CONFIG.md)")
	fl.StringVar(&data, "data", config.DefaultData, "state directory (SQLite database, admin token, process logs)")
	fl.StringVar(&store, "store", "", "shared state for replicas: postgres://USER@HOST:PORT/DB (also MODELSLOT_STORE, or store: in the config); default SQLite in --data (docs/HA.md)")
	fl.StringVar(&listen, "listen", config.DefaultListen, "gateway address (OpenAI-compatible API)")
	fl.StringVar(&admin, "admin", config.DefaultAdmin, "admin API address; keep it on loopback unless you mean it")
	fl.StringVar(&adminCert, "admin-tls-cert", "", "PEM certificate: serve the admin API and dashboard over HTTPS")
	fl.StringVar(&adminKey, "admin-tls-key", "", "PEM key of --admin-tls-cert")
	fl.BoolVar(&insecureAdmin, "insecure-admin", false, "accept an --admin address beyond loopback over plain HTTP")
	fl.StringVar(&clientKeys, "client-keys", "", "YAML file of client keys that may use the gateway (re-read when it changes and on SIGHUP)")
	fl.BoolVar(&openGateway, "open-gateway", false, "let a gateway beyond loopback serve deployments that carry credentials without client keys")
	fl.StringVar(&otlpEndpoint, "otlp-endpoint", "", "push the metrics of /metrics to this OTLP/HTTP receiver too, e.g. http://collector:4318 (otlp: in the config; docs/METRICS.md)")
	fl.DurationVar(&otlpInterval, "otlp-interval", config.DefaultOTLPInterval, "time between OTLP exports")
	fl.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// reloadOnHangup re-reads the client keys on SIGHUP until stop is called.
func reloadOnHangup(ctx context.Context, d *daemon.Daemon, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := d.ReloadClientKeys(); err != nil {
					log.Error("SIGHUP: client keys not reloaded; the gateway keeps the previous keys", "err", err)
				} else {
					log.Info("SIGHUP: client keys reloaded")
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
