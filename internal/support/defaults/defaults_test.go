package defaults

import "testing"

func TestCount(t *testing.T) {
	for _, tt := range []struct{ n, def, want int }{{0, 2, 2}, {-1, 2, 0}, {3, 2, 3}, {0, 0, 0}} {
		if got := Count(tt.n, tt.def); got != tt.want {
			t.Errorf("Count(%d, %d) = %d, want %d", tt.n, tt.def, got, tt.want)
		}
	}
	for _, tt := range []struct{ n, want int }{{0, -1}, {5, 5}} {
		if got := Count(None(tt.n), 7); got != map[int]int{0: 0, 5: 5}[tt.n] {
			t.Errorf("Count(None(%d), 7) = %d", tt.n, got)
		}
		if got := None(tt.n); got != tt.want {
			t.Errorf("None(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}
