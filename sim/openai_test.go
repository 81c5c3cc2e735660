package sim_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"

	"github.com/modelslot/modelslot/sim"
)

// TestOpenAIClient proves the wire shapes against the official Go SDK, the
// client the gateway's users are most likely to point at modelslot.
func TestOpenAIClient(t *testing.T) {
	s, url := start(t, sim.Config{Model: "v2", Tokens: 5})
	client := openai.NewClient(
		option.WithBaseURL(url+"/v1/"),
		option.WithAPIKey("test"),
		option.WithMaxRetries(0),
	)
	ctx := t.Context()

	t.Run("chat", func(t *testing.T) {
		c, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "v2",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there")},
		})
		if err != nil {
			t.Fatalf("chat: %v", err)
		}
		if got := c.Choices[0].Message.Content; !strings.HasPrefix(got, "v2 says hello") || c.Usage.CompletionTokens != 5 || c.Usage.PromptTokens != 2 {
			t.Errorf("chat = %q, usage %+v", got, c.Usage)
		}
	})

	t.Run("chat stream", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:         "v2",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			acc.AddChunk(stream.Current())
			chunks++
		}
		if err := stream.Err(); err != nil {
			t.Fatalf("stream: %v", err)
		}
		// role + 5 tokens + finish + usage
		if chunks != 8 {
			t.Errorf("got %d chunks, want 8", chunks)
		}
		if got := acc.Choices[0].Message.Content; !strings.HasPrefix(got, "v2 says hello") || acc.Usage.CompletionTokens != 5 || acc.Choices[0].FinishReason != "stop" {
			t.Errorf("accumulated %q, finish %q, usage %+v", got, acc.Choices[0].FinishReason, acc.Usage)
		}
	})

	t.Run("completions", func(t *testing.T) {
		c, err := client.Completions.New(ctx, openai.CompletionNewParams{
			Model:     "v2",
			Prompt:    openai.CompletionNewParamsPromptUnion{OfString: openai.String("once")},
			MaxTokens: openai.Int(2),
		})
		if err != nil {
			t.Fatalf("completions: %v", err)
		}
		if got := c.Choices[0].Text; got != "v2 says" || c.Choices[0].FinishReason != "length" {
			t.Errorf("text %q finish %q, want %q length", got, c.Choices[0].FinishReason, "v2 says")
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
			e, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
				Model:          "v2",
				Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b c"}},
				EncodingFormat: format,
			})
			if err != nil {
				t.Fatalf("embeddings %s: %v", format, err)
			}
			if len(e.Data) != 2 || len(e.Data[0].Embedding) != 8 || e.Usage.PromptTokens != 3 {
				t.Errorf("embeddings %s = %d vectors of %d, usage %+v", format, len(e.Data), len(e.Data[0].Embedding), e.Usage)
			}
		}
	})

	t.Run("responses", func(t *testing.T) {
		r, err := client.Responses.New(ctx, responses.ResponseNewParams{
			Model: "v2",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hi")},
		})
		if err != nil {
			t.Fatalf("responses: %v", err)
		}
		if got := r.OutputText(); !strings.HasPrefix(got, "v2 says hello") || r.Usage.OutputTokens != 5 {
			t.Errorf("responses text %q, usage %+v", got, r.Usage)
		}
	})

	t.Run("error", func(t *testing.T) {
		if err := s.SetConfig(sim.Config{Model: "v2", ErrorRate: 1, ErrorKind: sim.Error429}); err != nil {
			t.Fatal(err)
		}
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "v2",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Type != "rate_limit_error" {
			t.Errorf("error = %v, want a 429 rate_limit_error", err)
		}
	})
}
