//go:build linux

package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// maxRW caps one system call, as internal/poll does.
const maxRW = 1 << 30

// Conn is a net.Conn whose Read and Write are raw system calls.
type Conn struct {
	net.Conn
	rc                       syscall.RawConn
	readFn, writeFn, awaitFn func(uintptr) bool

	rp   []byte
	rn   int
	rerr syscall.Errno
	wp   []byte
	wn   int
	werr syscall.Errno
	// written: WriteAwaitRead has written its bytes and waits.
	written bool
	// eagain counts reads that found nothing (for tests).
	eagain int
}

// Wrap returns c with raw reads and writes, or c itself when it has no
// file descriptor (a pipe, a TLS connection).
func Wrap(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	w := &Conn{Conn: c, rc: rc}
	// Method values made once: a closure per call would allocate.
	w.readFn, w.writeFn, w.awaitFn = w.read, w.write, w.writeAwait
	return w
}

func (c *Conn) read(fd uintptr) bool {
	for {
		n, e := sysRead(fd, c.rp)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			c.eagain++
			return false // wait in the netpoller, then call again
		}
		c.rn, c.rerr = int(n), e
		return true
	}
}

// Read reads like net.Conn's Read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	c.rp, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rp = nil

	switch {
	case err != nil:
		return 0, err
	case c.rerr != 0:
		return 0, c.opError("read", c.rerr)
	case c.rn == 0:
		return 0, io.EOF
	}
	return c.rn, nil
}

func (c *Conn) write(fd uintptr) bool {
	for len(c.wp) > 0 {
		chunk := c.wp
		if len(chunk) > maxRW {
			chunk = chunk[:maxRW]
		}
		n, e := sysWrite(fd, chunk)
		switch e {
		case 0:
			c.wn += int(n)
			c.wp = c.wp[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // the send buffer is full: wait, then go on
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// Write writes all of p like net.Conn's Write.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wp, c.wn, c.werr = p, 0, 0
	err := c.rc.Write(c.writeFn)
	c.wp = nil
	switch {
	case err != nil:
		return c.wn, err
	case c.werr != 0:
		return c.wn, c.opError("write", c.werr)
	}
	return c.wn, nil
}

// WriteAwaitRead writes p, then waits until the connection has something
// to read, an error or its read deadline, without the read that Read makes
// before it waits (on a request just sent, that read finds nothing: one
// system call of five per proxied request).
//
// The netpoller clears a connection's readiness before every wait, and only
// what arrives after that raises it again; a Read therefore has to read
// first, in case its bytes came before. Here the readiness is cleared before
// the write: for a peer that says nothing until it has the request, such as
// an HTTP/1.1 server, everything it answers arrives after that, and wakes
// the wait. (The caller must not use it where the peer may have sent
// something unasked since the last read.)
//
// It returns the bytes written: fewer than len(p), with a nil error, when
// the send buffer filled up or the read deadline had already passed (then
// nothing is written), and the caller writes the rest with Write and reads
// as usual. It must not run at the same time as Write or Read.
func (c *Conn) WriteAwaitRead(p []byte) (int, error) {
	c.wp, c.wn, c.werr, c.written = p, 0, 0, false
	err := c.rc.Read(c.awaitFn)
	c.wp = nil
	switch {
	case c.werr != 0:
		return c.wn, c.opError("write", c.werr)
	case err != nil && !c.written && errors.Is(err, os.ErrDeadlineExceeded):
		// The read deadline had passed before the wait began: the
		// netpoller refuses the wait at once, before the write (a
		// goroutine descheduled between setting the deadline and this
		// call). The wait is over; the write is not, and is the
		// caller's, as after a full send buffer.
		return c.wn, nil
	case err != nil:
		return c.wn, err
	}
	return c.wn, nil
}

// writeAwait runs under the read side of the netpoller (rc.Read): its first
// call writes and asks to wait; the next, after the wait, ends it.
func (c *Conn) writeAwait(fd uintptr) bool {
	if c.written {
		return true // readable, or a spurious wake-up: Read will tell
	}
	for len(c.wp) > 0 {
		n, e := sysWrite(fd, c.wp)
		switch e {
		case 0:
			c.wn += n
			c.wp = c.wp[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			return true // the send buffer is full: the rest is Write's
		default:
			c.werr = e
			return true
		}
	}
	c.written = true
	return false
}

// rawRead and rawWrite are the raw system calls (see race.go for the race
// detector's build).
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// CloseWrite half-closes the wrapped connection when it can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(CloseWriter); ok {
		return cw.CloseWrite()
	}
	return &net.OpError{Op: "close", Net: c.LocalAddr().Network(), Err: syscall.ENOTSUP}
}

func (c *Conn) opError(op string, e syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, e)}
}
