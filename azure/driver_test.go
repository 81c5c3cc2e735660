package azure_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/azure"
	"github.com/modelslot/modelslot/azure/azuretest"
)

// syncBuffer is a log sink that is safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newDriver(t *testing.T, site *azuretest.FakeSite) (*azure.Driver, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	d, err := azure.New(site.Config(), slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return d, logs
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// at walks decoded JSON: string keys index objects, ints index arrays.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("at %v: %T is not an object", path, v)
			}
			if v, ok = m[k]; !ok {
				t.Fatalf("at %v: no field %q in %v", path, k, m)
			}
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("at %v: %v has no element %d", path, v, k)
			}
			v = a[k]
		}
	}
	return v
}

func wantCode(t *testing.T, err error, code string, contains ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want %s", code)
	}
	if got := modelslot.ErrorCode(err); got != code {
		t.Fatalf("code = %s, want %s (err: %v)", got, code, err)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("message %q does not contain %q", err.Error(), c)
		}
	}
}

func deploy(t *testing.T, d *azure.Driver, site *azuretest.FakeSite, slot, image, version string) *modelslot.Slot {
	t.Helper()
	s, err := d.Deploy(ctx(t), site.App, slot, modelslot.DeployRequest{Deployment: modelslot.Deployment{
		Version:  version,
		Settings: map[string]string{azure.ImageSetting: image},
		Warmup:   modelslot.Warmup{Path: "/health", Timeout: modelslot.Duration(5 * time.Second)},
	}})
	if err != nil {
		t.Fatalf("deploy %s to %s: %v", image, slot, err)
	}
	return s
}

func TestAppListsSlots(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"canary", "staging", "blue"}})
	d, _ := newDriver(t, site)
	app, err := d.App(ctx(t), site.App)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(app.SlotNames(), ","), "production,blue,canary,staging"; got != want {
		t.Errorf("slots = %s, want %s (the fake pages two slots at a time)", got, want)
	}
	if app.MaxSlots != 6 {
		t.Errorf("MaxSlots = %d, want 6 (Standard: 5 slots + production)", app.MaxSlots)
	}
	prod := app.Slot(modelslot.Production)
	if prod.Deployment == nil || prod.Deployment.Settings[azure.ImageSetting] != "llm:v1" {
		t.Fatalf("production deployment = %+v, want image llm:v1", prod.Deployment)
	}
	if got, want := prod.Deployment.URL, "https://"+site.HostName(azuretest.Production); got != want {
		t.Errorf("URL = %s, want %s", got, want)
	}
	if app.Slot("staging").Deployment != nil {
		t.Errorf("a new slot has a deployment: %+v", app.Slot("staging").Deployment)
	}
	if len(app.Routing.Rules) != 0 {
		t.Errorf("rules = %v, want none", app.Routing.Rules)
	}

	_, err = d.App(ctx(t), "other")
	wantCode(t, err, modelslot.ENOTFOUND, `"llm"`, "--app")
}

func TestCreateSlot(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Image: "llm:v1"})
	d, _ := newDriver(t, site)
	s, err := d.CreateSlot(ctx(t), site.App, "staging")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "staging" {
		t.Errorf("slot = %s", s.Name)
	}
	req, ok := site.LastRequest(http.MethodPut, "/sites/llm/slots/staging")
	if !ok {
		t.Fatal("no PUT slots/staging")
	}
	if got := at(t, req.Body, "location"); got != site.Location {
		t.Errorf("location = %v, want %s", got, site.Location)
	}
	if got := at(t, req.Body, "properties", "serverFarmId"); !strings.HasSuffix(got.(string), "/serverfarms/plan-llm") {
		t.Errorf("serverFarmId = %v, want the production site's plan", got)
	}
	if got := site.Slots(); len(got) != 2 {
		t.Errorf("slots = %v", got)
	}
	_, err = d.CreateSlot(ctx(t), site.App, "staging")
	wantCode(t, err, modelslot.ECONFLICT, "already has")
	_, err = d.CreateSlot(ctx(t), site.App, "Bad_Name")
	wantCode(t, err, modelslot.EINVALID)

	// Azure's own refusal, translated.
	site.Fail(azuretest.Fault{Method: http.MethodPut, PathSuffix: "/slots/canary", Status: http.StatusConflict,
		Body: `{"Code":"Conflict","Message":"Cannot complete the operation because the site will exceed the number of slots allowed for the 'Standard' SKU."}`})
	_, err = d.CreateSlot(ctx(t), site.App, "canary")
	wantCode(t, err, modelslot.ECONFLICT, "tier", "scale the plan up")
}

