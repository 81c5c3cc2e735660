package gateway

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/modelslot/modelslot"
)

// rewriter applies a deployment's model id, system prompt and sampling
// parameters to requests, and shows the app's public model name in answers.
// A deployment without rewrites has none, and its requests are never parsed.
type rewriter struct {
	publicModel  string
	backendModel string
	systemPrompt string
	replace      bool
	defaults     map[string]any
	overrides    map[string]any
	// the bytes to find and replace in answers, with and without the space
	// Python servers put after the colon
	from, to [2][]byte
}

func newRewriter(app string, d *modelslot.Deployment) *rewriter {
	if !d.HasRewrites() {
		return nil
	}
	rw := &rewriter{
		publicModel:  app,
		backendModel: d.Model,
		systemPrompt: d.SystemPrompt,
		replace:      d.SystemPromptMode == "replace",
		defaults:     d.Defaults,
		overrides:    d.Overrides,
	}
	if d.Model != "" {
		from, _ := json.Marshal(d.Model)
		to, _ := json.Marshal(app)
		for i, sep := range []string{`"model":`, `"model": `} {
			rw.from[i] = append([]byte(sep), from...)
			rw.to[i] = append([]byte(sep), to...)
		}
	}
	return rw
}

// request rewrites a JSON request body. Bodies that are not JSON objects
// (multipart uploads, GETs) pass unchanged.
func (rw *rewriter) request(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return body, nil
	}
	var req map[string]any
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, errors.New("the request body is not valid JSON: " + err.Error())
	}
	if rw.backendModel != "" {
		req["model"] = rw.backendModel
	}
	for k, v := range rw.defaults {
		if _, ok := req[k]; !ok {
			req[k] = v
		}
	}
	for k, v := range rw.overrides {
		req[k] = v
	}
	if rw.systemPrompt != "" {
		if msgs, ok := req["messages"].([]any); ok {
			req["messages"] = rw.withSystemPrompt(msgs)
		} else if _, ok := req["input"]; ok {
			// The Responses API carries the system prompt as instructions.
			if _, has := req["instructions"]; !has || rw.replace {
				req["instructions"] = rw.systemPrompt
			}
		}
	}
	return json.Marshal(req)
}

// withSystemPrompt prepends the deployment's system message, or with
// mode "replace" drops the client's system messages first.
func (rw *rewriter) withSystemPrompt(msgs []any) []any {
	out := make([]any, 0, len(msgs)+1)
	out = append(out, map[string]any{"role": "system", "content": rw.systemPrompt})
	for _, m := range msgs {
		if rw.replace {
			if mm, ok := m.(map[string]any); ok && (mm["role"] == "system" || mm["role"] == "developer") {
				continue
			}
		}
		out = append(out, m)
	}
	return out
}

// response shows the public model name instead of the backend's id. It
// works per write, so streams stay unbuffered.
func (rw *rewriter) response(p []byte) []byte {
	for i := range rw.from {
		if rw.from[i] != nil && bytes.Contains(p, rw.from[i]) {
			p = bytes.ReplaceAll(p, rw.from[i], rw.to[i])
		}
	}
	return p
}
