package daemon_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/client"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/modelslot/modelslot/sim"
	"github.com/modelslot/modelslot/sqlite"
)

// switchable is a model backend that the test turns on and off: off, its
// health path answers 503 and requests fail.
type switchable struct {
	mu  sync.Mutex
	on  bool
	sim http.Handler
}

func (s *switchable) set(on bool) { s.mu.Lock(); s.on = on; s.mu.Unlock() }

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	on := s.on
	s.mu.Unlock()
	if !on {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	s.sim.ServeHTTP(w, r)
}

func newSwitchable(t *testing.T) (*switchable, string) {
	t.Helper()
	m, err := sim.NewChecked(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s := &switchable{on: true, sim: m}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

func gatewayHealth(t *testing.T, gw string) (int, daemon.Health) {
	t.Helper()
	resp, err := http.Get(gw + daemon.HealthPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h daemon.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, h
}

func slotStatus(t *testing.T, e *env, slot string) modelslot.SlotStatus {
	t.Helper()
	st, err := e.c.Status(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Slots {
		if s.Slot.Name == slot {
			return s
		}
	}
	t.Fatalf("no slot %s in %+v", slot, st)
	return modelslot.SlotStatus{}
}

// TestRestartServesAtOnceWhileSlotsRestore: a restart opens its listeners
// without waiting for a slot whose backend is not healthy; that slot is
// marked starting, gets no traffic (its share goes to production) and a
// request pinned to it gets a 503 that says so; it gets traffic once it
// is healthy. (Start used to wait up to the warm-up timeout, 5 minutes by
// default, for every slot.)
func TestRestartServesAtOnceWhileSlotsRestore(t *testing.T) {
	dir := t.TempDir()
	_, prodURL := newSwitchable(t)
	staging, stagingURL := newSwitchable(t)
	e := startDaemon(t, dir)
	e.deploy(modelslot.Production, prodURL, "v1")
	e.deploy("staging", stagingURL, "v2")
	e.traffic(rule("staging", 50))
	e.stop()

	staging.set(false) // dead at the restart
	cfg := config.Default()
	cfg.Data, cfg.Listen, cfg.Admin = dir, "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	e = &env{t: t, d: d, c: client.New(d.AdminURL(), d.Token), data: dir, http: &http.Client{}}
	t.Cleanup(e.stop)

	// Start returned while staging's first health check is still going
	// (it waits up to the warm-up timeout).
	if s := slotStatus(t, e, "staging"); !s.Starting || s.Healthy || !strings.Contains(s.Health, "after the daemon's restart") {
		t.Fatalf("staging right after the restart: %+v, want starting", s)
	}
	waitFor(t, "production restored", 30*time.Second, func() bool { return slotStatus(t, e, modelslot.Production).Healthy })
	waitFor(t, "the gateway's health to be ready", 30*time.Second, func() bool {
		code, _ := gatewayHealth(t, d.GatewayURL())
		return code == http.StatusOK
	})
	for i := range 40 {
		if slot, _, _ := e.chat(nil); slot != modelslot.Production {
			t.Fatalf("request %d went to %s while staging is not restored", i, slot)
		}
	}
	resp, err := http.Get(d.GatewayURL() + "/v1/models?x-ms-routing-name=staging")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "slot staging of app default is not ready yet") {
		t.Fatalf("pinned to staging: %d %s, want 503 slot not ready", resp.StatusCode, body)
	}

	staging.set(true)
	waitFor(t, "staging restored", 60*time.Second, func() bool { return slotStatus(t, e, "staging").Healthy })
	seen := map[string]bool{}
	for range 200 {
		slot, _, _ := e.chat(nil)
		seen[slot] = true
	}
	if !seen["staging"] || !seen[modelslot.Production] {
		t.Fatalf("after staging's restore the slots that answered are %v, want both", seen)
	}
}

// TestRestartWithProductionNotReady: while production's backend is not
// restored, requests get a 503 that says so and the health endpoint says
// starting.
func TestRestartWithProductionNotReady(t *testing.T) {
	dir := t.TempDir()
	prod, prodURL := newSwitchable(t)
	e := startDaemon(t, dir)
	e.deploy(modelslot.Production, prodURL, "v1")
	e.stop()

	prod.set(false)
	cfg := config.Default()
	cfg.Data, cfg.Listen, cfg.Admin = dir, "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	if code, h := gatewayHealth(t, d.GatewayURL()); code != http.StatusServiceUnavailable || h.Status != "starting" || !strings.Contains(h.Reason, "production is starting") {
		t.Fatalf("health while production restores: %d %+v, want 503 starting", code, h)
	}
	resp, err := http.Post(d.GatewayURL()+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "slot production of app default is not ready yet") {
		t.Fatalf("request while production restores: %d %s", resp.StatusCode, body)
	}
	prod.set(true)
	waitFor(t, "the gateway's health to be ready", 60*time.Second, func() bool {
		code, _ := gatewayHealth(t, d.GatewayURL())
		return code == http.StatusOK
	})
}

// TestRestartEndsInterruptedSwap: swap records a stop left after the flip
// end in the done phase, not in drain for ever.
func TestRestartEndsInterruptedSwap(t *testing.T) {
	dir := t.TempDir()
	e := startDaemon(t, dir)
	e.stop()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "modelslot.db"))
	if err != nil {
		t.Fatal(err)
	}
	recs := []*modelslot.SwapRecord{
		// stopped while the old deployment drained
		{App: "default", Source: "staging", Target: "production", Action: modelslot.SwapActionSwap, Status: modelslot.SwapRunning, Phase: modelslot.PhaseDrain, StartedAt: time.Now()},
		// completed, stopped while its old deployment settled
		{App: "default", Source: "staging", Target: "production", Action: modelslot.SwapActionSwap, Status: modelslot.SwapCompleted, Phase: modelslot.PhaseDrain, StartedAt: time.Now(), FinishedAt: time.Now()},
		// stopped before the flip
		{App: "default", Source: "staging", Target: "production", Action: modelslot.SwapActionSwap, Status: modelslot.SwapRunning, Phase: modelslot.PhaseWarmup, StartedAt: time.Now()},
	}
	for _, r := range recs {
		if err := db.AddSwap(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	e = startDaemon(t, dir)
	wantSwaps(t, e, "after the restart", map[int64]string{recs[0].ID: "completed/done", recs[1].ID: "completed/done", recs[2].ID: "failed/warm-up"})
}

// holdBackend streams one event, then holds the stream until release is
// closed, then ends it.
type holdBackend struct {
	started chan struct{}
	release chan struct{}
}

func newHoldBackend(t *testing.T) (*holdBackend, string) {
	t.Helper()
	h := &holdBackend{started: make(chan struct{}, 16), release: make(chan struct{})}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return h, ts.URL
}

func (h *holdBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health":
		return
	case "/v1/models":
		io.WriteString(w, `{"object":"list","data":[]}`)
		return
	}
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
	w.(http.Flusher).Flush()
	h.started <- struct{}{}
	select {
	case <-h.release:
	case <-r.Context().Done():
		return
	}
	fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]\n\n")
}

