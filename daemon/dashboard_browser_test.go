package daemon_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/rollout"
	"github.com/modelslot/modelslot/sim"
)

const chromiumPath = "/usr/bin/chromium"

// TestDashboardBrowser drives the dashboard in headless Chromium: log in,
// read the split and the charts, change the traffic through a confirmation
// dialog, and survive a daemon restart. Screenshots at phone and desktop
// widths go to the test's artifact directory (go test -artifacts).
func TestDashboardBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("skipping the browser test: %s is missing (apt-get install chromium)", chromiumPath)
	}
	if testing.Short() {
		t.Skip("skipping the browser test in -short mode")
	}
	dir := t.TempDir()
	e := startDaemon(t, dir)
	_, prodURL := startSim(t, sim.Config{TTFT: 15 * time.Millisecond, ITL: time.Millisecond, Seed: 1})
	_, stagURL := startSim(t, sim.Config{TTFT: 30 * time.Millisecond, ITL: 2 * time.Millisecond, Seed: 2})
	e.deploy("production", prodURL, "v1")
	e.deploy("staging", stagURL, "v2")
	e.traffic(rule("staging", 10))
	for range 40 {
		e.chat(nil)
	}
	// Light load while the browser looks, so the charts draw lines.
	stopLoad := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopLoad:
				return
			case <-tick.C:
				resp, err := e.http.Post(e.d.GatewayURL()+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	}()
	stop := sync.OnceFunc(func() { close(stopLoad); <-loadDone })
	defer stop()
	adminAddr := strings.TrimPrefix(e.d.AdminURL(), "http://")
	gwAddr := strings.TrimPrefix(e.d.GatewayURL(), "http://")

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	defer cancelAlloc()
	// The deadline bounds the whole browser session.
	ctx, cancel := context.WithTimeout(allocCtx, 3*time.Minute)
	defer cancel()
	ctx, cancelTab := chromedp.NewContext(ctx)
	defer cancelTab()

	// The page's console goes to the test log when the test fails.
	var (
		consoleMu sync.Mutex
		console   []string
	)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			consoleMu.Lock()
			console = append(console, m.String())
			consoleMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			consoleMu.Lock()
			defer consoleMu.Unlock()
			t.Logf("browser console:\n%s", strings.Join(console, "\n"))
		}
	})
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, pageDump(ctx))
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	// until waits for a JavaScript condition on the page.
	until := func(what, expr string, timeout time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			t.Fatalf("waiting for %s: %v\n%s", what, err, pageDump(ctx))
		}
	}
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(t.ArtifactDir(), name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}

	// Without a session the dashboard sends us to the login form.
	run("open the dashboard", chromedp.Navigate(e.d.AdminURL()+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	run("wrong token", chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"), chromedp.Click(chromedp.CSS("#login-submit")), chromedp.WaitVisible(chromedp.CSS("#login-error")))
	run("log in", chromedp.SendKeys(chromedp.CSS("#token"), e.d.Token), chromedp.SendKeys(chromedp.CSS("#name"), "alice"), chromedp.Click(chromedp.CSS("#login-submit")), chromedp.WaitVisible(chromedp.CSS(".split-text")))

	split := text(".split-text")
	for _, want := range []string{"production 90%", "staging 10%"} {
		if !strings.Contains(split, want) {
			t.Errorf("overview split %q does not say %q", split, want)
		}
	}

	run("open the app page", chromedp.Navigate(e.d.AdminURL()+"/#/apps/default"), chromedp.WaitVisible(chromedp.CSS("#chart-rps svg polyline")))
	if got := text("#chart-rps .legend"); !strings.Contains(got, "production v1") || !strings.Contains(got, "staging v2") {
		t.Errorf("requests/s legend %q: want production and the candidate overlaid", got)
	}
	until("the latency charts", `document.querySelectorAll('#chart-latencyP99Ms polyline, #chart-latencyP99Ms circle').length >= 2`, 10*time.Second)

	// Keyboard: Enter in the form opens the dialog, Escape cancels it.
	run("type the new share", chromedp.Clear(chromedp.CSS("#traffic-staging")), chromedp.SendKeys(chromedp.CSS("#traffic-staging"), "20"+kb.Enter), chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := text("#confirm-text"); !strings.Contains(got, "staging 20%") || !strings.Contains(got, "production 80%") {
		t.Errorf("confirmation %q does not spell out the new split", got)
	}
	run("cancel with Escape", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.CSS("#confirm")))
	until("the cancel notice", `document.getElementById('traffic-result').textContent.includes('Cancelled')`, 5*time.Second)
	tr, err := e.c.Traffic(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.Routing.Percent("staging"); got != 10 {
		t.Fatalf("after cancelling, staging has %g%%, want 10%% (unchanged)", got)
	}

	run("confirm the change", chromedp.Click(chromedp.CSS("#traffic-submit")), chromedp.WaitVisible(chromedp.CSS("#confirm")), chromedp.Click(chromedp.CSS("#confirm-ok")))
	until("the traffic result", `document.getElementById('traffic-result').textContent.includes('Traffic is now')`, 10*time.Second)
	if tr, err = e.c.Traffic(context.Background(), "default"); err != nil {
		t.Fatal(err)
	}
	if got := tr.Routing.Percent("staging"); got != 20 {
		t.Errorf("staging has %g%% through the API, want 20%%", got)
	}
	evs, err := e.c.Events(context.Background(), "default", 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ev := range evs {
		found = found || (ev.Type == "traffic.set" && ev.Actor == "dashboard:alice")
	}
	if !found {
		t.Errorf("no traffic.set event by actor dashboard:alice among %d events", len(evs))
	}
	until("the split to update by itself", `document.querySelector('#sec-slots .split-text').textContent.includes('staging 20%')`, 10*time.Second)

	// A running rollout shows as a timeline with its current step; aborting
	// it from the dashboard, with confirmation, rolls it back.
	ro, err := e.c.StartRollout(context.Background(), "default", "staging", "name: browser\nsteps:\n  - traffic: 15\n  - pause\n")
	if err != nil {
		t.Fatal(err)
	}
	until("the rollout timeline at its pause step", `(document.querySelector('#sec-rollout .timeline')?.textContent || '').toLowerCase().includes('pause') && document.getElementById('ro-abort') !== null`, 20*time.Second)
	if got := text("#sec-rollout"); !strings.Contains(got, ro.ID) {
		t.Errorf("the rollout view does not name rollout %s: %q", ro.ID, got)
	}
	shot("dashboard-rollout.png")
	run("abort the rollout", chromedp.Click(chromedp.CSS("#ro-abort")), chromedp.WaitVisible(chromedp.CSS("#confirm")), chromedp.Click(chromedp.CSS("#confirm-ok")))
	var got *rollout.Rollout
	waitFor(t, "the rollout to be aborted", 15*time.Second, func() bool {
		got, err = e.c.Rollout(context.Background(), ro.ID)
		return err == nil && got.State == rollout.Aborted
	})
	if a := got.Overrides[len(got.Overrides)-1].Actor; a != "dashboard:alice" {
		t.Errorf("the abort was recorded by %q, want dashboard:alice", a)
	}
	until("the past rollouts to list it", `(document.getElementById('sec-history')?.textContent || '').includes('`+ro.ID+`')`, 15*time.Second)
	// The aborted rollout's timeline marks the step it stopped at, not a
	// current step; its times are ISO with the time zone.
	// (textContent: the timeline is inside a closed <details>.)
	hist, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('sec-history').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(hist, "✗ aborted here") || strings.Contains(hist, "▶ current") {
		t.Errorf("the aborted rollout's timeline: want its pause step marked aborted here and no current step:\n%s", hist)
	}
	if !regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (UTC|UTC[+−]\d\d:\d\d) → \d{4}-`).MatchString(hist) {
		t.Errorf("the past rollout's times are not ISO with a time zone:\n%s", hist)
	}
	// A judged phase shows its progress as `rollout status --watch` does:
	// the time judged and the deadline, the requests on each side and, per
	// check, its verdict, requests, effect, interval and what it still
	// needs; the counts are the API's.
	ro2, err := e.c.StartRollout(context.Background(), "default", "staging", "name: progress\ninterval: 1s\nwarmup: {duration: 0s, requests: 0}\nanalysis:\n  metrics: [errors, latency]\nsteps:\n  - traffic: 50\n  - bake: {duration: 10m}\n")
	if err != nil {
		t.Fatal(err)
	}
	until("the bake's progress table", `(() => {
		const p = document.querySelector('#sec-rollout .timeline .progress');
		if (!p) return false;
		const rows = [...p.querySelectorAll('tbody tr')].map((r) => [...r.children].map((c) => c.textContent));
		const full = (m) => rows.some((r) => r[0] === m && r.length === 7 && /^\d+ \/ \d+$/.test(r[2]) && /to/.test(r[4]) && r[6] !== '');
		return /Judged for .*: [1-9]\d* candidate requests .* production requests over \d+ looks/.test(p.textContent) && /Deadline \d{4}-\d\d-\d\d/.test(p.textContent) && full('errors') && full('latency');
	})()`, 30*time.Second)
	progress := text("#sec-rollout .timeline .progress")
	shot("dashboard-progress.png")
	cur, err := e.c.Rollout(context.Background(), ro2.ID)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`: (\d+) candidate requests`).FindStringSubmatch(progress)
	if m == nil || cur.Current == nil || cur.Current.Phase == nil {
		t.Fatalf("progress %q, API phase %+v", progress, cur.Current)
	}
	if n, _ := strconv.ParseInt(m[1], 10, 64); n < 1 || n > cur.Current.Phase.CandidateRequests {
		t.Errorf("the page shows %d judged candidate requests; the API, read after it, %d", n, cur.Current.Phase.CandidateRequests)
	}
	if _, err := e.c.RolloutCommand(context.Background(), "default", "abort", "browser test done"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the progress rollout to be aborted", 15*time.Second, func() bool {
		got, err = e.c.Rollout(context.Background(), ro2.ID)
		return err == nil && got.State == rollout.Aborted
	})

	// The step states of finished rollouts, and a latency chart with one
	// point far above the rest: clipped with a marker, not flattened.
	checks, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Promise.all([import('/ui/assets/app.js'), import('/ui/assets/chart.js')]).then(([app, chart]) => {
		const bad = [];
		const want = (what, got, exp) => { if (got !== exp) bad.push(what + ': got ' + got + ', want ' + exp); };
		const rb = { step: 1, state: 'rolled_back' };
		want('rolled back: step 1', app.stepStatus(rb, 0), 'done');
		want('rolled back: step 2', app.stepStatus(rb, 1), 'stopped');
		want('rolled back: step 3', app.stepStatus(rb, 2), 'skipped');
		want('running: step 2', app.stepStatus({ step: 1, state: 'running' }, 1), 'current');
		want('succeeded: last step', app.stepStatus({ step: 3, state: 'succeeded' }, 2), 'done');
		want('iso', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/.test(app.isoTime('2026-12-04T17:07:53Z')), true);
		const values = [20, 22, 19, 25, 21, 23, 4000, 20, 24];
		const fig = chart.lineChart({ id: 'x', title: 'Latency p99', times: values.map((_, i) => i * 10000), fmt: (v) => v + ' ms', clip: true,
			lines: [{ label: 'production', values, style: chart.STYLES[0] }] });
		want('clipped markers', fig.querySelectorAll('polygon.clipped').length, 1);
		want('clip note', !!fig.querySelector('.clip-note'), true);
		want('scale', chart.scaleMax(values, true).max < 100, true);
		want('no clip without outlier', chart.scaleMax([20, 22, 19, 25, 21, 23], true).clipped, false);
		return bad;
	})`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		t.Error(c)
	}

	shot("dashboard-1280.png")
	run("phone width", chromedp.EmulateViewport(390, 844))
	shot("dashboard-390.png")
	wide, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('body *')].filter((el) => el.getBoundingClientRect().right > innerWidth + 1 && !el.closest('.table-wrap')).map((el) => el.tagName + '.' + el.className + '#' + el.id)`))
	if err != nil {
		t.Fatal(err)
	}
	if len(wide) > 0 {
		t.Errorf("at 390px, these elements stick out of the screen: %v", wide)
	}
	run("desktop width", chromedp.EmulateViewport(1280, 1000))

	// The daemon goes away: a banner says so; it comes back: sessions are
	// kept in the daemon's memory, so the page sends the user to the login
	// form, and a new login finds the app as it was.
	stop()
	e.stop()
	until("the offline banner", `!document.getElementById('banner').hidden`, 15*time.Second)
	if got := text("#banner-text"); !strings.Contains(got, "cannot reach") {
		t.Errorf("banner %q does not say the daemon is unreachable", got)
	}
	cfg := config.Default()
	cfg.Data, cfg.Listen, cfg.Admin = dir, gwAddr, adminAddr
	e = startDaemonWith(t, cfg)
	run("the login form after the restart", chromedp.WaitVisible(chromedp.CSS("#token")))
	run("log in again", chromedp.SendKeys(chromedp.CSS("#token"), e.d.Token), chromedp.Click(chromedp.CSS("#login-submit")), chromedp.WaitVisible(chromedp.CSS(".split-text")))
	run("open the app page again", chromedp.Navigate(e.d.AdminURL()+"/#/apps/default"))
	until("the app page after the restart", `document.querySelector('#sec-slots .split-text')?.textContent.includes('production 100%')`, 10*time.Second)
}

// pageDump says where the page is and what it shows, for a failure message.
func pageDump(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return "(page unreadable: " + err.Error() + ")"
	}
	return "page: " + s
}
