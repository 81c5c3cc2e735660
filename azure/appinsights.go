package azure

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/query/azlogs"

	"github.com/modelslot/modelslot"
)

var _ modelslot.MetricSource = (*RequestSource)(nil)

// RequestSource reads a slot's requests one by one from Application
// Insights, through the Logs query API (azlogs) with the driver's
// credential, so that latency is judged per request on Azure as it is
// locally. Each slot reports its requests under its own cloud role name:
// the slot's name (a sticky app setting, see deploy/azure), so that the
// requests a slot served stay with the slot across swaps, as Azure
// Monitor's per-slot metrics do.
//
// The query (KQL, on the component's classic "requests" table):
//
//	requests
//	| where timestamp between (datetime(FROM - 1h) .. datetime(UNTIL))
//	| where cloud_RoleName == 'SLOT'
//	| extend finished = timestamp + duration * 1ms
//	| where finished >= datetime(FROM) and finished < datetime(UNTIL)
//	| project finished, duration, resultCode
//	| order by finished asc
//
// Application Insights ingests requests a few minutes late, so, as with
// MetricSource, only requests that finished MetricsDelay ago or earlier
// are returned (UNTIL = now - delay), and Series.Settled says so.
type RequestSource struct {
	cfg      Config
	logger   *slog.Logger
	creds    *credentials
	resource string // the Application Insights component's ARM id

	mu     sync.Mutex
	client *azlogs.Client
}

// RequestSource returns a request-level metric source on the Application
// Insights component with ARM id component (see Config.AppInsights),
// sharing the driver's credential.
func (d *Driver) RequestSource(component string) (*RequestSource, error) {
	if err := checkComponent(component); err != nil {
		return nil, err
	}
	if d.cfg.Cloud == CloudCustom {
		return nil, modelslot.Errorf(modelslot.EINVALID, "azure: --azure-app-insights is not available with --azure-cloud=custom: the Logs query endpoint of a custom cloud is unknown")
	}
	return &RequestSource{cfg: d.cfg, logger: d.logger.With("component", "azure-requests"), creds: d.creds, resource: component}, nil
}

func checkComponent(id string) error {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	if len(parts) != 8 || !strings.EqualFold(parts[0], "subscriptions") || !strings.EqualFold(parts[5], "Microsoft.Insights") || !strings.EqualFold(parts[6], "components") {
		return modelslot.Errorf(modelslot.EINVALID, "azure: --azure-app-insights %q is not the ARM id of an Application Insights component: /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Insights/components/<name> (`pulumi stack output appInsightsId`)", id)
	}
	return nil
}

func (r *RequestSource) logs() (*azlogs.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.client != nil {
		return r.client, nil
	}
	cred, err := r.creds.get()
	if err != nil {
		return nil, err
	}
	var o azlogs.ClientOptions
	if r.cfg.LogsClientOptions != nil {
		o.ClientOptions = *r.cfg.LogsClientOptions
	}
	if o.Cloud.ActiveDirectoryAuthorityHost == "" && len(o.Cloud.Services) == 0 {
		o.Cloud = r.cfg.cloudConfig()
	}
	c, err := azlogs.NewClient(cred, &o)
	if err != nil {
		return nil, modelslot.Wrapf(err, modelslot.EINVALID, "azure: cannot create the Logs query client: %v", err)
	}
	r.client = c
	return c, nil
}

// Unmeasurable says what requests in Application Insights cannot give
// (rollout.MetricCapabilities): App Service's request telemetry has no
// tokens and no time to the first token.
func (r *RequestSource) Unmeasurable() map[string]string {
	return map[string]string{
		"ttft":           "Application Insights request telemetry records the whole duration, not the time to the first token",
		"tokens_per_sec": "Application Insights request telemetry has no token counts",
		"output_tokens":  "Application Insights request telemetry has no token counts",
		"slo:ttft":       "Application Insights request telemetry records the whole duration, not the time to the first token",
	}
}

