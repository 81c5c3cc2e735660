package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/gateway"
	"github.com/modelslot/modelslot/rollout"
	"github.com/modelslot/modelslot/sim"
)

// The end-to-end tests of shadow traffic and of the validation gates: a
// real daemon on loopback, simulated models answering the example golden
// set's prompts, user requests through the gateway.

// shadowAnswers are the canned answers of examples/answers.jsonl; their
// prompts are the golden set's.
func shadowAnswers(t *testing.T) (answers map[string]string, prompts []string) {
	t.Helper()
	answers, err := sim.LoadAnswers(filepath.Join("..", "examples", "answers.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for p := range answers {
		prompts = append(prompts, p)
	}
	return answers, prompts
}

func goldenPath(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "examples", "golden.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startShadowDaemon starts a daemon with production and staging serving
// the given simulators; rollouts look every 200ms.
func startShadowDaemon(t *testing.T, prod, staging sim.Config) *env {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	cfg.RolloutInterval = modelslot.Duration(200 * time.Millisecond)
	e := startDaemonWith(t, cfg)
	_, u1 := startSim(t, prod)
	_, u2 := startSim(t, staging)
	e.deploy(modelslot.Production, u1, "v1")
	e.deploy("staging", u2, "v2")
	return e
}

// ask sends user requests for prompts from n goroutines and returns how
// many failed.
func (e *env) ask(prompts []string, requests, workers int, stream bool) int64 {
	e.t.Helper()
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < requests; i += workers {
				body, _ := json.Marshal(map[string]any{
					"model": "default", "stream": stream,
					"messages": []map[string]string{{"role": "user", "content": prompts[i%len(prompts)]}},
				})
				resp, err := e.http.Post(e.d.GatewayURL()+"/v1/chat/completions", "application/json", strings.NewReader(string(body)))
				if err != nil {
					e.t.Logf("request %d: %v", i, err)
					failed.Add(1)
					continue
				}
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || rerr != nil {
					e.t.Logf("request %d: status %d read %v body %.300s", i, resp.StatusCode, rerr, b)
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return failed.Load()
}

// shadowStats reads GET /api/v1/apps/default/shadow.
func (e *env) shadowStats() gateway.ShadowStats {
	e.t.Helper()
	var st gateway.ShadowStats
	if err := e.c.Do(context.Background(), http.MethodGet, "/api/v1/apps/default/shadow", nil, &st); err != nil {
		e.t.Fatalf("shadow stats: %v", err)
	}
	return st
}

func (e *env) mirror(slot string, percent float64) {
	e.t.Helper()
	if _, err := e.c.SetMirror(context.Background(), "default", modelslot.MirrorRule{Slot: slot, Percent: percent}); err != nil {
		e.t.Fatalf("mirror: %v", err)
	}
}

// TestShadowNeverHurtsUsers: a shadow with a 2s first token cannot keep up
// with every request mirrored; users still get every answer, and what does
// not fit in the mirror queue is dropped and counted.
func TestShadowNeverHurtsUsers(t *testing.T) {
	answers, prompts := shadowAnswers(t)
	e := startShadowDaemon(t, sim.Config{Answers: answers}, sim.Config{Answers: answers, TTFT: 2 * time.Second})
	e.mirror("staging", 100)
	a, err := e.c.App(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if a.Mirror == nil || a.Mirror.Slot != "staging" || a.Mirror.Percent != 100 {
		t.Fatalf("app mirror %+v, want staging=100", a.Mirror)
	}
	tr, err := e.c.Traffic(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if tr.Mirror == nil || tr.Mirror.Slot != "staging" {
		t.Fatalf("traffic view mirror %+v, want staging", tr.Mirror)
	}

	if failed := e.ask(prompts, 400, 8, false); failed != 0 {
		t.Fatalf("%d of 400 user requests failed with a slow shadow, want 0", failed)
	}
	if failed := e.ask(prompts, 100, 8, true); failed != 0 {
		t.Fatalf("%d of 100 streamed user requests failed with a slow shadow, want 0", failed)
	}
	st := e.shadowStats()
	if st.Dropped == 0 {
		t.Errorf("dropped %d mirrored requests with a 2s shadow and a full queue, want > 0", st.Dropped)
	}
	if st.Sent+st.Dropped > 500 || st.Slot != "staging" {
		t.Errorf("sent %d + dropped %d of 500, rule %q; want at most 500 and staging", st.Sent, st.Dropped, st.Slot)
	}
	// The user's slot meter counts users only: production served 500.
	if n := meteredRequests(t, e, "staging"); n > 0 {
		t.Errorf("staging's slot meter counted %d shadow requests, want 0", n)
	}

	if _, err := e.c.ClearMirror(context.Background(), "default"); err != nil {
		t.Fatal(err)
	}
	if st := e.shadowStats(); st.Slot != "" {
		t.Errorf("mirror rule %q after clearing, want none", st.Slot)
	}
}

// TestShadowComparisons: wrong and malformed shadows show up in the
// comparisons.
func TestShadowComparisons(t *testing.T) {
	answers, prompts := shadowAnswers(t)
	tests := []struct {
		name   string
		shadow sim.Config
		stream bool
		check  func(t *testing.T, st gateway.ShadowStats)
	}{
		{"same answers", sim.Config{Answers: answers}, true, func(t *testing.T, st gateway.ShadowStats) {
			if st.ExactMatchRate != 1 || st.StatusMismatches != 0 {
				t.Errorf("exact match %v, status mismatches %d; want 1 and 0", st.ExactMatchRate, st.StatusMismatches)
			}
		}},
		{"wrong answers", sim.Config{Answers: answers, WrongRate: 1}, false, func(t *testing.T, st gateway.ShadowStats) {
			if st.ExactMatchRate != 0 || st.Shadow.Refused != st.TextCompared {
				t.Errorf("exact match %v, shadow refused %d of %d; want 0 and all", st.ExactMatchRate, st.Shadow.Refused, st.TextCompared)
			}
		}},
		{"malformed answers", sim.Config{Answers: answers, MalformedRate: 1}, true, func(t *testing.T, st gateway.ShadowStats) {
			if st.Shadow.JSONValidRate != 0 || st.Shadow.JSONAnswers != st.TextCompared {
				t.Errorf("shadow JSON valid rate %v over %d JSON answers of %d; want 0 over all", st.Shadow.JSONValidRate, st.Shadow.JSONAnswers, st.TextCompared)
			}
			if st.Production.JSONValidRate != 1 {
				t.Errorf("production JSON valid rate %v, want 1", st.Production.JSONValidRate)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := startShadowDaemon(t, sim.Config{Answers: answers}, tc.shadow)
			e.mirror("staging", 50)
			if failed := e.ask(prompts, 80, 4, tc.stream); failed != 0 {
				t.Fatalf("%d user requests failed", failed)
			}
			var st gateway.ShadowStats
			waitFor(t, "40 compared mirrors", 20*time.Second, func() bool {
				st = e.shadowStats()
				return st.Compared >= 40
			})
			if st.Compared != 40 || st.TextCompared != 40 || st.Dropped != 0 {
				t.Errorf("compared %d, texts %d, dropped %d; want 40, 40, 0", st.Compared, st.TextCompared, st.Dropped)
			}
			tc.check(t, st)
		})
	}
}

// waitRollout waits for a rollout to end and returns it.
func (e *env) waitRollout(id string, timeout time.Duration) *rollout.Rollout {
	e.t.Helper()
	var ro *rollout.Rollout
	waitFor(e.t, "rollout "+id+" to end", timeout, func() bool {
		var err error
		if ro, err = e.c.Rollout(context.Background(), id); err != nil {
			e.t.Fatal(err)
		}
		return !ro.State.Active()
	})
	return ro
}

const validatedPlan = `
name: validated
interval: 1s
onInconclusive: fail
analysis:
  gates: []
steps:
  - bake:
      max: 60s
      gates:
        - kind: loadtest
          rate: 10
          duration: 2s
          slo: {ttft: 500ms, e2e: 2s}
          maxRatio: 1.5
        - kind: eval
          golden: %s
          margin: 0.1
  - traffic: 20
  - swap
`

// TestRolloutValidationGates: a plan whose first step validates the
// candidate with a load test and the golden set before any user traffic
// moves promotes a good candidate and rolls back a fast but wrong one, with
// the evidence stored.
func TestRolloutValidationGates(t *testing.T) {
	answers, _ := shadowAnswers(t)
	plan := fmt.Sprintf(validatedPlan, goldenPath(t))
	tests := []struct {
		name      string
		candidate sim.Config
		want      rollout.State
		eval      rollout.Verdict
	}{
		{"good candidate", sim.Config{Answers: answers, TTFT: 5 * time.Millisecond}, rollout.Succeeded, rollout.Pass},
		{"fast but wrong", sim.Config{Answers: answers, WrongRate: 1}, rollout.RolledBack, rollout.Fail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := startShadowDaemon(t, sim.Config{Answers: answers, TTFT: 5 * time.Millisecond}, tc.candidate)
			ro, err := e.c.StartRollout(context.Background(), "default", "staging", plan)
			if err != nil {
				t.Fatalf("start rollout: %v", err)
			}
			ro = e.waitRollout(ro.ID, 45*time.Second)
			if ro.State != tc.want {
				t.Fatalf("rollout %s: %s (%s), want %s", ro.ID, ro.State, ro.Reason, tc.want)
			}
			if len(ro.Verdicts) == 0 || len(ro.Verdicts[0].Gates) != 2 {
				t.Fatalf("verdicts %+v, want the validation bake's with 2 gates", ro.Verdicts)
			}
			lt, ev := ro.Verdicts[0].Gates[0], ro.Verdicts[0].Gates[1]
			if lt.Verdict != rollout.Pass {
				t.Errorf("loadtest: %s (%s), want pass", lt.Verdict, lt.Reason)
			}
			if ev.Verdict != tc.eval {
				t.Errorf("eval: %s (%s), want %s", ev.Verdict, ev.Reason, tc.eval)
			}
			var lte struct {
				Checks     []json.RawMessage `json:"checks"`
				Comparison struct {
					Rounds int `json:"rounds"`
				} `json:"comparison"`
			}
			if err := json.Unmarshal(lt.Evidence, &lte); err != nil || len(lte.Checks) == 0 || lte.Comparison.Rounds != 2 {
				t.Errorf("loadtest evidence %s: %v", lt.Evidence, err)
			}
			var eve struct {
				Cases        int     `json:"cases"`
				CandPassRate float64 `json:"candidatePassRate"`
				BasePassRate float64 `json:"basePassRate"`
			}
			if err := json.Unmarshal(ev.Evidence, &eve); err != nil || eve.Cases != 40 || eve.BasePassRate != 1 {
				t.Errorf("eval evidence %s: %v", ev.Evidence, err)
			}
			if tc.eval == rollout.Fail && eve.CandPassRate != 0 {
				t.Errorf("wrong candidate's pass rate %v, want 0", eve.CandPassRate)
			}
			// The wrong candidate never got user traffic, and the gates'
			// own requests stayed out of its meter.
			if tc.want == rollout.RolledBack {
				a, _ := e.c.App(context.Background(), "default")
				if len(a.Routing.Rules) != 0 || a.Slot(modelslot.Production).Deployment.Version != "v1" {
					t.Errorf("after the rollback: rules %+v, production %s; want none and v1", a.Routing.Rules, a.Slot(modelslot.Production).Deployment.Version)
				}
				if n := meteredRequests(t, e, "staging"); n > 0 {
					t.Errorf("staging's meter counted %d requests, all of them the gates'; want 0", n)
				}
			}
		})
	}
}

// meteredRequests is the number of requests the slot's meter counted in
// app "default" over the last hour.
func meteredRequests(t *testing.T, e *env, slot string) int {
	t.Helper()
	var metrics struct {
		Slots []gateway.Stats `json:"slots"`
	}
	raw, err := e.c.Metrics(context.Background(), "default", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &metrics); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range metrics.Slots {
		if s.Slot == slot {
			n += s.Requests
		}
	}
	return n
}

const shadowPlan = `
name: shadow-validated
interval: 500ms
onInconclusive: fail
analysis:
  gates: []
steps:
  - bake:
      max: 30s
      gates:
        - kind: shadow
          minSamples: 40
          minExactMatch: 0.9
  - traffic: 20
`

// TestRolloutShadowGate: with production mirrored to the candidate, a
// shadow gate passes a candidate that answers like production and fails one
// that does not, before any user is routed to it.
func TestRolloutShadowGate(t *testing.T) {
	answers, prompts := shadowAnswers(t)
	tests := []struct {
		name      string
		candidate sim.Config
		want      rollout.State
	}{
		{"same answers", sim.Config{Answers: answers}, rollout.Succeeded},
		{"wrong answers", sim.Config{Answers: answers, WrongRate: 1}, rollout.RolledBack},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := startShadowDaemon(t, sim.Config{Answers: answers}, tc.candidate)
			e.mirror("staging", 100)
			ro, err := e.c.StartRollout(context.Background(), "default", "staging", shadowPlan)
			if err != nil {
				t.Fatalf("start rollout: %v", err)
			}
			stop := make(chan struct{})
			done := make(chan int64)
			go func() {
				var failed int64
				for {
					select {
					case <-stop:
						done <- failed
						return
					default:
						failed += e.ask(prompts, 8, 2, false)
					}
				}
			}()
			ro = e.waitRollout(ro.ID, 40*time.Second)
			close(stop)
			if failed := <-done; failed != 0 {
				t.Errorf("%d user requests failed", failed)
			}
			if ro.State != tc.want {
				t.Fatalf("rollout: %s (%s), want %s", ro.State, ro.Reason, tc.want)
			}
			last := ro.Verdicts[0].Gates[0]
			var ev struct {
				Samples int `json:"samples"`
				Checks  []struct {
					Name    string `json:"name"`
					Verdict string `json:"verdict"`
				} `json:"checks"`
			}
			if err := json.Unmarshal(last.Evidence, &ev); err != nil || ev.Samples < 40 || len(ev.Checks) == 0 {
				t.Fatalf("shadow evidence %s: %v", last.Evidence, err)
			}
			if tc.want == rollout.RolledBack && !strings.Contains(last.Reason, "exact_match") {
				t.Errorf("shadow verdict %q does not name exact_match", last.Reason)
			}
		})
	}
}
