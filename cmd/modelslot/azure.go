package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/azure"
	"github.com/modelslot/modelslot/client"
	"github.com/modelslot/modelslot/rollout"
	"github.com/modelslot/modelslot/sqlite"
)

// azureConfigHook, when set, edits the Azure configuration built from the
// flags before the driver is created. Tests use it to wire the driver to
// azuretest's fake site (credential, transports, loopback health checks,
// clock); it is nil in the binary.
var azureConfigHook func(*azure.Config)

// DefaultAzureState is the file name of the rollout state of --platform
// azure, in the current directory or in --data.
const DefaultAzureState = "modelslot-azure.db"

// azureFlags select and authenticate the App Service app. Every flag can
// also come from the YAML file of --azure-config (same keys); a flag given
// on the command line wins over the file.
type azureFlags struct {
	configFile string
	file       azureFile

	// resolved is the configuration of the last azureDriver call, and
	// resolvedInsights its --azure-app-insights.
	resolved         azure.Config
	resolvedInsights string
}

// azureFile is the --azure-config file; its keys are the flags' names.
type azureFile struct {
	Subscription      string `yaml:"subscription"`
	ResourceGroup     string `yaml:"resource-group"`
	App               string `yaml:"azure-app"`
	Auth              string `yaml:"azure-auth"`
	ManagedIdentityID string `yaml:"azure-managed-identity-id"`
	Cloud             string `yaml:"azure-cloud"`
	ARMEndpoint       string `yaml:"azure-arm-endpoint"`
	Authority         string `yaml:"azure-authority"`
	Audience          string `yaml:"azure-audience"`
	MetricsDelay      string `yaml:"azure-metrics-delay"`
	AppInsights       string `yaml:"azure-app-insights"`
}

// azureFlagNames are the flags of azureFile, in its field order.
var azureFlagNames = []string{"subscription", "resource-group", "azure-app", "azure-auth", "azure-managed-identity-id", "azure-cloud", "azure-arm-endpoint", "azure-authority", "azure-audience", "azure-metrics-delay", "azure-app-insights"}

func (a *azureFile) fields() []*string {
	return []*string{&a.Subscription, &a.ResourceGroup, &a.App, &a.Auth, &a.ManagedIdentityID, &a.Cloud, &a.ARMEndpoint, &a.Authority, &a.Audience, &a.MetricsDelay, &a.AppInsights}
}

// The help texts quote the value's name in backticks: pflag prints it
// after the flag (--subscription ID), so nothing else may be in backticks.
func (a *azureFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&a.configFile, "azure-config", "", "read the Azure flags from the YAML `FILE`, one key per flag name, e.g. subscription: ... (default $MODELSLOT_AZURE_CONFIG); flags win over the file")
	help := []string{
		"Azure subscription `ID` that holds the App Service app (az account show --query id -o tsv)",
		"resource group `NAME` of the App Service app",
		"App Service app (site) `NAME`; the modelslot app name on Azure",
		"Azure credential `MODE`: default (DefaultAzureCredential), cli (az login), env (AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET) or managed-identity (default default)",
		"client `ID` of a user-assigned managed identity (with --azure-auth managed-identity; default the system-assigned one)",
		"Azure `CLOUD`: public, china, usgov or custom (default public)",
		"Resource Manager endpoint `URL` of --azure-cloud custom (https)",
		"Entra ID authority host `URL` of --azure-cloud custom (https)",
		"token audience `URL` of --azure-cloud custom's Resource Manager (default --azure-arm-endpoint)",
		"how long (`DURATION`, e.g. 3m) after its end a minute of Azure Monitor metrics is final: rollouts judge only older minutes (default 3m; a plan's azure.metricsDelay wins)",
		"ARM `ID` of the Application Insights component the slots report to: rollouts then judge each request (latency per request, tail latency, latency SLOs) instead of Azure Monitor's per-minute metrics",
	}
	for i, f := range a.file.fields() {
		fl.StringVar(f, azureFlagNames[i], "", help[i])
	}
	markGroup(fl, groupAzure, append([]string{"azure-config"}, azureFlagNames...)...)
}

// changed returns the name of an Azure flag given on the command line, or "".
func (a *azureFlags) changed(cmd *cobra.Command) string {
	for _, name := range append([]string{"azure-config"}, azureFlagNames...) {
		if cmd.Flags().Changed(name) {
			return name
		}
	}
	return ""
}

