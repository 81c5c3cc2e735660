// Package h1 is a lean HTTP/1.1 server for the gateway's listener.
//
// net/http's server costs a proxied request about a third of its CPU time
// on top of the proxying itself: a context, a response object with its own
// buffered writer, a header map and a background read (a goroutine and a
// system call) for every request, and read deadlines set and cleared around
// every request head. This server keeps net/http's Handler interface and
// its parsing (http.ReadRequest: request line, headers, Content-Length and
// chunked bodies with their limits), which internal/wire short-cuts for
// plainly formed heads with the same result, and drops the per-request
// machinery:
//
//   - one goroutine, one pair of buffers and one context per connection,
//     the response object and its header map reused from one request to the
//     next;
//   - no read deadline around a request head that is already whole in the
//     read buffer (the usual case); the header timeout still holds for heads
//     that arrive in pieces;
//   - the connection is watched for a client that hangs up only once a
//     request has run for WatchAfter (an LLM answer that takes seconds still
//     stops its upstream request when its client goes; a request answered in
//     microseconds does not pay for a background read);
//   - no runtime timer changed per request: the idle timeout and the bound
//     of the wait for the next request after an answer are kept by
//     server-wide sweeps, the watch's timer is set once for requests back
//     to back, and a request's context carries a cancellation hook that
//     costs no allocation (internal/ctxhook).
//
// It serves plain HTTP/1.x only (no TLS, no HTTP/2) and supports what a
// reverse proxy needs: streaming with Flush, chunked and close-delimited
// answers, trailers, 1xx answers, Expect: 100-continue, Hijack (upgrades),
// pipelining, graceful Shutdown.
package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/modelslot/modelslot/internal/ctxhook"
	"github.com/modelslot/modelslot/internal/rawio"
	"github.com/modelslot/modelslot/internal/wire"
)

// Server serves HTTP/1.x requests to Handler.
type Server struct {
	Handler http.Handler
	// MaxHeaderBytes bounds a request's head (default 1 MiB).
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the time to read a request's head: one
	// deadline for the whole head, from the connection's start for its
	// first request and from the first byte for the next ones (the wait
	// before is IdleTimeout's), as net/http does (default 0: none).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits longer for its
	// next request, and a new connection that sends nothing for that long
	// when there is no ReadHeaderTimeout (default 0: none). It is kept by
	// a sweep every eighth of it, not by a read deadline per request (a
	// runtime timer changed twice and four clock reads): a connection is
	// closed after between 1 and 1.25 times IdleTimeout of waiting.
	IdleTimeout time.Duration
	// WatchAfter is how long a request runs before its connection is
	// watched for a client that hangs up, which cancels the request's
	// context (default 20ms).
	WatchAfter time.Duration
	// Log receives connection errors at debug level and handler panics
	// at error level (default: discarded).
	Log *slog.Logger

	inShutdown atomic.Bool
	// epoch counts the idle sweeps (see IdleTimeout).
	epoch atomic.Int64
	// awaitEpoch counts the ticks of the watchdog of awaitNext's waits,
	// from 1; awaitWatch: the watchdog runs.
	awaitEpoch atomic.Int64
	awaitWatch atomic.Bool
	// endWaits ends every wait of awaitNext before it begins (for a test).
	endWaits  bool
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	baseCtx   context.Context
	cancel    context.CancelFunc
}

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

const (
	stateIdle int32 = iota
	stateActive
	stateClosed
	stateHijacked
)

// discardLimit is how much of a request body the handler left unread is
// read and thrown away to keep the connection (net/http's figure).
const discardLimit = 256 << 10

func (s *Server) init() {
	if s.conns == nil {
		s.awaitEpoch.Store(1)
		s.conns = map[*conn]struct{}{}
		s.listeners = map[net.Listener]struct{}{}
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
		if s.IdleTimeout > 0 {
			go s.sweepIdle()
		}
	}
}

// startAwaitWatch starts the watchdog of awaitNext's waits unless it runs.
func (s *Server) startAwaitWatch() {
	if !s.awaitWatch.Load() && s.awaitWatch.CompareAndSwap(false, true) {
		go s.watchAwaits()
	}
}