func TestCreateSlotBasicTier(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{SKU: "Basic"})
	d, _ := newDriver(t, site)
	_, err := d.CreateSlot(ctx(t), site.App, "staging")
	wantCode(t, err, modelslot.ECONFLICT, "Basic", "allows 0")
	if n := site.CountRequests(http.MethodPut, "/slots/staging"); n != 0 {
		t.Errorf("%d PUTs sent; the limit is known before asking Azure", n)
	}
}

func TestDeploy(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	site.SetAppSettings("staging", map[string]string{"OPERATOR_SECRET": "s3cret", "DB_CONN": "staging-db"})
	d, _ := newDriver(t, site)
	// An operator already marked DB_CONN sticky; the PUT must keep it.
	if _, err := d.Deploy(ctx(t), site.App, "staging", modelslot.DeployRequest{
		Deployment:     modelslot.Deployment{Settings: map[string]string{azure.ImageSetting: "llm:v0"}},
		StickySettings: map[string]string{"DB_CONN": "staging-db"},
	}); err != nil {
		t.Fatal(err)
	}
	var probes sync.Map
	site.ServeImage("llm:v2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Store(r.URL.Path, true)
		w.WriteHeader(http.StatusOK)
	}))
	site.ResetRequests()

	s, err := d.Deploy(ctx(t), site.App, "staging", modelslot.DeployRequest{
		Deployment: modelslot.Deployment{
			Version:  "v2",
			Settings: map[string]string{azure.ImageSetting: "llm:v2", "TEMPERATURE": "0.2"},
			Warmup:   modelslot.Warmup{Path: "/ready", Statuses: []int{200, 202}, Timeout: modelslot.Duration(5 * time.Second)},
		},
		StickySettings: map[string]string{"SLOT_ROLE": "staging"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := probes.Load("/ready"); !ok {
		t.Error("the deploy never probed /ready")
	}

	cfg, ok := site.LastRequest(http.MethodPatch, "/slots/staging/config/web")
	if !ok {
		t.Fatal("no PATCH slots/staging/config/web")
	}
	if got := at(t, cfg.Body, "properties", "linuxFxVersion"); got != "DOCKER|llm:v2" {
		t.Errorf("linuxFxVersion = %v, want DOCKER|llm:v2", got)
	}
	set, ok := site.LastRequest(http.MethodPut, "/slots/staging/config/appsettings")
	if !ok {
		t.Fatal("no PUT slots/staging/config/appsettings")
	}
	for k, want := range map[string]string{
		"MODEL_VERSION":                     "v2",
		"TEMPERATURE":                       "0.2",
		"OPERATOR_SECRET":                   "s3cret", // merged, not replaced
		"SLOT_ROLE":                         "staging",
		"WEBSITE_SWAP_WARMUP_PING_PATH":     "/ready",
		"WEBSITE_SWAP_WARMUP_PING_STATUSES": "200,202",
		"MODELSLOT_SETTINGS":                "TEMPERATURE",
		"MODELSLOT_REVISION":                s.Deployment.Revision,
	} {
		if got := at(t, set.Body, "properties", k); got != want {
			t.Errorf("app setting %s = %v, want %s", k, got, want)
		}
	}
	if _, ok := at(t, set.Body, "properties").(map[string]any)["image"]; ok {
		t.Error(`"image" was written as an app setting; it belongs in linuxFxVersion`)
	}
	names, ok := site.LastRequest(http.MethodPut, "/config/slotConfigNames")
	if !ok {
		t.Fatal("no PUT config/slotConfigNames")
	}
	got := at(t, names.Body, "properties", "appSettingNames").([]any)
	if len(got) != 2 || got[0] != "DB_CONN" || got[1] != "SLOT_ROLE" {
		t.Errorf("appSettingNames = %v, want [DB_CONN SLOT_ROLE] (read, merge, write)", got)
	}
	if _, ok := at(t, names.Body, "properties").(map[string]any)["connectionStringNames"]; !ok {
		t.Error("connectionStringNames missing from the PUT: Azure would clear the list")
	}

	app, err := d.App(ctx(t), site.App)
	if err != nil {
		t.Fatal(err)
	}
	dep := app.Slot("staging").Deployment
	if dep == nil {
		t.Fatal("staging has no deployment")
	}
	if dep.Revision != s.Deployment.Revision || dep.Version != "v2" || dep.Settings["TEMPERATURE"] != "0.2" || dep.Settings[azure.ImageSetting] != "llm:v2" {
		t.Errorf("deployment read back = %+v, want revision %s, v2, TEMPERATURE and image", dep, s.Deployment.Revision)
	}
	if _, ok := dep.Settings["OPERATOR_SECRET"]; ok {
		t.Error("an app setting modelslot did not write shows up in the deployment")
	}
	if got := app.Slot("staging").StickySettings["SLOT_ROLE"]; got != "staging" {
		t.Errorf("sticky SLOT_ROLE = %q", got)
	}

	_, err = d.Deploy(ctx(t), site.App, "nope", modelslot.DeployRequest{Deployment: modelslot.Deployment{Settings: map[string]string{"image": "x"}}})
	wantCode(t, err, modelslot.ENOTFOUND, "nope")
	_, err = d.Deploy(ctx(t), site.App, "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{Command: "serve"}})
	wantCode(t, err, modelslot.EINVALID, "settings.image")
}

func TestDeployNeverHealthyReverts(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	site.ServeImage("llm:broken", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "loading", http.StatusServiceUnavailable)
	}))
	d, _ := newDriver(t, site)
	deploy(t, d, site, "staging", "llm:v1", "v1")

	start := time.Now()
	_, err := d.Deploy(ctx(t), site.App, "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{
		Version:  "v2",
		Settings: map[string]string{azure.ImageSetting: "llm:broken"},
		Warmup:   modelslot.Warmup{Path: "/health", Timeout: modelslot.Duration(300 * time.Millisecond)},
	}})
	wantCode(t, err, modelslot.EUNAVAILABLE, "never answered", "503", "put back")
	if time.Since(start) > 5*time.Second {
		t.Errorf("the deploy took %v with a 300ms warm-up timeout", time.Since(start))
	}
	if got := site.Image("staging"); got != "llm:v1" {
		t.Errorf("image after the failed deploy = %s, want llm:v1 back", got)
	}
	if got := site.AppSettings("staging")["MODEL_VERSION"]; got != "v1" {
		t.Errorf("MODEL_VERSION after the failed deploy = %s, want v1 back", got)
	}
}

