package evals

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// answer is what a deployment returned for one case.
type answer struct {
	Text         string
	Latency      time.Duration
	OutputTokens int
}

// evaluate returns "" when the answer passes c, else the reason it fails.
func (c Check) evaluate(a answer) string {
	switch c.Type {
	case CheckExact:
		if strings.TrimSpace(a.Text) != strings.TrimSpace(c.Value) {
			return fmt.Sprintf("answer %s is not exactly %q", quote(a.Text), c.Value)
		}
	case CheckContains:
		if !strings.Contains(a.Text, c.Value) {
			return fmt.Sprintf("answer does not contain %q", c.Value)
		}
	case CheckRegex:
		if !c.re.MatchString(a.Text) {
			return fmt.Sprintf("answer does not match /%s/", c.Value)
		}
	case CheckJSON:
		if !json.Valid([]byte(unfence(a.Text))) {
			return "answer is not JSON"
		}
	case CheckJSONSchema:
		doc, err := jsonschema.UnmarshalJSON(strings.NewReader(unfence(a.Text)))
		if err != nil {
			return "answer is not JSON"
		}
		if err := c.schema.Validate(doc); err != nil {
			return "answer does not match the schema: " + oneLine(err.Error())
		}
	case CheckMaxTokens:
		if a.OutputTokens > c.MaxTokens {
			return fmt.Sprintf("answer has %d output tokens, more than %d", a.OutputTokens, c.MaxTokens)
		}
	case CheckMaxLatency:
		if a.Latency > c.MaxLatency {
			return fmt.Sprintf("answer took %s, more than %s", a.Latency.Round(time.Millisecond), c.MaxLatency)
		}
	}
	return ""
}

// unfence returns s trimmed and without a surrounding Markdown code
// fence (``` or ```json), which models often put around JSON.
func unfence(s string) string {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "```") || !strings.HasSuffix(s, "```") || len(s) < 6 {
		return s
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "```"), "```")
	if i := strings.IndexByte(s, '\n'); i >= 0 && !strings.ContainsAny(s[:i], "{[\"") {
		s = s[i+1:] // the language tag
	}
	return strings.TrimSpace(s)
}

func quote(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
