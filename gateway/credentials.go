package gateway

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/modelslot/modelslot"
)

// CredentialHeaders are the request headers that carry a client's key to
// some provider: OpenAI, Mistral, Hugging Face and most others
// (Authorization), Azure OpenAI (api-key), Azure API Management
// (Ocp-Apim-Subscription-Key), Anthropic and several proxies (x-api-key),
// Google (x-goog-api-key), AWS (X-Amz-Security-Token), and OpenAI's
// account selectors (OpenAI-Organization, OpenAI-Project), which would let
// a client bill another organization of the deployment's key. When a
// deployment brings its own credentials, none of them reaches its
// provider from the client. docs/SECURITY.md lists them.
var CredentialHeaders = []string{
	"Authorization",
	"Api-Key",
	"X-Api-Key",
	"X-Goog-Api-Key",
	"Ocp-Apim-Subscription-Key",
	"X-Amz-Security-Token",
	"Openai-Organization",
	"Openai-Project",
}

// CarriesCredentials reports whether a deployment brings its own
// credentials: a secret header or query parameter, or one of
// CredentialHeaders.
func CarriesCredentials(d *modelslot.Deployment) bool {
	if d == nil {
		return false
	}
	if d.HasSecrets() {
		return true
	}
	for k := range d.Headers {
		if isCredentialHeader(http.CanonicalHeaderKey(k)) {
			return true
		}
	}
	return false
}

// isCredentialHeader reports whether the canonical header name k is one of
// CredentialHeaders.
func isCredentialHeader(k string) bool {
	for _, c := range CredentialHeaders {
		if k == c {
			return true
		}
	}
	return false
}

// dropClientCredentials deletes every credential header of the client.
func dropClientCredentials(h http.Header) {
	for _, k := range CredentialHeaders {
		delete(h, k)
	}
}

// safeErr drops the request URL from a transport error: it carries the
// deployment's query parameters, secret ones included, and the error is
// logged.
func safeErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
