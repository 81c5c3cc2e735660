package local

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/modelslot/modelslot"
)

// FuzzDeployment decodes a deploy request as the admin API does (strict
// JSON) and normalizes it as Deploy does: any input is a deployment or an
// EINVALID error, never a panic; an accepted deployment's revision is
// stable and its redacted copy shows no secret value.
func FuzzDeployment(f *testing.F) {
	for _, s := range []string{
		`{"deployment":{"url":"http://127.0.0.1:8000","version":"v1"}}`,
		`{"deployment":{"command":"modelslot sim --listen 127.0.0.1:{port}","settings":{"A":"b"}}}`,
		`{"deployment":{"url":"https://x.example/openai","model":"gpt-4o-mini","headers":{"api-key":"k1","x-team":"a"},"secretHeaders":["api-key"],"query":{"api-version":"2024-10-21","key":"k2"},"secretQuery":["key"]}}`,
		`{"deployment":{"url":"http://h","systemPrompt":"be brief","systemPromptMode":"replace","defaults":{"temperature":0.2},"overrides":{"max_tokens":10}}}`,
		`{"deployment":{"url":"http://h","warmup":{"path":"/ready","statuses":[200,204],"timeout":"90s","retries":2}}}`,
		`{"deployment":{"url":"http://h","secretHeaders":["missing"]}}`,
		`{"deployment":{"url":"ftp://h"}}`, `{"revision":"abc"}`, `{"deployment":{"url":"http://h","warmup":{"timeout":-1}}}`,
		`{"deployment":{"url":"http://h"},"stickySettings":{"K":"v"},"unknown":1}`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req modelslot.DeployRequest
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if dec.Decode(&req) != nil {
			return
		}
		d := req.Deployment
		if err := normalize(&d); err != nil {
			if modelslot.ErrorCode(err) != modelslot.EINVALID || modelslot.ErrorMessage(err) == "" {
				t.Fatalf("error %v: want EINVALID with a message", err)
			}
			return
		}
		if d.Revision != d.ComputeRevision() {
			t.Fatal("the revision changes between two computations")
		}
		r := d.Redacted()
		for k := range d.Headers {
			if d.IsSecretHeader(k) && r.Headers[k] != modelslot.RedactedValue {
				t.Fatalf("secret header %s shown as %q", k, r.Headers[k])
			}
		}
		for k := range d.Query {
			if d.IsSecretQuery(k) && r.Query[k] != modelslot.RedactedValue {
				t.Fatalf("secret query parameter %s shown as %q", k, r.Query[k])
			}
		}
		for _, k := range d.SecretQuery {
			if _, ok := d.Query[k]; !ok {
				t.Fatalf("secret query parameter %s accepted without a value", k)
			}
		}
	})
}
