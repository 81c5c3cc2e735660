package sim_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/sim"
)

func TestAdminGetConfig(t *testing.T) {
	_, url := start(t, sim.Config{Model: "v1", TTFT: 20 * time.Millisecond, ITL: 1500 * time.Microsecond, ErrorRate: 0.25})
	resp, raw := do(t, http.MethodGet, url+"/admin/config", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, body %s", resp.StatusCode, raw)
	}
	got := decode[map[string]any](t, raw)
	want := map[string]any{
		"model": "v1", "ttft": "20ms", "itl": "1.5ms", "startup": "0s", "tokens": 16.0,
		"errorRate": 0.25, "errorKind": "500", "jitter": 0.0, "seed": 0.0,
		"wrongRate": 0.0, "malformedRate": 0.0, "outputScale": 1.0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, got[k], got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("config has %d fields, want %d: %s", len(got), len(want), raw)
	}
}

// TestAdminPatchChangesBehaviour makes a healthy version go bad mid-run.
func TestAdminPatchChangesBehaviour(t *testing.T) {
	s, url := start(t, sim.Config{Model: "v1", Tokens: 5})
	resp, raw := do(t, http.MethodPost, url+"/v1/chat/completions", chatBody("hi", nil))
	if resp.StatusCode != http.StatusOK || decode[completion](t, raw).Usage.CompletionTokens != 5 {
		t.Fatalf("before patch: %d %s, want 200 with 5 tokens", resp.StatusCode, raw)
	}

	for _, method := range []string{http.MethodPatch, http.MethodPost} {
		resp, raw = do(t, method, url+"/admin/config", `{"tokens": 2, "model": "v1-bad", "ttft": "1ms", "outputScale": 1.5}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s /admin/config = %d %s, want 200", method, resp.StatusCode, raw)
		}
	}
	got := decode[map[string]any](t, raw)
	if got["tokens"] != 2.0 || got["model"] != "v1-bad" || got["ttft"] != "1ms" {
		t.Errorf("patch answered %s, want the merged config", raw)
	}
	cfg := s.Config()
	if cfg.Tokens != 2 || cfg.Model != "v1-bad" || cfg.TTFT != time.Millisecond || cfg.OutputScale != 1.5 {
		t.Errorf("Config() = %+v, want the patched values", cfg)
	}

	resp, raw = do(t, http.MethodPost, url+"/v1/chat/completions", chatBody("hi", nil))
	if c := decode[completion](t, raw); c.Model != "v1-bad" || c.Usage.CompletionTokens != 3 || resp.Header.Get("x-sim-model") != "v1-bad" {
		t.Errorf("after patch: model %q, %d tokens, header %q; want v1-bad, 3 tokens (2 x 1.5)", c.Model, c.Usage.CompletionTokens, resp.Header.Get("x-sim-model"))
	}

	do(t, http.MethodPatch, url+"/admin/config", `{"errorRate": 1, "errorKind": "429"}`)
	resp, _ = do(t, http.MethodPost, url+"/v1/completions", textBody("hi", nil))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after errorRate 1: status %d, want 429", resp.StatusCode)
	}
}

func TestAdminPatchStartupRestartsLoading(t *testing.T) {
	_, url := start(t, sim.Config{})
	if resp, _ := do(t, http.MethodGet, url+"/health", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("health = %d, want 200", resp.StatusCode)
	}
	do(t, http.MethodPatch, url+"/admin/config", `{"startup": "1h"}`)
	if resp, _ := do(t, http.MethodGet, url+"/health", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("health after startup 1h = %d, want 503", resp.StatusCode)
	}
	do(t, http.MethodPatch, url+"/admin/config", `{"tokens": 3}`)
	if resp, _ := do(t, http.MethodGet, url+"/health", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("health after an unrelated patch = %d, want still 503", resp.StatusCode)
	}
	do(t, http.MethodPatch, url+"/admin/config", `{"startup": "0s"}`)
	if resp, _ := do(t, http.MethodGet, url+"/health", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("health after startup 0s = %d, want 200", resp.StatusCode)
	}
}

func TestAdminRejectsBadValues(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantField string
	}{
		{"rate above 1", `{"errorRate": 1.5}`, "errorRate"},
		{"negative wrong rate", `{"wrongRate": -0.5}`, "wrongRate"},
		{"malformed rate as string", `{"malformedRate": "half"}`, "malformedRate"},
		{"negative duration", `{"ttft": "-5ms"}`, "ttft"},
		{"unparsable duration", `{"itl": "fast"}`, "itl"},
		{"duration as number", `{"startup": 200}`, "startup"},
		{"unknown kind", `{"errorKind": "418"}`, "errorKind"},
		{"negative tokens", `{"tokens": -3}`, "tokens"},
		{"fractional tokens", `{"tokens": 2.5}`, "tokens"},
		{"jitter above 1", `{"jitter": 2}`, "jitter"},
		{"negative scale", `{"outputScale": -1}`, "outputScale"},
		{"unknown field", `{"errorrate": 0.5}`, "errorrate"},
		{"null", `{"model": null}`, "model"},
		{"not an object", `[1, 2]`, "object"},
		{"bad json", `{"tokens": `, "object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := start(t, sim.Config{Model: "keep", Tokens: 9})
			resp, raw := do(t, http.MethodPatch, url+"/admin/config", tt.body)
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400; body %s", resp.StatusCode, raw)
			}
			msg := decode[apiError](t, raw).Error.Message
			if !strings.Contains(msg, tt.wantField) {
				t.Errorf("message %q does not name %q", msg, tt.wantField)
			}
			if cfg := s.Config(); cfg.Model != "keep" || cfg.Tokens != 9 {
				t.Errorf("config changed to %+v by a rejected patch", cfg)
			}
		})
	}
}

func TestSetConfigTakesEffect(t *testing.T) {
	s, url := start(t, sim.Config{})
	if err := s.SetConfig(sim.Config{Model: "swapped", Tokens: 1}); err != nil {
		t.Fatal(err)
	}
	_, raw := do(t, http.MethodPost, url+"/v1/chat/completions", chatBody("hi", nil))
	if got := decode[completion](t, raw).text(t); got != "swapped" {
		t.Errorf("text = %q, want swapped", got)
	}
	if err := s.SetConfig(sim.Config{ErrorKind: "x"}); err == nil {
		t.Errorf("SetConfig accepted errorKind x")
	}
	if got := s.Config().Model; got != "swapped" {
		t.Errorf("model = %q after a rejected SetConfig, want swapped", got)
	}
}

func TestConfigAnswersAreCopied(t *testing.T) {
	answers := map[string]string{"q": "a"}
	s := sim.New(sim.Config{Answers: answers})
	answers["q"] = "changed"
	got := s.Config().Answers
	if got["q"] != "a" {
		t.Errorf("server saw the caller's later change: %q", got["q"])
	}
	got["q"] = "changed again"
	if s.Config().Answers["q"] != "a" {
		t.Errorf("Config() exposes the server's own map")
	}
}

func TestNewClampsBadValues(t *testing.T) {
	got := sim.New(sim.Config{ErrorRate: 1.5, WrongRate: -1, TTFT: -time.Second, Tokens: -4, OutputScale: -2, ErrorKind: "teapot"}).Config()
	want := sim.Config{Model: "sim", ErrorRate: 1, Tokens: 16, OutputScale: 1, ErrorKind: sim.Error500}
	if got.Model != want.Model || got.ErrorRate != want.ErrorRate || got.WrongRate != 0 || got.TTFT != 0 ||
		got.Tokens != want.Tokens || got.OutputScale != want.OutputScale || got.ErrorKind != want.ErrorKind {
		t.Errorf("New clamped to %+v, want %+v", got, want)
	}
}
