// Package azure runs modelslot's slots on Azure App Service deployment
// slots (Driver, a modelslot.Platform) and reads their Azure Monitor metrics
// (MetricSource). Tests use the SDK's fakes; see package azuretest.
package azure

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appservice/armappservice/v4"

	"github.com/modelslot/modelslot"
)

var _ modelslot.Platform = (*Driver)(nil)

// Driver is a modelslot.Platform on one App Service app: modelslot slots
// are the app's deployment slots, routing is the production site's
// rampUpRules, swaps are Azure's swaps.
type Driver struct {
	cfg    Config
	logger *slog.Logger
	creds  *credentials

	mu  sync.Mutex
	web *armappservice.WebAppsClient
}

// credentials builds the credential once, on first use, and shares it
// between the driver and its metric source.
type credentials struct {
	cfg  Config
	mu   sync.Mutex
	cred azcore.TokenCredential
}

func (c *credentials) get() (azcore.TokenCredential, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cred != nil {
		return c.cred, nil
	}
	cred, err := c.cfg.newCredential()
	if err != nil {
		return nil, err
	}
	c.cred = taggedCredential{TokenCredential: cred, mode: c.cfg.authMode(), kind: c.cfg.credentialPlan().Kind}
	return c.cred, nil
}

// New returns a driver for cfg's app. It validates cfg but contacts nothing
// and builds no credential: that happens on first use.
func New(cfg Config, logger *slog.Logger) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	return &Driver{
		cfg:    cfg,
		logger: logger.With("component", "azure", "app", cfg.App),
		creds:  &credentials{cfg: cfg},
	}, nil
}

// client returns the WebApps client, creating it (and the credential) on
// first use.
func (d *Driver) client() (*armappservice.WebAppsClient, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.web != nil {
		return d.web, nil
	}
	cred, err := d.creds.get()
	if err != nil {
		return nil, err
	}
	web, err := armappservice.NewWebAppsClient(d.cfg.SubscriptionID, cred, d.cfg.armOptions(d.cfg.ClientOptions))
	if err != nil {
		return nil, modelslot.Wrapf(err, modelslot.EINVALID, "azure: cannot create the App Service client: %v", err)
	}
	d.web = web
	return web, nil
}

// MetricSource returns an Azure Monitor metric source for the driver's app
// that shares the driver's credential.
func (d *Driver) MetricSource() *MetricSource {
	return newMetricSource(d.cfg, d.logger, d.creds)
}

// checkApp refuses an app name other than the configured one.
func (d *Driver) checkApp(app string) error {
	if app != d.cfg.App {
		return modelslot.Errorf(modelslot.ENOTFOUND, "app %q is not managed by this Azure driver: it manages App Service app %q in resource group %q (--app)", app, d.cfg.App, d.cfg.ResourceGroup)
	}
	return nil
}

// siteState is what one slot looks like on Azure, read in one place.
type siteState struct {
	name           string // modelslot name: "production" or the slot's
	hostName       string // defaultHostName, as Azure reports it
	linuxFx        string
	settings       map[string]string
	targetSwapSlot string
	modified       time.Time
	rules          []*armappservice.RampUpRule // production only: the routing rules
}

// azureSlotName turns "siteName/slotName" (what ARM lists) into "slotName".
func azureSlotName(s *armappservice.Site) string {
	n := deref(s.Name)
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		n = n[i+1:]
	}
	return n
}

// readSlots lists production and every slot with their site config and
// app settings.
func (d *Driver) readSlots(ctx context.Context, web *armappservice.WebAppsClient) ([]*siteState, *armappservice.Site, error) {
	rg, app := d.cfg.ResourceGroup, d.cfg.App
	prod, err := web.Get(ctx, rg, app, nil)
	if err != nil {
		return nil, nil, translate("read app "+app, err)
	}
	sites := []*armappservice.Site{&prod.Site}
	pager := web.NewListSlotsPager(rg, app, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, nil, translate("list slots of "+app, err)
		}
		sites = append(sites, page.Value...)
	}
	var out []*siteState
	for i, s := range sites {
		st := &siteState{name: modelslot.Production}
		if i > 0 {
			st.name = azureSlotName(s)
		}
		if p := s.Properties; p != nil {
			st.hostName = deref(p.DefaultHostName)
			st.targetSwapSlot = deref(p.TargetSwapSlot)
			if p.LastModifiedTimeUTC != nil {
				st.modified = *p.LastModifiedTimeUTC
			}
		}
		if err := d.readSlotConfig(ctx, web, st); err != nil {
			return nil, nil, err
		}
		out = append(out, st)
	}
	// production first, then by name
	sort.SliceStable(out[1:], func(i, j int) bool { return out[1+i].name < out[1+j].name })
	return out, &prod.Site, nil
}

