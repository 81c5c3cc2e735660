package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/rollout"
)

// TestMissingArgumentNamed: every command with a required argument says
// which one is missing, with an example.
func TestMissingArgumentNamed(t *testing.T) {
	for _, tc := range []struct {
		args string
		want string
	}{
		{"swap", "swap: name the slot to swap into production, e.g. modelslot swap staging"},
		{"deploy --url http://127.0.0.1:1", "deploy: name the slot to deploy to, e.g. modelslot deploy staging"},
		{"rollout start --plan p.yaml", "rollout start: name the slot to roll out into production, e.g. modelslot rollout start staging --plan"},
		{"slot create", "slot create: name the new slot, e.g. modelslot slot create staging"},
		{"slot delete", "slot delete: name the slot to delete, e.g. modelslot slot delete canary"},
		{"traffic set", "traffic set: give each slot's share, e.g. modelslot traffic set staging=10"},
		{"traffic mirror", "traffic mirror: give the slot and the share of production's requests to mirror to it, or clear, e.g. modelslot traffic mirror staging=5"},
		{"swap staging canary", "swap: one argument, got 2 (staging canary)"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			wantError(t, strings.Fields(tc.args+" --server 127.0.0.1:1 --token x"), tc.want)
		})
	}
}

// TestMissingPlanFileNamed: a plan file that is not there is named.
func TestMissingPlanFileNamed(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-plan.yaml")
	wantError(t, []string{"rollout", "start", "staging", "--plan", missing, "--server", "127.0.0.1:1", "--token", "x"},
		"rollout start: cannot read the plan file "+missing+": no such file or directory")
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("steps: [{traffic: 120}]\n"), 0o644)
	wantError(t, []string{"rollout", "start", "staging", "--plan", bad, "--server", "127.0.0.1:1", "--token", "x"},
		bad+": steps[0].traffic: 120 is out of range")
}

// TestHelpFlagGroups: the top-level help lists the global flags; the
// Azure flags have their own section, only on commands that take them.
func TestHelpFlagGroups(t *testing.T) {
	section := func(out, title string) string {
		i := strings.Index(out, "\n"+title+"\n")
		if i < 0 {
			return ""
		}
		rest := out[i+len(title)+2:]
		if j := strings.Index(rest, "\n\n"); j >= 0 {
			rest = rest[:j]
		}
		return rest
	}
	root := mustRun(t, "--help")
	globals := section(root, "Global Flags (of every command that manages slots, traffic and rollouts):")
	for _, f := range []string{"--server", "--token", "--app", "--output"} {
		if !strings.Contains(globals, f) {
			t.Errorf("top-level help: no %s among the global flags:\n%s", f, root)
		}
	}
	if strings.Contains(root, "--subscription") {
		t.Errorf("top-level help lists Azure flags:\n%s", root)
	}
	for _, cmd := range []string{"deploy", "swap", "status", "slot list", "traffic set", "rollout start"} {
		out := mustRun(t, append(strings.Fields(cmd), "--help")...)
		az := section(out, "Azure Flags (with --platform azure; see docs/AZURE.md):")
		if !strings.Contains(az, "--subscription") || !strings.Contains(az, "--azure-config") {
			t.Errorf("%s --help: no Azure section with --subscription:\n%s", cmd, out)
		}
		if strings.Contains(section(out, "Flags:"), "--subscription") || strings.Contains(section(out, "Global Flags:"), "--subscription") {
			t.Errorf("%s --help: Azure flags among the others:\n%s", cmd, out)
		}
	}
	for _, cmd := range []string{"loadtest", "sim", "traffic mirror", "rollout pause"} {
		if out := mustRun(t, append(strings.Fields(cmd), "--help")...); strings.Contains(out, "Azure Flags") || strings.Contains(out, "--subscription") {
			t.Errorf("%s --help lists Azure flags:\n%s", cmd, out)
		}
	}
}

