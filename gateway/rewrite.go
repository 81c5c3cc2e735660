package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/modelslot/modelslot"
	"github.com/tidwall/gjson"
)

// rewriter applies a deployment's model id, system prompt and sampling
// parameters to requests, and shows the app's public model name in answers.
// A deployment without rewrites has none, and its requests are never parsed.
// It is built once per routing snapshot and shared by every request, so it
// holds no per-request state.
type rewriter struct {
	publicModel  string
	backendModel string
	systemPrompt string
	replace      bool

	// pre-encoded JSON values, so that a request costs one decode of the
	// top level and one encode, not a re-encoding of every parameter
	modelJSON  string
	systemMsg  string // {"role":"system","content":"<prompt>"}
	promptJSON string // the system prompt as a JSON string
	defaults   map[string]string
	overrides  map[string]string

	// backendQuoted is the backend's model id as a JSON string ("llama-3");
	// publicQuoted is the app's name, which replaces it in answers.
	backendQuoted, publicQuoted []byte
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
		defaults:     encodeParams(d.Defaults),
		overrides:    encodeParams(d.Overrides),
	}
	if d.Model != "" {
		rw.modelJSON = mustJSON(d.Model)
		rw.backendQuoted = []byte(rw.modelJSON)
		rw.publicQuoted = []byte(mustJSON(app))
	}
	if d.SystemPrompt != "" {
		rw.promptJSON = mustJSON(d.SystemPrompt)
		rw.systemMsg = mustJSON(map[string]string{"role": "system", "content": d.SystemPrompt})
	}
	return rw
}

func encodeParams(m map[string]any) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = mustJSON(v)
	}
	return out
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // deployment values come from JSON: they encode
	}
	return string(b)
}

// apiKind is the OpenAI API a request belongs to, which decides where the
// system prompt goes.
type apiKind int

const (
	apiOther       apiKind = iota
	apiChat                // /v1/chat/completions: messages
	apiCompletions         // /v1/completions: prompt
	apiResponses           // /v1/responses: instructions
)

// kindOf names the API of a request path; with no path it is inferred from
// the body's fields.
func kindOf(path string, req map[string]string) apiKind {
	switch {
	case strings.HasSuffix(path, "/chat/completions"):
		return apiChat
	case strings.HasSuffix(path, "/completions"):
		return apiCompletions
	case strings.HasSuffix(path, "/responses"):
		return apiResponses
	case path != "":
		return apiOther
	}
	if _, ok := req["messages"]; ok {
		return apiChat
	}
	if _, ok := req["prompt"]; ok {
		return apiCompletions
	}
	if _, ok := req["input"]; ok {
		// Embeddings also send "input", but never these.
		if _, ok := req["encoding_format"]; ok {
			return apiOther
		}
		if _, ok := req["dimensions"]; ok {
			return apiOther
		}
		return apiResponses
	}
	return apiOther
}

// request rewrites a JSON request body whose path is not known; the API is
// inferred from the body (see kindOf).
func (rw *rewriter) request(body []byte) ([]byte, error) {
	return rw.requestFor("", body)
}

// requestFor rewrites the JSON request body of a request to path. Bodies
// that are not JSON objects (multipart uploads, GETs) pass unchanged.
//
// The rules, in order: defaults fill top-level parameters the request does
// not set (absent or null); overrides replace top-level parameters; the
// model becomes the backend's id whatever the client sent; the system
// prompt goes where the API keeps it (see chat, completions, responses).
//
// Only the top level is split, with gjson over one copy of the body; the
// values are kept as raw JSON text and written back as they came, so
// numbers keep their precision and unknown fields pass untouched.
func (rw *rewriter) requestFor(path string, body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return body, nil
	}
	if !gjson.ValidBytes(trimmed) {
		return nil, errors.New("the request body is not valid JSON")
	}
	req := make(map[string]string, 16)
	gjson.Parse(string(trimmed)).ForEach(func(k, v gjson.Result) bool {
		req[k.String()] = v.Raw
		return true
	})
	for k, v := range rw.defaults {
		if cur, ok := req[k]; !ok || cur == "null" {
			req[k] = v
		}
	}
	for k, v := range rw.overrides {
		req[k] = v
	}
	if rw.modelJSON != "" {
		req["model"] = rw.modelJSON
	}
	if rw.systemPrompt != "" {
		var err error
		switch kindOf(path, req) {
		case apiChat:
			err = rw.chat(req)
		case apiCompletions:
			rw.completions(req)
		case apiResponses:
			err = rw.responses(req)
		}
		if err != nil {
			return nil, err
		}
	}
	return encodeObject(req, len(body)+len(rw.systemMsg)+64), nil
}

// isSystem reports whether a message or input item is a system or
// developer message.
func isSystem(item gjson.Result) bool {
	if !item.IsObject() {
		return false
	}
	r := item.Get("role").String()
	return r == "system" || r == "developer"
}

