// Package rawio reads and writes non-blocking sockets without telling the
// Go scheduler that a system call is under way.
//
// A read or write through net.Conn enters the runtime's system-call state.
// On a loopback socket a write also runs the receiver's side of TCP, and on
// a virtual machine that can take longer than the 20µs after which the
// runtime's monitor thread (sysmon) hands the goroutine's processor to
// another thread: a futex wake-up and two context switches per request, and
// sysmon itself waking every 20µs while it keeps finding such work. The
// gateway's profile on the 2-core benchmark machine showed about a third of
// its CPU time in those context switches.
//
// On a non-blocking socket read and write never block (they return EAGAIN
// instead, and then the goroutine waits in the netpoller as usual), so they
// can run as raw system calls, as the runtime's own netpoller does. Deadlines,
// Close and the netpoller's waiting stay those of the wrapped net.Conn.
//
// For a request-answer exchange, WriteAwaitRead writes the request and waits
// for the answer without first making the read that finds nothing (EAGAIN)
// with which every netpoller read begins.
//
// A Conn's Read must not be called from two goroutines at once, nor its
// Write (one reader and one writer at a time is fine).
package rawio

// Awaiter is a connection with WriteAwaitRead (a Conn, on Linux).
type Awaiter interface {
	WriteAwaitRead(p []byte) (int, error)
}

// CloseWriter is implemented by TCP connections (half-close).
type CloseWriter interface{ CloseWrite() error }
