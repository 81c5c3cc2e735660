package gateway

import (
	"io"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/modelslot/modelslot/internal/wire"
)

// proxy forwards r to b. Plain HTTP/1.1 exchanges with an http:// backend
// take the direct path below, which does what httputil.ReverseProxy does
// for them without its per-request copies (a clone of the request and its
// headers, a client trace, a second context); upgrades and request
// trailers, https:// backends and the std transport go through the
// ReverseProxy. (Expect: 100-continue never gets here: see ServeHTTP.)
func (g *Gateway) proxy(b *Backend, w http.ResponseWriter, r *http.Request) {
	if !b.direct || !plainExchange(r) {
		b.proxy.ServeHTTP(w, r)
		return
	}
	// The request is the gateway's own from here: it becomes the outgoing
	// one in place.
	h := r.Header
	trailers := false
	if te, ok := h["Te"]; ok {
		trailers = httpguts.HeaderValuesContainsToken(te, "trailers")
	}
	// The hop-by-hop headers, and the forwarding headers from the client,
	// which are not to be trusted (the ReverseProxy's Rewrite mode drops
	// them too).
	removeHeaders(h, func(k string) bool { return wire.HopByHop(k) || forwardedHeader(k) })
	if trailers {
		h["Te"] = []string{"trailers"}
	}
	b.prepare(r)
	r.Close = false
	r.RequestURI = ""
	if r.ContentLength == 0 {
		r.Body = nil // nothing to send, and a retry needs no body again
	}
	dst := w.Header()
	resp, merged, err := g.upstream.roundTripInto(r, dst)
	if err != nil {
		g.proxyError(w, r, err)
		return
	}
	if !merged {
		removeHeaders(resp.Header, wire.HopByHop)
		for k, vv := range resp.Header {
			if old, ok := dst[k]; ok {
				// A copy: old may be shared (the gateway's own headers).
				dst[k] = append(old[:len(old):len(old)], vv...)
			} else {
				dst[k] = vv // the response is ours alone: no copy
			}
		}
	}
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		dst.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(resp.StatusCode)
	// Streams (SSE, or any answer of unknown length) go out write by
	// write; an answer of known length in as few writes as the buffer
	// allows.
	flush := resp.ContentLength == -1 || eventStream(resp.Header)
	if err := copyAnswer(w, resp.Body, flush); err != nil {
		resp.Body.Close()
		// The answer broke after its head was sent: abort, so that the
		// client sees a truncated answer (as the ReverseProxy does).
		panic(http.ErrAbortHandler)
	}
	resp.Body.Close() // before the trailers are read
	if len(resp.Trailer) == 0 {
		return
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush() // trailers need the chunked encoding
	}
	for k, vv := range resp.Trailer {
		if len(resp.Trailer) == announced {
			dst[k] = vv
		} else {
			dst[http.TrailerPrefix+k] = vv
		}
	}
}

// eventStream reports whether an answer's header says it is an SSE
// stream (a canonical map: no Get, which canonicalizes the name again).
func eventStream(h http.Header) bool {
	ct := h["Content-Type"]
	return len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream")
}

// plainExchange reports whether r needs nothing beyond a plain HTTP/1.1
// request and answer: no protocol upgrade, no Expect: 100-continue (which
// ServeHTTP answers itself), no request trailers (the gateway's upstream
// client leaves those to net/http).
func plainExchange(r *http.Request) bool {
	return r.Header["Upgrade"] == nil && r.Header["Expect"] == nil && len(r.Trailer) == 0
}

// copyAnswer copies the backend's body to the client, flushing after
// every write when flush is set.
func copyAnswer(w http.ResponseWriter, body io.Reader, flush bool) error {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	flusher, _ := w.(http.Flusher)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if flush && flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// removeHeaders deletes the headers the Connection header names, and
// those drop reports, in one pass over h (a delete per name to drop, most
// of them absent, costs a map lookup each).
func removeHeaders(h http.Header, drop func(string) bool) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				delete(h, http.CanonicalHeaderKey(f))
			}
		}
	}
	for k := range h {
		if drop(k) {
			delete(h, k)
		}
	}
}

// forwardedHeader reports the forwarding headers a client may send.
func forwardedHeader(k string) bool {
	switch k {
	case "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return true
	}
	return false
}
