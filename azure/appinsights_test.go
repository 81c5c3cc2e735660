package azure_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/azure/azuretest"
)

// TestRequestSource: requests come one by one from Application Insights,
// per slot (cloud role name), only once settled, with their status and
// latency; the window is exact to the request.
func TestRequestSource(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	site.SetNow(func() time.Time { return now })
	site.SetMetricsLag(3 * time.Minute)
	base := time.Date(2026, 3, 1, 11, 50, 0, 0, time.UTC)
	for i := range 10 {
		m := base.Add(time.Duration(i) * time.Minute)
		site.AddRequests("staging",
			azuretest.AIRequest{Start: m.Add(10 * time.Second), Duration: 250 * time.Millisecond, Status: 200},
			azuretest.AIRequest{Start: m.Add(40 * time.Second), Duration: 1500 * time.Millisecond, Status: 503},
		)
		site.AddRequests("production", azuretest.AIRequest{Start: m.Add(20 * time.Second), Duration: time.Second, Status: 200})
	}
	site.AddRequests("staging", azuretest.AIRequest{Start: base.Add(5*time.Minute + 50*time.Second), Duration: time.Second}) // no answer

	d, _ := newDriver(t, site)
	rs, err := d.RequestSource(site.AppInsightsID())
	if err != nil {
		t.Fatal(err)
	}
	from := base.Add(5*time.Minute + 20*time.Second) // 11:55:20
	s, err := rs.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: "staging", From: from, To: now})
	if err != nil {
		t.Fatal(err)
	}
	// Settled until 11:57:30: the requests that finished in [11:55:20, 11:57:30).
	if s.Complete || !s.Settled.Equal(now.Add(-3*time.Minute)) {
		t.Errorf("Complete %v, Settled %v; want false and 11:57:30", s.Complete, s.Settled)
	}
	var got []string
	for _, x := range s.Samples {
		got = append(got, x.Time.Format("15:04:05.000")+"/"+x.Latency.String()+"/"+http.StatusText(x.Status))
	}
	want := "11:55:41.500/1.5s/Service Unavailable,11:55:51.000/1s/,11:56:10.250/250ms/OK,11:56:41.500/1.5s/Service Unavailable,11:57:10.250/250ms/OK"
	if strings.Join(got, ",") != want {
		t.Errorf("samples = %s\nwant      %s", strings.Join(got, ","), want)
	}
	req, ok := site.LastRequest(http.MethodPost, "/query")
	if !ok || !strings.Contains(req.Path, site.AppInsightsID()) {
		t.Fatalf("no query on the component: %+v", req)
	}
	if q, _ := req.Body.(map[string]any)["query"].(string); !strings.Contains(q, "cloud_RoleName == 'staging'") || !strings.Contains(q, "requests") {
		t.Errorf("query = %q", q)
	}

	// Production is its own role; the plan's delay replaces the driver's
	// (the fake has not ingested the last two minutes yet).
	s, err = rs.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: modelslot.Production, From: base, To: now, Settle: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Samples) != 8 || !s.Settled.Equal(now.Add(-time.Minute)) {
		t.Errorf("production: %d samples settled until %v, want 8 and 11:59:30", len(s.Samples), s.Settled)
	}

	_, err = d.RequestSource("/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/llm")
	wantCode(t, err, modelslot.EINVALID, "Application Insights component")
	site.Fail(azuretest.Fault{PathSuffix: "/query", Status: 403, Body: `{"error":{"code":"InsufficientAccessError","message":"The provided credentials have insufficient access."}}`})
	_, err = rs.Series(ctx(t), modelslot.MetricQuery{App: site.App, Slot: "staging", From: from, To: now})
	wantCode(t, err, modelslot.EFORBIDDEN, "Microsoft.Insights/components/query/read", "Monitoring Reader")
}
