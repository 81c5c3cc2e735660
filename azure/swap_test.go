package azure_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/azure/azuretest"
)

const lost500 = `{"Code":"InternalServerError","Message":"An error has occurred."}`

// TestSwapAnswerLost: Azure swaps, then its answer is a 500. The driver
// must not send the swap again (a second swap would swap back) and must
// report the swap that happened.
func TestSwapAnswerLost(t *testing.T) {
	for _, action := range []string{"slotsswap", "poll"} {
		t.Run(action, func(t *testing.T) {
			site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
			d, _ := newDriver(t, site)
			deploy(t, d, site, modelslot.Production, "llm:v1", "v1")
			deploy(t, d, site, "staging", "llm:v2", "v2")
			if action == "slotsswap" {
				site.Fail(azuretest.Fault{Method: http.MethodPost, PathSuffix: "/slots/staging/slotsswap", Status: 500, Body: lost500, Times: 1, Applied: true})
			} else {
				// The POST is answered; every poll of the operation fails.
				site.Fail(azuretest.Fault{Method: http.MethodGet, PathSuffix: "/slots/staging/slotsswap", Status: 503, Body: lost500})
			}
			site.ResetRequests()

			rec, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"})
			if err != nil {
				t.Fatalf("swap: %v", err)
			}
			if n := site.CountRequests(http.MethodPost, "/slotsswap"); n != 1 {
				t.Errorf("slotsswap sent %d times, want 1", n)
			}
			if site.Swaps() != 1 || site.Image(azuretest.Production) != "llm:v2" {
				t.Errorf("swaps = %d, production runs %s; want 1 swap and llm:v2", site.Swaps(), site.Image(azuretest.Production))
			}
			if rec.Status != modelslot.SwapCompleted {
				t.Errorf("record status = %s, want completed", rec.Status)
			}
		})
	}
}

// TestSwapInFlightAfterLostAnswer: the answer is lost while Azure is still
// swapping; the driver waits for the swap in flight instead of asking again.
func TestSwapInFlightAfterLostAnswer(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	d, logs := newDriver(t, site)
	deploy(t, d, site, modelslot.Production, "llm:v1", "v1")
	deploy(t, d, site, "staging", "llm:v2", "v2")
	site.HoldSwaps()
	site.Fail(azuretest.Fault{Method: http.MethodPost, PathSuffix: "/slotsswap", Status: 500, Body: lost500, Times: 1, Applied: true})

	type result struct {
		rec *modelslot.SwapRecord
		err error
	}
	done := make(chan result, 1)
	go func() {
		rec, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"})
		done <- result{rec, err}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "in flight on Azure") {
		if time.Now().After(deadline) {
			t.Fatalf("the driver never saw the swap in flight; logs:\n%s", logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if site.InFlight() != 1 {
		t.Fatalf("swaps in flight = %d", site.InFlight())
	}
	site.ReleaseSwaps()
	res := <-done
	if res.err != nil {
		t.Fatalf("swap: %v", res.err)
	}
	if n := site.CountRequests(http.MethodPost, "/slotsswap"); n != 1 {
		t.Errorf("slotsswap sent %d times, want 1", n)
	}
	if site.Swaps() != 1 || site.Image(azuretest.Production) != "llm:v2" {
		t.Errorf("swaps = %d, production runs %s", site.Swaps(), site.Image(azuretest.Production))
	}
	if res.rec.Status != modelslot.SwapCompleted {
		t.Errorf("status = %s", res.rec.Status)
	}
}

// TestSwapNotApplied: a 500 before Azure did anything is reported as such,
// once, and a later swap works.
func TestSwapNotApplied(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	d, _ := newDriver(t, site)
	deploy(t, d, site, modelslot.Production, "llm:v1", "v1")
	deploy(t, d, site, "staging", "llm:v2", "v2")
	site.Fail(azuretest.Fault{Method: http.MethodPost, PathSuffix: "/slotsswap", Status: 500, Body: lost500, Times: 1})

	_, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"})
	wantCode(t, err, modelslot.EUNAVAILABLE, "500", "nothing was swapped", "safe to try again")
	if n := site.CountRequests(http.MethodPost, "/slotsswap"); n != 1 {
		t.Errorf("slotsswap sent %d times, want 1", n)
	}
	if site.Swaps() != 0 {
		t.Errorf("swaps = %d", site.Swaps())
	}
	if _, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	if site.Image(azuretest.Production) != "llm:v2" {
		t.Errorf("production runs %s", site.Image(azuretest.Production))
	}
}

// TestSwapThrottledIsRetried: a 429 comes before Azure does anything, so
// the swap is asked again.
func TestSwapThrottledIsRetried(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	d, _ := newDriver(t, site)
	deploy(t, d, site, modelslot.Production, "llm:v1", "v1")
	deploy(t, d, site, "staging", "llm:v2", "v2")
	site.Fail(azuretest.Fault{Method: http.MethodPost, PathSuffix: "/slotsswap", Status: 429, Times: 1,
		Body: `{"error":{"code":"TooManyRequests","message":"throttled"}}`})
	if _, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	if n := site.CountRequests(http.MethodPost, "/slotsswap"); n != 2 {
		t.Errorf("slotsswap sent %d times, want 2 (throttled, then done)", n)
	}
	if site.Swaps() != 1 {
		t.Errorf("swaps = %d", site.Swaps())
	}
}

// TestPreviewAnswerLost: applySlotConfig took effect but answered 500.
func TestPreviewAnswerLost(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	d, _ := newDriver(t, site)
	deploy(t, d, site, modelslot.Production, "llm:v1", "v1")
	deploy(t, d, site, "staging", "llm:v2", "v2")
	site.Fail(azuretest.Fault{Method: http.MethodPost, PathSuffix: "/applySlotConfig", Status: 502, Body: lost500, Times: 1, Applied: true})
	rec, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging", Action: modelslot.SwapActionPreview})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != modelslot.SwapPreviewed {
		t.Errorf("status = %s", rec.Status)
	}
	if n := site.CountRequests(http.MethodPost, "/applySlotConfig"); n != 1 {
		t.Errorf("applySlotConfig sent %d times, want 1", n)
	}
}

// TestRevisionsFollowContent: a revision names the content, not the slot:
// a swap moves revisions between slots without renaming them, also for
// content that modelslot did not deploy, and the same content deployed to
// two slots has one revision.
func TestRevisionsFollowContent(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Image: "llm:v1", Settings: map[string]string{"MODEL_VERSION": "v1"}, Slots: []string{"staging", "canary"}})
	d, _ := newDriver(t, site)
	deploy(t, d, site, "staging", "llm:v2", "v2")
	revs := func() (prod, staging string) {
		t.Helper()
		a, err := d.App(ctx(t), site.App)
		if err != nil {
			t.Fatal(err)
		}
		return a.Slot(modelslot.Production).Deployment.Revision, a.Slot("staging").Deployment.Revision
	}
	p1, s1 := revs()
	if _, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	p2, s2 := revs()
	if p2 != s1 || s2 != p1 {
		t.Errorf("after the swap production has %s and staging %s, want %s and %s (moved, not renamed)", p2, s2, s1, p1)
	}
	if _, err := d.Swap(ctx(t), site.App, modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	if p3, s3 := revs(); p3 != p1 || s3 != s1 {
		t.Errorf("after swapping back production has %s and staging %s, want %s and %s", p3, s3, p1, s1)
	}
	c := deploy(t, d, site, "canary", "llm:v2", "v2")
	if c.Deployment.Revision != s1 {
		t.Errorf("the same content in canary is revision %s, in staging %s", c.Deployment.Revision, s1)
	}
}
