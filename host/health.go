package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// crashLimit is how many times a process may exit while WaitHealthy waits for
// it before WaitHealthy gives up early: a server that crashes on every start
// (a typo in the command, a missing model) will not get better by waiting out
// a warm-up timeout of many minutes.
const crashLimit = 3

// Polling starts fast, for quick servers and tests, and slows to one probe a
// second for servers that load a model for minutes.
const (
	pollMin      = 50 * time.Millisecond
	pollMax      = time.Second
	probeTimeout = 5 * time.Second
)

// tailBytes bounds how much of the log an error message quotes.
const tailBytes = 1024

// WaitHealthy polls GET baseURL+path until the status is in allowed (empty
// allowed = any 2xx), ctx ends, or timeout passes (0 = only ctx bounds it).
// An empty baseURL means p.URL(); an empty path means "/". p may be nil for
// backends that Host does not run; when it is not nil, WaitHealthy also gives
// up once p was stopped or exited crashLimit times while waiting.
//
// The error is written for the person deploying: it names the URL, the last
// status or connection error, whether the process exited and how, the log
// path, and the last lines of the log (at most 1 KiB). It wraps ctx's error
// when the wait was cut short by ctx or the timeout.
func WaitHealthy(ctx context.Context, client *http.Client, baseURL, path string, allowed []int, timeout time.Duration, p *Process) error {
	if client == nil {
		client = http.DefaultClient
	}
	if baseURL == "" && p != nil {
		baseURL = p.URL()
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	target := strings.TrimSuffix(baseURL, "/") + path

	waitCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	exits0 := 0
	if p != nil {
		exits0, _, _, _ = p.state()
	}
	var last string // the last status or connection error, in words
	var lastErr error
	interval := pollMin
	for {
		status, err := probe(waitCtx, client, target)
		switch {
		case err == nil && statusAllowed(status, allowed):
			return nil
		case err == nil:
			last = "status " + strconv.Itoa(status) + " " + http.StatusText(status)
			lastErr = nil
		case waitCtx.Err() == nil:
			// A probe cut off by the end of the wait says nothing about the
			// server, so it does not replace the previous answer.
			last, lastErr = "error: "+errText(err), err
		}

		// reason completes "GET <url> did not return <want>", so it
		// carries its own separator.
		var reason string
		var cause error
		if p != nil {
			exits, _, _, _ := p.state()
			select {
			case <-p.Done():
				reason = ": the process was stopped"
			default:
				if exits-exits0 >= crashLimit {
					reason = ": the process exited " + strconv.Itoa(exits-exits0) + " times while starting"
				}
			}
		}
		if reason == "" {
			t := time.NewTimer(interval)
			select {
			case <-t.C:
				interval = min(2*interval, pollMax)
				continue
			case <-waitCtx.Done():
				t.Stop()
				cause = waitCtx.Err()
				switch {
				case errors.Is(ctx.Err(), context.DeadlineExceeded):
					reason = ": the caller's deadline passed"
				case ctx.Err() != nil:
					reason = ": the wait was canceled"
				default:
					reason = " within " + timeout.String()
				}
			}
		}
		if cause == nil {
			cause = lastErr
		}
		return &healthError{msg: healthMessage(target, allowed, reason, last, p), err: cause}
	}
}

// probe sends one GET and returns the status.
func probe(ctx context.Context, client *http.Client, target string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	// Draining lets the connection be reused by the next probe.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

func statusAllowed(status int, allowed []int) bool {
	if len(allowed) == 0 {
		return status >= 200 && status < 300
	}
	return slices.Contains(allowed, status)
}

// errText drops the "Get <url>:" prefix that the message already says.
func errText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer within " + probeTimeout.String()
	}
	return err.Error()
}

func healthMessage(target string, allowed []int, reason, last string, p *Process) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s did not return %s%s", target, wantText(allowed), reason)
	if last != "" {
		fmt.Fprintf(&b, "; last answer: %s", last)
	} else {
		b.WriteString("; no answer yet")
	}
	if p == nil {
		return b.String()
	}
	exits, restarts, _, lastExit := p.state()
	if exits == 0 {
		b.WriteString("; the process is running")
	} else {
		fmt.Fprintf(&b, "; the process exited (%s); restarts so far: %d", lastExit, restarts)
	}
	fmt.Fprintf(&b, "; see log %s", p.LogPath())
	if tail := logTail(p.LogPath()); tail != "" {
		b.WriteString("\nlast lines of the log:\n")
		b.WriteString(tail)
	}
	return b.String()
}

func wantText(allowed []int) string {
	if len(allowed) == 0 {
		return "a 2xx status"
	}
	s := make([]string, len(allowed))
	for i, c := range allowed {
		s[i] = strconv.Itoa(c)
	}
	return "status " + strings.Join(s, " or ")
}

// logTail returns the last whole lines of the log within tailBytes, or "" if
// the log cannot be read (the message already names the file).
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-tailBytes, 0)
	buf := make([]byte, fi.Size()-off)
	n, _ := f.ReadAt(buf, off)
	buf = bytes.TrimRight(buf[:n], "\n")
	if off > 0 {
		// Drop the partial first line.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return strings.ToValidUTF8(string(buf), "?")
}

// healthError carries a user-facing message and the cause for errors.Is.
type healthError struct {
	msg string
	err error
}

func (e *healthError) Error() string { return e.msg }
func (e *healthError) Unwrap() error { return e.err }
