package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/modelslot/modelslot/sim"
)

// startDaemon runs a daemon in-process on loopback and returns the flags
// that point the CLI at it.
func startDaemon(t *testing.T) []string {
	t.Helper()
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg})
	if err != nil {
		t.Fatalf("start daemon: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		d.Close(ctx)
	})
	return []string{"--server", d.AdminURL(), "--data", cfg.Data}
}

// startSim serves a simulated model on loopback.
func startSim(t *testing.T) string {
	t.Helper()
	s, err := sim.NewChecked(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return ts.URL
}

func args(cmd string, extra []string) []string {
	return append(strings.Fields(cmd), extra...)
}

// wantLines checks that out has a line matching each pattern (columns of a
// table are separated by runs of spaces: write them as \s+).
func wantLines(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(`(?m)^` + p + `\s*$`).MatchString(out) {
			t.Errorf("output has no line matching %q:\n%s", p, out)
		}
	}
}

func TestLocalStatusTrafficSlotList(t *testing.T) {
	d := startDaemon(t)
	backend := startSim(t)

	out := mustRun(t, args("slot create staging", d)...)
	wantLines(t, out, "slot staging created in app default; deploy to it with `modelslot deploy staging --url ...`")
	mustRun(t, args("deploy production --url "+backend+" --version v1", d)...)
	out = mustRun(t, args("deploy staging --url "+backend+" --version v2", d)...)
	if !regexp.MustCompile(`^slot staging now serves v2 \(revision [0-9a-f]{12}\)\n$`).MatchString(out) {
		t.Errorf("deploy printed %q", out)
	}
	out = mustRun(t, args("traffic set staging=10", d)...)
	wantLines(t, out,
		`SLOT\s+SHARE`,
		`production\s+90%`,
		`staging\s+10%`,
		`routing generation \d+ \(cookies of older generations are ignored\)`,
		`mirroring: off`,
	)

	out = mustRun(t, args("status", d)...)
	wantLines(t, out,
		`app default \(routing generation \d+\)`,
		`SLOT\s+VERSION\s+REVISION\s+TRAFFIC\s+HEALTHY\s+IN-FLIGHT\s+BACKEND`,
		`production\s+v1\s+[0-9a-f]{12}\s+90%\s+yes\s+0\s+`+regexp.QuoteMeta(backend),
		`staging\s+v2\s+[0-9a-f]{12}\s+10%\s+yes\s+0\s+`+regexp.QuoteMeta(backend),
	)
	out = mustRun(t, args("traffic show", d)...)
	wantLines(t, out, `production\s+90%`, `staging\s+10%`)
	out = mustRun(t, args("slot list", d)...)
	wantLines(t, out,
		`SLOT\s+VERSION\s+REVISION\s+TRAFFIC\s+HEALTHY\s+BACKEND`,
		`production\s+v1\s+[0-9a-f]{12}\s+90%\s+yes\s+`+regexp.QuoteMeta(backend),
		`staging\s+v2\s+[0-9a-f]{12}\s+10%\s+yes\s+`+regexp.QuoteMeta(backend),
	)

	// JSON is the API's shape.
	out = mustRun(t, args("traffic show -o json", d)...)
	var tr struct {
		Split []struct {
			Slot    string  `json:"slot"`
			Percent float64 `json:"percent"`
		} `json:"split"`
	}
	if err := json.Unmarshal([]byte(out), &tr); err != nil || len(tr.Split) != 2 || tr.Split[1].Slot != "staging" || tr.Split[1].Percent != 10 {
		t.Errorf("traffic show -o json = %s (%v)", out, err)
	}

	out = mustRun(t, args("traffic clear", d)...)
	wantLines(t, out, `production\s+100%`)
	mustRun(t, args("slot delete staging", d)...)
	out = mustRun(t, args("slot list", d)...)
	if strings.Contains(out, "staging") {
		t.Errorf("slot list after delete:\n%s", out)
	}
}