func TestTraffic(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging", "canary"}})
	d, logs := newDriver(t, site)
	deploy(t, d, site, "staging", "llm:v2", "v2")

	_, err := d.SetTraffic(ctx(t), site.App, []modelslot.TrafficRule{{Slot: "canary", Percent: 5}}, modelslot.TrafficOptions{})
	wantCode(t, err, modelslot.ECONFLICT, "no deployment")

	r, err := d.SetTraffic(ctx(t), site.App, []modelslot.TrafficRule{{Slot: "staging", Percent: 10}}, modelslot.TrafficOptions{ResetPins: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rules) != 1 || r.Rules[0] != (modelslot.TrafficRule{Slot: "staging", Percent: 10}) {
		t.Errorf("routing = %+v, want staging=10", r)
	}
	req, ok := site.LastRequest(http.MethodPatch, "/sites/llm/config/web")
	if !ok {
		t.Fatal("no PATCH config/web of the production site")
	}
	rule := at(t, req.Body, "properties", "experiments", "rampUpRules", 0)
	if got := at(t, rule, "name"); got != "staging" {
		t.Errorf("name = %v", got)
	}
	if got, want := at(t, rule, "actionHostName"), site.HostName("staging"); got != want {
		t.Errorf("actionHostName = %v, want the slot's defaultHostName %s", got, want)
	}
	if got := at(t, rule, "reroutePercentage"); got != 10.0 {
		t.Errorf("reroutePercentage = %v", got)
	}
	if !strings.Contains(logs.String(), "cannot be invalidated") {
		t.Error("ResetPins did not log that Azure's routing cookie cannot be invalidated")
	}

	app, err := d.App(ctx(t), site.App)
	if err != nil {
		t.Fatal(err)
	}
	if got := app.Routing.Percent(modelslot.Production); got != 90 {
		t.Errorf("production share = %v, want 90", got)
	}

	if _, err := d.SetTraffic(ctx(t), site.App, nil, modelslot.TrafficOptions{}); err != nil {
		t.Fatal(err)
	}
	req, _ = site.LastRequest(http.MethodPatch, "/sites/llm/config/web")
	if got := at(t, req.Body, "properties", "experiments", "rampUpRules"); got == nil || len(got.([]any)) != 0 {
		t.Errorf("clear sent rampUpRules = %v, want []", got)
	}
	if got := site.RampUpRules(); len(got) != 0 {
		t.Errorf("rules after clear = %v", got)
	}
}

func TestRampUp(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
	d, _ := newDriver(t, site)
	deploy(t, d, site, "staging", "llm:v2", "v2")
	_, err := d.RampUp(ctx(t), site.App, "staging", azure.RampUpRule{Start: 5, Step: 5, Interval: 10 * time.Minute, Min: 0, Max: 50})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := site.LastRequest(http.MethodPatch, "/sites/llm/config/web")
	rule := at(t, req.Body, "properties", "experiments", "rampUpRules", 0)
	for k, want := range map[string]any{
		"name": "staging", "actionHostName": site.HostName("staging"), "reroutePercentage": 5.0,
		"changeStep": 5.0, "changeIntervalInMinutes": 10.0, "minReroutePercentage": 0.0, "maxReroutePercentage": 50.0,
	} {
		if got := at(t, rule, k); got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	_, err = d.RampUp(ctx(t), site.App, "staging", azure.RampUpRule{Start: 5, Step: 5, Interval: 90 * time.Second, Max: 50})
	wantCode(t, err, modelslot.EINVALID, "minutes")
}

func TestDeleteSlot(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging", "old"}})
	d, _ := newDriver(t, site)
	deploy(t, d, site, "staging", "llm:v2", "v2")
	if _, err := d.SetTraffic(ctx(t), site.App, []modelslot.TrafficRule{{Slot: "staging", Percent: 20}}, modelslot.TrafficOptions{}); err != nil {
		t.Fatal(err)
	}

	wantCode(t, d.DeleteSlot(ctx(t), site.App, modelslot.Production, true), modelslot.EINVALID, "production")
	wantCode(t, d.DeleteSlot(ctx(t), site.App, "staging", false), modelslot.ECONFLICT, "20%", "--force")
	wantCode(t, d.DeleteSlot(ctx(t), site.App, "ghost", false), modelslot.ENOTFOUND, `"ghost"`)

	if err := d.DeleteSlot(ctx(t), site.App, "old", false); err != nil {
		t.Fatal(err)
	}
	site.ResetRequests()
	if err := d.DeleteSlot(ctx(t), site.App, "staging", true); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, r := range site.Requests() {
		if r.Method == http.MethodPatch || r.Method == http.MethodDelete {
			order = append(order, r.Method+" "+r.Path[strings.LastIndex(r.Path, "/sites/"):])
		}
	}
	if want := []string{"PATCH /sites/llm/config/web", "DELETE /sites/llm/slots/staging"}; strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("requests = %v, want %v (the rule goes before its slot)", order, want)
	}
	if got := site.RampUpRules(); len(got) != 0 {
		t.Errorf("rules = %v, want none", got)
	}
	if got := site.Slots(); len(got) != 1 {
		t.Errorf("slots = %v, want production only", got)
	}
}

func TestSwap(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	d, _ := newDriver(t, site)
	deploy(t, d, site, modelslot.Production, "llm:v1", "v1")
	deploy(t, d, site, "staging", "llm:v2", "v2")
	// A sticky setting stays with its slot.
	if _, err := d.Deploy(ctx(t), site.App, "staging", modelslot.DeployRequest{
		Deployment:     modelslot.Deployment{Version: "v2", Settings: map[string]string{azure.ImageSetting: "llm:v2"}},
		StickySettings: map[string]string{"SLOT_ROLE": "staging"},
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := d.App(ctx(t), site.App)
	site.ResetRequests()

	rec, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging", Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	req, ok := site.LastRequest(http.MethodPost, "/sites/llm/slots/staging/slotsswap")
	if !ok {
		t.Fatal("no POST slots/staging/slotsswap")
	}
	if got := at(t, req.Body, "targetSlot"); got != "production" {
		t.Errorf("targetSlot = %v, want production", got)
	}
	if got := at(t, req.Body, "preserveVnet"); got != true {
		t.Errorf("preserveVnet = %v, want true", got)
	}
	if rec.Status != modelslot.SwapCompleted || rec.Source != "staging" || rec.Target != modelslot.Production {
		t.Errorf("record = %+v", rec)
	}
	if rec.SourceRevision != before.Slot("staging").Deployment.Revision || rec.TargetRevision != before.Slot(modelslot.Production).Deployment.Revision {
		t.Errorf("record revisions %s/%s, want the pre-swap ones", rec.SourceRevision, rec.TargetRevision)
	}
	if n := site.CountRequests(http.MethodGet, "/sites/llm"); n == 0 {
		t.Error("the swap was not confirmed through the site's slotSwapStatus")
	}
	if site.Image(azuretest.Production) != "llm:v2" || site.Image("staging") != "llm:v1" {
		t.Errorf("after the swap production runs %s and staging %s", site.Image(azuretest.Production), site.Image("staging"))
	}
	app, _ := d.App(ctx(t), site.App)
	if got := app.Slot(modelslot.Production).Deployment; got.Version != "v2" || got.Revision != rec.SourceRevision {
		t.Errorf("production deployment = %+v, want v2 revision %s", got, rec.SourceRevision)
	}
	if got := app.Slot("staging").StickySettings["SLOT_ROLE"]; got != "staging" {
		t.Errorf("sticky SLOT_ROLE of staging = %q, want it kept by the slot", got)
	}
	if _, ok := app.Slot(modelslot.Production).StickySettings["SLOT_ROLE"]; ok {
		t.Error("the sticky setting moved to production")
	}

	swaps, err := d.Swaps(ctx(t), site.App, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(swaps) != 1 || swaps[0].Source != "staging" || swaps[0].Target != modelslot.Production || swaps[0].FinishedAt.IsZero() {
		t.Errorf("swaps = %+v", swaps)
	}
	st, err := d.Status(ctx(t), site.App)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastSwap == nil || st.LastSwap.Source != "staging" {
		t.Errorf("status last swap = %+v", st.LastSwap)
	}
	for _, s := range st.Slots {
		if !s.Healthy {
			t.Errorf("slot %s unhealthy: %s", s.Slot.Name, s.Health)
		}
	}

	// Rollback is the same swap again.
	if _, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	if site.Image(azuretest.Production) != "llm:v1" {
		t.Errorf("after swapping back production runs %s", site.Image(azuretest.Production))
	}
}

func TestSwapPreviewAndReset(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	d, _ := newDriver(t, site)
	deploy(t, d, site, modelslot.Production, "llm:v1", "v1")
	deploy(t, d, site, "staging", "llm:v2", "v2")

	rec, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging", Action: modelslot.SwapActionPreview})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != modelslot.SwapPreviewed {
		t.Errorf("status = %s", rec.Status)
	}
	req, ok := site.LastRequest(http.MethodPost, "/slots/staging/applySlotConfig")
	if !ok {
		t.Fatal("no POST slots/staging/applySlotConfig")
	}
	if got := at(t, req.Body, "targetSlot"); got != "production" {
		t.Errorf("targetSlot = %v", got)
	}
	app, _ := d.App(ctx(t), site.App)
	if got := app.Slot("staging").PreparedForSwap; got != "production" {
		t.Errorf("staging PreparedForSwap = %q", got)
	}
	_, err = d.Deploy(ctx(t), site.App, "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{Settings: map[string]string{"image": "llm:v3"}}})
	wantCode(t, err, modelslot.ECONFLICT, "swap preview is pending", "--action reset")
	// Azure refuses too, and its refusal is translated the same way.
	_, err = d.SetTraffic(ctx(t), site.App, []modelslot.TrafficRule{{Slot: "staging", Percent: 10}}, modelslot.TrafficOptions{})
	wantCode(t, err, modelslot.ECONFLICT, "swap preview is pending", "`modelslot swap <slot>`")

	rec, err = d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging", Action: modelslot.SwapActionReset})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != modelslot.SwapReset {
		t.Errorf("status = %s", rec.Status)
	}
	if site.CountRequests(http.MethodPost, "/slots/staging/resetSlotConfig") != 1 || site.CountRequests(http.MethodPost, "/sites/llm/resetSlotConfig") != 1 {
		t.Error("reset did not reset both the slot and production")
	}
	app, _ = d.App(ctx(t), site.App)
	if got := app.Slot("staging").PreparedForSwap; got != "" {
		t.Errorf("staging PreparedForSwap after reset = %q", got)
	}

	// Preview then swap completes it.
	if _, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging", Action: modelslot.SwapActionPreview}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	if site.Image(azuretest.Production) != "llm:v2" {
		t.Errorf("production runs %s after completing the preview", site.Image(azuretest.Production))
	}
}

func TestSwapWarmupFails(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	d, _ := newDriver(t, site)
	deploy(t, d, site, modelslot.Production, "llm:v1", "v1")
	healthy := true
	var mu sync.Mutex
	site.ServeImage("llm:v2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if !healthy {
			http.Error(w, "model crashed", http.StatusInternalServerError)
		}
	}))
	deploy(t, d, site, "staging", "llm:v2", "v2")
	mu.Lock()
	healthy = false
	mu.Unlock()

	_, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"})
	wantCode(t, err, modelslot.EUNAVAILABLE, "warm-up path", "WEBSITE_SWAP_WARMUP_PING_PATH")
	if site.Image(azuretest.Production) != "llm:v1" {
		t.Errorf("production runs %s after a failed swap; it must not be touched", site.Image(azuretest.Production))
	}
	if site.Swaps() != 0 {
		t.Errorf("swaps = %d", site.Swaps())
	}
}

