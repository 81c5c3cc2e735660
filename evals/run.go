package evals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Config says where and how to run a golden set.
type Config struct {
	// URL is the base URL of an OpenAI-compatible server; requests go to
	// URL + "/v1/chat/completions".
	URL string
	// Model is sent as the model field. Default "default".
	Model string
	// Headers are added to every request (e.g. Authorization).
	Headers map[string]string
	// Concurrency is the number of cases run at once. Default 4.
	Concurrency int
	// Judge, when set, grades every answer too.
	Judge *JudgeConfig
	// Client sends the requests. Default http.DefaultClient.
	Client *http.Client
	// Timeout bounds each request (and each judge call). Default 60s.
	Timeout time.Duration
}

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("invalid eval configuration")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Validate reports the first problem with the configuration.
func (c Config) Validate() error {
	if _, err := chatURL(c.URL); err != nil {
		return err
	}
	switch {
	case c.Concurrency < 0:
		return invalid("concurrency must not be negative, got %d", c.Concurrency)
	case c.Timeout < 0:
		return invalid("timeout must not be negative, got %s", c.Timeout)
	}
	if c.Judge != nil {
		if err := c.Judge.validate(); err != nil {
			return err
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Model == "" {
		c.Model = "default"
	}
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.Timeout == 0 {
		c.Timeout = 60 * time.Second
	}
	if c.Client == nil {
		c.Client = http.DefaultClient
	}
	if c.Judge != nil {
		j := *c.Judge
		if j.Model == "" {
			j.Model = "default"
		}
		if j.Threshold == 0 {
			j.Threshold = 7
		}
		c.Judge = &j
	}
	return c
}

func chatURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", invalid("URL %q must be an http:// or https:// base URL such as http://127.0.0.1:8080", base)
	}
	return strings.TrimRight(base, "/") + "/v1/chat/completions", nil
}

// Result is the outcome of a golden set against one deployment.
type Result struct {
	URL   string `json:"url"`
	Model string `json:"model"`
	// Cases are in golden-set order.
	Cases  []CaseResult `json:"cases"`
	Total  int          `json:"total"`
	Passed int          `json:"passed"`
	// PassRate is Passed / Total, with its 95% Wilson score interval.
	PassRate   float64  `json:"pass_rate"`
	PassRateCI Interval `json:"pass_rate_ci95"`
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	ID   string `json:"id"`
	Pass bool   `json:"pass"`
	// Failures lists the checks that failed, with reasons. A failed
	// request is one failure of check "request"; its other checks are
	// not evaluated.
	Failures     []Failure     `json:"failures,omitempty"`
	Answer       string        `json:"answer"`
	Latency      time.Duration `json:"-"`
	OutputTokens int           `json:"output_tokens"`
	// JudgeScore is the judge's score, 0 when there was no judge or it
	// gave none.
	JudgeScore int `json:"judge_score,omitempty"`
}

// MarshalJSON adds latency_ms.
func (c CaseResult) MarshalJSON() ([]byte, error) {
	type plain CaseResult
	return json.Marshal(struct {
		plain
		LatencyMS float64 `json:"latency_ms"`
	}{plain(c), float64(c.Latency) / float64(time.Millisecond)})
}

// Failure is one failed check.
type Failure struct {
	Check  string `json:"check"`
	Reason string `json:"reason"`
}

// Run runs every case against cfg's deployment. A failed request fails
// its case; Run itself fails only for an invalid configuration or when
// ctx ends.
func Run(ctx context.Context, cfg Config, cases []Case) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Judge != nil {
		for _, c := range cases {
			if c.Rubric == "" && cfg.Judge.Rubric == "" {
				return nil, invalid("case %q has no rubric and the judge has none", c.ID)
			}
		}
	}
	endpoint, _ := chatURL(cfg.URL)
	res := &Result{URL: cfg.URL, Model: cfg.Model, Cases: make([]CaseResult, len(cases)), Total: len(cases)}
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(cfg.Concurrency, max(len(cases), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				res.Cases[i] = runCase(ctx, &cfg, endpoint, cases[i])
			}
		}()
	}
feed:
	for i := range cases {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("eval %s: %w", cfg.URL, err)
	}
	for _, c := range res.Cases {
		if c.Pass {
			res.Passed++
		}
	}
	if res.Total > 0 {
		res.PassRate = float64(res.Passed) / float64(res.Total)
	}
	res.PassRateCI = Wilson(res.Passed, res.Total)
	return res, nil
}

func runCase(ctx context.Context, cfg *Config, endpoint string, c Case) CaseResult {
	out := CaseResult{ID: c.ID}
	msgs := c.Messages
	if c.Prompt != "" {
		msgs = []Message{{Role: "user", Content: c.Prompt}}
	}
	req := chatRequest{Model: cfg.Model, Messages: msgs, MaxTokens: c.MaxTokens, Temperature: c.Temperature}
	start := time.Now()
	resp, err := complete(ctx, cfg.Client, endpoint, cfg.Headers, cfg.Timeout, req)
	out.Latency = time.Since(start)
	if err != nil {
		out.Failures = []Failure{{Check: CheckRequest, Reason: err.Error()}}
		return out
	}
	out.Answer, out.OutputTokens = resp.text, resp.outputTokens
	a := answer{Text: resp.text, Latency: out.Latency, OutputTokens: resp.outputTokens}
	for _, chk := range c.Checks {
		if reason := chk.evaluate(a); reason != "" {
			out.Failures = append(out.Failures, Failure{Check: chk.Type, Reason: reason})
		}
	}
	if cfg.Judge != nil {
		score, err := cfg.Judge.grade(ctx, cfg.Client, cfg.Timeout, c, msgs, resp.text)
		out.JudgeScore = score
		switch {
		case err != nil:
			out.Failures = append(out.Failures, Failure{Check: CheckJudge, Reason: err.Error()})
		case score < cfg.Judge.Threshold:
			out.Failures = append(out.Failures, Failure{Check: CheckJudge,
				Reason: fmt.Sprintf("judge scored %d, below the threshold %d", score, cfg.Judge.Threshold)})
		}
	}
	out.Pass = len(out.Failures) == 0
	return out
}

type chatRequest struct {
	Model       string    `json:"model"`
	Messages    []Message `json:"messages"`
	MaxTokens   int       `json:"max_tokens,omitempty"`
	Temperature *float64  `json:"temperature,omitempty"`
}

type chatResponse struct {
	text         string
	outputTokens int
}

// complete sends one non-streaming chat completion. Its errors are
// written for the report: they say what went wrong without internals.
func complete(ctx context.Context, client *http.Client, endpoint string, headers map[string]string, timeout time.Duration, body chatRequest) (chatResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	data, err := json.Marshal(body)
	if err != nil {
		return chatResponse{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(data))
	if err != nil {
		return chatResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return chatResponse{}, fmt.Errorf("no answer within %s", timeout)
		}
		return chatResponse{}, fmt.Errorf("request failed: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return chatResponse{}, fmt.Errorf("no answer within %s", timeout)
		}
		return chatResponse{}, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return chatResponse{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, quote(strings.TrimSpace(string(raw))))
	}
	var out struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage *struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Choices) == 0 {
		return chatResponse{}, errors.New("the response is not a chat completion")
	}
	r := chatResponse{text: out.Choices[0].Message.Content}
	if out.Usage != nil {
		r.outputTokens = out.Usage.CompletionTokens
	} else {
		// Without usage, words stand in for tokens.
		r.outputTokens = len(strings.Fields(r.text))
	}
	return r, nil
}