// load merges the --azure-config file under the flags.
func (a *azureFlags) load(cmd *cobra.Command) (azureFile, error) {
	merged := a.file
	path := firstNonEmpty(a.configFile, os.Getenv("MODELSLOT_AZURE_CONFIG"))
	if path == "" {
		return merged, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return merged, modelslot.Errorf(modelslot.EINVALID, "--azure-config: %v", unwrapPathErr(err))
	}
	var file azureFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil && !errors.Is(err, io.EOF) {
		return merged, modelslot.Errorf(modelslot.EINVALID, "--azure-config %s: %s (keys: %s)", path, yamlMessage(err), strings.Join(azureFlagNames, ", "))
	}
	out, in := merged.fields(), file.fields()
	for i, name := range azureFlagNames {
		if !cmd.Flags().Changed(name) {
			*out[i] = *in[i]
		}
	}
	return merged, nil
}

func yamlMessage(err error) string {
	return strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n", "; "), "yaml: ")
}

// azureDriver builds the driver from the flags and the config file. On
// Azure the modelslot app is the App Service app: --app may be left out
// (it then takes --azure-app's value), or it may name the App Service app
// itself when --azure-app is not given; two different names are refused.
// It sets f.app to the App Service app.
func (f *clientFlags) azureDriver(cmd *cobra.Command, logger *slog.Logger) (*azure.Driver, azure.Config, error) {
	file, err := f.az.load(cmd)
	if err != nil {
		return nil, azure.Config{}, err
	}
	app := file.App
	appGiven := cmd.Flags().Changed("app")
	switch {
	case app == "" && appGiven:
		app = f.app
	case app != "" && appGiven && f.app != app:
		return nil, azure.Config{}, modelslot.Errorf(modelslot.EINVALID, "--app %q differs from --azure-app %q: on Azure the modelslot app is the App Service app; leave out --app", f.app, app)
	case app == "":
		return nil, azure.Config{}, modelslot.Errorf(modelslot.EINVALID, "--azure-app is required with --platform azure: the name of the App Service app (the site, not the plan), e.g. `pulumi stack output appName` in deploy/azure")
	}
	f.app = app
	var delay time.Duration
	if file.MetricsDelay != "" {
		if delay, err = time.ParseDuration(file.MetricsDelay); err != nil || delay < 0 {
			return nil, azure.Config{}, modelslot.Errorf(modelslot.EINVALID, "--azure-metrics-delay %q is not a duration: write it like 3m or 90s", file.MetricsDelay)
		}
	}
	cfg := azure.Config{
		SubscriptionID:          file.Subscription,
		ResourceGroup:           file.ResourceGroup,
		App:                     app,
		Auth:                    file.Auth,
		ManagedIdentityClientID: file.ManagedIdentityID,
		Cloud:                   file.Cloud,
		CustomEndpoint:          file.ARMEndpoint,
		CustomAuthority:         file.Authority,
		CustomAudience:          file.Audience,
		MetricsDelay:            delay,
	}
	if azureConfigHook != nil {
		azureConfigHook(&cfg)
	}
	d, err := azure.New(cfg, logger)
	if err != nil {
		return nil, azure.Config{}, err
	}
	f.az.resolved, f.az.resolvedInsights = cfg, file.AppInsights
	return d, cfg, nil
}

func cliActor() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}

// azurePlatform adapts the Azure driver to the commands: it adds the
// traffic views of the daemon's API and records the CLI user as actor.
type azurePlatform struct {
	*azure.Driver
	actor string
}

func newAzurePlatform(d *azure.Driver) *azurePlatform {
	return &azurePlatform{Driver: d, actor: cliActor()}
}

func (p *azurePlatform) Deploy(ctx context.Context, app, slot string, req modelslot.DeployRequest) (*modelslot.Slot, error) {
	req.Actor = firstNonEmpty(req.Actor, p.actor)
	return p.Driver.Deploy(ctx, app, slot, req)
}

func (p *azurePlatform) SetTraffic(ctx context.Context, app string, rules []modelslot.TrafficRule, opts modelslot.TrafficOptions) (modelslot.Routing, error) {
	opts.Actor = firstNonEmpty(opts.Actor, p.actor)
	return p.Driver.SetTraffic(ctx, app, rules, opts)
}

func (p *azurePlatform) Swap(ctx context.Context, app string, req modelslot.SwapRequest) (*modelslot.SwapRecord, error) {
	req.Actor = firstNonEmpty(req.Actor, p.actor)
	return p.Driver.Swap(ctx, app, req)
}

// Traffic reads the production site's rampUpRules.
func (p *azurePlatform) Traffic(ctx context.Context, app string) (*client.Traffic, error) {
	a, err := p.App(ctx, app)
	if err != nil {
		return nil, err
	}
	return trafficView(a.Routing), nil
}

// ClearTraffic removes every rampUpRule: production gets all new users.
func (p *azurePlatform) ClearTraffic(ctx context.Context, app string) (*client.Traffic, error) {
	r, err := p.SetTraffic(ctx, app, nil, modelslot.TrafficOptions{})
	if err != nil {
		return nil, err
	}
	return trafficView(r), nil
}

