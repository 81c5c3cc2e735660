package h1

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// pendLimit is how much of an answer of unknown length is held back before
// its head is sent: an answer that ends within it goes out with a
// Content-Length, as net/http does for small answers.
const pendLimit = 2048

// response is the http.ResponseWriter; each connection reuses one.
type response struct {
	c      *conn
	header http.Header
	// What the request asked, taken before the handler runs: a handler
	// may reuse the request as its own outgoing one and change it (the
	// gateway's direct proxy path clears Close).
	head, http11, wantsClose bool

	status      int
	wroteHeader bool // the status is decided
	headSent    bool // the status line and headers are in the write buffer
	noBody      bool // HEAD, 1xx, 204, 304
	chunked     bool
	closeAfter  bool
	handlerDone bool
	clen        int64 // -1: unknown
	written     int64
	pend        []byte
}

func (w *response) reset(c *conn, req *http.Request) {
	pend := w.pend[:0]
	clear(w.header)
	*w = response{c: c, header: w.header, clen: -1, pend: pend,
		head: req.Method == http.MethodHead, http11: req.ProtoAtLeast(1, 1), wantsClose: req.Close}
}

// Header is the answer's header map.
func (w *response) Header() http.Header { return w.header }

// WriteHeader decides the status; 1xx answers other than 101 are sent at
// once and may be followed by others.
func (w *response) WriteHeader(code int) {
	if w.c.state.Load() == stateHijacked || w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.c.stopContinue(code == http.StatusContinue)
		w.writeStatusLine(code)
		w.writeHeaders(nil)
		w.c.bw.WriteString("\r\n")
		w.c.bw.Flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	w.noBody = w.head || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	if cl := w.header["Content-Length"]; len(cl) > 0 {
		if v, err := strconv.ParseInt(cl[0], 10, 64); err == nil && v >= 0 {
			w.clen = v
		} else {
			w.c.s.logf("h1: invalid Content-Length %q from the handler, dropped", cl[0])
			delete(w.header, "Content-Length")
		}
	}
}

// Write sends body bytes, holding back up to pendLimit of an answer of
// unknown length until it is flushed or ends.
func (w *response) Write(p []byte) (int, error) {
	if w.c.state.Load() == stateHijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.noBody {
		if w.head {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.clen >= 0 && w.written+int64(len(p)) > w.clen {
		return 0, http.ErrContentLength
	}
	if w.c.werr != nil {
		return 0, w.c.werr
	}
	w.written += int64(len(p))
	if !w.headSent {
		if w.clen < 0 && len(w.pend)+len(p) <= pendLimit {
			w.pend = append(w.pend, p...)
			return len(p), nil
		}
		w.sendHead()
	}
	w.writeBody(p)
	if w.c.werr != nil {
		return 0, w.c.werr
	}
	return len(p), nil
}

// WriteString avoids a copy for io.WriteString callers.
func (w *response) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// Flush sends everything written so far to the client.
func (w *response) Flush() {
	w.FlushError()
}

// FlushError is Flush with its error (http.ResponseController uses it).
func (w *response) FlushError() error {
	if w.c.state.Load() == stateHijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		w.sendHead()
	}
	return w.c.bw.Flush()
}

// Hijack hands the connection over (protocol upgrades).
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if w.headSent {
		return nil, nil, errors.New("h1: Hijack after the answer started")
	}
	c.stopContinue(false)
	if !c.state.CompareAndSwap(stateActive, stateHijacked) {
		return nil, nil, http.ErrHijacked
	}
	c.s.mu.Lock()
	delete(c.s.conns, c)
	c.s.mu.Unlock()
	return c.nc, bufio.NewReadWriter(c.br, c.bw), nil
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
// The serve loop clears them before the next request (handlerDeadline).
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.handlerDeadline = true
	return w.c.nc.SetReadDeadline(t)
}

func (w *response) SetWriteDeadline(t time.Time) error {
	w.c.handlerDeadline = true
	return w.c.nc.SetWriteDeadline(t)
}

