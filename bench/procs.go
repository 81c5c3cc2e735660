package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// target is one way of reaching the simulated slots: directly, or through
// a proxy that splits 90/10 between them.
type target struct {
	Name string // direct, modelslot, nginx, haproxy
	Addr string // host:port
	// pids of the proxy's processes (nginx: master; workers are found
	// as its children); none for direct.
	proc *proc
	// restart starts the proxy afresh (for memory figures from a clean
	// process); nil for direct.
	restart func(ctx context.Context) error
}

func (t *target) URL() string { return "http://" + t.Addr }

// proc is a child process the harness started.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
}

// startProc starts a process with its output in a log file under dir.
func startProc(dir, name string, env []string, args ...string) (*proc, error) {
	log := filepath.Join(dir, name+".log")
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &proc{name: name, cmd: cmd, log: log}, nil
}

// stop ends the process (and, for nginx, its workers) by its own id.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// pids returns the process and its children (nginx workers).
func (p *proc) pids() []int {
	if p == nil || p.cmd.Process == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	out := []int{pid}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err == nil {
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

var clockTick = 100.0 // USER_HZ on Linux

// cpuTime is utime+stime of the process and its children (nginx workers).
func (p *proc) cpuTime() time.Duration {
	var total float64
	for _, pid := range p.pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		total += ut + st
	}
	return time.Duration(total / clockTick * float64(time.Second))
}

// rss is VmRSS of the process and its children, in bytes.
func (p *proc) rss() int64 {
	var total int64
	for _, pid := range p.pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers 200 or ctx ends.
func waitHTTP(ctx context.Context, url string, p *proc) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(chatBody))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			msg := ""
			if p != nil {
				msg = "\n" + p.tail()
			}
			return fmt.Errorf("%s did not answer: %v%s", url, err, msg)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// findBinary looks for a peer proxy on PATH, then in /usr/sbin.
func findBinary(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// nginxConfig splits 90/10 with upstream weights (smooth weighted round
// robin), keeps upstream connections alive and passes streams unbuffered,
// as the gateway does.
func nginxConfig(dir string, port int, backends [2]string) string {
	return fmt.Sprintf(`worker_processes 2;
worker_rlimit_nofile 20000;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
daemon off;
events { worker_connections 8192; multi_accept on; }
http {
  access_log off;
  client_body_temp_path %[1]s/nginx-body;
  proxy_temp_path %[1]s/nginx-proxy;
  fastcgi_temp_path %[1]s/nginx-fastcgi;
  uwsgi_temp_path %[1]s/nginx-uwsgi;
  scgi_temp_path %[1]s/nginx-scgi;
  keepalive_requests 10000000;
  upstream slots {
    server %[3]s weight=9;
    server %[4]s weight=1;
    keepalive 256;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:%[2]d backlog=4096;
    location / {
      proxy_pass http://slots;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }
  }
}
`, dir, port, backends[0], backends[1])
}

// haproxyConfig splits 90/10 with server weights and reuses upstream
// connections.
func haproxyConfig(port int, backends [2]string) string {
	return fmt.Sprintf(`global
  nbthread 2
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  option http-keep-alive
  http-reuse always
  option http-no-delay
frontend fe
  bind 127.0.0.1:%d
  default_backend slots
backend slots
  balance roundrobin
  server production %s weight 9
  server staging %s weight 1
`, port, backends[0], backends[1])
}

// serveConfig declares the default app with two URL deployments and 10%
// of traffic on staging.
func serveConfig(dataDir string, listen, admin int, backends [2]string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:%d
admin: 127.0.0.1:%d
data: %s
apps:
  - name: default
    slots:
      - name: production
        deployment:
          version: v1
          url: http://%s
      - name: staging
        deployment:
          version: v2
          url: http://%s
    traffic:
      staging: 10
`, listen, admin, dataDir, backends[0], backends[1])
}

// patchSim changes a running simulator's behaviour through its admin API.
func patchSim(ctx context.Context, addr, patch string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, "http://"+addr+"/admin/config", strings.NewReader(patch))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("patch sim %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return fmt.Errorf("patch sim %s: %d %s", addr, resp.StatusCode, b.String())
	}
	return nil
}
