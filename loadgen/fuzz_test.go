package loadgen

import (
	"bytes"
	"errors"
	"testing"
	"testing/iotest"
)

// FuzzReadEvents: the SSE reader gives the same events whether the stream
// comes at once or a byte at a time, and never panics.
func FuzzReadEvents(f *testing.F) {
	for _, s := range []string{
		"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n",
		"data: a\ndata: b\n\n", "data:no-space\r\n\r\n", ": comment\n\nevent: x\nid: 1\ndata: y\n\n",
		"data: [DONE]", "data", "\n\n\n", "data: " + string(bytes.Repeat([]byte("x"), 70000)) + "\n\n",
		"retry: 10\ndata:\n\n", "data: a\r\ndata: b\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	collect := func(data []byte, oneByte bool) ([]string, error) {
		var evs []string
		r := bytes.NewReader(data)
		var err error
		if oneByte {
			err = readEvents(iotest.OneByteReader(r), func(d []byte) error { evs = append(evs, string(d)); return nil })
		} else {
			err = readEvents(r, func(d []byte) error { evs = append(evs, string(d)); return nil })
		}
		return evs, err
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, err1 := collect(data, false)
		bytewise, err2 := collect(data, true)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("errors differ: %v and %v", err1, err2)
		}
		if len(whole) != len(bytewise) {
			t.Fatalf("%d events at once, %d byte by byte", len(whole), len(bytewise))
		}
		for i := range whole {
			if whole[i] != bytewise[i] {
				t.Fatalf("event %d: %q at once, %q byte by byte", i, whole[i], bytewise[i])
			}
		}
		// Stopping early is not an error.
		n := 0
		if err := readEvents(bytes.NewReader(data), func([]byte) error { n++; return errStop }); err != nil && !errors.Is(err, errStop) {
			t.Fatalf("stop: %v", err)
		}
		if n > 1 {
			t.Fatalf("%d events after errStop", n)
		}
	})
}
