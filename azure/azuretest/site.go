// Package azuretest fakes one Azure App Service app with its deployment
// slots and Azure Monitor metrics, on top of the SDK's official fakes, so
// that the azure driver (and a whole rollout) can run in tests without a
// subscription. Nothing leaves the process except loopback HTTP.
package azuretest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appservice/armappservice/v4"
	webfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/appservice/armappservice/v4/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/monitor/armmonitor"
	monfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/monitor/armmonitor/fake"

	"github.com/modelslot/modelslot/azure"
)

// Options describe the fake app; zero fields get defaults.
type Options struct {
	Subscription  string // default 00000000-0000-0000-0000-000000000001
	ResourceGroup string // default rg-modelslot
	App           string // default llm
	Location      string // default westeurope
	// SKU is the plan's tier as the site reports it ("Basic", "Standard",
	// "PremiumV3"); default Standard (5 slots).
	SKU string
	// Image is production's initial container image; empty: no content.
	Image string
	// Settings are production's initial app settings.
	Settings map[string]string
	// Slots are created empty at start.
	Slots []string
}

// Production is the name the fake uses for the production site.
const Production = "production"

// MetricPoint is one minute of a slot's Azure Monitor metrics.
type MetricPoint struct {
	Time         time.Time
	Requests     float64
	Http5xx      float64
	Http4xx      float64
	ResponseTime float64 // seconds
}

// AIRequest is one request as Application Insights records it.
type AIRequest struct {
	Start    time.Time
	Duration time.Duration
	Status   int // resultCode; 0 records "" (no answer)
}

// Request is one ARM request as it went over the (fake) wire.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	// Body is the decoded JSON body (nil when there is none), for checking
	// field names as Azure sees them.
	Body any
}

// Fault makes matching requests fail at the wire level with Status and a
// JSON Body, as Azure would answer: retry policies and error parsing run
// as in production.
type Fault struct {
	Method     string // "" matches any
	PathSuffix string // matched against the URL path, e.g. "/slots/staging/slotsswap"
	Status     int
	Body       string // e.g. {"Code":"Conflict","Message":"..."}
	// Times is how many requests fail; 0 means every one.
	Times int
	// Applied lets the request reach the fake app and take effect before
	// its answer is replaced by Status and Body: an answer lost on the way
	// back (Azure swapped, the client saw a 500).
	Applied bool
	hits    int
}

type slot struct {
	name     string
	host     string
	linuxFx  string
	settings map[string]string
	modified time.Time
	// preview state: the slot it is prepared to swap with, and its sticky
	// values before the target's were applied.
	target      string
	savedSticky map[string]string
	swapStatus  *armappservice.SlotSwapStatus
	// A restart in progress (SlowRestart): the host name serves old for
	// the next pending requests.
	old     *running
	pending int
}

// running is the content a slot's host name serves.
type running struct {
	linuxFx  string
	settings map[string]string
}

// FakeSite is the fake app. Its methods are safe for concurrent use.
type FakeSite struct {
	Subscription, ResourceGroup, App, Location, SKU string

	t         testing.TB
	server    *httptest.Server
	transport *transport

	mu           sync.Mutex
	now          func() time.Time
	slots        map[string]*slot
	rules        []*armappservice.RampUpRule
	stickyNames  armappservice.SlotConfigNames
	handlers     map[string]http.Handler // by image
	metrics      map[string][]MetricPoint
	metricsFunc  func(slot, image string, minute time.Time) (MetricPoint, bool)
	metricsLag   time.Duration
	aiRequests   map[string][]AIRequest // Application Insights, by role name
	requests     []Request
	faults       []*Fault
	swaps        int
	restartAfter int  // SlowRestart
	echoRevision bool // EchoRevision
	// holding: swaps are started but not finished until ReleaseSwaps.
	holding bool
	held    []heldSwap
}

// heldSwap is a swap in flight (see HoldSwaps).
type heldSwap struct{ rg, name, source, target string }

// NewFakeSite starts a fake app; the loopback server that plays the slots'
// host names is closed at the end of the test.
func NewFakeSite(t testing.TB, o Options) *FakeSite {
	t.Helper()
	s := &FakeSite{
		Subscription:  or(o.Subscription, "00000000-0000-0000-0000-000000000001"),
		ResourceGroup: or(o.ResourceGroup, "rg-modelslot"),
		App:           or(o.App, "llm"),
		Location:      or(o.Location, "westeurope"),
		SKU:           or(o.SKU, "Standard"),
		t:             t,
		now:           time.Now,
		slots:         map[string]*slot{},
		handlers:      map[string]http.Handler{},
		metrics:       map[string][]MetricPoint{},
	}
	s.stickyNames = armappservice.SlotConfigNames{AppSettingNames: []*string{}, ConnectionStringNames: []*string{}, AzureStorageConfigNames: []*string{}}
	prod := s.newSlot(Production)
	if o.Image != "" {
		prod.linuxFx = "DOCKER|" + o.Image
	}
	maps.Copy(prod.settings, o.Settings)
	for _, n := range o.Slots {
		s.newSlot(n)
	}
	s.server = httptest.NewServer(http.HandlerFunc(s.serveHost))
	t.Cleanup(s.server.Close)
	s.transport = &transport{site: s}
	s.transport.web = webfake.NewWebAppsServerTransport(s.webServer())
	s.transport.mon = monfake.NewMetricsServerTransport(s.monitorServer())
	return s
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// newSlot adds a slot; its host name looks like the ones Azure gives new
// apps (with a hash and a region), so a driver that builds host names
// instead of reading defaultHostName fails.
func (s *FakeSite) newSlot(name string) *slot {
	label := s.App
	if name != Production {
		label += "-" + name
	}
	sl := &slot{
		name:     name,
		host:     fmt.Sprintf("%s-%08x.%s-01.azurewebsites.net", label, len(s.slots)*7919+0x5eed, s.Location),
		settings: map[string]string{},
		modified: s.now().UTC(),
	}
	s.slots[name] = sl
	return sl
}

// Config returns a driver configuration wired to the fake: fake
// credential and transports, loopback health checks, fast polling.
func (s *FakeSite) Config() azure.Config {
	return azure.Config{
		SubscriptionID:       s.Subscription,
		ResourceGroup:        s.ResourceGroup,
		App:                  s.App,
		PollFrequency:        10 * time.Millisecond,
		HealthTimeout:        2 * time.Second,
		Credential:           &azfake.TokenCredential{},
		ClientOptions:        s.ClientOptions(),
		MetricsClientOptions: s.ClientOptions(),
		LogsClientOptions:    &s.ClientOptions().ClientOptions,
		HTTPClient:           s.server.Client(),
		HostURL:              s.HostURL,
		Now:                  s.Now,
	}
}

// ClientOptions returns ARM client options whose transport is the fake
// (App Service and Azure Monitor), with retries that back off in
// milliseconds.
func (s *FakeSite) ClientOptions() *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: policy.ClientOptions{
		Transport: s.transport,
		Retry: policy.RetryOptions{
			MaxRetries:    3,
			RetryDelay:    time.Millisecond,
			MaxRetryDelay: 5 * time.Millisecond,
		},
	}}
}