// watchAwaits ends the waits of awaitNext that began two ticks ago or
// more, a tick every half awaitFallback: a wait ends within about
// awaitFallback (sooner when a tick was late: ending a wait early costs
// only the read it spared). It stops at a tick that finds no connection
// waiting (the next wait starts it again).
func (s *Server) watchAwaits() {
	t := time.NewTicker(awaitFallback / 2)
	defer t.Stop()
	for {
		select {
		case <-s.baseCtx.Done():
			s.awaitWatch.Store(false)
			return
		case <-t.C:
		}
		e := s.awaitEpoch.Add(1)
		if s.endAwaits(e) {
			continue
		}
		// None waits: stop, unless a wait began after its connection
		// was looked at and its start found the watchdog still running.
		s.awaitWatch.Store(false)
		if !s.endAwaits(e) || !s.awaitWatch.CompareAndSwap(false, true) {
			return
		}
	}
}

// endAwaits ends the waits that began before epoch e-1 and reports
// whether any connection waits.
func (s *Server) endAwaits(e int64) bool {
	waiting := false
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		since := c.awaitSince.Load()
		if since <= 0 {
			continue
		}
		waiting = true
		if e-since >= 2 {
			c.endAwait(since)
		}
	}
	return waiting
}

// endAwait ends the wait that began at epoch since, if it still runs.
func (c *conn) endAwait(since int64) {
	c.awaitMu.Lock()
	if c.awaitSince.CompareAndSwap(since, awaitEnded) {
		c.nc.SetReadDeadline(aLongTimeAgo)
	}
	c.awaitMu.Unlock()
}

// idleSweeps is how many sweeps a connection waits before it is closed:
// two more than the eight that make IdleTimeout, since it may have begun
// to wait just after a sweep, and the first sweep it sees may be one that
// was due before (a ticker's late tick): at least eight sweeps' time has
// passed at the tenth.
const idleSweeps = 10

// notIdle marks a connection the sweep leaves alone (a new one whose
// first head has ReadHeaderTimeout's deadline).
const notIdle = math.MaxInt64

// sweepIdle closes the connections that have waited for their next request
// for IdleTimeout, every eighth of it, until Close, or until Shutdown has
// closed every connection.
func (s *Server) sweepIdle() {
	t := time.NewTicker(max(s.IdleTimeout/8, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.baseCtx.Done():
			return
		case <-t.C:
		}
		e := s.epoch.Add(1)
		s.mu.Lock()
		for c := range s.conns {
			if since := c.idleEpoch.Load(); since != notIdle && e-since >= idleSweeps && c.state.CompareAndSwap(stateIdle, stateClosed) {
				c.nc.Close()
			}
		}
		done := s.inShutdown.Load() && len(s.conns) == 0
		s.mu.Unlock()
		if done {
			return
		}
	}
}

// Serve accepts connections on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.init()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: wait and go on, as
			// net/http does.
			delay = max(5*time.Millisecond, min(2*delay, time.Second))
			s.logf("h1: accept error, retrying in %v: %v", delay, err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		c := s.newConn(nc)
		s.mu.Lock()
		if s.inShutdown.Load() {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections and waits until the
// active ones have finished their requests or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.init()
	s.inShutdown.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	wait := time.Millisecond
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// Close closes the listeners and every connection at once, cancelling the
// requests in flight.
func (s *Server) Close() error {
	s.mu.Lock()
	s.init()
	s.inShutdown.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.cancel()
	for c := range s.conns {
		c.state.Store(stateClosed)
		c.nc.Close()
	}
	s.mu.Unlock()
	return nil
}

// closeIdle closes the idle connections and reports whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.nc.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) logf(format string, args ...any) {
	if s.Log != nil && s.Log.Enabled(context.Background(), slog.LevelDebug) {
		s.Log.Debug(fmt.Sprintf(format, args...))
	}
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, rw: rawio.Wrap(nc)}
	c.lr.R = c.rw
	c.lr.N = math.MaxInt64
	c.br = bufio.NewReaderSize(&c.lr, 4096)
	c.bw = bufio.NewWriterSize(connWriter{c}, 4096)
	c.aw, _ = c.rw.(rawio.Awaiter)
	// A request's context is its connection's, with a cancellation hook
	// for the gateway's upstream exchange (see internal/ctxhook).
	c.ctx, c.cancel = ctxhook.New(s.baseCtx)
	c.res.header = http.Header{}
	if s.ReadHeaderTimeout > 0 {
		c.idleEpoch.Store(notIdle)
	} else {
		c.idleEpoch.Store(s.epoch.Load())
	}
	if a := nc.RemoteAddr(); a != nil {
		c.remote = a.String()
	}
	return c
}