// trafficView is the daemon API's traffic answer: every slot with a
// share, production first.
func trafficView(r modelslot.Routing) *client.Traffic {
	t := &client.Traffic{Routing: r}
	t.Split = append(t.Split, modelslot.TrafficRule{Slot: modelslot.Production, Percent: r.Percent(modelslot.Production)})
	t.Split = append(t.Split, r.Rules...)
	return t
}

// azureRollouts opens the rollout state of --platform azure: a Manager on
// the driver, its metric source and the SQLite state file. close releases
// the file.
type azureRollouts struct {
	m      *rollout.Manager
	driver *azure.Driver
	cfg    azure.Config
	db     *sqlite.DB
	path   string
	lock   string
}

// statePath is --state, else modelslot-azure.db in --data or in the
// current directory.
func (f *clientFlags) statePath(state string) string {
	if state != "" {
		return state
	}
	if f.data != "" {
		return filepath.Join(f.data, DefaultAzureState)
	}
	return DefaultAzureState
}

// openAzureRollouts opens the state file; with exclusive, it also takes
// the file's lock, so that two processes never run the same rollout.
func (f *clientFlags) openAzureRollouts(cmd *cobra.Command, state string, interval time.Duration, logger *slog.Logger, exclusive bool) (*azureRollouts, error) {
	d, cfg, err := f.azureDriver(cmd, logger)
	if err != nil {
		return nil, err
	}
	ar := &azureRollouts{driver: d, cfg: cfg, path: f.statePath(state)}
	if !exclusive {
		if _, err := os.Stat(ar.path); err != nil {
			return nil, modelslot.Errorf(modelslot.ENOTFOUND, "no rollout state at %s: rollouts on Azure are recorded there by `modelslot rollout start --platform azure` (see --state and --data)", ar.path)
		}
	} else {
		if err := ar.takeLock(); err != nil {
			return nil, err
		}
	}
	db, err := sqlite.Open(cmd.Context(), ar.path)
	if err != nil {
		ar.close()
		return nil, modelslot.Errorf(modelslot.EUNAVAILABLE, "rollout state: %v", err)
	}
	ar.db = db
	if exclusive {
		// The Manager resumes every active rollout of the file; those of
		// another App Service app would run against the wrong driver.
		recs, err := db.Rollouts(cmd.Context(), "", true, 100)
		if err != nil {
			ar.close()
			return nil, err
		}
		for _, rec := range recs {
			if rec.App != cfg.App {
				ar.close()
				return nil, modelslot.Errorf(modelslot.ECONFLICT, "the state file %s holds active rollout %s of App Service app %q, not %q: use one state file per app (--state)", ar.path, rec.ID, rec.App, cfg.App)
			}
		}
	}
	var metrics modelslot.MetricSource = d.MetricSource()
	if id := f.az.resolvedInsights; id != "" {
		rs, err := d.RequestSource(id)
		if err != nil {
			ar.close()
			return nil, err
		}
		metrics = rs
	}
	ar.m, err = rollout.NewManager(rollout.ManagerConfig{
		Platform: d,
		Metrics:  metrics,
		Store:    db,
		Logger:   logger,
		Now:      cfg.Now, // nil: time.Now; tests share the fake's clock
		Interval: interval,
	})
	if err != nil {
		ar.close()
		return nil, err
	}
	return ar, nil
}

func (ar *azureRollouts) takeLock() error {
	lock := ar.path + ".lock"
	fh, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		pid, _ := os.ReadFile(lock)
		return modelslot.Errorf(modelslot.ECONFLICT, "the rollout state %s is in use by another `modelslot rollout` (pid %s): stop it first; if that process is gone, delete %s", ar.path, firstNonEmpty(strings.TrimSpace(string(pid)), "?"), lock)
	}
	if err != nil {
		return modelslot.Errorf(modelslot.EUNAVAILABLE, "rollout state: cannot create %s: %v", lock, unwrapPathErr(err))
	}
	fmt.Fprintf(fh, "%d\n", os.Getpid())
	fh.Close()
	ar.lock = lock
	return nil
}

func (ar *azureRollouts) close() {
	if ar.m != nil {
		ar.m.Close()
	}
	if ar.db != nil {
		ar.db.Close()
	}
	if ar.lock != "" {
		os.Remove(ar.lock)
	}
}

// azureRolloutOp is what a foreground rollout process does first.
type azureRolloutOp struct {
	name   string // start, resume, promote or abort
	slot   string // start: the candidate
	plan   []byte // start: the plan's YAML
	reason string // abort
}

