package azure

import (
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/modelslot/modelslot"
)

// Auth modes (Config.Auth, flag --azure-auth).
const (
	AuthDefault         = "default"          // azidentity.DefaultAzureCredential: env, workload identity, managed identity, az CLI, ...
	AuthCLI             = "cli"              // the account of `az login`
	AuthEnv             = "env"              // AZURE_TENANT_ID, AZURE_CLIENT_ID and a secret or certificate
	AuthManagedIdentity = "managed-identity" // the identity of the Azure resource the daemon runs on
)

// Clouds (Config.Cloud, flag --azure-cloud).
const (
	CloudPublic = "public"
	CloudChina  = "china"
	CloudUSGov  = "usgov"
	CloudCustom = "custom"
)

// Defaults, applied in one place (Config.withDefaults).
const (
	DefaultPollFrequency  = 5 * time.Second
	DefaultHealthTimeout  = 10 * time.Second
	DefaultMetricsDelay   = 3 * time.Minute
	DefaultSwapTimeout    = 30 * time.Minute
	DefaultVersionSetting = "MODEL_VERSION"
	DefaultMaxRetries     = 5
	DefaultRevisionHeader = "X-Modelslot-Revision"
	minPollFrequency      = time.Second
)

// App settings that modelslot writes next to the deployment's own settings.
// They travel with the content in a swap, so App can rebuild the Deployment
// of whichever slot the content ends up in.
const (
	// SettingRevision holds the Deployment's revision.
	SettingRevision = "MODELSLOT_REVISION"
	// SettingNames lists (comma-separated) the app settings that came from
	// Deployment.Settings: only those are reported back, so that secrets an
	// operator set on the app by hand never show up in modelslot's output.
	SettingNames = "MODELSLOT_SETTINGS"
	// Azure's own swap warm-up settings; Deploy sets them from
	// Deployment.Warmup so that a swap pings what the deploy waited for.
	SettingWarmupPath     = "WEBSITE_SWAP_WARMUP_PING_PATH"
	SettingWarmupStatuses = "WEBSITE_SWAP_WARMUP_PING_STATUSES"
	// ImageSetting is the key of Deployment.Settings that holds the container
	// image; it becomes siteConfig.linuxFxVersion "DOCKER|<image>".
	ImageSetting = "image"
)

