//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package gateway

import "syscall"

// alive reports whether a connection is still open and quiet: a backend
// that closed it (a keep-alive timeout, a restart) has sent FIN, and one
// that sent bytes nobody asked for has put it out of step; a non-blocking
// peek then reads end of file or data instead of "would block". put calls
// it at every answer's end, get on a connection idle for a while: one
// system call spares a request written into a dead connection (which could
// not be retried safely) or answered with another request's bytes.
func (c *upConn) alive() bool {
	if c.raw == nil {
		return true
	}
	if c.probe == nil {
		// Made once per connection: a closure per call would be an
		// allocation per request.
		c.probe = func(fd uintptr) bool {
			err := peekNonBlocking(fd)
			// Would block: open and quiet. Anything else: closed, reset,
			// or unsolicited bytes (the connection is out of step).
			c.probeOK = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
			return true
		}
	}
	c.probeOK = false
	err := c.raw.Read(c.probe)
	return c.probeOK && err == nil
}
