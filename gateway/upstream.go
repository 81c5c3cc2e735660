package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelslot/modelslot/internal/ctxhook"
	"github.com/modelslot/modelslot/internal/rawio"
	"github.com/modelslot/modelslot/internal/wire"
)

// upstream is the gateway's HTTP/1.1 client for plain-http backends (the
// model servers next to it). Unlike http.Transport, which hands every
// request to a per-connection writer goroutine and its response back from
// a reader goroutine, it writes the request and reads the response on the
// calling (handler) goroutine over a pool of keep-alive connections: two
// goroutine hand-offs fewer per request, and no reader goroutine or its
// stack per idle connection. Answers are read by internal/wire, which
// parses plain heads with a Content-Length itself and leaves every other
// head to http.ReadResponse, so their framing (chunked, close-delimited,
// HEAD, 1xx) is net/http's own; requests are written by
// writeRequest in one flush, which on Linux also waits for the answer
// (rawio.WriteAwaitRead).
//
// What it does not do goes to the fallback Transport: https (and so
// HTTP/2), protocol upgrades, Expect: 100-continue and request trailers.
type upstream struct {
	fallback *http.Transport
	dialer   *net.Dialer
	// maxIdle bounds idle connections kept per backend address.
	maxIdle     int
	idleTimeout time.Duration
	// headerTimeout bounds the wait for response headers.
	headerTimeout time.Duration
	// maxHead bounds a response head in bytes, with the 1xx heads
	// before it.
	maxHead int64

	// noEndPeek skips put's peek (for BenchmarkUpstreamEndPeek only).
	noEndPeek bool

	mu     sync.Mutex
	idle   map[string][]*upConn // by host:port, most recently used last
	closed bool
	stop   chan struct{}

	// The header timeout is kept by a sweep every eighth of it (see
	// sweepHeads), not by a read deadline set and cleared per request.
	// epoch counts the sweeps; conns is every open connection.
	epoch  atomic.Int64
	connMu sync.Mutex
	conns  map[*upConn]struct{}
}

func newUpstream(fallback *http.Transport, dialer *net.Dialer, maxIdle int, idleTimeout, headerTimeout time.Duration, maxHead int64) *upstream {
	u := &upstream{
		fallback:      fallback,
		dialer:        dialer,
		maxIdle:       maxIdle,
		idleTimeout:   idleTimeout,
		headerTimeout: headerTimeout,
		maxHead:       maxHead,
		idle:          map[string][]*upConn{},
		stop:          make(chan struct{}),
		conns:         map[*upConn]struct{}{},
	}
	go u.janitor()
	return u
}

// upConn is one pooled connection to a backend.
type upConn struct {
	u    *upstream
	addr string
	conn net.Conn
	raw  syscall.RawConn // for the liveness probe; nil if unavailable
	// probe and probeOK are the liveness probe's callback and result.
	probe   func(fd uintptr) bool
	probeOK bool
	br      *bufio.Reader
	// written counts bytes written to conn during the current request, to
	// tell "nothing was sent" (safe to retry) from a partial request.
	written int64
	// headLeft is what may still be read of the response head being
	// read (MaxInt64 while a body is read).
	headLeft int64
	// drained: the last read from conn returned less than it asked for,
	// so the socket held nothing more at that moment (see put).
	drained bool
	idleAt  time.Duration // on the monotonic clock (mono)
	reused  bool
	// headSince is the upstream's epoch when the request was sent and
	// its answer's head awaited, notWaiting otherwise, timedOut once the
	// sweep has ended the wait.
	headSince atomic.Int64
	sweepMu   sync.Mutex
	// cancelFn is cancel as a func value, made once. The exchange's
	// cancellation is watched through hk (hookID) or afterStop, see
	// watchCancel.
	cancelFn  func()
	hk        ctxhook.Context
	hookID    uint64
	afterStop func() bool
	// awaiter is conn's WriteAwaitRead (nil without one); await asks
	// Write to use it.
	awaiter rawio.Awaiter
	await   bool
}