// Config configures the Azure driver and metric source. Every field is
// documented in docs/AZURE.md.
type Config struct {
	SubscriptionID string // --subscription
	ResourceGroup  string // --resource-group
	App            string // --app: the App Service site name

	// Auth is "default" (DefaultAzureCredential), "cli", "env" or
	// "managed-identity"; empty means "default".
	Auth string
	// ManagedIdentityClientID selects a user-assigned identity for
	// Auth "managed-identity"; empty: the system-assigned one.
	ManagedIdentityClientID string

	// Cloud is "public" (default), "china", "usgov" or "custom".
	Cloud string
	// CustomEndpoint is the ARM endpoint of a custom cloud
	// (--azure-arm-endpoint), CustomAuthority its Entra ID authority host
	// (--azure-authority). CustomAudience defaults to CustomEndpoint.
	CustomEndpoint, CustomAuthority, CustomAudience string

	// VersionSetting is the app setting that holds Deployment.Version
	// (default MODEL_VERSION).
	VersionSetting string
	// PollFrequency is how often long-running operations (swap, create
	// slot) and deploy health checks are polled; default 5s.
	PollFrequency time.Duration
	// RevisionHeader is the response header through which a slot's health
	// path can show the revision it runs (default X-Modelslot-Revision):
	// the container gets it as the app setting MODELSLOT_REVISION. Deploy
	// waits for an answer that shows the new revision; an answer that shows
	// another one is the old content, still running.
	RevisionHeader string
	// RequireRevision makes Deploy wait for an answer that shows the new
	// revision: a healthy answer without RevisionHeader does not count.
	// Without it such an answer ends the deploy (with a warning): the
	// driver cannot tell the new content from the old.
	RequireRevision bool
	// HealthTimeout bounds one health probe of a slot's host name
	// (default 10s). How long Deploy waits overall is Deployment.Warmup.Timeout.
	HealthTimeout time.Duration
	// SwapTimeout bounds how long Swap waits for a swap that Azure has
	// in flight when the answer to its request was lost (default 30m:
	// swaps of slow-loading models take 20 minutes and more).
	SwapTimeout time.Duration
	// MetricsDelay is how long Azure Monitor takes to report a minute
	// (default 3m): younger minutes make a Series incomplete.
	MetricsDelay time.Duration

	// Credential, when set, is used as is (tests: azcore/fake.TokenCredential)
	// and Auth is ignored.
	Credential azcore.TokenCredential
	// ClientOptions and MetricsClientOptions are passed to the SDK clients
	// (tests inject fake transports here). Zero retry settings get the
	// driver's defaults; Cloud defaults to the configured cloud.
	ClientOptions        *arm.ClientOptions
	MetricsClientOptions *arm.ClientOptions
	// LogsClientOptions are passed to the Logs query client of
	// RequestSource (tests inject a fake transport).
	LogsClientOptions *policy.ClientOptions
	// HTTPClient probes the slots' health paths; default: a client with
	// HealthTimeout.
	HTTPClient *http.Client
	// HostURL turns a slot's defaultHostName into the base URL probed for
	// health; default "https://"+host. Tests map host names to loopback
	// servers.
	HostURL func(defaultHostName string) string
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Validate reports the first configuration error, naming the flag to fix.
func (c Config) Validate() error {
	if strings.TrimSpace(c.SubscriptionID) == "" {
		return modelslot.Errorf(modelslot.EINVALID, "azure: --subscription is required: the subscription id (a GUID) that holds the app; see `az account show --query id`")
	}
	if strings.TrimSpace(c.ResourceGroup) == "" {
		return modelslot.Errorf(modelslot.EINVALID, "azure: --resource-group is required: the resource group of the App Service app")
	}
	if strings.TrimSpace(c.App) == "" {
		return modelslot.Errorf(modelslot.EINVALID, "azure: --app is required: the name of the App Service app (the site, not the plan)")
	}
	switch c.Auth {
	case "", AuthDefault, AuthCLI, AuthEnv, AuthManagedIdentity:
	default:
		return modelslot.Errorf(modelslot.EINVALID, "azure: --azure-auth=%q is not valid: use default, cli, env or managed-identity", c.Auth)
	}
	if c.ManagedIdentityClientID != "" && c.Auth != AuthManagedIdentity && c.Credential == nil {
		return modelslot.Errorf(modelslot.EINVALID, "azure: a managed identity client id is set but --azure-auth is %q: use --azure-auth=managed-identity", c.authMode())
	}
	switch c.Cloud {
	case "", CloudPublic, CloudChina, CloudUSGov:
		if c.CustomEndpoint != "" || c.CustomAuthority != "" || c.CustomAudience != "" {
			return modelslot.Errorf(modelslot.EINVALID, "azure: --azure-arm-endpoint, --azure-authority and --azure-audience apply only to --azure-cloud=custom")
		}
	case CloudCustom:
		for _, f := range []struct{ flag, v string }{
			{"--azure-arm-endpoint", c.CustomEndpoint},
			{"--azure-authority", c.CustomAuthority},
			{"--azure-audience", c.CustomAudience},
		} {
			if f.v == "" && f.flag == "--azure-audience" {
				continue // optional: defaults to the endpoint
			}
			if f.v == "" {
				return modelslot.Errorf(modelslot.EINVALID, "azure: --azure-cloud=custom needs %s (an https URL)", f.flag)
			}
			if u, err := url.Parse(f.v); err != nil || u.Scheme != "https" || u.Host == "" {
				return modelslot.Errorf(modelslot.EINVALID, "azure: %s=%q is not an https URL", f.flag, f.v)
			}
		}
	default:
		return modelslot.Errorf(modelslot.EINVALID, "azure: --azure-cloud=%q is not valid: use public, china, usgov or custom", c.Cloud)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"poll frequency", c.PollFrequency}, {"health timeout", c.HealthTimeout}, {"metrics delay", c.MetricsDelay}, {"swap timeout", c.SwapTimeout}} {
		if d.v < 0 {
			return modelslot.Errorf(modelslot.EINVALID, "azure: the %s is negative (%v)", d.name, d.v)
		}
	}
	return nil
}

func (c Config) authMode() string {
	if c.Auth == "" {
		return AuthDefault
	}
	return c.Auth
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Auth == "" {
		c.Auth = AuthDefault
	}
	if c.Cloud == "" {
		c.Cloud = CloudPublic
	}
	if c.VersionSetting == "" {
		c.VersionSetting = DefaultVersionSetting
	}
	if c.RevisionHeader == "" {
		c.RevisionHeader = DefaultRevisionHeader
	}
	if c.PollFrequency == 0 {
		c.PollFrequency = DefaultPollFrequency
	}
	if c.HealthTimeout == 0 {
		c.HealthTimeout = DefaultHealthTimeout
	}
	if c.MetricsDelay == 0 {
		c.MetricsDelay = DefaultMetricsDelay
	}
	if c.SwapTimeout == 0 {
		c.SwapTimeout = DefaultSwapTimeout
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.HealthTimeout}
	}
	if c.HostURL == nil {
		c.HostURL = func(host string) string { return "https://" + host }
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// cloudConfig maps Config.Cloud to the SDK's cloud configuration.
func (c Config) cloudConfig() cloud.Configuration {
	switch c.Cloud {
	case CloudChina:
		return cloud.AzureChina
	case CloudUSGov:
		return cloud.AzureGovernment
	case CloudCustom:
		aud := c.CustomAudience
		if aud == "" {
			aud = c.CustomEndpoint
		}
		return cloud.Configuration{
			ActiveDirectoryAuthorityHost: c.CustomAuthority,
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: c.CustomEndpoint, Audience: aud},
			},
		}
	default:
		return cloud.AzurePublic
	}
}

