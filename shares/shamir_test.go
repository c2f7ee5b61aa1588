package shares

import (
	"bytes"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/custos-pki/custos/wrap"
)

// TestSplitCombineProperty: for random n in 2..255, k in 2..n and key sizes 16, 24, 32, any k shares
// rebuild the key, and any k−1 combined directly never give it (the check value fails).
func TestSplitCombineProperty(t *testing.T) {
	r := mrand.New(mrand.NewPCG(7, 11))
	iterations := 200
	if testing.Short() {
		iterations = 40
	}
	for it := 0; it < iterations; it++ {
		n := 2 + r.IntN(254)
		k := 2 + r.IntN(n-1)
		size := SecretSizes[r.IntN(3)]
		secret := make([]byte, size)
		rand.Read(secret)
		kcv, err := wrap.KCV(secret)
		if err != nil {
			t.Fatal(err)
		}
		split, err := Split(secret, n, k)
		if err != nil {
			t.Fatalf("n=%d k=%d: %v", n, k, err)
		}
		if len(split) != n {
			t.Fatalf("n=%d: got %d shares", n, len(split))
		}
		pick := func(m int) []Share {
			idx := r.Perm(n)[:m]
			out := make([]Share, m)
			for i, j := range idx {
				out[i] = Share{X: split[j].X, Y: bytes.Clone(split[j].Y)}
			}
			return out
		}
		got, err := Combine(pick(k), k)
		if err != nil || !bytes.Equal(got, secret) || !kcv.Matches(got) {
			t.Fatalf("n=%d k=%d size=%d: k shares did not rebuild the key: %v", n, k, size, err)
		}
		if k > 2 {
			// Combine refuses k−1 shares; interpolating them directly gives a value that is not the key.
			short := pick(k - 1)
			if _, err := Combine(short, k); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("have %d of %d", k-1, k)) {
				t.Fatalf("n=%d k=%d: k-1 shares: %v", n, k, err)
			}
			wrong, err := Combine(short, k-1)
			if err != nil {
				t.Fatal(err)
			}
			if kcv.Matches(wrong) || bytes.Equal(wrong, secret) {
				t.Fatalf("n=%d k=%d: k-1 shares gave the key", n, k)
			}
		}
	}
}

func TestCombineValidates(t *testing.T) {
	secret := make([]byte, 32)
	rand.Read(secret)
	split, _ := Split(secret, 5, 3)
	clone := func() []Share {
		out := make([]Share, 3)
		for i := range out {
			out[i] = Share{X: split[i].X, Y: bytes.Clone(split[i].Y)}
		}
		return out
	}
	for name, mut := range map[string]func([]Share) []Share{
		"x = 0":         func(s []Share) []Share { s[1].X = 0; return s },
		"repeated x":    func(s []Share) []Share { s[2].X = s[0].X; return s },
		"unequal sizes": func(s []Share) []Share { s[1].Y = s[1].Y[:16]; return s },
		"odd size":      func(s []Share) []Share { s[0].Y, s[1].Y, s[2].Y = s[0].Y[:20], s[1].Y[:20], s[2].Y[:20]; return s },
		"too few":       func(s []Share) []Share { return s[:2] },
	} {
		if _, err := Combine(mut(clone()), 3); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSplitRefuses(t *testing.T) {
	for _, c := range []struct{ size, n, k int }{{20, 5, 3}, {0, 5, 3}, {32, 5, 1}, {32, 2, 3}, {32, 256, 3}} {
		if _, err := Split(make([]byte, c.size), c.n, c.k); err == nil {
			t.Errorf("Split(%d bytes, n=%d, k=%d) accepted", c.size, c.n, c.k)
		}
	}
}
