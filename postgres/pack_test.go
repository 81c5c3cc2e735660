package postgres

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/modelslot/modelslot"
)

// TestPackSamples: a batch decodes to the samples it was made from, every
// field included, and a cut or damaged batch is an error, never a panic or
// made-up samples.
func TestPackSamples(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	base := time.Unix(1_796_000_000, 123)
	var ss []modelslot.Sample
	for i := range 500 {
		ss = append(ss, modelslot.Sample{
			Time:          base.Add(time.Duration(r.IntN(2e9)) - time.Second), // out of order, as replicas' meters finish
			Status:        []int{200, 200, 500, 0, 429}[i%5],
			Latency:       time.Duration(r.Int64N(int64(time.Minute))),
			TTFT:          time.Duration(r.Int64N(int64(time.Second))),
			OutputTokens:  r.IntN(4000),
			InputTokens:   r.IntN(100000),
			TokensCounted: i%3 != 0,
			Streamed:      i%2 == 0,
			Revision:      []string{"9470ba309382", "259d19d07e74", ""}[i%3],
		})
	}
	b := packSamples(ss)
	got, err := unpackSamples(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ss {
		if !got[i].Time.Equal(ss[i].Time) {
			t.Fatalf("sample %d: time %v, want %v", i, got[i].Time, ss[i].Time)
		}
		got[i].Time = ss[i].Time
	}
	if !reflect.DeepEqual(got, ss) {
		t.Fatalf("unpacked samples differ from the packed ones")
	}
	if per := float64(len(b)) / float64(len(ss)); per > 32 {
		t.Errorf("%.1f bytes per sample, want at most 32", per)
	}
	for cut := range len(b) {
		if _, err := unpackSamples(b[:cut]); err == nil {
			t.Fatalf("a batch cut at %d of %d bytes decoded", cut, len(b))
		}
	}
	if _, err := unpackSamples(append(b[:len(b):len(b)], 0)); err == nil {
		t.Error("a batch with a trailing byte decoded")
	}
}

func FuzzUnpackSamples(f *testing.F) {
	f.Add(packSamples([]modelslot.Sample{{Time: time.Unix(0, 5), Status: 200, Revision: "r"}}))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := unpackSamples(b)
		if err != nil {
			return
		}
		if again, err := unpackSamples(packSamples(ss)); err != nil || len(again) != len(ss) {
			t.Fatalf("repacked %d samples: %d, %v", len(ss), len(again), err)
		}
	})
}
