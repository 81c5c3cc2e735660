package gateway

import (
	"net/http/httptest"
	"testing"
	"time"
)

// TestStreamEnds: the meter sees a stream's last event whole, also when it
// comes in pieces, and only once its line has ended.
func TestStreamEnds(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   bool
	}{
		{"done", []string{"data: {\"choices\":[]}\n\n", "data: [DONE]\n\n"}, true},
		{"done without space", []string{"data:[DONE]\n"}, true},
		{"done in pieces", []string{"data: {}\n\ndata: [DO", "NE]\n\n"}, true},
		{"done without its line end", []string{"data: [DONE]"}, false},
		{"responses completed", []string{"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n"}, true},
		{"no end", []string{"data: {\"choices\":[{\"delta\":{\"content\":\"[DONE]\"}}]}\n\n"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			rec.Header().Set("Content-Type", "text/event-stream")
			mw := getMeterWriter(rec, time.Now(), nil)
			for _, w := range tt.writes {
				mw.Write([]byte(w))
				mw.Flush()
			}
			if mw.delivered != tt.want {
				t.Errorf("delivered = %v, want %v", mw.delivered, tt.want)
			}
		})
	}
}
