package daemon_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/sim"
)

// chiSquare1 is the 0.999 quantile of chi-square with one degree of
// freedom: a correct splitter fails this bound once in a thousand runs.
const chiSquare1 = 10.83

func TestWeightedSplitWithinChiSquareBound(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")
	for _, share := range []float64{10, 50} {
		t.Run(fmt.Sprintf("staging=%g", share), func(t *testing.T) {
			e.traffic(rule("staging", share))
			const n = 3000
			staging := 0
			for i := 0; i < n; i++ {
				if slot, _, _ := e.chat(nil); slot == "staging" {
					staging++
				}
			}
			p := share / 100
			exp1, exp0 := n*p, n*(1-p)
			chi := sq(float64(staging)-exp1)/exp1 + sq(float64(n-staging)-exp0)/exp0
			if chi > chiSquare1 {
				t.Errorf("staging got %d of %d at %g%%: chi-square %.2f > %.2f", staging, n, share, chi, chiSquare1)
			}
		})
	}
}

func sq(x float64) float64 { return x * x }

func TestStickyKeyOnlyMovesUsersOneWay(t *testing.T) {
	dir := t.TempDir()
	e := startDaemon(t, dir)
	if err := e.d.Engine.ConfigureApp(context.Background(), "default", "header:X-Session-Id", 0); err != nil {
		t.Fatal(err)
	}
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")
	const users = 400
	slotOf := func() map[int]string {
		m := map[int]string{}
		for u := 0; u < users; u++ {
			slot, _, _ := e.chat(func(r *http.Request) { r.Header.Set("X-Session-Id", fmt.Sprintf("user-%d", u)) })
			m[u] = slot
		}
		return m
	}
	var prev map[int]string
	for _, share := range []float64{10, 25, 50} {
		e.traffic(rule("staging", share))
		cur := slotOf()
		// The same user always lands on the same slot at a given share.
		again := slotOf()
		for u := range cur {
			if cur[u] != again[u] {
				t.Fatalf("user %d flipped between %s and %s at %g%%", u, cur[u], again[u], share)
			}
		}
		for u := range prev {
			if prev[u] == "staging" && cur[u] != "staging" {
				t.Fatalf("raising staging to %g%% moved user %d back to %s", share, u, cur[u])
			}
		}
		prev = cur
	}
	e.traffic(rule("staging", 0))
	for u, slot := range slotOf() {
		if slot != "production" {
			t.Fatalf("with staging at 0%%, user %d still reached %s", u, slot)
		}
	}
}

func TestRoutingOverrideAndCookie(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")

	// The query parameter routes even at 0% and sets the cookie.
	req, _ := http.NewRequest(http.MethodPost, e.d.GatewayURL()+"/v1/chat/completions?x-ms-routing-name=staging", strings.NewReader(chatBody))
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Modelslot-Slot"); got != "staging" {
		t.Fatalf("query override: got slot %q, want staging", got)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "x-ms-routing-name" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatal("query override set no routing cookie")
	}
	for i := 0; i < 20; i++ {
		if slot, _, _ := e.chat(func(r *http.Request) { r.AddCookie(cookie) }); slot != "staging" {
			t.Fatalf("cookie: got slot %q, want staging", slot)
		}
	}
	// self means production
	req, _ = http.NewRequest(http.MethodPost, e.d.GatewayURL()+"/v1/chat/completions?x-ms-routing-name=self", strings.NewReader(chatBody))
	resp, _ = e.http.Do(req)
	resp.Body.Close()
	if got := resp.Header.Get("X-Modelslot-Slot"); got != "production" {
		t.Fatalf("self: got %q, want production", got)
	}
	// An unknown slot is a clear 400, not a silent fallback.
	req, _ = http.NewRequest(http.MethodPost, e.d.GatewayURL()+"/v1/chat/completions?x-ms-routing-name=nope", strings.NewReader(chatBody))
	resp, _ = e.http.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown slot: status %d, want 400", resp.StatusCode)
	}

	// Resetting pins invalidates the cookie: the user follows the split.
	if _, err := e.c.SetTraffic(context.Background(), "default", nil, modelslot.TrafficOptions{ResetPins: true}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if slot, _, _ := e.chat(func(r *http.Request) { r.AddCookie(cookie) }); slot != "production" {
			t.Fatalf("after reset-pins, an old cookie still reached %q", slot)
		}
	}
}

func TestSwapBackInvalidatesOldCookies(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")
	ctx := context.Background()
	if _, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	// A user pins themselves to production, which now serves v2.
	req, _ := http.NewRequest(http.MethodPost, e.d.GatewayURL()+"/v1/chat/completions?x-ms-routing-name=self", strings.NewReader(chatBody))
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("X-Modelslot-Version"); !strings.HasPrefix(v, "v2+") {
		t.Fatalf("after swap production serves %q, want v2", v)
	}
	cookies := resp.Cookies()
	// Roll back: v2 goes back to staging.
	if _, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	pinnedStaging := &http.Cookie{Name: "x-ms-routing-name", Value: "staging.1"} // a cookie from the generation before the swap back
	for i := 0; i < 50; i++ {
		_, v, _ := e.chat(func(r *http.Request) {
			for _, c := range cookies {
				r.AddCookie(c)
			}
		})
		if strings.HasPrefix(v, "v2+") {
			t.Fatalf("request %d reached the swapped-out v2 through an old cookie", i)
		}
		_, v, _ = e.chat(func(r *http.Request) { r.AddCookie(pinnedStaging) })
		if strings.HasPrefix(v, "v2+") {
			t.Fatalf("request %d reached v2 through a stale staging cookie", i)
		}
	}
}
