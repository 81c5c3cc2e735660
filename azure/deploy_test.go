package azure_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/azure"
	"github.com/modelslot/modelslot/azure/azuretest"
)

// TestDeployWaitsForNewContent: App Service keeps the old container
// answering while the new one starts. The old content is healthy, but the
// deploy must return only once the new content (its revision in the
// X-Modelslot-Revision header) answers.
func TestDeployWaitsForNewContent(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	site.EchoRevision()
	d, _ := newDriver(t, site)
	old := deploy(t, d, site, "staging", "llm:v1", "v1")

	var newAnswers atomic.Int32
	site.ServeImage("llm:v2", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		newAnswers.Add(1)
	}))
	site.SlowRestart(8) // the old content answers the next 8 requests
	s, err := d.Deploy(ctx(t), site.App, "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{
		Version:  "v2",
		Settings: map[string]string{azure.ImageSetting: "llm:v2"},
		Warmup:   modelslot.Warmup{Path: "/health", Timeout: modelslot.Duration(20 * time.Second)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if newAnswers.Load() == 0 {
		t.Fatalf("the deploy of revision %s returned while the old content (%s) still answered", s.Deployment.Revision, old.Deployment.Revision)
	}
	st, err := d.Status(ctx(t), site.App)
	if err != nil {
		t.Fatal(err)
	}
	for _, ss := range st.Slots {
		if ss.Slot.Name == "staging" && !ss.Healthy {
			t.Errorf("staging after the deploy: %s", ss.Health)
		}
	}
}

// TestDeployNewContentNeverHealthy: the old content answers healthy during
// the restart and the new one never does: the deploy fails, names the old
// revision it saw, and puts the old image and settings back.
func TestDeployNewContentNeverHealthy(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	site.EchoRevision()
	d, _ := newDriver(t, site)
	old := deploy(t, d, site, "staging", "llm:v1", "v1")
	site.ServeImage("llm:broken", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "model failed to load", http.StatusInternalServerError)
	}))
	site.SlowRestart(3)
	_, err := d.Deploy(ctx(t), site.App, "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{
		Version:  "v2",
		Settings: map[string]string{azure.ImageSetting: "llm:broken", "TEMPERATURE": "0.1"},
		Warmup:   modelslot.Warmup{Path: "/health", Timeout: modelslot.Duration(500 * time.Millisecond)},
	}})
	wantCode(t, err, modelslot.EUNAVAILABLE, "new content", "put back")
	if got := site.Image("staging"); got != "llm:v1" {
		t.Errorf("image after the failed deploy = %s, want llm:v1 back", got)
	}
	set := site.AppSettings("staging")
	if set["MODEL_VERSION"] != "v1" || set[azure.SettingRevision] != old.Deployment.Revision {
		t.Errorf("settings after the failed deploy: version %q revision %q, want v1 and %s back", set["MODEL_VERSION"], set[azure.SettingRevision], old.Deployment.Revision)
	}
	if _, ok := set["TEMPERATURE"]; ok {
		t.Error("the failed deploy's setting TEMPERATURE stayed")
	}
}

// TestDeployRequireRevision: a server that shows no revision cannot be
// told apart from the old one; with RequireRevision its answers do not
// count.
func TestDeployRequireRevision(t *testing.T) {
	site := azuretest.NewFakeSite(t, azuretest.Options{Slots: []string{"staging"}})
	cfg := site.Config()
	cfg.RequireRevision = true
	d, err := azure.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Deploy(ctx(t), site.App, "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{
		Settings: map[string]string{azure.ImageSetting: "llm:v1"},
		Warmup:   modelslot.Warmup{Timeout: modelslot.Duration(300 * time.Millisecond)},
	}})
	wantCode(t, err, modelslot.EUNAVAILABLE, "X-Modelslot-Revision")
	site.EchoRevision()
	if _, err := d.Deploy(ctx(t), site.App, "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{
		Settings: map[string]string{azure.ImageSetting: "llm:v1"},
		Warmup:   modelslot.Warmup{Timeout: modelslot.Duration(10 * time.Second)},
	}}); err != nil {
		t.Fatalf("deploy to a server that shows its revision: %v", err)
	}
}