func (d *Driver) readSlotConfig(ctx context.Context, web *armappservice.WebAppsClient, st *siteState) error {
	rg, app := d.cfg.ResourceGroup, d.cfg.App
	var (
		cfg *armappservice.SiteConfig
		set map[string]*string
	)
	if st.name == modelslot.Production {
		c, err := web.GetConfiguration(ctx, rg, app, nil)
		if err != nil {
			return translate("read site config of "+app, err)
		}
		cfg = c.Properties
		s, err := web.ListApplicationSettings(ctx, rg, app, nil)
		if err != nil {
			return translate("read app settings of "+app, err)
		}
		set = s.Properties
	} else {
		c, err := web.GetConfigurationSlot(ctx, rg, app, st.name, nil)
		if err != nil {
			return translate("read site config of slot "+st.name, err)
		}
		cfg = c.Properties
		s, err := web.ListApplicationSettingsSlot(ctx, rg, app, st.name, nil)
		if err != nil {
			return translate("read app settings of slot "+st.name, err)
		}
		set = s.Properties
	}
	if cfg != nil {
		st.linuxFx = deref(cfg.LinuxFxVersion)
		if cfg.Experiments != nil {
			st.rules = cfg.Experiments.RampUpRules
		}
	}
	st.settings = make(map[string]string, len(set))
	for k, v := range set {
		st.settings[k] = deref(v)
	}
	return nil
}

// stickyNames returns the app settings marked "deployment slot setting".
func (d *Driver) stickyNames(ctx context.Context, web *armappservice.WebAppsClient) (*armappservice.SlotConfigNames, error) {
	r, err := web.ListSlotConfigurationNames(ctx, d.cfg.ResourceGroup, d.cfg.App, nil)
	if err != nil {
		return nil, translate("read slot settings of "+d.cfg.App, err)
	}
	if r.Properties == nil {
		return &armappservice.SlotConfigNames{}, nil
	}
	return r.Properties, nil
}

// routing reads the production site's rampUpRules.
func (d *Driver) routing(ctx context.Context, web *armappservice.WebAppsClient) (modelslot.Routing, []*armappservice.RampUpRule, error) {
	c, err := web.GetConfiguration(ctx, d.cfg.ResourceGroup, d.cfg.App, nil)
	if err != nil {
		return modelslot.Routing{}, nil, translate("read routing of "+d.cfg.App, err)
	}
	var raw []*armappservice.RampUpRule
	if c.Properties != nil && c.Properties.Experiments != nil {
		raw = c.Properties.Experiments.RampUpRules
	}
	return rulesToRouting(raw), raw, nil
}

func rulesToRouting(raw []*armappservice.RampUpRule) modelslot.Routing {
	r := modelslot.Routing{Rules: []modelslot.TrafficRule{}}
	for _, rule := range raw {
		if rule == nil || rule.Name == nil {
			continue
		}
		r.Rules = append(r.Rules, modelslot.TrafficRule{Slot: *rule.Name, Percent: deref(rule.ReroutePercentage)})
	}
	sort.Slice(r.Rules, func(i, j int) bool { return r.Rules[i].Slot < r.Rules[j].Slot })
	return r
}

// deployment rebuilds the Deployment running in a slot from its site config
// and the app settings modelslot wrote; nil for an empty slot.
func (d *Driver) deployment(st *siteState, sticky map[string]bool) *modelslot.Deployment {
	image := imageOf(st.linuxFx)
	version := st.settings[d.cfg.VersionSetting]
	if image == "" && version == "" && st.settings[SettingRevision] == "" {
		return nil
	}
	dep := &modelslot.Deployment{
		Version:    version,
		URL:        "https://" + st.hostName,
		Settings:   map[string]string{},
		DeployedAt: st.modified,
	}
	if image != "" {
		dep.Settings[ImageSetting] = image
	}
	for _, name := range splitList(st.settings[SettingNames]) {
		if v, ok := st.settings[name]; ok && !sticky[name] {
			dep.Settings[name] = v
		}
	}
	dep.Warmup.Path = st.settings[SettingWarmupPath]
	dep.Warmup.Statuses = parseStatuses(st.settings[SettingWarmupStatuses])
	dep.Revision = st.settings[SettingRevision]
	if dep.Revision == "" {
		dep.Revision = contentRevision(*dep)
	}
	return dep
}

// contentRevision derives a revision from what runs (image, settings,
// version, warm-up), not from where: on Azure a deployment's URL is its
// slot's host name, and a swap moves the content to another slot without
// changing it, so the URL must not rename it.
func contentRevision(dep modelslot.Deployment) string {
	dep.URL = ""
	return dep.ComputeRevision()
}

