package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
	"github.com/modelslot/modelslot/sim"
)

func keyEntry(name, key string) string {
	sum := sha256.Sum256([]byte(key))
	return fmt.Sprintf("  - name: %s\n    sha256: %s\n", name, hex.EncodeToString(sum[:]))
}

// TestClientKeysFileRotates: the gateway takes the keys of its keys file,
// re-reads the file when it changes (and on ReloadClientKeys, which SIGHUP
// calls), and keeps its keys when the new file is bad.
func TestClientKeysFileRotates(t *testing.T) {
	defer daemon.SetClientKeysPoll(20 * time.Millisecond)()
	_, backend := startSim(t, sim.Config{})
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(keys, []byte("clientKeys:\n"+keyEntry("a", "key-a")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	cfg.Gateway.ClientKeysFile = keys
	e := startDaemonWith(t, cfg)
	e.deploy("production", backend, "v1")

	status := func(key string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.d.GatewayURL()+"/v1/chat/completions", strings.NewReader(chatBody))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got := status(""); got != http.StatusUnauthorized {
		t.Errorf("no key: %d, want 401", got)
	}
	if got := status("key-a"); got != http.StatusOK {
		t.Errorf("key a: %d, want 200", got)
	}

	// Rotate: b replaces a, without a restart.
	if err := os.WriteFile(keys, []byte("clientKeys:\n"+keyEntry("b", "key-b")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor("the rotated file to apply", func() bool { return status("key-b") == http.StatusOK })
	if got := status("key-a"); got != http.StatusUnauthorized {
		t.Errorf("the removed key a: %d, want 401", got)
	}

	// A bad file is refused and b keeps working.
	if err := os.WriteFile(keys, []byte("clientKeys:\n  - name: c\n    sha256: the-key-itself\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.d.ReloadClientKeys(); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("reload of a bad file: %v, want an error about sha256", err)
	}
	time.Sleep(100 * time.Millisecond) // a few polls of the watcher
	if got := status("key-b"); got != http.StatusOK {
		t.Errorf("key b after a bad file: %d, want 200", got)
	}
}

// TestOpenGatewayRefused: a gateway beyond loopback with a deployment that
// carries credentials starts only with client keys or openGateway.
func TestOpenGatewayRefused(t *testing.T) {
	_, backend := startSim(t, sim.Config{})
	withKey := &config.Deployment{URL: backend, Version: "v1", SecretHeaders: map[string]string{"api-key": "sk-provider"}}
	plain := &config.Deployment{URL: backend, Version: "v1"}
	for _, tc := range []struct {
		name    string
		listen  string
		dep     *config.Deployment
		keys    bool
		open    bool
		wantErr bool
	}{
		{"credentials, no keys", "0.0.0.0:0", withKey, false, false, true},
		{"credentials, client keys", "0.0.0.0:0", withKey, true, false, false},
		{"credentials, open gateway", "0.0.0.0:0", withKey, false, true, false},
		{"no credentials", "0.0.0.0:0", plain, false, false, false},
		{"credentials on loopback", "127.0.0.1:0", withKey, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Data = t.TempDir()
			cfg.Listen = tc.listen
			cfg.Admin = "127.0.0.1:0"
			cfg.Apps = []config.App{{Name: "default", Slots: []config.Slot{{Name: "production", Deployment: tc.dep}}}}
			cfg.Gateway.OpenGateway = tc.open
			if tc.keys {
				sum := sha256.Sum256([]byte("k"))
				cfg.Gateway.ClientKeys = []config.ClientKey{{Name: "k", SHA256: hex.EncodeToString(sum[:])}}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d, err := daemon.Start(ctx, daemon.Options{Config: cfg})
			if err == nil {
				d.Close(ctx)
			}
			if tc.wantErr {
				if err == nil {
					t.Fatal("started")
				}
				for _, want := range []string{"beyond loopback", "client keys", "--open-gateway"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
			} else if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestOpenGatewayRefusedFromStore: a credentialed deployment made through
// the API is in the store; a restart beyond loopback without client keys
// is refused for it too, not only for the config's declarations.
func TestOpenGatewayRefusedFromStore(t *testing.T) {
	_, backend := startSim(t, sim.Config{})
	dir := t.TempDir()
	e := startDaemon(t, dir)
	if _, err := e.c.Deploy(context.Background(), "default", "production", modelslot.DeployRequest{Deployment: modelslot.Deployment{
		URL: backend, Query: map[string]string{"key": "k"}, SecretQuery: []string{"key"},
	}}); err != nil {
		t.Fatal(err)
	}
	e.stop()
	cfg := config.Default()
	cfg.Data, cfg.Listen, cfg.Admin = dir, "0.0.0.0:0", "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := daemon.Start(ctx, daemon.Options{Config: cfg})
	if err == nil {
		d.Close(ctx)
		t.Fatal("a gateway beyond loopback started with a stored credentialed deployment and no client keys")
	}
	if !strings.Contains(err.Error(), "--open-gateway") {
		t.Errorf("error %q does not say --open-gateway", err)
	}
}

// TestOpenGatewayRefusesCredentialedDeploy: the rule holds for deploys made
// after the start too. A gateway beyond loopback without client keys
// refuses a deployment with credentials through the API (EINVALID, nothing
// deployed) and takes one without; with --open-gateway it takes both.
func TestOpenGatewayRefusesCredentialedDeploy(t *testing.T) {
	_, backend := startSim(t, sim.Config{})
	withKey := modelslot.Deployment{URL: backend, Version: "v2", Headers: map[string]string{"x-api-key": "sk-provider"}, SecretHeaders: []string{"x-api-key"}}
	plain := modelslot.Deployment{URL: backend, Version: "v1"}
	for _, open := range []bool{false, true} {
		t.Run(fmt.Sprintf("open=%v", open), func(t *testing.T) {
			cfg := config.Default()
			cfg.Data, cfg.Listen, cfg.Admin = t.TempDir(), "0.0.0.0:0", "127.0.0.1:0"
			cfg.Gateway.OpenGateway = open
			e := startDaemonWith(t, cfg)
			ctx := context.Background()
			if _, err := e.c.Deploy(ctx, "default", "production", modelslot.DeployRequest{Deployment: plain}); err != nil {
				t.Fatalf("deploy without credentials: %v", err)
			}
			_, err := e.c.Deploy(ctx, "default", "production", modelslot.DeployRequest{Deployment: withKey})
			if open {
				if err != nil {
					t.Fatalf("deploy with credentials and --open-gateway: %v", err)
				}
				return
			}
			if modelslot.ErrorCode(err) != modelslot.EINVALID || !strings.Contains(fmt.Sprint(err), "--open-gateway") {
				t.Fatalf("deploy with credentials on an open gateway: %v; want EINVALID naming --open-gateway", err)
			}
			a, err := e.c.App(ctx, "default")
			if err != nil {
				t.Fatal(err)
			}
			if d := a.Slot("production").Deployment; d == nil || d.Version != "v1" {
				t.Fatalf("production serves %+v after the refused deploy, want v1", d)
			}
		})
	}
}
