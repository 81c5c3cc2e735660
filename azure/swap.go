package azure

import (
	"context"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appservice/armappservice/v4"

	"github.com/modelslot/modelslot"
)

// Swap runs Azure's swap (POST slots/{source}/slotsswap, a long-running
// operation polled every PollFrequency), a preview (applySlotConfig: phase
// 1 only) or a reset (resetSlotConfig on both slots). A completed swap is
// confirmed through the site's slotSwapStatus.
func (d *Driver) Swap(ctx context.Context, app string, req modelslot.SwapRequest) (*modelslot.SwapRecord, error) {
	if err := d.checkApp(app); err != nil {
		return nil, err
	}
	src, dst := normSlot(req.Source), normSlot(req.Target)
	if dst == "" {
		dst = modelslot.Production
	}
	action := req.Action
	if action == "" {
		action = modelslot.SwapActionSwap
	}
	switch {
	case src == "":
		return nil, modelslot.Errorf(modelslot.EINVALID, "swap: name the source slot")
	case src == dst:
		return nil, modelslot.Errorf(modelslot.EINVALID, "swap: source and target are both %q", src)
	case action != modelslot.SwapActionSwap && action != modelslot.SwapActionPreview && action != modelslot.SwapActionReset:
		return nil, modelslot.Errorf(modelslot.EINVALID, "swap: action %q is not valid: use swap, preview or reset", action)
	}
	// Azure swaps "slot into target"; with production on either side the
	// path's slot is the other one.
	if src == modelslot.Production {
		src, dst = dst, src
	}
	a, err := d.App(ctx, app)
	if err != nil {
		return nil, err
	}
	for _, n := range []string{src, dst} {
		if a.Slot(n) == nil {
			return nil, modelslot.Errorf(modelslot.ENOTFOUND, "swap: app %q has no slot %q", app, n)
		}
	}
	rec := &modelslot.SwapRecord{
		App: app, Source: src, Target: dst, Action: action, Actor: req.Actor,
		Status: modelslot.SwapRunning, Phase: modelslot.PhaseApplySettings,
		StartedAt: d.cfg.Now().UTC(),
	}
	if dep := a.Slot(src).Deployment; dep != nil {
		rec.SourceRevision = dep.Revision
	}
	if dep := a.Slot(dst).Deployment; dep != nil {
		rec.TargetRevision = dep.Revision
	}
	web, err := d.client()
	if err != nil {
		return nil, err
	}
	rg := d.cfg.ResourceGroup
	entity := armappservice.CsmSlotEntity{TargetSlot: to.Ptr(dst), PreserveVnet: to.Ptr(true)}
	op := "swap " + src + "->" + dst
	log := d.logger.With("source", src, "target", dst, "action", string(action), "actor", req.Actor)

	switch action {
	case modelslot.SwapActionPreview:
		if _, err := web.ApplySlotConfigurationSlot(ctx, rg, app, src, entity, nil); err != nil {
			return nil, translate("preview "+op, err)
		}
		rec.Status = modelslot.SwapPreviewed
		rec.FinishedAt = d.cfg.Now().UTC()
		log.Info("swap preview applied: the source runs with the target's settings")
		return rec, nil

	case modelslot.SwapActionReset:
		if _, err := web.ResetSlotConfigurationSlot(ctx, rg, app, src, nil); err != nil {
			return nil, translate("reset "+op, err)
		}
		var err error
		if dst == modelslot.Production {
			_, err = web.ResetProductionSlotConfig(ctx, rg, app, nil)
		} else {
			_, err = web.ResetSlotConfigurationSlot(ctx, rg, app, dst, nil)
		}
		if err != nil {
			return nil, translate("reset "+op, err)
		}
		rec.Status = modelslot.SwapReset
		rec.FinishedAt = d.cfg.Now().UTC()
		log.Info("swap preview reset")
		return rec, nil
	}

	poller, err := web.BeginSwapSlot(ctx, rg, app, src, entity, nil)
	if err != nil {
		return nil, translate(op, err)
	}
	log.Info("swap started")
	rec.Phase = modelslot.PhaseWarmup
	if _, err := poller.PollUntilDone(ctx, d.pollOptions()); err != nil {
		return nil, translate(op, err)
	}
	status, err := d.confirmSwap(ctx, web, src, dst, rec.StartedAt)
	if err != nil {
		return nil, err
	}
	rec.Status = modelslot.SwapCompleted
	rec.Phase = modelslot.PhaseDone
	rec.FinishedAt = d.cfg.Now().UTC()
	if status.TimestampUTC != nil {
		rec.FinishedAt = status.TimestampUTC.UTC()
	}
	log.Info("swap completed", "sourceRevision", rec.SourceRevision, "targetRevision", rec.TargetRevision)
	return rec, nil
}

