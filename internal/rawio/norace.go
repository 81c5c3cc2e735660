//go:build !race && linux

package rawio

import "syscall"

func sysRead(fd uintptr, p []byte) (int, syscall.Errno)  { return rawRead(fd, p) }
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) { return rawWrite(fd, p) }
