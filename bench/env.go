package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/modelslot/modelslot/sim"
)

// simNames are the simulators' model ids, reported in X-Sim-Model: the
// split is counted from that header, the same way for every proxy.
var simNames = [2]string{"production", "staging"}

// envOptions choose how the environment is built.
type envOptions struct {
	Dir string
	// InProcess serves the simulators and the modelslot daemon inside
	// this process (the smoke test: no binary to build); otherwise they
	// are separate processes of a freshly built modelslot binary.
	InProcess bool
	// Peers starts nginx and haproxy when found.
	Peers bool
	// GOGC and GOMAXPROCS for the modelslot process ("" = unset).
	GOGC, GOMAXPROCS string
	// Pin runs the proxies on CPU 0 and the simulators on CPU 1 (taskset).
	Pin bool
	// BaselineBin, when set, adds a target "modelslot-base" served by that
	// binary (e.g. built from the previous commit): before/after figures
	// from the same run.
	BaselineBin string
	Log         func(format string, args ...any)
}

type env struct {
	opts     envOptions
	bin      string
	sims     [2]string // host:port
	simProcs [2]*proc
	targets  []*target // direct first
	// Missing says which peers could not be run, and why.
	Missing []string
	// Commands are the command lines of the processes started.
	Commands []string
	adminURL string
	token    string
	cleanups []func()
}

func (e *env) target(name string) *target {
	for _, t := range e.targets {
		if t.Name == name {
			return t
		}
	}
	return nil
}

func (e *env) close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
	e.cleanups = nil
}

func (e *env) logf(format string, args ...any) {
	if e.opts.Log != nil {
		e.opts.Log(format, args...)
	}
}

func (e *env) pinned(cpu string, args []string) []string {
	if !e.opts.Pin {
		return args
	}
	return append([]string{"taskset", "-c", cpu}, args...)
}

func (e *env) start(ctx context.Context, args []string, name string, envv ...string) (*proc, error) {
	p, err := startProc(e.opts.Dir, name, envv, args...)
	if err != nil {
		return nil, err
	}
	e.Commands = append(e.Commands, strings.TrimSpace(strings.Join(envv, " ")+" "+strings.Join(args, " ")))
	e.cleanups = append(e.cleanups, p.stop)
	return p, nil
}

// setup starts the simulators, modelslot and the peers.
func setup(ctx context.Context, opts envOptions) (*env, error) {
	e := &env{opts: opts}
	if err := e.setup(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) setup(ctx context.Context) error {
	if !e.opts.InProcess {
		e.bin = filepath.Join(e.opts.Dir, "modelslot")
		e.logf("building %s", e.bin)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", e.bin, "./cmd/modelslot")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/modelslot (run from the repository root): %v\n%s", err, out)
		}
		e.Commands = append(e.Commands, "CGO_ENABLED=0 go build -o "+e.bin+" ./cmd/modelslot")
	}
	for i, name := range simNames {
		if e.opts.InProcess {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: sim.New(sim.Config{Model: name, Tokens: 16})}
			go srv.Serve(ln)
			e.cleanups = append(e.cleanups, func() { srv.Close() })
			e.sims[i] = ln.Addr().String()
			continue
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		e.sims[i] = fmt.Sprintf("127.0.0.1:%d", port)
		p, err := e.start(ctx, e.pinned("1", []string{e.bin, "sim", "--listen", e.sims[i], "--model", name, "--tokens", "16"}), "sim-"+name)
		if err != nil {
			return err
		}
		e.simProcs[i] = p
		if err := waitHTTP(ctx, "http://"+e.sims[i]+"/v1/chat/completions", p); err != nil {
			return err
		}
	}
	e.targets = append(e.targets, &target{Name: "direct", Addr: e.sims[0], proc: e.simProcs[0]})
	if err := e.startModelslot(ctx, "modelslot", e.bin); err != nil {
		return err
	}
	if e.opts.BaselineBin != "" {
		if err := e.startModelslot(ctx, "modelslot-base", e.opts.BaselineBin); err != nil {
			return err
		}
	}
	if e.opts.Peers {
		if err := e.startNginx(ctx); err != nil {
			return err
		}
		if err := e.startHAProxy(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) startModelslot(ctx context.Context, name, bin string) error {
	data := filepath.Join(e.opts.Dir, name+"-data")
	t := &target{Name: name}
	base := name != "modelslot"
	e.targets = append(e.targets, t)
	if e.opts.InProcess {
		cfg, err := config.Parse(strings.NewReader(serveConfig(data, 0, 0, e.sims)))
		if err != nil {
			return err
		}
		d, err := daemon.Start(ctx, daemon.Options{Config: cfg})
		if err != nil {
			return err
		}
		e.cleanups = append(e.cleanups, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d.Close(ctx)
		})
		t.Addr = strings.TrimPrefix(d.GatewayURL(), "http://")
		e.adminURL, e.token = d.AdminURL(), d.Token
		return waitHTTP(ctx, t.URL()+"/v1/chat/completions", nil)
	}
	listen, err := freePort()
	if err != nil {
		return err
	}
	admin, err := freePort()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(e.opts.Dir, name+".yaml")
	if err := os.WriteFile(cfgPath, []byte(serveConfig(data, listen, admin, e.sims)), 0o600); err != nil {
		return err
	}
	var envv []string
	if e.opts.GOGC != "" {
		envv = append(envv, "GOGC="+e.opts.GOGC)
	}
	if e.opts.GOMAXPROCS != "" {
		envv = append(envv, "GOMAXPROCS="+e.opts.GOMAXPROCS)
	}
	t.Addr = fmt.Sprintf("127.0.0.1:%d", listen)
	if !base {
		e.adminURL = fmt.Sprintf("http://127.0.0.1:%d", admin)
	}
	args := e.pinned("0", []string{bin, "serve", "--config", cfgPath, "--log-level", "warn"})
	t.restart = func(ctx context.Context) error {
		if t.proc != nil {
			t.proc.stop()
		}
		p, err := startProc(e.opts.Dir, name+"-serve", envv, args...)
		if err != nil {
			return err
		}
		t.proc = p
		e.cleanups = append(e.cleanups, p.stop)
		if err := waitHTTP(ctx, t.URL()+"/v1/chat/completions", p); err != nil {
			return err
		}
		if base {
			return nil
		}
		tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
		if err != nil {
			return fmt.Errorf("read admin token: %w", err)
		}
		e.token = strings.TrimSpace(string(tok))
		return nil
	}
	e.Commands = append(e.Commands, strings.TrimSpace(strings.Join(envv, " ")+" "+strings.Join(args, " ")))
	return t.restart(ctx)
}