// Credential returns a fake credential.
func (s *FakeSite) Credential() azcore.TokenCredential { return &azfake.TokenCredential{} }

// SetNow sets the fake's clock (swap timestamps, Config().Now).
func (s *FakeSite) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// Now is the fake's clock.
func (s *FakeSite) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now()
}

// HostURL maps a slot's defaultHostName to the loopback server that plays
// it. Unknown host names map to a closed loopback port: nothing leaves the
// machine.
func (s *FakeSite) HostURL(host string) string {
	return s.server.URL + "/_host/" + host
}

// ServeImage sets what a container image answers on its slot's host name
// (health and warm-up paths). The handler follows the image through swaps.
// An image without a handler answers 200 to everything.
func (s *FakeSite) ServeImage(image string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[image] = h
}

func (s *FakeSite) serveHost(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/_host/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	host, path, _ := strings.Cut(rest, "/")
	s.mu.Lock()
	var h http.Handler
	found, image, revision := false, "", ""
	for _, sl := range s.slots {
		if sl.host == host {
			run := running{linuxFx: sl.linuxFx, settings: sl.settings}
			if sl.pending > 0 {
				run = *sl.old
				if sl.pending--; sl.pending == 0 {
					sl.old = nil
				}
			}
			found, image = true, imageOf(run.linuxFx)
			h = s.handlers[image]
			if s.echoRevision {
				revision = run.settings[azure.SettingRevision]
			}
		}
	}
	s.mu.Unlock()
	if revision != "" {
		w.Header().Set("X-Modelslot-Revision", revision)
	}
	switch {
	case !found:
		http.Error(w, "404 Web Site not found", http.StatusNotFound)
	case image == "":
		http.Error(w, "no container", http.StatusServiceUnavailable)
	case h == nil:
		io.WriteString(w, "ok")
	default:
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + path
		h.ServeHTTP(w, r2)
	}
}

func imageOf(fx string) string {
	if kind, img, ok := strings.Cut(fx, "|"); ok && strings.EqualFold(kind, "DOCKER") {
		return img
	}
	return ""
}

// Slots lists the slot names, production first.
func (s *FakeSite) Slots() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.slots {
		if n != Production {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return append([]string{Production}, out...)
}

// HostName is a slot's defaultHostName ("" if there is no such slot).
func (s *FakeSite) HostName(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl := s.slots[name]; sl != nil {
		return sl.host
	}
	return ""
}

// Image is the container image running in a slot.
func (s *FakeSite) Image(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl := s.slots[name]; sl != nil {
		return imageOf(sl.linuxFx)
	}
	return ""
}

// AppSettings returns a copy of a slot's app settings.
func (s *FakeSite) AppSettings(name string) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sl := s.slots[name]; sl != nil {
		return maps.Clone(sl.settings)
	}
	return nil
}

// SetAppSettings replaces a slot's app settings, as an operator could.
func (s *FakeSite) SetAppSettings(name string, settings map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slots[name].settings = maps.Clone(settings)
}

// StickyNames returns the app setting names marked as slot settings.
func (s *FakeSite) StickyNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return derefs(s.stickyNames.AppSettingNames)
}

// RampUpRules returns a copy of the production site's routing rules.
func (s *FakeSite) RampUpRules() []armappservice.RampUpRule {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]armappservice.RampUpRule, len(s.rules))
	for i, r := range s.rules {
		out[i] = *r
	}
	return out
}

// Swaps counts completed swaps.
func (s *FakeSite) Swaps() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.swaps
}

// SlowRestart makes a change of a slot's image or app settings take
// effect on its host name only after n more requests to it: until then the
// previous content answers, as App Service keeps the old container serving
// while the new one starts. 0 (the default): at once.
func (s *FakeSite) SlowRestart(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restartAfter = n
}

// EchoRevision makes every container answer with the header
// X-Modelslot-Revision set to its MODELSLOT_REVISION app setting, as a
// server that shows the revision it runs does.
func (s *FakeSite) EchoRevision() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.echoRevision = true
}

// restart starts a restart of sl before its content changes. The caller
// holds s.mu.
func (s *FakeSite) restart(sl *slot) {
	if s.restartAfter <= 0 {
		return
	}
	if sl.pending == 0 {
		sl.old = &running{linuxFx: sl.linuxFx, settings: maps.Clone(sl.settings)}
	}
	sl.pending = s.restartAfter
}