// conn is one client connection.
type conn struct {
	s  *Server
	nc net.Conn
	// rw is nc with raw system calls (internal/rawio) for the hot path.
	rw     net.Conn
	lr     io.LimitedReader
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string
	ctx    context.Context
	cancel context.CancelFunc
	state  atomic.Int32
	// idleEpoch is the server's epoch when the connection began to wait
	// for its next request (notIdle: not counted).
	idleEpoch atomic.Int64
	res       response
	// body is the current request's body (for the watch; under watchMu).
	body *body
	// werr is the first error writing to the client.
	werr error
	// linger: the client may still be sending what the server will not
	// read (an unread body); see closeWriteAndDrain.
	linger bool
	// expect: the request asked for 100 Continue and its answer has not
	// started (the serving goroutine's); under contMu, canContinue: the
	// first body read may still send the 100 Continue, and continued: it
	// did.
	expect                 bool
	contMu                 sync.Mutex
	canContinue, continued bool
	// aw is rw's WriteAwaitRead (nil without); await asks the next write
	// to use it. awaitSince is the server's await epoch when the wait
	// began (0: not waiting, ended: the server's watchdog ended it, see
	// awaitNext); awaitMu orders the watchdog's deadline and the clearing
	// of it.
	aw         rawio.Awaiter
	await      bool
	awaitSince atomic.Int64
	awaitMu    sync.Mutex
	// handlerDeadline: a handler set a deadline on the connection
	// (http.ResponseController), cleared before the next request.
	handlerDeadline bool

	date    []byte
	dateSec int64
	scratch []byte

	// The watch for a client that hangs up (see Server.WatchAfter). The
	// timer is not stopped when a request ends, nor set again for the
	// next: while timerSet it fires once, and watch looks at the request
	// then running, started at reqStart (on the monotonic clock, see
	// mono), and sets the timer for the rest of its WatchAfter. A
	// connection with requests back to back pays a timer every WatchAfter,
	// not two changes of one per request.
	watchTimer *time.Timer
	watchMu    sync.Mutex
	inRequest  bool
	timerSet   bool
	reqStart   time.Duration
	watching   bool
	stopping   bool
	watchDone  chan struct{}
}

// connWriter records the first write error, so that a handler writing to a
// client that has gone stops early.
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) {
	c := w.c
	var n int
	var err error
	if c.await {
		n, err = c.awaitNext(p)
	} else {
		n, err = c.rw.Write(p)
	}
	if err != nil && c.werr == nil {
		c.werr = err
	}
	return n, err
}

// awaitFallback bounds the wait of awaitNext: the server's watchdog ends
// the waits that have lasted for about that long (see watchAwaits).
const awaitFallback = 20 * time.Millisecond

// awaitEnded marks conn.awaitSince of a wait the watchdog ended.
const awaitEnded = -1

// awaitNext writes the last bytes of an answer and waits for the next
// request without the read that finds nothing (rawio.WriteAwaitRead), one
// system call of five per proxied request. The readiness that wakes the
// wait is cleared before the write, so bytes the client sent since the
// last read, which only a pipelining client does, would not wake it: the
// wait is bounded by awaitFallback, after which the serve loop reads as
// usual, so such a client is delayed, never stuck.
//
// The bound is kept by the server's watchdog (watchAwaits), which sets
// the read deadline of a connection that has waited too long in the past,
// rather than by a read deadline per answer, set before the wait and
// cleared after it: a runtime timer changed twice and four clock reads an
// answer. A client that sends its next request within the bound, as
// under load, costs no deadline at all.
func (c *conn) awaitNext(p []byte) (int, error) {
	since := c.s.awaitEpoch.Load()
	c.awaitSince.Store(since)
	if c.s.endWaits {
		c.endAwait(since)
	} else {
		c.s.startAwaitWatch()
	}
	n, err := c.aw.WriteAwaitRead(p)
	if !c.awaitSince.CompareAndSwap(since, 0) {
		// The watchdog ended the wait: its deadline goes, under awaitMu,
		// which the watchdog held while it set it.
		c.awaitMu.Lock()
		c.nc.SetReadDeadline(time.Time{})
		c.awaitSince.Store(0)
		c.awaitMu.Unlock()
	}
	if err != nil && n == len(p) {
		err = nil // the wait's end: the next read tells
	}
	if err == nil && n < len(p) {
		m, werr := c.rw.Write(p[n:])
		n, err = n+m, werr
	}
	return n, err
}