func TestBadFlags(t *testing.T) {
	d := startDaemon(t)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"traffic not a number", args("traffic set staging=abc", d), []string{`traffic set: "staging=abc": "abc" is not a number`}},
		{"traffic not an assignment", args("traffic set staging", d), []string{`is not SLOT=PERCENT`}},
		{"output yaml", args("status --output yaml", d), []string{`--output "yaml" is not valid: use table or json`}},
		{"platform gcp", args("status --platform gcp", d), []string{`--platform "gcp" is not valid: use local`, "or azure"}},
		{"azure flag on local", args("slot list --subscription 0000", d), []string{"--subscription applies only to --platform azure"}},
		{"azure config on local", args("status --azure-config x.yaml", d), []string{"--azure-config applies only to --platform azure"}},
		{"image on local", args("deploy staging --image llm:v2", d), []string{"--image applies only to --platform azure"}},
		{"state on local", args("rollout history --state x.db", d), []string{"--state applies only to --platform azure"}},
		{"unknown slot", args("traffic set nope=10", d), []string{`has no slot "nope"`}},
		{"azure needs an app", []string{"status", "--platform", "azure", "--subscription", "s", "--resource-group", "rg"}, []string{"--azure-app is required"}},
		{"azure needs a subscription", []string{"status", "--platform", "azure", "--resource-group", "rg", "--azure-app", "llm"}, []string{"--subscription is required"}},
		{"azure app mismatch", []string{"status", "--platform", "azure", "--subscription", "s", "--resource-group", "rg", "--azure-app", "llm", "--app", "other"}, []string{`--app "other" differs from --azure-app "llm"`}},
		{"azure bad auth", []string{"status", "--platform", "azure", "--subscription", "s", "--resource-group", "rg", "--azure-app", "llm", "--azure-auth", "password"}, []string{`--azure-auth="password" is not valid`}},
		{"azure custom cloud", []string{"status", "--platform", "azure", "--subscription", "s", "--resource-group", "rg", "--azure-app", "llm", "--azure-cloud", "custom"}, []string{"--azure-cloud=custom needs --azure-arm-endpoint"}},
		{"azure server flag", []string{"status", "--platform", "azure", "--server", "127.0.0.1:1"}, []string{"--server applies only to the local daemon"}},
		{"azure url flag", []string{"deploy", "staging", "--platform", "azure", "--subscription", "s", "--resource-group", "rg", "--azure-app", "llm", "--url", "http://x"}, []string{"--url applies only to the local daemon"}},
		{"azure mirror", []string{"traffic", "mirror", "staging=5", "--platform", "azure", "--subscription", "s", "--resource-group", "rg", "--azure-app", "llm"}, []string{"Azure App Service cannot mirror traffic"}},
		{"azure pause", []string{"rollout", "pause", "--platform", "azure", "--subscription", "s", "--resource-group", "rg", "--azure-app", "llm"}, []string{"stop that process with Ctrl-C"}},
	} {
		t.Run(tc.name, func(t *testing.T) { wantError(t, tc.args, tc.want...) })
	}
}

func TestPlatformFromEnvironment(t *testing.T) {
	t.Setenv("MODELSLOT_PLATFORM", "gcp")
	wantError(t, []string{"status"}, `$MODELSLOT_PLATFORM "gcp" is not valid`)
}

// TestMainPrintsErrors runs main() in a child process: the message is
// printed as "error: <message>" and the exit status is non-zero.
func TestMainPrintsErrors(t *testing.T) {
	a, _ := json.Marshal([]string{"traffic", "set", "staging=abc", "--server", "127.0.0.1:1", "--token", "x"})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "MODELSLOT_TEST_MAIN="+string(a))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1", err)
	}
	if got, want := stderr.String(), "error: traffic set: \"staging=abc\": \"abc\" is not a number\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}
