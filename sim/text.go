package sim

import (
	"strconv"
	"unicode/utf8"
)

// Fixed answer texts for the staging-validation failure modes.
const (
	wrongAnswer     = "I don't know."
	malformedAnswer = `{"answer": "`
)

var (
	wrongTokens     = splitTokens(wrongAnswer)
	malformedTokens = splitTokens(malformedAnswer)
)

// vocab is the filler the generated text draws from. Each word carries its
// leading space so that concatenated deltas read as text.
var vocab = [...]string{
	" the", " model", " is", " ready", " to", " serve", " tokens", " from",
	" a", " simulated", " slot", " and", " every", " answer", " stays", " the",
	" same", " for", " one", " prompt", " while", " traffic", " shifts", " between",
	" versions", " of", " this", " deployment", " under", " test", " with", " care",
}

// answer is the text of one response as a sequence of tokens: a base (the
// canned, wrong, malformed or generated opening) followed by deterministic
// filler. It is a value, not a []string, so the zero-latency path builds no
// per-request token slice.
type answer struct {
	base []string
	seed uint64 // picks filler words; derived from the prompt
	n    int    // total tokens
}

func (a answer) token(i int) string {
	if i < len(a.base) {
		return a.base[i]
	}
	return vocab[mix(a.seed+uint64(i))%uint64(len(vocab))]
}

// appendText appends the JSON-escaped concatenation of all tokens, without quotes.
func (a answer) appendText(b []byte) []byte {
	for i := range a.n {
		b = appendEscaped(b, a.token(i))
	}
	return b
}

// splitTokens cuts text into word tokens, each keeping the whitespace before
// it, so that joining the tokens gives back the text exactly.
func splitTokens(s string) []string {
	// Trailing whitespace stays with the last word rather than forming a token.
	end := len(s)
	for end > 0 && isSpace(s[end-1]) {
		end--
	}
	var toks []string
	start := 0
	for i := 1; i < end; i++ {
		if isSpace(s[i]) && !isSpace(s[i-1]) {
			toks = append(toks, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		toks = append(toks, s[start:])
	}
	return toks
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// countWords is the simulator's stand-in for a tokenizer: prompt tokens are
// the number of whitespace-separated words.
func countWords(s string) int {
	n := 0
	inWord := false
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) {
			inWord = false
		} else if !inWord {
			inWord = true
			n++
		}
	}
	return n
}

// hashString is FNV-1a: stable across runs and processes, unlike maphash,
// so the same prompt yields the same text on every version of the simulator.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix is the splitmix64 finaliser: it spreads consecutive inputs.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// appendJSONString appends s as a quoted JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendEscaped(b, s)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends s JSON-escaped without quotes. Hand-written because
// responses are assembled by appending, and encoding/json would cost a
// reflection walk and an allocation per string on the zero-latency path.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			// Invalid UTF-8 would make the whole body invalid JSON.
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }
