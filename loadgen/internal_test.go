package loadgen

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestArrivalsMean(t *testing.T) {
	for _, shape := range []float64{0, 0.5, 1, 4} {
		a := &arrivals{rate: 100, shape: shape, rnd: rand.New(rand.NewPCG(1, 2))}
		const n = 20000
		var last time.Duration
		for range n {
			at := a.next()
			if at < last {
				t.Fatalf("shape %v: arrivals go back in time", shape)
			}
			last = at
		}
		mean := last.Seconds() / (n - 1)
		if math.Abs(mean-0.01)/0.01 > 0.03 {
			t.Errorf("shape %v: mean gap %v, want 0.01 within 3%%", shape, mean)
		}
	}
}

func TestReadEvents(t *testing.T) {
	in := ": comment\nevent: x\ndata: a\ndata: b\r\n\r\ndata:{\"c\":1}\n\n\n" + "data: " + strings.Repeat("z", 70000) + "\n\ndata: [DONE]"
	var got []string
	err := readEvents(strings.NewReader(in), func(d []byte) error {
		got = append(got, string(d))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0] != "a\nb" || got[1] != `{"c":1}` || len(got[2]) != 70000 || got[3] != "[DONE]" {
		t.Errorf("got %d events: %q %q", len(got), got[0], got[1])
	}
}
