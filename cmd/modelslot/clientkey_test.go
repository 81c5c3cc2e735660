package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/modelslot/modelslot/config"
)

// TestClientKeyNew: the printed entry, pasted into a keys file, loads and
// holds the SHA-256 of the printed key, never the key.
func TestClientKeyNew(t *testing.T) {
	out := mustRun(t, "client-key", "new", "search-team", "--app", "chat", "--rpm", "120")
	m := regexp.MustCompile(`(?m)^  (msk-[0-9a-f]{64})$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no key in:\n%s", out)
	}
	_, entry, _ := strings.Cut(out, "(under clientKeys:):\n")
	path := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(path, []byte("clientKeys:\n"+entry), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := config.LoadClientKeys(path)
	if err != nil {
		t.Fatalf("%v:\n%s", err, entry)
	}
	sum := sha256.Sum256([]byte(m[1]))
	if len(keys) != 1 || keys[0].Name != "search-team" || keys[0].SHA256 != hex.EncodeToString(sum[:]) ||
		len(keys[0].Apps) != 1 || keys[0].Apps[0] != "chat" || keys[0].RequestsPerMinute != 120 {
		t.Errorf("loaded %+v", keys)
	}
	if strings.Contains(entry, m[1]) {
		t.Error("the entry holds the key itself")
	}
	wantError(t, []string{"client-key", "new", "a b"}, "is not valid")
}
