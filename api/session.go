package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/modelslot/modelslot"
)

// MaxSessions bounds the dashboard sessions a daemon keeps at once.
const MaxSessions = 10000

// Sessions are the dashboard's sign-ins: each a random id (256 bits) in the
// session cookie, never the admin token itself. The daemon keeps them in
// memory, by the SHA-256 of the id, so a restart signs everyone out; a
// session ends at its expiry or when its user logs out.
type Sessions struct {
	mu  sync.Mutex
	exp map[[sha256.Size]byte]time.Time
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
}

// NewSessions returns an empty session store.
func NewSessions() *Sessions {
	return &Sessions{exp: map[[sha256.Size]byte]time.Time{}, Now: time.Now}
}

// Create starts a session that lasts maxAge and returns its id.
func (s *Sessions) Create(maxAge time.Duration) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw)
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.exp) >= MaxSessions {
		for k, t := range s.exp {
			if !now.Before(t) {
				delete(s.exp, k)
			}
		}
		if len(s.exp) >= MaxSessions {
			return "", modelslot.Errorf(modelslot.EUNAVAILABLE, "too many dashboard sessions (%d): log out of unused ones, or restart the daemon to end them all", MaxSessions)
		}
	}
	s.exp[sha256.Sum256([]byte(id))] = now.Add(maxAge)
	return id, nil
}

// Valid reports whether id names a session that has not expired nor been
// revoked.
func (s *Sessions) Valid(id string) bool {
	if id == "" {
		return false
	}
	k := sha256.Sum256([]byte(id))
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.exp[k]
	if ok && !now.Before(t) {
		delete(s.exp, k)
		return false
	}
	return ok
}

// Revoke ends the session id (logout).
func (s *Sessions) Revoke(id string) {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	delete(s.exp, k)
	s.mu.Unlock()
}
