//go:build race && linux

package rawio

import "syscall"

// Under the race detector the system calls go through package syscall,
// whose Read and Write tell the detector what the kernel reads and writes
// and that a write to a socket happens before the read of its bytes (what
// internal/poll relies on). Raw system calls would hide both, and tests
// that synchronise through a loopback socket would report races that cannot
// happen. Everything else in this package runs the same with and without
// the detector.

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return n, errno(err)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return n, errno(err)
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}
