package main

import (
	"errors"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

const (
	typeResourceGroup = "azure:core/resourceGroup:ResourceGroup"
	typePlan          = "azure:appservice/servicePlan:ServicePlan"
	typeApp           = "azure:appservice/linuxWebApp:LinuxWebApp"
	typeSlot          = "azure:appservice/linuxWebAppSlot:LinuxWebAppSlot"
	typeWorkspace     = "azure:operationalinsights/analyticsWorkspace:AnalyticsWorkspace"
	typeInsights      = "azure:appinsights/insights:Insights"

	mockConnection = "InstrumentationKey=00000000-0000-0000-0000-00000000000a;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"

	mockSubscription = "00000000-0000-0000-0000-000000000001"
)

// mocks stands in for the Azure provider: it records the inputs of every
// resource and answers with ARM-shaped ids and host names.
type mocks struct {
	mu     sync.Mutex
	inputs map[string]resource.PropertyMap // by type token
	ignore map[string][]string             // ignoreChanges, by type token
}

var _ pulumi.MockResourceMonitor = (*mocks)(nil)

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	m.inputs[args.TypeToken] = args.Inputs
	if args.RegisterRPC != nil {
		m.ignore[args.TypeToken] = args.RegisterRPC.GetIgnoreChanges()
	}
	m.mu.Unlock()

	out := args.Inputs.Copy()
	str := func(key string) string {
		if v, ok := args.Inputs[resource.PropertyKey(key)]; ok && v.IsString() {
			return v.StringValue()
		}
		return ""
	}
	name := str("name")
	if name == "" {
		name = args.Name + "-auto" // Pulumi's auto-naming adds a suffix
		out["name"] = resource.NewStringProperty(name)
	}
	rgPath := "/subscriptions/" + mockSubscription + "/resourceGroups/" + str("resourceGroupName")
	var id string
	switch args.TypeToken {
	case typeResourceGroup:
		id = "/subscriptions/" + mockSubscription + "/resourceGroups/" + name
		out["location"] = resource.NewStringProperty(str("location"))
	case typePlan:
		id = rgPath + "/providers/Microsoft.Web/serverFarms/" + name
	case typeApp:
		id = rgPath + "/providers/Microsoft.Web/sites/" + name
		out["defaultHostname"] = resource.NewStringProperty(name + ".azurewebsites.net")
	case typeSlot:
		appID := str("appServiceId")
		id = appID + "/slots/" + name
		out["defaultHostname"] = resource.NewStringProperty(path.Base(appID) + "-" + name + ".azurewebsites.net")
	case typeWorkspace:
		id = rgPath + "/providers/Microsoft.OperationalInsights/workspaces/" + name
	case typeInsights:
		id = rgPath + "/providers/Microsoft.Insights/components/" + name
		out["connectionString"] = resource.MakeSecret(resource.NewStringProperty(mockConnection))
	default:
		id = args.Name + "_id"
	}
	if args.TypeToken == typeApp || args.TypeToken == typeSlot {
		// Azure answers a system-assigned identity with its principal.
		out["identity"] = resource.NewObjectProperty(resource.PropertyMap{
			"type":        resource.NewStringProperty("SystemAssigned"),
			"principalId": resource.NewStringProperty(name + "-principal"),
		})
	}
	return id, out, nil
}

func (m *mocks) Call(pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return resource.PropertyMap{}, nil
}

// stack is what one mocked `pulumi up` produced.
type stack struct {
	inputs  map[string]resource.PropertyMap
	ignore  map[string][]string
	exports map[string]any
}

// baseConfig is the least a stack needs: the image has no default.
var baseConfig = map[string]string{"image": "ghcr.io/example/model-server:v1"}

