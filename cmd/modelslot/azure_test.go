package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/azure"
	"github.com/modelslot/modelslot/azure/azuretest"
	"github.com/modelslot/modelslot/rollout"
)

// useSite wires the Azure configuration of every command to the fake
// site: its credential and transports, loopback health checks, its clock,
// and a metrics delay of a millisecond.
func useSite(t *testing.T, site *azuretest.FakeSite) {
	t.Helper()
	prev := azureConfigHook
	azureConfigHook = func(c *azure.Config) {
		fc := site.Config()
		c.Credential = fc.Credential
		c.ClientOptions, c.MetricsClientOptions, c.LogsClientOptions = fc.ClientOptions, fc.MetricsClientOptions, fc.LogsClientOptions
		c.HTTPClient, c.HostURL = fc.HTTPClient, fc.HostURL
		c.Now = fc.Now
		c.PollFrequency, c.HealthTimeout = fc.PollFrequency, fc.HealthTimeout
		if c.MetricsDelay == 0 {
			c.MetricsDelay = time.Millisecond
		}
	}
	t.Cleanup(func() { azureConfigHook = prev })
}

// azArgs are the flags that select the fake site's app.
func azArgs(site *azuretest.FakeSite) []string {
	return []string{"--platform", "azure", "--subscription", site.Subscription, "--resource-group", site.ResourceGroup, "--azure-app", site.App}
}

func az(site *azuretest.FakeSite, cmd string, extra ...string) []string {
	return append(append(strings.Fields(cmd), azArgs(site)...), extra...)
}

func newSite(t *testing.T, o azuretest.Options) *azuretest.FakeSite {
	t.Helper()
	site := azuretest.NewFakeSite(t, o)
	useSite(t, site)
	return site
}

func TestAzureSlotListCreateDelete(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})

	out := mustRun(t, az(site, "slot list")...)
	wantLines(t, out,
		`SLOT\s+VERSION\s+REVISION\s+TRAFFIC\s+HEALTHY\s+BACKEND`,
		`production\s+-\s+[0-9a-f]{12}\s+100%\s+yes\s+https://`+regexp.QuoteMeta(site.HostName("production")),
		`staging\s+-\s+-\s+0%\s+no \(no deployment\)\s+-`,
	)
	out = mustRun(t, az(site, "slot create canary")...)
	wantLines(t, out, "slot canary created in app llm; deploy to it with `modelslot deploy canary --platform azure --image ...`")
	if got := site.Slots(); strings.Join(got, ",") != "production,canary,staging" {
		t.Errorf("slots after create = %v", got)
	}
	wantError(t, az(site, "slot create canary"), `already has a slot "canary"`)

	out = mustRun(t, az(site, "slot list -o json")...)
	var slots []struct {
		Slot struct{ Name string } `json:"slot"`
	}
	if err := json.Unmarshal([]byte(out), &slots); err != nil || len(slots) != 3 {
		t.Fatalf("slot list -o json = %s (%v)", out, err)
	}

	mustRun(t, az(site, "slot delete canary")...)
	if got := site.Slots(); strings.Join(got, ",") != "production,staging" {
		t.Errorf("slots after delete = %v", got)
	}
	wantError(t, az(site, "slot delete production"), "production cannot be deleted")
	wantCode(t, wantError(t, az(site, "slot delete nope"), `Azure has no slot "nope"`), modelslot.ENOTFOUND)
}

