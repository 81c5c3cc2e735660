package evals_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelslot/modelslot/evals"
)

// reply is how the fake server answers one prompt.
type reply struct {
	text   string
	status int
	delay  time.Duration
	tokens int // usage.completion_tokens; 0: no usage object
}

// fakeOpenAI answers chat completions by the last message's content.
type fakeOpenAI struct {
	replies map[string]reply
	mu      sync.Mutex
	bodies  []map[string]any
}

func serve(t *testing.T, replies map[string]reply) (*fakeOpenAI, string) {
	t.Helper()
	f := &fakeOpenAI{replies: replies}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeOpenAI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" {
		http.NotFound(w, r)
		return
	}
	data, _ := io.ReadAll(r.Body)
	var body struct {
		Messages []struct{ Role, Content string }
	}
	var raw map[string]any
	json.Unmarshal(data, &raw)
	if err := json.Unmarshal(data, &body); err != nil || len(body.Messages) == 0 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, raw)
	f.mu.Unlock()
	last := body.Messages[len(body.Messages)-1].Content
	rep, ok := f.replies[last]
	if !ok {
		// The judge: score by a marker in the answer being graded.
		rep = reply{text: "I cannot grade this."}
		for marker, score := range map[string]string{"GOOD": "Score: 9. Clear and right.", "BAD": "3/10, wrong", "WEIRD": "11"} {
			if strings.Contains(last, "Answer to grade:\n"+marker) {
				rep = reply{text: score}
			}
		}
	}
	time.Sleep(rep.delay)
	if rep.status != 0 {
		http.Error(w, `{"error":{"message":"overloaded"}}`, rep.status)
		return
	}
	resp := map[string]any{"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": rep.text}}}}
	if rep.tokens > 0 {
		resp["usage"] = map[string]any{"completion_tokens": rep.tokens}
	}
	json.NewEncoder(w).Encode(resp)
}

func writeGolden(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "golden.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadGoldenSet(t *testing.T) {
	path := writeGolden(t,
		`{"id": "a", "prompt": "p", "max_tokens": 20, "temperature": 0, "checks": [{"type": "exact", "value": "x"}, {"type": "contains", "value": "y"}, {"type": "regex", "value": "^z+$"}]}`,
		``,
		`{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "checks": [{"type": "json"}, {"type": "json_schema", "schema": {"type": "object"}}, {"type": "max_tokens", "value": 5}, {"type": "max_latency", "value": "2s"}]}`,
	)
	cases, err := evals.LoadGoldenSet(path)
	if err != nil {
		t.Fatalf("LoadGoldenSet: %v", err)
	}
	if len(cases) != 2 {
		t.Fatalf("got %d cases, want 2", len(cases))
	}
	a, b := cases[0], cases[1]
	if a.ID != "a" || a.MaxTokens != 20 || a.Temperature == nil || *a.Temperature != 0 || len(a.Checks) != 3 || a.Line != 1 {
		t.Errorf("case a: %+v", a)
	}
	if b.ID != "line-3" || len(b.Messages) != 2 || len(b.Checks) != 4 {
		t.Errorf("case b: %+v", b)
	}
	if c := b.Checks[2]; c.Type != evals.CheckMaxTokens || c.MaxTokens != 5 {
		t.Errorf("max_tokens check: %+v", c)
	}
	if c := b.Checks[3]; c.MaxLatency != 2*time.Second {
		t.Errorf("max_latency check: %+v", c)
	}
}

