package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/tidwall/gjson"
)

// A body is read in pieces, each as large as all the pieces before it
// (from bodyFirstPiece up to bodyMaxPiece): memory follows the bytes that
// arrived, never a length the client announced, and no piece is copied
// while the body arrives. One copy joins them at the end.
const (
	bodyFirstPiece = 256 << 10
	bodyMaxPiece   = 4 << 20
)

// tooLarge is the error of a request body over the gateway's limit.
type tooLarge struct{ limit int64 }

func (e tooLarge) Error() string {
	return "the request body is larger than the gateway's limit of " + strconv.FormatInt(e.limit, 10) + " bytes"
}

// readBody reads the whole request body, at most limit bytes; only requests
// that must be inspected (sticky "user" key, rewrites, mirroring) pay for
// it. A body over the limit is refused from its Content-Length before any
// byte is read, and one of unknown length (chunked) after limit+1 bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	defer r.Body.Close()
	if r.ContentLength > limit {
		return nil, tooLarge{limit}
	}
	want := r.ContentLength
	if want < 0 {
		want = limit
	}
	var pieces [][]byte
	var total int64
	for total < want {
		p := make([]byte, min(max(total, bodyFirstPiece), bodyMaxPiece, want-total))
		n, err := readFull(r.Body, p)
		total += int64(n)
		pieces = append(pieces, p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, bodyError(err)
		}
	}
	if r.ContentLength < 0 && total == limit {
		// A byte more is a body over the limit.
		var one [1]byte
		if n, err := readFull(r.Body, one[:]); n > 0 {
			return nil, tooLarge{limit}
		} else if err != io.EOF {
			return nil, bodyError(err)
		}
	}
	switch len(pieces) {
	case 0:
		return nil, nil
	case 1:
		return pieces[0], nil
	}
	b := make([]byte, 0, total)
	for _, p := range pieces {
		b = append(b, p...)
	}
	return b, nil
}

// readFull reads until p is full, or returns the error that stopped it
// (io.EOF at the body's end).
func readFull(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// bodyError names a body over the limit as such, whichever reader found it
// (http.MaxBytesReader in ServeHTTP, or readBody's own count).
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge{mbe.Limit}
	}
	return err
}

// setBody replaces the request body with b.
func setBody(r *http.Request, b []byte) {
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.ContentLength = int64(len(b))
	r.Header.Set("Content-Length", strconv.Itoa(len(b)))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// peekUser returns the OpenAI "user" field of a JSON body and leaves the
// body readable for the proxy.
func peekUser(r *http.Request, limit int64) (string, error) {
	if r.Method != http.MethodPost {
		return "", nil
	}
	b, err := readBody(r, limit)
	if err != nil {
		return "", err
	}
	setBody(r, b)
	return gjson.GetBytes(b, "user").String(), nil
}
