package daemon_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
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
)

// binPath is a modelslot binary built once for tests that need real
// model-server processes (`modelslot sim` under the daemon's supervision).
var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func modelslotBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "modelslot-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "modelslot")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/modelslot/modelslot/cmd/modelslot").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

type env struct {
	t      *testing.T
	d      *daemon.Daemon
	c      *client.Client
	data   string
	http   *http.Client
	cancel context.CancelFunc
}

// startDaemon starts a daemon on loopback with its state in dir.
func startDaemon(t *testing.T, dir string) *env {
	t.Helper()
	cfg := config.Default()
	cfg.Data = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	return startDaemonWith(t, cfg)
}

func startDaemonWith(t *testing.T, cfg *config.Config) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg})
	if err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	e := &env{t: t, d: d, c: client.New(d.AdminURL(), d.Token), data: cfg.Data, http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	t.Cleanup(func() { e.stop() })
	e.waitRestored()
	return e
}

// waitRestored waits until no slot is still starting: a restarted daemon
// restores its slots' backends in the background.
func (e *env) waitRestored() {
	e.t.Helper()
	waitFor(e.t, "the slots to be restored", 90*time.Second, func() bool {
		for _, app := range e.d.Engine.Apps() {
			st, err := e.d.Engine.Status(context.Background(), app)
			if err != nil {
				return false
			}
			for _, s := range st.Slots {
				if s.Starting {
					return false
				}
			}
		}
		return true
	})
}

func (e *env) stop() {
	if e.d == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e.d.Close(ctx)
	e.d = nil
}

// startSim serves a simulated model in the test process.
func startSim(t *testing.T, cfg sim.Config) (*sim.Server, string) {
	t.Helper()
	s, err := sim.NewChecked(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

func (e *env) deploy(slot, url, version string) *modelslot.Slot {
	e.t.Helper()
	if slot != modelslot.Production {
		if _, err := e.c.CreateSlot(context.Background(), "default", slot); err != nil && modelslot.ErrorCode(err) != modelslot.ECONFLICT {
			e.t.Fatal(err)
		}
	}
	s, err := e.c.Deploy(context.Background(), "default", slot, modelslot.DeployRequest{Deployment: modelslot.Deployment{URL: url, Version: version}})
	if err != nil {
		e.t.Fatalf("deploy %s to %s: %v", version, slot, err)
	}
	return s
}

func (e *env) traffic(rules ...modelslot.TrafficRule) {
	e.t.Helper()
	if _, err := e.c.SetTraffic(context.Background(), "default", rules, modelslot.TrafficOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

const chatBody = `{"model":"default","messages":[{"role":"user","content":"hello"}]}`

// chat sends one non-streaming chat request and returns the slot and
// version that answered.
func (e *env) chat(mod func(*http.Request)) (slot, version string, resp *http.Response) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.d.GatewayURL()+"/v1/chat/completions", strings.NewReader(chatBody))
	req.Header.Set("Content-Type", "application/json")
	if mod != nil {
		mod(req)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("chat: status %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Modelslot-Slot"), resp.Header.Get("X-Modelslot-Version"), resp
}

func rule(slot string, p float64) modelslot.TrafficRule {
	return modelslot.TrafficRule{Slot: slot, Percent: p}
}

// wantSwaps checks the status/phase ("completed/done") of the app's swaps
// by id, after what.
func wantSwaps(t *testing.T, e *env, what string, want map[int64]string) {
	t.Helper()
	got, err := e.c.Swaps(context.Background(), "default", 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, sw := range got {
		if w, ok := want[sw.ID]; ok {
			if g := sw.Status + "/" + sw.Phase; g != w {
				t.Errorf("swap %d %s: %s, want %s", sw.ID, what, g, w)
			}
			delete(want, sw.ID)
		}
	}
	if len(want) > 0 {
		t.Errorf("swaps %v missing", want)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