// HoldSwaps makes the swaps asked for from now on stay in flight until
// ReleaseSwaps: Azure has started them (both slots show targetSwapSlot, as
// in phase 1 of every swap) but not finished them.
func (s *FakeSite) HoldSwaps() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holding = true
}

// InFlight counts the swaps held by HoldSwaps.
func (s *FakeSite) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// ReleaseSwaps finishes the swaps in flight and stops holding new ones.
func (s *FakeSite) ReleaseSwaps() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holding = false
	for _, h := range s.held {
		for _, n := range []string{h.source, h.target} {
			if sl := s.slot(h.rg, h.name, n); sl != nil {
				sl.target = ""
			}
		}
		s.swap(h.rg, h.name, h.source, h.target)
	}
	s.held = nil
}

// SetMetrics sets a slot's metric minutes (replacing earlier ones).
func (s *FakeSite) SetMetrics(slotName string, points ...MetricPoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metrics[slotName] = points
}

// SetMetricsFunc generates metrics for minutes SetMetrics did not set,
// from the slot and the image it runs now (so metrics follow a swap);
// ok=false leaves the minute without data.
func (s *FakeSite) SetMetricsFunc(f func(slot, image string, minute time.Time) (p MetricPoint, ok bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metricsFunc = f
}

// SetMetricsLag makes the fake report metrics as Azure Monitor does: a
// minute is not reported before it is over, and until it ended lag ago
// its counts are partial (Requests scaled by its age over lag, rounded
// down) and its Http5xx and Http4xx are not in yet: errors arrive last.
// 0 (the default) reports every minute whole at once.
func (s *FakeSite) SetMetricsLag(lag time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metricsLag = lag
}

// AddRequests records requests in the fake Application Insights
// component under a cloud role name (the slot's name). The Logs query API
// answers them once they finished the metrics lag ago (SetMetricsLag).
func (s *FakeSite) AddRequests(role string, reqs ...AIRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aiRequests == nil {
		s.aiRequests = map[string][]AIRequest{}
	}
	s.aiRequests[role] = append(s.aiRequests[role], reqs...)
}

// AppInsightsID is the ARM id of the fake Application Insights component.
func (s *FakeSite) AppInsightsID() string {
	return "/subscriptions/" + s.Subscription + "/resourceGroups/" + s.ResourceGroup + "/providers/Microsoft.Insights/components/ai-" + s.App
}

var (
	kqlRole     = regexp.MustCompile(`cloud_RoleName == '([^']*)'`)
	kqlFinished = regexp.MustCompile(`finished >= datetime\(([^)]+)\) and finished < datetime\(([^)]+)\)`)
)

// serveLogs answers the Logs query API's POST /v1/{resource}/query. It
// understands the query azure.RequestSource sends, nothing else.
func (s *FakeSite) serveLogs(req *http.Request, body []byte) *http.Response {
	if !strings.HasSuffix(req.URL.Path, "/query") || !strings.Contains(req.URL.Path, s.AppInsightsID()) {
		return response(req, http.StatusNotFound, `{"error":{"code":"PathNotFoundError","message":"no such component"}}`)
	}
	var q struct{ Query string }
	if err := json.Unmarshal(body, &q); err != nil {
		return response(req, http.StatusBadRequest, `{"error":{"code":"BadArgumentError","message":"body"}}`)
	}
	role, span := kqlRole.FindStringSubmatch(q.Query), kqlFinished.FindStringSubmatch(q.Query)
	if role == nil || span == nil {
		return response(req, http.StatusBadRequest, `{"error":{"code":"SemanticError","message":"the fake understands only azure.RequestsQuery"}}`)
	}
	from, err1 := time.Parse(time.RFC3339Nano, span[1])
	until, err2 := time.Parse(time.RFC3339Nano, span[2])
	if err1 != nil || err2 != nil {
		return response(req, http.StatusBadRequest, `{"error":{"code":"SemanticError","message":"datetime"}}`)
	}
	s.mu.Lock()
	now := s.now()
	var rows [][]any
	for _, r := range s.aiRequests[role[1]] {
		end := r.Start.Add(r.Duration)
		if end.Before(from) || !end.Before(until) || end.Add(s.metricsLag).After(now) {
			continue
		}
		code := ""
		if r.Status != 0 {
			code = strconv.Itoa(r.Status)
		}
		rows = append(rows, []any{end.UTC().Format(time.RFC3339Nano), float64(r.Duration) / float64(time.Millisecond), code})
	}
	s.mu.Unlock()
	slices.SortFunc(rows, func(a, b []any) int { return strings.Compare(a[0].(string), b[0].(string)) })
	if rows == nil {
		rows = [][]any{}
	}
	out, _ := json.Marshal(map[string]any{"tables": []any{map[string]any{
		"name":    "PrimaryResult",
		"columns": []any{map[string]string{"name": "finished", "type": "datetime"}, map[string]string{"name": "duration", "type": "real"}, map[string]string{"name": "resultCode", "type": "string"}},
		"rows":    rows,
	}}})
	return response(req, http.StatusOK, string(out))
}

// Fail adds a wire-level fault.
func (s *FakeSite) Fail(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// Requests returns the ARM requests seen so far.
func (s *FakeSite) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// LastRequest returns the last request with the method whose path ends
// with suffix.
func (s *FakeSite) LastRequest(method, suffix string) (Request, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.requests) - 1; i >= 0; i-- {
		r := s.requests[i]
		if r.Method == method && strings.HasSuffix(r.Path, suffix) {
			return r, true
		}
	}
	return Request{}, false
}

// CountRequests counts requests with the method whose path ends with suffix.
func (s *FakeSite) CountRequests(method, suffix string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.Method == method && strings.HasSuffix(r.Path, suffix) {
			n++
		}
	}
	return n
}

