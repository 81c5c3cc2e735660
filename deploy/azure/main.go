// Command azure is the Pulumi program that creates the Azure App Service side
// of modelslot: a Linux plan whose tier has slots, a web app running the model
// server container, and its staging slot, ready for swaps and traffic routing.
package main

import (
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-azure/sdk/v6/go/azure/appservice"
	"github.com/pulumi/pulumi-azure/sdk/v6/go/azure/core"
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
		AppSettings: pulumi.ToStringMap(cfg.appSettings(productionSlot, cfg.ModelVersion)),
		// Azure keeps the sticky names on the site (config/slotConfigNames),
		// not on each slot, so they are declared once here.
		StickySettings: &appservice.LinuxWebAppStickySettingsArgs{
			AppSettingNames: pulumi.ToStringArray(cfg.StickySettings),
		},
	})
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
		AppSettings: pulumi.ToStringMap(cfg.appSettings(stagingSlot, cfg.StagingModelVersion)),
	}, pulumi.Parent(app))
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
	return nil
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
