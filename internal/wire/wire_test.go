package wire

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// The parsers here must give what net/http's give for every head they
// accept, and leave every other head untouched for net/http. Each case
// runs both on the same bytes and compares everything a caller can see:
// the request or response fields, the header map, the body and its end,
// and what is left in the buffer for the next message.

// oai is a request as the OpenAI SDKs send it.
const oai = "POST /v1/chat/completions HTTP/1.1\r\nHost: gw.example:8080\r\nAccept: application/json\r\n" +
	"Authorization: Bearer sk-test\r\nContent-Type: application/json\r\nUser-Agent: OpenAI/Python 1.51.0\r\n" +
	"X-Stainless-Lang: python\r\nContent-Length: 27\r\n\r\n{\"model\":\"m\",\"messages\":[]}"

var requestCases = []struct {
	name string
	raw  string
	fast bool // taken by the fast path
}{
	{"openai sdk", oai, true},
	{"curl get", "GET /v1/models HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n", true},
	{"lower-case names", "POST /v1/completions HTTP/1.1\r\nhost: h\r\ncontent-type: application/json\r\ncontent-length: 2\r\nx-request-id: 7\r\n\r\n{}", true},
	{"odd-case names", "GET / HTTP/1.1\r\nHOST: h\r\nX-FOO-bar: 1\r\ncontent-TYPE: a\r\n\r\n", true},
	{"pipelined", "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"body then next", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"short body", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc", true},
	{"zero length", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", true},
	{"query", "GET /v1/x?a=1&b=%20c&d=e?f HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"force query", "GET /v1/x? HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"empty query twice", "GET /v1/x?? HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"path characters", "GET /a-b_c.d~e/$&+,:;=@/ HTTP/1.1\r\nHost: h\r\n\r\n", true},
	{"http/1.0", "GET / HTTP/1.0\r\n\r\n", true},
	{"http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
	{"connection close", "GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, close\r\n\r\n", true},
	{"connection upgrade", "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", true},
	{"no host", "GET / HTTP/1.1\r\n\r\n", true},
	{"empty host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", true},
	{"repeated names", "GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nX-A: 1\r\naccept: b\r\nX-A: 2\r\nAccept: c\r\n\r\n", true},
	{"spaces and tabs around values", "GET / HTTP/1.1\r\nHost:h\r\nX-A: \t v \t\r\nX-B:\r\nX-C:   \r\n\r\n", true},
	{"obs-text value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: caf\xc3\xa9\r\n\r\n", true},
	{"pragma", "GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n", true},
	{"pragma and cache-control", "GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\nCache-Control: max-age=1\r\n\r\n", true},
	{"expect", "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx", true},
	{"equal content-lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
	{"different content-lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", false},
	{"content-length sign", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\nx", false},
	{"content-length empty", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\nx", false},
	{"content-length list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\nx", false},
	{"content-length huge", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\nx", false},
	{"chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", false},
	{"chunked and length", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n1\r\nx\r\n0\r\n\r\n", false},
	{"identity encoding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nx", false},
	{"http/1.0 chunked", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\nx", false},
	{"space before colon", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", false},
	{"folded line", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", false},
	{"folded first line", "GET / HTTP/1.1\r\n X-A: 1\r\nHost: h\r\n\r\n", false},
	{"bare lf", "GET / HTTP/1.1\nHost: h\n\n", false},
	{"bare lf in a field", "GET / HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n", false},
	{"bare cr in a value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r2\r\n\r\n", false},
	{"nul in a value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\x002\r\n\r\n", false},
	{"empty name", "GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n", false},
	{"no colon", "GET / HTTP/1.1\r\nHost: h\r\nX-A\r\n\r\n", false},
	{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", false},
	{"absolute target", "GET http://a.example/x HTTP/1.1\r\nHost: b\r\n\r\n", false},
	{"double slash", "GET //a/b HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"escaped path", "GET /a%2Fb HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"bad escape", "GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"fragment", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"connect", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", false},
	{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", false},
	{"http/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", false},
	{"http/0.9", "GET /\r\n\r\n", false},
	{"lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", false},
	{"two spaces", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"trailing space", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", false},
	{"method not a token", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"empty line first", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"space in target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"control in query", "GET /a?b\x01 HTTP/1.1\r\nHost: h\r\n\r\n", false},
	{"incomplete head", "GET / HTTP/1.1\r\nHost: h\r\n", false},
	{"empty", "", false},
}

func TestRequestMatchesNetHTTP(t *testing.T) {
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			fast := compareRequest(t, []byte(tc.raw))
			if fast != tc.fast {
				t.Errorf("fast path taken: %v, want %v", fast, tc.fast)
			}
		})
	}
}

func TestRequestHeadLimit(t *testing.T) {
	br := bufio.NewReader(strings.NewReader(oai))
	if req := fastRequest(context.Background(), br, 100); req != nil {
		t.Fatal("a head over the limit was parsed")
	}
	if req, err := ReadRequest(context.Background(), br, 100); err != nil || req.ContentLength != 27 {
		t.Fatalf("net/http's parser after the limit: %v, %v", req, err)
	}
}

func FuzzRequest(f *testing.F) {
	for _, tc := range requestCases {
		f.Add([]byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { compareRequest(t, raw) })
}

// compareRequest parses raw with both parsers and reports whether the fast
// path took it.
func compareRequest(t *testing.T, raw []byte) bool {
	t.Helper()
	fbr := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
	got := fastRequest(context.Background(), fbr, 1<<20)
	sbr := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
	want, werr := http.ReadRequest(sbr)
	if !accepted(t, got != nil, fbr, raw, werr) {
		return false
	}
	type view struct {
		Method, Proto, Host, RequestURI string
		ProtoMajor, ProtoMinor          int
		URL                             any
		Header                          http.Header
		ContentLength                   int64
		Close                           bool
		TransferEncoding                []string
		Trailer                         http.Header
		NoBody                          bool
	}
	v := func(r *http.Request) view {
		return view{r.Method, r.Proto, r.Host, r.RequestURI, r.ProtoMajor, r.ProtoMinor, *r.URL, r.Header,
			r.ContentLength, r.Close, r.TransferEncoding, r.Trailer, r.Body == http.NoBody}
	}
	if g, w := v(got), v(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("request %q:\n got %+v\nwant %+v", raw, g, w)
	}
	compareRest(t, raw, got.Body, fbr, want.Body, sbr)
	return true
}

// accepted reports whether the fast path took raw: if it did, net/http
// must accept raw too (werr is its error); if not, the buffer must be left
// untouched for net/http.
func accepted(t *testing.T, fast bool, fbr *bufio.Reader, raw []byte, werr error) bool {
	t.Helper()
	if !fast {
		rest, _ := io.ReadAll(fbr)
		if !bytes.Equal(rest, raw) {
			t.Fatalf("fell back after consuming input: left %q of %q", rest, raw)
		}
		return false
	}
	if werr != nil {
		t.Fatalf("accepted %q, which net/http refuses: %v", raw, werr)
	}
	return true
}

// compareRest reads both bodies to their end and then what is left in
// both buffers (the next message), which must match.
func compareRest(t *testing.T, raw []byte, gb io.ReadCloser, gr *bufio.Reader, wb io.ReadCloser, wr *bufio.Reader) {
	t.Helper()
	gbody, gerr := io.ReadAll(gb)
	wbody, werr := io.ReadAll(wb)
	if !bytes.Equal(gbody, wbody) || gerr != werr {
		t.Fatalf("body of %q: got %q, %v; want %q, %v", raw, gbody, gerr, wbody, werr)
	}
	grest, _ := io.ReadAll(gr)
	wrest, _ := io.ReadAll(wr)
	if !bytes.Equal(grest, wrest) {
		t.Fatalf("after %q: left %q, want %q", raw, grest, wrest)
	}
}

const sim = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Thu, 26 Nov 2026 06:00:00 GMT\r\nContent-Length: 12\r\n\r\n{\"id\":\"x\"}\r\n"

var responseCases = []struct {
	name, method, raw string
	fast              bool
}{
	{"simulator", "POST", sim, true},
	{"vllm", "POST", "HTTP/1.1 200 OK\r\ndate: Thu, 26 Nov 2026 06:00:00 GMT\r\nserver: uvicorn\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}", true},
	{"no reason", "GET", "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\nx", true},
	{"empty reason", "GET", "HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\nx", true},
	{"odd reason", "GET", "HTTP/1.1 404 Not\tFound \xc3\xa9\r\nContent-Length: 1\r\n\r\nx", true},
	{"error status", "POST", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n", true},
	{"big status", "GET", "HTTP/1.1 999 X\r\nContent-Length: 0\r\n\r\n", true},
	{"http/1.0", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", true},
	{"http/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", true},
	{"connection close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", true},
	{"connection close and more", "GET", "HTTP/1.1 200 OK\r\nConnection: x-a, close\r\nX-A: 1\r\nContent-Length: 1\r\n\r\nx", true},
	{"trailer without chunks", "GET", "HTTP/1.1 200 OK\r\nTrailer: X-T\r\nContent-Length: 1\r\n\r\nx", true},
	{"pragma", "GET", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 1\r\n\r\nx", true},
	{"set-cookies", "GET", "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 1\r\n\r\nx", true},
	{"short body", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nxy", true},
	{"pipelined", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny", true},
	{"head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false},
	{"no length", "GET", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end", false},
	{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", false},
	{"chunked and length", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n1\r\nx\r\n0\r\n\r\n", false},
	{"continue", "POST", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"no content", "GET", "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc", false},
	{"not modified", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", false},
	{"two lengths", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
	{"bad length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nx", false},
	{"short status", "GET", "HTTP/1.1 20 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"long status", "GET", "HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"status sign", "GET", "HTTP/1.1 +20 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"two spaces", "GET", "HTTP/1.1  200 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"http/2", "GET", "HTTP/2 200 OK\r\nContent-Length: 1\r\n\r\nx", false},
	{"space before colon", "GET", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nx", false},
	{"bare lf", "GET", "HTTP/1.1 200 OK\nContent-Length: 1\n\nx", false},
	{"folded", "GET", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 1\r\n\r\nx", false},
	{"incomplete", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n", false},
	{"empty", "GET", "", false},
}

func TestResponseMatchesNetHTTP(t *testing.T) {
	for _, tc := range responseCases {
		t.Run(tc.name, func(t *testing.T) {
			fast := compareResponse(t, tc.method, []byte(tc.raw))
			if fast != tc.fast {
				t.Errorf("fast path taken: %v, want %v", fast, tc.fast)
			}
		})
	}
}

func FuzzResponse(f *testing.F) {
	fuzzResponses(f, func(t *testing.T, method string, raw []byte) { compareResponse(t, method, raw) })
}

// fuzzResponses fuzzes check with the response cases as seeds, each read
// as the answer to a GET or a HEAD.
func fuzzResponses(f *testing.F, check func(t *testing.T, method string, raw []byte)) {
	for _, tc := range responseCases {
		f.Add(tc.method == "HEAD", []byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, head bool, raw []byte) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		check(t, method, raw)
	})
}

func compareResponse(t *testing.T, method string, raw []byte) bool {
	t.Helper()
	req, _ := http.NewRequest(method, "http://h/", nil)
	fbr := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
	got := fastResponse(fbr, req)
	sbr := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
	want, werr := http.ReadResponse(sbr, req)
	if !accepted(t, got != nil, fbr, raw, werr) {
		return false
	}
	type view struct {
		Status, Proto          string
		StatusCode             int
		ProtoMajor, ProtoMinor int
		Header                 http.Header
		ContentLength          int64
		Close, Uncompressed    bool
		TransferEncoding       []string
		Trailer                http.Header
		Request                *http.Request
		NoBody                 bool
	}
	v := func(r *http.Response) view {
		return view{r.Status, r.Proto, r.StatusCode, r.ProtoMajor, r.ProtoMinor, r.Header, r.ContentLength,
			r.Close, r.Uncompressed, r.TransferEncoding, r.Trailer, r.Request, r.Body == http.NoBody}
	}
	if g, w := v(got), v(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("response %q:\n got %+v\nwant %+v", raw, g, w)
	}
	compareRest(t, raw, got.Body, fbr, want.Body, sbr)
	return true
}

// BenchmarkReadRequest is the OpenAI SDK's request read by this package
// and by net/http (then given a context, as a server does).
func BenchmarkReadRequest(b *testing.B) {
	ctx := context.Background()
	for _, p := range []struct {
		name string
		read func(*bufio.Reader) (*http.Request, error)
	}{
		{"wire", func(br *bufio.Reader) (*http.Request, error) { return ReadRequest(ctx, br, 1<<20) }},
		{"net-http", func(br *bufio.Reader) (*http.Request, error) {
			req, err := http.ReadRequest(br)
			if err != nil {
				return nil, err
			}
			return req.WithContext(ctx), nil
		}},
	} {
		b.Run(p.name, func(b *testing.B) {
			r := strings.NewReader(oai)
			br := bufio.NewReaderSize(r, 4096)
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(oai)
				br.Reset(r)
				req, err := p.read(br)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, req.Body)
			}
		})
	}
}

// BenchmarkReadResponse is the simulator's answer read by this package and
// by net/http.
func BenchmarkReadResponse(b *testing.B) {
	req, _ := http.NewRequest("POST", "http://h/v1/chat/completions", nil)
	for _, p := range []struct {
		name string
		read func(*bufio.Reader, *http.Request) (*http.Response, error)
	}{{"wire", ReadResponse}, {"net-http", http.ReadResponse}} {
		b.Run(p.name, func(b *testing.B) {
			r := strings.NewReader(sim)
			br := bufio.NewReaderSize(r, 4096)
			b.ReportAllocs()
			for b.Loop() {
				r.Reset(sim)
				br.Reset(r)
				resp, err := p.read(br, req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
			}
		})
	}
}

// gatewayHeaders is what a proxy's answer holds before the backend's
// fields come: its own, one of them shared, and one name a backend sends
// too.
func gatewayHeaders() (http.Header, []string) {
	shared := []string{"production"}
	return http.Header{"X-Modelslot-Slot": shared, "Set-Cookie": {"route=staging"}}, shared
}

// TestResponseIntoMatchesNetHTTP: ReadResponseInto gives what a proxy gets
// from net/http's answer with its hop-by-hop fields (and those its
// Connection field names) removed and the rest added to its own header
// map; when it does not merge, dst is untouched and the answer is
// ReadResponse's.
func TestResponseIntoMatchesNetHTTP(t *testing.T) {
	extra := []struct{ name, method, raw string }{
		{"connection keep-alive", "GET", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\nx"},
		{"connection names a field", "GET", "HTTP/1.1 200 OK\r\nConnection: X-Modelslot-Slot\r\nContent-Length: 1\r\n\r\nx"},
		{"backend's own set-cookie", "GET", "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Modelslot-Slot: evil\r\nContent-Length: 1\r\n\r\nx"},
		{"two pragmas", "GET", "HTTP/1.1 200 OK\r\nPragma: x\r\nPragma: no-cache\r\nContent-Length: 1\r\n\r\nx"},
		{"lower-case", "GET", "HTTP/1.1 200 OK\r\ncontent-length: 1\r\nconnection: CLOSE\r\npragma: no-cache\r\ntrailer: x\r\n\r\nx"},
	}
	for _, tc := range responseCases {
		extra = append(extra, struct{ name, method, raw string }{tc.name, tc.method, tc.raw})
	}
	for _, tc := range extra {
		t.Run(tc.name, func(t *testing.T) {
			merged := compareResponseInto(t, tc.method, []byte(tc.raw))
			if want := mergedCases[tc.name]; want != nil && merged != *want {
				t.Errorf("merged %v, want %v", merged, *want)
			}
		})
	}
}

var yes, no = true, false

// mergedCases are cases whose path is known.
var mergedCases = map[string]*bool{
	"simulator": &yes, "vllm": &yes, "connection keep-alive": &yes, "backend's own set-cookie": &yes,
	"two pragmas": &yes, "lower-case": &yes, "http/1.0": &yes, "connection close": &yes,
	"connection names a field": &no, "connection close and more": &no, "chunked": &no, "continue": &no, "head": &no,
}

func FuzzResponseInto(f *testing.F) {
	fuzzResponses(f, func(t *testing.T, method string, raw []byte) { compareResponseInto(t, method, raw) })
}

func compareResponseInto(t *testing.T, method string, raw []byte) bool {
	t.Helper()
	req, _ := http.NewRequest(method, "http://h/", nil)
	dst, shared := gatewayHeaders()
	fbr := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
	got, merged, gerr := ReadResponseInto(fbr, req, dst, HopByHop)
	sbr := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
	want, werr := http.ReadResponse(sbr, req)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("response %q: error %v, net/http's %v", raw, gerr, werr)
	}
	if shared[0] != "production" || len(shared) != 1 {
		t.Fatalf("response %q changed a shared header slice: %q", raw, shared)
	}
	if werr != nil {
		if merged {
			t.Fatalf("response %q: merged, and net/http refuses it: %v", raw, werr)
		}
		return false
	}
	wantDst, _ := gatewayHeaders()
	if merged {
		// What a proxy does with net/http's answer.
		h := want.Header
		for _, v := range h["Connection"] {
			for f := range strings.SplitSeq(v, ",") {
				if f = strings.TrimSpace(f); f != "" {
					delete(h, http.CanonicalHeaderKey(f))
				}
			}
		}
		for k, vv := range h {
			if HopByHop(k) {
				continue
			}
			wantDst[k] = append(wantDst[k], vv...)
		}
	}
	if !reflect.DeepEqual(dst, wantDst) {
		t.Fatalf("response %q (merged %v): header map\n got %v\nwant %v", raw, merged, dst, wantDst)
	}
	if merged && !reflect.DeepEqual(got.Header, dst) {
		t.Fatalf("response %q: merged, but Header is not dst", raw)
	}
	type view struct {
		Status, Proto          string
		StatusCode             int
		ProtoMajor, ProtoMinor int
		ContentLength          int64
		Close, Uncompressed    bool
		TransferEncoding       []string
		Trailer                http.Header
		NoBody                 bool
	}
	v := func(r *http.Response) view {
		return view{r.Status, r.Proto, r.StatusCode, r.ProtoMajor, r.ProtoMinor, r.ContentLength,
			r.Close, r.Uncompressed, r.TransferEncoding, r.Trailer, r.Body == http.NoBody}
	}
	if g, w := v(got), v(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("response %q:\n got %+v\nwant %+v", raw, g, w)
	}
	if !merged && !reflect.DeepEqual(got.Header, want.Header) {
		t.Fatalf("response %q: header %v, want %v", raw, got.Header, want.Header)
	}
	gbody, gerr := io.ReadAll(got.Body)
	wbody, werr := io.ReadAll(want.Body)
	if !bytes.Equal(gbody, wbody) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
		t.Fatalf("body of %q: got %q, %v; want %q, %v", raw, gbody, gerr, wbody, werr)
	}
	grest, _ := io.ReadAll(fbr)
	wrest, _ := io.ReadAll(sbr)
	if !bytes.Equal(grest, wrest) {
		t.Fatalf("after %q: left %q, want %q", raw, grest, wrest)
	}
	return merged
}