// ResetRequests forgets the recorded requests.
func (s *FakeSite) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// transport records requests, applies faults and Azure's refusals that
// need a message body, then hands the request to the SDK's fakes.
type transport struct {
	site *FakeSite
	web  *webfake.WebAppsServerTransport
	mon  *monfake.MetricsServerTransport
}

func (t *transport) Do(req *http.Request) (*http.Response, error) {
	s := t.site
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		body = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	rec := Request{Method: req.Method, Path: req.URL.Path, Query: req.URL.Query()}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &rec.Body); err != nil {
			rec.Body = string(body)
		}
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	resp, applied := s.refuse(req)
	s.mu.Unlock()
	if resp != nil && !applied {
		return resp, nil
	}
	if strings.HasPrefix(req.URL.Host, "api.loganalytics.") {
		return s.serveLogs(req, body), nil
	}
	next := t.web.Do
	if strings.Contains(strings.ToLower(req.URL.Path), "/providers/microsoft.insights/metrics") {
		next = t.mon.Do
	}
	if applied {
		if r, err := next(req); err == nil {
			r.Body.Close()
		}
		return resp, nil
	}
	return next(req)
}

// refuse returns Azure's answer to a request that fails before it reaches
// the resource: a configured fault, a slot limit, a pending swap preview.
// applied says the request is to take effect all the same (Fault.Applied).
// The caller holds s.mu.
func (s *FakeSite) refuse(req *http.Request) (resp *http.Response, applied bool) {
	for _, f := range s.faults {
		if (f.Method == "" || f.Method == req.Method) && strings.HasSuffix(req.URL.Path, f.PathSuffix) && (f.Times == 0 || f.hits < f.Times) {
			f.hits++
			return response(req, f.Status, f.Body), f.Applied
		}
	}
	path := req.URL.Path
	slotName := ""
	if _, rest, ok := strings.Cut(path, "/slots/"); ok {
		slotName, _, _ = strings.Cut(rest, "/")
	}
	if req.Method == http.MethodPut && slotName != "" && !strings.Contains(path, "/slots/"+slotName+"/") {
		if _, exists := s.slots[slotName]; !exists && len(s.slots)-1 >= slotLimit(s.SKU) {
			return response(req, http.StatusConflict, fmt.Sprintf(`{"Code":"Conflict","Message":"Cannot complete the operation because the site will exceed the number of slots allowed for the '%s' SKU.","Target":null,"Details":[{"Message":"Cannot complete the operation because the site will exceed the number of slots allowed for the '%s' SKU."}]}`, s.SKU, s.SKU)), false
		}
	}
	// Configuration writes to a slot in a pending preview are refused.
	write := req.Method == http.MethodPut || req.Method == http.MethodPatch
	if write && strings.Contains(path, "/config/") {
		name := Production
		if slotName != "" {
			name = slotName
		}
		if sl := s.slots[name]; sl != nil && sl.target != "" {
			return response(req, http.StatusConflict, `{"Code":"Conflict","Message":"Cannot modify this site because its configuration settings have been prepared for swap. Complete or cancel the swap first.","Target":null}`), false
		}
	}
	return nil, false
}

func slotLimit(sku string) int {
	switch strings.ToLower(sku) {
	case "free", "shared", "basic":
		return 0
	case "standard":
		return 5
	}
	return 20
}

func response(req *http.Request, status int, body string) *http.Response {
	h := http.Header{}
	if body != "" {
		h.Set("Content-Type", "application/json")
	}
	return &http.Response{
		StatusCode:    status,
		Status:        fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

func derefs(in []*string) []string {
	out := make([]string, 0, len(in))
	for _, p := range in {
		if p != nil {
			out = append(out, *p)
		}
	}
	return out
}

func ptrs(in []string) []*string {
	out := make([]*string, 0, len(in))
	for _, v := range in {
		out = append(out, to.Ptr(v))
	}
	return out
}

func dict(m map[string]string) map[string]*string {
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = to.Ptr(v)
	}
	return out
}

func undict(m map[string]*string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if v != nil {
			out[k] = *v
		}
	}
	return out
}

// The caller holds s.mu.
func (s *FakeSite) site(sl *slot) armappservice.Site {
	name := s.App
	id := "/subscriptions/" + s.Subscription + "/resourceGroups/" + s.ResourceGroup + "/providers/Microsoft.Web/sites/" + s.App
	typ := "Microsoft.Web/sites"
	if sl.name != Production {
		name += "/" + sl.name
		id += "/slots/" + sl.name
		typ = "Microsoft.Web/sites/slots"
	}
	p := &armappservice.SiteProperties{
		DefaultHostName:     to.Ptr(sl.host),
		ServerFarmID:        to.Ptr("/subscriptions/" + s.Subscription + "/resourceGroups/" + s.ResourceGroup + "/providers/Microsoft.Web/serverfarms/plan-" + s.App),
		SKU:                 to.Ptr(s.SKU),
		State:               to.Ptr("Running"),
		LastModifiedTimeUTC: to.Ptr(sl.modified),
		SlotSwapStatus:      sl.swapStatus,
	}
	if sl.target != "" {
		p.TargetSwapSlot = to.Ptr(sl.target)
	}
	return armappservice.Site{ID: to.Ptr(id), Name: to.Ptr(name), Type: to.Ptr(typ), Location: to.Ptr(s.Location), Kind: to.Ptr("app,linux,container"), Properties: p}
}

func (s *FakeSite) siteConfig(sl *slot) armappservice.SiteConfigResource {
	c := &armappservice.SiteConfig{LinuxFxVersion: to.Ptr(sl.linuxFx)}
	if sl.name == Production {
		rules := make([]*armappservice.RampUpRule, len(s.rules))
		for i, r := range s.rules {
			c := *r
			rules[i] = &c
		}
		c.Experiments = &armappservice.Experiments{RampUpRules: rules}
	}
	return armappservice.SiteConfigResource{Name: to.Ptr("web"), Properties: c}
}