// TestConflictSuggestsWorkingCommand: a manual change during a rollout is
// refused with a command that works as written.
func TestConflictSuggestsWorkingCommand(t *testing.T) {
	d := startDaemon(t)
	backend := startSim(t)
	mustRun(t, args("deploy production --url "+backend+" --version v1", d)...)
	mustRun(t, args("slot create staging", d)...)
	mustRun(t, args("deploy staging --url "+backend+"/ --version v2", d)...)
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(plan, []byte("steps:\n  - traffic: 10\n  - pause\n"), 0o644)
	mustRun(t, args("rollout start staging --plan "+plan, d)...)
	err := wantError(t, args("traffic set staging=20", d), "`modelslot rollout pause`", "`modelslot rollout abort`")
	if strings.Contains(err.Error(), "pause default") {
		t.Errorf("the suggestion names the app as an argument: %v", err)
	}
	mustRun(t, args("rollout abort", d)...)
}

// TestDeploySaysWhatItWaitsFor: a deploy that waits for health says so
// every few seconds; interrupted, it says what the slot serves.
func TestDeploySaysWhatItWaitsFor(t *testing.T) {
	defer func(d time.Duration) { deployProgressEvery = d }(deployProgressEvery)
	deployProgressEvery = 50 * time.Millisecond
	d := startDaemon(t)
	backend := startSim(t)
	sick := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(sick.Close)
	mustRun(t, args("deploy production --url "+backend+" --version v1", d)...)
	mustRun(t, args("slot create staging", d)...)
	mustRun(t, args("deploy staging --url "+backend+"/ --version v1", d)...)

	_, stderr, err := run(t, args("deploy staging --url "+sick.URL+" --version v2 --warmup-timeout 1s", d)...)
	if err == nil {
		t.Fatal("deploying an unhealthy server succeeded")
	}
	if want := "waiting for the new deployment of slot staging to answer GET " + sick.URL + "/health: "; !strings.Contains(stderr, want) || !strings.Contains(stderr, "timeout 1s") {
		t.Errorf("stderr = %q, want %q ... timeout 1s", stderr, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, stderr, err = runCtx(t, ctx, args("deploy staging --url "+sick.URL+" --version v2 --warmup-timeout 1m", d)...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 130 {
		t.Fatalf("interrupted deploy: %v, want exit status 130", err)
	}
	if want := "the deploy to slot staging stopped before the new version was healthy; slot staging still serves v1 (revision "; !strings.Contains(stderr, want) {
		t.Errorf("stderr = %q, want %q", stderr, want)
	}
	if strings.Contains(stderr, "cannot reach the daemon") {
		t.Errorf("stderr blames the daemon: %q", stderr)
	}
}

// syncBuffer is one output for stdout and stderr, in the order written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLoadtestClearsStatusLine: on a terminal, the live status line is
// cleared before the report starts, not after it.
func TestLoadtestClearsStatusLine(t *testing.T) {
	old := isTerminal
	isTerminal = func(w io.Writer) bool { return true }
	defer func() { isTerminal = old }()
	backend := startSim(t)
	var out syncBuffer
	root := newRootCmd()
	root.SetArgs([]string{"loadtest", "--url", backend, "--rate", "40", "--requests", "40"})
	root.SetOut(&out)
	root.SetErr(&out)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("loadtest: %v\n%s", err, out.String())
	}
	s := out.String()
	report := strings.Index(s, "Load:")
	if report < 0 || !strings.Contains(s, "in flight") {
		t.Fatalf("no report or no status line:\n%q", s)
	}
	if last := strings.LastIndex(s, "\r\033[K"); last > report || strings.Contains(s[last+len("\r\033[K"):report], "in flight") {
		t.Errorf("the status line is not cleared before the report:\n%q", s)
	}
}

// TestRolloutStartWarnsAndWatchStops: starting a rollout of the version
// production serves warns; Ctrl-C on a watch says that the rollout goes on
// and how to pause or abort it.
func TestRolloutStartWarnsAndWatchStops(t *testing.T) {
	d := startDaemon(t)
	backend := startSim(t)
	mustRun(t, args("deploy production --url "+backend+" --version v1", d)...)
	mustRun(t, args("slot create staging", d)...)
	mustRun(t, args("deploy staging --url "+backend+" --version v1", d)...)
	plan := filepath.Join(t.TempDir(), "plan.yaml")
	os.WriteFile(plan, []byte("steps:\n  - traffic: 10\n  - pause\n"), 0o644)
	out, stderr, err := run(t, args("rollout start staging --plan "+plan, d)...)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "rollout r-") || !strings.Contains(stderr, `warning: slot "staging" holds v1 (revision `) || !strings.Contains(stderr, "the version production serves") {
		t.Errorf("rollout start printed %q, stderr %q: want a warning", out, stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	out, stderr, err = runCtx(t, ctx, args("rollout status --watch", d)...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 130 {
		t.Fatalf("interrupted watch: %v, want exit status 130", err)
	}
	for _, want := range []string{"stopped watching: rollout r-", "goes on in the daemon", "`modelslot rollout status --watch`", "`modelslot rollout pause`", "`modelslot rollout abort`"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q has no %q", stderr, want)
		}
	}
	if !strings.Contains(out, "paused") {
		t.Errorf("watch printed %q", out)
	}
}

// TestWatchShowsProgress: --watch prints the judged phase's numbers at
// every look: time judged and deadline, requests, and per check the
// effect, interval, limit and requests still needed.
func TestWatchShowsProgress(t *testing.T) {
	plan, err := rollout.ParsePlan([]byte("steps:\n  - traffic: 10\n  - bake: {duration: 1m, max: 5m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	needed, secs := int64(120), 30.0
	running := &rollout.Rollout{
		ID: "r-1", App: "default", Slot: "staging", State: rollout.Running, Plan: plan, Step: 1, Traffic: 10,
		Current: &rollout.StepState{Index: 1, Kind: "bake", StartedAt: now.Add(-time.Minute), Phase: &rollout.Phase{
			StartedAt: now.Add(-time.Minute), JudgedFrom: now.Add(-30 * time.Second), LookedAt: now, Looks: 6,
			MinDuration: modelslot.Duration(time.Minute), Deadline: now.Add(4 * time.Minute),
			CandidateRequests: 120, BaselineRequests: 1080, CandidateRate: 4,
			Warmup: &rollout.PhaseWarmup{Until: now.Add(-30 * time.Second), Requests: 50, CandidateRequests: 120, BaselineRequests: 1000, EndedAt: now.Add(-30 * time.Second)},
			Gates: []rollout.GateState{{Kind: "metrics", Result: &rollout.GateResult{Verdict: rollout.Inconclusive, Checks: []rollout.CheckProgress{
				{Metric: "latency", Verdict: rollout.Inconclusive, CandidateN: 120, BaselineN: 120, Effect: 0.52, Lower: 0.4, Upper: 0.64, Threshold: 0.6, Needed: &needed, NeededSeconds: &secs},
			}}}},
		}},
	}
	done := *running
	done.State, done.Current, done.Reason = rollout.Succeeded, nil, "all 2 steps done"
	calls := 0
	get := func(ctx context.Context, id string) (*rollout.Rollout, error) {
		if calls++; calls == 1 {
			return running, nil
		}
		return &done, nil
	}
	var out bytes.Buffer
	if err := watchRollout(context.Background(), &out, get, "r-1", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"step 2/2 bake: judged for 30s (needs 1m0s), deadline in 4m0s; candidate 120 requests (4.0/s), production 1080",
		"warm-up done after 30s: 120 candidate and 1000 production requests, not judged",
		"latency            inconclusive effect 0.52 [0.4, 0.64], limit 0.6, 120 requests; ~120 more requests (~30s at the current rate)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("watch output has no %q:\n%s", want, out.String())
		}
	}
}