// runAzureRollout runs the rollout controller in this process against the
// Azure driver, with Azure Monitor as metric source and the rollout state
// in a local SQLite file, printing progress until the rollout ends. When
// ctx ends (Ctrl-C), the controller stops between two actions; the state
// file keeps the rollout, and the next run resumes it where it was.
func (f *clientFlags) runAzureRollout(cmd *cobra.Command, state string, interval time.Duration, op azureRolloutOp) error {
	ctx := cmd.Context()
	out, errw := cmd.OutOrStdout(), cmd.ErrOrStderr()
	logger := slog.New(slog.NewTextHandler(errw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ar, err := f.openAzureRollouts(cmd, state, interval, logger, true)
	if err != nil {
		return err
	}
	defer ar.close()
	actor := cliActor()

	var plan *rollout.Plan
	if op.name == "start" {
		if plan, err = rollout.ParsePlan(op.plan); err != nil {
			return err
		}
	}
	var id string
	active, err := ar.m.Active(ctx, f.app)
	switch {
	case err == nil && op.name == "start" && active.Slot != op.slot:
		return modelslot.Errorf(modelslot.ECONFLICT, "rollout %s of slot %q is active in %s: resume it with `modelslot rollout start %s --platform azure ...` or roll it back with `modelslot rollout abort --platform azure ...` first", active.ID, active.Slot, ar.path, active.Slot)
	case err == nil:
		id = active.ID
		println(out, "resuming rollout %s of slot %s: %s, %s (state in %s)", active.ID, active.Slot, active.State, active.StepSummary(), ar.path)
		if op.name == "start" && active.PlanSource != string(op.plan) {
			println(errw, "note: the rollout goes on with the plan it started with, not with --plan")
		}
	case modelslot.ErrorCode(err) != modelslot.ENOTFOUND:
		return err
	case op.name != "start":
		return modelslot.Errorf(modelslot.ENOTFOUND, "app %q has no active rollout in %s", f.app, ar.path)
	default:
		ro, err := ar.m.Start(ctx, f.app, op.slot, plan, actor)
		if err != nil {
			return err
		}
		id = ro.ID
		println(out, "rollout %s started: %s into production of App Service app %s (state in %s; Ctrl-C stops it, the same command resumes it)", ro.ID, ro.Slot, f.app, ar.path)
		for _, w := range ro.Warnings {
			println(errw, "warning: %s", w)
		}
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	runErr := make(chan error, 1)
	go func() {
		runErr <- ar.m.Run(runCtx)
		stopWatch()
	}()
	if op.name != "start" {
		ro, err := sendRolloutCommand(ctx, ar.m, f.app, op.name, actor, op.reason)
		if err != nil {
			return err
		}
		println(out, "rollout %s: %s (%s)", ro.ID, ro.State, ro.StepSummary())
	}
	every := time.Second
	if interval > 0 && interval < every {
		every = interval
	} else if plan != nil && plan.Interval.D() < every {
		every = plan.Interval.D()
	}
	werr := watchRollout(watchCtx, out, ar.m.Get, id, every)
	stopRun()
	if err := <-runErr; err != nil {
		return err
	}
	if ctx.Err() != nil {
		ro, gerr := ar.m.Get(context.WithoutCancel(ctx), id)
		if gerr == nil && ro.State.Active() {
			println(errw, "stopped: rollout %s stays %s at %s in %s; run the same command (or `modelslot rollout start %s --platform azure ...`) to resume it", ro.ID, ro.State, ro.StepSummary(), ar.path, ro.Slot)
		}
		return exitError{code: 130}
	}
	return werr
}

// sendRolloutCommand hands op to the rollout once Run has resumed it.
func sendRolloutCommand(ctx context.Context, m *rollout.Manager, app, op, actor, reason string) (*rollout.Rollout, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var (
			ro  *rollout.Rollout
			err error
		)
		switch op {
		case "resume":
			ro, err = m.Resume(ctx, app, actor)
		case "promote":
			ro, err = m.Promote(ctx, app, actor)
		case "abort":
			ro, err = m.Abort(ctx, app, actor, reason)
		default:
			return nil, modelslot.Errorf(modelslot.EINVALID, "rollout %s is not available with --platform azure", op)
		}
		// Until Run has resumed the rollout, the Manager answers "not
		// running" or, before it has loaded it, "no active rollout".
		if code := modelslot.ErrorCode(err); code != modelslot.EUNAVAILABLE && code != modelslot.ENOTFOUND || time.Now().After(deadline) {
			return ro, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// azureHeader is the first line of `status` on Azure.
func (f *clientFlags) azureHeader() string {
	c := f.az.resolved
	return "app " + c.App + ": Azure App Service, resource group " + c.ResourceGroup + ", subscription " + c.SubscriptionID
}

func idOrDash(id int64) string {
	if id == 0 {
		return "-"
	}
	return strconv.FormatInt(id, 10)
}
