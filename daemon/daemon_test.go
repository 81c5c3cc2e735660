package daemon_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/client"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/modelslot/modelslot/sim"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func TestUnhealthyDeploymentLeavesOldOneServing(t *testing.T) {
	bin := modelslotBin(t)
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	e.deploy("production", v1, "v1")
	ctx := context.Background()
	cases := []struct {
		name string
		d    modelslot.Deployment
		want string
	}{
		{"never healthy", modelslot.Deployment{Command: bin + " sim --listen 127.0.0.1:{port} --startup 1h", Version: "v2",
			Warmup: modelslot.Warmup{Timeout: modelslot.Duration(1500 * time.Millisecond)}}, "did not become healthy"},
		{"crashes at start", modelslot.Deployment{Command: bin + " sim --listen 127.0.0.1:{port} --no-such-flag", Version: "v2",
			Warmup: modelslot.Warmup{Timeout: modelslot.Duration(10 * time.Second)}}, "exit"},
		{"nothing listening", modelslot.Deployment{URL: "http://127.0.0.1:1", Version: "v2",
			Warmup: modelslot.Warmup{Timeout: modelslot.Duration(500 * time.Millisecond)}}, "did not become healthy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.c.Deploy(ctx, "default", "production", modelslot.DeployRequest{Deployment: tc.d})
			if err == nil || modelslot.ErrorCode(err) != modelslot.EUNAVAILABLE || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "keeps serving v1") {
				t.Fatalf("got %v, want an unavailable error containing %q and saying v1 keeps serving", err, tc.want)
			}
			for i := 0; i < 5; i++ {
				if _, v, _ := e.chat(nil); !strings.HasPrefix(v, "v1+") {
					t.Fatalf("production serves %s, want v1", v)
				}
			}
		})
	}
}