// runStack runs the program against the mocks with baseConfig overlaid by
// config. Keys without a namespace are the project's; an empty value unsets
// the key.
func runStack(t *testing.T, config map[string]string) (stack, error) {
	t.Helper()
	cfg := map[string]string{}
	for _, src := range []map[string]string{baseConfig, config} {
		for k, v := range src {
			if !strings.Contains(k, ":") {
				k = "modelslot:" + k
			}
			cfg[k] = v
		}
	}
	maps.DeleteFunc(cfg, func(_, v string) bool { return v == "" })
	m := &mocks{inputs: map[string]resource.PropertyMap{}, ignore: map[string][]string{}}
	exports := map[string]any{}
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		if err := run(ctx); err != nil {
			return err
		}
		// Resolve every export before the program ends.
		var wg sync.WaitGroup
		var mu sync.Mutex
		for k, v := range ctx.GetCurrentExportMap() {
			wg.Add(1)
			pulumi.ToOutput(v).ApplyT(func(x any) any {
				mu.Lock()
				exports[k] = x
				mu.Unlock()
				wg.Done()
				return nil
			})
		}
		wg.Wait()
		return nil
	}, pulumi.WithMocks("modelslot", "dev", m), func(info *pulumi.RunInfo) { info.Config = cfg })
	return stack{inputs: m.inputs, ignore: m.ignore, exports: exports}, err
}

func mustRun(t *testing.T, config map[string]string) stack {
	t.Helper()
	s, err := runStack(t, config)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return s
}

// get walks a property path such as "siteConfig.applicationStack.dockerImageName".
func (s stack) get(t *testing.T, typ, keyPath string) resource.PropertyValue {
	t.Helper()
	props, ok := s.inputs[typ]
	if !ok {
		t.Fatalf("no %s registered", typ)
	}
	v := resource.NewObjectProperty(props)
	for key := range strings.SplitSeq(keyPath, ".") {
		if !v.IsObject() {
			t.Fatalf("%s %s: %q is not inside an object", typ, keyPath, key)
		}
		next, ok := v.ObjectValue()[resource.PropertyKey(key)]
		if !ok {
			t.Fatalf("%s has no input %s", typ, keyPath)
		}
		v = next
	}
	return v
}

func (s stack) str(t *testing.T, typ, keyPath string) string {
	t.Helper()
	v := s.get(t, typ, keyPath)
	if !v.IsString() {
		t.Fatalf("%s %s = %v, want a string", typ, keyPath, v)
	}
	return v.StringValue()
}

func (s stack) settings(t *testing.T, typ string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for k, v := range s.get(t, typ, "appSettings").ObjectValue() {
		if v.IsSecret() {
			v = v.SecretValue().Element
		}
		m[string(k)] = v.StringValue()
	}
	return m
}

func TestSlotBelongsToApp(t *testing.T) {
	s := mustRun(t, nil)
	appID, ok := s.exports["production_id"].(string)
	if !ok || appID == "" {
		t.Fatalf("production_id = %v, want the app's id", s.exports["production_id"])
	}
	if got := s.str(t, typeSlot, "appServiceId"); got != appID {
		t.Errorf("slot appServiceId = %q, want the app's id %q", got, appID)
	}
	if got, want := s.str(t, typeSlot, "name"), "staging"; got != want {
		t.Errorf("slot name = %q, want %q", got, want)
	}
	if got, want := s.str(t, typeApp, "servicePlanId"), s.exports["planId"]; got != want {
		t.Errorf("app servicePlanId = %q, want the plan's id %q", got, want)
	}
	if got, want := s.str(t, typePlan, "osType"), "Linux"; got != want {
		t.Errorf("plan osType = %q, want %q", got, want)
	}
}

