package sqlite_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/sqlite"
)

func open(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestAppsSurviveReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db := open(t, path)
	app := &modelslot.App{Name: "chat", MaxSlots: 5, Slots: []*modelslot.Slot{
		{Name: "production", Deployment: &modelslot.Deployment{Revision: "r1", Version: "v1", URL: "http://127.0.0.1:1"}},
		{Name: "staging"},
	}, Routing: modelslot.Routing{Rules: []modelslot.TrafficRule{{Slot: "staging", Percent: 10}}, Generation: 3}}
	sw := &modelslot.SwapRecord{App: "chat", Source: "staging", Target: "production", Status: modelslot.SwapRunning}
	if err := db.AddSwap(ctx, sw); err != nil {
		t.Fatal(err)
	}
	sw.Status = modelslot.SwapCompleted
	if err := db.PutApp(ctx, app, sw); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = open(t, path)
	apps, err := db.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 1 || apps[0].Name != "chat" || len(apps[0].Slots) != 2 || apps[0].Routing.Percent("staging") != 10 || apps[0].Routing.Generation != 3 {
		t.Fatalf("got %+v", apps)
	}
	swaps, err := db.Swaps(ctx, "chat", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(swaps) != 1 || swaps[0].Status != modelslot.SwapCompleted || swaps[0].ID != sw.ID {
		t.Fatalf("swaps = %+v", swaps)
	}
}

func TestDeploymentsRolloutsEvents(t *testing.T) {
	ctx := context.Background()
	db := open(t, filepath.Join(t.TempDir(), "state.db"))
	d := &modelslot.Deployment{Revision: "abc", Version: "v2"}
	if err := db.AddDeployment(ctx, "chat", "staging", d); err != nil {
		t.Fatal(err)
	}
	got, err := db.Deployment(ctx, "chat", "abc")
	if err != nil || got.Version != "v2" {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := db.Deployment(ctx, "chat", "nope"); modelslot.ErrorCode(err) != modelslot.ENOTFOUND {
		t.Fatalf("missing revision: got %v, want not_found", err)
	}
	r := &modelslot.RolloutRecord{ID: "r-1", App: "chat", Slot: "staging", State: "running", Active: true, Doc: json.RawMessage(`{"step":1}`)}
	if err := db.PutRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.State, r.Active = "succeeded", false
	if err := db.PutRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	active, err := db.Rollouts(ctx, "chat", true, 0)
	if err != nil || len(active) != 0 {
		t.Fatalf("active = %v, %v", active, err)
	}
	all, err := db.Rollouts(ctx, "chat", false, 0)
	if err != nil || len(all) != 1 || all[0].State != "succeeded" || string(all[0].Doc) != `{"step":1}` {
		t.Fatalf("all = %+v, %v", all, err)
	}
	for i := 0; i < 3; i++ {
		if err := db.AddEvent(ctx, &modelslot.Event{App: "chat", Rollout: "r-1", Type: "rollout.step", Message: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := db.Events(ctx, modelslot.EventFilter{App: "chat", AfterID: 1})
	if err != nil || len(evs) != 2 || evs[0].ID != 2 {
		t.Fatalf("events = %+v, %v", evs, err)
	}
}

func TestDatabaseFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := open(t, path)
	if err := db.AddEvent(context.Background(), &modelslot.Event{App: "a", Type: "t", Message: "m"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// An existing database another tool left readable by others is made
// private again at open: it holds provider keys in plain text.
func TestDatabaseFileMadePrivateAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := open(t, path)
	db.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	open(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after open, want 0600", fi.Mode().Perm())
	}
}
