package daemon_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
)

// TestListenersCloseIdleConnections: gateway.idleTimeout closes keep-alive
// connections that wait for their next request, on the gateway's listener
// (either server) and on the admin listener; by default after 2 minutes.
func TestListenersCloseIdleConnections(t *testing.T) {
	for _, std := range []bool{false, true} {
		name := "h1"
		if std {
			name = "std-server"
		}
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Data = t.TempDir()
			cfg.Listen, cfg.Admin = "127.0.0.1:0", "127.0.0.1:0"
			cfg.Gateway.StdServer = std
			cfg.Gateway.IdleTimeout = modelslot.Duration(300 * time.Millisecond)
			e := startDaemonWith(t, cfg)
			for _, base := range []string{e.d.GatewayURL(), e.d.AdminURL()} {
				c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s: %v", base, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.Close {
					t.Fatalf("%s: the answer closed the connection; the test needs it kept alive", base)
				}
				_, err = io.Copy(io.Discard, br)
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Errorf("%s: an idle keep-alive connection is still open 10s after a 300ms idle timeout", base)
				}
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		e := startDaemon(t, t.TempDir())
		got := daemon.IdleTimeouts(e.d)
		if len(got) != 2 {
			t.Fatalf("idle timeouts of %d listeners, want 2", len(got))
		}
		for i, d := range got {
			if d != 2*time.Minute {
				t.Errorf("listener %d: idle timeout %v, want 2m", i, d)
			}
		}
	})
}