func TestRestartKeepsStateAndRestartsProcesses(t *testing.T) {
	bin := modelslotBin(t)
	dir := t.TempDir()
	e := startDaemon(t, dir)
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	e.deploy("production", v1, "v1")
	ctx := context.Background()
	if _, err := e.c.CreateSlot(ctx, "default", "staging"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{
		Command: bin + " sim --listen 127.0.0.1:{port} --model v2", Version: "v2"}}); err != nil {
		t.Fatal(err)
	}
	e.traffic(rule("staging", 30))
	if _, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	before, err := e.c.Status(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	e.stop()

	e = startDaemon(t, dir)
	after, err := e.c.Status(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if after.Routing.Percent("staging") != 30 || after.Routing.Generation != before.Routing.Generation {
		t.Fatalf("routing after restart: %+v, before %+v", after.Routing, before.Routing)
	}
	for i, s := range after.Slots {
		b := before.Slots[i]
		if s.Slot.Name != b.Slot.Name || s.Slot.Deployment.Revision != b.Slot.Deployment.Revision {
			t.Fatalf("slot %d after restart: %s %s, before %s %s", i, s.Slot.Name, s.Slot.Deployment.Revision, b.Slot.Name, b.Slot.Deployment.Revision)
		}
		if !s.Healthy {
			t.Fatalf("slot %s not healthy after restart: %s", s.Slot.Name, s.Health)
		}
	}
	// production now holds the managed v2 process, restarted by the daemon
	if _, v, _ := e.chat(func(r *http.Request) { r.URL.RawQuery = "x-ms-routing-name=self" }); !strings.HasPrefix(v, "v2+") {
		t.Fatalf("production after restart serves %s, want the restarted v2", v)
	}
	swaps, _ := e.c.Swaps(ctx, "default", 10)
	if len(swaps) != 1 || swaps[0].Status != modelslot.SwapCompleted {
		t.Fatalf("swap history after restart: %+v", swaps)
	}
}

// TestBadInputsAreRejectedAndChangeNothing sends a table of bad requests
// to the admin API; each gets a clear error and the state stays the same.
func TestBadInputsAreRejectedAndChangeNothing(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")
	e.traffic(rule("staging", 10))
	ctx := context.Background()
	before, _ := e.c.Status(ctx, "default")
	for _, s := range []string{"a", "b", "c"} {
		if _, err := e.c.CreateSlot(ctx, "default", "x"+s); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, s := range []string{"a", "b", "c"} {
			e.c.DeleteSlot(ctx, "default", "x"+s, false)
		}
	}()
	cases := []struct {
		name string
		call func() error
		code string
		want string
	}{
		{"unknown app", func() error { _, err := e.c.Status(ctx, "nope"); return err }, modelslot.ENOTFOUND, `no app named "nope"`},
		{"unknown slot traffic", func() error {
			_, err := e.c.SetTraffic(ctx, "default", []modelslot.TrafficRule{rule("nope", 5)}, modelslot.TrafficOptions{})
			return err
		}, modelslot.ENOTFOUND, `no slot "nope"`},
		{"percent above 100", func() error {
			_, err := e.c.SetTraffic(ctx, "default", []modelslot.TrafficRule{rule("staging", 101)}, modelslot.TrafficOptions{})
			return err
		}, modelslot.EINVALID, "out of range"},
		{"negative percent", func() error {
			_, err := e.c.SetTraffic(ctx, "default", []modelslot.TrafficRule{rule("staging", -1)}, modelslot.TrafficOptions{})
			return err
		}, modelslot.EINVALID, "out of range"},
		{"sum above 100", func() error {
			_, err := e.c.SetTraffic(ctx, "default", []modelslot.TrafficRule{rule("staging", 60), rule("xa", 50)}, modelslot.TrafficOptions{})
			return err
		}, modelslot.EINVALID, "more than 100%"},
		{"share for production", func() error {
			_, err := e.c.SetTraffic(ctx, "default", []modelslot.TrafficRule{rule("production", 50)}, modelslot.TrafficOptions{})
			return err
		}, modelslot.EINVALID, "production cannot be given a share"},
		{"traffic to an empty slot", func() error {
			_, err := e.c.SetTraffic(ctx, "default", []modelslot.TrafficRule{rule("xa", 5)}, modelslot.TrafficOptions{})
			return err
		}, modelslot.ECONFLICT, "has no deployment"},
		{"bad slot name", func() error { _, err := e.c.CreateSlot(ctx, "default", "Bad_Name"); return err }, modelslot.EINVALID, "not valid"},
		{"reserved slot name", func() error { _, err := e.c.CreateSlot(ctx, "default", "self"); return err }, modelslot.EINVALID, "reserved"},
		{"duplicate slot", func() error { _, err := e.c.CreateSlot(ctx, "default", "staging"); return err }, modelslot.ECONFLICT, "already has a slot"},
		{"too many slots", func() error { _, err := e.c.CreateSlot(ctx, "default", "sixth"); return err }, modelslot.ECONFLICT, "limit"},
		{"delete production", func() error { return e.c.DeleteSlot(ctx, "default", "production", true) }, modelslot.EINVALID, "cannot be deleted"},
		{"delete slot with traffic", func() error { return e.c.DeleteSlot(ctx, "default", "staging", false) }, modelslot.ECONFLICT, "--force"},
		{"delete unknown slot", func() error { return e.c.DeleteSlot(ctx, "default", "nope", false) }, modelslot.ENOTFOUND, "no slot"},
		{"deploy with neither url nor cmd", func() error {
			_, err := e.c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{})
			return err
		}, modelslot.EINVALID, "--url"},
		{"deploy with both", func() error {
			_, err := e.c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{URL: v1, Command: "x {port}"}})
			return err
		}, modelslot.EINVALID, "not both"},
		{"deploy cmd without port", func() error {
			_, err := e.c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{Command: "server"}})
			return err
		}, modelslot.EINVALID, "{port}"},
		{"deploy bad url", func() error {
			_, err := e.c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{URL: "ftp://x"}})
			return err
		}, modelslot.EINVALID, "not valid"},
		{"deploy unknown revision", func() error {
			_, err := e.c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{Revision: "ffffffffffff"})
			return err
		}, modelslot.ENOTFOUND, "no deployment with revision"},
		{"deploy to unknown slot", func() error {
			_, err := e.c.Deploy(ctx, "default", "nope", modelslot.DeployRequest{Deployment: modelslot.Deployment{URL: v1}})
			return err
		}, modelslot.ENOTFOUND, "slot create"},
		{"swap unknown slot", func() error {
			_, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "nope"})
			return err
		}, modelslot.ENOTFOUND, "no slot"},
		{"swap with itself", func() error {
			_, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "production"})
			return err
		}, modelslot.EINVALID, "two different slots"},
		{"swap bad action", func() error {
			_, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging", Action: "flip"})
			return err
		}, modelslot.EINVALID, "swap, preview or reset"},
		{"swap an empty slot", func() error {
			_, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "xa"})
			return err
		}, modelslot.ECONFLICT, "no deployment"},
		{"unknown JSON field", func() error {
			return e.c.Do(ctx, http.MethodPut, "/api/v1/apps/default/traffic", map[string]any{"rulez": []any{}}, nil)
		}, modelslot.EINVALID, "unknown field"},
		{"bad metrics window", func() error {
			return e.c.Do(ctx, http.MethodGet, "/api/v1/apps/default/metrics?window=soon", nil, nil)
		}, modelslot.EINVALID, "window"},
		{"wrong token", func() error {
			return client.New(e.d.AdminURL(), "wrong").Do(ctx, http.MethodGet, "/api/v1/apps", nil, nil)
		}, modelslot.EUNAUTHORIZED, "admin token"},
		{"unknown endpoint", func() error { return e.c.Do(ctx, http.MethodGet, "/api/v1/nothing", nil, nil) }, modelslot.ENOTFOUND, "no such API endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil {
				t.Fatalf("no error, want %s containing %q", tc.code, tc.want)
			}
			if got := modelslot.ErrorCode(err); got != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %s %q, want %s containing %q", got, err, tc.code, tc.want)
			}
		})
	}
	after, _ := e.c.Status(ctx, "default")
	if after.Routing.Generation != before.Routing.Generation || after.Routing.Percent("staging") != 10 {
		t.Fatalf("routing changed: %+v -> %+v", before.Routing, after.Routing)
	}
	for _, s := range after.Slots[:2] {
		if s.Slot.Deployment == nil || !strings.HasPrefix(s.Slot.Deployment.Label(), map[string]string{"production": "v1", "staging": "v2"}[s.Slot.Name]) {
			t.Fatalf("slot %s changed: %+v", s.Slot.Name, s.Slot.Deployment)
		}
	}
	swaps, _ := e.c.Swaps(ctx, "default", 10)
	if len(swaps) != 0 {
		t.Fatalf("bad swaps were recorded: %+v", swaps)
	}
}