func notFound[T any](resp *azfake.Responder[T], e *azfake.ErrorResponder) (azfake.Responder[T], azfake.ErrorResponder) {
	e.SetResponseError(http.StatusNotFound, "ResourceNotFound")
	return *resp, *e
}

func (s *FakeSite) webServer() *webfake.WebAppsServer {
	type (
		getResp   = armappservice.WebAppsClientGetResponse
		slotResp  = armappservice.WebAppsClientGetSlotResponse
		cfgResp   = armappservice.WebAppsClientGetConfigurationResponse
		cfgSlot   = armappservice.WebAppsClientGetConfigurationSlotResponse
		updCfg    = armappservice.WebAppsClientUpdateConfigurationResponse
		updCfgSl  = armappservice.WebAppsClientUpdateConfigurationSlotResponse
		setResp   = armappservice.WebAppsClientListApplicationSettingsResponse
		setSlot   = armappservice.WebAppsClientListApplicationSettingsSlotResponse
		updSet    = armappservice.WebAppsClientUpdateApplicationSettingsResponse
		updSetSl  = armappservice.WebAppsClientUpdateApplicationSettingsSlotResponse
		namesResp = armappservice.WebAppsClientListSlotConfigurationNamesResponse
		updNames  = armappservice.WebAppsClientUpdateSlotConfigurationNamesResponse
	)
	return &webfake.WebAppsServer{
		Get: func(_ context.Context, rg, name string, _ *armappservice.WebAppsClientGetOptions) (r azfake.Responder[getResp], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.mine(rg, name) {
				return notFound(&r, &e)
			}
			r.SetResponse(http.StatusOK, getResp{Site: s.site(s.slots[Production])}, nil)
			return
		},
		GetSlot: func(_ context.Context, rg, name, slotName string, _ *armappservice.WebAppsClientGetSlotOptions) (r azfake.Responder[slotResp], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			sl := s.slot(rg, name, slotName)
			if sl == nil {
				return notFound(&r, &e)
			}
			r.SetResponse(http.StatusOK, slotResp{Site: s.site(sl)}, nil)
			return
		},
		NewListSlotsPager: func(rg, name string, _ *armappservice.WebAppsClientListSlotsOptions) (r azfake.PagerResponder[armappservice.WebAppsClientListSlotsResponse]) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.mine(rg, name) {
				r.AddResponseError(http.StatusNotFound, "ResourceNotFound")
				return
			}
			var names []string
			for n := range s.slots {
				if n != Production {
					names = append(names, n)
				}
			}
			slices.Sort(names)
			// Two slots a page, so that callers must follow nextLink.
			for i := 0; i < len(names) || i == 0; i += 2 {
				var page []*armappservice.Site
				for _, n := range names[i:min(i+2, len(names))] {
					st := s.site(s.slots[n])
					page = append(page, &st)
				}
				r.AddPage(http.StatusOK, armappservice.WebAppsClientListSlotsResponse{WebAppCollection: armappservice.WebAppCollection{Value: page}}, nil)
				if len(names) == 0 {
					break
				}
			}
			return
		},
		GetConfiguration: func(_ context.Context, rg, name string, _ *armappservice.WebAppsClientGetConfigurationOptions) (r azfake.Responder[cfgResp], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.mine(rg, name) {
				return notFound(&r, &e)
			}
			r.SetResponse(http.StatusOK, cfgResp{SiteConfigResource: s.siteConfig(s.slots[Production])}, nil)
			return
		},
		GetConfigurationSlot: func(_ context.Context, rg, name, slotName string, _ *armappservice.WebAppsClientGetConfigurationSlotOptions) (r azfake.Responder[cfgSlot], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			sl := s.slot(rg, name, slotName)
			if sl == nil {
				return notFound(&r, &e)
			}
			r.SetResponse(http.StatusOK, cfgSlot{SiteConfigResource: s.siteConfig(sl)}, nil)
			return
		},
		UpdateConfiguration: func(_ context.Context, rg, name string, c armappservice.SiteConfigResource, _ *armappservice.WebAppsClientUpdateConfigurationOptions) (r azfake.Responder[updCfg], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.mine(rg, name) {
				return notFound(&r, &e)
			}
			sl := s.slots[Production]
			s.patchConfig(sl, c.Properties)
			r.SetResponse(http.StatusOK, updCfg{SiteConfigResource: s.siteConfig(sl)}, nil)
			return
		},
		UpdateConfigurationSlot: func(_ context.Context, rg, name, slotName string, c armappservice.SiteConfigResource, _ *armappservice.WebAppsClientUpdateConfigurationSlotOptions) (r azfake.Responder[updCfgSl], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			sl := s.slot(rg, name, slotName)
			if sl == nil {
				return notFound(&r, &e)
			}
			s.patchConfig(sl, c.Properties)
			r.SetResponse(http.StatusOK, updCfgSl{SiteConfigResource: s.siteConfig(sl)}, nil)
			return
		},
		ListApplicationSettings: func(_ context.Context, rg, name string, _ *armappservice.WebAppsClientListApplicationSettingsOptions) (r azfake.Responder[setResp], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.mine(rg, name) {
				return notFound(&r, &e)
			}
			r.SetResponse(http.StatusOK, setResp{StringDictionary: armappservice.StringDictionary{Properties: dict(s.slots[Production].settings)}}, nil)
			return
		},
		ListApplicationSettingsSlot: func(_ context.Context, rg, name, slotName string, _ *armappservice.WebAppsClientListApplicationSettingsSlotOptions) (r azfake.Responder[setSlot], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			sl := s.slot(rg, name, slotName)
			if sl == nil {
				return notFound(&r, &e)
			}
			r.SetResponse(http.StatusOK, setSlot{StringDictionary: armappservice.StringDictionary{Properties: dict(sl.settings)}}, nil)
			return
		},
		UpdateApplicationSettings: func(_ context.Context, rg, name string, d armappservice.StringDictionary, _ *armappservice.WebAppsClientUpdateApplicationSettingsOptions) (r azfake.Responder[updSet], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.mine(rg, name) {
				return notFound(&r, &e)
			}
			sl := s.slots[Production]
			s.restart(sl)
			sl.settings, sl.modified = undict(d.Properties), s.now().UTC()
			r.SetResponse(http.StatusOK, updSet{StringDictionary: armappservice.StringDictionary{Properties: dict(sl.settings)}}, nil)
			return
		},
		UpdateApplicationSettingsSlot: func(_ context.Context, rg, name, slotName string, d armappservice.StringDictionary, _ *armappservice.WebAppsClientUpdateApplicationSettingsSlotOptions) (r azfake.Responder[updSetSl], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			sl := s.slot(rg, name, slotName)
			if sl == nil {
				return notFound(&r, &e)
			}
			s.restart(sl)
			sl.settings, sl.modified = undict(d.Properties), s.now().UTC()
			r.SetResponse(http.StatusOK, updSetSl{StringDictionary: armappservice.StringDictionary{Properties: dict(sl.settings)}}, nil)
			return
		},
		ListSlotConfigurationNames: func(_ context.Context, rg, name string, _ *armappservice.WebAppsClientListSlotConfigurationNamesOptions) (r azfake.Responder[namesResp], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.mine(rg, name) {
				return notFound(&r, &e)
			}
			n := s.stickyNames
			r.SetResponse(http.StatusOK, namesResp{SlotConfigNamesResource: armappservice.SlotConfigNamesResource{Name: to.Ptr("slotConfigNames"), Properties: &n}}, nil)
			return
		},
		UpdateSlotConfigurationNames: func(_ context.Context, rg, name string, res armappservice.SlotConfigNamesResource, _ *armappservice.WebAppsClientUpdateSlotConfigurationNamesOptions) (r azfake.Responder[updNames], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.mine(rg, name) {
				return notFound(&r, &e)
			}
			// A PUT replaces every list: what is missing is dropped.
			var n armappservice.SlotConfigNames
			if res.Properties != nil {
				n = *res.Properties
			}
			s.stickyNames = armappservice.SlotConfigNames{
				AppSettingNames:         ptrs(derefs(n.AppSettingNames)),
				ConnectionStringNames:   ptrs(derefs(n.ConnectionStringNames)),
				AzureStorageConfigNames: ptrs(derefs(n.AzureStorageConfigNames)),
			}
			out := s.stickyNames
			r.SetResponse(http.StatusOK, updNames{SlotConfigNamesResource: armappservice.SlotConfigNamesResource{Properties: &out}}, nil)
			return
		},
		BeginCreateOrUpdateSlot: func(_ context.Context, rg, name, slotName string, env armappservice.Site, _ *armappservice.WebAppsClientBeginCreateOrUpdateSlotOptions) (r azfake.PollerResponder[armappservice.WebAppsClientCreateOrUpdateSlotResponse], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.mine(rg, name) {
				e.SetResponseError(http.StatusNotFound, "ResourceNotFound")
				return
			}
			if env.Location == nil || !strings.EqualFold(*env.Location, s.Location) {
				e.SetResponseError(http.StatusBadRequest, "LocationMismatch")
				return
			}
			sl := s.slots[slotName]
			if sl == nil {
				sl = s.newSlot(slotName)
			}
			r.AddNonTerminalResponse(http.StatusAccepted, nil)
			r.SetTerminalResponse(http.StatusOK, armappservice.WebAppsClientCreateOrUpdateSlotResponse{Site: s.site(sl)}, nil)
			return
		},
		DeleteSlot: func(_ context.Context, rg, name, slotName string, _ *armappservice.WebAppsClientDeleteSlotOptions) (r azfake.Responder[armappservice.WebAppsClientDeleteSlotResponse], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.slot(rg, name, slotName) == nil || slotName == Production {
				return notFound(&r, &e)
			}
			delete(s.slots, slotName)
			r.SetResponse(http.StatusOK, armappservice.WebAppsClientDeleteSlotResponse{}, nil)
			return
		},
		BeginSwapSlot: func(_ context.Context, rg, name, slotName string, ent armappservice.CsmSlotEntity, _ *armappservice.WebAppsClientBeginSwapSlotOptions) (r azfake.PollerResponder[armappservice.WebAppsClientSwapSlotResponse], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.holding {
				return s.hold(rg, name, slotName, deref(ent.TargetSlot), &r, &e)
			}
			status, code := s.swap(rg, name, slotName, deref(ent.TargetSlot))
			if code != "" {
				if status == http.StatusNotFound {
					e.SetResponseError(status, code)
					return
				}
				r.AddNonTerminalResponse(http.StatusAccepted, nil)
				r.SetTerminalError(status, code)
				return
			}
			r.AddNonTerminalResponse(http.StatusAccepted, nil)
			r.SetTerminalResponse(http.StatusOK, armappservice.WebAppsClientSwapSlotResponse{}, nil)
			return
		},
		BeginSwapSlotWithProduction: func(_ context.Context, rg, name string, ent armappservice.CsmSlotEntity, _ *armappservice.WebAppsClientBeginSwapSlotWithProductionOptions) (r azfake.PollerResponder[armappservice.WebAppsClientSwapSlotWithProductionResponse], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			status, code := s.swap(rg, name, deref(ent.TargetSlot), Production)
			if code != "" {
				r.AddNonTerminalResponse(http.StatusAccepted, nil)
				r.SetTerminalError(status, code)
				return
			}
			r.AddNonTerminalResponse(http.StatusAccepted, nil)
			r.SetTerminalResponse(http.StatusOK, armappservice.WebAppsClientSwapSlotWithProductionResponse{}, nil)
			return
		},
		ApplySlotConfigurationSlot: func(_ context.Context, rg, name, slotName string, ent armappservice.CsmSlotEntity, _ *armappservice.WebAppsClientApplySlotConfigurationSlotOptions) (r azfake.Responder[armappservice.WebAppsClientApplySlotConfigurationSlotResponse], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			src, dst := s.slot(rg, name, slotName), s.slot(rg, name, deref(ent.TargetSlot))
			if src == nil || dst == nil {
				return notFound(&r, &e)
			}
			s.applySticky(src, dst)
			src.target, dst.target = dst.name, src.name
			r.SetResponse(http.StatusOK, armappservice.WebAppsClientApplySlotConfigurationSlotResponse{}, nil)
			return
		},
		ResetSlotConfigurationSlot: func(_ context.Context, rg, name, slotName string, _ *armappservice.WebAppsClientResetSlotConfigurationSlotOptions) (r azfake.Responder[armappservice.WebAppsClientResetSlotConfigurationSlotResponse], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			sl := s.slot(rg, name, slotName)
			if sl == nil {
				return notFound(&r, &e)
			}
			s.reset(sl)
			r.SetResponse(http.StatusOK, armappservice.WebAppsClientResetSlotConfigurationSlotResponse{}, nil)
			return
		},
		ResetProductionSlotConfig: func(_ context.Context, rg, name string, _ *armappservice.WebAppsClientResetProductionSlotConfigOptions) (r azfake.Responder[armappservice.WebAppsClientResetProductionSlotConfigResponse], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.mine(rg, name) {
				return notFound(&r, &e)
			}
			s.reset(s.slots[Production])
			r.SetResponse(http.StatusOK, armappservice.WebAppsClientResetProductionSlotConfigResponse{}, nil)
			return
		},
	}
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// hold starts a swap that ReleaseSwaps finishes. The caller holds s.mu.
func (s *FakeSite) hold(rg, name, source, target string, r *azfake.PollerResponder[armappservice.WebAppsClientSwapSlotResponse], e *azfake.ErrorResponder) (azfake.PollerResponder[armappservice.WebAppsClientSwapSlotResponse], azfake.ErrorResponder) {
	if target == "" {
		target = Production
	}
	src, dst := s.slot(rg, name, source), s.slot(rg, name, target)
	if src == nil || dst == nil || src == dst {
		e.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return *r, *e
	}
	src.target, dst.target = dst.name, src.name
	s.held = append(s.held, heldSwap{rg: rg, name: name, source: source, target: target})
	// The operation never reports done: only the slots tell.
	for range 1000 {
		r.AddNonTerminalResponse(http.StatusAccepted, nil)
	}
	r.SetTerminalError(http.StatusInternalServerError, "InternalServerError")
	return *r, *e
}

