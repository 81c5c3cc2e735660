package api_test

import (
	"testing"
	"time"

	"github.com/modelslot/modelslot/api"
)

func TestSessionsExpireAndRevoke(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	s := api.NewSessions()
	s.Now = func() time.Time { return now }
	a, err := s.Create(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(2 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if a == b || len(a) != 64 {
		t.Fatalf("ids %q and %q: want two different 256-bit ids", a, b)
	}
	for _, tc := range []struct {
		name string
		id   string
		want bool
	}{{"new", a, true}, {"other", b, true}, {"unknown", "00" + a[2:], false}, {"empty", "", false}} {
		if got := s.Valid(tc.id); got != tc.want {
			t.Errorf("%s: Valid = %v, want %v", tc.name, got, tc.want)
		}
	}
	now = now.Add(time.Hour)
	if s.Valid(a) {
		t.Error("a session is valid at its expiry")
	}
	if !s.Valid(b) {
		t.Error("a session ended before its expiry")
	}
	s.Revoke(b)
	if s.Valid(b) {
		t.Error("a revoked session is still valid")
	}
}

func TestSessionsBounded(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	s := api.NewSessions()
	s.Now = func() time.Time { return now }
	for range api.MaxSessions {
		if _, err := s.Create(time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(time.Minute); err == nil {
		t.Fatal("a session beyond the bound was created")
	}
	now = now.Add(time.Minute)
	if _, err := s.Create(time.Minute); err != nil {
		t.Fatalf("expired sessions were not reclaimed: %v", err)
	}
}