func TestConfigFileDeclaresAppsAndIsStrict(t *testing.T) {
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	yaml := `
listen: 127.0.0.1:0
admin: 127.0.0.1:0
gateway: {stdTransport: true, stdServer: true}
apps:
  - name: chat
    stickyKey: header:X-Session-Id
    slots:
      - name: production
        deployment: {version: v1, url: ` + v1 + `}
      - name: staging
        deployment: {version: v2, url: ` + v2 + `}
    traffic: {staging: 25}
`
	cfg, err := config.Parse(strings.NewReader(yaml))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Data = t.TempDir()
	e := startDaemonWith(t, cfg)
	st, err := e.c.Status(context.Background(), "chat")
	if err != nil {
		t.Fatal(err)
	}
	if st.Routing.Percent("staging") != 25 || st.Slots[1].Slot.Deployment.Version != "v2" {
		t.Fatalf("declared state not applied: %+v", st)
	}
	if !cfg.Gateway.StdTransport || !cfg.Gateway.StdServer {
		t.Fatal("gateway.stdTransport or gateway.stdServer not read")
	}
	if _, ok := daemon.GatewayServer(e.d).(*http.Server); !ok {
		t.Fatalf("gateway.stdServer: the gateway is served by %T", daemon.GatewayServer(e.d))
	}
	// Through net/http's server and Transport, the gateway still answers.
	if slot, _, resp := e.chat(func(r *http.Request) { r.Header.Set("X-Modelslot-App", "chat") }); slot == "" || resp.StatusCode != http.StatusOK {
		t.Fatalf("request through the std transport: slot %q, status %d", slot, resp.StatusCode)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown field", "apps:\n  - name: a\n    slotz: []\n", "slotz"},
		{"bad duration", "gateway:\n  cookieMaxAge: soon\n", "duration"},
		{"bad app name", "apps:\n  - name: A_B\n", "apps[0].name"},
		{"traffic to undeclared slot", "apps:\n  - name: a\n    traffic: {canary: 5}\n", "apps[0].traffic.canary"},
		{"traffic out of range", "apps:\n  - name: a\n    slots: [{name: s}]\n    traffic: {s: 150}\n", "out of range"},
		{"deployment with url and command", "apps:\n  - name: a\n    slots: [{name: s, deployment: {url: 'http://x', command: 'y {port}'}}]\n", "exactly one of url and command"},
		{"bad warm-up status", "apps:\n  - name: a\n    slots: [{name: s, deployment: {url: 'http://x', warmup: {statuses: [999]}}}]\n", "warmup.statuses"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse(strings.NewReader(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestAdminTokenFileIsPrivate(t *testing.T) {
	dir := t.TempDir()
	e := startDaemon(t, dir)
	fi, err := os.Stat(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token mode %v, want 0600", fi.Mode().Perm())
	}
	resp, err := http.Get(e.d.AdminURL() + "/api/v1/apps")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Code, Message string }
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusUnauthorized || body.Error.Code != modelslot.EUNAUTHORIZED {
		t.Fatalf("no token: status %d body %+v", resp.StatusCode, body)
	}
}

func TestOpenAIClientThroughGateway(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 8, ITL: time.Millisecond})
	e.deploy("production", v1, "v1")
	c := openai.NewClient(option.WithBaseURL(e.d.GatewayURL()+"/v1"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:    "default",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
	}
	comp, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(comp.Choices) != 1 || comp.Choices[0].Message.Content == "" || comp.Usage.CompletionTokens != 8 {
		t.Fatalf("completion: %+v", comp)
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if acc.Choices[0].Message.Content == "" || acc.Usage.CompletionTokens != 8 || chunks < 8 {
		t.Fatalf("stream: %d chunks, content %q, usage %+v", chunks, acc.Choices[0].Message.Content, acc.Usage)
	}
	models, err := c.Models.List(ctx)
	if err != nil || len(models.Data) != 1 {
		t.Fatalf("models: %+v %v", models, err)
	}
}

func TestProxyForwardsEveryPathAndFailsInJSON(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	s1, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 4, ITL: 50 * time.Millisecond})
	e.deploy("production", v1, "v1")
	for _, p := range []struct{ method, path, body string }{
		{"POST", "/v1/chat/completions", chatBody},
		{"POST", "/v1/completions", `{"model":"m","prompt":"hi","max_tokens":2}`},
		{"POST", "/v1/embeddings", `{"model":"m","input":"hi"}`},
		{"POST", "/v1/responses", `{"model":"m","input":"hi"}`},
		{"GET", "/v1/models", ""},
	} {
		req, _ := http.NewRequest(p.method, e.d.GatewayURL()+p.path, strings.NewReader(p.body))
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Modelslot-Slot") != "production" || !strings.HasPrefix(resp.Header.Get("X-Modelslot-Version"), "v1+") {
			t.Fatalf("%s %s: status %d headers %v body %s", p.method, p.path, resp.StatusCode, resp.Header, b)
		}
	}

	// A client that disconnects cancels the backend request.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.d.GatewayURL()+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true,"max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`))
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	resp.Body.Read(buf)
	cancel()
	resp.Body.Close()
	waitFor(t, "the backend request to be cancelled", 5*time.Second, func() bool { return s1.InFlight() == 0 })

	// A backend that is down yields an OpenAI-style JSON error, not a hang.
	downSim := httptest.NewServer(sim.New(sim.Config{Model: "v2"}))
	e.deploy("staging", downSim.URL, "v2")
	downSim.Close()
	req, _ = http.NewRequest("POST", e.d.GatewayURL()+"/v1/chat/completions?x-ms-routing-name=staging", strings.NewReader(chatBody))
	resp, err = e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Error struct {
			Message, Type, Code string
		}
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || body.Error.Code != "backend_unavailable" || !strings.Contains(body.Error.Message, "staging") {
		t.Fatalf("down backend: status %d, error %+v", resp.StatusCode, body.Error)
	}
	// An oversized request is refused before it reaches the backend.
	big := strings.Repeat("x", 33<<20)
	resp, err = e.http.Post(e.d.GatewayURL()+"/v1/chat/completions", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized request: status %d, want 413", resp.StatusCode)
	}
}

func TestMeterWindowsAndPrometheus(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 5, ITL: time.Millisecond})
	s2, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 7, ITL: time.Millisecond})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")
	for i := 0; i < 10; i++ {
		e.chat(nil)
	}
	// streamed, to staging: tokens come from counted events and usage
	for i := 0; i < 4; i++ {
		resp, err := e.http.Post(e.d.GatewayURL()+"/v1/chat/completions?x-ms-routing-name=staging", "application/json",
			strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	cfg := s2.Config()
	cfg.ErrorRate = 1
	s2.SetConfig(cfg)
	for i := 0; i < 2; i++ {
		resp, err := e.http.Post(e.d.GatewayURL()+"/v1/chat/completions?x-ms-routing-name=staging", "application/json", strings.NewReader(chatBody))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	var m struct {
		Slots []struct {
			Slot, Revision string
			Requests       int
			ByClass        map[string]int
			ErrorRate      float64
			OutputTokens   int
			TTFTMS         struct{ P50 float64 } `json:"ttftMs"`
		}
	}
	// The gateway records a request just after its last byte is sent, so
	// the client can be a moment ahead of the meter.
	waitFor(t, "the meter to count every request", 5*time.Second, func() bool {
		m.Slots = nil
		if err := e.c.Do(context.Background(), http.MethodGet, "/api/v1/apps/default/metrics?window=60s", nil, &m); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range m.Slots {
			n += s.Requests
		}
		return n == 16
	})
	got := map[string]int{}
	for _, s := range m.Slots {
		got[s.Slot] = s.Requests
		switch s.Slot {
		case "production":
			if s.Requests != 10 || s.ByClass["2xx"] != 10 || s.OutputTokens != 50 || s.ErrorRate != 0 {
				t.Errorf("production: %+v", s)
			}
		case "staging":
			if s.Requests != 6 || s.ByClass["5xx"] != 2 || s.OutputTokens != 28 || s.TTFTMS.P50 <= 0 {
				t.Errorf("staging: %+v", s)
			}
		}
	}
	if got["production"] != 10 || got["staging"] != 6 {
		t.Fatalf("requests by slot: %v", got)
	}
	resp, err := http.Get(e.d.AdminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`modelslot_gateway_requests_total{app="default",code="200",revision=`,
		`modelslot_gateway_requests_total{app="default",code="500",revision=`,
		`modelslot_gateway_time_to_first_token_seconds_bucket`,
		`modelslot_gateway_output_tokens_total`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestRestartWithConfigKeepsRunTimeChanges: the config file's declarations
// are applied when they change, so a restart with the same file does not
// undo a swap or a traffic change made through the API.
func TestRestartWithConfigKeepsRunTimeChanges(t *testing.T) {
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	yaml := `
listen: 127.0.0.1:0
admin: 127.0.0.1:0
apps:
  - name: default
    slots:
      - name: production
        deployment: {version: v1, url: ` + v1 + `}
      - name: staging
        deployment: {version: v2, url: ` + v2 + `}
    traffic: {staging: 10}
`
	dir := t.TempDir()
	load := func() *config.Config {
		cfg, err := config.Parse(strings.NewReader(yaml))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Data = dir
		return cfg
	}
	e := startDaemonWith(t, load())
	ctx := context.Background()
	if _, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging"}); err != nil {
		t.Fatal(err)
	}
	e.traffic(rule("staging", 30))
	e.stop()

	e = startDaemonWith(t, load())
	st, err := e.c.Status(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if v := st.Slots[0].Slot.Deployment.Version; v != "v2" {
		t.Errorf("after a restart with the same config production serves %s, want v2 (the swap kept)", v)
	}
	if p := st.Routing.Percent("staging"); p != 30 {
		t.Errorf("after a restart staging has %g%%, want the 30%% set at run time", p)
	}
	e.stop()

	// A changed declaration is applied.
	yaml = strings.Replace(yaml, "traffic: {staging: 10}", "traffic: {staging: 5}", 1)
	e = startDaemonWith(t, load())
	st, _ = e.c.Status(ctx, "default")
	if p := st.Routing.Percent("staging"); p != 5 {
		t.Errorf("a changed traffic declaration was not applied: staging has %g%%", p)
	}
}
