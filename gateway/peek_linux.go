package gateway

import (
	"syscall"
	"unsafe"
)

// peekNonBlocking peeks at one byte without waiting. A raw system call: it
// cannot block (MSG_DONTWAIT), so the scheduler need not know (see
// internal/rawio).
func peekNonBlocking(fd uintptr) error {
	var buf [1]byte
	_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
