package daemon_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/client"
	"github.com/modelslot/modelslot/rollout"
)

// freeAddr picks a loopback address that is free now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// serveProc runs `modelslot serve` as a real process, restarted on the same
// configuration and data directory.
type serveProc struct {
	t            *testing.T
	bin, dir     string
	file         string
	gateway      string
	admin        string
	cmd          *exec.Cmd
	waited       chan struct{}
	starts       int
	c            *client.Client
	killedAtStep []string
}

func newServeProc(t *testing.T, extraConfig ...string) *serveProc {
	t.Helper()
	p := &serveProc{t: t, bin: modelslotBin(t), dir: t.TempDir(), gateway: freeAddr(t), admin: freeAddr(t)}
	p.file = filepath.Join(p.dir, "modelslot.yaml")
	cfg := fmt.Sprintf("listen: %s\nadmin: %s\nrolloutInterval: %s\n", p.gateway, p.admin, rolloutInterval) + strings.Join(extraConfig, "\n") + "\n"
	if err := os.WriteFile(p.file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.cleanup)
	return p
}

func (p *serveProc) data() string { return filepath.Join(p.dir, "data") }

// start starts the daemon and waits until its admin API answers.
func (p *serveProc) start() {
	t := p.t
	t.Helper()
	p.starts++
	out, err := os.Create(filepath.Join(p.dir, fmt.Sprintf("serve-%d.log", p.starts)))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(p.bin, "serve", "--config", p.file, "--data", p.data(), "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd, p.waited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(p.waited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.admin + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-p.waited:
			log, _ := os.ReadFile(out.Name())
			t.Fatalf("modelslot serve exited at start %d:\n%s", p.starts, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("modelslot serve did not answer on %s", p.admin)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tok, err := os.ReadFile(filepath.Join(p.data(), api.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	p.c = client.New(p.admin, strings.TrimSpace(string(tok)))
}

// kill sends SIGKILL: no shutdown code of the daemon runs. It returns the
// model servers the killed daemon leaves running.
func (p *serveProc) kill(when string) []int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	<-p.waited
	p.killedAtStep = append(p.killedAtStep, when)
	return p.managedAlive()
}

// stop ends the daemon gracefully (SIGTERM), which stops its processes.
func (p *serveProc) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.waited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.waited
	}
	p.cmd = nil
}

var startedPid = regexp.MustCompile(`--- started pid (\d+) `)

// managedAlive returns the pids of the model servers the daemons started
// (from the host's logs) that are still running.
func (p *serveProc) managedAlive() []int {
	logs, _ := filepath.Glob(filepath.Join(p.data(), "logs", "*"))
	var alive []int
	for _, f := range logs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, m := range startedPid.FindAllStringSubmatch(string(b), -1) {
			pid, _ := strconv.Atoi(m[1])
			// Only a process that still runs our binary: pids get reused.
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err == nil && strings.Contains(string(cmdline), p.bin) {
				alive = append(alive, pid)
			}
		}
	}
	return alive
}