// Read reads for br, within the head's limit: a backend that sends an
// endless head is cut off there, as by http.Transport's
// MaxResponseHeaderBytes (which counts the same way, the bytes read with
// the head's end included).
func (c *upConn) Read(p []byte) (int, error) {
	if c.headLeft <= 0 {
		return 0, headTooLarge{c.u.maxHead}
	}
	if int64(len(p)) > c.headLeft {
		p = p[:c.headLeft]
	}
	n, err := c.conn.Read(p)
	c.headLeft -= int64(n)
	c.drained = err == nil && n < len(p)
	return n, err
}

func (c *upConn) Write(p []byte) (int, error) {
	if c.await {
		// The whole request in one write: see writeRequest.
		c.await = false
		n, err := c.awaiter.WriteAwaitRead(p)
		c.written += int64(n)
		if err != nil && n == len(p) {
			err = headerTimeout(err) // the wait's, not the write's
		}
		if err != nil || n == len(p) {
			return n, err
		}
		p = p[n:]
	}
	n, err := c.conn.Write(p)
	c.written += int64(n)
	return n, err
}

// probeAfter: a connection idle for less is reused without the liveness
// probe. put found it quiet at its answer's end, no server closes a
// keep-alive connection for idleness that soon, and at load most
// connections come back within microseconds: the probe, a system call on
// top of the four a request needs, is skipped where it almost never finds
// anything. (A backend that dies within that millisecond is found when the
// connection is used, as with net/http's Transport.)
const probeAfter = time.Millisecond

// notWaiting and timedOut are upConn.headSince's marks.
const (
	notWaiting = math.MaxInt64
	timedOut   = math.MinInt64
)

// headSweeps is how many sweeps an answer's head is awaited before the
// header timeout ends the wait: two more than the eight that make the
// timeout, as the wait may have begun just after a sweep, and the first
// sweep it sees may be one that was due before (a ticker's late tick): at
// least eight sweeps' time has passed at the tenth.
const headSweeps = 10

// monoBase is the origin of mono.
var monoBase = time.Now()

// mono reads the monotonic clock alone (time.Now reads the wall clock
// too).
func mono() time.Duration { return time.Since(monoBase) }

// RoundTrip implements http.RoundTripper.
func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, _, err := u.roundTripInto(req, nil)
	return resp, err
}

