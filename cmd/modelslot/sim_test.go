package main

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/modelslot/modelslot/azure"
)

// TestSimShowsRevision: `modelslot sim` shows the revision the Azure driver
// deploys (its app setting, or --revision) in the header the driver waits
// for on the health path, so that the simulator can stand in for a model
// server on App Service; without one it sends no such header.
func TestSimShowsRevision(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		args      []string
		want      string
	}{
		{"app setting", "rev-from-env", nil, "rev-from-env"},
		{"flag", "rev-from-env", []string{"--revision", "rev-flag"}, "rev-flag"},
		{"none", "", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(azure.SettingRevision, tc.env)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, _, err := runCtx(t, ctx, append([]string{"sim", "--listen", addr}, tc.args...)...)
				done <- err
			}()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("sim: %v", err)
				}
			}()
			var resp *http.Response
			for range 200 {
				if resp, err = http.Get("http://" + addr + "/health"); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get(azure.DefaultRevisionHeader); got != tc.want || resp.StatusCode != http.StatusOK {
				t.Fatalf("health: %d, %s %q; want 200 and %q", resp.StatusCode, azure.DefaultRevisionHeader, got, tc.want)
			}
		})
	}
}
