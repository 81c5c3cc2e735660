// Command azure is the Pulumi program that creates the Azure App Service side
// of modelslot: a Linux plan whose tier has slots, a web app running the model
// server container, and its staging slot, ready for swaps and traffic routing.
package main

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-azure/sdk/v6/go/azure/appinsights"
	"github.com/pulumi/pulumi-azure/sdk/v6/go/azure/appservice"
	"github.com/pulumi/pulumi-azure/sdk/v6/go/azure/core"
	"github.com/pulumi/pulumi-azure/sdk/v6/go/azure/operationalinsights"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

func main() {
	pulumi.Run(run)
}

// run loads and checks the config before declaring anything, so a bad value
// (such as a tier without slots) fails `pulumi preview` with no resource touched.
func run(ctx *pulumi.Context) error {
	cfg, err := loadConfig(ctx)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return deploy(ctx, cfg)
}

// deploy declares the resources of a validated Config and exports what
// modelslot's Azure driver needs.
func deploy(ctx *pulumi.Context, cfg Config) error {
	// Validate has accepted both references.
	prodImage, _ := parseImage(cfg.Image)
	stagingImage, _ := parseImage(cfg.StagingImage)

	rg, err := core.NewResourceGroup(ctx, "modelslot", &core.ResourceGroupArgs{
		Name:     optional(cfg.ResourceGroupName),
		Location: pulumi.String(cfg.Location),
	})
	if err != nil {
		return fmt.Errorf("resource group: %w", err)
	}

	plan, err := appservice.NewServicePlan(ctx, "modelslot", &appservice.ServicePlanArgs{
		ResourceGroupName: rg.Name,
		Location:          rg.Location,
		OsType:            pulumi.String("Linux"),
		SkuName:           pulumi.String(cfg.SKU),
	})
	if err != nil {
		return fmt.Errorf("service plan: %w", err)
	}

	// Application Insights (workspace-based: classic ones can no longer be
	// created) receives each slot's requests under the slot's role name;
	// modelslot's --azure-app-insights judges rollouts on them.
	ws, err := operationalinsights.NewAnalyticsWorkspace(ctx, "modelslot", &operationalinsights.AnalyticsWorkspaceArgs{
		ResourceGroupName: rg.Name,
		Location:          rg.Location,
		Sku:               pulumi.String("PerGB2018"),
		RetentionInDays:   pulumi.Int(30),
	})
	if err != nil {
		return fmt.Errorf("log analytics workspace: %w", err)
	}
	insights, err := appinsights.NewInsights(ctx, "modelslot", &appinsights.InsightsArgs{
		ResourceGroupName: rg.Name,
		Location:          rg.Location,
		ApplicationType:   pulumi.String("web"),
		WorkspaceId:       ws.ID(),
	})
	if err != nil {
		return fmt.Errorf("application insights: %w", err)
	}
	settings := func(slot, version string) pulumi.StringMap {
		m := pulumi.StringMap{}
		for k, v := range cfg.appSettings(slot, version) {
			m[k] = pulumi.String(v)
		}
		m[settingInsights] = insights.ConnectionString
		return m
	}

	app, err := appservice.NewLinuxWebApp(ctx, "modelslot", &appservice.LinuxWebAppArgs{
		Name:              optional(cfg.AppName),
		ResourceGroupName: rg.Name,
		Location:          rg.Location,
		ServicePlanId:     plan.ID(),
		HttpsOnly:         pulumi.Bool(true),
		SiteConfig: &appservice.LinuxWebAppSiteConfigArgs{
			AlwaysOn:                     pulumi.Bool(cfg.AlwaysOn),
			HealthCheckPath:              pulumi.String(cfg.HealthCheckPath),
			HealthCheckEvictionTimeInMin: pulumi.Int(cfg.HealthCheckEviction),
			ApplicationStack: &appservice.LinuxWebAppSiteConfigApplicationStackArgs{
				DockerImageName:   pulumi.String(prodImage.name),
				DockerRegistryUrl: pulumi.String(prodImage.registryURL),
			},
		},
		AppSettings: settings(productionSlot, cfg.ModelVersion),
		// Azure keeps the sticky names on the site (config/slotConfigNames),
		// not on each slot, so they are declared once here.
		StickySettings: &appservice.LinuxWebAppStickySettingsArgs{
			AppSettingNames: pulumi.ToStringArray(cfg.stickyNames()),
		},
		// A managed identity per slot (identities are sticky), so that the
		// model server can reach Key Vault or a registry without secrets.
		Identity: &appservice.LinuxWebAppIdentityArgs{Type: pulumi.String("SystemAssigned")},
	}, pulumi.IgnoreChanges(modelslotOwned))
	if err != nil {
		return fmt.Errorf("web app: %w", err)
	}

	slot, err := appservice.NewLinuxWebAppSlot(ctx, stagingSlot, &appservice.LinuxWebAppSlotArgs{
		Name:         pulumi.String(stagingSlot),
		AppServiceId: app.ID().ToStringOutput(),
		HttpsOnly:    pulumi.Bool(true),
		SiteConfig: &appservice.LinuxWebAppSlotSiteConfigArgs{
			AlwaysOn:                     pulumi.Bool(cfg.AlwaysOn),
			HealthCheckPath:              pulumi.String(cfg.HealthCheckPath),
			HealthCheckEvictionTimeInMin: pulumi.Int(cfg.HealthCheckEviction),
			ApplicationStack: &appservice.LinuxWebAppSlotSiteConfigApplicationStackArgs{
				DockerImageName:   pulumi.String(stagingImage.name),
				DockerRegistryUrl: pulumi.String(stagingImage.registryURL),
			},
		},
		AppSettings: settings(stagingSlot, cfg.StagingModelVersion),
		Identity:    &appservice.LinuxWebAppSlotIdentityArgs{Type: pulumi.String("SystemAssigned")},
	}, pulumi.Parent(app), pulumi.IgnoreChanges(modelslotOwned))
	if err != nil {
		return fmt.Errorf("staging slot: %w", err)
	}

	// Host names come from Azure (defaultHostname), never built from the
	// app name: Azure may add a region suffix to new apps.
	ctx.Export("production_url", pulumi.Sprintf("https://%s", app.DefaultHostname))
	ctx.Export("staging_url", pulumi.Sprintf("https://%s", slot.DefaultHostname))
	ctx.Export("production_hostname", app.DefaultHostname)
	ctx.Export("staging_hostname", slot.DefaultHostname)
	ctx.Export("production_id", app.ID().ToStringOutput())
	ctx.Export("staging_id", slot.ID().ToStringOutput())
	ctx.Export("stagingSlotName", slot.Name)
	ctx.Export("resourceGroupName", rg.Name)
	ctx.Export("appName", app.Name)
	ctx.Export("subscriptionId", app.ID().ToStringOutput().ApplyT(subscriptionOf).(pulumi.StringOutput))
	ctx.Export("planId", plan.ID().ToStringOutput())
	ctx.Export("sku", plan.SkuName)
	ctx.Export("location", rg.Location)
	ctx.Export("appInsightsId", insights.ID().ToStringOutput())
	ctx.Export("production_principal_id", app.Identity.PrincipalId().Elem())
	ctx.Export("staging_principal_id", slot.Identity.PrincipalId().Elem())
	return nil
}

