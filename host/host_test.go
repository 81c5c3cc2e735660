//go:build linux

package host_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelslot/modelslot/host"
)

// TestMain doubles as the model server that the tests start: with
// HOST_TEST_HELPER set, the test binary is the supervised process.
func TestMain(m *testing.M) {
	switch os.Getenv("HOST_TEST_HELPER") {
	case "":
		os.Exit(m.Run())
	case "sleep":
		// A grandchild that only has to exist until its group is killed.
		time.Sleep(time.Hour)
	default:
		helperServer()
	}
}

// helperServer is a tiny model server configured by environment variables:
//
//	EXIT_NOW=code     print a fatal error to stderr and exit at once
//	SAY=text          print text to stdout and to stderr at start
//	FAIL_FIRST=n      answer 503 to the first n GET /health
//	CRASH_AFTER=n     exit with status 3 after answering n GET /health
//	IGNORE_TERM=1     ignore SIGTERM, so only SIGKILL stops it
//	CHILD=1           start a child process in the same group; GET /child is its pid
//
// GET /env?name=X answers the value of X, GET /pid the server's pid.
func helperServer() {
	if code := os.Getenv("EXIT_NOW"); code != "" {
		fmt.Fprintln(os.Stderr, "fatal: model weights not found")
		n, _ := strconv.Atoi(code)
		os.Exit(n)
	}
	if say := os.Getenv("SAY"); say != "" {
		fmt.Println(say)
		fmt.Fprintln(os.Stderr, "stderr: "+say)
	}
	if os.Getenv("IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM)
	}
	childPID := 0
	if os.Getenv("CHILD") != "" {
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), "HOST_TEST_HELPER=sleep")
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "start child:", err)
			os.Exit(2)
		}
		childPID = child.Process.Pid
	}
	failFirst, _ := strconv.ParseInt(os.Getenv("FAIL_FIRST"), 10, 64)
	crashAfter, _ := strconv.ParseInt(os.Getenv("CRASH_AFTER"), 10, 64)
	var healthCount atomic.Int64

	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		n := healthCount.Add(1)
		if n <= failFirst {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusOK)
		if crashAfter > 0 && n >= crashAfter {
			w.(http.Flusher).Flush()
			os.Exit(3)
		}
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, os.Getenv(r.URL.Query().Get("name")))
	})
	mux.HandleFunc("GET /pid", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strconv.Itoa(os.Getpid()))
	})
	mux.HandleFunc("GET /child", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strconv.Itoa(childPID))
	})
	err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), mux)
	fmt.Fprintln(os.Stderr, "serve:", err)
	os.Exit(2)
}

// helperCommand returns a command line that runs the helper server with the
// given NAME=value settings, the way a user would write it for /bin/sh.
func helperCommand(t *testing.T, settings string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(settings+" HOST_TEST_HELPER=1") + " exec '" + exe + "' '-test.run=^$'"
}

