package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"
)

// kind is the inference endpoint a request came in on.
type kind uint8

const (
	kindChat kind = iota
	kindText
	kindResponses
	kindEmbeddings
)

// maxBody bounds a request body; real servers refuse far smaller ones.
const maxBody = 32 << 20

// request is the union of the request fields the simulator reads from the
// four inference endpoints. Unknown fields are ignored, as real servers do,
// because clients send many the simulator has no use for.
type request struct {
	Messages      []message `json:"messages"`
	Prompt        inputs    `json:"prompt"`
	Input         inputs    `json:"input"`
	Instructions  string    `json:"instructions"`
	Stream        bool      `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int   `json:"max_tokens"`
	MaxCompletionTokens *int   `json:"max_completion_tokens"`
	MaxOutputTokens     *int   `json:"max_output_tokens"`
	Dimensions          *int   `json:"dimensions"`
	EncodingFormat      string `json:"encoding_format"`
}

type message struct {
	Role    string  `json:"role"`
	Content content `json:"content"`
}

// content is a message's text: a string, or an array of parts of which the
// text parts are joined.
type content string

func (c *content) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0 || string(data) == "null":
		*c = ""
		return nil
	case data[0] == '"':
		s, err := unquote(data)
		*c = content(s)
		return err
	case data[0] == '[':
		var parts []struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(data, &parts); err != nil {
			return err
		}
		var b []byte
		for i, p := range parts {
			if i > 0 {
				b = append(b, '\n')
			}
			b = append(b, p.Text...)
		}
		*c = content(b)
		return nil
	}
	return fmt.Errorf("content must be a string or an array of parts, got %.20s", data)
}

// inputs is a completions prompt, an embeddings input or a Responses input:
// a string, an array of strings, a token array, an array of token arrays, or
// (Responses) an array of message items.
type inputs struct {
	items []string // one per embedding input
	last  string   // the text a canned answer is looked up by: the last user text
	words int      // rough prompt token count
}

func (in *inputs) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	*in = inputs{}
	switch {
	case len(data) == 0 || string(data) == "null":
		return nil
	case data[0] == '"':
		s, err := unquote(data)
		if err != nil {
			return err
		}
		in.add(s, countWords(s), true)
		return nil
	case data[0] != '[':
		return fmt.Errorf("want a string or an array, got %.20s", data)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(data, &elems); err != nil {
		return err
	}
	if len(elems) > 0 && isNumber(elems[0]) {
		// One token array: its text is unknown, its length is its size.
		in.add(string(data), len(elems), false)
		return nil
	}
	for _, e := range elems {
		switch {
		case len(e) > 0 && e[0] == '"':
			var s string
			if err := json.Unmarshal(e, &s); err != nil {
				return err
			}
			in.add(s, countWords(s), true)
		case len(e) > 0 && e[0] == '[':
			var toks []json.RawMessage
			if err := json.Unmarshal(e, &toks); err != nil {
				return err
			}
			in.add(string(e), len(toks), false)
		case len(e) > 0 && e[0] == '{':
			var item message
			if err := json.Unmarshal(e, &item); err != nil {
				return err
			}
			s := string(item.Content)
			in.add(s, countWords(s), item.Role == "user" || item.Role == "")
		default:
			return fmt.Errorf("unsupported input element %.20s", e)
		}
	}
	return nil
}

func (in *inputs) add(s string, words int, isUserText bool) {
	in.items = append(in.items, s)
	in.words += words
	if isUserText {
		in.last = s
	}
}

// unquote decodes a JSON string. The enclosing document has already been
// validated by the decoder, so a string without escapes is its bytes; only
// escaped strings pay for a second decode.
func unquote(data []byte) (string, error) {
	if len(data) >= 2 && data[len(data)-1] == '"' && bytes.IndexByte(data, '\\') < 0 {
		return string(data[1 : len(data)-1]), nil
	}
	var s string
	err := json.Unmarshal(data, &s)
	return s, err
}

func isNumber(b json.RawMessage) bool {
	return len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9'))
}

// prompt returns the canned-answer lookup text and the prompt token count.
func (req *request) prompt(k kind) (text string, words int) {
	switch k {
	case kindChat:
		for _, m := range req.Messages {
			words += countWords(string(m.Content))
			if m.Role == "user" {
				text = string(m.Content)
			}
		}
		return text, words
	case kindText:
		return req.Prompt.last, req.Prompt.words
	default:
		return req.Input.last, req.Input.words + countWords(req.Instructions)
	}
}

// limit returns the request's cap on output tokens (0 = none): the smallest
// of the fields the three APIs name it by. A cap below 1 is an error.
func (req *request) limit() (int, error) {
	n := 0
	for _, f := range []struct {
		name string
		v    *int
	}{
		{"max_tokens", req.MaxTokens},
		{"max_completion_tokens", req.MaxCompletionTokens},
		{"max_output_tokens", req.MaxOutputTokens},
	} {
		if f.v == nil {
			continue
		}
		if *f.v < 1 {
			return 0, fmt.Errorf("%s must be at least 1, got %d", f.name, *f.v)
		}
		if n == 0 || *f.v < n {
			n = *f.v
		}
	}
	return n, nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) {
	if cap(*b) > 1<<20 {
		return // let a huge response's buffer go rather than pin it
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// inference handles the four /v1 inference endpoints.
func (s *Server) inference(w http.ResponseWriter, r *http.Request, st *state, k kind) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	s.requests.Add(1)
	s.inflight.Add(1)
	defer s.inflight.Add(-1)

	var req request
	buf := getBuf()
	body, err := readBody(w, r, *buf)
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	*buf = body
	putBuf(buf) // Unmarshal copies strings, so req keeps nothing of buf
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "request_too_large", fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_json", "could not parse the JSON body: "+err.Error())
		return
	}

	if k == kindEmbeddings {
		s.embeddings(w, r, st, &req)
		return
	}
	limit, err := req.limit()
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_value", err.Error())
		return
	}
	if req.Stream && k == kindResponses {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "unsupported_value", "the simulator does not stream /v1/responses; send stream: false")
		return
	}
	if st.chance(st.cfg.ErrorRate) {
		st.fail(w)
		return
	}
	text, promptTokens := req.prompt(k)
	ans, finish := st.pick(text, limit)
	g := gen{
		st:      st,
		kind:    k,
		ans:     ans,
		finish:  finish,
		prompt:  promptTokens,
		id:      s.ids.Add(1),
		created: time.Now().Unix(),
	}
	var wt waiter
	defer wt.stop()
	if !req.Stream {
		if !wt.wait(r.Context(), st.jittered(st.cfg.TTFT)) {
			return
		}
		out := getBuf()
		*out = g.appendResponse(*out)
		writeJSON(w, http.StatusOK, *out)
		putBuf(out)
		return
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	g.stream(r.Context(), w, &wt, includeUsage)
}

func readBody(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, error) {
	bb := bytes.NewBuffer(buf[:0])
	_, err := bb.ReadFrom(http.MaxBytesReader(w, r.Body, maxBody))
	return bb.Bytes(), err
}

// fail writes a simulated failure of the configured kind.
func (st *state) fail(w http.ResponseWriter) {
	kind := st.cfg.ErrorKind
	if kind == ErrorMixed {
		kind = Error500
		if st.chance(0.5) {
			kind = Error429
		}
	}
	if kind == Error429 {
		w.Header()["Retry-After"] = retryAfterOne
		writeJSON(w, http.StatusTooManyRequests, body429)
		return
	}
	writeJSON(w, http.StatusInternalServerError, body500)
}

// pick chooses the answer for a prompt: malformed, wrong, canned or
// generated, then scales it by OutputScale and caps it at limit.
func (st *state) pick(prompt string, limit int) (answer, string) {
	a := answer{seed: hashString(prompt)}
	switch toks, canned := st.answers[prompt]; {
	case st.chance(st.cfg.MalformedRate):
		a.base, a.n = malformedTokens, len(malformedTokens)
	case st.chance(st.cfg.WrongRate):
		a.base, a.n = wrongTokens, len(wrongTokens)
	case canned:
		a.base, a.n = toks, len(toks)
	default:
		a.base, a.n = st.intro, st.cfg.Tokens
	}
	if st.cfg.OutputScale != 1 && a.n > 0 {
		a.n = max(1, min(maxTokens, int(math.Round(float64(a.n)*st.cfg.OutputScale))))
	}
	if limit > 0 && a.n > limit {
		a.n = limit
		return a, "length"
	}
	return a, "stop"
}

// waiter sleeps on one reusable timer per request, waking early when the
// client goes away.
type waiter struct{ t *time.Timer }

func (wt *waiter) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	if wt.t == nil {
		wt.t = time.NewTimer(d)
	} else {
		wt.t.Reset(d)
	}
	select {
	case <-ctx.Done():
		return false
	case <-wt.t.C:
		return true
	}
}

func (wt *waiter) stop() {
	if wt.t != nil {
		wt.t.Stop()
	}
}

// gen is one generation: what to say and how to frame it.
type gen struct {
	st      *state
	kind    kind
	ans     answer
	finish  string
	prompt  int
	id      uint64
	created int64
}

func (g *gen) appendID(b []byte) []byte {
	switch g.kind {
	case kindChat:
		b = append(b, `"chatcmpl-sim-`...)
	case kindText:
		b = append(b, `"cmpl-sim-`...)
	default:
		b = append(b, `"resp_sim`...)
	}
	b = appendInt(b, int64(g.id))
	return append(b, '"')
}

