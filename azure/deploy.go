package azure

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appservice/armappservice/v4"

	"github.com/modelslot/modelslot"
)

// defaultWarmupTimeout is how long Deploy waits for a slot to answer when
// the deployment does not say: models load slowly.
const defaultWarmupTimeout = 5 * time.Minute

// Deploy puts a container image and its settings in a slot:
//
//   - Deployment.Settings["image"] becomes siteConfig.linuxFxVersion
//     "DOCKER|<image>" (PATCH config/web of the slot);
//   - the other settings, Version (as MODEL_VERSION) and the warm-up path
//     are merged into the slot's app settings (PUT config/appsettings);
//   - StickySettings are app settings too, and their names are added to
//     config/slotConfigNames (a PUT replaces the lists: read, merge, write).
//
// Deploy then waits until the slot answers Deployment.Warmup.Path. If it
// never does, the slot's previous image and app settings are put back and
// the error says so.
func (d *Driver) Deploy(ctx context.Context, app, slot string, req modelslot.DeployRequest) (*modelslot.Slot, error) {
	if err := d.checkApp(app); err != nil {
		return nil, err
	}
	if slot == modelslot.Self {
		slot = modelslot.Production
	}
	dep := req.Deployment
	switch {
	case req.Revision != "" && dep.Settings[ImageSetting] == "":
		return nil, modelslot.Errorf(modelslot.EINVALID, "deploy %s: the Azure driver keeps no deployment history: redeploy revision %s by passing its deployment (the daemon's store has it)", slot, req.Revision)
	case dep.Command != "":
		return nil, modelslot.Errorf(modelslot.EINVALID, "deploy %s: App Service runs container images, not commands: put the image in settings.image", slot)
	}
	for k := range dep.Settings {
		if reserved(k, d.cfg.VersionSetting) {
			return nil, modelslot.Errorf(modelslot.EINVALID, "deploy %s: setting %q is reserved: modelslot writes it itself", slot, k)
		}
	}
	web, err := d.client()
	if err != nil {
		return nil, err
	}
	states, _, err := d.readSlots(ctx, web)
	if err != nil {
		return nil, err
	}
	var st *siteState
	for _, s := range states {
		if s.name == slot {
			st = s
		}
	}
	if st == nil {
		return nil, modelslot.Errorf(modelslot.ENOTFOUND, "deploy: app %q has no slot %q: create it with `modelslot slot create %s`", app, slot, slot)
	}
	if st.targetSwapSlot != "" {
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "deploy %s: a swap preview is pending: complete it with `modelslot swap <slot>` or cancel it with `--action reset`", slot)
	}
	url := "https://" + st.hostName
	if dep.URL != "" && strings.TrimSuffix(dep.URL, "/") != url {
		return nil, modelslot.Errorf(modelslot.EINVALID, "deploy %s: on Azure a slot is served at its own host name (%s); leave the URL empty and put the image in settings.image", slot, url)
	}
	image := dep.Settings[ImageSetting]
	if image == "" {
		image = imageOf(st.linuxFx)
	}
	if image == "" {
		return nil, modelslot.Errorf(modelslot.EINVALID, "deploy %s: no container image: set settings.image (e.g. myregistry.azurecr.io/llm-server:v2)", slot)
	}

	// The deployment as it will read back from Azure.
	dep.URL = url
	dep.Command = ""
	dep.Settings = maps.Clone(dep.Settings)
	if dep.Settings == nil {
		dep.Settings = map[string]string{}
	}
	dep.Settings[ImageSetting] = image
	dep.Revision = contentRevision(dep)
	dep.DeployedAt = d.cfg.Now().UTC()

	settings := d.mergeSettings(st.settings, dep, req.StickySettings)
	op := "deploy " + slot
	d.logger.Info("deploying", "slot", slot, "image", image, "version", dep.Version, "revision", dep.Revision, "actor", req.Actor)

	if err := d.putSlotConfig(ctx, web, slot, "DOCKER|"+image); err != nil {
		return nil, err
	}
	if err := d.putSettings(ctx, web, slot, settings); err != nil {
		d.revert(ctx, web, st)
		return nil, err
	}
	if len(req.StickySettings) > 0 {
		if err := d.addStickyNames(ctx, web, slices.Collect(maps.Keys(req.StickySettings))); err != nil {
			d.revert(ctx, web, st)
			return nil, err
		}
	}
	if err := d.waitRunning(ctx, st.hostName, dep.Warmup, dep.Revision); err != nil {
		d.revert(ctx, web, st)
		return nil, modelslot.Wrapf(err, modelslot.EUNAVAILABLE, "%s: the new content never answered its health path: %v; its previous image and settings were put back. Check the container's logs (`az webapp log tail --slot %s`), Deployment.Warmup.Path and Warmup.Timeout", op, err, slot)
	}
	d.logger.Info("deployed", "slot", slot, "revision", dep.Revision)
	s := &modelslot.Slot{Name: slot, Deployment: &dep, CreatedAt: st.modified}
	for k, v := range req.StickySettings {
		if s.StickySettings == nil {
			s.StickySettings = map[string]string{}
		}
		s.StickySettings[k] = v
	}
	return s, nil
}

func reserved(name, versionSetting string) bool {
	switch name {
	case versionSetting, SettingRevision, SettingNames, SettingWarmupPath, SettingWarmupStatuses:
		return true
	}
	return false
}