// modelslotOwned are the properties of the app and its slot that modelslot
// changes after creation: the image (deploy, and every swap moves it), the
// startup command, the app settings (deploy writes MODEL_VERSION,
// MODELSLOT_REVISION, the deployment's settings and the warm-up ones, and a
// swap moves them) and the sticky names (deploy --sticky-setting adds to
// them). A later `pulumi up` leaves them alone, so it never undoes a swap
// or a rollout. Traffic routing (siteConfig.experiments.rampUpRules) is not
// a property of these resources in the azure provider: Pulumi never
// touches it.
var modelslotOwned = []string{
	"siteConfig.applicationStack",
	"siteConfig.appCommandLine",
	"appSettings",
	"stickySettings",
}

// optional leaves a name unset when it is empty, so Pulumi auto-names the
// resource instead of sending "".
func optional(s string) pulumi.StringPtrInput {
	if s == "" {
		return nil
	}
	return pulumi.String(s)
}

// subscriptionOf reads the subscription from an ARM resource id
// ("/subscriptions/{sub}/resourceGroups/...").
func subscriptionOf(id string) (string, error) {
	parts := strings.Split(strings.TrimPrefix(id, "/"), "/")
	if len(parts) < 2 || !strings.EqualFold(parts[0], "subscriptions") || parts[1] == "" {
		return "", fmt.Errorf("resource id %q has no subscription", id)
	}
	return parts[1], nil
}
