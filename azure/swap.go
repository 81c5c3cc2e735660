package azure

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
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
	a, _, prodSite, err := d.app(ctx, app)
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
			if !ambiguous(err) {
				return nil, translate("preview "+op, err)
			}
			// The answer was lost, not necessarily the preview: look.
			after, aerr := d.App(ctx, app)
			if aerr != nil {
				return nil, modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "preview %s: Azure answered %s and the slots cannot be read to see whether the preview was applied (%s): check `modelslot slot list` before trying again", op, shortErr(err), modelslot.ErrorMessage(aerr))
			}
			if s := after.Slot(src); s == nil || s.PreparedForSwap != dst {
				return nil, modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "preview %s: Azure answered %s and slot %q shows no pending preview: nothing was applied; it is safe to try again", op, shortErr(err), src)
			}
			log.Warn("preview applied although Azure's answer was an error", "err", err)
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

	// The POST is sent once (armOptions retries actions after a 429 only).
	// When its answer or the operation's is lost, settleSwap reads the
	// slots to learn what Azure did instead of asking again.
	pending := a.Slot(src).PreparedForSwap == dst
	prior := swapStatus(prodSite)
	rec.Phase = modelslot.PhaseWarmup
	poller, err := web.BeginSwapSlot(ctx, rg, app, src, entity, nil)
	if err == nil {
		log.Info("swap started")
		_, err = poller.PollUntilDone(ctx, d.pollOptions())
	}
	var status *armappservice.SlotSwapStatus
	switch {
	case err == nil:
		status, err = d.confirmSwap(ctx, web, src, dst, rec.StartedAt)
	case ambiguous(err):
		log.Warn("swap: Azure's answer is an error that does not say whether the swap happened; reading the slots", "err", err)
		status, err = d.settleSwap(ctx, rec, prior, pending, err)
	default:
		err = translate(op, err)
	}
	if err != nil {
		return nil, err
	}
	rec.Status = modelslot.SwapCompleted
	rec.Phase = modelslot.PhaseDone
	rec.FinishedAt = d.cfg.Now().UTC()
	if status != nil && status.TimestampUTC != nil {
		rec.FinishedAt = status.TimestampUTC.UTC()
	}
	log.Info("swap completed", "sourceRevision", rec.SourceRevision, "targetRevision", rec.TargetRevision)
	return rec, nil
}

// ambiguous reports whether a failed request may have taken effect all
// the same: a timeout, a 5xx, or a connection that broke after the request
// left. A refusal (4xx), a missing token or a cancelled wait did not, or
// (cancelled) cannot be looked into now.
func ambiguous(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ce *credentialError
	if errors.As(err, &ce) {
		return false
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode == http.StatusRequestTimeout || re.StatusCode >= 500
	}
	return true
}

// shortErr is the status and code of an Azure error, for messages.
func shortErr(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return strings.TrimSpace(fmt.Sprintf("%d %s", re.StatusCode, re.ErrorCode))
	}
	return firstLine(err.Error())
}

// settleSwap finds out what became of a swap whose answer was an
// ambiguous error: done (the revisions moved or slotSwapStatus names a new
// swap of the two slots), in flight (the source shows targetSwapSlot, which
// Azure sets in phase 1 of every swap, and no preview was pending before:
// wait until it ends, up to SwapTimeout), or not done (report it: asking
// again is then safe). It never sends the swap again.
func (d *Driver) settleSwap(ctx context.Context, rec *modelslot.SwapRecord, prior *armappservice.SlotSwapStatus, pending bool, cause error) (*armappservice.SlotSwapStatus, error) {
	src, dst := rec.Source, rec.Target
	op := "swap " + src + "->" + dst
	wctx, cancel := context.WithTimeout(ctx, d.cfg.SwapTimeout)
	defer cancel()
	waited := false
	for {
		a, _, prod, err := d.app(wctx, d.cfg.App)
		if err != nil {
			if wctx.Err() == nil || ctx.Err() != nil {
				return nil, modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "%s: Azure answered %s and the slots cannot be read to see whether it swapped (%s): check `modelslot status` before trying again", op, shortErr(cause), modelslot.ErrorMessage(err))
			}
		} else {
			st := swapStatus(prod)
			moved := rec.SourceRevision != rec.TargetRevision &&
				revisionOf(a, dst) == rec.SourceRevision && revisionOf(a, src) == rec.TargetRevision
			if moved || (st != nil && matchesSwap(st, src, dst) && newerSwap(st, prior)) {
				d.logger.Info("the swap happened although Azure's answer was an error", "source", src, "target", dst, "answer", shortErr(cause))
				return st, nil
			}
			inFlight := !pending && a.Slot(src) != nil && a.Slot(src).PreparedForSwap == dst
			if !inFlight {
				if pending {
					return nil, modelslot.Wrapf(cause, modelslot.EUNAVAILABLE, "%s: Azure answered %s; the swap has not completed and the preview is still pending, so whether Azure is still completing it cannot be told: check `modelslot status` in a few minutes before trying again", op, shortErr(cause))
				}
				what := "nothing was swapped"
				if waited {
					what = "the swap in flight ended without swapping"
				}
				return nil, modelslot.Wrapf(cause, modelslot.EUNAVAILABLE, "%s: Azure answered %s, and the slots show that %s (revisions in place, slotSwapStatus unchanged, no swap in flight): it is safe to try again", op, shortErr(cause), what)
			}
			if !waited {
				d.logger.Info("a swap is in flight on Azure; waiting for it instead of asking again", "source", src, "target", dst)
				waited = true
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, translate(op+": wait for the swap in flight", ctx.Err())
			}
			return nil, modelslot.Errorf(modelslot.EUNAVAILABLE, "%s: Azure answered %s and the swap is still in flight after %v: do not start another one; check `modelslot status`", op, shortErr(cause), d.cfg.SwapTimeout)
		case <-time.After(d.cfg.pollFrequency()):
		}
	}
}

func revisionOf(a *modelslot.App, slot string) string {
	if s := a.Slot(slot); s != nil && s.Deployment != nil {
		return s.Deployment.Revision
	}
	return ""
}

// newerSwap: st is not the swap that prior already recorded.
func newerSwap(st, prior *armappservice.SlotSwapStatus) bool {
	if prior == nil {
		return true
	}
	if st.TimestampUTC == nil || prior.TimestampUTC == nil {
		return false
	}
	return st.TimestampUTC.After(*prior.TimestampUTC)
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
