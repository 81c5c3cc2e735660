// Package host supervises the model-server processes behind local deployment
// slots: it starts a command on a free loopback port, logs its output to a
// file, restarts it with backoff when it crashes and stops it on request.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Restart backoff: the delay before restarting a crashed process starts at
// backoffMin, doubles up to backoffMax, and drops back to backoffMin once a
// process has stayed up for backoffReset (it was healthy; the crash is news).
const (
	backoffMin   = 100 * time.Millisecond
	backoffMax   = 10 * time.Second
	backoffReset = 30 * time.Second
)

// stopGrace is how long a process gets between SIGTERM and SIGKILL when the
// caller's context allows that long.
const stopGrace = 10 * time.Second

// Spec says what to run.
type Spec struct {
	// ID is a unique, stable name such as "default/staging/3f2a9c". It names
	// the log file, after every character other than letters, digits, '.',
	// '-' and '_' is replaced by '_'.
	ID string
	// Command is a shell command line, run by /bin/sh. Every "{port}" is
	// replaced by the chosen port. Host puts "exec" in front of the command
	// word so that the server itself, not a shell, is the supervised process
	// and receives the signals; a line with shell operators (; & | ( ) or a
	// backquote) is run as written and should exec its last command itself.
	Command string
	// Env is added to the daemon's environment; PORT=<port> is set as well
	// and wins over an Env entry of the same name.
	Env map[string]string
	// Port is the loopback port to use; 0 picks a free one.
	Port int
}

// Host starts and supervises processes. Its zero value is not usable; call
// New.
type Host struct {
	logger *slog.Logger
	logDir string

	mu     sync.Mutex
	procs  map[string]*Process // by ID, until the process is stopped for good
	closed bool
}

// New returns a Host that writes process logs under logDir (created on the
// first Start). A nil logger discards the Host's own logs.
func New(logger *slog.Logger, logDir string) *Host {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Host{logger: logger, logDir: logDir, procs: make(map[string]*Process)}
}

// Start starts spec's command and returns once the process has started; it
// does not wait for the server to be healthy (see WaitHealthy). ctx bounds
// the start only: the process lives until Stop or Close.
func (h *Host) Start(ctx context.Context, spec Spec) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	if err := validate(spec); err != nil {
		return nil, err
	}

	// The lock is held across the start so that Close cannot miss a
	// process that is being started, and two starts cannot share an ID.
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("start %s: the host is shutting down", spec.ID)
	}
	if _, ok := h.procs[spec.ID]; ok {
		return nil, fmt.Errorf("start %s: a process with this ID is already running", spec.ID)
	}

	port := spec.Port
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return nil, fmt.Errorf("start %s: choose a port: %w", spec.ID, err)
		}
	}
	if err := os.MkdirAll(h.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("start %s: create log directory: %w", spec.ID, err)
	}
	logPath := filepath.Join(h.logDir, logName(spec.ID))
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", spec.ID, err)
	}

	p := &Process{
		id:      spec.ID,
		port:    port,
		url:     "http://127.0.0.1:" + strconv.Itoa(port),
		logPath: logPath,
		line:    shellLine(strings.ReplaceAll(spec.Command, "{port}", strconv.Itoa(port))),
		env:     append(environ(spec.Env, port), ownerVar+"="+h.owner()),
		logFile: logFile,
		logger:  h.logger.With("process", spec.ID),
		stopCh:  make(chan struct{}),
		done:    make(chan struct{}),
		onDone:  h.forget,
	}
	if err := p.spawn(false); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	h.procs[spec.ID] = p
	go p.supervise()
	p.logger.Info("process started", "port", port, "log", logPath)
	return p, nil
}

// Close stops every process: SIGTERM to each process group, then SIGKILL
// once ctx ends or after 10 s, whichever is first. Later Starts fail.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	procs := slices.Collect(maps.Values(h.procs))
	h.mu.Unlock()

	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.Stop(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// forget drops a process that has stopped for good, so that its ID can be
// used again.
func (h *Host) forget(p *Process) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.procs[p.id] == p {
		delete(h.procs, p.id)
	}
}

func validate(spec Spec) error {
	if spec.ID == "" {
		return errors.New("start: the process needs an ID")
	}
	if strings.TrimSpace(spec.Command) == "" {
		return fmt.Errorf("start %s: the command is empty", spec.ID)
	}
	if spec.Port < 0 || spec.Port > 65535 {
		return fmt.Errorf("start %s: port %d is out of range 0-65535", spec.ID, spec.Port)
	}
	for k := range spec.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("start %s: invalid environment variable name %q", spec.ID, k)
		}
	}
	return nil
}

// freePort asks the kernel for a free loopback port. The port is released
// before the process binds it, so another program could take it in between;
// that race is rare and shows up as a crash-and-restart loop in the log, which
// is acceptable for a local daemon.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// logName turns an ID into a file name that stays inside the log directory.
func logName(id string) string {
	name := unsafeName.ReplaceAllString(id, "_")
	// A leading dot would hide the file or, as "..", escape the directory.
	if strings.HasPrefix(name, ".") {
		name = "_" + name[1:]
	}
	return name + ".log"
}

// ownerVar marks every process a Host starts with the Host's log
// directory, so that a daemon restarted after a SIGKILL can find and stop
// the servers its previous life left behind (see ReapOrphans).
const ownerVar = "MODELSLOT_HOST_DIR"

func (h *Host) owner() string {
	if abs, err := filepath.Abs(h.logDir); err == nil {
		return abs
	}
	return h.logDir
}

// ReapOrphans kills the process groups of servers that an earlier Host with
// the same log directory started and that outlived it (the daemon was
// killed). Call it before the first Start; it returns how many it stopped.
func (h *Host) ReapOrphans() int {
	n := 0
	for _, pid := range findOwned(ownerVar + "=" + h.owner()) {
		if signalGroup(pid, sigKill) == nil {
			h.logger.Warn("stopped a model server left running by an earlier daemon", "pid", pid)
			n++
		}
	}
	return n
}

func environ(extra map[string]string, port int) []string {
	env := os.Environ()
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		env = append(env, k+"="+extra[k])
	}
	// exec.Cmd keeps the last value of a duplicated name, so these win.
	return append(env, "PORT="+strconv.Itoa(port))
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=[^'"\\$` + "`" + `]*$`)

// shellLine puts "exec" in front of the command word (after any leading
// NAME=value words) so that the shell replaces itself with the server: the
// supervised pid is then the server, its exit status is the server's, and a
// SIGTERM is answered by the server's own shutdown rather than the shell's.
// Lines with shell operators are left alone: there the user knows which
// command should exec.
func shellLine(cmd string) string {
	cmd = strings.TrimSpace(cmd)
	if strings.ContainsAny(cmd, ";&|()`\n") {
		return cmd
	}
	words := strings.Fields(cmd)
	i := 0
	for i < len(words) && assignment.MatchString(words[i]) {
		i++
	}
	if i == len(words) || words[i] == "exec" {
		return cmd
	}
	if i == 0 {
		return "exec " + cmd
	}
	// Re-joining the fields is safe: assignments hold no quotes, and the
	// rest of the line is kept verbatim.
	rest := cmd
	for range i {
		rest = strings.TrimLeft(rest, " \t")
		rest = rest[strings.IndexAny(rest, " \t"):]
	}
	return strings.Join(words[:i], " ") + " exec " + strings.TrimLeft(rest, " \t")
}
