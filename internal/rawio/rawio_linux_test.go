package rawio

import (
	"io"
	"syscall"
	"testing"
	"time"
)

// TestRawSyscalls runs the raw system calls themselves, which the race
// detector's build replaces (race.go): data, would-block and end of file,
// in one goroutine so that the detector has nothing to miss.
func TestRawSyscalls(t *testing.T) {
	c, peer := pair(t)
	w, ok := c.(*Conn)
	if !ok {
		t.Fatalf("Wrap gave %T on Linux", c)
	}
	rc, err := w.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	rc.Control(func(f uintptr) { fd = f })
	if n, e := rawWrite(fd, []byte("ping")); n != 4 || e != 0 {
		t.Fatalf("rawWrite: %d, %v", n, e)
	}
	buf := make([]byte, 8)
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.ReadFull(peer, buf[:4]); n != 4 || err != nil || string(buf[:4]) != "ping" {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
	if _, e := rawRead(fd, buf); e != syscall.EAGAIN {
		t.Fatalf("rawRead with nothing to read: %v, want EAGAIN (non-blocking)", e)
	}
	peer.Write([]byte("pong"))
	var n int
	var e syscall.Errno
	for range 1000 {
		if n, e = rawRead(fd, buf); e != syscall.EAGAIN {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if n != 4 || e != 0 || string(buf[:4]) != "pong" {
		t.Fatalf("rawRead: %q, %v", buf[:n], e)
	}
	peer.Close()
	for range 1000 {
		if n, e = rawRead(fd, buf); e != syscall.EAGAIN {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if n != 0 || e != 0 {
		t.Fatalf("rawRead after the peer closed: %d, %v; want 0 (end of file)", n, e)
	}
}