func TestAzureDeployWaitsForHealth(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	// The new image loads for a few probes before it answers its health path.
	var probes atomic.Int32
	site.ServeImage("llm:v2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		if probes.Add(1) < 4 {
			http.Error(w, "loading", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	out := mustRun(t, az(site, "deploy staging --image llm:v2 --version v2 --setting MODEL_ID=llama --sticky-setting ENVIRONMENT=staging --warmup-path /ready")...)
	if !regexp.MustCompile(`^slot staging now serves v2 \(image llm:v2, revision [0-9a-f]{12}\) at https://` + regexp.QuoteMeta(site.HostName("staging")) + "\n$").MatchString(out) {
		t.Errorf("deploy printed %q", out)
	}
	if n := probes.Load(); n < 4 {
		t.Errorf("health probes = %d, want the deploy to wait for the 4th", n)
	}
	if got := site.Image("staging"); got != "llm:v2" {
		t.Errorf("staging image = %q", got)
	}
	set := site.AppSettings("staging")
	for k, want := range map[string]string{"MODEL_ID": "llama", "ENVIRONMENT": "staging", "MODEL_VERSION": "v2", "WEBSITE_SWAP_WARMUP_PING_PATH": "/ready"} {
		if set[k] != want {
			t.Errorf("app setting %s = %q, want %q", k, set[k], want)
		}
	}
	if got := site.StickyNames(); strings.Join(got, ",") != "ENVIRONMENT" {
		t.Errorf("sticky names = %v", got)
	}

	// An image that never gets healthy is put back.
	site.ServeImage("llm:broken", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	wantError(t, az(site, "deploy staging --image llm:broken --version v3 --warmup-timeout 300ms"),
		"the new content never answered its health path", "answered 500", "previous image and settings were put back")
	if got := site.Image("staging"); got != "llm:v2" {
		t.Errorf("staging image after a failed deploy = %q, want llm:v2", got)
	}
	mustRun(t, az(site, "slot create canary")...)
	wantError(t, az(site, "deploy canary --version v3"), "no container image")
}

func TestAzureTrafficSetShowClear(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	wantError(t, az(site, "traffic set staging=10"), `slot "staging" has no deployment`)
	mustRun(t, az(site, "deploy staging --image llm:v2 --version v2")...)

	out := mustRun(t, az(site, "traffic set staging=10")...)
	wantLines(t, out,
		`SLOT\s+SHARE`, `production\s+90%`, `staging\s+10%`,
		`routing: rampUpRules of App Service app llm; users pinned by the x-ms-routing-name cookie keep their slot for up to an hour`,
	)
	rules := site.RampUpRules()
	if len(rules) != 1 {
		t.Fatalf("rampUpRules = %+v", rules)
	}
	if r := rules[0]; *r.Name != "staging" || *r.ReroutePercentage != 10 || *r.ActionHostName != site.HostName("staging") {
		t.Errorf("rule = name %q, %g%%, actionHostName %q; want staging, 10%%, %q", *r.Name, *r.ReroutePercentage, *r.ActionHostName, site.HostName("staging"))
	}

	out = mustRun(t, az(site, "traffic show")...)
	wantLines(t, out, `production\s+90%`, `staging\s+10%`)
	out = mustRun(t, az(site, "traffic show -o json")...)
	if !strings.Contains(out, `"slot": "staging"`) || !strings.Contains(out, `"percent": 10`) {
		t.Errorf("traffic show -o json:\n%s", out)
	}

	out, errOut, err := run(t, az(site, "traffic set staging=25 --reset-pins")...)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, `staging\s+25%`)
	if !strings.Contains(errOut, "Azure cannot invalidate routing cookies") {
		t.Errorf("--reset-pins printed no note; stderr %q", errOut)
	}
	if r := site.RampUpRules(); len(r) != 1 || *r[0].ReroutePercentage != 25 {
		t.Errorf("rampUpRules after set = %+v", r)
	}

	wantError(t, az(site, "traffic set staging=60 production=10"), "production cannot be given a share")
	wantError(t, az(site, "traffic set staging=abc"), `"abc" is not a number`)

	out = mustRun(t, az(site, "traffic clear")...)
	wantLines(t, out, `production\s+100%`)
	if r := site.RampUpRules(); len(r) != 0 {
		t.Errorf("rampUpRules after clear = %+v", r)
	}
}

func TestAzureSwapPreviewReset(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	mustRun(t, az(site, "deploy staging --image llm:v2 --version v2")...)

	out := mustRun(t, az(site, "swap staging --action preview")...)
	wantLines(t, out, "preview ready: staging has the settings of production; complete with `modelslot swap staging` or cancel with `modelslot swap staging --action reset`")
	out = mustRun(t, az(site, "slot list -o json")...)
	if !strings.Contains(out, `"preparedForSwap": "production"`) {
		t.Errorf("slot list during a preview:\n%s", out)
	}
	pending := "swap preview pending: staging is prepared for swap with production \\(it runs with production's slot settings\\); complete it with `modelslot swap staging` or cancel it with `modelslot swap staging --action reset`"
	wantLines(t, mustRun(t, az(site, "slot list")...), pending)
	wantLines(t, mustRun(t, az(site, "status")...), pending)
	// Azure refuses configuration writes during a preview (409).
	wantCode(t, wantError(t, az(site, "traffic set staging=10"), "a swap preview is pending", "--action reset"), modelslot.ECONFLICT)

	out = mustRun(t, az(site, "swap staging --action reset")...)
	wantLines(t, out, "preview of staging into production cancelled")
	if out := mustRun(t, az(site, "slot list")...); strings.Contains(out, "preview pending") {
		t.Errorf("slot list after the reset:\n%s", out)
	}

	out = mustRun(t, az(site, "swap staging")...)
	if !regexp.MustCompile(`^swapped: production now serves revision [0-9a-f]{12}; staging holds revision [0-9a-f]{12} \(swap again to roll back\)\n$`).MatchString(out) {
		t.Errorf("swap printed %q", out)
	}
	if p, s := site.Image("production"), site.Image("staging"); p != "llm:v2" || s != "llm:v1" {
		t.Errorf("after the swap production runs %q and staging %q", p, s)
	}

	out, errOut, err := run(t, az(site, "swap --history")...)
	if err != nil {
		t.Fatal(err)
	}
	wantLines(t, out, `ID\s+STARTED\s+ACTION\s+SOURCE\s+TARGET\s+STATUS\s+PHASE\s+ERROR`, `-\s+\S+ \S+\s+swap\s+staging\s+production\s+completed\s+done`)
	if !strings.Contains(errOut, "Azure keeps only the last swap") {
		t.Errorf("swap --history stderr = %q", errOut)
	}
	wantError(t, az(site, "swap staging --action undo"), `action "undo" is not valid`)
}

func TestAzureStatus(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging", "canary"}})
	mustRun(t, az(site, "deploy staging --image llm:v2 --version v2")...)
	mustRun(t, az(site, "traffic set staging=5")...)
	wantLines(t, mustRun(t, az(site, "status")...), `last swap: none`)
	mustRun(t, az(site, "swap staging")...)

	out := mustRun(t, az(site, "status")...)
	// Azure cannot say how many requests a slot serves: no IN-FLIGHT.
	wantLines(t, out,
		`app llm: Azure App Service, resource group rg-modelslot, subscription `+site.Subscription,
		`SLOT\s+VERSION\s+REVISION\s+TRAFFIC\s+HEALTHY\s+BACKEND`,
		`production\s+v2\s+[0-9a-f]{12}\s+95%\s+yes\s+https://`+regexp.QuoteMeta(site.HostName("production")),
		`canary\s+-\s+-\s+0%\s+no \(no deployment\)\s+-`,
		`staging\s+-\s+[0-9a-f]{12}\s+5%\s+yes\s+https://`+regexp.QuoteMeta(site.HostName("staging")),
		`last swap: swap staging -> production, completed at .*`,
	)
	// The same through $MODELSLOT_PLATFORM.
	t.Setenv("MODELSLOT_PLATFORM", "azure")
	out = mustRun(t, "status", "--subscription", site.Subscription, "--resource-group", site.ResourceGroup, "--app", site.App)
	wantLines(t, out, `app llm: Azure App Service, .*`)
}

func TestAzureErrorsAreTranslated(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	site.Fail(azuretest.Fault{Method: http.MethodPut, PathSuffix: "/slots/canary", Status: http.StatusForbidden,
		Body: `{"error":{"code":"AuthorizationFailed","message":"The client 'x' does not have authorization to perform action 'Microsoft.Web/sites/slots/write'."}}`})
	err := wantError(t, az(site, "slot create canary"), "Azure refused (403)", "Microsoft.Web/sites/slots/write", "Website Contributor")
	wantCode(t, err, modelslot.EFORBIDDEN)
	if strings.Contains(err.Error(), "RESPONSE") || strings.Contains(err.Error(), "ERROR CODE") {
		t.Errorf("the SDK's raw error reached the user: %v", err)
	}

	// Another app name is not this site.
	wantError(t, []string{"status", "--platform", "azure", "--subscription", site.Subscription, "--resource-group", site.ResourceGroup, "--azure-app", "other"}, `Azure has no app "other"`)

	// A fake without a handler for the path is refused by the deny hook:
	// nothing leaves the process when no site is wired.
	azureConfigHook = denyAzure
	wantError(t, az(site, "status"), "test: no fake Azure site is wired")
}

func TestAzureConfigFile(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	dir := t.TempDir()
	good := filepath.Join(dir, "azure.yaml")
	os.WriteFile(good, []byte("subscription: "+site.Subscription+"\nresource-group: "+site.ResourceGroup+"\nazure-app: "+site.App+"\nazure-auth: cli\nazure-cloud: public\n"), 0o600)
	out := mustRun(t, "status", "--platform", "azure", "--azure-config", good)
	wantLines(t, out, `app llm: Azure App Service, resource group rg-modelslot, .*`)

	// Flags win over the file.
	wantError(t, []string{"status", "--platform", "azure", "--azure-config", good, "--resource-group", "rg-other"}, `in resource group "rg-other"`)

	// Strict decoding.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("subscription: x\nresourceGroup: rg\n"), 0o600)
	wantError(t, []string{"status", "--platform", "azure", "--azure-config", bad}, "--azure-config "+bad, "field resourceGroup not found", "keys: subscription, resource-group, azure-app")
	wantError(t, []string{"status", "--platform", "azure", "--azure-config", filepath.Join(dir, "missing.yaml")}, "no such file")

	t.Setenv("MODELSLOT_AZURE_CONFIG", good)
	out = mustRun(t, "slot", "list", "--platform", "azure")
	wantLines(t, out, `staging\s+.*`)
}

// rolloutClock runs 60 times faster than the wall clock: a one-minute
// Azure Monitor grain passes in a second.
func rolloutClock(site *azuretest.FakeSite) func() time.Time { return fastClock(site, 60) }

func fastClock(site *azuretest.FakeSite, speed time.Duration) func() time.Time {
	start := time.Now()
	now := func() time.Time { return start.Add(time.Since(start) * speed) }
	site.SetNow(now)
	return now
}

// feedMetrics reports 300 requests a minute for every slot once the
// minute is over; badImage fails 20% of them while it runs in production
// (it passes its bake at a share of the traffic, and fails under the
// whole load).
func feedMetrics(site *azuretest.FakeSite, now func() time.Time, badImage string) {
	site.SetMetricsFunc(func(slot, image string, minute time.Time) (azuretest.MetricPoint, bool) {
		if minute.Add(time.Minute).After(now()) {
			return azuretest.MetricPoint{}, false
		}
		p := azuretest.MetricPoint{Time: minute, Requests: 300, ResponseTime: 0.4}
		if image == badImage && slot == azuretest.Production {
			p.Http5xx = 60
		}
		return p, true
	})
}

const testPlan = `name: azure-test
interval: 100ms
onInconclusive: fail
analysis:
  metrics: [errors]
  minSamples: 100
  maxErrorRate: 0.05
steps:
  - traffic: 20
  - bake: {duration: 2m, max: 30m}
  - swap
  - watch: {duration: 2m, max: 30m}
`

func writePlan(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(p, []byte(testPlan), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAzureRolloutPromotesGoodVersion(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	feedMetrics(site, rolloutClock(site), "llm:bad")
	mustRun(t, az(site, "deploy staging --image llm:v2 --version v2")...)
	state := filepath.Join(t.TempDir(), "state.db")

	out := mustRun(t, az(site, "rollout start staging --plan "+writePlan(t)+" --state "+state)...)
	wantLines(t, out,
		`rollout r-\S+ started: staging into production of App Service app llm \(state in `+regexp.QuoteMeta(state)+`; Ctrl-C stops it, the same command resumes it\)`,
		`\[\d\d:\d\d:\d\d\] r-\S+: running, \d/4 .*`,
		`    verdict at step 2 \(bake, 20%\): pass -> continue: .*`,
		`    verdict at step 4 \(watch, 0%\): pass -> continue: .*`,
	)
	if !strings.Contains(out, "succeeded") {
		t.Errorf("rollout output:\n%s", out)
	}
	if p, s := site.Image("production"), site.Image("staging"); p != "llm:v2" || s != "llm:v1" {
		t.Errorf("after the rollout production runs %q and staging %q", p, s)
	}
	if n := site.Swaps(); n != 1 {
		t.Errorf("swaps = %d, want 1", n)
	}
	if r := site.RampUpRules(); len(r) != 0 {
		t.Errorf("rampUpRules after the rollout = %+v", r)
	}
	if _, err := os.Stat(state + ".lock"); !os.IsNotExist(err) {
		t.Errorf("the state lock outlived the rollout: %v", err)
	}

	out = mustRun(t, az(site, "rollout history --state "+state)...)
	wantLines(t, out, `ID\s+STARTED\s+SLOT\s+STATE\s+STEP\s+REASON`, `r-\S+\s+\S+ \S+\s+staging\s+succeeded\s+.*`)
	out = mustRun(t, az(site, "rollout status --state "+state)...)
	if !strings.Contains(out, "succeeded") {
		t.Errorf("rollout status:\n%s", out)
	}
}

func TestAzureRolloutSwapsBackBadVersion(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	feedMetrics(site, rolloutClock(site), "llm:bad")
	mustRun(t, az(site, "deploy staging --image llm:bad --version v3")...)
	dir := t.TempDir()

	// --data holds the default state file.
	out, _, err := run(t, az(site, "rollout start staging --plan "+writePlan(t)+" --data "+dir)...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 3 {
		t.Fatalf("rollout of a bad version: err %v, want exit status 3\n%s", err, out)
	}
	wantLines(t, out, `    verdict at step 4 \(watch, 0%\): fail -> rollback: .*`)
	if !strings.Contains(out, "rolled_back") {
		t.Errorf("rollout output:\n%s", out)
	}
	if p, s := site.Image("production"), site.Image("staging"); p != "llm:v1" || s != "llm:bad" {
		t.Errorf("after the rollback production runs %q and staging %q", p, s)
	}
	if n := site.Swaps(); n != 2 {
		t.Errorf("swaps = %d, want 2 (in and back)", n)
	}
	out = mustRun(t, az(site, "rollout history --data "+dir)...)
	wantLines(t, out, `r-\S+\s+\S+ \S+\s+staging\s+rolled_back\s+.*`)
}

func TestAzureRolloutResumesAfterInterrupt(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	feedMetrics(site, rolloutClock(site), "llm:bad")
	mustRun(t, az(site, "deploy staging --image llm:v2 --version v2")...)
	state := filepath.Join(t.TempDir(), "state.db")
	plan := writePlan(t)

	// Ctrl-C once the first traffic step is in force.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if r := site.RampUpRules(); len(r) == 1 && *r[0].ReroutePercentage == 20 {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	out, errOut, err := runCtx(t, ctx, az(site, "rollout start staging --plan "+plan+" --state "+state)...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 130 {
		t.Fatalf("interrupted rollout: err %v, want exit status 130\n%s\n%s", err, out, errOut)
	}
	if !regexp.MustCompile(`stopped: rollout r-\S+ stays running at \d/4 .* run the same command`).MatchString(errOut) {
		t.Errorf("stderr after Ctrl-C = %q", errOut)
	}
	if n := site.Swaps(); n != 0 {
		t.Fatalf("swaps after the interrupt = %d", n)
	}
	out = mustRun(t, az(site, "rollout status --state "+state)...)
	if !strings.Contains(out, "running") {
		t.Errorf("rollout status of the stopped rollout:\n%s", out)
	}

	// Another slot cannot start while it waits.
	wantError(t, az(site, "rollout start production --plan "+plan+" --state "+state), "is active in")

	out = mustRun(t, az(site, "rollout start staging --plan "+plan+" --state "+state)...)
	wantLines(t, out, `resuming rollout r-\S+ of slot staging: running, .*`)
	if !strings.Contains(out, "succeeded") || site.Image("production") != "llm:v2" {
		t.Errorf("resumed rollout:\n%s", out)
	}
	var hist []struct{ ID string }
	if err := json.Unmarshal([]byte(mustRun(t, az(site, "rollout history -o json --state "+state)...)), &hist); err != nil || len(hist) != 1 {
		t.Errorf("history after resume: %v %v", hist, err)
	}
}

func TestAzureRolloutAbort(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	feedMetrics(site, rolloutClock(site), "llm:bad")
	mustRun(t, az(site, "deploy staging --image llm:v2 --version v2")...)
	state := filepath.Join(t.TempDir(), "state.db")
	wantError(t, az(site, "rollout abort --state "+state), "has no active rollout")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if r := site.RampUpRules(); len(r) == 1 {
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	runCtx(t, ctx, az(site, "rollout start staging --plan "+writePlan(t)+" --state "+state)...)

	out, _, err := run(t, az(site, "rollout abort --reason test --state "+state)...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 3 {
		t.Fatalf("abort: err %v, want exit status 3\n%s", err, out)
	}
	if !strings.Contains(out, "aborted") {
		t.Errorf("abort output:\n%s", out)
	}
	if r := site.RampUpRules(); len(r) != 0 {
		t.Errorf("rampUpRules after abort = %+v", r)
	}
	if p := site.Image("production"); p != "llm:v1" {
		t.Errorf("production after abort = %q", p)
	}
}

// TestAzureHelp: value names render after the flags (backticks in a help
// text are pflag's value name), and the Azure flags have a section of
// their own after the local ones.
func TestAzureHelp(t *testing.T) {
	for _, cmd := range []string{"status", "slot list", "rollout start", "deploy"} {
		out := mustRun(t, append(strings.Fields(cmd), "--help")...)
		wantLines(t, out,
			`      --subscription ID\s+Azure subscription ID that holds the App Service app \(az account show --query id -o tsv\)`,
			`      --azure-config FILE\s+read the Azure flags from the YAML FILE, .*`,
			`      --azure-audience URL\s+.*`,
			`Azure Flags \(with --platform azure; see docs/AZURE.md\):`,
		)
		azure := strings.Index(out, "Azure Flags (")
		if i := strings.Index(out, "--platform string"); i < 0 || i > azure {
			t.Errorf("%s --help: the local flags do not come before the Azure ones:\n%s", cmd, out)
		}
		if i := strings.Index(out, "--subscription"); i < azure {
			t.Errorf("%s --help: --subscription is outside the Azure section:\n%s", cmd, out)
		}
	}
}

// TestAzureAudience: a custom cloud takes its token audience from
// --azure-audience (or the config file's azure-audience).
func TestAzureAudience(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1"})
	var got azure.Config
	prev := azureConfigHook
	azureConfigHook = func(c *azure.Config) { got = *c; prev(c) }
	t.Cleanup(func() { azureConfigHook = prev })
	mustRun(t, az(site, "slot list", "--azure-cloud", "custom", "--azure-arm-endpoint", "https://management.stack.example/",
		"--azure-authority", "https://login.stack.example/", "--azure-audience", "https://management.core.stack.example/")...)
	if got.CustomAudience != "https://management.core.stack.example/" || got.CustomEndpoint != "https://management.stack.example/" {
		t.Errorf("config = audience %q endpoint %q", got.CustomAudience, got.CustomEndpoint)
	}
	wantError(t, az(site, "slot list", "--azure-audience", "https://management.core.stack.example/"), "--azure-audience", "custom")
	wantError(t, az(site, "slot list", "--azure-metrics-delay", "3x"), `--azure-metrics-delay "3x" is not a duration`)
	mustRun(t, az(site, "slot list", "--azure-metrics-delay", "5m")...)
	if got.MetricsDelay != 5*time.Minute {
		t.Errorf("MetricsDelay = %v, want 5m from --azure-metrics-delay", got.MetricsDelay)
	}
}

// TestAzureRolloutRefusesUnmeasurable: a plan that judges what Azure
// Monitor cannot measure is refused at the start, with the reason, and
// nothing changes on the app.
func TestAzureRolloutRefusesUnmeasurable(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	mustRun(t, az(site, "deploy staging --image llm:v2 --version v2")...)
	for _, tt := range []struct{ name, plan, want string }{
		{"ttft", strings.Replace(testPlan, "metrics: [errors]", "metrics: [errors, ttft]", 1), "analysis.gates[0] judges metric ttft, which this metric source cannot measure: App Service reports the time to the last byte"},
		{"tokens in a step gate", strings.Replace(testPlan, "- bake: {duration: 2m, max: 30m}", "- bake: {duration: 2m, max: 30m, gates: [{kind: metrics, metrics: [tokens_per_sec]}]}", 1), "steps[1].bake.gates[0] judges metric tokens_per_sec"},
		{"latency slo", strings.Replace(testPlan, "metrics: [errors]", "metrics: [errors]\n  slo: [{metric: latency, quantile: 0.95, max: 2s}]", 1), "an SLO on a quantile of latency"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := filepath.Join(t.TempDir(), "plan.yaml")
			os.WriteFile(plan, []byte(tt.plan), 0o600)
			wantCode(t, wantError(t, az(site, "rollout start staging --plan "+plan+" --state "+filepath.Join(t.TempDir(), "s.db")), tt.want, "remove it from the plan"), modelslot.EINVALID)
		})
	}
	if r := site.RampUpRules(); len(r) != 0 {
		t.Errorf("a refused plan changed the traffic: %+v", r)
	}
	// With Application Insights, requests are judged one by one: the
	// reason is that source's.
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(plan, []byte(strings.Replace(testPlan, "metrics: [errors]", "metrics: [errors, ttft]", 1)), 0o600)
	wantError(t, az(site, "rollout start staging --plan "+plan+" --state "+filepath.Join(t.TempDir(), "s.db"), "--azure-app-insights", site.AppInsightsID()), "Application Insights request telemetry records the whole duration")
	wantError(t, az(site, "rollout start staging --plan "+plan+" --state "+filepath.Join(t.TempDir(), "s.db"), "--azure-app-insights", "nope"), "not the ARM id of an Application Insights component")
}

// TestAzureRolloutAppInsights: with --azure-app-insights the watch judges
// each request's latency from Application Insights; a version that is
// slower per request (and fails no request) is swapped back.
func TestAzureRolloutAppInsights(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	now := fastClock(site, 240)
	site.SetMetricsLag(2 * time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// 5 requests a second of fake time per slot; llm:slow takes 3x
		// as long, only once it serves production's load.
		next := now()
		for ctx.Err() == nil {
			for t := next; t.Before(now()); t = t.Add(200 * time.Millisecond) {
				for _, slot := range []string{"production", "staging"} {
					d := time.Duration(200+int(t.UnixNano()/1e6%97)) * time.Millisecond
					if site.Image(slot) == "llm:slow" && slot == "production" {
						d *= 3
					}
					site.AddRequests(slot, azuretest.AIRequest{Start: t, Duration: d, Status: 200})
				}
				next = t.Add(200 * time.Millisecond)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	mustRun(t, az(site, "deploy staging --image llm:slow --version v3")...)
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	// Application Insights ingests requests late too: the plan waits as long.
	p := strings.Replace(testPlan, "metrics: [errors]", "metrics: [errors, latency]", 1)
	os.WriteFile(plan, []byte(strings.Replace(p, "steps:", "azure: {metricsDelay: 2m}\nsteps:", 1)), 0o600)
	out, _, err := run(t, az(site, "rollout start staging --plan "+plan+" --state "+filepath.Join(t.TempDir(), "s.db"), "--azure-app-insights", site.AppInsightsID())...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 3 {
		t.Fatalf("rollout of a version slower per request: err %v, want exit status 3\n%s", err, out)
	}
	wantLines(t, out, `    verdict at step 4 \(watch, 0%\): fail -> rollback: .*latency.*`)
	if p := site.Image("production"); p != "llm:v1" {
		t.Errorf("production runs %q after the rollback", p)
	}
}

// TestAzureRolloutLateErrorsRollBack: Azure Monitor reports a young
// minute with part of its requests and none of its errors yet. The watch
// judges settled minutes only (the plan's azure.metricsDelay), so the bad
// version's 5xx, which arrive late, still roll it back; no verdict stands
// on a minute younger than the delay.
func TestAzureRolloutLateErrorsRollBack(t *testing.T) {
	site := newSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	feedMetrics(site, fastClock(site, 240), "llm:bad")
	site.SetMetricsLag(3 * time.Minute)
	mustRun(t, az(site, "deploy staging --image llm:bad --version v3")...)
	state := filepath.Join(t.TempDir(), "state.db")
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(plan, []byte(strings.Replace(testPlan, "steps:", "azure: {metricsDelay: 3m}\nsteps:", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, az(site, "rollout start staging --plan "+plan+" --state "+state)...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 3 {
		t.Fatalf("rollout of a version whose errors arrive late: err %v, want exit status 3 (rolled back)\n%s", err, out)
	}
	wantLines(t, out, `    verdict at step 4 \(watch, 0%\): fail -> rollback: .* \[judged \d+ buckets?, \d\d:\d\d( to \d\d:\d\d)? UTC\]`)
	if p := site.Image("production"); p != "llm:v1" {
		t.Errorf("production runs %q after the rollback", p)
	}
	var ro rollout.Rollout
	if err := json.Unmarshal([]byte(mustRun(t, az(site, "rollout status -o json --state "+state)...)), &ro); err != nil {
		t.Fatal(err)
	}
	if len(ro.Verdicts) == 0 {
		t.Fatal("no verdicts")
	}
	for _, v := range ro.Verdicts {
		if len(v.Judged) == 0 {
			t.Errorf("verdict at step %d names no minutes", v.Step+1)
		}
		for _, m := range v.Judged {
			if m.Before(v.From) {
				t.Errorf("verdict at step %d judged minute %s, which began before the phase (%s)", v.Step+1, m.Format(time.TimeOnly), v.From.Format(time.TimeOnly))
			}
			if settled := m.Add(time.Minute + 3*time.Minute); settled.After(v.Time) {
				t.Errorf("verdict at step %d (%s) judged minute %s before it settled (%s)", v.Step+1, v.Time.Format(time.TimeOnly), m.Format(time.TimeOnly), settled.Format(time.TimeOnly))
			}
		}
	}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := modelslot.ErrorCode(err); got != code {
		t.Errorf("error code of %q = %s, want %s", err, got, code)
	}
}

func TestAzurePlanExampleParses(t *testing.T) {
	p, err := rollout.ParsePlanFile(filepath.Join("..", "..", "examples", "plan-azure.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.HasSwap() || p.Interval.D() != time.Minute {
		t.Errorf("plan-azure.yaml: swap %v, interval %v", p.HasSwap(), p.Interval.D())
	}
}
