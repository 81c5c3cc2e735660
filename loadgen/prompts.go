package loadgen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
)

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Prompt is one request's input: either Prompt (sent as a single user
// message) or Messages. MaxTokens, when set, is sent as max_tokens;
// otherwise max_tokens is drawn from Config.OutputTokens.
type Prompt struct {
	Prompt    string    `json:"prompt,omitempty"`
	Messages  []Message `json:"messages,omitempty"`
	MaxTokens int       `json:"max_tokens,omitempty"`
}

// LoadPrompts reads a JSONL file with one prompt per line:
// {"prompt": "..."} or {"messages": [{"role": "user", "content": "..."}]},
// each with an optional "max_tokens". Blank lines are skipped; unknown
// fields are errors.
func LoadPrompts(path string) ([]Prompt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load prompts: %w", err)
	}
	defer f.Close()
	var prompts []Prompt
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var p Prompt
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		switch {
		case p.Prompt == "" && len(p.Messages) == 0:
			return nil, fmt.Errorf("%s:%d: set \"prompt\" or \"messages\"", path, line)
		case p.Prompt != "" && len(p.Messages) > 0:
			return nil, fmt.Errorf("%s:%d: set \"prompt\" or \"messages\", not both", path, line)
		case p.MaxTokens < 0:
			return nil, fmt.Errorf("%s:%d: \"max_tokens\" must not be negative", path, line)
		}
		prompts = append(prompts, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("load prompts %s: %w", path, err)
	}
	if len(prompts) == 0 {
		return nil, fmt.Errorf("load prompts %s: no prompts in file", path)
	}
	return prompts, nil
}

// words is the vocabulary of synthetic prompts: common English words,
// each about one token for BPE tokenizers.
var words = strings.Fields(`the of and to in is that for it as with was on be at by this
had not are but from or have an they which one you were all her she there would their we him
been has when who will more no if out so said what up its about into than them can only other
new some could time these two may then do first any my now such like our over man me even most
made after also did many before must through back years where much your way well down should
because each just those people how too little state good very make world still own see men work
long get here between both life being under never day same another know while last might us
great old year off come since against go came right used take three`)

// draw returns a value from d, truncated to at least 1.
func (d Dist) draw(r *rand.Rand) int {
	v := d.Mean + d.Stddev*r.NormFloat64()
	return max(1, int(math.Round(v)))
}

// requestBody is the JSON body of a chat completions request.
type requestBody struct {
	Model         string         `json:"model"`
	Messages      []Message      `json:"messages"`
	MaxTokens     int            `json:"max_tokens,omitempty"`
	Stream        bool           `json:"stream,omitempty"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// bodies builds the request bodies of a test, in order.
type bodies struct {
	cfg Config
	rnd *rand.Rand
	n   int
}

func (b *bodies) next() []byte {
	req := requestBody{Model: b.cfg.Model, Stream: b.cfg.Stream}
	if b.cfg.Stream {
		req.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	if len(b.cfg.Prompts) > 0 {
		p := b.cfg.Prompts[b.n%len(b.cfg.Prompts)]
		if p.Prompt != "" {
			req.Messages = []Message{{Role: "user", Content: p.Prompt}}
		} else {
			req.Messages = p.Messages
		}
		req.MaxTokens = p.MaxTokens
		if req.MaxTokens == 0 {
			req.MaxTokens = b.cfg.OutputTokens.draw(b.rnd)
		}
	} else {
		n := b.cfg.InputTokens.draw(b.rnd)
		var sb strings.Builder
		for i := range n {
			if i > 0 {
				sb.WriteByte(' ')
			}
			sb.WriteString(words[b.rnd.IntN(len(words))])
		}
		req.Messages = []Message{{Role: "user", Content: sb.String()}}
		req.MaxTokens = b.cfg.OutputTokens.draw(b.rnd)
	}
	b.n++
	body, err := json.Marshal(req)
	if err != nil {
		panic(err) // only strings and ints: cannot fail
	}
	return body
}