// The caller holds s.mu.
func (s *FakeSite) mine(rg, name string) bool {
	return strings.EqualFold(rg, s.ResourceGroup) && name == s.App
}

// The caller holds s.mu.
func (s *FakeSite) slot(rg, name, slotName string) *slot {
	if !s.mine(rg, name) {
		return nil
	}
	return s.slots[slotName]
}

// The caller holds s.mu.
func (s *FakeSite) patchConfig(sl *slot, c *armappservice.SiteConfig) {
	if c == nil {
		return
	}
	if c.LinuxFxVersion != nil {
		s.restart(sl)
		sl.linuxFx = *c.LinuxFxVersion
		sl.modified = s.now().UTC()
	}
	if c.Experiments != nil && c.Experiments.RampUpRules != nil && sl.name == Production {
		s.rules = nil
		for _, r := range c.Experiments.RampUpRules {
			if r != nil {
				c := *r
				s.rules = append(s.rules, &c)
			}
		}
	}
}

// applySticky is phase 1: the source gets the target's sticky settings,
// its own are saved for reset. The caller holds s.mu.
func (s *FakeSite) applySticky(src, dst *slot) {
	src.savedSticky = map[string]string{}
	for _, n := range derefs(s.stickyNames.AppSettingNames) {
		if v, ok := src.settings[n]; ok {
			src.savedSticky[n] = v
		}
		if v, ok := dst.settings[n]; ok {
			src.settings[n] = v
		} else {
			delete(src.settings, n)
		}
	}
}

