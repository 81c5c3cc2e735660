package demo_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot/demo"
)

// syncBuffer is the demo's output, read while the demo writes it.
type syncBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	kept chan struct{}
	once sync.Once
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.b.Write(p)
	if strings.Contains(s.b.String(), "modelslot status;") {
		s.once.Do(func() { close(s.kept) })
	}
	return n, err
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDemo runs the whole demo with --keep: it must end with both rollout
// outcomes as expected and no failed request during the splits and swaps,
// say its verdicts in words without e-values, and, kept running, print
// where the dashboard is and how to sign in.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about a minute")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out := &syncBuffer{kept: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- demo.Run(ctx, demo.Options{Out: out, Rate: 150, Keep: true}) }()
	select {
	case <-out.kept:
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("demo failed after it was kept: %v\n%s", err, out.String())
		}
	case err := <-done:
		t.Fatalf("demo ended before it was kept: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"staging passed validation", "succeeded", "rolled back automatically", "Both outcomes happened as expected",
		"dashboard: http://127.0.0.1:", "sign in with the admin token", "admin.token"} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	for _, bad := range []string{"e-value", "1/alpha", "ratio"} {
		if strings.Contains(text, bad) {
			t.Errorf("demo output says %q without --verbose:\n%s", bad, text)
		}
	}
	plain := regexp.MustCompile(`v3's (error rate|median time to first token|median latency) was [^:]+ against [^:]+(, and [^:]+)?: rolled back\.`)
	if !plain.MatchString(text) {
		t.Errorf("no verdict says in words why v3 was rolled back:\n%s", text)
	}
	if !regexp.MustCompile(`v2 did as well as v1 over \d+ of its requests \(error rate 0% against 0%`).MatchString(text) {
		t.Errorf("no verdict says in words why v2 went on:\n%s", text)
	}
}
