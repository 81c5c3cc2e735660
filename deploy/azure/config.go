package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

// Names of the slots as the model server sees them in MODEL_SLOT_NAME.
const (
	productionSlot = "production"
	stagingSlot    = "staging"
)

// App settings this program writes itself. Setting them through appSettings
// would be silently overwritten, so Validate refuses that and names the key to
// use instead.
const (
	settingModelVersion   = "MODEL_VERSION"
	settingSlotName       = "MODEL_SLOT_NAME"
	settingPort           = "WEBSITES_PORT"
	settingStartLimit     = "WEBSITES_CONTAINER_START_TIME_LIMIT"
	settingWarmupPath     = "WEBSITE_SWAP_WARMUP_PING_PATH"
	settingWarmupStatuses = "WEBSITE_SWAP_WARMUP_PING_STATUSES"
	// settingInsights points the server's telemetry at Application
	// Insights; settingRole names the slot there (cloud_RoleName, through
	// OpenTelemetry's service name). Both are sticky: telemetry belongs to
	// the slot, whatever content a swap moves into it.
	settingInsights = "APPLICATIONINSIGHTS_CONNECTION_STRING"
	settingRole     = "OTEL_SERVICE_NAME"
)

// managedSettings maps each app setting the program owns to what the user
// should do instead of setting it in appSettings.
var managedSettings = map[string]string{
	settingModelVersion:               "set modelVersion or stagingModelVersion instead",
	settingSlotName:                   "each slot gets its own name",
	settingPort:                       "set port instead",
	settingStartLimit:                 "set containerStartTimeLimit instead",
	settingWarmupPath:                 "set warmupPath instead",
	settingWarmupStatuses:             "set warmupStatuses instead",
	settingInsights:                   "the program wires the stack's Application Insights",
	settingRole:                       "each slot reports under its own name",
	"DOCKER_REGISTRY_SERVER_URL":      "the registry is taken from image",
	"DOCKER_REGISTRY_SERVER_USERNAME": "private registries are not supported yet; use a public image",
	"DOCKER_REGISTRY_SERVER_PASSWORD": "private registries are not supported yet; use a public image",
}

// Config is everything the stack can be told through `pulumi config`. Each
// field's key, default and meaning are listed in README.md.
type Config struct {
	Location            string            // location; else azure:location
	ResourceGroupName   string            // resourceGroupName; "" lets Pulumi name it
	AppName             string            // appName; "" lets Pulumi name it (globally unique host name)
	SKU                 string            // sku
	Image               string            // image, registry/name:tag
	StagingImage        string            // stagingImage
	ModelVersion        string            // modelVersion
	StagingModelVersion string            // stagingModelVersion
	HealthCheckPath     string            // healthCheckPath
	HealthCheckEviction int               // healthCheckEvictionMinutes, 2..10
	WarmupPath          string            // warmupPath
	WarmupStatuses      string            // warmupStatuses, comma-separated HTTP codes
	StickySettings      []string          // stickySettings
	AppSettings         map[string]string // appSettings
	Port                int               // port (WEBSITES_PORT)
	ContainerStartLimit int               // containerStartTimeLimit, seconds
	AlwaysOn            bool              // alwaysOn
}

// defaultConfig holds every fixed default. Defaults that depend on other keys
// (staging image, model versions, warm-up path) are filled by deriveDefaults.
func defaultConfig() Config {
	return Config{
		Location:            "westeurope",
		SKU:                 "P1v3",
		HealthCheckPath:     "/health",
		HealthCheckEviction: 10,
		WarmupStatuses:      "200,202",
		StickySettings:      []string{settingSlotName},
		AppSettings:         map[string]string{},
		Port:                8000,
		ContainerStartLimit: 600,
		AlwaysOn:            true,
	}
}

// deriveDefaults fills the keys whose default is another key's value.
func (c *Config) deriveDefaults() {
	if c.StagingImage == "" {
		c.StagingImage = c.Image
	}
	if c.ModelVersion == "" {
		c.ModelVersion = imageTag(c.Image)
	}
	if c.StagingModelVersion == "" {
		if c.StagingImage == c.Image {
			c.StagingModelVersion = c.ModelVersion
		} else {
			c.StagingModelVersion = imageTag(c.StagingImage)
		}
	}
	if c.WarmupPath == "" {
		c.WarmupPath = c.HealthCheckPath
	}
	// The program sets MODEL_SLOT_NAME differently per slot; if it swapped,
	// each slot would report the other's name.
	if !slices.Contains(c.StickySettings, settingSlotName) {
		c.StickySettings = append(c.StickySettings, settingSlotName)
	}
}