func (c *conn) serve() {
	defer func() {
		if p := recover(); p != nil {
			if c.s.Log != nil {
				c.s.Log.Error("panic in the HTTP server", "client", c.remote, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			}
		}
		st := c.state.Swap(stateClosed)
		if st != stateHijacked {
			if c.linger {
				c.closeWriteAndDrain()
			}
			c.nc.Close()
		}
		c.cancel()
		if c.watchTimer != nil {
			c.watchTimer.Stop()
		}
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	}()
	maxHeader := int64(c.s.MaxHeaderBytes)
	if maxHeader <= 0 {
		maxHeader = 1 << 20
	}
	for first := true; ; first = false {
		// Waiting for a request: for a new connection the header timeout,
		// which bounds its whole first head (a client that connects and
		// sends nothing is dropped, as by net/http); for the next requests
		// the idle timeout, which the server's sweep keeps (sweepIdle).
		armed := false
		if c.handlerDeadline {
			c.handlerDeadline = false
			c.nc.SetDeadline(time.Time{})
		}
		if first && c.s.ReadHeaderTimeout > 0 {
			c.nc.SetReadDeadline(time.Now().Add(c.s.ReadHeaderTimeout))
			armed = true
		}
		// The head's limit counts from its first byte.
		c.lr.N = maxHeader + 4096
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // closed by Shutdown while the request arrived
		}
		// A head already whole in the buffer cannot block: no deadline.
		// Otherwise the head has one deadline, never moved once its first
		// byte has come: a client sending it a byte at a time is cut at
		// the header timeout, not at twice it.
		c.idleEpoch.Store(notIdle)
		end := -1
		if c.s.ReadHeaderTimeout > 0 {
			end = wire.HeadLen(c.br)
		}
		deadline := c.s.ReadHeaderTimeout > 0 && end < 0
		switch {
		case deadline && !armed:
			c.nc.SetReadDeadline(time.Now().Add(c.s.ReadHeaderTimeout))
		case !deadline && armed:
			c.nc.SetReadDeadline(time.Time{})
		}
		req, plain, err := wire.ReadRequestHead(c.ctx, c.br, int(maxHeader), end)
		if deadline {
			c.nc.SetReadDeadline(time.Time{})
		}
		if err != nil {
			c.badRequest(err)
			return
		}
		c.lr.N = math.MaxInt64
		if code, msg := checkRequest(req, plain); code != 0 {
			c.reject(code, msg)
			return
		}
		if !c.serveRequest(req) {
			return
		}
		c.idleEpoch.Store(c.s.epoch.Load())
		if !c.state.CompareAndSwap(stateActive, stateIdle) || c.s.inShutdown.Load() {
			return
		}
	}
}

// checkRequest applies the server-side rules that http.ReadRequest leaves
// to the server. Its textproto reader checks header values and names byte
// by byte but lets a name with a space through ("Transfer-Encoding :",
// go.dev/issue/34540), which net/http's server refuses and so does this one.
func checkRequest(req *http.Request, plain bool) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version"
	}
	if req.ProtoAtLeast(1, 1) && req.Host == "" && req.Method != "CONNECT" {
		return http.StatusBadRequest, "missing required Host header"
	}
	if req.Host != "" && !httpguts.ValidHostHeader(req.Host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	if !plain { // internal/wire parsed names as tokens
		for k := range req.Header {
			if strings.IndexByte(k, ' ') >= 0 {
				return http.StatusBadRequest, "invalid header name"
			}
		}
	}
	if e := req.Header["Expect"]; len(e) > 0 {
		if len(e) > 1 || !strings.EqualFold(e[0], "100-continue") || !req.ProtoAtLeast(1, 1) {
			return http.StatusExpectationFailed, "unsupported Expect header"
		}
	}
	return 0, ""
}

func (c *conn) badRequest(err error) {
	switch {
	case c.lr.N <= 0:
		c.reject(http.StatusRequestHeaderFieldsTooLarge, "request header too large")
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), isTimeout(err):
		// The client went away or was too slow: nobody to answer.
	default:
		c.reject(http.StatusBadRequest, "malformed request")
	}
}