func TestPlanSKU(t *testing.T) {
	tests := []struct {
		name string
		sku  string // "" leaves the key unset
		want string
	}{
		{name: "default", want: "P1v3"},
		{name: "standard", sku: "S1", want: "S1"},
		{name: "premium v2", sku: "P2v2", want: "P2v2"},
		{name: "spelling normalised", sku: "p1V3", want: "P1v3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := map[string]string{}
			if tt.sku != "" {
				cfg["sku"] = tt.sku
			}
			s := mustRun(t, cfg)
			if got := s.str(t, typePlan, "skuName"); got != tt.want {
				t.Errorf("plan skuName = %q, want %q", got, tt.want)
			}
			if got := s.exports["sku"]; got != tt.want {
				t.Errorf("export sku = %v, want %q", got, tt.want)
			}
		})
	}
}

func TestTierWithoutSlotsIsRefused(t *testing.T) {
	for _, sku := range []string{"B1", "B2", "B3", "F1", "D1", "SHARED"} {
		t.Run(sku, func(t *testing.T) {
			s, err := runStack(t, map[string]string{"sku": sku})
			if err == nil {
				t.Fatal("run succeeded, want the tier refused")
			}
			var noSlots *noSlotsError
			if !errors.As(err, &noSlots) {
				t.Fatalf("error %v, want a noSlotsError", err)
			}
			for _, want := range []string{sku, "no deployment slots", "S1", "P1v3"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q does not mention %q", err, want)
				}
			}
			if len(s.inputs) != 0 {
				t.Errorf("resources declared before the refusal: %v", slices.Collect(maps.Keys(s.inputs)))
			}
		})
	}
}

func TestImages(t *testing.T) {
	tests := []struct {
		name                    string
		config                  map[string]string
		wantApp, wantSlot       string
		wantAppReg, wantSlotReg string
	}{
		{
			name:        "staging defaults to the production image",
			wantApp:     "example/model-server:v1",
			wantSlot:    "example/model-server:v1",
			wantAppReg:  "https://ghcr.io",
			wantSlotReg: "https://ghcr.io",
		},
		{
			name:        "staging image of its own",
			config:      map[string]string{"stagingImage": "myregistry.azurecr.io/models/server:v2"},
			wantApp:     "example/model-server:v1",
			wantSlot:    "models/server:v2",
			wantAppReg:  "https://ghcr.io",
			wantSlotReg: "https://myregistry.azurecr.io",
		},
		{
			name:        "docker hub",
			config:      map[string]string{"image": "vllm/vllm-openai:v0.6.0"},
			wantApp:     "vllm/vllm-openai:v0.6.0",
			wantSlot:    "vllm/vllm-openai:v0.6.0",
			wantAppReg:  "https://index.docker.io",
			wantSlotReg: "https://index.docker.io",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustRun(t, tt.config)
			const img, reg = "siteConfig.applicationStack.dockerImageName", "siteConfig.applicationStack.dockerRegistryUrl"
			for _, c := range []struct{ typ, key, want string }{
				{typeApp, img, tt.wantApp}, {typeApp, reg, tt.wantAppReg},
				{typeSlot, img, tt.wantSlot}, {typeSlot, reg, tt.wantSlotReg},
			} {
				if got := s.str(t, c.typ, c.key); got != c.want {
					t.Errorf("%s %s = %q, want %q", c.typ, c.key, got, c.want)
				}
			}
		})
	}
}

func TestAppSettings(t *testing.T) {
	s := mustRun(t, map[string]string{
		"stagingImage":   "ghcr.io/example/model-server:v2",
		"warmupStatuses": "200, 202",
		"appSettings":    `{"LOG_LEVEL":"debug"}`,
	})
	common := map[string]string{
		"LOG_LEVEL":                           "debug",
		"WEBSITES_PORT":                       "8000",
		"WEBSITES_CONTAINER_START_TIME_LIMIT": "600",
		"WEBSITE_SWAP_WARMUP_PING_PATH":       "/health",
		"WEBSITE_SWAP_WARMUP_PING_STATUSES":   "200,202",
	}
	for _, c := range []struct {
		typ, slot, version string
	}{
		{typeApp, "production", "v1"},
		{typeSlot, "staging", "v2"},
	} {
		want := maps.Clone(common)
		want["MODEL_VERSION"] = c.version
		want["MODEL_SLOT_NAME"] = c.slot
		want["OTEL_SERVICE_NAME"] = c.slot
		want["APPLICATIONINSIGHTS_CONNECTION_STRING"] = mockConnection
		got := s.settings(t, c.typ)
		if !maps.Equal(got, want) {
			t.Errorf("%s appSettings = %v, want %v", c.typ, got, want)
		}
	}
}

