package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"time"
)

// ErrorKind selects which failure a simulated error is.
type ErrorKind string

// The error kinds a Config accepts.
const (
	Error500   ErrorKind = "500"   // 500 server_error
	Error429   ErrorKind = "429"   // 429 rate_limit_error with Retry-After: 1
	ErrorMixed ErrorKind = "mixed" // half 500, half 429
)

// Limits that keep a typo in a demo from allocating gigabytes.
const (
	maxTokens      = 1 << 20
	maxOutputScale = 1000
)

// Config is the behaviour of a simulated model version. The zero value is a
// fast, healthy server answering as model "sim" with 16 tokens.
type Config struct {
	Model     string        // model id reported in responses and /v1/models; default "sim"
	TTFT      time.Duration // delay before the first token (or before the whole non-streaming response's body is ready)
	ITL       time.Duration // inter-token latency between streamed tokens
	Jitter    float64       // 0..1: each delay is multiplied by a uniform factor in [1-Jitter, 1+Jitter]
	Tokens    int           // output tokens per response (default 16); a request's max_tokens / max_completion_tokens caps it
	ErrorRate float64       // 0..1 share of completion requests that fail
	ErrorKind ErrorKind     // default "500"
	Startup   time.Duration // /health answers 503 {"status":"loading"} until this long after start
	Seed      int64         // 0 = random seed; otherwise deterministic draws
	// for staging-validation tests: a version that is fast but wrong
	Answers       map[string]string // canned answers: exact prompt text (last user message or the prompt) -> answer text
	WrongRate     float64           // 0..1 share of answers replaced by a wrong answer ("I don't know.")
	MalformedRate float64           // 0..1 share of answers that are truncated/invalid JSON text (e.g. `{"answer": ` )
	OutputScale   float64           // multiplies the number of output tokens (default 1)
}

// withDefaults fills the zero fields that have a non-zero default. It is the
// one place defaults live.
func (c Config) withDefaults() Config {
	if c.Model == "" {
		c.Model = "sim"
	}
	if c.Tokens == 0 {
		c.Tokens = 16
	}
	if c.ErrorKind == "" {
		c.ErrorKind = Error500
	}
	if c.OutputScale == 0 {
		c.OutputScale = 1
	}
	return c
}

// fieldError names the offending field by its admin (lowerCamelCase) name,
// so the same message serves NewChecked callers and PATCH /admin/config.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// validate checks a defaulted config.
func (c Config) validate() error {
	var errs []error
	dur := func(field string, d time.Duration) {
		if d < 0 {
			errs = append(errs, &fieldError{field, fmt.Sprintf("must not be negative, got %s", d)})
		}
	}
	rate := func(field string, v float64) {
		if math.IsNaN(v) || v < 0 || v > 1 {
			errs = append(errs, &fieldError{field, fmt.Sprintf("must be between 0 and 1, got %v", v)})
		}
	}
	dur("ttft", c.TTFT)
	dur("itl", c.ITL)
	dur("startup", c.Startup)
	rate("jitter", c.Jitter)
	rate("errorRate", c.ErrorRate)
	rate("wrongRate", c.WrongRate)
	rate("malformedRate", c.MalformedRate)
	if c.Tokens < 0 || c.Tokens > maxTokens {
		errs = append(errs, &fieldError{"tokens", fmt.Sprintf("must be between 0 (default 16) and %d, got %d", maxTokens, c.Tokens)})
	}
	if math.IsNaN(c.OutputScale) || c.OutputScale < 0 || c.OutputScale > maxOutputScale {
		errs = append(errs, &fieldError{"outputScale", fmt.Sprintf("must be between 0 (default 1) and %d, got %v", maxOutputScale, c.OutputScale)})
	}
	switch c.ErrorKind {
	case Error500, Error429, ErrorMixed:
	default:
		errs = append(errs, &fieldError{"errorKind", fmt.Sprintf(`must be "500", "429" or "mixed", got %q`, c.ErrorKind)})
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid sim config: %w", err)
	}
	return nil
}

// LoadAnswers reads canned answers from a JSONL file whose lines are
// {"prompt": "...", "answer": "..."}. Blank lines are skipped; a later line
// for the same prompt replaces an earlier one.
func LoadAnswers(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load answers: %w", err)
	}
	defer f.Close()
	answers, err := readAnswers(f)
	if err != nil {
		return nil, fmt.Errorf("load answers %s: %w", path, err)
	}
	return answers, nil
}