// reject answers a request the server will not hand to the handler, and
// the connection is then closed (as net/http does).
func (c *conn) reject(code int, msg string) {
	c.s.logf("h1: %s: %d %s", c.remote, code, msg)
	c.linger = true
	text := strconv.Itoa(code) + " " + http.StatusText(code) + ": " + msg
	c.bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(text)) + "\r\n\r\n" + text)
	c.bw.Flush()
}

// lingerTime bounds closeWriteAndDrain (net/http waits 500ms too).
const lingerTime = 500 * time.Millisecond

// closeWriteAndDrain ends the connection without a reset: closing a socket
// with unread input makes the kernel send RST, which can destroy the answer
// before the client has read it (a client still sending a body it was
// refused, such as a request too large). The server half-closes, then reads
// and drops what comes until the client closes or lingerTime passes.
func (c *conn) closeWriteAndDrain() {
	if cw, ok := c.nc.(rawio.CloseWriter); ok {
		cw.CloseWrite()
	}
	c.nc.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, c.rw)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serveRequest runs the handler for one request and reports whether the
// connection can carry the next one.
func (c *conn) serveRequest(req *http.Request) (keep bool) {
	req.RemoteAddr = c.remote
	// A body per request: a transport that still reads or closes the
	// last one after its handler returned (net/http's, writing a request
	// body to an https backend) must not touch the next.
	b := newBody(req.Body)
	c.expect = false
	expected := false
	if req.Body != http.NoBody {
		req.Body = b
		if _, ok := req.Header["Expect"]; ok {
			// The body is asked for when the handler first reads it, as
			// net/http does: a request the handler refuses from its head
			// (a body over the limit) is answered without inviting the
			// body first.
			c.expect, expected = true, true
			c.contMu.Lock()
			c.canContinue, c.continued = true, false
			c.contMu.Unlock()
			b.c = c
		}
	}
	w := &c.res
	w.reset(c, req)
	// Taken before the handler, which may change the request.
	upgrade, bodyLen := req.Header["Upgrade"] != nil, req.ContentLength
	if !upgrade {
		c.armWatch(b)
	}
	ok := c.callHandler(w, req)
	if !upgrade {
		c.endWatch()
	}
	// Reads after the handler (a transport's late ones) fail from now on;
	// what is left of the body is drained below through b.rc.
	b.closed.Store(true)
	if c.state.Load() == stateHijacked {
		return false
	}
	if !ok {
		// The handler panicked (http.ErrAbortHandler: the answer broke
		// off): the client must see a truncated answer, not a complete one.
		return false
	}
	// A body never asked for (100 Continue not sent) may never come:
	// the connection ends after the answer rather than wait for it.
	uninvited := expected && !c.endContinue()
	if !b.eof.Load() && b.rc != nil && (bodyLen < 0 || bodyLen > discardLimit || uninvited) {
		// Too much may be left to read: say that the connection ends.
		w.closeAfter = true
	}
	w.finish((b.eof.Load() || b.rc == nil) && c.br.Buffered() == 0 && !c.s.inShutdown.Load())
	if c.werr != nil {
		return false
	}
	if !b.eof.Load() && b.rc != nil {
		if uninvited {
			c.linger = true
			return false
		}
		// Read the rest of a body the handler did not want, within limits.
		n, err := io.CopyN(io.Discard, b.rc, discardLimit+1)
		if err != io.EOF || n > discardLimit {
			c.linger = true
			return false
		}
	}
	return w.keepAlive()
}

func (c *conn) callHandler(w *response, req *http.Request) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				// A bug in the handler: logged loudly, as net/http does; the
				// connection is closed and the server goes on.
				if c.s.Log != nil {
					c.s.Log.Error("panic serving a request", "method", req.Method, "path", req.URL.Path, "client", c.remote, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				}
			}
			ok = false
		}
	}()
	c.s.Handler.ServeHTTP(w, req)
	return true
}

// watchAfter is Server.WatchAfter or its default.
func (s *Server) watchAfter() time.Duration {
	if s.WatchAfter > 0 {
		return s.WatchAfter
	}
	return 20 * time.Millisecond
}

// armWatch makes sure the timer after which the connection is watched
// will fire (see conn.watchTimer).
func (c *conn) armWatch(b *body) {
	d := c.s.watchAfter()
	now := mono()
	c.watchMu.Lock()
	c.inRequest = true
	c.body = b
	c.reqStart = now
	if !c.timerSet {
		c.timerSet = true
		if c.watchTimer == nil {
			c.watchTimer = time.AfterFunc(d, c.watch)
		} else {
			c.watchTimer.Reset(d)
		}
	}
	c.watchMu.Unlock()
}

