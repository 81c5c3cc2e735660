package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/modelslot/modelslot/sqlite"
)

// serveMain runs `modelslot serve args...` through main() in a child
// process and returns its exit status and output.
func serveMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	a, _ := json.Marshal(append([]string{"serve"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), "MODELSLOT_TEST_MAIN="+string(a))
	var out, errw bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errw
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, out.String(), errw.String()
}

// wantStartFailure checks that serve exited 1 with one "error:" line that
// contains every want, and no panic.
func wantStartFailure(t *testing.T, code int, stderr string, wants ...string) {
	t.Helper()
	if code != 1 {
		t.Errorf("exit status %d, want 1; stderr:\n%s", code, stderr)
	}
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
		t.Fatalf("serve crashed:\n%s", stderr)
	}
	var lines []string
	for l := range strings.Lines(stderr) {
		if strings.HasPrefix(l, "error: ") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) != 1 {
		t.Fatalf("%d error lines, want 1; stderr:\n%s", len(lines), stderr)
	}
	for _, w := range wants {
		if !strings.Contains(lines[0], w) {
			t.Errorf("error line %q, want it to contain %q", lines[0], w)
		}
	}
}

// TestServeStartFailures: every way a start fails is one line naming the
// cause and the fix, and exit status 1 (the busy port was a nil-pointer
// panic).
func TestServeStartFailures(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()

	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o600)
	badConfig := filepath.Join(t.TempDir(), "modelslot.yaml")
	os.WriteFile(badConfig, []byte("gateway:\n  maxRequestByte: 10\n"), 0o600)

	cases := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"gateway port in use", []string{"--listen", addr, "--admin", "127.0.0.1:0", "--data", t.TempDir()},
			[]string{"the gateway address " + addr + " is already in use", "choose another address with --listen"}},
		{"admin port in use", []string{"--listen", "127.0.0.1:0", "--admin", addr, "--data", t.TempDir()},
			[]string{"the admin API address " + addr + " is already in use", "--admin"}},
		{"bad address", []string{"--listen", "127.0.0.1:99999", "--admin", "127.0.0.1:0", "--data", t.TempDir()},
			[]string{`cannot listen on "127.0.0.1:99999" for the gateway`, "give a host:port"}},
		{"data directory not writable", []string{"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data", filepath.Join(file, "data")},
			[]string{"cannot create the data directory " + filepath.Join(file, "data"), "not a directory", "choose a directory this user can write with --data"}},
		{"bad config", []string{"--config", badConfig, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data", t.TempDir()},
			[]string{"config " + badConfig, "maxRequestByte", "docs/CONFIG.md"}},
		{"bad OTLP endpoint", []string{"--otlp-endpoint", "collector:4318", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data", t.TempDir()},
			[]string{"--otlp-endpoint", `"collector:4318" is not an OTLP/HTTP endpoint`, "http://HOST:PORT"}},
		{"OTLP interval too short", []string{"--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-interval", "10ms", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data", t.TempDir()},
			[]string{"--otlp-interval", "at least 1s"}},
		{"missing config", []string{"--config", badConfig + ".nope", "--data", t.TempDir()},
			[]string{"no such file"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := serveMain(t, tc.args...)
			wantStartFailure(t, code, stderr, tc.wants...)
		})
	}
}

// TestServeStoreInUse: a second daemon on the same data directory is
// refused before it touches the store or the first one's model servers.
func TestServeStoreInUse(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no data directory lock on Windows")
	}
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	code, _, stderr := serveMain(t, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data", cfg.Data)
	wantStartFailure(t, code, stderr, "the data directory "+cfg.Data+" is in use by another modelslot daemon", fmt.Sprintf("(pid %d)", os.Getpid()), "give this one its own --data")
	// The first daemon is untouched.
	if _, err := d.Engine.App(ctx, "default"); err != nil {
		t.Fatal(err)
	}
}

// TestServeFailedStartStopsModelServers: a start that fails after it
// started a model server (a declared deployment) stops that server.
func TestServeFailedStartStopsModelServers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("finds processes through /proc")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// The child test binary runs main() as `modelslot sim`.
	sim := fmt.Sprintf(`MODELSLOT_TEST_MAIN='["sim","--listen","127.0.0.1:{port}"]' %s`, os.Args[0])
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
admin: 127.0.0.1:0
apps:
  - name: default
    slots:
      - name: staging
        deployment:
          command: %q
          warmup: {path: /health, timeout: 1m}
      - name: production
        deployment:
          url: http://127.0.0.1:1
          secretHeaders: {api-key: "${MODELSLOT_TEST_UNSET_KEY}"}
`, sim)
	file := filepath.Join(dir, "modelslot.yaml")
	os.WriteFile(file, []byte(yaml), 0o600)
	code, _, stderr := serveMain(t, "--config", file, "--data", data)
	wantStartFailure(t, code, stderr, "${MODELSLOT_TEST_UNSET_KEY}", "not set in the daemon's environment")
	if !strings.Contains(stderr, "process started") {
		t.Fatalf("the staging model server never started, so the test proves nothing; stderr:\n%s", stderr)
	}
	logs, _ := filepath.Abs(filepath.Join(data, "logs"))
	if pids := ownedBy(logs); len(pids) > 0 {
		t.Fatalf("model servers %v of the failed start still run", pids)
	}
}

// ownedBy lists the processes whose environment marks them as started by
// the host with log directory dir.
func ownedBy(dir string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if string(kv) == "MODELSLOT_HOST_DIR="+dir {
				pids = append(pids, e.Name())
			}
		}
	}
	return pids
}

// TestStoreFullReachesCLI: a store write that fails because the disk is
// full (SQLite's SQLITE_FULL, here from a database capped at its current
// size) reaches the CLI with its cause, not as an internal error.
func TestStoreFullReachesCLI(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(ctx)
	if err := d.Store.(*sqlite.DB).LimitSize(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// A deployment with a long system prompt needs new pages.
	prompt := strings.Repeat("You are a careful assistant. ", 4000)
	err = wantError(t, []string{"deploy", "production", "--url", startSim(t), "--system-prompt", prompt, "--server", d.AdminURL(), "--data", cfg.Data},
		"the store could not save", "disk full: free space on the disk that holds the data directory")
	if strings.Contains(err.Error(), "internal error") {
		t.Errorf("error %q", err)
	}
}

// holdStream is a model backend whose streams send one event, then wait
// for release before they end.
type holdStream struct {
	started chan struct{}
	release chan struct{}
}

func (h *holdStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		return
	}
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n")
	w.(http.Flusher).Flush()
	h.started <- struct{}{}
	select {
	case <-h.release:
	case <-r.Context().Done():
		return
	}
	fmt.Fprint(w, "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\ndata: [DONE]\n\n")
}

// serveProcess is `modelslot serve` running in a child process.
type serveProcess struct {
	cmd            *exec.Cmd
	stdout, stderr *bytes.Buffer
	gateway, admin string
	exited         chan struct{}
}

func startServe(t *testing.T, args ...string) *serveProcess {
	t.Helper()
	a, _ := json.Marshal(append([]string{"serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--log-level", "warn"}, args...))
	p := &serveProcess{cmd: exec.Command(os.Args[0]), stderr: &bytes.Buffer{}, stdout: &bytes.Buffer{}, exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "MODELSLOT_TEST_MAIN="+string(a))
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		l := sc.Text()
		p.stdout.WriteString(l + "\n")
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "gateway:" {
			p.gateway = f[1]
		} else if len(f) >= 2 && f[0] == "admin:" {
			p.admin = f[1]
			break
		}
	}
	if p.admin == "" {
		p.cmd.Process.Kill()
		t.Fatalf("serve did not start: %s%s", p.stdout, p.stderr)
	}
	go func() {
		for sc.Scan() {
			p.stdout.WriteString(sc.Text() + "\n")
		}
		p.cmd.Wait()
		close(p.exited)
	}()
	return p
}

func healthOf(gw string) int {
	resp, err := http.Get(gw + daemon.HealthPath)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServeSIGTERM: SIGTERM turns the gateway's health endpoint to 503
// first, lets the stream in flight finish whole, then exits 0 saying that
// nothing was cut (it exited 1 with "webhook queues not drained" with no
// webhook configured). With a stream longer than shutdown.drainTimeout,
// the stream is cut, and the exit is still 0 and says how many.
func TestServeSIGTERM(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM")
	}
	for _, tc := range []struct {
		name, config, want string
		cut                bool
	}{
		{"drained", "", "modelslot stopped: every request in flight finished", false},
		{"cut", "shutdown:\n  drainTimeout: 300ms\n", "modelslot stopped: 1 request or stream was still in flight after the drain timeout (300ms) and cut", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &holdStream{started: make(chan struct{}, 4), release: make(chan struct{})}
			backend := httptest.NewServer(h)
			defer backend.Close()
			data := t.TempDir()
			file := filepath.Join(t.TempDir(), "modelslot.yaml")
			os.WriteFile(file, []byte(tc.config), 0o600)
			p := startServe(t, "--data", data, "--config", file)
			mustRun(t, "deploy", "production", "--url", backend.URL, "--server", p.admin, "--data", data)
			if code := healthOf(p.gateway); code != http.StatusOK {
				t.Fatalf("health before SIGTERM: %d", code)
			}
			resp, err := http.Post(p.gateway+"/v1/chat/completions", "application/json", strings.NewReader(`{"model":"m","stream":true,"messages":[]}`))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			<-h.started
			br := bufio.NewReader(resp.Body)
			br.ReadString('\n')

			p.cmd.Process.Signal(syscall.SIGTERM)
			if !tc.cut {
				deadline := time.Now().Add(30 * time.Second)
				for healthOf(p.gateway) != http.StatusServiceUnavailable {
					if time.Now().After(deadline) {
						t.Fatal("health did not turn 503 after SIGTERM")
					}
					time.Sleep(10 * time.Millisecond)
				}
				select {
				case <-p.exited:
					t.Fatalf("serve exited with a stream in flight: %s", p.stdout)
				default:
				}
				close(h.release)
			}
			rest, err := io.ReadAll(br)
			if got := err == nil && strings.HasSuffix(string(rest), "data: [DONE]\n\n"); got == tc.cut {
				t.Fatalf("stream whole: %v, want %v (%q, %v)", got, !tc.cut, rest, err)
			}
			select {
			case <-p.exited:
			case <-time.After(time.Minute):
				t.Fatal("serve did not exit after SIGTERM")
			}
			if tc.cut {
				close(h.release)
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit status %d, want 0; stderr:\n%s", code, p.stderr)
			}
			if !strings.Contains(p.stdout.String(), tc.want) {
				t.Errorf("stdout:\n%s\nwant %q", p.stdout, tc.want)
			}
			if strings.Contains(p.stderr.String(), "not drained") {
				t.Errorf("stderr:\n%s", p.stderr)
			}
		})
	}
}