// cleanup stops the daemon and kills the model servers that survived it,
// if any: the host does not set Pdeathsig, so the servers of a SIGKILLed
// daemon outlive it until the next daemon on the same data directory
// reaps them.
func (p *serveProc) cleanup() {
	if p.cmd != nil {
		p.cmd.Process.Kill()
		<-p.waited
		p.cmd = nil
	}
	for _, pid := range p.managedAlive() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// killPlan has a judged phase before the swap, one after it, and the swap
// between them, each a place where a SIGKILL must not lose or repeat work.
const killPlan = `
name: e2e-kill
warmup: {duration: 0s, requests: 0}   # this test is not about warm-ups
onInconclusive: fail
analysis: {alpha: 0.002, minSamples: 40, maxErrorRate: 0.1, maxSlowerProb: 0.9, metrics: [errors, latency]}
steps:
  - traffic: 20
  - bake: {duration: 3s, max: 2m}
  - traffic: 50
  - bake: {duration: 1s, max: 2m}
  - swap: {baselineTraffic: 20}
  - watch: {duration: 3s, max: 2m}
`

// TestKillDaemonDuringRollout runs `modelslot serve` as a process with two
// managed simulated versions, starts a rollout and SIGKILLs the daemon
// during the first bake, right after the swap and during the watch. Each
// restart on the same data directory resumes the same rollout where it
// was: the step is not reset, verdicts are kept, the swap is not repeated,
// and the rollout completes.
func TestKillDaemonDuringRollout(t *testing.T) {
	p := newServeProc(t)
	p.start()
	ctx := context.Background()
	sim := func(model string) string {
		return p.bin + " sim --listen 127.0.0.1:{port} --model " + model + " --tokens 4 --ttft 10ms --jitter 0.8"
	}
	if _, err := p.c.Deploy(ctx, "default", "production", modelslot.DeployRequest{Deployment: modelslot.Deployment{Command: sim("v1"), Version: "v1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.c.CreateSlot(ctx, "default", "staging"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.c.Deploy(ctx, "default", "staging", modelslot.DeployRequest{Deployment: modelslot.Deployment{Command: sim("v2"), Version: "v2"}}); err != nil {
		t.Fatal(err)
	}
	st, err := p.c.Status(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	revision := map[string]string{}
	for _, s := range st.Slots {
		revision[s.Slot.Deployment.Version] = s.Slot.Deployment.Revision
	}
	l := startLoad(t, "http://"+p.gateway, plainWorker("a"), plainWorker("b"), plainWorker("c"), plainWorker("d"))

	ro, err := p.c.StartRollout(ctx, "default", "staging", killPlan)
	if err != nil {
		t.Fatal(err)
	}
	// resume restarts the daemon and checks that it picked the rollout up
	// where the last look before the kill left it.
	resume := func(before *rollout.Rollout, orphans []int) *rollout.Rollout {
		t.Helper()
		if len(orphans) == 0 {
			t.Errorf("the killed daemon left no model server running: the test no longer checks the reaping")
		}
		p.start()
		// The new daemon stops what its killed predecessor left running
		// before it starts its own servers.
		// SIGKILL is sent at start; the process is gone once the kernel
		// and its new parent have reaped it, a moment later.
		var still []int
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			still = still[:0]
			for _, pid := range p.managedAlive() {
				for _, o := range orphans {
					if pid == o && !isZombie(pid) {
						still = append(still, pid)
					}
				}
			}
			if len(still) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(still) > 0 {
			t.Errorf("after restart %d the killed daemon's model servers (pids %v) still run", p.starts, still)
		}
		r, err := p.c.ActiveRollout(ctx, "default")
		if err != nil {
			t.Fatalf("after restart %d: %v", p.starts, err)
		}
		if r.ID != ro.ID {
			t.Fatalf("after restart %d the active rollout is %s, want %s", p.starts, r.ID, ro.ID)
		}
		if r.Step < before.Step {
			t.Fatalf("after restart %d the rollout is at step %d, before the kill at %d", p.starts, r.Step+1, before.Step+1)
		}
		if len(r.Verdicts) < len(before.Verdicts) {
			t.Fatalf("after restart %d the rollout has %d verdicts, before the kill %d", p.starts, len(r.Verdicts), len(before.Verdicts))
		}
		for i, v := range before.Verdicts {
			if got := r.Verdicts[i]; !got.Time.Equal(v.Time) || got.Verdict != v.Verdict || got.Step != v.Step {
				t.Fatalf("after restart %d verdict %d is %+v, before the kill %+v", p.starts, i, got, v)
			}
		}
		if r.Swapped != before.Swapped && !r.Swapped {
			t.Fatalf("after restart %d the rollout forgot its swap", p.starts)
		}
		if r.Step == before.Step && before.Current != nil && before.Current.Phase != nil {
			ph, was := r.Current.Phase, before.Current.Phase
			if ph == nil || !ph.StartedAt.Equal(was.StartedAt) || ph.CandidateRequests < was.CandidateRequests || ph.Looks < was.Looks {
				t.Fatalf("after restart %d the phase of step %d restarted: %+v, before the kill %+v", p.starts, r.Step+1, ph, was)
			}
		}
		return r
	}

	// 1. During the first bake, once it has looked at some data.
	before := waitRollout(t, p.c, ro.ID, "the first bake to have data", 30*time.Second, judging(1, 1))
	r := resume(before, p.kill("first bake"))
	if pct := r.Traffic; pct != 20 {
		t.Errorf("after restart the rollout's traffic is %g%%, want 20", pct)
	}

	// 2. Right after the swap.
	before = waitRollout(t, p.c, ro.ID, "the swap", 60*time.Second, func(r *rollout.Rollout) bool { return r.Swapped })
	r = resume(before, p.kill("after the swap"))
	if sw := rolloutSwaps(t, p.c, ro.ID); len(sw) != 1 || sw[0].Status != modelslot.SwapCompleted {
		t.Fatalf("after restart: swaps of the rollout %+v, want exactly one completed", sw)
	}

	// 3. During the watch.
	before = waitRollout(t, p.c, ro.ID, "the watch to have data", 60*time.Second, judging(5, 1))
	resume(before, p.kill("watch"))

	done := waitRollout(t, p.c, ro.ID, "the rollout to succeed", 60*time.Second, inState(rollout.Succeeded))
	l.stop()
	if !done.Swapped || done.Step != len(done.Plan.Steps) {
		t.Fatalf("finished rollout:\n%s", done.Describe())
	}
	var steps []string
	for _, v := range done.Verdicts {
		steps = append(steps, fmt.Sprintf("%d %s %s", v.Step, v.StepKind, v.Verdict))
	}
	if got, want := strings.Join(steps, ", "), "1 bake pass, 3 bake pass, 5 watch pass"; got != want {
		t.Errorf("verdicts: got %q, want %q", got, want)
	}
	sw := rolloutSwaps(t, p.c, ro.ID)
	if len(sw) != 1 || sw[0].Status != modelslot.SwapCompleted {
		t.Fatalf("swaps of the rollout: %+v, want exactly one completed", sw)
	}
	all, _ := p.c.Swaps(ctx, "default", 100)
	if len(all) != 1 {
		t.Errorf("the app has %d swap records, want 1", len(all))
	}
	st, err = p.c.Status(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Slots {
		want := map[string]string{"production": "v2", "staging": "v1"}[s.Slot.Name]
		if s.Slot.Deployment.Revision != revision[want] {
			t.Errorf("slot %s holds %s (%s), want %s", s.Slot.Name, s.Slot.Deployment.Version, s.Slot.Deployment.Revision, want)
		}
		if !s.Healthy {
			t.Errorf("slot %s is not healthy: %s", s.Slot.Name, s.Health)
		}
	}
	if p := st.Routing.Percent("staging"); p != 0 {
		t.Errorf("staging keeps %g%% after success", p)
	}
	if _, v, _ := chatVia(t, "http://"+p.gateway); !isVersion(v, "v2") {
		t.Errorf("production serves %s after the rollout, want v2", v)
	}

	// A graceful stop leaves no model server behind, from this daemon or
	// from the killed ones.
	p.stop()
	if alive := p.managedAlive(); len(alive) > 0 {
		t.Errorf("%d model servers still run after the daemon stopped (killed at: %s): pids %v", len(alive), strings.Join(p.killedAtStep, ", "), alive)
	}
}

func chatVia(t *testing.T, gatewayURL string) (slot, version string, status int) {
	t.Helper()
	resp, err := http.Post(gatewayURL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("X-Modelslot-Slot"), resp.Header.Get("X-Modelslot-Version"), resp.StatusCode
}

// isZombie reports whether pid has exited and waits for its parent to
// reap it (it no longer runs).
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