func TestSwapCancelled(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	d, _ := newDriver(t, site)
	deploy(t, d, site, "staging", "llm:v2", "v2")
	c, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := d.Swap(c, site.App, modelslot.SwapRequest{Source: "staging"})
	wantCode(t, err, modelslot.EUNAVAILABLE, "stopped waiting")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v does not wrap context.Canceled", err)
	}
}

func TestErrorTranslation(t *testing.T) {
	tests := []struct {
		name  string
		fault azuretest.Fault
		run   func(*azure.Driver, context.Context) error
		code  string
		want  []string
	}{
		{"401", azuretest.Fault{Method: http.MethodGet, PathSuffix: "/sites/llm", Status: 401, Body: `{"error":{"code":"InvalidAuthenticationToken","message":"The access token is invalid."}}`},
			func(d *azure.Driver, c context.Context) error { _, err := d.App(c, "llm"); return err },
			modelslot.EUNAUTHORIZED, []string{"--azure-auth"}},
		{"403 swap", azuretest.Fault{Method: http.MethodPost, PathSuffix: "/slotsswap", Status: 403, Body: `{"error":{"code":"AuthorizationFailed","message":"The client does not have authorization to perform action"}}`},
			func(d *azure.Driver, c context.Context) error {
				_, err := d.Swap(c, "llm", modelslot.SwapRequest{Source: "staging"})
				return err
			},
			modelslot.EFORBIDDEN, []string{"Microsoft.Web/sites/slots/slotsswap/action", "Website Contributor"}},
		{"403 settings", azuretest.Fault{Method: http.MethodPost, PathSuffix: "/config/appsettings/list", Status: 403},
			func(d *azure.Driver, c context.Context) error { _, err := d.App(c, "llm"); return err },
			modelslot.EFORBIDDEN, []string{"Microsoft.Web/sites/config/list/action"}},
		{"404", azuretest.Fault{Method: http.MethodGet, PathSuffix: "/sites/llm", Status: 404, Body: `{"error":{"code":"ResourceNotFound","message":"The Resource 'Microsoft.Web/sites/llm' was not found."}}`},
			func(d *azure.Driver, c context.Context) error { _, err := d.App(c, "llm"); return err },
			modelslot.ENOTFOUND, []string{`app "llm"`, `resource group "rg-modelslot"`}},
		{"404 slot", azuretest.Fault{},
			func(d *azure.Driver, c context.Context) error { return d.DeleteSlot(c, "llm", "ghost", false) },
			modelslot.ENOTFOUND, []string{`slot "ghost"`}},
		{"409 prepared for swap", azuretest.Fault{Method: http.MethodPatch, PathSuffix: "/config/web", Status: 409, Body: `{"Code":"Conflict","Message":"Cannot modify this site because its configuration settings have been prepared for swap.","Details":[{"Message":"Cannot modify this site because its configuration settings have been prepared for swap."}]}`},
			func(d *azure.Driver, c context.Context) error {
				_, err := d.SetTraffic(c, "llm", nil, modelslot.TrafficOptions{})
				return err
			},
			modelslot.ECONFLICT, []string{"swap preview is pending", "--action reset"}},
		{"417 on swap", azuretest.Fault{Method: http.MethodPost, PathSuffix: "/slotsswap", Status: 417, Body: `{"Code":"ExpectationFailed","Message":"Cannot swap site slots for site 'llm' because the 'staging' slot did not respond to http ping. (417)"}`},
			func(d *azure.Driver, c context.Context) error {
				_, err := d.Swap(c, "llm", modelslot.SwapRequest{Source: "staging"})
				return err
			},
			modelslot.EUNAVAILABLE, []string{"did not answer its warm-up path", "WEBSITE_SWAP_WARMUP_PING_PATH"}},
		{"429 always", azuretest.Fault{Method: http.MethodGet, PathSuffix: "/sites/llm", Status: 429, Body: `{"error":{"code":"TooManyRequests","message":"throttled"}}`},
			func(d *azure.Driver, c context.Context) error { _, err := d.App(c, "llm"); return err },
			modelslot.EUNAVAILABLE, []string{"throttling"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			site := azuretest.NewFakeSite(t, azuretest.Options{Image: "llm:v1", Slots: []string{"staging"}})
			d, _ := newDriver(t, site)
			if tt.fault.Status != 0 {
				site.Fail(tt.fault)
			}
			err := tt.run(d, ctx(t))
			wantCode(t, err, tt.code, tt.want...)
			if strings.Contains(err.Error(), "RESPONSE") || strings.Contains(err.Error(), "-----") {
				t.Errorf("the SDK's raw error text leaks into the message: %q", err)
			}
		})
	}
}

func TestThrottledThenSucceeds(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Image: "llm:v1"})
	site.Fail(azuretest.Fault{Method: http.MethodGet, PathSuffix: "/sites/llm", Status: 429, Times: 2,
		Body: `{"error":{"code":"TooManyRequests","message":"throttled"}}`})
	d, _ := newDriver(t, site)
	if _, err := d.App(ctx(t), site.App); err != nil {
		t.Fatalf("App after two 429s: %v", err)
	}
	if n := site.CountRequests(http.MethodGet, "/sites/llm"); n != 3 {
		t.Errorf("GET site sent %d times, want 3 (two throttled, one retry that passes)", n)
	}
}

func TestCredentialFailure(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{})
	cfg := site.Config()
	cred := site.Credential()
	cred.(interface{ SetError(error) }).SetError(errors.New("no account signed in"))
	cfg.Credential = cred
	d, err := azure.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.App(ctx(t), site.App)
	wantCode(t, err, modelslot.EUNAUTHORIZED, "no account signed in", "az login")
	if n := len(site.Requests()); n != 0 {
		t.Errorf("%d requests sent without a token", n)
	}
}