func TestConfiguredValues(t *testing.T) {
	s := mustRun(t, map[string]string{
		"modelVersion":        "llama-3.1-8b@2024-07",
		"stagingModelVersion": "llama-3.1-8b@2024-09",
		"healthCheckPath":     "/ready",
		"warmupPath":          "/warm",
		"port":                "9000",
		"alwaysOn":            "false",
		"azure:location":      "northeurope",
		"resourceGroupName":   "rg-models",
		"appName":             "models-prod",
	})
	app, slot := s.settings(t, typeApp), s.settings(t, typeSlot)
	for _, c := range []struct{ name, got, want string }{
		{"app MODEL_VERSION", app["MODEL_VERSION"], "llama-3.1-8b@2024-07"},
		{"slot MODEL_VERSION", slot["MODEL_VERSION"], "llama-3.1-8b@2024-09"},
		{"app warm-up path", app["WEBSITE_SWAP_WARMUP_PING_PATH"], "/warm"},
		{"slot warm-up path", slot["WEBSITE_SWAP_WARMUP_PING_PATH"], "/warm"},
		{"slot port", slot["WEBSITES_PORT"], "9000"},
		{"app health check", s.str(t, typeApp, "siteConfig.healthCheckPath"), "/ready"},
		{"slot health check", s.str(t, typeSlot, "siteConfig.healthCheckPath"), "/ready"},
		{"location", s.str(t, typeResourceGroup, "location"), "northeurope"},
		{"resource group name", s.str(t, typeResourceGroup, "name"), "rg-models"},
		{"app name", s.str(t, typeApp, "name"), "models-prod"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	for _, typ := range []string{typeApp, typeSlot} {
		if got := s.get(t, typ, "siteConfig.alwaysOn"); !got.IsBool() || got.BoolValue() {
			t.Errorf("%s alwaysOn = %v, want false", typ, got)
		}
	}
}

func TestHealthCheckDefaults(t *testing.T) {
	s := mustRun(t, nil)
	for _, typ := range []string{typeApp, typeSlot} {
		if got, want := s.str(t, typ, "siteConfig.healthCheckPath"), "/health"; got != want {
			t.Errorf("%s healthCheckPath = %q, want %q", typ, got, want)
		}
		if got := s.get(t, typ, "siteConfig.healthCheckEvictionTimeInMin"); !got.IsNumber() || got.NumberValue() != 10 {
			t.Errorf("%s healthCheckEvictionTimeInMin = %v, want 10", typ, got)
		}
		if got := s.get(t, typ, "siteConfig.alwaysOn"); !got.IsBool() || !got.BoolValue() {
			t.Errorf("%s alwaysOn = %v, want true", typ, got)
		}
		if got := s.get(t, typ, "httpsOnly"); !got.IsBool() || !got.BoolValue() {
			t.Errorf("%s httpsOnly = %v, want true", typ, got)
		}
	}
}

func TestStickySettings(t *testing.T) {
	tests := []struct {
		name   string
		config map[string]string
		want   []string
	}{
		{name: "default", want: []string{"MODEL_SLOT_NAME", "OTEL_SERVICE_NAME", "APPLICATIONINSIGHTS_CONNECTION_STRING"}},
		{
			name:   "json list keeps the slot name sticky",
			config: map[string]string{"stickySettings": `["FEATURE_FLAGS","DB_URL"]`},
			want:   []string{"FEATURE_FLAGS", "DB_URL", "MODEL_SLOT_NAME", "OTEL_SERVICE_NAME", "APPLICATIONINSIGHTS_CONNECTION_STRING"},
		},
		{
			name:   "comma separated",
			config: map[string]string{"stickySettings": "MODEL_SLOT_NAME, FEATURE_FLAGS,"},
			want:   []string{"MODEL_SLOT_NAME", "FEATURE_FLAGS", "OTEL_SERVICE_NAME", "APPLICATIONINSIGHTS_CONNECTION_STRING"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustRun(t, tt.config)
			var got []string
			for _, v := range s.get(t, typeApp, "stickySettings.appSettingNames").ArrayValue() {
				got = append(got, v.StringValue())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("sticky app setting names = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExports(t *testing.T) {
	s := mustRun(t, map[string]string{"appName": "models-prod", "resourceGroupName": "rg-models"})
	appID := "/subscriptions/" + mockSubscription + "/resourceGroups/rg-models/providers/Microsoft.Web/sites/models-prod"
	want := map[string]string{
		"production_url":      "https://models-prod.azurewebsites.net",
		"staging_url":         "https://models-prod-staging.azurewebsites.net",
		"production_hostname": "models-prod.azurewebsites.net",
		"staging_hostname":    "models-prod-staging.azurewebsites.net",
		"production_id":       appID,
		"staging_id":          appID + "/slots/staging",
		"stagingSlotName":     "staging",
		"resourceGroupName":   "rg-models",
		"appName":             "models-prod",
		"subscriptionId":      mockSubscription,
		"planId":              "/subscriptions/" + mockSubscription + "/resourceGroups/rg-models/providers/Microsoft.Web/serverFarms/modelslot-auto",
		"sku":                 "P1v3",
		"location":            "westeurope",
		"appInsightsId":       "/subscriptions/" + mockSubscription + "/resourceGroups/rg-models/providers/Microsoft.Insights/components/modelslot-auto",
		// The slots' managed identities, for role assignments.
		"production_principal_id": "models-prod-principal",
		"staging_principal_id":    "staging-principal",
	}
	for k, w := range want {
		if got := s.exports[k]; got != w {
			t.Errorf("export %s = %v, want %q", k, got, w)
		}
	}
	for k := range s.exports {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected export %s = %v", k, s.exports[k])
		}
	}
}

func TestAutoNamedExports(t *testing.T) {
	s := mustRun(t, nil)
	if got, want := s.exports["appName"], "modelslot-auto"; got != want {
		t.Errorf("appName = %v, want the provider's name %q", got, want)
	}
	if got, want := s.exports["production_url"], "https://modelslot-auto.azurewebsites.net"; got != want {
		t.Errorf("production_url = %v, want %q", got, want)
	}
}

func TestInvalidConfigFailsBeforeAnyResource(t *testing.T) {
	tests := []struct {
		name   string
		config map[string]string
		want   string
	}{
		{name: "no image", config: map[string]string{"image": ""}, want: "image: empty"},
		{name: "bad port", config: map[string]string{"port": "http"}, want: "port: want a whole number"},
		{name: "bad bool", config: map[string]string{"alwaysOn": "yes please"}, want: "alwaysOn: want true or false"},
		{name: "bad map", config: map[string]string{"appSettings": "LOG_LEVEL=debug"}, want: "appSettings: want a map"},
		{name: "managed setting", config: map[string]string{"appSettings": `{"MODEL_VERSION":"x"}`}, want: "set modelVersion or stagingModelVersion instead"},
		{name: "unknown sku", config: map[string]string{"sku": "Y1"}, want: `"Y1" is not a Linux App Service plan SKU`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := runStack(t, tt.config)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if len(s.inputs) != 0 {
				t.Errorf("resources declared despite bad config: %v", slices.Collect(maps.Keys(s.inputs)))
			}
		})
	}
}

func TestSubscriptionOf(t *testing.T) {
	if got, err := subscriptionOf("/subscriptions/abc/resourceGroups/rg/providers/Microsoft.Web/sites/x"); err != nil || got != "abc" {
		t.Errorf("subscriptionOf = %q, %v; want abc", got, err)
	}
	if _, err := subscriptionOf("/resourceGroups/rg"); err == nil {
		t.Error("subscriptionOf accepted an id without a subscription")
	}
}

// TestManagedIdentity: the app and its slot each get a system-assigned
// identity (identities are sticky to their slot on Azure).
func TestManagedIdentity(t *testing.T) {
	s := mustRun(t, nil)
	for _, typ := range []string{typeApp, typeSlot} {
		if got := s.str(t, typ, "identity.type"); got != "SystemAssigned" {
			t.Errorf("%s identity.type = %q, want SystemAssigned", typ, got)
		}
	}
}

// TestAppInsightsWired: a workspace-based Application Insights receives
// both slots' telemetry, each under its slot's role name, with the
// connection string and the role name sticky; its id is exported for
// modelslot's --azure-app-insights.
func TestAppInsightsWired(t *testing.T) {
	s := mustRun(t, map[string]string{"resourceGroupName": "rg-models"})
	wsID := "/subscriptions/" + mockSubscription + "/resourceGroups/rg-models/providers/Microsoft.OperationalInsights/workspaces/modelslot-auto"
	if got := s.str(t, typeInsights, "workspaceId"); got != wsID {
		t.Errorf("insights workspaceId = %q, want %q", got, wsID)
	}
	if got := s.str(t, typeInsights, "applicationType"); got != "web" {
		t.Errorf("applicationType = %q", got)
	}
	for _, c := range []struct{ typ, role string }{{typeApp, "production"}, {typeSlot, "staging"}} {
		set := s.settings(t, c.typ)
		if set["APPLICATIONINSIGHTS_CONNECTION_STRING"] != mockConnection || set["OTEL_SERVICE_NAME"] != c.role {
			t.Errorf("%s: connection string %q, role %q; want the stack's and %q", c.typ, set["APPLICATIONINSIGHTS_CONNECTION_STRING"], set["OTEL_SERVICE_NAME"], c.role)
		}
	}
	if got, want := s.exports["appInsightsId"], "/subscriptions/"+mockSubscription+"/resourceGroups/rg-models/providers/Microsoft.Insights/components/modelslot-auto"; got != want {
		t.Errorf("appInsightsId = %v, want %s", got, want)
	}
	_, err := runStack(t, map[string]string{"appSettings": `{"OTEL_SERVICE_NAME":"x"}`})
	if err == nil || !strings.Contains(err.Error(), "appSettings.OTEL_SERVICE_NAME") {
		t.Errorf("setting OTEL_SERVICE_NAME by hand: err %v", err)
	}
}

// TestModelslotOwnsWhatItChanges: what modelslot changes after creation
// (image, startup command, app settings, sticky names) is ignored by later
// updates, so `pulumi up` does not undo a deploy, a swap or a rollout; the
// program declares no traffic routing at all.
func TestModelslotOwnsWhatItChanges(t *testing.T) {
	s := mustRun(t, nil)
	want := []string{"siteConfig.applicationStack", "siteConfig.appCommandLine", "appSettings", "stickySettings"}
	for _, typ := range []string{typeApp, typeSlot} {
		if got := s.ignore[typ]; !slices.Equal(got, want) {
			t.Errorf("%s ignoreChanges = %v, want %v", typ, got, want)
		}
		if v, ok := s.get(t, typ, "siteConfig").ObjectValue()["experiments"]; ok {
			t.Errorf("%s declares traffic routing: %v", typ, v)
		}
	}
	for _, typ := range []string{typeResourceGroup, typePlan, typeInsights} {
		if got := s.ignore[typ]; len(got) != 0 {
			t.Errorf("%s ignoreChanges = %v, want none: the program owns it", typ, got)
		}
	}
}