// imageOf returns the image of a linuxFxVersion "DOCKER|image:tag".
func imageOf(fx string) string {
	kind, image, ok := strings.Cut(fx, "|")
	if !ok || !strings.EqualFold(kind, "DOCKER") {
		return ""
	}
	return image
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseStatuses(s string) []int {
	var out []int
	for _, f := range splitList(s) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func formatStatuses(list []int) string {
	parts := make([]string, len(list))
	for i, v := range list {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, ",")
}

// App returns the app with its slots and routing, as Azure has them.
func (d *Driver) App(ctx context.Context, app string) (*modelslot.App, error) {
	a, _, _, err := d.app(ctx, app)
	return a, err
}

// app reads everything; it also returns the slots' host names and the
// production site.
func (d *Driver) app(ctx context.Context, app string) (*modelslot.App, map[string]string, *armappservice.Site, error) {
	if err := d.checkApp(app); err != nil {
		return nil, nil, nil, err
	}
	web, err := d.client()
	if err != nil {
		return nil, nil, nil, err
	}
	states, prod, err := d.readSlots(ctx, web)
	if err != nil {
		return nil, nil, nil, err
	}
	names, err := d.stickyNames(ctx, web)
	if err != nil {
		return nil, nil, nil, err
	}
	sticky := map[string]bool{}
	for _, n := range names.AppSettingNames {
		sticky[deref(n)] = true
	}
	a := &modelslot.App{
		Name:     app,
		MaxSlots: maxSlots(prod),
		Routing:  rulesToRouting(states[0].rules), // states[0] is production
	}
	hosts := map[string]string{}
	for _, st := range states {
		hosts[st.name] = st.hostName
		s := &modelslot.Slot{
			Name:            st.name,
			Deployment:      d.deployment(st, sticky),
			PreparedForSwap: st.targetSwapSlot,
			CreatedAt:       st.modified,
		}
		for name := range sticky {
			if v, ok := st.settings[name]; ok {
				if s.StickySettings == nil {
					s.StickySettings = map[string]string{}
				}
				s.StickySettings[name] = v
			}
		}
		a.Slots = append(a.Slots, s)
	}
	return a, hosts, prod, nil
}

// slotLimits is the number of deployment slots (production excluded) per
// App Service tier, from Azure's published limits.
var slotLimits = map[string]int{
	"free": 0, "shared": 0, "basic": 0, "standard": 5,
	"premium": 20, "premiumv2": 20, "premiumv3": 20, "premium0v3": 20, "premiummv3": 20,
	"isolated": 20, "isolatedv2": 20,
}

// maxSlots is App.MaxSlots (production included) for the site's tier.
func maxSlots(site *armappservice.Site) int {
	if site != nil && site.Properties != nil && site.Properties.SKU != nil {
		if n, ok := slotLimits[strings.ToLower(*site.Properties.SKU)]; ok {
			return n + 1
		}
	}
	return modelslot.DefaultMaxSlots
}

// Status adds the health of every slot (a GET of its warm-up path on its
// host name) and the last swap.
func (d *Driver) Status(ctx context.Context, app string) (*modelslot.AppStatus, error) {
	a, hosts, prod, err := d.app(ctx, app)
	if err != nil {
		return nil, err
	}
	st := &modelslot.AppStatus{App: app, Routing: a.Routing, Slots: make([]modelslot.SlotStatus, len(a.Slots))}
	var wg sync.WaitGroup
	for i, s := range a.Slots {
		ss := &st.Slots[i]
		ss.Slot = s
		ss.Percent = a.Routing.Percent(s.Name)
		if s.Deployment == nil {
			ss.Health = "no deployment"
			continue
		}
		ss.Backend = s.Deployment.URL
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, d.cfg.HealthTimeout)
			defer cancel()
			rev, err := d.probe(pctx, hosts[s.Name], s.Deployment.Warmup)
			if err != nil {
				ss.Health = err.Error()
				return
			}
			if rev != "" && rev != s.Deployment.Revision {
				ss.Health = "runs revision " + rev + ", not " + s.Deployment.Revision + " (restarting?)"
				return
			}
			ss.Healthy = true
		})
	}
	wg.Wait()
	if rec := swapRecord(app, prod); rec != nil {
		st.LastSwap = rec
	}
	return st, nil
}

