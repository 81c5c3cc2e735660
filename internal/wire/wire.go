// Package wire reads HTTP/1.x request and response heads on the gateway's
// hot path: the usual, plainly formed head is parsed in one pass with a
// handful of allocations, and anything else goes to net/http's parser.
//
// http.ReadRequest and http.ReadResponse cost a proxied request about a
// sixth of the gateway's CPU time: a textproto reader line by line, a
// string per method, target, protocol and header value, a URL parser, and a
// header map grown entry by entry. ReadRequest and ReadResponse here return
// exactly what net/http's would (the same Request or Response fields, the
// same header map), for the heads they accept: a head whole in the read
// buffer, with CRLF line ends, HTTP/1.0 or 1.1, token header names, no
// folded lines, no Transfer-Encoding, at most one Content-Length, and for
// requests an origin-form target of plain characters. Every other head,
// including every malformed one, is left in the buffer untouched and read
// by net/http, so the framing rules that guard against request smuggling
// stay net/http's. wire_test.go checks the two against each other.
package wire

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// maxFields bounds the header fields of a head parsed here; a head with
// more goes to net/http.
const maxFields = 64

// ReadRequest reads a request as http.ReadRequest does, with ctx as its
// context (one Request made, where ReadRequest then WithContext make two).
// maxHead is the largest head parsed here (larger ones go to net/http; the
// caller bounds what net/http reads).
func ReadRequest(ctx context.Context, br *bufio.Reader, maxHead int) (*http.Request, error) {
	req, _, err := ReadRequestHead(ctx, br, maxHead, -1)
	return req, err
}

// ReadRequestHead is ReadRequest for a caller that may know the head's
// length (end, from HeadLen; -1: not known) and wants to know whether the
// head was parsed here (plain): its header names are then tokens.
func ReadRequestHead(ctx context.Context, br *bufio.Reader, maxHead, end int) (req *http.Request, plain bool, err error) {
	if req := fastRequestAt(ctx, br, maxHead, end); req != nil {
		return req, true, nil
	}
	req, err = http.ReadRequest(br)
	if err != nil {
		return nil, false, err
	}
	return req.WithContext(ctx), false, nil
}

// ReadResponse reads a response to req as http.ReadResponse does.
func ReadResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if resp := fastResponse(br, req); resp != nil {
		return resp, nil
	}
	return http.ReadResponse(br, req)
}

// HeadLen returns the length of the head whole in br's buffer (up to and
// including the blank line), or -1: reading a head of -1 may block.
func HeadLen(br *bufio.Reader) int {
	b, _ := br.Peek(br.Buffered())
	i := bytes.Index(b, crlfcrlf)
	if i < 0 {
		return -1
	}
	return i + 4
}

var crlfcrlf = []byte("\r\n\r\n")

// field is a header field's name and value, as offsets into the head.
type field struct{ k0, k1, v0, v1 int }

// fields holds the header fields of one head.
type fields struct {
	f [maxFields]field
	n int
}

// scan checks the header lines of b, which starts after the start line
// and ends with the blank line, and records their fields. It reports false
// for anything net/http should judge: a name that is not a token (a space
// before the colon, a folded line, an empty name), a byte not allowed in a
// value, a lone CR or LF, too many fields.
func (fs *fields) scan(b []byte, off int) bool {
	i := off
	for {
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i+2 == len(b)
		}
		if fs.n == maxFields {
			return false
		}
		k0 := i
		for i < len(b) && tokenByte[b[i]] {
			i++
		}
		if i == k0 || i == len(b) || b[i] != ':' {
			return false
		}
		k1 := i
		i++
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		v0 := i
		for i < len(b) && valueByte[b[i]] {
			i++
		}
		if i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
			return false
		}
		v1 := i
		for v1 > v0 && (b[v1-1] == ' ' || b[v1-1] == '\t') {
			v1--
		}
		fs.f[fs.n] = field{k0, k1, v0, v1}
		fs.n++
		i += 2
	}
}

// fieldsAt reads the header fields of the head b, whose start line ends at
// b[i] (its CRLF), and returns the head as one string (which then holds
// the start line's parts and every name and value) and the header map.
func fieldsAt(b []byte, i int) (string, http.Header, bool) {
	if i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
		return "", nil, false
	}
	var fs fields
	if !fs.scan(b, i+2) {
		return "", nil, false
	}
	s := string(b)
	return s, fs.header(s), true
}