// reset undoes a preview: the slot gets its own sticky values back. The
// caller holds s.mu.
func (s *FakeSite) reset(sl *slot) {
	if sl.savedSticky != nil {
		for _, n := range derefs(s.stickyNames.AppSettingNames) {
			if v, ok := sl.savedSticky[n]; ok {
				sl.settings[n] = v
			} else {
				delete(sl.settings, n)
			}
		}
		sl.savedSticky = nil
	}
	if other := s.slots[sl.target]; other != nil && other.target == sl.name && other.savedSticky == nil {
		other.target = ""
	}
	sl.target = ""
}

// swap runs a whole swap of source into target, as Azure does: warm the
// source up on its own warm-up path (a failure leaves both slots as they
// were), then exchange content and swapped settings; sticky settings stay.
// It returns an HTTP status and error code on failure. The caller holds s.mu.
func (s *FakeSite) swap(rg, name, source, target string) (int, string) {
	if target == "" {
		target = Production
	}
	src, dst := s.slot(rg, name, source), s.slot(rg, name, target)
	if src == nil || dst == nil || src == dst {
		return http.StatusNotFound, "ResourceNotFound"
	}
	if src.savedSticky == nil {
		// Phase 1 (unless a preview did it): the source runs with the
		// target's sticky settings while it warms up.
		s.applySticky(src, dst)
	}
	if !s.warm(src) {
		s.reset(src) // the source is reverted; the target was never touched
		return http.StatusExpectationFailed, "ExpectationFailed"
	}
	sticky := map[string]bool{}
	for _, n := range derefs(s.stickyNames.AppSettingNames) {
		sticky[n] = true
	}
	// The target keeps its sticky values and gets the source's content;
	// the source gets the old content and its own sticky values back.
	newDst, newSrc := map[string]string{}, maps.Clone(src.savedSticky)
	for k, v := range src.settings {
		if !sticky[k] {
			newDst[k] = v
		}
	}
	for k, v := range dst.settings {
		if sticky[k] {
			newDst[k] = v
		} else {
			newSrc[k] = v
		}
	}
	src.settings, dst.settings = newSrc, newDst
	src.linuxFx, dst.linuxFx = dst.linuxFx, src.linuxFx
	now := s.now().UTC()
	src.modified, dst.modified = now, now
	src.target, dst.target, src.savedSticky, dst.savedSticky = "", "", nil, nil
	src.old, dst.old, src.pending, dst.pending = nil, nil, 0, 0 // both warmed up
	st := &armappservice.SlotSwapStatus{SourceSlotName: to.Ptr(source), DestinationSlotName: to.Ptr(target), TimestampUTC: to.Ptr(now)}
	for _, sl := range s.slots {
		if sl == src || sl == dst || sl.name == Production {
			c := *st
			sl.swapStatus = &c
		}
	}
	s.swaps++
	return 0, ""
}