// mergeSettings returns the slot's new app settings: the current ones,
// minus the settings of the previous modelslot deployment, plus the new
// deployment's and the sticky ones.
func (d *Driver) mergeSettings(cur map[string]string, dep modelslot.Deployment, sticky map[string]string) map[string]string {
	out := maps.Clone(cur)
	if out == nil {
		out = map[string]string{}
	}
	for _, name := range splitList(cur[SettingNames]) {
		delete(out, name)
	}
	delete(out, SettingWarmupStatuses)
	var names []string
	for k, v := range dep.Settings {
		if k == ImageSetting {
			continue
		}
		out[k] = v
		names = append(names, k)
	}
	sort.Strings(names)
	for k, v := range sticky {
		out[k] = v
	}
	out[d.cfg.VersionSetting] = dep.Version
	out[SettingRevision] = dep.Revision
	out[SettingNames] = strings.Join(names, ",")
	path := dep.Warmup.Path
	if path == "" {
		path = "/health"
	}
	out[SettingWarmupPath] = path
	if len(dep.Warmup.Statuses) > 0 {
		out[SettingWarmupStatuses] = formatStatuses(dep.Warmup.Statuses)
	}
	return out
}

func (d *Driver) putSlotConfig(ctx context.Context, web *armappservice.WebAppsClient, slot, linuxFx string) error {
	cfg := armappservice.SiteConfigResource{Properties: &armappservice.SiteConfig{LinuxFxVersion: to.Ptr(linuxFx)}}
	var err error
	if slot == modelslot.Production {
		_, err = web.UpdateConfiguration(ctx, d.cfg.ResourceGroup, d.cfg.App, cfg, nil)
	} else {
		_, err = web.UpdateConfigurationSlot(ctx, d.cfg.ResourceGroup, d.cfg.App, slot, cfg, nil)
	}
	return translate("deploy "+slot+": set the container image", err)
}

func (d *Driver) putSettings(ctx context.Context, web *armappservice.WebAppsClient, slot string, settings map[string]string) error {
	props := make(map[string]*string, len(settings))
	for k, v := range settings {
		props[k] = to.Ptr(v)
	}
	dict := armappservice.StringDictionary{Properties: props}
	var err error
	if slot == modelslot.Production {
		_, err = web.UpdateApplicationSettings(ctx, d.cfg.ResourceGroup, d.cfg.App, dict, nil)
	} else {
		_, err = web.UpdateApplicationSettingsSlot(ctx, d.cfg.ResourceGroup, d.cfg.App, slot, dict, nil)
	}
	return translate("deploy "+slot+": set the app settings", err)
}

// addStickyNames marks app settings as deployment slot settings. The PUT
// replaces all three lists, so the current lists are read and kept.
func (d *Driver) addStickyNames(ctx context.Context, web *armappservice.WebAppsClient, names []string) error {
	cur, err := d.stickyNames(ctx, web)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, n := range cur.AppSettingNames {
		have[deref(n)] = true
	}
	sort.Strings(names)
	changed := false
	next := *cur
	next.AppSettingNames = slices.Clone(cur.AppSettingNames)
	for _, n := range names {
		if !have[n] {
			next.AppSettingNames = append(next.AppSettingNames, to.Ptr(n))
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if next.ConnectionStringNames == nil {
		next.ConnectionStringNames = []*string{}
	}
	if next.AzureStorageConfigNames == nil {
		next.AzureStorageConfigNames = []*string{}
	}
	_, err = web.UpdateSlotConfigurationNames(ctx, d.cfg.ResourceGroup, d.cfg.App, armappservice.SlotConfigNamesResource{Properties: &next}, nil)
	return translate("deploy: mark sticky settings", err)
}

// revert puts a slot's previous image and app settings back after a failed
// deploy. It is best effort: a failure is logged, the deploy's error is
// what the caller sees.
func (d *Driver) revert(ctx context.Context, web *armappservice.WebAppsClient, st *siteState) {
	// The caller's ctx may be what ended the deploy; the revert must still run.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	err := d.putSlotConfig(ctx, web, st.name, st.linuxFx)
	if err == nil {
		err = d.putSettings(ctx, web, st.name, st.settings)
	}
	if err != nil {
		d.logger.Error("cannot put the previous deployment back after a failed deploy", "slot", st.name, "err", err)
		return
	}
	d.logger.Warn("failed deploy reverted", "slot", st.name)
}

// waitRunning polls the slot's health path until the new content answers
// it: an allowed status that shows revision want (Config.RevisionHeader),
// or, from a server that shows no revision, any allowed status unless
// RequireRevision is set. An answer that shows another revision is the
// old content, which App Service keeps serving while the new one starts.
// It gives up when the warm-up timeout passes.
func (d *Driver) waitRunning(ctx context.Context, host string, w modelslot.Warmup, want string) error {
	timeout := w.Timeout.D()
	if timeout == 0 {
		timeout = defaultWarmupTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	interval := min(d.cfg.PollFrequency, 2*time.Second)
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, d.cfg.HealthTimeout)
		rev, err := d.probe(pctx, host, w)
		pcancel()
		switch {
		case err != nil:
		case rev != "" && rev != want:
			err = fmt.Errorf("the slot still runs revision %s, not %s: App Service has not restarted it yet", rev, want)
		case rev == "" && d.cfg.RequireRevision:
			err = fmt.Errorf("the health answer shows no revision (header %s), which the driver requires: make the server echo its MODELSLOT_REVISION app setting in it", d.cfg.RevisionHeader)
		case rev == "":
			d.logger.Warn("the slot answers its health path but shows no revision: the new content cannot be told from the old; make the server echo its MODELSLOT_REVISION app setting in the header", "header", d.cfg.RevisionHeader, "revision", want)
			return nil
		default:
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err // keep the slot's answer, not the deadline's
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errors.New("no healthy answer from the new content within " + timeout.String() + " (last: " + last.Error() + ")")
			}
			return ctx.Err()
		case <-t.C:
		}
	}
}