// monoBase is the origin of mono.
var monoBase = time.Now()

// mono reads the monotonic clock alone (time.Now reads the wall clock
// too).
func mono() time.Duration { return time.Since(monoBase) }

// watch reads from the connection while the handler runs: an error other
// than the deadline endWatch sets means the client has gone, which cancels
// the connection's context and with it the request.
func (c *conn) watch() {
	c.watchMu.Lock()
	c.timerSet = false
	if !c.inRequest || c.watching {
		// Between requests, or watched already: the next request sets
		// the timer again.
		c.watchMu.Unlock()
		return
	}
	d := c.s.watchAfter()
	if ran := mono() - c.reqStart; ran < d {
		// A request that began since the timer was set: its turn comes
		// when it has run for d.
		c.timerSet = true
		c.watchTimer.Reset(d - ran)
		c.watchMu.Unlock()
		return
	}
	if !c.body.done() {
		// The handler still reads the body: look again later.
		c.timerSet = true
		c.watchTimer.Reset(d)
		c.watchMu.Unlock()
		return
	}
	c.watching = true
	done := make(chan struct{})
	c.watchDone = done
	c.watchMu.Unlock()

	_, err := c.br.Peek(1)
	c.watchMu.Lock()
	stopped := c.stopping
	c.watchMu.Unlock()
	if err != nil && !(stopped && isTimeout(err)) {
		c.cancel()
	}
	close(done)
}

// endWatch stops the timer and a running watch, so that the connection is
// the serving goroutine's alone again.
func (c *conn) endWatch() {
	c.watchMu.Lock()
	c.inRequest = false
	watching := c.watching
	done := c.watchDone
	if watching {
		c.stopping = true
	}
	c.watchMu.Unlock()
	if !watching {
		return
	}
	c.nc.SetReadDeadline(aLongTimeAgo)
	<-done
	c.nc.SetReadDeadline(time.Time{})
	c.watchMu.Lock()
	c.watching, c.stopping, c.watchDone = false, false, nil
	c.watchMu.Unlock()
}

var aLongTimeAgo = time.Unix(1, 0)

var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// sendContinue invites the request's body, unless the answer has started.
// It may run on another goroutine than the handler's (a transport writing
// the body upstream): it writes to the socket itself, under contMu, which
// the handler's goroutine takes before it first writes (stopContinue).
func (c *conn) sendContinue() error {
	c.contMu.Lock()
	defer c.contMu.Unlock()
	if !c.canContinue {
		return nil
	}
	c.canContinue = false
	if _, err := c.rw.Write(continueLine); err != nil {
		return err
	}
	c.continued = true
	return nil
}

// stopContinue is called before the answer's first byte is written: from
// then on the body is no longer invited by a read. sent100: the handler
// itself sends 100 Continue.
func (c *conn) stopContinue(sent100 bool) {
	if c.expect {
		c.expect = false
		c.contMu.Lock()
		c.canContinue = false
		c.continued = c.continued || sent100
		c.contMu.Unlock()
	}
}

// endContinue stops the invitation and reports whether it was sent.
func (c *conn) endContinue() bool {
	c.contMu.Lock()
	defer c.contMu.Unlock()
	c.canContinue = false
	return c.continued
}

// body wraps the request body: it records the end of the body (for the
// watch and for keep-alive), never lets Close drain an unbounded body and
// sends 100 Continue at its first read when the request expects it.
type body struct {
	rc     io.ReadCloser
	eof    atomic.Bool
	closed atomic.Bool
	// c is the connection that owes the client a 100 Continue (nil:
	// none); only the body's reader touches it.
	c *conn
}

func newBody(rc io.ReadCloser) *body {
	b := &body{rc: rc}
	if rc == http.NoBody {
		b.rc = nil
	}
	b.eof.Store(b.rc == nil)
	return b
}

func (b *body) done() bool { return b.eof.Load() }

func (b *body) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.rc == nil {
		return 0, io.EOF
	}
	if c := b.c; c != nil {
		b.c = nil
		if err := c.sendContinue(); err != nil {
			return 0, err
		}
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

func (b *body) Close() error {
	b.closed.Store(true)
	return nil
}
