package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelslot/modelslot/api"
	"github.com/modelslot/modelslot/config"
	"github.com/modelslot/modelslot/daemon"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "modelslot test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// localURL turns an admin URL on every address into one on 127.0.0.1.
func localURL(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(p.Host)
	p.Host = "127.0.0.1:" + port
	return p.String()
}

func adminConfig(t *testing.T, admin string) *config.Config {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = admin
	return cfg
}

func getStatus(t *testing.T, c *http.Client, u, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminBeyondLoopback: an admin address beyond loopback is refused
// without TLS or --insecure-admin, with a message that says the fix; with
// either it starts and warns; /metrics there takes a token, while on
// loopback it stays open.
func TestAdminBeyondLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("refused over plain HTTP", func(t *testing.T) {
		_, err := daemon.Start(ctx, daemon.Options{Config: adminConfig(t, "0.0.0.0:0")})
		if err == nil {
			t.Fatal("a plain-HTTP admin address on every interface started")
		}
		for _, want := range []string{"beyond loopback", "--admin-tls-cert", "--insecure-admin"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error %q is more than one line", err)
		}
	})

	t.Run("bad certificate", func(t *testing.T) {
		cfg := adminConfig(t, "0.0.0.0:0")
		cfg.AdminTLS = config.AdminTLS{Cert: filepath.Join(t.TempDir(), "none.pem"), Key: filepath.Join(t.TempDir(), "none.key")}
		_, err := daemon.Start(ctx, daemon.Options{Config: cfg})
		if err == nil || !strings.Contains(err.Error(), "admin TLS") {
			t.Fatalf("missing certificate files: %v, want an admin TLS error", err)
		}
	})

	certFile, keyFile, pool := selfSigned(t)
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, tc := range []struct {
		name, admin string
		insecure    bool
		tls         bool
		warning     string // "" when none is wanted
		openMetrics bool
	}{
		{"loopback", "127.0.0.1:0", false, false, "", true},
		{"insecure", "0.0.0.0:0", true, false, "plain HTTP", false},
		{"TLS", "0.0.0.0:0", false, true, "over TLS", false},
		{"TLS on loopback", "127.0.0.1:0", false, true, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := adminConfig(t, tc.admin)
			cfg.InsecureAdmin = tc.insecure
			c := http.DefaultClient
			if tc.tls {
				cfg.AdminTLS = config.AdminTLS{Cert: certFile, Key: keyFile}
				c = tlsClient
			}
			var logs syncBuffer
			d, err := daemon.Start(ctx, daemon.Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close(context.Background())
			base := localURL(t, d.AdminURL())
			if got := strings.HasPrefix(base, "https://"); got != tc.tls {
				t.Errorf("admin URL %s: https %v, want %v", base, got, tc.tls)
			}
			if warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "beyond loopback"); warned != (tc.warning != "") || !strings.Contains(logs.String(), tc.warning) {
				t.Errorf("want a warning saying %q (none if empty); log:\n%s", tc.warning, logs.String())
			}
			if got := getStatus(t, c, base+"/api/v1/apps", d.Token); got != http.StatusOK {
				t.Errorf("API with the token: %d", got)
			}
			mt, err := os.ReadFile(filepath.Join(cfg.Data, api.MetricsTokenFile))
			if err != nil {
				t.Fatal(err)
			}
			want := http.StatusUnauthorized
			if tc.openMetrics {
				want = http.StatusOK
			}
			if got := getStatus(t, c, base+"/metrics", ""); got != want {
				t.Errorf("/metrics without a token: %d, want %d", got, want)
			}
			for name, tok := range map[string]string{"metrics token": strings.TrimSpace(string(mt)), "admin token": d.Token} {
				if got := getStatus(t, c, base+"/metrics", tok); got != http.StatusOK {
					t.Errorf("/metrics with the %s: %d", name, got)
				}
			}
			if !tc.openMetrics && getStatus(t, c, base+"/metrics", "wrong") != http.StatusUnauthorized {
				t.Errorf("/metrics took a wrong token")
			}

			// The dashboard's cookie is Secure exactly when served over TLS.
			req, _ := http.NewRequest(http.MethodPost, base+"/ui/login", strings.NewReader(url.Values{"token": {d.Token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", base)
			noRedirect := &http.Client{Transport: c.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var sc *http.Cookie
			for _, ck := range resp.Cookies() {
				if ck.Name == api.SessionCookie {
					sc = ck
				}
			}
			if sc == nil || sc.Secure != tc.tls || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode {
				t.Errorf("session cookie %+v: want Secure %v, HttpOnly, SameSite=Strict", sc, tc.tls)
			}
		})
	}
}