// header builds the header map from the head as a string, as textproto
// does: canonical names, values in order, one backing array for the
// single values.
func (fs *fields) header(s string) http.Header {
	h := make(http.Header, fs.n)
	vals := make([]string, fs.n)
	for j, f := range fs.f[:fs.n] {
		k := s[f.k0:f.k1]
		if !canonical(k) {
			k = http.CanonicalHeaderKey(k)
		}
		v := s[f.v0:f.v1]
		if vv, ok := h[k]; ok {
			h[k] = append(vv, v)
			continue
		}
		vals[j] = v
		h[k] = vals[j : j+1 : j+1]
	}
	// RFC 9111 section 5.4 (net/http's fixPragmaCacheControl).
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
	return h
}

// canonical reports whether the token k is already in canonical form.
func canonical(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// contentLength returns the single Content-Length of h, 0 without one, and
// false where net/http must decide (several, or not a plain number).
func contentLength(h http.Header) (int64, bool) {
	cl, ok := h["Content-Length"]
	if !ok {
		return 0, true
	}
	if len(cl) != 1 || cl[0] == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(cl[0], 10, 63)
	return int64(n), err == nil
}

// shouldClose is net/http's rule for the end of a connection after a
// message: HTTP/1.0 without keep-alive, or Connection: close.
func shouldClose(minor int, h http.Header, removeClose bool) bool {
	conn := h["Connection"]
	hasClose := httpguts.HeaderValuesContainsToken(conn, "close")
	if minor == 0 {
		return hasClose || !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	}
	if hasClose && removeClose {
		delete(h, "Connection")
	}
	return hasClose
}

// version reads "HTTP/1.1" or "HTTP/1.0" at b[i:].
func version(b []byte, i int) (proto string, minor int, ok bool) {
	if len(b)-i < 8 || string(b[i:i+7]) != "HTTP/1." {
		return "", 0, false
	}
	switch b[i+7] {
	case '1':
		return "HTTP/1.1", 1, true
	case '0':
		return "HTTP/1.0", 0, true
	}
	return "", 0, false
}

func fastRequest(ctx context.Context, br *bufio.Reader, maxHead int) *http.Request {
	return fastRequestAt(ctx, br, maxHead, -1)
}

func fastRequestAt(ctx context.Context, br *bufio.Reader, maxHead, end int) *http.Request {
	if _, err := br.Peek(1); err != nil {
		return nil // net/http reports it
	}
	if end < 0 {
		end = HeadLen(br)
	}
	if end < 0 || end > maxHead {
		return nil
	}
	b, _ := br.Peek(end)
	// Request line: method SP origin-form SP HTTP/1.x CRLF.
	i := 0
	for i < len(b) && tokenByte[b[i]] {
		i++
	}
	if i == 0 || i == len(b) || b[i] != ' ' {
		return nil
	}
	m1 := i
	i++
	t0 := i
	// The target: a path of characters that need no escaping (Path is
	// then the target itself and RawPath empty), then any query.
	if i+1 >= len(b) || b[i] != '/' || b[i+1] == '/' {
		return nil
	}
	for i < len(b) && pathByte[b[i]] {
		i++
	}
	p1, q0, q1 := i, -1, -1
	if i < len(b) && b[i] == '?' {
		i++
		q0 = i
		for i < len(b) && queryByte[b[i]] {
			i++
		}
		q1 = i
	}
	if i == len(b) || b[i] != ' ' {
		return nil
	}
	t1 := i
	proto, minor, ok := version(b, i+1)
	if !ok {
		return nil
	}
	s, h, ok := fieldsAt(b, i+9)
	if !ok || len(h["Host"]) > 1 || h["Transfer-Encoding"] != nil {
		return nil
	}
	n, ok := contentLength(h)
	if !ok {
		return nil
	}
	u := &url.URL{Path: s[t0:p1]}
	if q0 >= 0 {
		// url.Parse: a '?' with nothing after it is ForceQuery.
		if q0 == q1 {
			u.ForceQuery = true
		} else {
			u.RawQuery = s[q0:q1]
		}
	}
	req := http.Request{
		Method:        s[:m1],
		URL:           u,
		Proto:         proto,
		ProtoMajor:    1,
		ProtoMinor:    minor,
		Header:        h,
		Body:          http.NoBody,
		ContentLength: n,
		RequestURI:    s[t0:t1],
	}
	if hv := h["Host"]; len(hv) > 0 {
		req.Host = hv[0]
		delete(h, "Host") // as http.ReadRequest: Host is a field
	}
	req.Close = shouldClose(minor, h, false)
	br.Discard(end)
	if n > 0 {
		req.Body = &Body{r: br, n: n}
	}
	return req.WithContext(ctx) // the only copy on the heap
}

// ReadResponseInto reads a response to req as ReadResponse does, except
// that a plainly formed answer (one fastResponse takes) whose Connection
// field, if any, says only close or keep-alive has its header fields put
// straight into dst: after the values dst already holds for the same
// name, and without the fields drop reports (a proxy's hop-by-hop
// fields). resp.Header is then dst, and merged is true: a proxy need not
// build the backend's header map, clean it and copy it into its client's.
// Otherwise dst is left as it is and resp is ReadResponse's.
func ReadResponseInto(br *bufio.Reader, req *http.Request, dst http.Header, drop func(string) bool) (resp *http.Response, merged bool, err error) {
	if resp := fastResponseInto(br, req, dst, drop); resp != nil {
		return resp, true, nil
	}
	resp, err = ReadResponse(br, req)
	return resp, false, err
}

// respHead is a plainly formed response head, scanned.
type respHead struct {
	end, code, minor, reason int
	proto                    string
	b                        []byte
	fs                       fields
}

// scanResponse scans the head of a plainly formed answer in br's buffer,
// or reports false. Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF, 200
// or more but 204 and 304 (1xx, 204 and 304 have their own body rules);
// the head whole in the buffer, its fields as fields.scan accepts them.
func scanResponse(br *bufio.Reader, req *http.Request, h *respHead) bool {
	if req != nil && req.Method == http.MethodHead {
		return false // no body whatever the head says: net/http's rules
	}
	if _, err := br.Peek(1); err != nil {
		return false // net/http reports it
	}
	end := HeadLen(br)
	if end < 0 {
		return false
	}
	b, _ := br.Peek(end)
	proto, minor, ok := version(b, 0)
	if !ok || len(b) < 13 || b[8] != ' ' {
		return false
	}
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return false
		}
	}
	code := int(b[9]-'0')*100 + int(b[10]-'0')*10 + int(b[11]-'0')
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified {
		return false
	}
	i := 12
	if b[i] == ' ' {
		for i++; i < len(b) && valueByte[b[i]]; i++ {
		}
	}
	if i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' || !h.fs.scan(b, i+2) {
		return false
	}
	h.end, h.code, h.minor, h.reason, h.proto, h.b = end, code, minor, i, proto, b
	return true
}

