// Package evals checks a model deployment against a golden set: prompts
// with expected properties of the answers (and optionally an LLM judge),
// and reports pass rates with confidence intervals, alone or compared.
package evals

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Case is one golden-set entry.
type Case struct {
	// ID names the case; default "line-N" for the case on line N.
	ID string `json:"id"`
	// Prompt (sent as one user message) or Messages is the input.
	Prompt   string    `json:"prompt,omitempty"`
	Messages []Message `json:"messages,omitempty"`
	// MaxTokens and Temperature are sent with the request when set.
	MaxTokens   int      `json:"max_tokens,omitempty"`
	Temperature *float64 `json:"temperature,omitempty"`
	// Rubric, when set, replaces the judge's rubric for this case.
	Rubric string  `json:"rubric,omitempty"`
	Checks []Check `json:"checks"`
	// Line is the case's line in its file.
	Line int `json:"-"`
}

// Check types.
const (
	CheckExact      = "exact"       // the answer, trimmed, equals Value, trimmed
	CheckContains   = "contains"    // the answer contains Value
	CheckRegex      = "regex"       // the answer matches the regular expression Value (Go syntax)
	CheckJSON       = "json"        // the answer is JSON (a ```json fence around it is allowed)
	CheckJSONSchema = "json_schema" // the answer is JSON valid against Schema
	CheckMaxTokens  = "max_tokens"  // the answer has at most MaxTokens output tokens
	CheckMaxLatency = "max_latency" // the request took at most MaxLatency
	// CheckJudge is not written in golden sets: it is the judge's verdict
	// when a judge is configured, and "request" is a failed request.
	CheckJudge   = "judge"
	CheckRequest = "request"
)

var checkTypes = []string{CheckExact, CheckContains, CheckRegex, CheckJSON, CheckJSONSchema, CheckMaxTokens, CheckMaxLatency}

// Check is one expectation about an answer.
type Check struct {
	Type       string
	Value      string          // exact, contains, regex
	Schema     json.RawMessage // json_schema
	MaxTokens  int             // max_tokens
	MaxLatency time.Duration   // max_latency

	re     *regexp.Regexp
	schema *jsonschema.Schema
}

// MarshalJSON writes the check as it is written in a golden set.
func (c Check) MarshalJSON() ([]byte, error) {
	out := map[string]any{"type": c.Type}
	switch c.Type {
	case CheckExact, CheckContains, CheckRegex:
		out["value"] = c.Value
	case CheckJSONSchema:
		out["schema"] = c.Schema
	case CheckMaxTokens:
		out["value"] = c.MaxTokens
	case CheckMaxLatency:
		out["value"] = c.MaxLatency.String()
	}
	return json.Marshal(out)
}

// LoadGoldenSet reads a golden set: a JSONL file with one case per line.
// Blank lines are skipped. Unknown fields and unknown check types are
// errors; errors name the file, the line and the field.
func LoadGoldenSet(path string) ([]Case, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load golden set: %w", err)
	}
	defer f.Close()
	var cases []Case
	ids := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		c, err := parseCase(b, line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if first, dup := ids[c.ID]; dup {
			return nil, fmt.Errorf("%s:%d: \"id\": %q is already used on line %d", path, line, c.ID, first)
		}
		ids[c.ID] = line
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("load golden set %s: %w", path, err)
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("load golden set %s: no cases in file", path)
	}
	return cases, nil
}

type rawCase struct {
	ID          string            `json:"id"`
	Prompt      string            `json:"prompt"`
	Messages    []Message         `json:"messages"`
	MaxTokens   *int              `json:"max_tokens"`
	Temperature *float64          `json:"temperature"`
	Rubric      string            `json:"rubric"`
	Checks      []json.RawMessage `json:"checks"`
}

type rawCheck struct {
	Type   string          `json:"type"`
	Value  json.RawMessage `json:"value"`
	Schema json.RawMessage `json:"schema"`
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) && ute.Field != "" {
			return fmt.Errorf("%q: want a %s, got a JSON %s", ute.Field, ute.Type, ute.Value)
		}
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value on the line")
	}
	return nil
}