// roundTripInto is RoundTrip for a proxy that puts the answer's header
// fields, but the hop-by-hop ones, into dst (its client's header map):
// when merged, resp.Header is dst and holds them (wire.ReadResponseInto);
// otherwise dst is untouched. A nil dst merges nothing.
func (u *upstream) roundTripInto(req *http.Request, dst http.Header) (resp *http.Response, merged bool, err error) {
	if req.URL.Scheme != "http" || !plainExchange(req) {
		resp, err = u.fallback.RoundTrip(req)
		return resp, false, err
	}
	addr := req.URL.Host
	if !hasPort(addr) {
		addr += ":80"
	}
	for attempt := 0; ; attempt++ {
		c, err := u.get(req.Context(), addr)
		if err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, false, err
		}
		resp, merged, err := c.roundTrip(req, dst)
		if err == nil {
			return resp, merged, nil
		}
		// A reused connection the backend closed at the moment it was
		// taken: retry once on a new one when nothing of the request was
		// sent and the body can be sent again (http.Transport's rule).
		if attempt > 0 || !c.reused || c.written > 0 || req.Context().Err() != nil {
			return nil, false, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, false, err
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, false, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// get returns an idle connection to addr that is still open, or dials one.
func (u *upstream) get(ctx context.Context, addr string) (*upConn, error) {
	now := mono()
	for {
		u.mu.Lock()
		list := u.idle[addr]
		if len(list) == 0 {
			u.mu.Unlock()
			break
		}
		c := list[len(list)-1]
		list[len(list)-1] = nil
		u.idle[addr] = list[:len(list)-1]
		u.mu.Unlock()
		// Bytes nobody asked for put the connection out of step (put
		// checked at the answer's end; the probe finds later ones).
		idle := now - c.idleAt
		if idle > u.idleTimeout || c.br.Buffered() > 0 || (idle > probeAfter && !c.alive()) {
			c.close()
			continue
		}
		c.reused = true
		return c, nil
	}
	conn, err := u.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &upConn{u: u, addr: addr}
	c.headSince.Store(notWaiting)
	c.cancelFn = c.cancel
	if sc, ok := conn.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	conn = rawio.Wrap(conn)
	c.conn = conn
	c.awaiter, _ = conn.(rawio.Awaiter)
	c.br = bufio.NewReaderSize(c, 4<<10)
	u.connMu.Lock()
	u.conns[c] = struct{}{}
	u.connMu.Unlock()
	return c, nil
}

// close closes the connection for good.
func (c *upConn) close() {
	c.conn.Close()
	c.u.connMu.Lock()
	delete(c.u.conns, c)
	c.u.connMu.Unlock()
}

// put returns c to the pool after a complete exchange, if the backend sent
// nothing after the answer's end. Bytes after it (a body longer than its
// Content-Length, say a length counted in characters; an unsolicited
// second answer) would be read as the answer to the connection's next
// request, another client's: such a connection is closed. Buffered finds
// the bytes already read with the answer, and a non-blocking peek those
// in the socket (net/http's Transport finds them the same way, its reader
// goroutine peeking after every answer). The peek is a system call, made
// only when the answer's last read filled what it asked for: a read that
// returned less took all the socket held, and the answer's end came with
// it, microseconds ago (the usual answer, a few KiB read into the 4 KiB
// buffer). BenchmarkUpstreamEndPeek measures both.
func (u *upstream) put(c *upConn) {
	if c.br.Buffered() > 0 || (!c.drained && !u.noEndPeek && !c.alive()) {
		c.close()
		return
	}
	c.idleAt = mono()
	u.mu.Lock()
	if u.closed || len(u.idle[c.addr]) >= u.maxIdle {
		u.mu.Unlock()
		c.close()
		return
	}
	u.idle[c.addr] = append(u.idle[c.addr], c)
	u.mu.Unlock()
}

// janitor closes connections idle for longer than the idle timeout, so
// that a backend that was replaced does not keep sockets open.
func (u *upstream) janitor() {
	t := time.NewTicker(u.idleTimeout / 2)
	defer t.Stop()
	var heads <-chan time.Time
	if u.headerTimeout > 0 {
		ht := time.NewTicker(max(u.headerTimeout/8, time.Millisecond))
		defer ht.Stop()
		heads = ht.C
	}
	for {
		select {
		case <-u.stop:
			return
		case <-heads:
			u.sweepHeads()
		case <-t.C:
			now := mono()
			u.mu.Lock()
			for addr, list := range u.idle {
				keep := list[:0]
				for _, c := range list {
					if now-c.idleAt > u.idleTimeout {
						c.close()
					} else {
						keep = append(keep, c)
					}
				}
				clear(list[len(keep):])
				if len(keep) == 0 {
					delete(u.idle, addr)
				} else {
					u.idle[addr] = keep
				}
			}
			u.mu.Unlock()
		}
	}
}

// sweepHeads ends the wait of every answer's head awaited for the header
// timeout: its connection's read deadline, set in the past, fails the read
// with a timeout (the request gets a 504, see errHeaderTimeout). The wait
// ends between 1 and 1.25 times the timeout after the request was sent.
// A deadline set and cleared around every head instead costs a runtime
// timer changed twice and four clock reads a request.
func (u *upstream) sweepHeads() {
	e := u.epoch.Add(1)
	u.connMu.Lock()
	defer u.connMu.Unlock()
	for c := range u.conns {
		if since := c.headSince.Load(); since != notWaiting && since != timedOut && e-since >= headSweeps {
			c.sweepMu.Lock()
			if c.headSince.CompareAndSwap(since, timedOut) {
				c.conn.SetReadDeadline(aLongTimeAgo)
			}
			c.sweepMu.Unlock()
		}
	}
}

// CloseIdleConnections closes every idle connection (and the fallback's).
func (u *upstream) CloseIdleConnections() {
	u.mu.Lock()
	for addr, list := range u.idle {
		for _, c := range list {
			c.close()
		}
		delete(u.idle, addr)
	}
	u.mu.Unlock()
	u.fallback.CloseIdleConnections()
}

// close stops the janitor and closes idle connections; connections in use
// close when their exchange ends.
func (u *upstream) close() {
	u.mu.Lock()
	if !u.closed {
		u.closed = true
		close(u.stop)
	}
	u.mu.Unlock()
	u.CloseIdleConnections()
}

var errBackendClosed = errors.New("backend closed the connection before answering")

// roundTrip sends req on c and reads the response headers (into dst, see
// roundTripInto). On error the connection is closed, and dst untouched.
func (c *upConn) roundTrip(req *http.Request, dst http.Header) (*http.Response, bool, error) {
	c.written = 0
	ctx := req.Context()
	// A cancelled request (the client went away) unblocks any read or
	// write on the connection at once.
	c.watchCancel(ctx)
	fail := func(err error) (*http.Response, bool, error) {
		c.unwatchCancel()
		c.headSince.Store(notWaiting)
		c.close()
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, false, errBackendClosed
		}
		return nil, false, err
	}
	if err := c.writeRequest(req); err != nil {
		return fail(err)
	}
	var resp *http.Response
	merged := false
	// The limit holds for the final head and the informational ones
	// before it together (as in net/http's Transport): an endless run of
	// 1xx answers ends there too.
	c.headLeft = c.u.maxHead
	for {
		var err error
		if dst != nil {
			// Only a final answer of 200 or more merges (and nothing
			// fails after it below).
			resp, merged, err = wire.ReadResponseInto(c.br, req, dst, wire.HopByHop)
		} else {
			resp, err = wire.ReadResponse(c.br, req)
		}
		if err != nil {
			return fail(headerTimeout(err))
		}
		// Informational answers (100 Continue, 103 Early Hints) precede
		// the real one; a 101 was never asked for.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	c.headLeft = math.MaxInt64
	if since := c.headSince.Load(); since == timedOut || !c.headSince.CompareAndSwap(since, notWaiting) {
		// The sweep ended the wait as the head came: the head is whole,
		// so the answer goes on, without the deadline the sweep set
		// (under sweepMu, which orders the two).
		c.sweepMu.Lock()
		c.conn.SetReadDeadline(time.Time{})
		c.headSince.Store(notWaiting)
		c.sweepMu.Unlock()
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fail(errors.New("backend switched protocols without being asked to"))
	}
	keep := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		// 204, 304, HEAD: the exchange is over.
		if c.unwatchCancel() && keep {
			c.u.put(c)
		} else {
			c.close()
		}
		return resp, merged, nil
	}
	resp.Body = &upBody{c: c, ctx: ctx, body: resp.Body, keep: keep}
	return resp, merged, nil
}

// watchCancel makes ctx's cancellation end the connection's reads and
// writes at once: through the hook of the gateway's server's contexts
// (no allocation), else context.AfterFunc.
func (c *upConn) watchCancel(ctx context.Context) {
	if hk, ok := ctx.(ctxhook.Context); ok {
		if id, ok := hk.Hook(c.cancelFn); ok {
			c.hk, c.hookID = hk, id
			return
		}
	}
	c.hk = nil
	c.afterStop = context.AfterFunc(ctx, c.cancelFn)
}

// unwatchCancel stops watchCancel's watch and reports false when the
// cancellation already ran (or is running): the connection's deadline is
// then in the past.
func (c *upConn) unwatchCancel() bool {
	if hk := c.hk; hk != nil {
		c.hk = nil
		return hk.Unhook(c.hookID)
	}
	stop := c.afterStop
	c.afterStop = nil
	return stop()
}

// cancel ends the connection's reads and writes at once.
func (c *upConn) cancel() { c.conn.SetDeadline(aLongTimeAgo) }

// headTooLarge is a backend's response head over the gateway's limit.
type headTooLarge struct{ limit int64 }

func (e headTooLarge) Error() string {
	return "response head larger than the gateway's limit of " + strconv.FormatInt(e.limit, 10) + " bytes"
}

// reqHeaderExcluded reports the headers writeRequest writes itself.
func reqHeaderExcluded(k string) bool {
	switch k {
	case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
		return true
	}
	return false
}

// writeRequest writes req in HTTP/1.1 wire format with a single flush:
// Request.Write sends the headers on their own first when the body is not
// in memory (to be able to wait for a 100 Continue), one more system call
// and TCP segment for every proxied request. It always closes the body.
func (c *upConn) writeRequest(req *http.Request) error {
	body := req.Body
	hasBody := body != nil && body != http.NoBody
	if hasBody {
		defer body.Close()
	}
	// The write buffer is only needed while the request goes out: a
	// connection waiting for its answer (a stream) or idle holds none.
	bw := writeBuffers.Get().(*bufio.Writer)
	bw.Reset(c)
	defer func() {
		bw.Reset(nil)
		writeBuffers.Put(bw)
	}()
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(req.URL.RequestURI())
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		bw.WriteString("User-Agent: ")
		bw.WriteString(headerValue(ua[0]))
		bw.WriteString("\r\n")
	}
	if req.Close {
		bw.WriteString("Connection: close\r\n")
	}
	chunked := false
	switch {
	case hasBody && req.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(req.ContentLength, 10))
		bw.WriteString("\r\n")
	case hasBody:
		// Unknown length (a client request's 0 with a body is unknown too).
		chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	// In map order: Header.Write sorts the keys, which costs more than the
	// write itself and means nothing on the wire.
	for k, vv := range req.Header {
		if reqHeaderExcluded(k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(headerValue(strings.TrimSpace(v)))
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
	if hasBody {
		if chunked {
			cw := httputil.NewChunkedWriter(bw)
			if _, err := io.Copy(cw, body); err != nil {
				return err
			}
			cw.Close()
			bw.WriteString("\r\n")
		} else if n, err := copyBody(bw, body, req.ContentLength); err != nil {
			if err == io.EOF {
				err = fmt.Errorf("request body ended after %d of %d bytes: %w", n, req.ContentLength, io.ErrUnexpectedEOF)
			}
			return err
		}
	}
	// The header timeout counts from the request's last write, which may
	// already wait for the answer: a request that fits the buffer goes out
	// in one write, which then waits without a first read that finds
	// nothing (the backend cannot answer before the request's first byte).
	if c.u.headerTimeout > 0 {
		c.headSince.Store(c.u.epoch.Load())
	}
	c.await = c.awaiter != nil && c.written == 0
	err := bw.Flush()
	c.await = false
	return err
}

// copyBody copies n bytes of body to bw as io.CopyN would, reading into
// bw's free space (io.CopyN makes a LimitReader per call); io.EOF if body
// ends before them.
func copyBody(bw *bufio.Writer, body io.Reader, n int64) (int64, error) {
	var done int64
	for done < n {
		if bw.Available() == 0 {
			if err := bw.Flush(); err != nil {
				return done, err
			}
		}
		buf := bw.AvailableBuffer()
		buf = buf[:min(int64(cap(buf)), n-done)]
		m, err := body.Read(buf)
		if m > 0 {
			bw.Write(buf[:m]) // into the free space: no copy
			done += int64(m)
		}
		if err != nil {
			if err == io.EOF && done == n {
				return done, nil
			}
			return done, err
		}
	}
	return done, nil
}

var writeBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// headerValue keeps a header value on one line.
func headerValue(v string) string {
	if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	return v
}

// headerTimeout turns the read deadline's timeout into errHeaderTimeout
// (the deadline a cancellation sets is not: roundTrip's fail reports the
// context's error first).
func headerTimeout(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errHeaderTimeout
	}
	return err
}

// errHeaderTimeout is a timeout the proxy reports as 504.
var errHeaderTimeout error = headerTimeoutError{}

type headerTimeoutError struct{}

func (headerTimeoutError) Error() string   { return "timeout awaiting response headers" }
func (headerTimeoutError) Timeout() bool   { return true }
func (headerTimeoutError) Temporary() bool { return true }

// aLongTimeAgo is a deadline in the past, which fails pending I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// upBody is a response body; read to its end on a keep-alive response, it
// returns the connection to the pool, and closed before, it closes it.
type upBody struct {
	c    *upConn
	ctx  context.Context
	body io.ReadCloser
	keep bool
	done bool
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
		if err != io.EOF && b.ctx.Err() != nil {
			err = b.ctx.Err() // the deadline was the cancellation's
		}
	}
	return n, err
}

func (b *upBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

func (b *upBody) finish(complete bool) {
	b.done = true
	// false when the cancellation already fired (or is firing): the
	// connection's deadline is then in the past.
	if b.c.unwatchCancel() && complete && b.keep {
		b.c.u.put(b.c)
		return
	}
	b.c.close()
}

func hasPort(host string) bool {
	i := strings.LastIndexByte(host, ':')
	return i >= 0 && i > strings.LastIndexByte(host, ']')
}