func (g *gen) appendUsage(b []byte) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = appendInt(b, int64(g.prompt))
	b = append(b, `,"completion_tokens":`...)
	b = appendInt(b, int64(g.ans.n))
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, int64(g.prompt+g.ans.n))
	return append(b, '}')
}

// appendResponse appends the non-streaming response object.
func (g *gen) appendResponse(b []byte) []byte {
	if g.kind == kindResponses {
		return g.appendResponsesObject(b)
	}
	b = append(b, `{"id":`...)
	b = g.appendID(b)
	if g.kind == kindChat {
		b = append(b, `,"object":"chat.completion","created":`...)
	} else {
		b = append(b, `,"object":"text_completion","created":`...)
	}
	b = appendInt(b, g.created)
	b = append(b, `,"model":`...)
	b = append(b, g.st.modelJSON...)
	if g.kind == kindChat {
		b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":"`...)
		b = g.ans.appendText(b)
		b = append(b, `"},"logprobs":null,"finish_reason":"`...)
	} else {
		b = append(b, `,"choices":[{"text":"`...)
		b = g.ans.appendText(b)
		b = append(b, `","index":0,"logprobs":null,"finish_reason":"`...)
	}
	b = append(b, g.finish...)
	b = append(b, `"}],"usage":`...)
	b = g.appendUsage(b)
	return append(b, "}\n"...)
}

// appendResponsesObject appends a minimal Responses API object.
func (g *gen) appendResponsesObject(b []byte) []byte {
	status := "completed"
	if g.finish == "length" {
		status = "incomplete"
	}
	b = append(b, `{"id":`...)
	b = g.appendID(b)
	b = append(b, `,"object":"response","created_at":`...)
	b = appendInt(b, g.created)
	b = append(b, `,"status":"`...)
	b = append(b, status...)
	if g.finish == "length" {
		b = append(b, `","incomplete_details":{"reason":"max_output_tokens"}`...)
	} else {
		b = append(b, `","incomplete_details":null`...)
	}
	b = append(b, `,"model":`...)
	b = append(b, g.st.modelJSON...)
	b = append(b, `,"output":[{"type":"message","id":"msg_sim`...)
	b = appendInt(b, int64(g.id))
	b = append(b, `","status":"`...)
	b = append(b, status...)
	b = append(b, `","role":"assistant","content":[{"type":"output_text","text":"`...)
	b = g.ans.appendText(b)
	b = append(b, `","annotations":[]}]}],"usage":{"input_tokens":`...)
	b = appendInt(b, int64(g.prompt))
	b = append(b, `,"output_tokens":`...)
	b = appendInt(b, int64(g.ans.n))
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, int64(g.prompt+g.ans.n))
	return append(b, "}}\n"...)
}

// stream writes the answer as server-sent events, one per token, flushing
// each so a client sees tokens as they are "generated". It returns as soon
// as the client goes away.
func (g *gen) stream(ctx context.Context, w http.ResponseWriter, wt *waiter, includeUsage bool) {
	st := g.st
	// Headers wait for the first token too, so time-to-first-byte is TTFT
	// whichever of the two a client measures.
	if !wt.wait(ctx, st.jittered(st.cfg.TTFT)) {
		return
	}
	h := w.Header()
	h["Content-Type"] = contentTypeSSE
	h["Cache-Control"] = noCache
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)

	// Every chunk starts the same; build that once.
	prefix := make([]byte, 0, 160)
	prefix = append(prefix, `data: {"id":`...)
	prefix = g.appendID(prefix)
	if g.kind == kindChat {
		prefix = append(prefix, `,"object":"chat.completion.chunk","created":`...)
	} else {
		prefix = append(prefix, `,"object":"text_completion","created":`...)
	}
	prefix = appendInt(prefix, g.created)
	prefix = append(prefix, `,"model":`...)
	prefix = append(prefix, st.modelJSON...)
	prefix = append(prefix, `,"choices":[`...)

	buf := getBuf()
	defer putBuf(buf)
	b := *buf
	defer func() { *buf = b }()
	send := func() bool {
		if _, err := w.Write(b); err != nil {
			return false
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		return true
	}

	if g.kind == kindChat {
		b = append(append(b[:0], prefix...), `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
		if !send() {
			return
		}
	}
	for i := range g.ans.n {
		if i > 0 && !wt.wait(ctx, st.jittered(st.cfg.ITL)) {
			return
		}
		if ctx.Err() != nil {
			return
		}
		b = append(b[:0], prefix...)
		if g.kind == kindChat {
			b = append(b, `{"index":0,"delta":{"content":"`...)
			b = appendEscaped(b, g.ans.token(i))
			b = append(b, `"},"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
		} else {
			b = append(b, `{"text":"`...)
			b = appendEscaped(b, g.ans.token(i))
			b = append(b, `","index":0,"logprobs":null,"finish_reason":null}]}`+"\n\n"...)
		}
		if !send() {
			return
		}
	}

	b = append(b[:0], prefix...)
	if g.kind == kindChat {
		b = append(b, `{"index":0,"delta":{},"logprobs":null,"finish_reason":"`...)
	} else {
		b = append(b, `{"text":"","index":0,"logprobs":null,"finish_reason":"`...)
	}
	b = append(b, g.finish...)
	b = append(b, `"}]}`+"\n\n"...)
	if !send() {
		return
	}
	if includeUsage {
		b = append(b[:0], prefix...)
		b = append(b, `],"usage":`...)
		b = g.appendUsage(b)
		b = append(b, "}\n\n"...)
		if !send() {
			return
		}
	}
	b = append(b[:0], "data: [DONE]\n\n"...)
	send()
}