// loadConfig reads the project's config namespace over the defaults. It
// reports malformed values; Validate checks that the values make sense.
func loadConfig(ctx *pulumi.Context) (Config, error) {
	c := defaultConfig()
	pc := config.New(ctx, "")
	if v := config.Get(ctx, "azure:location"); v != "" {
		c.Location = v
	}
	str := func(key string, dst *string) {
		if v := pc.Get(key); v != "" {
			*dst = v
		}
	}
	str("location", &c.Location)
	str("resourceGroupName", &c.ResourceGroupName)
	str("appName", &c.AppName)
	str("sku", &c.SKU)
	str("image", &c.Image)
	str("stagingImage", &c.StagingImage)
	str("modelVersion", &c.ModelVersion)
	str("stagingModelVersion", &c.StagingModelVersion)
	str("healthCheckPath", &c.HealthCheckPath)
	str("warmupPath", &c.WarmupPath)
	str("warmupStatuses", &c.WarmupStatuses)
	c.SKU = canonicalSKU(c.SKU)

	var errs []error
	integer := func(key string, dst *int) {
		v := pc.Get(key)
		if v == "" {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: want a whole number, got %q", key, v))
			return
		}
		*dst = n
	}
	integer("port", &c.Port)
	integer("healthCheckEvictionMinutes", &c.HealthCheckEviction)
	integer("containerStartTimeLimit", &c.ContainerStartLimit)

	if v := pc.Get("alwaysOn"); v != "" {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("alwaysOn: want true or false, got %q", v))
		} else {
			c.AlwaysOn = b
		}
	}
	if v := pc.Get("stickySettings"); v != "" {
		names, err := parseNameList(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("stickySettings: %w", err))
		} else {
			c.StickySettings = names
		}
	}
	if v := pc.Get("appSettings"); v != "" {
		m := map[string]string{}
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			errs = append(errs, fmt.Errorf(`appSettings: want a map of strings, e.g. {"LOG_LEVEL":"info"} `+
				"(pulumi config set --path appSettings.LOG_LEVEL info): %v", err))
		} else {
			c.AppSettings = m
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	c.deriveDefaults()
	return c, nil
}

// parseNameList accepts a JSON list (structured config, as written by
// `pulumi config set --path 'stickySettings[0]' X`) or a comma-separated string.
func parseNameList(v string) ([]string, error) {
	var raw []string
	if strings.HasPrefix(strings.TrimSpace(v), "[") {
		if err := json.Unmarshal([]byte(v), &raw); err != nil {
			return nil, fmt.Errorf("want a list of setting names: %v", err)
		}
	} else {
		raw = strings.Split(v, ",")
	}
	var names []string
	for _, n := range raw {
		n = strings.TrimSpace(n)
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, nil
}

// Validate reports every problem at once, each with what to do about it.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Location == "" {
		add("location: empty; set it, e.g. pulumi config set azure:location westeurope")
	}
	if _, err := lookupSKU(c.SKU); err != nil {
		errs = append(errs, fmt.Errorf("sku: %w", err))
	}
	for key, img := range map[string]string{"image": c.Image, "stagingImage": c.StagingImage} {
		if _, err := parseImage(img); err != nil {
			add("%s: %v", key, err)
		}
	}
	if c.ModelVersion == "" {
		add("modelVersion: empty; set it, or give image a tag (e.g. :v1) to use as the version")
	}
	if c.StagingModelVersion == "" {
		add("stagingModelVersion: empty; set it, or give stagingImage a tag (e.g. :v2) to use as the version")
	}
	if !strings.HasPrefix(c.HealthCheckPath, "/") {
		add("healthCheckPath: %q must start with /", c.HealthCheckPath)
	}
	if c.HealthCheckEviction < 2 || c.HealthCheckEviction > 10 {
		add("healthCheckEvictionMinutes: %d is outside 2..10", c.HealthCheckEviction)
	}
	if !strings.HasPrefix(c.WarmupPath, "/") {
		add("warmupPath: %q must start with /", c.WarmupPath)
	}
	if err := checkStatuses(c.WarmupStatuses); err != nil {
		add("warmupStatuses: %v", err)
	}
	if c.Port < 1 || c.Port > 65535 {
		add("port: %d is not a TCP port", c.Port)
	}
	if c.ContainerStartLimit < 1 || c.ContainerStartLimit > 1800 {
		add("containerStartTimeLimit: %d seconds is outside 1..1800 (App Service's limit)", c.ContainerStartLimit)
	}
	for _, n := range c.StickySettings {
		if n == settingModelVersion {
			add("stickySettings: %s must swap with the image it describes; remove it from the list", n)
		}
		if strings.ContainsAny(n, " \t=") {
			add("stickySettings: %q is not an app setting name", n)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.AppSettings)) {
		if hint, ok := managedSettings[k]; ok {
			add("appSettings.%s: written by this program; %s", k, hint)
		}
	}
	return errors.Join(errs...)
}

func checkStatuses(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("empty; list the HTTP codes that count as warm, e.g. 200,202")
	}
	for code := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(code))
		if err != nil || n < 100 || n > 599 {
			return fmt.Errorf("%q is not an HTTP status code; want a list like 200,202", strings.TrimSpace(code))
		}
	}
	return nil
}

// appSettings returns the settings of one slot: the user's map plus the
// settings this program owns.
func (c Config) appSettings(slot, modelVersion string) map[string]string {
	m := make(map[string]string, len(c.AppSettings)+len(managedSettings))
	maps.Copy(m, c.AppSettings)
	m[settingModelVersion] = modelVersion
	m[settingSlotName] = slot
	m[settingRole] = slot
	m[settingPort] = strconv.Itoa(c.Port)
	m[settingStartLimit] = strconv.Itoa(c.ContainerStartLimit)
	m[settingWarmupPath] = c.WarmupPath
	m[settingWarmupStatuses] = normaliseStatuses(c.WarmupStatuses)
	return m
}

// stickyNames are the configured sticky settings and those this program
// must keep with each slot.
func (c Config) stickyNames() []string {
	names := slices.Clone(c.StickySettings)
	for _, n := range []string{settingRole, settingInsights} {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

func normaliseStatuses(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return strings.Join(parts, ",")
}