// openStream starts a streamed request and returns a reader positioned
// after the first event.
func openStream(t *testing.T, gw string, h *holdBackend) (*http.Response, *bufio.Reader) {
	t.Helper()
	resp, err := http.Post(gw+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","stream":true,"messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: status %d", resp.StatusCode)
	}
	<-h.started
	br := bufio.NewReader(resp.Body)
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "data: ") {
		t.Fatalf("first line %q", l)
	}
	return resp, br
}

// TestShutdownDrainsInOrder: a shutdown turns the health endpoint to 503
// first, lets the stream in flight finish whole, then stops, with nothing
// cut; on the built-in server and on net/http's.
func TestShutdownDrainsInOrder(t *testing.T) {
	for _, std := range []bool{false, true} {
		t.Run(fmt.Sprintf("stdServer=%v", std), func(t *testing.T) { testShutdownDrainsInOrder(t, std) })
	}
}

func testShutdownDrainsInOrder(t *testing.T, stdServer bool) {
	h, url := newHoldBackend(t)
	cfg := config.Default()
	cfg.Data, cfg.Listen, cfg.Admin = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.Gateway.StdServer = stdServer
	e := startDaemonWith(t, cfg)
	e.deploy(modelslot.Production, url, "v1")
	gw := e.d.GatewayURL()
	if code, _ := gatewayHealth(t, gw); code != http.StatusOK {
		t.Fatalf("health before the shutdown: %d", code)
	}
	resp, br := openStream(t, gw, h)
	defer resp.Body.Close()

	type result struct {
		st  daemon.Stopped
		err error
	}
	done := make(chan result, 1)
	d := e.d
	e.d = nil
	go func() {
		st, err := d.Shutdown(context.Background())
		done <- result{st, err}
	}()
	waitFor(t, "health to turn 503", 30*time.Second, func() bool {
		code, h := gatewayHealth(t, gw)
		return code == http.StatusServiceUnavailable && h.Status == "draining"
	})
	select {
	case r := <-done:
		t.Fatalf("the daemon stopped with a stream in flight: %+v", r)
	default:
	}
	// A request that arrives while draining (the load balancer has not
	// seen the 503 yet) is served, on a connection that then closes.
	late, err := http.Get(gw + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, late.Body)
	late.Body.Close()
	if late.StatusCode != http.StatusOK || !late.Close {
		t.Fatalf("a request during the drain: %d, connection close %v; want 200 and close", late.StatusCode, late.Close)
	}
	close(h.release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("the stream broke: %v (got %q)", err, rest)
	}
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("the stream ended without [DONE]: %q", rest)
	}
	r := <-done
	if r.err != nil || r.st.Cut != 0 {
		t.Fatalf("shutdown: %+v, %v; want nothing cut, no error", r.st, r.err)
	}
	if _, err := net.Dial("tcp", strings.TrimPrefix(gw, "http://")); err == nil {
		t.Fatal("the gateway still accepts connections after the shutdown")
	}
}

// TestShutdownCutsAfterDrainTimeout: a stream longer than the configured
// drain timeout is cut and counted, and the shutdown is still not an
// error.
func TestShutdownCutsAfterDrainTimeout(t *testing.T) {
	h, url := newHoldBackend(t)
	defer close(h.release)
	cfg := config.Default()
	cfg.Data, cfg.Listen, cfg.Admin = t.TempDir(), "127.0.0.1:0", "127.0.0.1:0"
	cfg.Shutdown.DrainTimeout = modelslot.Duration(500 * time.Millisecond)
	e := startDaemonWith(t, cfg)
	e.deploy(modelslot.Production, url, "v1")
	resp, br := openStream(t, e.d.GatewayURL(), h)
	defer resp.Body.Close()
	d := e.d
	e.d = nil
	st, err := d.Shutdown(context.Background())
	if err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if st.Cut != 1 || st.DrainTimeout != 500*time.Millisecond {
		t.Fatalf("shutdown: %+v, want 1 cut after 500ms", st)
	}
	if !strings.Contains(st.String(), "1 request or stream was still in flight after the drain timeout (500ms) and cut") {
		t.Errorf("report %q", st)
	}
	if rest, err := io.ReadAll(br); err == nil && strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("the stream was not cut: %q", rest)
	}
}
