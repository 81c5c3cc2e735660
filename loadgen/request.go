package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Error classes, the keys of Report.Errors. An HTTP status other than 200
// is counted as "http_<code>", e.g. "http_429".
const (
	ErrTimeout      = "timeout"       // the request exceeded Config.Timeout
	ErrConnection   = "connection"    // no response: dial, reset, closed before headers or body
	ErrStreamBroken = "stream_broken" // a 200 stream that ended without [DONE], or sent an error or bad event
	ErrBadResponse  = "bad_response"  // a 200 response whose body is not a chat completion
	ErrDropped      = "dropped"       // open loop: not sent, the in-flight bound was reached
	errCanceled     = "canceled"      // the caller's context ended; not counted
)

// Record is the outcome of one request. Latencies are measured from
// Scheduled: in open loop, the time the request was due to be sent, so
// that time spent waiting for the generator or a connection is counted;
// in closed loop, the time it was sent.
type Record struct {
	Index     int
	Scheduled time.Time
	// Err is "" on success, else an error class (see ErrTimeout...).
	Err    string
	Status int
	// TTFT is the time to the first non-empty content event (streaming)
	// or to the whole response (non-streaming); HasTTFT is false when a
	// stream carried no content.
	TTFT    time.Duration
	HasTTFT bool
	E2E     time.Duration
	// ITL holds the gaps between consecutive content events.
	ITL []time.Duration
	// OutputTokens comes from the usage object when the server sends one,
	// else from the number of content events (streaming) or of words in
	// the answer (non-streaming).
	OutputTokens int
	// ContentEvents is the number of non-empty content events received.
	ContentEvents int
}

// TPOT returns (E2E - TTFT) / (OutputTokens - 1), and false when it is
// undefined: a failed or non-streaming request, or fewer than 2 tokens.
func (r Record) TPOT(stream bool) (time.Duration, bool) {
	if !stream || r.Err != "" || !r.HasTTFT || r.OutputTokens < 2 {
		return 0, false
	}
	return (r.E2E - r.TTFT) / time.Duration(r.OutputTokens-1), true
}

// chunk is the part of a chat completion (or one streamed chunk) read here.
type chunk struct {
	Choices []struct {
		Delta struct {
			Content          string `json:"content"`
			ReasoningContent string `json:"reasoning_content"`
		} `json:"delta"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// send performs one request and measures it from scheduled.
func send(ctx context.Context, cfg *Config, endpoint string, index int, scheduled time.Time, body []byte) Record {
	rec := Record{Index: index, Scheduled: scheduled}
	rctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout+time.Until(scheduled), errRequestTimeout)
	defer cancel()
	fail := func(class string) Record {
		rec.Err = class
		rec.E2E = time.Since(scheduled)
		return rec
	}
	classify := func(err error, otherwise string) Record {
		switch {
		case ctx.Err() != nil:
			return fail(errCanceled)
		case errors.Is(context.Cause(rctx), errRequestTimeout), isTimeout(err):
			return fail(ErrTimeout)
		}
		return fail(otherwise)
	}

	req, err := http.NewRequestWithContext(rctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fail(ErrConnection)
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.Stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	for k, v := range cfg.Headers {
		req.Header.Set(k, v)
	}
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return classify(err, ErrConnection)
	}
	defer resp.Body.Close()
	rec.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64*1024))
		return fail(fmt.Sprintf("http_%d", resp.StatusCode))
	}

	if !cfg.Stream {
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return classify(err, ErrConnection)
		}
		rec.E2E = time.Since(scheduled)
		rec.TTFT, rec.HasTTFT = rec.E2E, true
		var c chunk
		if err := json.Unmarshal(data, &c); err != nil || len(c.Choices) == 0 || len(c.Error) > 0 {
			return fail(ErrBadResponse)
		}
		if c.Usage != nil {
			rec.OutputTokens = c.Usage.CompletionTokens
		} else {
			rec.OutputTokens = len(strings.Fields(c.Choices[0].Message.Content))
		}
		return rec
	}

	usage := -1
	var last time.Time
	done := false
	err = readEvents(resp.Body, func(data []byte) error {
		now := time.Now()
		if bytes.Equal(bytes.TrimSpace(data), []byte("[DONE]")) {
			done = true
			return errStop
		}
		var c chunk
		if err := json.Unmarshal(data, &c); err != nil {
			return errBadEvent
		}
		if len(c.Error) > 0 && string(c.Error) != "null" {
			return errBadEvent
		}
		if c.Usage != nil {
			usage = c.Usage.CompletionTokens
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content == "" && ch.Delta.ReasoningContent == "" {
				continue
			}
			rec.ContentEvents++
			if !rec.HasTTFT {
				rec.TTFT, rec.HasTTFT = now.Sub(scheduled), true
			} else {
				rec.ITL = append(rec.ITL, now.Sub(last))
			}
			last = now
			break
		}
		return nil
	})
	switch {
	case errors.Is(err, errBadEvent):
		return fail(ErrStreamBroken)
	case err != nil:
		return classify(err, ErrStreamBroken)
	case !done:
		return fail(ErrStreamBroken)
	}
	rec.E2E = time.Since(scheduled)
	rec.OutputTokens = rec.ContentEvents
	if usage >= 0 {
		rec.OutputTokens = usage
	}
	return rec
}

var (
	errRequestTimeout = errors.New("request timed out")
	errStop           = errors.New("end of stream")
	errBadEvent       = errors.New("bad stream event")
)

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readEvents reads server-sent events from r and calls fn with the data
// of each (data lines joined by "\n"). It returns nil at the end of the
// stream or when fn returns errStop, and fn's or the reader's error
// otherwise.
func readEvents(r io.Reader, fn func(data []byte) error) error {
	br := bufio.NewReaderSize(r, 32*1024)
	var data []byte
	hasData := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long line: gather the rest of it.
			full := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				full = append(full, line...)
			}
			line = full
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		eof := err != nil
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if hasData {
				if ferr := fn(data); ferr != nil {
					if errors.Is(ferr, errStop) {
						return nil
					}
					return ferr
				}
			}
			data, hasData = data[:0], false
		case line[0] == ':':
			// comment
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			if string(field) == "data" {
				value = bytes.TrimPrefix(value, []byte(" "))
				if hasData {
					data = append(data, '\n')
				}
				data = append(data, value...)
				hasData = true
			}
		}
		if eof {
			// A final event without its blank line still counts: some
			// servers end with "data: [DONE]\n".
			if hasData {
				if ferr := fn(data); ferr != nil && !errors.Is(ferr, errStop) {
					return ferr
				}
			}
			return nil
		}
	}
}