// chat puts the deployment's system message first. Mode prepend keeps the
// client's system and developer messages after it; mode replace drops
// them.
func (rw *rewriter) chat(req map[string]string) error {
	raw, ok := req["messages"]
	if !ok || raw == "null" {
		req["messages"] = "[" + rw.systemMsg + "]"
		return nil
	}
	msgs := gjson.Parse(raw)
	if !msgs.IsArray() {
		return errors.New("messages must be an array of message objects")
	}
	var b strings.Builder
	b.Grow(len(raw) + len(rw.systemMsg) + 2)
	b.WriteByte('[')
	b.WriteString(rw.systemMsg)
	msgs.ForEach(func(_, m gjson.Result) bool {
		if !rw.replace || !isSystem(m) {
			b.WriteByte(',')
			b.WriteString(m.Raw)
		}
		return true
	})
	b.WriteByte(']')
	req["messages"] = b.String()
	return nil
}

// completions prefixes a text prompt (or each of a batch of text prompts)
// with the system prompt and a blank line. A raw prompt has no system part
// to replace, so both modes do the same; token-id prompts pass unchanged.
func (rw *rewriter) completions(req map[string]string) {
	p := gjson.Parse(req["prompt"])
	switch {
	case p.Type == gjson.String:
		req["prompt"] = mustJSON(rw.systemPrompt + "\n\n" + p.Str)
	case p.IsArray():
		var texts []string
		for _, it := range p.Array() {
			if it.Type != gjson.String {
				return // token ids
			}
			texts = append(texts, rw.systemPrompt+"\n\n"+it.Str)
		}
		if len(texts) > 0 {
			req["prompt"] = mustJSON(texts)
		}
	}
}

// responses sets the Responses API's instructions. Mode prepend puts the
// system prompt before the client's instructions (a blank line between);
// mode replace discards the client's instructions and the system and
// developer items of its input.
func (rw *rewriter) responses(req map[string]string) error {
	if rw.replace {
		req["instructions"] = rw.promptJSON
		if in := gjson.Parse(req["input"]); in.IsArray() {
			var b strings.Builder
			b.WriteByte('[')
			n := 0
			in.ForEach(func(_, it gjson.Result) bool {
				if !isSystem(it) {
					if n > 0 {
						b.WriteByte(',')
					}
					b.WriteString(it.Raw)
					n++
				}
				return true
			})
			b.WriteByte(']')
			req["input"] = b.String()
		}
		return nil
	}
	client := gjson.Parse(req["instructions"])
	switch {
	case client.Type == gjson.Null || client.Str == "":
		req["instructions"] = rw.promptJSON
	case client.Type == gjson.String:
		req["instructions"] = mustJSON(rw.systemPrompt + "\n\n" + client.Str)
	default:
		return errors.New("instructions must be a string")
	}
	return nil
}

// encodeObject writes the object with sorted keys and the raw values.
func encodeObject(m map[string]string, sizeHint int) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := make([]byte, 0, sizeHint)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = append(b, m[k]...)
	}
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return append(b, mustJSON(s)...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// response shows the public model name instead of the backend's id: the
// value of every "model" key (completions, chat chunks, responses) and of
// every "id" key (the /v1/models list) that is exactly the backend's id,
// whatever the spacing around the colon. It works per write, so streams
// stay unbuffered; a write without the id is returned as it is, without
// copying.
func (rw *rewriter) response(p []byte) []byte {
	if rw.backendQuoted == nil || !bytes.Contains(p, rw.backendQuoted) {
		return p
	}
	var out []byte
	last := 0
	for i := 0; i < len(p); {
		j := bytes.Index(p[i:], rw.backendQuoted)
		if j < 0 {
			break
		}
		at := i + j
		i = at + len(rw.backendQuoted)
		if !isModelKey(p[:at]) {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(p)+8*(len(rw.publicQuoted)))
		}
		out = append(out, p[last:at]...)
		out = append(out, rw.publicQuoted...)
		last = i
	}
	if out == nil {
		return p
	}
	return append(out, p[last:]...)
}

// isModelKey reports whether before ends with `"model":` or `"id":`,
// allowing whitespace around the colon.
func isModelKey(before []byte) bool {
	i := len(before) - 1
	for i >= 0 && isSpace(before[i]) {
		i--
	}
	if i < 0 || before[i] != ':' {
		return false
	}
	i--
	for i >= 0 && isSpace(before[i]) {
		i--
	}
	head := before[:i+1]
	return bytes.HasSuffix(head, []byte(`"model"`)) || bytes.HasSuffix(head, []byte(`"id"`))
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// path maps GET /v1/models/<public name> to the backend's model id, so that
// a client retrieving "its" model sees the deployment's.
func (rw *rewriter) path(p string) string {
	if rw.backendModel != "" && p == "/v1/models/"+rw.publicModel {
		return "/v1/models/" + rw.backendModel
	}
	return p
}