func normSlot(s string) string {
	if s == modelslot.Self {
		return modelslot.Production
	}
	return s
}

// confirmSwap reads the production site's slotSwapStatus until it names
// this swap; ARM can report the operation done a moment before the site
// shows it.
func (d *Driver) confirmSwap(ctx context.Context, web *armappservice.WebAppsClient, src, dst string, started time.Time) (*armappservice.SlotSwapStatus, error) {
	const attempts = 5
	for i := 0; ; i++ {
		site, err := web.Get(ctx, d.cfg.ResourceGroup, d.cfg.App, nil)
		if err != nil {
			return nil, translate("swap "+src+"->"+dst+": confirm", err)
		}
		if s := swapStatus(&site.Site); s != nil && matchesSwap(s, src, dst) &&
			(s.TimestampUTC == nil || !s.TimestampUTC.Before(started.Add(-5*time.Minute))) {
			return s, nil
		}
		if i == attempts-1 {
			return nil, modelslot.Errorf(modelslot.EUNAVAILABLE, "swap %s->%s: Azure reported the swap done but the app's slotSwapStatus does not show it: check `modelslot status` before retrying", src, dst)
		}
		select {
		case <-ctx.Done():
			return nil, translate("swap "+src+"->"+dst+": confirm", ctx.Err())
		case <-time.After(d.cfg.pollFrequency()):
		}
	}
}

// matchesSwap accepts the status either way round: Azure records a swap
// with production under the names it was requested with.
func matchesSwap(s *armappservice.SlotSwapStatus, src, dst string) bool {
	a, b := normAzure(deref(s.SourceSlotName)), normAzure(deref(s.DestinationSlotName))
	return (a == src && b == dst) || (a == dst && b == src)
}

// normAzure maps Azure's names for production ("production", "" or the
// site's own name in some answers) to modelslot's.
func normAzure(n string) string {
	if n == "" || n == "production" || n == "Production" {
		return modelslot.Production
	}
	return n
}

func swapStatus(site *armappservice.Site) *armappservice.SlotSwapStatus {
	if site == nil || site.Properties == nil {
		return nil
	}
	return site.Properties.SlotSwapStatus
}

// swapRecord turns the site's slotSwapStatus into a record; nil if the app
// was never swapped.
func swapRecord(app string, site *armappservice.Site) *modelslot.SwapRecord {
	s := swapStatus(site)
	if s == nil || (s.SourceSlotName == nil && s.DestinationSlotName == nil) {
		return nil
	}
	rec := &modelslot.SwapRecord{
		App:    app,
		Source: normAzure(deref(s.SourceSlotName)),
		Target: normAzure(deref(s.DestinationSlotName)),
		Action: modelslot.SwapActionSwap,
		Status: modelslot.SwapCompleted,
		Phase:  modelslot.PhaseDone,
	}
	if s.TimestampUTC != nil {
		rec.StartedAt = s.TimestampUTC.UTC()
		rec.FinishedAt = rec.StartedAt
	}
	return rec
}

// Swaps returns what Azure keeps of the swap history: the last completed
// swap (slotSwapStatus), or nothing.
func (d *Driver) Swaps(ctx context.Context, app string, limit int) ([]*modelslot.SwapRecord, error) {
	if err := d.checkApp(app); err != nil {
		return nil, err
	}
	web, err := d.client()
	if err != nil {
		return nil, err
	}
	site, err := web.Get(ctx, d.cfg.ResourceGroup, app, nil)
	if err != nil {
		return nil, translate("read swap status of "+app, err)
	}
	rec := swapRecord(app, &site.Site)
	if rec == nil || limit < 0 {
		return []*modelslot.SwapRecord{}, nil
	}
	return []*modelslot.SwapRecord{rec}, nil
}
