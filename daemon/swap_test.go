package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/sim"
)

// TestSwapUnderLoadFailsNothing swaps back and forth while clients send
// requests and hold open streams: no request fails, every stream ends
// with [DONE] and all its events.
func TestSwapUnderLoadFailsNothing(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 20, ITL: 5 * time.Millisecond})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 20, ITL: 5 * time.Millisecond})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")
	e.traffic(rule("staging", 10))

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ok, failed, streams, brokenStreams atomic.Int64
	var firstErr atomic.Value
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				stream := w%2 == 0
				body := `{"model":"m","max_tokens":20,"messages":[{"role":"user","content":"hi"}]`
				if stream {
					body += `,"stream":true}`
				} else {
					body += `}`
				}
				resp, err := e.http.Post(e.d.GatewayURL()+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d", resp.StatusCode))
				}
				if stream {
					streams.Add(1)
					events, done := 0, false
					sc := bufio.NewScanner(resp.Body)
					for sc.Scan() {
						line := sc.Text()
						if line == "data: [DONE]" {
							done = true
						} else if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"content":"`) && !strings.Contains(line, `"content":""`) {
							events++
						}
					}
					if !done || events != 20 {
						brokenStreams.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("stream: done=%v events=%d", done, events))
					}
				} else {
					var buf [4096]byte
					for {
						if _, err := resp.Body.Read(buf[:]); err != nil {
							break
						}
					}
				}
				resp.Body.Close()
				ok.Add(1)
			}
		}()
	}
	for i := 0; i < 6; i++ {
		time.Sleep(100 * time.Millisecond)
		if _, err := e.c.Swap(context.Background(), "default", modelslot.SwapRequest{Source: "staging"}); err != nil {
			t.Fatalf("swap %d: %v", i, err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	stop()
	wg.Wait()
	if failed.Load() != 0 || brokenStreams.Load() != 0 {
		t.Fatalf("%d of %d requests failed, %d of %d streams broken; first: %v", failed.Load(), ok.Load(), brokenStreams.Load(), streams.Load(), firstErr.Load())
	}
	if streams.Load() == 0 || ok.Load() < 20 {
		t.Fatalf("too little load to mean anything: %d requests, %d streams", ok.Load(), streams.Load())
	}
	swaps, err := e.c.Swaps(context.Background(), "default", 100)
	if err != nil || len(swaps) != 6 {
		t.Fatalf("swap history: %d records, %v", len(swaps), err)
	}
	for _, s := range swaps {
		if s.Status != modelslot.SwapCompleted {
			t.Fatalf("swap %d: %s %s", s.ID, s.Status, s.Error)
		}
	}
}

// TestSwapDrainsManagedProcessBeforeRestart swaps two supervised processes
// whose slots have different sticky settings: the old production process
// must finish its open stream before it is restarted with the staging
// slot's settings.
func TestSwapDrainsManagedProcessBeforeRestart(t *testing.T) {
	bin := modelslotBin(t)
	e := startDaemon(t, t.TempDir())
	ctx := context.Background()
	cmd := func(model string) string {
		return bin + " sim --listen 127.0.0.1:{port} --model " + model + " --tokens 30 --itl 20ms"
	}
	if _, err := e.c.Deploy(ctx, "default", "production", modelslot.DeployRequest{
		Deployment:     modelslot.Deployment{Command: cmd("v1"), Version: "v1"},
		StickySettings: map[string]string{"SLOT_ROLE": "production"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.CreateSlot(ctx, "default", "staging"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{
		Deployment:     modelslot.Deployment{Command: cmd("v2"), Version: "v2"},
		StickySettings: map[string]string{"SLOT_ROLE": "staging"},
	}); err != nil {
		t.Fatal(err)
	}
	// Open a stream on production (v1), then swap while it runs.
	resp, err := e.http.Post(e.d.GatewayURL()+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Scan() // the stream is open
	rec, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != modelslot.SwapCompleted {
		t.Fatalf("swap: %+v", rec)
	}
	if slot, v, _ := e.chat(nil); slot != "production" || !strings.HasPrefix(v, "v2+") {
		t.Fatalf("after swap production answered with %s %s", slot, v)
	}
	events, done := 0, false
	for sc.Scan() {
		line := sc.Text()
		if line == "data: [DONE]" {
			done = true
		} else if strings.Contains(line, `"content":"`) && !strings.Contains(line, `"content":""`) {
			events++
		}
	}
	if !done || events != 30 {
		t.Fatalf("the stream open during the swap ended with done=%v after %d of 30 events", done, events)
	}
	// The old production deployment settles into staging with the staging
	// slot's settings: a new process once drained.
	waitFor(t, "v1 to settle into staging", 20*time.Second, func() bool {
		sw, err := e.c.Swaps(ctx, "default", 1)
		return err == nil && len(sw) == 1 && sw[0].Phase == modelslot.PhaseDone
	})
	_, v, _ := e.chat(func(r *http.Request) { r.URL.RawQuery = "x-ms-routing-name=staging" })
	if !strings.HasPrefix(v, "v1+") {
		t.Fatalf("staging serves %s after the swap, want v1", v)
	}
}

func TestSwapPreviewLocksSlotsUntilCompleteOrReset(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	_, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")
	ctx := context.Background()
	rec, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging", Action: modelslot.SwapActionPreview})
	if err != nil || rec.Status != modelslot.SwapPreviewed {
		t.Fatalf("preview: %+v %v", rec, err)
	}
	if _, err := e.c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{URL: v1, Version: "v3"}}); modelslot.ErrorCode(err) != modelslot.ECONFLICT || !strings.Contains(err.Error(), "prepared for a swap") {
		t.Fatalf("deploy during preview: got %v, want a conflict that names the preview", err)
	}
	if _, v, _ := e.chat(nil); !strings.HasPrefix(v, "v1+") {
		t.Fatalf("preview changed production: %s", v)
	}
	if _, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging", Action: modelslot.SwapActionReset}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging", Action: modelslot.SwapActionReset}); modelslot.ErrorCode(err) != modelslot.ECONFLICT {
		t.Fatalf("second reset: got %v, want conflict", err)
	}
	// Preview, then complete.
	if _, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging", Action: modelslot.SwapActionPreview}); err != nil {
		t.Fatal(err)
	}
	if rec, err := e.c.Swap(ctx, "default", modelslot.SwapRequest{Source: "staging"}); err != nil || rec.Status != modelslot.SwapCompleted {
		t.Fatalf("complete: %+v %v", rec, err)
	}
	if _, v, _ := e.chat(nil); !strings.HasPrefix(v, "v2+") {
		t.Fatalf("after completing the preview production serves %s", v)
	}
}

func TestFailedWarmupLeavesProductionUntouched(t *testing.T) {
	e := startDaemon(t, t.TempDir())
	_, v1 := startSim(t, sim.Config{Model: "v1", Tokens: 2})
	s2, v2 := startSim(t, sim.Config{Model: "v2", Tokens: 2})
	e.deploy("production", v1, "v1")
	e.deploy("staging", v2, "v2")
	// v2 starts failing its health checks after deployment.
	cfg := s2.Config()
	cfg.Startup = time.Hour
	if err := s2.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	probe, _ := http.Get(v2 + "/health")
	probe.Body.Close()
	if probe.StatusCode == 200 {
		t.Skip("the simulator's startup window does not restart at run time; health stays 200")
	}
	_, err := e.c.Swap(context.Background(), "default", modelslot.SwapRequest{Source: "staging"})
	if err == nil || !strings.Contains(err.Error(), "warm-up") {
		t.Fatalf("swap of an unhealthy slot: got %v, want a warm-up failure", err)
	}
	if _, v, _ := e.chat(nil); !strings.HasPrefix(v, "v1+") {
		t.Fatalf("a failed swap changed production to %s", v)
	}
	sw, _ := e.c.Swaps(context.Background(), "default", 1)
	if len(sw) != 1 || sw[0].Status != modelslot.SwapFailed || sw[0].Phase != modelslot.PhaseWarmup {
		t.Fatalf("swap record: %+v", sw[0])
	}
}