// sendHead decides the framing and writes the status line and headers.
func (w *response) sendHead() {
	w.c.stopContinue(false)
	w.headSent = true
	h := w.header
	switch {
	case w.noBody:
		if w.status == http.StatusNoContent || w.status < 200 {
			delete(h, "Content-Length")
		}
		delete(h, "Transfer-Encoding")
	case w.clen >= 0:
		delete(h, "Transfer-Encoding")
	case w.handlerDone && h["Trailer"] == nil && !prefixTrailers(h):
		// The whole answer is held back: its length is known. (Trailers
		// need the chunked encoding.)
		w.clen = int64(len(w.pend))
		h["Content-Length"] = []string{strconv.Itoa(len(w.pend))}
		delete(h, "Transfer-Encoding")
	case w.http11:
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	default:
		// An HTTP/1.0 client: the end of the connection ends the answer.
		w.closeAfter = true
		delete(h, "Transfer-Encoding")
	}
	if !w.closeAfter {
		if v, ok := h["Connection"]; ok && hasToken(v, "close") {
			w.closeAfter = true
		}
	}
	delete(h, "Connection")
	if w.closeAfter || w.wantsClose || w.c.s.inShutdown.Load() {
		w.closeAfter = true
		h["Connection"] = []string{"close"}
	} else if !w.http11 {
		h["Connection"] = []string{"keep-alive"}
	}
	w.writeStatusLine(w.status)
	w.writeHeaders(h["Trailer"])
	if _, ok := h["Date"]; !ok {
		w.c.bw.WriteString("Date: ")
		w.c.bw.Write(w.c.httpDate())
		w.c.bw.WriteString("\r\n")
	}
	w.c.bw.WriteString("\r\n")
	if len(w.pend) > 0 {
		p := w.pend
		w.pend = w.pend[:0]
		w.writeBody(p)
	}
}

func (w *response) writeStatusLine(code int) {
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	w.c.scratch = strconv.AppendInt(w.c.scratch[:0], int64(code), 10)
	bw.Write(w.c.scratch)
	bw.WriteByte(' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	bw.WriteString(text)
	bw.WriteString("\r\n")
}

// writeHeaders writes the header map but the trailers declared in
// trailers.
func (w *response) writeHeaders(trailers []string) {
	for k, vv := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) || (trailers != nil && declared(trailers, k)) {
			continue
		}
		for _, v := range vv {
			w.writeField(k, v)
		}
	}
}

// oneLine keeps a header value on its line (no header injection).
var oneLine = strings.NewReplacer("\r", " ", "\n", " ")

func (w *response) writeField(name, v string) {
	bw := w.c.bw
	bw.WriteString(name)
	bw.WriteString(": ")
	if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 {
		v = oneLine.Replace(v)
	}
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

func declared(trailers []string, k string) bool {
	for _, t := range trailers {
		for f := range strings.SplitSeq(t, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(f)) == k {
				return true
			}
		}
	}
	return false
}

func prefixTrailers(h http.Header) bool {
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

func hasToken(vv []string, token string) bool {
	for _, v := range vv {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

func (w *response) writeBody(p []byte) {
	bw := w.c.bw
	if !w.chunked {
		bw.Write(p)
		return
	}
	w.c.scratch = strconv.AppendInt(w.c.scratch[:0], int64(len(p)), 16)
	w.c.scratch = append(w.c.scratch, '\r', '\n')
	bw.Write(w.c.scratch)
	bw.Write(p)
	bw.WriteString("\r\n")
}

// finish ends the answer after the handler has returned.
// finish ends the answer. await: the request was read to its end and
// nothing of a next one is buffered, so that the last write may wait for
// the next request (see connWriter).
func (w *response) finish(await bool) {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent {
		w.sendHead()
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		w.writeTrailers()
		bw.WriteString("\r\n")
	} else if w.clen >= 0 && w.written < w.clen && !w.noBody {
		// The handler wrote less than it announced: the client must not
		// wait for the rest on a connection that goes on.
		w.closeAfter = true
	}
	w.c.await = await && w.keepAlive() && w.c.aw != nil && bw.Buffered() > 0
	bw.Flush()
	w.c.await = false
}

// writeTrailers writes the declared trailers and those set with
// http.TrailerPrefix.
func (w *response) writeTrailers() {
	declaredKeys := w.header["Trailer"]
	for k, vv := range w.header {
		name, ok := strings.CutPrefix(k, http.TrailerPrefix)
		if !ok && (declaredKeys == nil || !declared(declaredKeys, k)) {
			continue
		}
		for _, v := range vv {
			w.writeField(name, v)
		}
	}
}

func (w *response) keepAlive() bool {
	return !w.closeAfter && !w.wantsClose && w.c.werr == nil
}

// httpDate is the Date header's value, formatted once a second.
func (c *conn) httpDate() []byte {
	now := time.Now()
	if s := now.Unix(); s != c.dateSec || c.date == nil {
		c.dateSec = s
		c.date = now.UTC().AppendFormat(c.date[:0], http.TimeFormat)
	}
	return c.date
}