// Series returns the requests of a slot that finished in [q.From, q.To)
// and are settled, as Samples (Status from resultCode, Latency from
// duration).
func (r *RequestSource) Series(ctx context.Context, q modelslot.MetricQuery) (modelslot.Series, error) {
	if q.App != r.cfg.App {
		return modelslot.Series{}, modelslot.Errorf(modelslot.ENOTFOUND, "requests: app %q is not managed by this Azure source: it reads App Service app %q (--app)", q.App, r.cfg.App)
	}
	if !q.To.After(q.From) {
		return modelslot.Series{}, modelslot.Errorf(modelslot.EINVALID, "requests: the window %s..%s is empty", q.From.Format(time.RFC3339), q.To.Format(time.RFC3339))
	}
	delay := r.cfg.MetricsDelay
	if q.Settle > 0 {
		delay = q.Settle
	}
	from, until := q.From.UTC(), q.To.UTC()
	if settled := r.cfg.Now().UTC().Add(-delay); settled.Before(until) {
		until = settled
	}
	out := modelslot.Series{Slot: q.Slot, Samples: []modelslot.Sample{}, Settled: from}
	if !until.After(from) {
		return out, nil
	}
	client, err := r.logs()
	if err != nil {
		return modelslot.Series{}, err
	}
	slot := normSlot(q.Slot)
	if slot == "" {
		slot = modelslot.Production
	}
	resp, err := client.QueryResource(ctx, r.resource, azlogs.QueryBody{
		Query:    to.Ptr(RequestsQuery(slot, from, until)),
		Timespan: to.Ptr(azlogs.NewTimeInterval(from.Add(-time.Hour), until)),
	}, nil)
	if err != nil {
		return modelslot.Series{}, translate("requests of slot "+slot+" from Application Insights", err)
	}
	if resp.Error != nil {
		// A partial result (row or size limit): judging part of the
		// window as if it were all of it would hide errors.
		return modelslot.Series{}, modelslot.Errorf(modelslot.EUNAVAILABLE, "requests of slot %s from Application Insights: the query answered only in part: %s", slot, truncate(resp.Error.Error(), 300))
	}
	for _, tab := range resp.Tables {
		col := map[string]int{}
		for i, c := range tab.Columns {
			if c.Name != nil {
				col[*c.Name] = i
			}
		}
		fi, ok1 := col["finished"]
		di, ok2 := col["duration"]
		ri, ok3 := col["resultCode"]
		if !ok1 || !ok2 || !ok3 {
			return modelslot.Series{}, modelslot.Errorf(modelslot.EINTERNAL, "requests of slot %s: the query's result lacks finished, duration or resultCode", slot)
		}
		for _, row := range tab.Rows {
			if len(row) <= max(fi, di, ri) {
				continue
			}
			s, ok := sampleOf(row[fi], row[di], row[ri])
			if ok {
				out.Samples = append(out.Samples, s)
			}
		}
	}
	out.Settled = until
	out.Complete = until.Equal(q.To.UTC())
	return out, nil
}

// RequestsQuery is the KQL that Series sends (see RequestSource).
func RequestsQuery(slot string, from, until time.Time) string {
	ts := func(t time.Time) string { return "datetime(" + t.UTC().Format(time.RFC3339Nano) + ")" }
	return fmt.Sprintf(`requests
| where timestamp between (%s .. %s)
| where cloud_RoleName == '%s'
| extend finished = timestamp + duration * 1ms
| where finished >= %s and finished < %s
| project finished, duration, resultCode
| order by finished asc`, ts(from.Add(-time.Hour)), ts(until), strings.ReplaceAll(slot, "'", `\'`), ts(from), ts(until))
}

// sampleOf reads one row: finished (a datetime string), duration (ms) and
// resultCode (a string; not a number, e.g. a dropped connection: status 0,
// an error).
func sampleOf(finished, duration, code any) (modelslot.Sample, bool) {
	fs, ok := finished.(string)
	if !ok {
		return modelslot.Sample{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, fs)
	if err != nil {
		return modelslot.Sample{}, false
	}
	var ms float64
	switch v := duration.(type) {
	case float64:
		ms = v
	case string:
		ms, _ = strconv.ParseFloat(v, 64)
	}
	status := 0
	if c, ok := code.(string); ok {
		status, _ = strconv.Atoi(strings.TrimSpace(c))
	}
	return modelslot.Sample{Time: t, Status: status, Latency: time.Duration(ms * float64(time.Millisecond))}, true
}

// LogsClientOptions is the type of Config.LogsClientOptions.
type LogsClientOptions = policy.ClientOptions
