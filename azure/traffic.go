package azure

import (
	"context"
	"math"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appservice/armappservice/v4"

	"github.com/modelslot/modelslot"
)

func (d *Driver) pollOptions() *runtime.PollUntilDoneOptions {
	return &runtime.PollUntilDoneOptions{Frequency: d.cfg.pollFrequency()}
}

// putRules replaces the production site's rampUpRules (PATCH config/web).
// An empty list is sent as [] so that Azure clears the rules.
func (d *Driver) putRules(ctx context.Context, web *armappservice.WebAppsClient, rules []*armappservice.RampUpRule) error {
	if rules == nil {
		rules = []*armappservice.RampUpRule{}
	}
	cfg := armappservice.SiteConfigResource{Properties: &armappservice.SiteConfig{
		Experiments: &armappservice.Experiments{RampUpRules: rules},
	}}
	if _, err := web.UpdateConfiguration(ctx, d.cfg.ResourceGroup, d.cfg.App, cfg, nil); err != nil {
		return translate("set routing of "+d.cfg.App, err)
	}
	return nil
}

// SetTraffic replaces every routing rule of the app, then reads the rules
// back to verify them. Each rule's actionHostName is the slot's
// defaultHostName as Azure reports it.
//
// opts.ResetPins cannot be honoured: Azure's x-ms-routing-name cookie lives
// for an hour and no API invalidates it, so users pinned to a slot keep
// reaching it until the cookie expires. A warning is logged; the returned
// Routing's Generation is not bumped because nothing was invalidated.
func (d *Driver) SetTraffic(ctx context.Context, app string, rules []modelslot.TrafficRule, opts modelslot.TrafficOptions) (modelslot.Routing, error) {
	a, hosts, _, err := d.app(ctx, app)
	if err != nil {
		return modelslot.Routing{}, err
	}
	norm, err := modelslot.NormalizeRules(a, rules)
	if err != nil {
		return modelslot.Routing{}, err
	}
	web, err := d.client()
	if err != nil {
		return modelslot.Routing{}, err
	}
	raw := make([]*armappservice.RampUpRule, 0, len(norm))
	for _, r := range norm {
		host := hosts[r.Slot]
		if host == "" {
			return modelslot.Routing{}, modelslot.Errorf(modelslot.EUNAVAILABLE, "traffic: Azure reports no host name for slot %q yet: try again once the slot is running", r.Slot)
		}
		raw = append(raw, &armappservice.RampUpRule{
			Name:              to.Ptr(r.Slot),
			ActionHostName:    to.Ptr(host),
			ReroutePercentage: to.Ptr(r.Percent),
		})
	}
	if err := d.putRules(ctx, web, raw); err != nil {
		return modelslot.Routing{}, err
	}
	if opts.ResetPins {
		d.logger.Warn("routing cookies cannot be invalidated on Azure: users pinned by the x-ms-routing-name cookie keep their slot until it expires (up to 1 hour)", "actor", opts.Actor)
	}
	got, _, err := d.routing(ctx, web)
	if err != nil {
		return modelslot.Routing{}, err
	}
	if !sameRules(got.Rules, norm) {
		return got, modelslot.Errorf(modelslot.EUNAVAILABLE, "traffic: Azure accepted the rules but reports %v instead of %v: check with `modelslot traffic show` and try again", got.Rules, norm)
	}
	d.logger.Info("traffic set", "rules", norm, "actor", opts.Actor)
	return got, nil
}

func sameRules(a, b []modelslot.TrafficRule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Slot != b[i].Slot || math.Abs(a[i].Percent-b[i].Percent) > 1e-9 {
			return false
		}
	}
	return true
}

// RampUpRule is Azure's automatic ramp-up for one slot: every Interval the
// slot's share moves by Step (negative: down), clamped to [Min, Max].
type RampUpRule struct {
	// Start is the share the rule starts at (reroutePercentage).
	Start float64
	// Step is changeStep, Interval changeIntervalInMinutes (whole minutes).
	Step     float64
	Interval time.Duration
	Min, Max float64
	// CallbackURL is changeDecisionCallbackUrl: Azure asks it before each
	// step; empty means no callback.
	CallbackURL string
}

// RampUp sets an automatic ramp-up rule for one slot of the app, keeping
// the other slots' rules. Azure then moves the share on its own; the
// rollout controller can use it instead of stepping SetTraffic itself.
func (d *Driver) RampUp(ctx context.Context, app, slot string, r RampUpRule) (modelslot.Routing, error) {
	minutes := int32(r.Interval / time.Minute)
	switch {
	case slot == modelslot.Production || slot == modelslot.Self:
		return modelslot.Routing{}, modelslot.Errorf(modelslot.EINVALID, "ramp-up: production takes what the other slots leave; ramp up a staging slot")
	case r.Interval%time.Minute != 0 || minutes < 1:
		return modelslot.Routing{}, modelslot.Errorf(modelslot.EINVALID, "ramp-up: the interval %v is not a whole number of minutes (Azure's changeIntervalInMinutes)", r.Interval)
	case r.Step == 0:
		return modelslot.Routing{}, modelslot.Errorf(modelslot.EINVALID, "ramp-up: the step is 0: the share would never change")
	case r.Min < 0 || r.Max > 100 || r.Min > r.Max:
		return modelslot.Routing{}, modelslot.Errorf(modelslot.EINVALID, "ramp-up: min %g and max %g must satisfy 0 <= min <= max <= 100", r.Min, r.Max)
	case r.Start < r.Min || r.Start > r.Max:
		return modelslot.Routing{}, modelslot.Errorf(modelslot.EINVALID, "ramp-up: the start share %g is outside [%g, %g]", r.Start, r.Min, r.Max)
	}
	a, hosts, _, err := d.app(ctx, app)
	if err != nil {
		return modelslot.Routing{}, err
	}
	s := a.Slot(slot)
	if s == nil {
		return modelslot.Routing{}, modelslot.Errorf(modelslot.ENOTFOUND, "ramp-up: app %q has no slot %q", app, slot)
	}
	if s.Deployment == nil {
		return modelslot.Routing{}, modelslot.Errorf(modelslot.ECONFLICT, "ramp-up: slot %q has no deployment: deploy to it first", slot)
	}
	web, err := d.client()
	if err != nil {
		return modelslot.Routing{}, err
	}
	_, raw, err := d.routing(ctx, web)
	if err != nil {
		return modelslot.Routing{}, err
	}
	rule := &armappservice.RampUpRule{
		Name:                    to.Ptr(slot),
		ActionHostName:          to.Ptr(hosts[slot]),
		ReroutePercentage:       to.Ptr(r.Start),
		ChangeStep:              to.Ptr(r.Step),
		ChangeIntervalInMinutes: to.Ptr(minutes),
		MinReroutePercentage:    to.Ptr(r.Min),
		MaxReroutePercentage:    to.Ptr(r.Max),
	}
	if r.CallbackURL != "" {
		rule.ChangeDecisionCallbackURL = to.Ptr(r.CallbackURL)
	}
	var rules []*armappservice.RampUpRule
	for _, x := range raw {
		if x != nil && deref(x.Name) != slot {
			rules = append(rules, x)
		}
	}
	rules = append(rules, rule)
	if err := d.putRules(ctx, web, rules); err != nil {
		return modelslot.Routing{}, err
	}
	got, _, err := d.routing(ctx, web)
	if err != nil {
		return modelslot.Routing{}, err
	}
	d.logger.Info("ramp-up rule set", "slot", slot, "start", r.Start, "step", r.Step, "interval", r.Interval, "min", r.Min, "max", r.Max)
	return got, nil
}
