// Package storetest is the contract every modelslot.Store passes: the
// embedded SQLite store and the PostgreSQL store run the same tests, which
// cover every method, concurrent writers on one app (no lost update) and
// a restart (close, open again, everything is there).
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
)

// Opener returns a function that opens a store on one fresh database; each
// call of that function opens another handle on the same database (a
// restart, or a second replica). The test closes what it opens.
type Opener func(t *testing.T) func() (modelslot.Store, error)

// Run runs the contract tests.
func Run(t *testing.T, newDB Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, func() modelslot.Store)
	}{
		{"Apps", testApps},
		{"StaleWriteIsRefused", testStaleWrite},
		{"SwapInAppTransaction", testSwapInApp},
		{"Swaps", testSwaps},
		{"Deployments", testDeployments},
		{"Rollouts", testRollouts},
		{"Events", testEvents},
		{"Restart", testRestart},
		{"ConcurrentWritersLoseNoUpdate", testConcurrentWriters},
		{"ConcurrentEvents", testConcurrentEvents},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open := newDB(t)
			tc.fn(t, func() modelslot.Store {
				t.Helper()
				s, err := open()
				if err != nil {
					t.Fatalf("open store: %v", err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

var ctx = context.Background()

func newApp(name string) *modelslot.App {
	return &modelslot.App{Name: name, MaxSlots: 5, CreatedAt: time.Unix(1700000000, 0).UTC(), Slots: []*modelslot.Slot{
		{Name: "production", Deployment: &modelslot.Deployment{Revision: "r1", Version: "v1", URL: "http://127.0.0.1:1"}},
		{Name: "staging", StickySettings: map[string]string{"K": "V"}},
	}, Routing: modelslot.Routing{Rules: []modelslot.TrafficRule{{Slot: "staging", Percent: 10}}, Generation: 3}}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testApps(t *testing.T, open func() modelslot.Store) {
	s := open()
	apps, err := s.Apps(ctx)
	must(t, err)
	if len(apps) != 0 {
		t.Fatalf("new store has apps: %+v", apps)
	}
	b, a := newApp("b"), newApp("a")
	must(t, s.PutApp(ctx, b, nil))
	must(t, s.PutApp(ctx, a, nil))
	if a.StoreVersion != 1 || b.StoreVersion != 1 {
		t.Fatalf("versions after create: %d %d, want 1", a.StoreVersion, b.StoreVersion)
	}
	a.Routing.Generation = 4
	must(t, s.PutApp(ctx, a, nil))
	if a.StoreVersion != 2 {
		t.Fatalf("version after update: %d, want 2", a.StoreVersion)
	}
	apps, err = s.Apps(ctx)
	must(t, err)
	if len(apps) != 2 || apps[0].Name != "a" || apps[1].Name != "b" {
		t.Fatalf("apps not sorted by name: %+v", apps)
	}
	got := apps[0]
	if got.StoreVersion != 2 || got.Routing.Generation != 4 || got.Routing.Percent("staging") != 10 ||
		len(got.Slots) != 2 || got.Slots[0].Deployment.Revision != "r1" || got.Slots[1].StickySettings["K"] != "V" ||
		!got.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("app did not round-trip: %+v", got)
	}
	must(t, s.DeleteApp(ctx, "b"))
	apps, err = s.Apps(ctx)
	must(t, err)
	if len(apps) != 1 || apps[0].Name != "a" {
		t.Fatalf("after delete: %+v", apps)
	}
	must(t, s.DeleteApp(ctx, "never-existed"))
	// A deleted app can be created again.
	b2 := newApp("b")
	must(t, s.PutApp(ctx, b2, nil))
}

func testStaleWrite(t *testing.T, open func() modelslot.Store) {
	s := open()
	a := newApp("chat")
	must(t, s.PutApp(ctx, a, nil))
	stale := a.Clone()
	a.Routing.Generation = 10
	must(t, s.PutApp(ctx, a, nil))

	stale.Routing.Generation = 99
	err := s.PutApp(ctx, stale, nil)
	if modelslot.ErrorCode(err) != modelslot.ECONFLICT {
		t.Fatalf("stale write: err = %v, want a conflict", err)
	}
	if stale.StoreVersion != 1 {
		t.Fatalf("a refused write changed the caller's version to %d", stale.StoreVersion)
	}
	dup := newApp("chat")
	if err := s.PutApp(ctx, dup, nil); modelslot.ErrorCode(err) != modelslot.ECONFLICT {
		t.Fatalf("creating an existing app: err = %v, want a conflict", err)
	}
	apps, err := s.Apps(ctx)
	must(t, err)
	if apps[0].Routing.Generation != 10 || apps[0].StoreVersion != 2 {
		t.Fatalf("a refused write changed the store: %+v", apps[0])
	}
}

func testSwapInApp(t *testing.T, open func() modelslot.Store) {
	s := open()
	a := newApp("chat")
	must(t, s.PutApp(ctx, a, nil))
	sw := &modelslot.SwapRecord{App: "chat", Source: "staging", Target: "production", Status: modelslot.SwapRunning}
	must(t, s.AddSwap(ctx, sw))
	stale := a.Clone()
	must(t, s.PutApp(ctx, a, nil))

	sw.Status = modelslot.SwapCompleted
	if err := s.PutApp(ctx, stale, sw); modelslot.ErrorCode(err) != modelslot.ECONFLICT {
		t.Fatalf("stale write with a swap: err = %v, want a conflict", err)
	}
	swaps, err := s.Swaps(ctx, "chat", 10)
	must(t, err)
	if swaps[0].Status != modelslot.SwapRunning {
		t.Fatalf("the swap record was written although its app write was refused: %+v", swaps[0])
	}
	must(t, s.PutApp(ctx, a, sw))
	swaps, err = s.Swaps(ctx, "chat", 10)
	must(t, err)
	if len(swaps) != 1 || swaps[0].Status != modelslot.SwapCompleted || swaps[0].ID != sw.ID {
		t.Fatalf("swaps = %+v", swaps)
	}
}

func testSwaps(t *testing.T, open func() modelslot.Store) {
	s := open()
	var ids []int64
	for i := range 5 {
		sw := &modelslot.SwapRecord{App: "chat", Source: fmt.Sprintf("s%d", i), Target: "production", Status: modelslot.SwapRunning}
		must(t, s.AddSwap(ctx, sw))
		if sw.ID == 0 || (len(ids) > 0 && sw.ID <= ids[len(ids)-1]) {
			t.Fatalf("swap ids not increasing: %v then %d", ids, sw.ID)
		}
		ids = append(ids, sw.ID)
	}
	must(t, s.AddSwap(ctx, &modelslot.SwapRecord{App: "other", Source: "x", Target: "production"}))
	sw := &modelslot.SwapRecord{ID: ids[1], App: "chat", Source: "s1", Target: "production", Status: modelslot.SwapFailed, Error: "boom"}
	must(t, s.PutSwap(ctx, sw))
	swaps, err := s.Swaps(ctx, "chat", 3)
	must(t, err)
	if len(swaps) != 3 || swaps[0].ID != ids[4] || swaps[2].ID != ids[2] {
		t.Fatalf("Swaps(limit 3) = %+v, want the newest three, newest first", swaps)
	}
	for _, sw := range swaps {
		if sw.App != "chat" {
			t.Fatalf("another app's swap: %+v", sw)
		}
	}
	all, err := s.Swaps(ctx, "chat", 0)
	must(t, err)
	if len(all) != 5 || all[3].Status != modelslot.SwapFailed || all[3].Error != "boom" || all[3].ID != ids[1] {
		t.Fatalf("Swaps = %+v", all)
	}
}

func testDeployments(t *testing.T, open func() modelslot.Store) {
	s := open()
	must(t, s.AddDeployment(ctx, "chat", "production", &modelslot.Deployment{Revision: "r1", Version: "v1", URL: "http://127.0.0.1:1"}))
	must(t, s.AddDeployment(ctx, "chat", "staging", &modelslot.Deployment{Revision: "r2", Version: "v2", URL: "http://127.0.0.1:2"}))
	must(t, s.AddDeployment(ctx, "chat", "production", &modelslot.Deployment{Revision: "r2", Version: "v2-again", URL: "http://127.0.0.1:2"}))
	must(t, s.AddDeployment(ctx, "other", "production", &modelslot.Deployment{Revision: "r9", Version: "v9"}))

	d, err := s.Deployment(ctx, "chat", "r2")
	must(t, err)
	if d.Version != "v2-again" {
		t.Fatalf("Deployment(r2) = %+v, want the latest record", d)
	}
	if _, err := s.Deployment(ctx, "chat", "r9"); modelslot.ErrorCode(err) != modelslot.ENOTFOUND {
		t.Fatalf("another app's revision: err = %v, want not found", err)
	}
	ds, err := s.Deployments(ctx, "chat", "production", 0)
	must(t, err)
	if len(ds) != 2 || ds[0].Version != "v2-again" || ds[1].Version != "v1" {
		t.Fatalf("Deployments(production) = %+v", ds)
	}
	ds, err = s.Deployments(ctx, "chat", "", 2)
	must(t, err)
	if len(ds) != 2 || ds[0].Version != "v2-again" || ds[1].Version != "v2" {
		t.Fatalf("Deployments(all, 2) = %+v", ds)
	}
}

func testRollouts(t *testing.T, open func() modelslot.Store) {
	s := open()
	r1 := &modelslot.RolloutRecord{ID: "ro-1", App: "chat", Slot: "staging", State: "running", Active: true, Doc: json.RawMessage(`{"step":1}`)}
	must(t, s.PutRollout(ctx, r1))
	if r1.CreatedAt.IsZero() || r1.UpdatedAt.IsZero() {
		t.Fatal("PutRollout did not set the times")
	}
	time.Sleep(2 * time.Millisecond)
	r2 := &modelslot.RolloutRecord{ID: "ro-2", App: "chat", Slot: "staging", State: "running", Active: true, Doc: json.RawMessage(`{"step":0}`)}
	must(t, s.PutRollout(ctx, r2))
	must(t, s.PutRollout(ctx, &modelslot.RolloutRecord{ID: "ro-3", App: "other", Slot: "staging", State: "running", Active: true, Doc: json.RawMessage(`{}`)}))
	created := r1.CreatedAt
	r1.State, r1.Active, r1.Doc = "succeeded", false, json.RawMessage(`{"step":4}`)
	must(t, s.PutRollout(ctx, r1))

	got, err := s.Rollout(ctx, "ro-1")
	must(t, err)
	if got.State != "succeeded" || got.Active || string(got.Doc) != `{"step":4}` || got.App != "chat" || got.Slot != "staging" ||
		got.CreatedAt.UnixNano() != created.UnixNano() || got.UpdatedAt.Before(got.CreatedAt) {
		t.Fatalf("Rollout = %+v", got)
	}
	if _, err := s.Rollout(ctx, "nope"); modelslot.ErrorCode(err) != modelslot.ENOTFOUND {
		t.Fatalf("unknown rollout: err = %v", err)
	}
	list, err := s.Rollouts(ctx, "chat", false, 0)
	must(t, err)
	if len(list) != 2 || list[0].ID != "ro-2" || list[1].ID != "ro-1" {
		t.Fatalf("Rollouts(chat) = %+v, want newest first", list)
	}
	active, err := s.Rollouts(ctx, "", true, 0)
	must(t, err)
	if len(active) != 2 || active[0].ID != "ro-3" || active[1].ID != "ro-2" {
		t.Fatalf("Rollouts(active, every app) = %v", ids(active))
	}
	one, err := s.Rollouts(ctx, "", false, 1)
	must(t, err)
	if len(one) != 1 {
		t.Fatalf("limit 1: %v", ids(one))
	}
}

func ids(rs []*modelslot.RolloutRecord) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}

func testEvents(t *testing.T, open func() modelslot.Store) {
	s := open()
	var last int64
	for i := range 6 {
		app, ro := "chat", ""
		if i%2 == 1 {
			ro = "ro-1"
		}
		if i == 5 {
			app = "other"
		}
		e := &modelslot.Event{App: app, Rollout: ro, Type: "t", Actor: "test", Message: fmt.Sprintf("m%d", i)}
		if i == 0 {
			e.Data = json.RawMessage(`{"k":1}`)
		}
		must(t, s.AddEvent(ctx, e))
		if e.ID <= last || e.Time.IsZero() {
			t.Fatalf("event id %d after %d, time %v", e.ID, last, e.Time)
		}
		last = e.ID
	}
	all, err := s.Events(ctx, modelslot.EventFilter{})
	must(t, err)
	if len(all) != 6 || all[0].Message != "m0" || string(all[0].Data) != `{"k":1}` || all[1].Data != nil {
		t.Fatalf("Events = %+v", all)
	}
	chat, err := s.Events(ctx, modelslot.EventFilter{App: "chat"})
	must(t, err)
	if len(chat) != 5 {
		t.Fatalf("Events(chat) = %d", len(chat))
	}
	ro, err := s.Events(ctx, modelslot.EventFilter{Rollout: "ro-1"})
	must(t, err)
	if len(ro) != 3 {
		t.Fatalf("Events(ro-1) = %d", len(ro))
	}
	after, err := s.Events(ctx, modelslot.EventFilter{AfterID: all[2].ID, Limit: 2})
	must(t, err)
	if len(after) != 2 || after[0].ID != all[3].ID || after[1].ID != all[4].ID {
		t.Fatalf("Events(after, limit) = %+v", after)
	}
	if !all[0].Time.Round(time.Millisecond).Equal(all[0].Time.Round(time.Millisecond)) || all[0].Time.Year() < 2020 {
		t.Fatalf("time = %v", all[0].Time)
	}
}

func testRestart(t *testing.T, open func() modelslot.Store) {
	s := open()
	a := newApp("chat")
	must(t, s.PutApp(ctx, a, nil))
	must(t, s.PutApp(ctx, a, nil))
	sw := &modelslot.SwapRecord{App: "chat", Source: "staging", Target: "production", Status: modelslot.SwapCompleted}
	must(t, s.AddSwap(ctx, sw))
	must(t, s.AddDeployment(ctx, "chat", "production", &modelslot.Deployment{Revision: "r1", Version: "v1"}))
	must(t, s.PutRollout(ctx, &modelslot.RolloutRecord{ID: "ro-1", App: "chat", Slot: "staging", State: "running", Active: true, Doc: json.RawMessage(`{}`)}))
	ev := &modelslot.Event{App: "chat", Type: "t", Message: "before"}
	must(t, s.AddEvent(ctx, ev))
	must(t, s.Close())

	s = open()
	apps, err := s.Apps(ctx)
	must(t, err)
	if len(apps) != 1 || apps[0].StoreVersion != 2 || apps[0].Routing.Generation != 3 {
		t.Fatalf("apps after restart: %+v", apps)
	}
	// The version read back continues the sequence.
	must(t, s.PutApp(ctx, apps[0], nil))
	if swaps, err := s.Swaps(ctx, "chat", 0); err != nil || len(swaps) != 1 || swaps[0].ID != sw.ID {
		t.Fatalf("swaps after restart: %+v %v", swaps, err)
	}
	if _, err := s.Deployment(ctx, "chat", "r1"); err != nil {
		t.Fatal(err)
	}
	if rs, err := s.Rollouts(ctx, "chat", true, 0); err != nil || len(rs) != 1 {
		t.Fatalf("rollouts after restart: %v %v", ids(rs), err)
	}
	next := &modelslot.Event{App: "chat", Type: "t", Message: "after"}
	must(t, s.AddEvent(ctx, next))
	if next.ID <= ev.ID {
		t.Fatalf("event id went back after restart: %d then %d", ev.ID, next.ID)
	}
}

// testConcurrentWriters runs read-modify-write loops on one app from two
// handles (two replicas): every increment that a writer saw succeed is in
// the final state, and conflicts were reported rather than lost.
func testConcurrentWriters(t *testing.T, open func() modelslot.Store) {
	s1, s2 := open(), open()
	must(t, s1.PutApp(ctx, newApp("chat"), nil))
	const writers, each = 4, 25
	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	for w := range writers {
		s := s1
		if w%2 == 1 {
			s = s2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < each; {
				apps, err := s.Apps(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				a := apps[0]
				a.Routing.Generation++
				err = s.PutApp(ctx, a, nil)
				switch modelslot.ErrorCode(err) {
				case "":
					done++
				case modelslot.ECONFLICT:
					mu.Lock()
					conflicts++
					mu.Unlock()
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	apps, err := s2.Apps(ctx)
	must(t, err)
	if want := int64(3 + writers*each); apps[0].Routing.Generation != want {
		t.Fatalf("generation = %d, want %d: an update was lost (%d conflicts reported)", apps[0].Routing.Generation, want, conflicts)
	}
	if want := int64(1 + writers*each); apps[0].StoreVersion != want {
		t.Fatalf("store version = %d, want %d", apps[0].StoreVersion, want)
	}
	t.Logf("%d conflicts reported and retried", conflicts)
}

func testConcurrentEvents(t *testing.T, open func() modelslot.Store) {
	s1, s2 := open(), open()
	var wg sync.WaitGroup
	for w := range 4 {
		s := s1
		if w%2 == 1 {
			s = s2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if err := s.AddEvent(ctx, &modelslot.Event{App: "chat", Type: "t", Message: fmt.Sprintf("w%d-%d", w, i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	all, err := s1.Events(ctx, modelslot.EventFilter{})
	must(t, err)
	seen := map[int64]bool{}
	for _, e := range all {
		if seen[e.ID] {
			t.Fatalf("duplicate event id %d", e.ID)
		}
		seen[e.ID] = true
	}
	if len(all) != 80 {
		t.Fatalf("%d events, want 80", len(all))
	}
}
