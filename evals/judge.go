package evals

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// JudgeConfig configures an LLM judge: a chat model asked to score each
// answer from 1 to 10 against a rubric.
type JudgeConfig struct {
	// URL is the judge's OpenAI-compatible base URL.
	URL string
	// Model is sent as the judge request's model field. Default "default".
	Model string
	// Headers are added to every judge request.
	Headers map[string]string
	// Rubric says what a good answer is; a case's own rubric replaces it.
	Rubric string
	// Threshold is the lowest passing score. Default 7.
	Threshold int
}

func (j *JudgeConfig) validate() error {
	if _, err := chatURL(j.URL); err != nil {
		return fmt.Errorf("judge: %w", err)
	}
	if j.Threshold < 0 || j.Threshold > 10 {
		return invalid("judge threshold must be between 1 and 10, got %d", j.Threshold)
	}
	return nil
}

const judgeSystem = `You grade answers given by an AI assistant. Read the rubric, the conversation and the answer. ` +
	`Reply with the score first, a single integer from 1 (worst) to 10 (best), then one sentence of reason.`

var firstInt = regexp.MustCompile(`\d+`)

// grade asks the judge for a score; the score is the first integer in its
// reply and must be between 1 and 10.
func (j *JudgeConfig) grade(ctx context.Context, client *http.Client, timeout time.Duration, c Case, msgs []Message, answer string) (int, error) {
	rubric := c.Rubric
	if rubric == "" {
		rubric = j.Rubric
	}
	var conv strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&conv, "%s: %s\n", m.Role, m.Content)
	}
	user := fmt.Sprintf("Rubric:\n%s\n\nConversation:\n%s\nAnswer to grade:\n%s", rubric, conv.String(), answer)
	zero := 0.0
	endpoint, _ := chatURL(j.URL)
	resp, err := complete(ctx, client, endpoint, j.Headers, timeout, chatRequest{
		Model:       j.Model,
		Messages:    []Message{{Role: "system", Content: judgeSystem}, {Role: "user", Content: user}},
		MaxTokens:   64,
		Temperature: &zero,
	})
	if err != nil {
		return 0, fmt.Errorf("judge: %w", err)
	}
	m := firstInt.FindString(resp.text)
	if m == "" {
		return 0, fmt.Errorf("judge gave no score: %s", quote(resp.text))
	}
	score, err := strconv.Atoi(m)
	if err != nil || score < 1 || score > 10 {
		return 0, fmt.Errorf("judge score %s is not between 1 and 10", m)
	}
	return score, nil
}
