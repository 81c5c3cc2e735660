package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/client"
	"github.com/modelslot/modelslot/config"
	"github.com/spf13/cobra"
)

// Platforms (--platform, $MODELSLOT_PLATFORM).
const (
	platformLocal = "local"
	platformAzure = "azure"
)

// clientFlags are the flags of every command that manages slots: those of
// the local daemon (--server, --token, --data) and those of Azure App
// Service (azureFlags), chosen by --platform.
type clientFlags struct {
	platform string
	server   string
	token    string
	data     string
	app      string
	output   string
	az       azureFlags

	// resolved is the platform chosen by the last call of backend.
	resolved string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.platform, "platform", "", "where the slots live: local (the modelslot daemon) or azure (App Service deployment slots) (default $MODELSLOT_PLATFORM or local)")
	fl.StringVar(&f.server, "server", "", "admin address of the daemon (default $MODELSLOT_SERVER or "+config.DefaultAdmin+")")
	fl.StringVar(&f.token, "token", "", "admin token (default $MODELSLOT_TOKEN, else read from <data>/admin.token)")
	fl.StringVar(&f.data, "data", "", "the daemon's data directory, to read the admin token from (default $MODELSLOT_DATA or "+config.DefaultData+"); with --platform azure, where the rollout state file goes")
	fl.StringVar(&f.app, "app", "default", "app name; with --platform azure it is the App Service app and defaults to --azure-app")
	fl.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	f.az.register(fl)
}

// slotPlatform is what the slot, deploy, traffic, swap and status commands
// need from a platform. The daemon's client satisfies it; azurePlatform
// adapts the Azure driver to it.
type slotPlatform interface {
	Status(ctx context.Context, app string) (*modelslot.AppStatus, error)
	CreateSlot(ctx context.Context, app, slot string) (*modelslot.Slot, error)
	DeleteSlot(ctx context.Context, app, slot string, force bool) error
	Deploy(ctx context.Context, app, slot string, req modelslot.DeployRequest) (*modelslot.Slot, error)
	SetTraffic(ctx context.Context, app string, rules []modelslot.TrafficRule, opts modelslot.TrafficOptions) (modelslot.Routing, error)
	Traffic(ctx context.Context, app string) (*client.Traffic, error)
	ClearTraffic(ctx context.Context, app string) (*client.Traffic, error)
	Swap(ctx context.Context, app string, req modelslot.SwapRequest) (*modelslot.SwapRecord, error)
	Swaps(ctx context.Context, app string, limit int) ([]*modelslot.SwapRecord, error)
}

// mirrorPlatform is the local daemon's shadow traffic; Azure has none.
type mirrorPlatform interface {
	SetMirror(ctx context.Context, app string, m modelslot.MirrorRule) (*client.Traffic, error)
	ClearMirror(ctx context.Context, app string) (*client.Traffic, error)
}

var (
	_ slotPlatform   = (*client.Client)(nil)
	_ mirrorPlatform = (*client.Client)(nil)
	_ slotPlatform   = (*azurePlatform)(nil)
)

// resolvePlatform reads --platform (else $MODELSLOT_PLATFORM, else local),
// checks --output and refuses flags of the other platform.
func (f *clientFlags) resolvePlatform(cmd *cobra.Command) (string, error) {
	if f.output != "table" && f.output != "json" {
		return "", modelslot.Errorf(modelslot.EINVALID, "--output %q is not valid: use table or json", f.output)
	}
	p := f.platform
	from := "--platform"
	if !cmd.Flags().Changed("platform") {
		p, from = os.Getenv("MODELSLOT_PLATFORM"), "$MODELSLOT_PLATFORM"
	}
	switch p {
	case "", platformLocal:
		p = platformLocal
		if name := f.az.changed(cmd); name != "" {
			return "", modelslot.Errorf(modelslot.EINVALID, "--%s applies only to --platform azure", name)
		}
	case platformAzure:
		for _, name := range []string{"server", "token"} {
			if cmd.Flags().Changed(name) {
				return "", modelslot.Errorf(modelslot.EINVALID, "--%s applies only to the local daemon, not to --platform azure", name)
			}
		}
	default:
		return "", modelslot.Errorf(modelslot.EINVALID, "%s %q is not valid: use local (the modelslot daemon) or azure (App Service deployment slots)", from, p)
	}
	f.resolved = p
	return p, nil
}

// backend returns the platform the command works on, and the app name to
// pass it (on Azure, the App Service app).
func (f *clientFlags) backend(cmd *cobra.Command) (slotPlatform, error) {
	p, err := f.resolvePlatform(cmd)
	if err != nil {
		return nil, err
	}
	if p == platformAzure {
		d, _, err := f.azureDriver(cmd, nil)
		if err != nil {
			return nil, err
		}
		return newAzurePlatform(d), nil
	}
	return f.localClient()
}

func (f *clientFlags) azure() bool { return f.resolved == platformAzure }

// client returns the daemon's client; it refuses --platform azure, for the
// commands that exist only locally.
func (f *clientFlags) client() (*client.Client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, modelslot.Errorf(modelslot.EINVALID, "--output %q is not valid: use table or json", f.output)
	}
	return f.localClient()
}

func (f *clientFlags) localClient() (*client.Client, error) {
	server := firstNonEmpty(f.server, os.Getenv("MODELSLOT_SERVER"), config.DefaultAdmin)
	token := firstNonEmpty(f.token, os.Getenv("MODELSLOT_TOKEN"))
	if token == "" {
		dir := firstNonEmpty(f.data, os.Getenv("MODELSLOT_DATA"), config.DefaultData)
		b, err := os.ReadFile(filepath.Join(dir, api.TokenFile))
		if err != nil {
			return nil, modelslot.Errorf(modelslot.EUNAUTHORIZED, "no admin token: pass --token or set MODELSLOT_TOKEN, or point --data at the daemon's data directory (could not read %s: %v)", filepath.Join(dir, api.TokenFile), unwrapPathErr(err))
		}
		token = strings.TrimSpace(string(b))
	}
	c := client.New(server, token)
	c.Actor = cliActor()
	return c, nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func (f *clientFlags) json() bool { return f.output == "json" }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// parseAssignments reads "staging=10 canary=5" into rules.
func parseAssignments(args []string, what string) ([]modelslot.TrafficRule, error) {
	var rules []modelslot.TrafficRule
	for _, a := range args {
		for _, part := range strings.Split(a, ",") {
			if part == "" {
				continue
			}
			name, val, ok := strings.Cut(part, "=")
			if !ok || name == "" {
				return nil, modelslot.Errorf(modelslot.EINVALID, "%s: %q is not SLOT=PERCENT, e.g. staging=10", what, part)
			}
			p, err := strconv.ParseFloat(strings.TrimSuffix(val, "%"), 64)
			if err != nil {
				return nil, modelslot.Errorf(modelslot.EINVALID, "%s: %q: %q is not a number", what, part, val)
			}
			rules = append(rules, modelslot.TrafficRule{Slot: name, Percent: p})
		}
	}
	return rules, nil
}

// parseKV reads repeated K=V flags.
func parseKV(kvs []string, flag string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, modelslot.Errorf(modelslot.EINVALID, "--%s %q is not KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

func pct(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }

func println(w io.Writer, format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
