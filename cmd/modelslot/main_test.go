package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/modelslot/modelslot/azure"
)

// TestMain keeps every test away from Azure: unless a test wires a fake
// site, the Azure configuration gets a credential and transports that
// refuse to send anything, so no test can reach the network or let
// DefaultAzureCredential probe the instance metadata endpoint.
//
// With MODELSLOT_TEST_MAIN set, the test binary runs main() with the
// arguments in it (JSON), so that tests can check exit statuses and what
// main prints.
func TestMain(m *testing.M) {
	azureConfigHook = denyAzure
	if args := os.Getenv("MODELSLOT_TEST_MAIN"); args != "" {
		var a []string
		if err := json.Unmarshal([]byte(args), &a); err != nil {
			panic(err)
		}
		os.Args = append([]string{"modelslot"}, a...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var errNoFake = errors.New("test: no fake Azure site is wired: nothing may leave the process")

type denyTransport struct{}

func (denyTransport) Do(*http.Request) (*http.Response, error)        { return nil, errNoFake }
func (denyTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, errNoFake }
func (denyCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{}, errNoFake
}

type denyCredential struct{}

func denyAzure(c *azure.Config) {
	c.Credential = denyCredential{}
	o := &arm.ClientOptions{ClientOptions: policy.ClientOptions{Transport: denyTransport{}, Retry: policy.RetryOptions{MaxRetries: -1}}}
	c.ClientOptions, c.MetricsClientOptions = o, o
	c.HTTPClient = &http.Client{Transport: denyTransport{}}
	c.HostURL = func(string) string { return "http://127.0.0.1:1" }
}

// run executes the real command tree in-process.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCtx(t, context.Background(), args...)
}

func runCtx(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var out, errw bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errw)
	err = root.ExecuteContext(ctx)
	return out.String(), errw.String(), err
}

// mustRun fails the test if the command fails.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, args...)
	if err != nil {
		t.Fatalf("modelslot %q: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, errOut)
	}
	return out
}

// wantError fails the test unless the command fails with a message that
// contains every want.
func wantError(t *testing.T, args []string, wants ...string) error {
	t.Helper()
	out, _, err := run(t, args...)
	if err == nil {
		t.Fatalf("modelslot %q succeeded, want an error; stdout:\n%s", args, out)
	}
	for _, w := range wants {
		if !bytes.Contains([]byte(err.Error()), []byte(w)) {
			t.Errorf("modelslot %q: error %q, want it to contain %q", args, err, w)
		}
	}
	return err
}
