//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package gateway

import "syscall"

// alive reports whether an idle connection is still open: a backend that
// closed it (a keep-alive timeout, a restart) has sent FIN, and a
// non-blocking peek then reads end of file instead of "would block". One
// system call per reuse spares a request written into a dead connection,
// which could not be retried safely.
func (c *upConn) alive() bool {
	if c.raw == nil {
		return true
	}
	if c.br.Buffered() > 0 {
		return false // bytes nobody asked for
	}
	var buf [1]byte
	ok := true
	err := c.raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			ok = true
		case err != nil, n == 0:
			ok = false // reset or closed
		default:
			ok = false // unsolicited bytes: the connection is out of step
		}
		return true
	})
	return ok && err == nil
}