func readAnswers(r io.Reader) (map[string]string, error) {
	// bufio.Reader rather than Scanner: an answer line has no natural size limit.
	br := bufio.NewReader(r)
	answers := make(map[string]string)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("line %d: %w", lineNo, err)
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			var rec struct {
				Prompt *string `json:"prompt"`
				Answer *string `json:"answer"`
			}
			if jerr := json.Unmarshal(trimmed, &rec); jerr != nil {
				return nil, fmt.Errorf("line %d: %w", lineNo, jerr)
			}
			if rec.Prompt == nil || rec.Answer == nil {
				return nil, fmt.Errorf(`line %d: want {"prompt": "...", "answer": "..."}`, lineNo)
			}
			answers[*rec.Prompt] = *rec.Answer
		}
		if err != nil { // io.EOF after the last line
			return answers, nil
		}
	}
}

// adminConfig is the wire form of Config on /admin/config: lowerCamelCase
// names and Go duration strings, so a human can read and write it.
type adminConfig struct {
	Model         string    `json:"model"`
	TTFT          string    `json:"ttft"`
	ITL           string    `json:"itl"`
	Jitter        float64   `json:"jitter"`
	Tokens        int       `json:"tokens"`
	ErrorRate     float64   `json:"errorRate"`
	ErrorKind     ErrorKind `json:"errorKind"`
	Startup       string    `json:"startup"`
	Seed          int64     `json:"seed"`
	WrongRate     float64   `json:"wrongRate"`
	MalformedRate float64   `json:"malformedRate"`
	OutputScale   float64   `json:"outputScale"`
}

func toAdmin(c Config) adminConfig {
	return adminConfig{
		Model:         c.Model,
		TTFT:          c.TTFT.String(),
		ITL:           c.ITL.String(),
		Jitter:        c.Jitter,
		Tokens:        c.Tokens,
		ErrorRate:     c.ErrorRate,
		ErrorKind:     c.ErrorKind,
		Startup:       c.Startup.String(),
		Seed:          c.Seed,
		WrongRate:     c.WrongRate,
		MalformedRate: c.MalformedRate,
		OutputScale:   c.OutputScale,
	}
}

// mergePatch applies a partial admin JSON object onto c. It decodes field by
// field so that every error names the field, and it rejects unknown fields
// so that a typo ("errorrate") is not silently ignored.
func mergePatch(c Config, body []byte) (Config, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return c, fmt.Errorf("body must be a JSON object: %w", err)
	}
	if fields == nil {
		return c, errors.New("body must be a JSON object, got null")
	}
	dur := func(name string, raw json.RawMessage, dst *time.Duration) error {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return &fieldError{name, `want a duration string like "20ms"`}
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return &fieldError{name, fmt.Sprintf(`want a duration string like "20ms", got %q`, s)}
		}
		*dst = d
		return nil
	}
	num := func(name string, raw json.RawMessage, dst any) error {
		if err := json.Unmarshal(raw, dst); err != nil {
			want := "a number"
			switch dst.(type) {
			case *int, *int64:
				want = "an integer"
			}
			return &fieldError{name, fmt.Sprintf("want %s, got %s", want, raw)}
		}
		return nil
	}
	// Sorted iteration keeps the reported error stable when several fields are bad.
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		raw := fields[name]
		if string(raw) == "null" {
			return c, &fieldError{name, "must not be null"}
		}
		var err error
		switch name {
		case "model":
			if jerr := json.Unmarshal(raw, &c.Model); jerr != nil {
				err = &fieldError{name, "want a string"}
			}
		case "ttft":
			err = dur(name, raw, &c.TTFT)
		case "itl":
			err = dur(name, raw, &c.ITL)
		case "startup":
			err = dur(name, raw, &c.Startup)
		case "jitter":
			err = num(name, raw, &c.Jitter)
		case "tokens":
			err = num(name, raw, &c.Tokens)
		case "errorRate":
			err = num(name, raw, &c.ErrorRate)
		case "wrongRate":
			err = num(name, raw, &c.WrongRate)
		case "malformedRate":
			err = num(name, raw, &c.MalformedRate)
		case "outputScale":
			err = num(name, raw, &c.OutputScale)
		case "seed":
			err = num(name, raw, &c.Seed)
		case "errorKind":
			var s string
			if jerr := json.Unmarshal(raw, &s); jerr != nil {
				err = &fieldError{name, `want "500", "429" or "mixed"`}
			}
			c.ErrorKind = ErrorKind(s)
		default:
			err = &fieldError{name, "unknown field"}
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

// cloneAnswers copies the caller's map so later mutation on either side
// cannot race with request handling.
func cloneAnswers(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	return maps.Clone(m)
}
