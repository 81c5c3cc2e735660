//go:build unix

package host

import "syscall"

type sysSignal = syscall.Signal

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// sysProcAttr puts the command in a process group of its own, so that one
// signal reaches the server and everything it started, and a Ctrl-C at the
// daemon's terminal does not hit the servers before the daemon can stop them.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup signals the process group led by pid.
func signalGroup(pid int, sig sysSignal) error {
	return syscall.Kill(-pid, sig)
}
