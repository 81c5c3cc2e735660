//go:build !unix

package host

import (
	"errors"
	"os"
	"syscall"
)

// modelslot only targets Unix; elsewhere Host signals the process alone.

type sysSignal = os.Signal

var (
	sigTerm sysSignal = os.Kill
	sigKill sysSignal = os.Kill
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig sysSignal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}
