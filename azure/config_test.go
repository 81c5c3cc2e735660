package azure

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"

	"github.com/modelslot/modelslot"
)

func valid() Config {
	return Config{SubscriptionID: "sub", ResourceGroup: "rg", App: "llm"}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		flag string // in the message; "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no subscription", func(c *Config) { c.SubscriptionID = "" }, "--subscription"},
		{"no resource group", func(c *Config) { c.ResourceGroup = " " }, "--resource-group"},
		{"no app", func(c *Config) { c.App = "" }, "--app"},
		{"bad auth", func(c *Config) { c.Auth = "password" }, "--azure-auth"},
		{"bad cloud", func(c *Config) { c.Cloud = "mars" }, "--azure-cloud"},
		{"custom without endpoint", func(c *Config) { c.Cloud = CloudCustom; c.CustomAuthority = "https://login.example/" }, "--azure-arm-endpoint"},
		{"custom without authority", func(c *Config) { c.Cloud = CloudCustom; c.CustomEndpoint = "https://arm.example/" }, "--azure-authority"},
		{"custom http", func(c *Config) {
			c.Cloud = CloudCustom
			c.CustomEndpoint, c.CustomAuthority = "http://arm.example/", "https://login.example/"
		}, "--azure-arm-endpoint"},
		{"endpoint without custom", func(c *Config) { c.CustomEndpoint = "https://arm.example/" }, "--azure-cloud=custom"},
		{"audience without custom", func(c *Config) { c.CustomAudience = "https://arm.example/" }, "--azure-audience"},
		{"custom audience http", func(c *Config) {
			c.Cloud = CloudCustom
			c.CustomEndpoint, c.CustomAuthority, c.CustomAudience = "https://arm.example/", "https://login.example/", "arm"
		}, "--azure-audience"},
		{"custom ok", func(c *Config) {
			c.Cloud = CloudCustom
			c.CustomEndpoint, c.CustomAuthority = "https://arm.example/", "https://login.example/"
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.edit(&c)
			err := c.Validate()
			if tt.flag == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want an error naming %s", tt.flag)
			}
			if got := modelslot.ErrorCode(err); got != modelslot.EINVALID {
				t.Errorf("code = %s, want %s", got, modelslot.EINVALID)
			}
			if !strings.Contains(err.Error(), tt.flag) {
				t.Errorf("message %q does not name %s", err, tt.flag)
			}
		})
	}
}

func TestCustomAudience(t *testing.T) {
	c := valid()
	c.Cloud, c.CustomEndpoint, c.CustomAuthority = CloudCustom, "https://arm.example/", "https://login.example/"
	if got := c.cloudConfig().Services[cloud.ResourceManager].Audience; got != "https://arm.example/" {
		t.Errorf("default audience = %s, want the endpoint", got)
	}
	c.CustomAudience = "https://management.core.example/"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.cloudConfig().Services[cloud.ResourceManager].Audience; got != c.CustomAudience {
		t.Errorf("audience = %s, want %s", got, c.CustomAudience)
	}
}

func TestCredentialPlan(t *testing.T) {
	custom := cloud.Configuration{
		ActiveDirectoryAuthorityHost: "https://login.stack.example/",
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: "https://management.stack.example/", Audience: "https://management.stack.example/"},
		},
	}
	tests := []struct {
		auth, cloud string
		kind        string
		want        cloud.Configuration
	}{
		{"", "", "DefaultAzureCredential", cloud.AzurePublic},
		{AuthDefault, CloudChina, "DefaultAzureCredential", cloud.AzureChina},
		{AuthCLI, CloudPublic, "AzureCLICredential", cloud.AzurePublic},
		{AuthEnv, CloudUSGov, "EnvironmentCredential", cloud.AzureGovernment},
		{AuthManagedIdentity, CloudCustom, "ManagedIdentityCredential", custom},
	}
	for _, tt := range tests {
		t.Run(tt.auth+"/"+tt.cloud, func(t *testing.T) {
			c := valid()
			c.Auth, c.Cloud = tt.auth, tt.cloud
			if tt.cloud == CloudCustom {
				c.CustomEndpoint, c.CustomAuthority = "https://management.stack.example/", "https://login.stack.example/"
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			p := c.withDefaults().credentialPlan()
			if p.Kind != tt.kind {
				t.Errorf("kind = %s, want %s", p.Kind, tt.kind)
			}
			if p.Cloud.ActiveDirectoryAuthorityHost != tt.want.ActiveDirectoryAuthorityHost {
				t.Errorf("authority = %s, want %s", p.Cloud.ActiveDirectoryAuthorityHost, tt.want.ActiveDirectoryAuthorityHost)
			}
			if got, want := p.Cloud.Services[cloud.ResourceManager], tt.want.Services[cloud.ResourceManager]; got != want {
				t.Errorf("resource manager = %+v, want %+v", got, want)
			}
			// The ARM clients talk to the same cloud.
			o := c.withDefaults().armOptions(nil)
			if got, want := o.Cloud.Services[cloud.ResourceManager], tt.want.Services[cloud.ResourceManager]; got != want {
				t.Errorf("client cloud = %+v, want %+v", got, want)
			}
		})
	}

	c := valid()
	c.Auth, c.ManagedIdentityClientID = AuthManagedIdentity, "1234"
	if p := c.credentialPlan(); p.ClientID != "1234" {
		t.Errorf("managed identity client id = %q, want 1234", p.ClientID)
	}
	c = valid()
	c.Credential = &azfake.TokenCredential{}
	if p := c.credentialPlan(); p.Kind != "given" {
		t.Errorf("kind with a credential = %s, want given", p.Kind)
	}
}

func TestNewIsLazy(t *testing.T) {
	c := valid()
	c.Credential = &azfake.TokenCredential{}
	d, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.creds.cred != nil || d.web != nil {
		t.Fatal("New built a credential or a client; they must wait for first use")
	}
}

func TestRetryOptions(t *testing.T) {
	o := valid().withDefaults().armOptions(nil)
	if !slices.Contains(o.Retry.StatusCodes, http.StatusTooManyRequests) {
		t.Errorf("retried status codes %v lack 429", o.Retry.StatusCodes)
	}
	if o.Retry.MaxRetries != DefaultMaxRetries {
		t.Errorf("max retries = %d, want %d", o.Retry.MaxRetries, DefaultMaxRetries)
	}
}