func (e *env) startNginx(ctx context.Context) error {
	bin := findBinary("nginx")
	if bin == "" {
		e.Missing = append(e.Missing, "nginx: not found on PATH or in /usr/sbin (apt-get install nginx)")
		return nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(e.opts.Dir, "nginx")
	os.MkdirAll(dir, 0o755)
	cfgPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfgPath, []byte(nginxConfig(dir, port, e.sims)), 0o644); err != nil {
		return err
	}
	t := &target{Name: "nginx", Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	args := e.pinned("0", []string{bin, "-p", dir, "-c", cfgPath, "-e", filepath.Join(dir, "nginx-error.log")})
	t.restart = func(ctx context.Context) error {
		if t.proc != nil {
			t.proc.stop()
		}
		p, err := startProc(e.opts.Dir, "nginx", nil, args...)
		if err != nil {
			return err
		}
		t.proc = p
		e.cleanups = append(e.cleanups, p.stop)
		return waitHTTP(ctx, t.URL()+"/v1/chat/completions", p)
	}
	if err := t.restart(ctx); err != nil {
		e.Missing = append(e.Missing, "nginx: did not start: "+firstLine(err.Error()))
		return nil
	}
	e.Commands = append(e.Commands, strings.Join(args, " "))
	e.targets = append(e.targets, t)
	return nil
}

func (e *env) startHAProxy(ctx context.Context) error {
	bin := findBinary("haproxy")
	if bin == "" {
		e.Missing = append(e.Missing, "haproxy: not found on PATH or in /usr/sbin (apt-get install haproxy)")
		return nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(e.opts.Dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(haproxyConfig(port, e.sims)), 0o644); err != nil {
		return err
	}
	t := &target{Name: "haproxy", Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	args := e.pinned("0", []string{bin, "-f", cfgPath, "-db"})
	t.restart = func(ctx context.Context) error {
		if t.proc != nil {
			t.proc.stop()
		}
		p, err := startProc(e.opts.Dir, "haproxy", nil, args...)
		if err != nil {
			return err
		}
		t.proc = p
		e.cleanups = append(e.cleanups, p.stop)
		return waitHTTP(ctx, t.URL()+"/v1/chat/completions", p)
	}
	if err := t.restart(ctx); err != nil {
		e.Missing = append(e.Missing, "haproxy: did not start: "+firstLine(err.Error()))
		return nil
	}
	e.Commands = append(e.Commands, strings.Join(args, " "))
	e.targets = append(e.targets, t)
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// setSims changes both simulators' behaviour (in-process or not, through
// their admin API).
func (e *env) setSims(ctx context.Context, patch string) error {
	var errs []error
	for _, a := range e.sims {
		errs = append(errs, patchSim(ctx, a, patch))
	}
	return errors.Join(errs...)
}

// swap asks the modelslot admin API to swap staging into production.
func (e *env) swap(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.adminURL+"/api/v1/apps/default/swap", strings.NewReader(`{"source":"staging"}`))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("swap: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return fmt.Errorf("swap: status %d: %s", resp.StatusCode, b.String())
	}
	return nil
}