func TestLoadGoldenSetErrors(t *testing.T) {
	ok := `{"id": "ok", "prompt": "p"}`
	tests := []struct {
		name, line, want string
	}{
		{"unknown field", `{"id": "x", "promt": "p"}`, `:2: json: unknown field "promt"`},
		{"unknown check type", `{"prompt": "p", "checks": [{"type": "exact", "value": "a"}, {"type": "fuzzy"}]}`, `:2: "checks"[1]: "type": unknown check type "fuzzy"`},
		{"missing check type", `{"prompt": "p", "checks": [{"value": "a"}]}`, `"checks"[0]: "type" is required`},
		{"unknown check field", `{"prompt": "p", "checks": [{"type": "json", "values": 1}]}`, `"checks"[0]: json: unknown field "values"`},
		{"no prompt", `{"id": "x", "checks": []}`, `:2: set "prompt" or "messages"`},
		{"prompt and messages", `{"prompt": "p", "messages": [{"role": "user", "content": "c"}]}`, `not both`},
		{"message without role", `{"messages": [{"content": "c"}]}`, `"messages"[0]: "role" is required`},
		{"duplicate id", `{"id": "ok", "prompt": "q"}`, `:2: "id": "ok" is already used on line 1`},
		{"bad regex", `{"prompt": "p", "checks": [{"type": "regex", "value": "(["}]}`, `"checks"[0]: "value": error parsing regexp`},
		{"value not a string", `{"prompt": "p", "checks": [{"type": "contains", "value": 3}]}`, `"value": check "contains" wants a string`},
		{"missing value", `{"prompt": "p", "checks": [{"type": "exact"}]}`, `check "exact" needs a "value"`},
		{"json takes no value", `{"prompt": "p", "checks": [{"type": "json", "value": "x"}]}`, `check "json" takes no value`},
		{"schema missing", `{"prompt": "p", "checks": [{"type": "json_schema"}]}`, `check "json_schema" needs a "schema"`},
		{"schema invalid", `{"prompt": "p", "checks": [{"type": "json_schema", "schema": {"type": 5}}]}`, `"checks"[0]: "schema":`},
		{"schema on other check", `{"prompt": "p", "checks": [{"type": "json", "schema": {}}]}`, `"schema": only check "json_schema"`},
		{"max_tokens not int", `{"prompt": "p", "checks": [{"type": "max_tokens", "value": "ten"}]}`, `check "max_tokens" wants a positive integer`},
		{"max_latency bad", `{"prompt": "p", "checks": [{"type": "max_latency", "value": "soon"}]}`, `check "max_latency" wants a positive duration`},
		{"max_tokens field", `{"prompt": "p", "max_tokens": 0}`, `"max_tokens": must be positive`},
		{"temperature type", `{"prompt": "p", "temperature": "hot"}`, `"temperature": want a float64`},
		{"not json", `{"prompt": `, `:2:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := evals.LoadGoldenSet(writeGolden(t, ok, tt.line))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v\nwant one containing %s", err, tt.want)
			}
		})
	}
	if _, err := evals.LoadGoldenSet(writeGolden(t, "")); err == nil || !strings.Contains(err.Error(), "no cases") {
		t.Errorf("empty file: got %v", err)
	}
}

func TestChecks(t *testing.T) {
	tests := []struct {
		name   string
		reply  reply
		check  string
		pass   bool
		reason string
	}{
		{"exact pass", reply{text: "  Paris\n"}, `{"type": "exact", "value": "Paris"}`, true, ""},
		{"exact fail", reply{text: "Paris, France"}, `{"type": "exact", "value": "Paris"}`, false, `is not exactly "Paris"`},
		{"contains pass", reply{text: "It is Paris."}, `{"type": "contains", "value": "Paris"}`, true, ""},
		{"contains fail", reply{text: "It is Lyon."}, `{"type": "contains", "value": "Paris"}`, false, `does not contain "Paris"`},
		{"regex pass", reply{text: "Total: 42"}, `{"type": "regex", "value": "\\d+$"}`, true, ""},
		{"regex fail", reply{text: "Total: none"}, `{"type": "regex", "value": "\\d+$"}`, false, `does not match /\d+$/`},
		{"json pass", reply{text: `{"a": 1}`}, `{"type": "json"}`, true, ""},
		{"json fenced", reply{text: "```json\n[1, 2]\n```"}, `{"type": "json"}`, true, ""},
		{"json fail", reply{text: `{"a": 1`}, `{"type": "json"}`, false, "not JSON"},
		{"schema pass", reply{text: `{"name": "x", "age": 3}`}, `{"type": "json_schema", "schema": {"type": "object", "required": ["name"], "properties": {"age": {"type": "integer"}}}}`, true, ""},
		{"schema fail", reply{text: `{"age": "3"}`}, `{"type": "json_schema", "schema": {"type": "object", "required": ["name"], "properties": {"age": {"type": "integer"}}}}`, false, "does not match the schema"},
		{"schema not json", reply{text: `name: x`}, `{"type": "json_schema", "schema": {"type": "object"}}`, false, "not JSON"},
		{"max_tokens from usage pass", reply{text: "a b c d e f", tokens: 4}, `{"type": "max_tokens", "value": 4}`, true, ""},
		{"max_tokens from usage fail", reply{text: "a", tokens: 5}, `{"type": "max_tokens", "value": 4}`, false, "5 output tokens, more than 4"},
		{"max_tokens from words", reply{text: "a b c d e"}, `{"type": "max_tokens", "value": 4}`, false, "5 output tokens"},
		{"max_latency pass", reply{text: "ok"}, `{"type": "max_latency", "value": "1m"}`, true, ""},
		{"max_latency fail", reply{text: "ok", delay: 60 * time.Millisecond}, `{"type": "max_latency", "value": "50ms"}`, false, "more than 50ms"},
		{"request fails", reply{status: 503}, `{"type": "contains", "value": "x"}`, false, "HTTP 503"},
	}
	replies := map[string]reply{}
	var lines []string
	for i, tt := range tests {
		prompt := fmt.Sprintf("prompt %d", i)
		replies[prompt] = tt.reply
		lines = append(lines, fmt.Sprintf(`{"id": %q, "prompt": %q, "checks": [%s]}`, tt.name, prompt, tt.check))
	}
	cases, err := evals.LoadGoldenSet(writeGolden(t, lines...))
	if err != nil {
		t.Fatal(err)
	}
	_, url := serve(t, replies)
	res, err := evals.Run(context.Background(), evals.Config{URL: url}, cases)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	passed := 0
	for i, tt := range tests {
		got := res.Cases[i]
		if got.ID != tt.name {
			t.Fatalf("case %d is %q, want %q: results out of order", i, got.ID, tt.name)
		}
		if got.Pass != tt.pass {
			t.Errorf("%s: got pass %v (%v), want %v", tt.name, got.Pass, got.Failures, tt.pass)
		}
		if tt.pass {
			passed++
			continue
		}
		if len(got.Failures) != 1 || !strings.Contains(got.Failures[0].Reason, tt.reason) {
			t.Errorf("%s: got failures %v, want one with %q", tt.name, got.Failures, tt.reason)
		}
	}
	if res.Passed != passed || res.Total != len(tests) || res.PassRate != float64(passed)/float64(len(tests)) {
		t.Errorf("got %d/%d passed (%v), want %d/%d", res.Passed, res.Total, res.PassRate, passed, len(tests))
	}
	if want := evals.Wilson(passed, len(tests)); res.PassRateCI != want {
		t.Errorf("got CI %v, want %v", res.PassRateCI, want)
	}
}

func TestRequestSettings(t *testing.T) {
	cases, err := evals.LoadGoldenSet(writeGolden(t,
		`{"id": "a", "prompt": "hi", "max_tokens": 12, "temperature": 0.5}`,
		`{"id": "b", "prompt": "hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	f, url := serve(t, map[string]reply{"hi": {text: "hello"}})
	if _, err := evals.Run(context.Background(), evals.Config{URL: url, Model: "m", Concurrency: 1}, cases); err != nil {
		t.Fatal(err)
	}
	if len(f.bodies) != 2 {
		t.Fatalf("got %d requests", len(f.bodies))
	}
	a, b := f.bodies[0], f.bodies[1]
	if a["model"] != "m" || a["max_tokens"] != 12.0 || a["temperature"] != 0.5 {
		t.Errorf("case a sent %v", a)
	}
	if _, ok := b["max_tokens"]; ok {
		t.Errorf("case b sent max_tokens: %v", b)
	}
	if _, ok := b["temperature"]; ok {
		t.Errorf("case b sent temperature: %v", b)
	}
}

func TestJudge(t *testing.T) {
	cases, err := evals.LoadGoldenSet(writeGolden(t,
		`{"id": "good", "prompt": "q1"}`,
		`{"id": "bad", "prompt": "q2"}`,
		`{"id": "no-score", "prompt": "q3"}`,
		`{"id": "out-of-range", "prompt": "q4"}`,
		`{"id": "own-rubric", "prompt": "q5", "rubric": "Must be GOOD.", "checks": [{"type": "contains", "value": "nope"}]}`,
	))
	if err != nil {
		t.Fatal(err)
	}
	_, url := serve(t, map[string]reply{"q1": {text: "GOOD answer"}, "q2": {text: "BAD answer"}, "q3": {text: "meh"}, "q4": {text: "WEIRD"}, "q5": {text: "GOOD too"}})
	judge, judgeURL := serve(t, nil)
	res, err := evals.Run(context.Background(), evals.Config{URL: url, Judge: &evals.JudgeConfig{
		URL: judgeURL, Model: "judge-1", Rubric: "The answer must be correct.",
	}}, cases)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		pass   bool
		score  int
		reason string
	}{
		{true, 9, ""},
		{false, 3, "judge scored 3, below the threshold 7"},
		{false, 0, "judge gave no score"},
		{false, 0, "judge score 11 is not between 1 and 10"},
		{false, 9, `does not contain "nope"`},
	}
	for i, w := range want {
		got := res.Cases[i]
		if got.Pass != w.pass || got.JudgeScore != w.score {
			t.Errorf("%s: got pass %v score %d (%v), want %v %d", got.ID, got.Pass, got.JudgeScore, got.Failures, w.pass, w.score)
		}
		if w.reason != "" && (len(got.Failures) != 1 || !strings.Contains(got.Failures[0].Reason, w.reason)) {
			t.Errorf("%s: got failures %v, want %q", got.ID, got.Failures, w.reason)
		}
	}
	// The judge sees the rubric, the prompt and the answer.
	var sawOwnRubric bool
	for _, b := range judge.bodies {
		msgs, _ := json.Marshal(b["messages"])
		if b["model"] != "judge-1" || b["temperature"] != 0.0 {
			t.Errorf("judge request %v", b)
		}
		s := string(msgs)
		if strings.Contains(s, "q1") && !(strings.Contains(s, "The answer must be correct.") && strings.Contains(s, "GOOD answer")) {
			t.Errorf("judge request for q1 lacks rubric or answer: %s", s)
		}
		if strings.Contains(s, "Must be GOOD.") {
			sawOwnRubric = true
		}
	}
	if !sawOwnRubric {
		t.Error("the case's own rubric was not sent to the judge")
	}

	// A lower threshold lets the BAD answer pass.
	res, err = evals.Run(context.Background(), evals.Config{URL: url, Judge: &evals.JudgeConfig{
		URL: judgeURL, Rubric: "r", Threshold: 3}}, cases[1:2])
	if err != nil || !res.Cases[0].Pass {
		t.Errorf("threshold 3: got %v, %+v", err, res)
	}
}

func TestWilson(t *testing.T) {
	tests := []struct {
		k, n      int
		low, high float64
	}{
		{8, 10, 0.4902, 0.9433},
		{0, 10, 0, 0.2775},
		{10, 10, 0.7225, 1},
		{45, 50, 0.7864, 0.9565},
		{0, 0, 0, 1},
	}
	for _, tt := range tests {
		got := evals.Wilson(tt.k, tt.n)
		if math.Abs(got.Low-tt.low) > 5e-5 || math.Abs(got.High-tt.high) > 5e-5 {
			t.Errorf("Wilson(%d, %d) = [%.4f, %.4f], want [%.4f, %.4f]", tt.k, tt.n, got.Low, got.High, tt.low, tt.high)
		}
	}
}

func TestCompare(t *testing.T) {
	cases, err := evals.LoadGoldenSet(writeGolden(t,
		`{"id": "both", "prompt": "q1", "checks": [{"type": "contains", "value": "yes"}]}`,
		`{"id": "regressed", "prompt": "q2", "checks": [{"type": "contains", "value": "yes"}]}`,
		`{"id": "fixed", "prompt": "q3", "checks": [{"type": "contains", "value": "yes"}]}`,
		`{"id": "neither", "prompt": "q4", "checks": [{"type": "contains", "value": "yes"}]}`,
		`{"id": "regressed-too", "prompt": "q5", "checks": [{"type": "contains", "value": "yes"}]}`,
	))
	if err != nil {
		t.Fatal(err)
	}
	_, base := serve(t, map[string]reply{"q1": {text: "yes"}, "q2": {text: "yes"}, "q3": {text: "no"}, "q4": {text: "no"}, "q5": {text: "yes"}})
	_, cand := serve(t, map[string]reply{"q1": {text: "yes"}, "q2": {text: "no"}, "q3": {text: "yes"}, "q4": {text: "no"}, "q5": {status: 500}})
	cmp, err := evals.Compare(context.Background(), evals.Config{URL: base}, evals.Config{URL: cand}, cases)
	if err != nil {
		t.Fatal(err)
	}
	if cmp.Base.Passed != 3 || cmp.Candidate.Passed != 2 {
		t.Errorf("got passed %d and %d, want 3 and 2", cmp.Base.Passed, cmp.Candidate.Passed)
	}
	if math.Abs(cmp.Difference-(-0.2)) > 1e-12 {
		t.Errorf("got difference %v, want -0.2", cmp.Difference)
	}
	if ci := cmp.DifferenceCI; !(ci.Low < cmp.Difference && cmp.Difference < ci.High && ci.Low >= -1 && ci.High <= 1) {
		t.Errorf("got CI %v around %v", ci, cmp.Difference)
	}
	// Two regressions and one fix: p = 2 * P(X <= 1), X ~ Bin(3, 1/2) = 1.
	if cmp.McNemarP != 1 {
		t.Errorf("got McNemar p %v, want 1", cmp.McNemarP)
	}
	var got []string
	for _, c := range cmp.Changed {
		got = append(got, c.ID+" "+c.Direction)
	}
	if want := "regressed pass->fail,fixed fail->pass,regressed-too pass->fail"; strings.Join(got, ",") != want {
		t.Errorf("got changed %v, want %s", got, want)
	}
	if f := cmp.Changed[2].Failures; len(f) != 1 || f[0].Check != evals.CheckRequest {
		t.Errorf("regressed-too failures: %v", f)
	}
	var buf bytes.Buffer
	cmp.WriteTable(&buf)
	for _, want := range []string{"Base:", "Candidate:", "Difference:", "-20.0 points", "regressed", "pass->fail", "fail->pass"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table has no %q:\n%s", want, buf.String())
		}
	}
	data, err := json.Marshal(cmp)
	if err != nil {
		t.Fatal(err)
	}
	var shape map[string]any
	json.Unmarshal(data, &shape)
	for _, key := range []string{"base", "candidate", "difference", "difference_ci95", "mcnemar_p", "changed"} {
		if _, ok := shape[key]; !ok {
			t.Errorf("JSON has no %q: %s", key, data)
		}
	}
	c0 := shape["base"].(map[string]any)["cases"].([]any)[0].(map[string]any)
	for _, key := range []string{"id", "pass", "answer", "latency_ms", "output_tokens"} {
		if _, ok := c0[key]; !ok {
			t.Errorf("case JSON has no %q: %v", key, c0)
		}
	}
}

func TestInvalidConfig(t *testing.T) {
	cases := []evals.Case{{ID: "a", Prompt: "p"}}
	for _, cfg := range []evals.Config{
		{},
		{URL: "localhost:8080"},
		{URL: "http://x", Concurrency: -1},
		{URL: "http://x", Judge: &evals.JudgeConfig{URL: "nope"}},
		{URL: "http://x", Judge: &evals.JudgeConfig{URL: "http://j", Threshold: 11, Rubric: "r"}},
		{URL: "http://x", Judge: &evals.JudgeConfig{URL: "http://j"}}, // no rubric
	} {
		if _, err := evals.Run(context.Background(), cfg, cases); !errors.Is(err, evals.ErrInvalidConfig) {
			t.Errorf("%+v: got %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestResultTable(t *testing.T) {
	cases, _ := evals.LoadGoldenSet(writeGolden(t, `{"id": "only", "prompt": "q", "checks": [{"type": "exact", "value": "a"}]}`))
	_, url := serve(t, map[string]reply{"q": {text: "b"}})
	res, err := evals.Run(context.Background(), evals.Config{URL: url}, cases)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	res.WriteTable(&buf)
	for _, want := range []string{"only", "FAIL", `exact: answer "b" is not exactly "a"`, "pass rate 0.0% (0/1)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table has no %q:\n%s", want, buf.String())
		}
	}
}