// armOptions returns a copy of base (may be nil) with the configured cloud
// and the retry policy: 429 and transient 5xx are retried with exponential
// backoff (azcore honours Retry-After). Actions (POST slotsswap,
// applySlotConfig, ...) are retried after a 429 only, which Azure sends
// before it does anything: after a 5xx, a timeout or a broken connection
// the action may have run, and the caller must look before asking again
// (see settleSwap).
func (c Config) armOptions(base *arm.ClientOptions) *arm.ClientOptions {
	var o arm.ClientOptions
	if base != nil {
		o = *base
	}
	if o.Cloud.ActiveDirectoryAuthorityHost == "" && len(o.Cloud.Services) == 0 {
		o.Cloud = c.cloudConfig()
	}
	if o.Retry.MaxRetries == 0 {
		o.Retry.MaxRetries = DefaultMaxRetries
	}
	if len(o.Retry.StatusCodes) == 0 {
		o.Retry.StatusCodes = []int{
			http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
			http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
		}
	}
	actions := o.Retry
	actions.StatusCodes = []int{http.StatusTooManyRequests}
	actions.ShouldRetry = func(resp *http.Response, _ error) bool {
		return resp != nil && resp.StatusCode == http.StatusTooManyRequests
	}
	o.PerCallPolicies = append(slices.Clone(o.PerCallPolicies), actionRetry{opts: actions})
	return &o
}

// actionRetry gives non-idempotent requests their own retry options.
type actionRetry struct{ opts policy.RetryOptions }

func (p actionRetry) Do(req *policy.Request) (*http.Response, error) {
	if isAction(req.Raw()) {
		req = req.WithContext(policy.WithRetryOptions(req.Raw().Context(), p.opts))
	}
	return req.Next()
}

// isAction reports whether a request changes something and is not safe to
// repeat: a POST other than ARM's read actions (".../list").
func isAction(r *http.Request) bool {
	return r.Method == http.MethodPost && !strings.HasSuffix(strings.ToLower(r.URL.Path), "/list")
}

// credentialPlan is what newCredential builds, so that the mapping from
// Auth and Cloud can be tested without creating (or calling) a credential.
type credentialPlan struct {
	Kind string // "given", "DefaultAzureCredential", "AzureCLICredential", "EnvironmentCredential", "ManagedIdentityCredential"
	// Cloud is passed in the credential's ClientOptions (the CLI credential
	// has none: it uses the cloud set with `az cloud set`).
	Cloud    cloud.Configuration
	ClientID string
}

func (c Config) credentialPlan() credentialPlan {
	if c.Credential != nil {
		return credentialPlan{Kind: "given"}
	}
	p := credentialPlan{Cloud: c.cloudConfig()}
	switch c.authMode() {
	case AuthCLI:
		p.Kind = "AzureCLICredential"
	case AuthEnv:
		p.Kind = "EnvironmentCredential"
	case AuthManagedIdentity:
		p.Kind = "ManagedIdentityCredential"
		p.ClientID = c.ManagedIdentityClientID
	default:
		p.Kind = "DefaultAzureCredential"
	}
	return p
}

// newCredential builds the credential. It never requests a token: the
// first request through an SDK client does.
func (c Config) newCredential() (azcore.TokenCredential, error) {
	p := c.credentialPlan()
	co := policy.ClientOptions{Cloud: p.Cloud}
	var (
		cred azcore.TokenCredential
		err  error
	)
	switch p.Kind {
	case "given":
		return c.Credential, nil
	case "AzureCLICredential":
		cred, err = azidentity.NewAzureCLICredential(nil)
	case "EnvironmentCredential":
		cred, err = azidentity.NewEnvironmentCredential(&azidentity.EnvironmentCredentialOptions{ClientOptions: co})
	case "ManagedIdentityCredential":
		o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if p.ClientID != "" {
			o.ID = azidentity.ClientID(p.ClientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(o)
	default:
		cred, err = azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{ClientOptions: co})
	}
	if err != nil {
		return nil, modelslot.Wrapf(err, modelslot.EUNAUTHORIZED, "azure: cannot set up --azure-auth=%s: %v", c.authMode(), err)
	}
	return cred, nil
}

// pollFrequency is PollFrequency, raised to azcore's minimum of one second
// outside tests (azcore refuses less, with the same test check).
func (c Config) pollFrequency() time.Duration {
	if c.PollFrequency < minPollFrequency && flag.Lookup("test.v") == nil {
		return minPollFrequency
	}
	return c.PollFrequency
}

func (c Config) String() string {
	return fmt.Sprintf("subscription=%s resource-group=%s app=%s auth=%s cloud=%s", c.SubscriptionID, c.ResourceGroup, c.App, c.authMode(), c.Cloud)
}