// probe sends one GET to the slot's health path. It returns the revision
// the answer shows (Config.RevisionHeader), "" if it shows none.
func (d *Driver) probe(ctx context.Context, host string, w modelslot.Warmup) (string, error) {
	path := w.Path
	if path == "" {
		path = "/health"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.cfg.HostURL(host)+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := d.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if !modelslot.StatusAllowed(w.Statuses, resp.StatusCode) {
		return "", &statusError{path: path, code: resp.StatusCode, allowed: w.Statuses}
	}
	return strings.TrimSpace(resp.Header.Get(d.cfg.RevisionHeader)), nil
}

type statusError struct {
	path    string
	code    int
	allowed []int
}

func (e *statusError) Error() string {
	want := "a 2xx"
	if len(e.allowed) > 0 {
		want = formatStatuses(e.allowed)
	}
	return "GET " + e.path + " answered " + strconv.Itoa(e.code) + ", want " + want
}

// CreateSlot adds an empty deployment slot in the production site's plan
// and region.
func (d *Driver) CreateSlot(ctx context.Context, app, slot string) (*modelslot.Slot, error) {
	if err := d.checkApp(app); err != nil {
		return nil, err
	}
	if err := modelslot.ValidateName("slot", slot); err != nil {
		return nil, err
	}
	if slot == modelslot.Production {
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "slot %q always exists", slot)
	}
	web, err := d.client()
	if err != nil {
		return nil, err
	}
	rg := d.cfg.ResourceGroup
	prod, err := web.Get(ctx, rg, app, nil)
	if err != nil {
		return nil, translate("create slot "+slot, err)
	}
	var existing []string
	pager := web.NewListSlotsPager(rg, app, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, translate("create slot "+slot, err)
		}
		for _, s := range page.Value {
			existing = append(existing, azureSlotName(s))
		}
	}
	if slices.Contains(existing, slot) {
		return nil, modelslot.Errorf(modelslot.ECONFLICT, "create slot %s: app %q already has a slot %q", slot, app, slot)
	}
	if p := prod.Properties; p != nil && p.SKU != nil {
		if n, ok := slotLimits[strings.ToLower(*p.SKU)]; ok && len(existing) >= n {
			return nil, modelslot.Errorf(modelslot.ECONFLICT, "create slot %s: the %s tier of the App Service plan allows %d deployment slots and app %q has %d: scale the plan up (Standard: 5, Premium: 20) or delete a slot", slot, *p.SKU, n, app, len(existing))
		}
	}
	env := armappservice.Site{Location: prod.Location}
	if prod.Properties != nil {
		env.Properties = &armappservice.SiteProperties{ServerFarmID: prod.Properties.ServerFarmID}
	}
	poller, err := web.BeginCreateOrUpdateSlot(ctx, rg, app, slot, env, nil)
	if err != nil {
		return nil, translate("create slot "+slot, err)
	}
	res, err := poller.PollUntilDone(ctx, d.pollOptions())
	if err != nil {
		return nil, translate("create slot "+slot, err)
	}
	created := d.cfg.Now().UTC()
	if res.Properties != nil && res.Properties.LastModifiedTimeUTC != nil {
		created = *res.Properties.LastModifiedTimeUTC
	}
	d.logger.Info("slot created", "slot", slot)
	return &modelslot.Slot{Name: slot, CreatedAt: created}, nil
}

// DeleteSlot deletes a deployment slot. A routing rule that points at it is
// removed first (a rule to a missing host answers 404); a slot with a share
// of traffic is refused unless force is set.
func (d *Driver) DeleteSlot(ctx context.Context, app, slot string, force bool) error {
	if err := d.checkApp(app); err != nil {
		return err
	}
	if slot == modelslot.Production || slot == modelslot.Self {
		return modelslot.Errorf(modelslot.EINVALID, "delete slot: production cannot be deleted: it is the app itself")
	}
	web, err := d.client()
	if err != nil {
		return err
	}
	rg := d.cfg.ResourceGroup
	if _, err := web.GetSlot(ctx, rg, app, slot, nil); err != nil {
		return translate("delete slot "+slot, err)
	}
	_, raw, err := d.routing(ctx, web)
	if err != nil {
		return err
	}
	var keep []*armappservice.RampUpRule
	var pct float64
	found := false
	for _, r := range raw {
		if r != nil && deref(r.Name) == slot {
			found = true
			pct = deref(r.ReroutePercentage)
			continue
		}
		keep = append(keep, r)
	}
	if pct > 0 && !force {
		return modelslot.Errorf(modelslot.ECONFLICT, "delete slot %s: it receives %g%% of the traffic: move its traffic first (`modelslot traffic set`) or delete with --force", slot, pct)
	}
	if found {
		if err := d.putRules(ctx, web, keep); err != nil {
			return err
		}
		d.logger.Info("routing rule removed before deleting its slot", "slot", slot, "percent", pct)
	}
	if _, err := web.DeleteSlot(ctx, rg, app, slot, nil); err != nil {
		return translate("delete slot "+slot, err)
	}
	d.logger.Info("slot deleted", "slot", slot)
	return nil
}

// deref returns *p, or the zero value for nil.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
