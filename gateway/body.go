package gateway

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/tidwall/gjson"
)

// readBody reads the whole request body; only requests that must be
// inspected (sticky "user" key, rewrites, mirroring) pay for it.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(r.Body)
	r.Body.Close()
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errors.New("the request body is larger than the gateway's limit of " + strconv.FormatInt(mbe.Limit, 10) + " bytes")
		}
		return nil, err
	}
	return buf.Bytes(), nil
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
func peekUser(r *http.Request) (string, error) {
	if r.Method != http.MethodPost {
		return "", nil
	}
	b, err := readBody(r)
	if err != nil {
		return "", err
	}
	setBody(r, b)
	return gjson.GetBytes(b, "user").String(), nil
}
