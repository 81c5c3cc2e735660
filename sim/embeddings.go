package sim

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
	"strconv"
)

// Embedding sizes: small by default, since the vectors mean nothing.
const (
	defaultDims = 8
	maxDims     = 4096
)

// embeddings answers POST /v1/embeddings with one deterministic unit vector
// per input, derived from the input text and the model id, so two versions
// of a deployment give different vectors for the same text.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, st *state, req *request) {
	dims := defaultDims
	if req.Dimensions != nil {
		if *req.Dimensions < 1 || *req.Dimensions > maxDims {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_value",
				"dimensions must be between 1 and "+strconv.Itoa(maxDims)+", got "+strconv.Itoa(*req.Dimensions))
			return
		}
		dims = *req.Dimensions
	}
	var asBase64 bool
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		asBase64 = true
	default:
		writeError(w, http.StatusBadRequest, "invalid_request_error", "invalid_value",
			`encoding_format must be "float" or "base64", got `+strconv.Quote(req.EncodingFormat))
		return
	}
	if len(req.Input.items) == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "missing_input", "input must be a non-empty string or array")
		return
	}
	var wt waiter
	defer wt.stop()
	if !wt.wait(r.Context(), st.jittered(st.cfg.TTFT)) {
		return
	}

	buf := getBuf()
	defer putBuf(buf)
	b := append((*buf)[:0], `{"object":"list","data":[`...)
	vec := make([]float32, dims)
	raw := make([]byte, 4*dims)
	modelHash := hashString(st.cfg.Model)
	for i, item := range req.Input.items {
		embed(vec, hashString(item)^modelHash)
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = appendInt(b, int64(i))
		b = append(b, `,"embedding":`...)
		if asBase64 {
			for j, v := range vec {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(v))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, v := range vec {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(v), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	b = append(b, `],"model":`...)
	b = append(b, st.modelJSON...)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = appendInt(b, int64(req.Input.words))
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, int64(req.Input.words))
	b = append(b, "}}\n"...)
	*buf = b
	writeJSON(w, http.StatusOK, b)
}

// embed fills vec with a unit vector drawn from seed.
func embed(vec []float32, seed uint64) {
	var norm float64
	for i := range vec {
		// Top 53 bits to a float in [-1, 1).
		v := float64(mix(seed+uint64(i))>>11)/(1<<52) - 1
		vec[i] = float32(v)
		norm += v * v
	}
	if norm == 0 {
		return
	}
	inv := 1 / math.Sqrt(norm)
	for i := range vec {
		vec[i] = float32(float64(vec[i]) * inv)
	}
}
