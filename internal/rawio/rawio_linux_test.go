package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
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

// TestWriteAwaitRead: the request goes out, the wait ends when the answer
// arrives, and the Read after it finds the answer at once, where a Write
// and a Read first find nothing (EAGAIN) and then wait.
func TestWriteAwaitRead(t *testing.T) {
	c, peer := pair(t)
	w := c.(*Conn)
	answer := func() {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(20 * time.Millisecond) // the answer comes late
		peer.Write([]byte("pong"))
	}
	buf := make([]byte, 16)

	go answer()
	if n, err := w.Write([]byte("ping")); n != 4 || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if n, err := w.Read(buf); n != 4 || err != nil {
		t.Fatalf("Read: %q, %v", buf[:n], err)
	}
	if w.eagain == 0 {
		t.Fatal("a Read before the answer found nothing and waited: want an EAGAIN counted")
	}

	w.eagain = 0
	go answer()
	if n, err := w.WriteAwaitRead([]byte("ping")); n != 4 || err != nil {
		t.Fatalf("WriteAwaitRead: %d, %v", n, err)
	}
	if n, err := w.Read(buf); n != 4 || err != nil || string(buf[:4]) != "pong" {
		t.Fatalf("Read after WriteAwaitRead: %q, %v", buf[:n], err)
	}
	if w.eagain != 0 {
		t.Fatalf("%d reads found nothing after WriteAwaitRead, want 0", w.eagain)
	}
}

// TestWriteAwaitReadDeadline: a peer that never answers ends the wait at
// the read deadline, with everything written; the end of the connection
// ends it too.
func TestWriteAwaitReadDeadline(t *testing.T) {
	c, peer := pair(t)
	w := c.(*Conn)
	w.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := w.WriteAwaitRead([]byte("ping"))
	var ne net.Error
	if n != 4 || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("WriteAwaitRead to a silent peer: %d, %v; want 4 and a timeout", n, err)
	}
	w.SetReadDeadline(time.Time{})
	go func() {
		buf := make([]byte, 8)
		io.ReadFull(peer, buf[:4])
		peer.Close()
	}()
	if n, err := w.WriteAwaitRead([]byte("ping")); n != 4 || err != nil {
		t.Fatalf("WriteAwaitRead to a peer that hangs up: %d, %v", n, err)
	}
	buf := make([]byte, 8)
	// The first ping is still unread by the peer when it closes: a reset
	// or the end of file, either way an error.
	if _, err := w.Read(buf); err == nil {
		t.Fatal("Read after the peer hung up: no error")
	}
}

// TestWriteAwaitReadFullBuffer: when the send buffer fills up, it returns
// what it wrote, and the caller writes the rest.
func TestWriteAwaitReadFullBuffer(t *testing.T) {
	c, peer := pair(t)
	w := c.(*Conn)
	big := bytes.Repeat([]byte("x"), 64<<20)
	n, err := w.WriteAwaitRead(big)
	if err != nil || n == 0 || n >= len(big) {
		t.Fatalf("WriteAwaitRead of 64 MiB to a peer that does not read: %d, %v; want part of it", n, err)
	}
	got := make(chan int64, 1)
	go func() {
		m, _ := io.CopyN(io.Discard, peer, int64(len(big)))
		got <- m
	}()
	if m, err := w.Write(big[n:]); err != nil || n+m != len(big) {
		t.Fatalf("Write of the rest: %d, %v", m, err)
	}
	if m := <-got; m != int64(len(big)) {
		t.Fatalf("peer read %d bytes, want %d", m, len(big))
	}
}

// TestWriteAwaitReadDeadlinePassed: a read deadline that passed before the
// call (the caller's goroutine descheduled between setting it and calling)
// makes the netpoller refuse the wait before anything is written. That is
// the end of the wait, not an error: it returns 0 and nil, as with a full
// send buffer, and the caller's Write sends it all. (It returned the
// timeout, and the h1 server dropped the answer and the connection.)
func TestWriteAwaitReadDeadlinePassed(t *testing.T) {
	c, peer := pair(t)
	w := c.(*Conn)
	w.SetReadDeadline(time.Now().Add(-time.Second))
	n, err := w.WriteAwaitRead([]byte("ping"))
	if err != nil || n > 4 {
		t.Fatalf("WriteAwaitRead with its read deadline passed: %d, %v; want what it wrote and no error", n, err)
	}
	if n < 4 {
		if m, err := w.Write([]byte("ping")[n:]); err != nil || n+m != 4 {
			t.Fatalf("Write of the rest: %d, %v", m, err)
		}
	}
	buf := make([]byte, 4)
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer read %q, %v; want ping", buf, err)
	}
	// A write error is still an error.
	peer.Close()
	w.SetReadDeadline(time.Time{})
	var werr error
	for range 100 {
		if _, werr = w.WriteAwaitRead(bytes.Repeat([]byte("x"), 1<<16)); werr != nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if werr == nil {
		t.Fatal("WriteAwaitRead to a closed peer never failed")
	}
}