// warm pings the source's warm-up path (WEBSITE_SWAP_WARMUP_PING_PATH,
// default /) through the image's handler; allowed statuses come from
// WEBSITE_SWAP_WARMUP_PING_STATUSES (default: any answer). The caller
// holds s.mu.
func (s *FakeSite) warm(sl *slot) bool {
	image := imageOf(sl.linuxFx)
	if image == "" {
		return false
	}
	h := s.handlers[image]
	if h == nil {
		return true
	}
	path := or(sl.settings["WEBSITE_SWAP_WARMUP_PING_PATH"], "/")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	allowed := sl.settings["WEBSITE_SWAP_WARMUP_PING_STATUSES"]
	if allowed == "" {
		return rec.Code < 500
	}
	for _, f := range strings.Split(allowed, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n == rec.Code {
			return true
		}
	}
	return false
}

func (s *FakeSite) monitorServer() *monfake.MetricsServer {
	return &monfake.MetricsServer{
		List: func(_ context.Context, resourceURI string, o *armmonitor.MetricsClientListOptions) (r azfake.Responder[armmonitor.MetricsClientListResponse], e azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			prefix := "subscriptions/" + s.Subscription + "/resourceGroups/" + s.ResourceGroup + "/providers/Microsoft.Web/sites/" + s.App
			rest, ok := strings.CutPrefix(strings.TrimPrefix(resourceURI, "/"), prefix)
			if !ok {
				e.SetResponseError(http.StatusNotFound, "ResourceNotFound")
				return
			}
			name := Production
			if n, ok := strings.CutPrefix(rest, "/slots/"); ok {
				name = n
			} else if rest != "" {
				e.SetResponseError(http.StatusNotFound, "ResourceNotFound")
				return
			}
			sl := s.slots[name]
			if sl == nil {
				e.SetResponseError(http.StatusNotFound, "ResourceNotFound")
				return
			}
			from, until, err := timespan(deref(o.Timespan))
			if err != nil {
				e.SetResponseError(http.StatusBadRequest, "BadRequest")
				return
			}
			points := map[time.Time]MetricPoint{}
			for _, p := range s.metrics[name] {
				points[p.Time.UTC().Truncate(time.Minute)] = p
			}
			series := map[string][]*armmonitor.MetricValue{}
			for t := from.Truncate(time.Minute); t.Before(until); t = t.Add(time.Minute) {
				p, ok := points[t]
				if !ok && s.metricsFunc != nil {
					p, ok = s.metricsFunc(name, imageOf(sl.linuxFx), t)
				}
				if !ok {
					continue // no data yet for this minute
				}
				if lag := s.metricsLag; lag > 0 {
					age := s.now().Sub(t.Add(time.Minute))
					if age < 0 {
						continue // not over yet
					}
					if age < lag {
						p.Requests = math.Floor(p.Requests * float64(age) / float64(lag))
						p.Http5xx, p.Http4xx = 0, 0
					}
				}
				ts := to.Ptr(t)
				series["Requests"] = append(series["Requests"], &armmonitor.MetricValue{TimeStamp: ts, Total: to.Ptr(p.Requests)})
				series["Http5xx"] = append(series["Http5xx"], &armmonitor.MetricValue{TimeStamp: ts, Total: to.Ptr(p.Http5xx)})
				series["Http4xx"] = append(series["Http4xx"], &armmonitor.MetricValue{TimeStamp: ts, Total: to.Ptr(p.Http4xx)})
				series["HttpResponseTime"] = append(series["HttpResponseTime"], &armmonitor.MetricValue{TimeStamp: ts, Average: to.Ptr(p.ResponseTime)})
			}
			var resp armmonitor.Response
			resp.Timespan, resp.Interval = o.Timespan, o.Interval
			for _, m := range strings.Split(deref(o.Metricnames), ",") {
				resp.Value = append(resp.Value, &armmonitor.Metric{
					Name:       &armmonitor.LocalizableString{Value: to.Ptr(m)},
					Timeseries: []*armmonitor.TimeSeriesElement{{Data: series[m]}},
				})
			}
			r.SetResponse(http.StatusOK, armmonitor.MetricsClientListResponse{Response: resp}, nil)
			return
		},
	}
}

func timespan(v string) (time.Time, time.Time, error) {
	a, b, ok := strings.Cut(v, "/")
	if !ok {
		return time.Time{}, time.Time{}, fmt.Errorf("timespan %q", v)
	}
	from, err := time.Parse(time.RFC3339, a)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	until, err := time.Parse(time.RFC3339, b)
	return from.UTC(), until.UTC(), err
}