func fastResponseInto(br *bufio.Reader, req *http.Request, dst http.Header, drop func(string) bool) *http.Response {
	var h respHead
	if !scanResponse(br, req, &h) {
		return nil
	}
	// What net/http decides from the fields: one Content-Length, plain
	// digits; no Transfer-Encoding; close from Connection, whose tokens
	// must be close or keep-alive (another token names a field to drop,
	// which the caller does on a map of the backend's own).
	lengths, te, n, lengthOK := 0, false, int64(0), false
	closeTok, keepAlive, otherTok := false, false, false
	pragmaSeen, pragma, cacheControl := false, false, false
	for _, fd := range h.fs.f[:h.fs.n] {
		name, v := h.b[fd.k0:fd.k1], h.b[fd.v0:fd.v1]
		// By length first: most names are none of these.
		switch len(name) {
		case len("Content-Length"):
			if equalFold(name, "Content-Length") {
				lengths++
				if len(v) > 0 {
					u, err := strconv.ParseUint(string(v), 10, 63)
					n, lengthOK = int64(u), err == nil
				}
			}
		case len("Transfer-Encoding"):
			te = te || equalFold(name, "Transfer-Encoding")
		case len("Connection"):
			if !equalFold(name, "Connection") {
				continue
			}
			for t := range bytes.SplitSeq(v, []byte(",")) {
				t = bytes.Trim(t, " \t")
				switch {
				case len(t) == 0:
				case equalFold(t, "close"):
					closeTok = true
				case equalFold(t, "keep-alive"):
					keepAlive = true
				default:
					otherTok = true
				}
			}
		case len("Pragma"):
			// net/http looks at the first Pragma value only.
			if !pragmaSeen && equalFold(name, "Pragma") {
				pragmaSeen, pragma = true, string(v) == "no-cache"
			}
		case len("Cache-Control"):
			cacheControl = cacheControl || equalFold(name, "Cache-Control")
		}
	}
	if te || lengths != 1 || !lengthOK || otherTok {
		return nil
	}
	s := string(h.b)
	vals := make([]string, h.fs.n+1)
	for j, f := range h.fs.f[:h.fs.n] {
		k := s[f.k0:f.k1]
		if !canonical(k) {
			k = http.CanonicalHeaderKey(k)
		}
		if drop(k) {
			continue
		}
		vals[j] = s[f.v0:f.v1]
		addValue(dst, k, vals[j:j+1:j+1])
	}
	if pragma && !cacheControl {
		vals[h.fs.n] = "no-cache"
		addValue(dst, "Cache-Control", vals[h.fs.n:])
	}
	closes := closeTok
	if h.minor == 0 {
		closes = closeTok || !keepAlive
	}
	return h.response(br, req, s, dst, n, closes)
}

