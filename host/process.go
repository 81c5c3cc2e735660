package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Process is one supervised command. Its methods are safe for concurrent use.
type Process struct {
	id      string
	port    int
	url     string
	logPath string
	line    string   // the shell line, with the port substituted
	env     []string // the full environment of the command
	logFile *os.File // owned by the supervisor; closed when it ends
	logger  *slog.Logger
	onDone  func(*Process)

	stopCh chan struct{} // closed by the first Stop
	done   chan struct{} // closed when the supervisor has ended

	mu       sync.Mutex
	cmd      *exec.Cmd // the current (or last) run
	started  time.Time // when cmd started
	running  bool
	stopping bool
	restarts int
	exits    int // how many runs have ended, for WaitHealthy to notice crashes
	lastExit string
}

// ID returns the Spec's ID.
func (p *Process) ID() string { return p.id }

// Port returns the loopback port the process was given.
func (p *Process) Port() int { return p.port }

// URL returns the base URL of the process, "http://127.0.0.1:<port>".
func (p *Process) URL() string { return p.url }

// LogPath returns the file that receives the process's stdout and stderr.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed when the process has stopped for good.
func (p *Process) Done() <-chan struct{} { return p.done }

// Restarts returns how many times the process was restarted after it exited.
func (p *Process) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// Running reports whether a run of the command is alive right now; it is
// false between a crash and the restart.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running
}

// LastExit describes how the last run ended, such as "exit status 1" or
// "signal: killed", or is "" if no run has ended yet.
func (p *Process) LastExit() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastExit
}

// state returns the fields WaitHealthy reports, read together.
func (p *Process) state() (exits, restarts int, running bool, lastExit string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exits, p.restarts, p.running, p.lastExit
}

// Stop stops the process for good and waits until it has exited: SIGTERM to
// its process group, then SIGKILL once ctx ends or after 10 s. It is never
// restarted afterwards. Stop is idempotent; a later call just waits.
func (p *Process) Stop(ctx context.Context) error {
	p.mu.Lock()
	if !p.stopping {
		p.stopping = true
		close(p.stopCh)
		p.signal(sigTerm)
	}
	p.mu.Unlock()

	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	select {
	case <-p.done:
		return nil
	case <-grace.C:
	case <-ctx.Done():
	}
	p.logger.Warn("process did not stop in time; killing it")
	p.mu.Lock()
	p.signal(sigKill)
	p.mu.Unlock()
	// SIGKILL cannot be ignored, so the run ends promptly, and Wait does not
	// wait for output copying because the log is an *os.File.
	<-p.done
	return nil
}

// signal sends sig to the current run's process group. p.mu must be held.
func (p *Process) signal(sig sysSignal) {
	if !p.running {
		return
	}
	if err := signalGroup(p.cmd.Process.Pid, sig); err != nil {
		p.logger.Debug("signal process group", "signal", sig, "err", err)
	}
}

// spawn starts one run of the command, unless Stop was called; restart says
// whether it replaces a run that ended.
func (p *Process) spawn(restart bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return errStopping
	}
	k := p.restarts
	if restart {
		k++
	}
	cmd := exec.Command("/bin/sh", "-c", p.line)
	cmd.Env = p.env
	cmd.Stdin = nil
	cmd.Stdout = p.logFile
	cmd.Stderr = p.logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(p.logFile, "--- could not start at %s (restart %d): %v\n", now(), k, err)
		return err
	}
	// Written after Start because the pid is only known then; the new
	// process is still exec'ing the server, so the line comes first in
	// practice.
	fmt.Fprintf(p.logFile, "--- started pid %d at %s (restart %d)\n", cmd.Process.Pid, now(), k)
	p.restarts = k
	p.cmd = cmd
	p.started = time.Now()
	p.running = true
	return nil
}

var errStopping = errors.New("the process is being stopped")

// supervise waits for each run to end and restarts it with backoff until
// Stop is called. It is the only goroutine a Process owns.
func (p *Process) supervise() {
	defer func() {
		p.logFile.Close()
		p.onDone(p)
		close(p.done)
	}()
	delay := backoffMin
	for {
		p.mu.Lock()
		cmd, started := p.cmd, p.started
		p.mu.Unlock()
		err := cmd.Wait()
		exit := exitText(err)
		// Children of the server (workers, a shell's background jobs) share
		// its process group; they would hold the port or a GPU across the
		// restart, so they go too. The leader is reaped by now, but Linux
		// does not hand out a pid while a group of that id has members, and
		// an empty group just yields ESRCH.
		_ = signalGroup(cmd.Process.Pid, sigKill)
		up := time.Since(started)

		p.mu.Lock()
		p.running = false
		p.exits++
		p.lastExit = exit
		stopping := p.stopping
		p.mu.Unlock()
		fmt.Fprintf(p.logFile, "--- exited at %s after %s: %s\n", now(), up.Round(time.Millisecond), exit)
		if stopping {
			p.logger.Info("process stopped", "exit", exit)
			return
		}

		if up >= backoffReset {
			delay = backoffMin
		}
		for {
			p.logger.Warn("process exited; restarting", "exit", exit, "uptime", up, "delay", delay, "log", p.logPath)
			t := time.NewTimer(delay)
			select {
			case <-p.stopCh:
				t.Stop()
				return
			case <-t.C:
			}
			delay = min(2*delay, backoffMax)
			err := p.spawn(true)
			if err == nil {
				break
			}
			if errors.Is(err, errStopping) {
				return
			}
			exit = "could not start: " + err.Error()
			p.mu.Lock()
			p.exits++
			p.lastExit = exit
			p.mu.Unlock()
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func now() string { return time.Now().Format(time.RFC3339) }
