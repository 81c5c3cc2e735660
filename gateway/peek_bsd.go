//go:build darwin || freebsd || netbsd || openbsd || dragonfly

package gateway

import "syscall"

// peekNonBlocking peeks at one byte without waiting.
func peekNonBlocking(fd uintptr) error {
	var buf [1]byte
	_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err
}
