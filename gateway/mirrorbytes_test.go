package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/gateway"
	"github.com/prometheus/client_golang/prometheus"
)

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMirrorBoundedInBytes: with a hung shadow and large bodies mirrored
// at 100%, what the mirror holds stays within the default 64 MiB, the
// mirrors beyond it are dropped and counted (in the stats and in
// Prometheus), and every user gets production's answer. Once the shadow
// answers, the bytes are released and mirroring resumes.
func TestMirrorBoundedInBytes(t *testing.T) {
	release := make(chan struct{})
	shadow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer shadow.Close()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	const answer = `{"choices":[{"message":{"role":"assistant","content":"ok"}}]}`
	prod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, answer)
	}))
	defer prod.Close()

	reg := prometheus.NewRegistry()
	g := gateway.New(gateway.Config{Registerer: reg})
	defer g.Close()
	app := &modelslot.App{Name: "default", Mirror: &modelslot.MirrorRule{Slot: "staging", Percent: 100}}
	backends := map[string]*gateway.Backend{}
	for name, u := range map[string]string{modelslot.Production: prod.URL, "staging": shadow.URL} {
		d := &modelslot.Deployment{Revision: name, URL: u}
		app.Slots = append(app.Slots, &modelslot.Slot{Name: name, Deployment: d})
		backends[name], _ = g.NewBackend(u, d)
	}
	g.Update([]gateway.RouteApp{{App: app, Backends: backends}})
	front := httptest.NewServer(g)
	defer front.Close()

	const (
		bodySize = 4 << 20
		users    = 48 // 192 MiB of bodies, three times the limit
		limit    = 64 << 20
	)
	body := append([]byte(`{"messages":[],"pad":"`), bytes.Repeat([]byte("x"), bodySize)...)
	body = append(body, `"}`...)
	before := heapInUse()
	var peak uint64
	send := func() {
		t.Helper()
		resp, err := http.Post(front.URL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != answer {
			t.Fatalf("user request: %d %q, want production's answer", resp.StatusCode, got)
		}
	}
	for range users {
		send()
		peak = max(peak, heapInUse())
	}
	st := g.ShadowStats("default")
	fit := int64(limit / (len(body) + len(answer)))
	if held := st.Sent + int64(st.Window); st.DroppedOverBytes != users-fit || st.Dropped != st.DroppedOverBytes {
		t.Errorf("dropped %d (over the bytes limit %d), want %d: %d fit in %d bytes (sent %d)",
			st.Dropped, st.DroppedOverBytes, users-fit, fit, limit, held)
	}
	if st.QueuedBytes > limit || st.MaxQueuedBytes != limit {
		t.Errorf("queued bytes %d of %d, want at most %d", st.QueuedBytes, st.MaxQueuedBytes, limit)
	}
	// The mirror's bytes, and what serving takes besides: well under what
	// 48 queued mirrors of 4 MiB would hold.
	grew := int64(peak) - int64(before)
	t.Logf("heap grew by %d MiB at most; %d mirrors held, %d dropped", grew>>20, fit, st.Dropped)
	if grew > limit+32<<20 {
		t.Errorf("the heap grew by %d MiB with a hung shadow, want at most %d MiB", grew>>20, (limit+32<<20)>>20)
	}
	if got := droppedMetric(t, reg, "bytes_limit"); got != float64(st.DroppedOverBytes) {
		t.Errorf("modelslot_gateway_mirror_dropped_total{reason=bytes_limit} = %v, want %d", got, st.DroppedOverBytes)
	}

	// The shadow answers again: the bytes are released, mirroring resumes.
	close(release)
	released = true
	waitCompared(t, g, fit)
	deadline := time.Now().Add(20 * time.Second)
	for g.ShadowStats("default").QueuedBytes != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queued bytes %d after every mirror finished, want 0", g.ShadowStats("default").QueuedBytes)
		}
		time.Sleep(10 * time.Millisecond)
	}
	send()
	waitCompared(t, g, fit+1)
	if after := g.ShadowStats("default"); after.Dropped != st.Dropped {
		t.Errorf("dropped %d after the shadow recovered, want %d", after.Dropped, st.Dropped)
	}
}

func droppedMetric(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "modelslot_gateway_mirror_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