// response makes the answer of the head h, whose text is s, and takes the
// head out of br.
func (h *respHead) response(br *bufio.Reader, req *http.Request, s string, header http.Header, n int64, closes bool) *http.Response {
	resp := &http.Response{
		Status:        s[9:h.reason],
		StatusCode:    h.code,
		Proto:         h.proto,
		ProtoMajor:    1,
		ProtoMinor:    h.minor,
		Header:        header,
		Body:          http.NoBody,
		ContentLength: n,
		Request:       req,
		Close:         closes,
	}
	br.Discard(h.end)
	if n > 0 {
		resp.Body = &Body{r: br, n: n}
	}
	return resp
}

// HopByHop reports the hop-by-hop header fields of RFC 9110 section 7.6.1
// (canonical names), which a proxy does not pass on; net/http's
// ReverseProxy drops the same.
func HopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// addValue appends the single value v to dst[k], copying what dst holds:
// its slices may be shared.
func addValue(dst http.Header, k string, v []string) {
	if old, ok := dst[k]; ok {
		dst[k] = append(old[:len(old):len(old)], v[0])
	} else {
		dst[k] = v
	}
}

// equalFold compares an ASCII name with a lower- or mixed-case one.
func equalFold(b []byte, name string) bool {
	return len(b) == len(name) && strings.EqualFold(string(b), name)
}

func fastResponse(br *bufio.Reader, req *http.Request) *http.Response {
	var rh respHead
	if !scanResponse(br, req, &rh) {
		return nil
	}
	s := string(rh.b)
	h := rh.fs.header(s)
	if h["Transfer-Encoding"] != nil {
		return nil
	}
	n, ok := contentLength(h)
	if !ok || h["Content-Length"] == nil {
		return nil // a body to the end of the connection: net/http's
	}
	return rh.response(br, req, s, h, n, shouldClose(rh.minor, h, true))
}

// Body is a message body of known length read from the connection's
// buffered reader. Like net/http's, it returns io.EOF with its last bytes,
// and io.ErrUnexpectedEOF if the connection ends before them. Close does
// nothing: what is left unread is the caller's to drain or abandon.
type Body struct {
	r *bufio.Reader
	n int64
}

func (b *Body) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	switch {
	case err == io.EOF && b.n > 0:
		err = io.ErrUnexpectedEOF
	case err == nil && b.n == 0:
		err = io.EOF
	}
	return n, err
}

func (b *Body) Close() error { return nil }

// Byte classes, as in RFC 9110 and net/http.
var tokenByte, valueByte, pathByte, queryByte [256]bool

func init() {
	for c := 0; c < 256; c++ {
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		// tchar (RFC 9110 section 5.6.2), as httpguts.IsTokenRune.
		tokenByte[c] = alnum || c < 0x80 && bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), byte(c)) >= 0
		// field-vchar, SP and HTAB, obs-text (textproto's validHeaderValueByte).
		valueByte[c] = c == '\t' || c >= 0x20 && c != 0x7f
		// Path characters that url's path escaping leaves as they are.
		pathByte[c] = alnum || bytes.IndexByte([]byte("-._~/$&+,:;=@"), byte(c)) >= 0
		// Any visible ASCII but '#' (RawQuery keeps the query as sent).
		queryByte[c] = c > 0x20 && c < 0x7f && c != '#'
	}
}