func newHost(t *testing.T) (*host.Host, string) {
	t.Helper()
	dir := t.TempDir()
	h := host.New(slog.New(slog.NewTextHandler(io.Discard, nil)), dir)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return h, dir
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// client does not keep connections, so that a probe after a restart never
// lands on a connection to the previous run.
var client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func start(t *testing.T, h *host.Host, spec host.Spec) *host.Process {
	t.Helper()
	p, err := h.Start(testContext(t), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return p
}

func waitHealthy(t *testing.T, p *host.Process) {
	t.Helper()
	if err := host.WaitHealthy(testContext(t), client, p.URL(), "/health", nil, 15*time.Second, p); err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readLog(t *testing.T, p *host.Process) string {
	t.Helper()
	b, err := os.ReadFile(p.LogPath())
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	return string(b)
}

var startedLine = regexp.MustCompile(`--- started pid (\d+) at \S+ \(restart (\d+)\)`)

func TestStart(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		command string
		env     map[string]string
	}{
		{
			name:    "exec after assignments",
			command: helperCommand(t, "PORTARG={port}"),
			env:     map[string]string{"GREETING": "hello world"},
		},
		{
			// Host adds the exec itself.
			name:    "assignments without exec",
			command: "HOST_TEST_HELPER=1 PORTARG={port} '" + exe + "' '-test.run=^$'",
			env:     map[string]string{"GREETING": "hello world"},
		},
		{
			name:    "settings only from Env",
			command: "'" + exe + "' '-test.run=^$' -test.v={port}",
			env:     map[string]string{"GREETING": "hello world", "HOST_TEST_HELPER": "1", "PORTARG": "{port}"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, dir := newHost(t)
			p := start(t, h, host.Spec{ID: "default/staging/" + strconv.Itoa(i), Command: tt.command, Env: tt.env})
			waitHealthy(t, p)

			if got, want := p.URL(), "http://127.0.0.1:"+strconv.Itoa(p.Port()); got != want {
				t.Errorf("URL() = %q, want %q", got, want)
			}
			if got, want := p.LogPath(), filepath.Join(dir, "default_staging_"+strconv.Itoa(i)+".log"); got != want {
				t.Errorf("LogPath() = %q, want %q", got, want)
			}
			if got, want := get(t, p.URL()+"/env?name=GREETING"), "hello world"; got != want {
				t.Errorf("GREETING = %q, want %q", got, want)
			}
			if got, want := get(t, p.URL()+"/env?name=PORT"), strconv.Itoa(p.Port()); got != want {
				t.Errorf("PORT = %q, want %q", got, want)
			}
			if tt.env["PORTARG"] == "" {
				// {port} is substituted in the command line, not in Env.
				if got, want := get(t, p.URL()+"/env?name=PORTARG"), strconv.Itoa(p.Port()); got != want {
					t.Errorf("PORTARG = %q, want %q", got, want)
				}
			}
			// The shell must have exec'd the server: the pid Host started is
			// the pid that serves.
			m := startedLine.FindStringSubmatch(readLog(t, p))
			if m == nil {
				t.Fatalf("log has no start line:\n%s", readLog(t, p))
			}
			if got, want := get(t, p.URL()+"/pid"), m[1]; got != want {
				t.Errorf("server pid = %s, started pid = %s: the shell did not exec the server", got, want)
			}
			if !p.Running() || p.Restarts() != 0 || p.LastExit() != "" {
				t.Errorf("Running, Restarts, LastExit = %v, %d, %q; want true, 0, \"\"", p.Running(), p.Restarts(), p.LastExit())
			}
		})
	}
}

func TestStartFixedPort(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t)
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p := start(t, h, host.Spec{ID: "fixed", Command: helperCommand(t, ""), Port: port})
	if got := p.Port(); got != port {
		t.Errorf("Port() = %d, want %d", got, port)
	}
	waitHealthy(t, p)
}

func TestLogFile(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t)
	p := start(t, h, host.Spec{ID: "../chatty", Command: helperCommand(t, "SAY=hello-from-the-server")})
	if got, want := filepath.Base(p.LogPath()), "_._chatty.log"; got != want {
		t.Errorf("log file = %q, want %q", got, want)
	}
	waitHealthy(t, p)
	for _, want := range []string{"--- started pid ", "(restart 0)", "hello-from-the-server\n", "stderr: hello-from-the-server\n"} {
		if log := readLog(t, p); !strings.Contains(log, want) {
			t.Errorf("log does not contain %q:\n%s", want, log)
		}
	}
}

func TestRestartAfterCrash(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t)
	p := start(t, h, host.Spec{ID: "crashy", Command: helperCommand(t, "CRASH_AFTER=1")})
	port := p.Port()
	waitHealthy(t, p) // the server exits right after this answer

	eventually(t, "a restart", func() bool { return p.Restarts() >= 1 })
	if got, want := p.LastExit(), "exit status 3"; got != want {
		t.Errorf("LastExit() = %q, want %q", got, want)
	}
	// The restarted server answers on the same port.
	if got := p.Port(); got != port {
		t.Errorf("Port() after restart = %d, want %d", got, port)
	}
	waitHealthy(t, p)

	log := readLog(t, p)
	for _, want := range []string{"(restart 0)", "exit status 3", "(restart 1)"} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not contain %q:\n%s", want, log)
		}
	}
	if err := p.Stop(testContext(t)); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// alive reports whether pid exists and is not a zombie waiting for a reaper
// (a killed grandchild is reparented, and the container's init may be slow
// to reap it).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestStop(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		settings string
		stopCtx  func(t *testing.T) context.Context
	}{
		{name: "graceful", settings: "CHILD=1", stopCtx: testContext},
		{
			// SIGTERM is ignored, so only the SIGKILL at the end of ctx
			// stops it.
			name:     "killed when ctx ends",
			settings: "CHILD=1 IGNORE_TERM=1",
			stopCtx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newHost(t)
			p := start(t, h, host.Spec{ID: "stop", Command: helperCommand(t, tt.settings)})
			waitHealthy(t, p)
			serverPID, _ := strconv.Atoi(get(t, p.URL()+"/pid"))
			childPID, _ := strconv.Atoi(get(t, p.URL()+"/child"))
			if childPID == 0 || !alive(childPID) {
				t.Fatalf("child %d is not running", childPID)
			}

			if err := p.Stop(tt.stopCtx(t)); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			select {
			case <-p.Done():
			default:
				t.Fatal("Done() is open after Stop returned")
			}
			if p.Running() {
				t.Error("Running() = true after Stop")
			}
			if got := p.Restarts(); got != 0 {
				t.Errorf("Restarts() = %d after Stop, want 0", got)
			}
			if alive(serverPID) {
				t.Errorf("server %d still runs after Stop", serverPID)
			}
			eventually(t, "the child to die with its group", func() bool { return !alive(childPID) })
			if err := p.Stop(testContext(t)); err != nil {
				t.Errorf("second Stop: %v", err)
			}
			// The ID is free again once the process is gone.
			p2 := start(t, h, host.Spec{ID: "stop", Command: helperCommand(t, "")})
			if err := p2.Stop(testContext(t)); err != nil {
				t.Errorf("Stop of the second process: %v", err)
			}
		})
	}
}