func parseCase(b []byte, line int) (Case, error) {
	var r rawCase
	if err := strictDecode(b, &r); err != nil {
		return Case{}, err
	}
	c := Case{ID: r.ID, Prompt: r.Prompt, Messages: r.Messages, Temperature: r.Temperature, Rubric: r.Rubric, Line: line}
	if c.ID == "" {
		c.ID = fmt.Sprintf("line-%d", line)
	}
	switch {
	case r.Prompt == "" && len(r.Messages) == 0:
		return c, errors.New(`set "prompt" or "messages"`)
	case r.Prompt != "" && len(r.Messages) > 0:
		return c, errors.New(`set "prompt" or "messages", not both`)
	}
	for i, m := range r.Messages {
		if m.Role == "" {
			return c, fmt.Errorf(`"messages"[%d]: "role" is required`, i)
		}
	}
	if r.MaxTokens != nil {
		if *r.MaxTokens <= 0 {
			return c, fmt.Errorf(`"max_tokens": must be positive, got %d`, *r.MaxTokens)
		}
		c.MaxTokens = *r.MaxTokens
	}
	if r.Temperature != nil && (*r.Temperature < 0 || *r.Temperature > 2) {
		return c, fmt.Errorf(`"temperature": must be between 0 and 2, got %v`, *r.Temperature)
	}
	for i, raw := range r.Checks {
		chk, err := parseCheck(raw)
		if err != nil {
			return c, fmt.Errorf(`"checks"[%d]: %w`, i, err)
		}
		c.Checks = append(c.Checks, chk)
	}
	return c, nil
}

func parseCheck(b []byte) (Check, error) {
	var r rawCheck
	if err := strictDecode(b, &r); err != nil {
		return Check{}, err
	}
	c := Check{Type: r.Type}
	str := func() (string, error) {
		var s string
		if len(r.Value) == 0 {
			return "", fmt.Errorf(`check %q needs a "value"`, r.Type)
		}
		if err := json.Unmarshal(r.Value, &s); err != nil {
			return "", fmt.Errorf(`"value": check %q wants a string, got %s`, r.Type, r.Value)
		}
		return s, nil
	}
	noValue := func() error {
		if len(r.Value) > 0 {
			return fmt.Errorf(`"value": check %q takes no value`, r.Type)
		}
		return nil
	}
	if len(r.Schema) > 0 && r.Type != CheckJSONSchema {
		return c, fmt.Errorf(`"schema": only check %q takes a schema`, CheckJSONSchema)
	}
	var err error
	switch r.Type {
	case "":
		return c, errors.New(`"type" is required (one of ` + strings.Join(checkTypes, ", ") + ")")
	case CheckExact, CheckContains:
		c.Value, err = str()
	case CheckRegex:
		if c.Value, err = str(); err == nil {
			if c.re, err = regexp.Compile(c.Value); err != nil {
				err = fmt.Errorf(`"value": %w`, err)
			}
		}
	case CheckJSON:
		err = noValue()
	case CheckJSONSchema:
		if err = noValue(); err != nil {
			return c, err
		}
		if len(r.Schema) == 0 {
			return c, fmt.Errorf(`check %q needs a "schema"`, r.Type)
		}
		c.Schema = r.Schema
		c.schema, err = compileSchema(r.Schema)
	case CheckMaxTokens:
		if len(r.Value) == 0 {
			return c, fmt.Errorf(`check %q needs a "value"`, r.Type)
		}
		if err := json.Unmarshal(r.Value, &c.MaxTokens); err != nil || c.MaxTokens <= 0 {
			return c, fmt.Errorf(`"value": check %q wants a positive integer, got %s`, r.Type, r.Value)
		}
	case CheckMaxLatency:
		var s string
		if s, err = str(); err == nil {
			c.MaxLatency, err = time.ParseDuration(s)
			if err != nil || c.MaxLatency <= 0 {
				err = fmt.Errorf(`"value": check %q wants a positive duration such as "2s", got %q`, r.Type, s)
			}
		}
	default:
		return c, fmt.Errorf(`"type": unknown check type %q (want one of %s)`, r.Type, strings.Join(checkTypes, ", "))
	}
	return c, err
}

func compileSchema(raw json.RawMessage) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf(`"schema": %w`, err)
	}
	// Without a loader, the compiler resolves no remote or file $ref.
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	const loc = "golden://schema.json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf(`"schema": %w`, err)
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf(`"schema": %w`, err)
	}
	return s, nil
}
