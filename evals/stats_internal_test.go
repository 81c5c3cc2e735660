package evals

import (
	"math"
	"testing"
)

func TestNewcombePaired(t *testing.T) {
	tests := []struct {
		name      string
		p         pairs
		low, high float64
	}{
		// Values worked by hand from the method-10 formula.
		{"no discordant pairs", pairs{both: 8, neither: 2}, -0.1665, 0.1665},
		// 12 both, 9 only the candidate, 2 only the base, 21 neither.
		{"candidate better", pairs{both: 12, candOnly: 9, baseOnly: 2, neither: 21}, 0.0182, 0.2892},
		{"base better", pairs{both: 12, candOnly: 2, baseOnly: 9, neither: 21}, -0.2892, -0.0182},
	}
	for _, tt := range tests {
		got := newcombePaired(tt.p)
		if math.Abs(got.Low-tt.low) > 5e-5 || math.Abs(got.High-tt.high) > 5e-5 {
			t.Errorf("%s: got [%.4f, %.4f], want [%.4f, %.4f]", tt.name, got.Low, got.High, tt.low, tt.high)
		}
	}
}

func TestMcNemarExact(t *testing.T) {
	tests := []struct {
		b, c int
		want float64
	}{
		{0, 0, 1},
		{0, 5, 0.0625}, // 2 * (1/2)^5
		{1, 1, 1},
		{1, 9, 0.021484375}, // 2 * 11/1024
	}
	for _, tt := range tests {
		if got := mcnemarExact(tt.b, tt.c); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("mcnemarExact(%d, %d) = %v, want %v", tt.b, tt.c, got, tt.want)
		}
	}
}