func TestCloseStopsAll(t *testing.T) {
	t.Parallel()
	h := host.New(nil, t.TempDir())
	var procs []*host.Process
	for _, id := range []string{"a", "b", "c"} {
		p := start(t, h, host.Spec{ID: id, Command: helperCommand(t, "")})
		waitHealthy(t, p)
		procs = append(procs, p)
	}
	if err := h.Close(testContext(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, p := range procs {
		select {
		case <-p.Done():
		default:
			t.Errorf("process %s is not done after Close", p.ID())
		}
		if p.Running() {
			t.Errorf("process %s still runs after Close", p.ID())
		}
	}
	if _, err := h.Start(testContext(t), host.Spec{ID: "late", Command: helperCommand(t, "")}); err == nil {
		t.Error("Start after Close succeeded, want an error")
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name   string
		logDir string
		ctx    context.Context
		spec   host.Spec
	}{
		{name: "empty command", spec: host.Spec{ID: "x", Command: ""}},
		{name: "blank command", spec: host.Spec{ID: "x", Command: "  \t"}},
		{name: "empty ID", spec: host.Spec{Command: "true"}},
		{name: "bad env name", spec: host.Spec{ID: "x", Command: "true", Env: map[string]string{"A=B": "c"}}},
		{name: "bad port", spec: host.Spec{ID: "x", Command: "true", Port: 70000}},
		{name: "log dir is a file", logDir: notADir, spec: host.Spec{ID: "x", Command: "true"}},
		{name: "canceled", ctx: canceled, spec: host.Spec{ID: "x", Command: "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.logDir
			if dir == "" {
				dir = t.TempDir()
			}
			ctx := tt.ctx
			if ctx == nil {
				ctx = testContext(t)
			}
			h := host.New(nil, dir)
			defer h.Close(testContext(t))
			p, err := h.Start(ctx, tt.spec)
			if err == nil {
				t.Fatalf("Start(%+v) = %v, nil; want an error", tt.spec, p.ID())
			}
		})
	}
}

func TestStartDuplicateID(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t)
	start(t, h, host.Spec{ID: "dup", Command: helperCommand(t, "")})
	if _, err := h.Start(testContext(t), host.Spec{ID: "dup", Command: helperCommand(t, "")}); err == nil {
		t.Error("second Start with the same ID succeeded, want an error")
	}
}

func TestWaitHealthyProcessExits(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t)
	p := start(t, h, host.Spec{ID: "broken", Command: helperCommand(t, "EXIT_NOW=1")})
	// The timeout is long: WaitHealthy must give up because the process
	// keeps exiting, not because time ran out.
	err := host.WaitHealthy(testContext(t), client, p.URL(), "/health", nil, time.Hour, p)
	if err == nil {
		t.Fatal("WaitHealthy succeeded for a process that exits at once")
	}
	t.Logf("the error a user sees:\n%v", err)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitHealthy ran into its deadline instead of noticing the exits: %v", err)
	}
	for _, want := range []string{"exit status 1", p.LogPath(), "fatal: model weights not found", "connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestWaitHealthyStoppedProcess(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t)
	p := start(t, h, host.Spec{ID: "stopped", Command: helperCommand(t, "")})
	if err := p.Stop(testContext(t)); err != nil {
		t.Fatal(err)
	}
	err := host.WaitHealthy(testContext(t), client, "", "/health", nil, time.Hour, p)
	if err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("WaitHealthy on a stopped process = %v, want an error that says it was stopped", err)
	}
}

func TestWaitHealthyNeverHealthy(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t)
	p := start(t, h, host.Spec{ID: "sick", Command: helperCommand(t, "FAIL_FIRST=1000000")})
	// Wait until it answers at all, so that the last answer is a status.
	if err := host.WaitHealthy(testContext(t), client, p.URL(), "/health", []int{503}, 15*time.Second, p); err != nil {
		t.Fatalf("WaitHealthy allowing 503: %v", err)
	}
	err := host.WaitHealthy(testContext(t), client, p.URL(), "/health", nil, 300*time.Millisecond, p)
	if err == nil {
		t.Fatal("WaitHealthy succeeded for a server that answers 503")
	}
	t.Logf("the error a user sees:\n%v", err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(err, context.DeadlineExceeded) = false for %v", err)
	}
	for _, want := range []string{"503 Service Unavailable", "a 2xx status", "the process is running", p.LogPath()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestWaitHealthyURLBackend(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name    string
		path    string
		allowed []int
		wantErr string
	}{
		{name: "any 2xx", path: "/ready"},
		{name: "listed status", path: "/missing", allowed: []int{404}},
		{name: "status not listed", path: "/ready", allowed: []int{200}, wantErr: "last answer: status 204"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := host.WaitHealthy(testContext(t), srv.Client(), srv.URL, tt.path, tt.allowed, 200*time.Millisecond, nil)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("WaitHealthy: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("WaitHealthy = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestWaitHealthyCanceled(t *testing.T) {
	t.Parallel()
	// A closed port: every probe is refused.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := host.WaitHealthy(ctx, client, srv.URL, "/health", nil, time.Hour, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("WaitHealthy with a canceled ctx = %v, want context.Canceled", err)
	}
}
