package wrap

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"testing"
)

// rfc5649Wrap is an independent RFC 5649 implementation written from the RFC's section 4.1 for the tests
// only. Checked against the RFC's section 6 vectors (AES-192, which tink-go's KWP does not take), it is
// the reference that Wrap, built on tink-go, must equal byte for byte on AES-256.
func rfc5649Wrap(t *testing.T, kek, p []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(kek)
	if err != nil {
		t.Fatal(err)
	}
	var a [8]byte
	binary.BigEndian.PutUint32(a[:4], 0xA65959A6)
	binary.BigEndian.PutUint32(a[4:], uint32(len(p)))
	padded := make([]byte, (len(p)+7)/8*8)
	copy(padded, p)
	if len(padded) == 8 {
		out := make([]byte, 16)
		b.Encrypt(out, append(a[:], padded...))
		return out
	}
	n := len(padded) / 8
	r := padded
	var blk [16]byte
	for j := 0; j < 6; j++ {
		for i := 1; i <= n; i++ {
			copy(blk[:8], a[:])
			copy(blk[8:], r[(i-1)*8:i*8])
			b.Encrypt(blk[:], blk[:])
			tt := uint64(n*j + i)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(blk[:8])^tt)
			copy(r[(i-1)*8:], blk[8:])
		}
	}
	return append(a[:], r...)
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRFC5649Vectors checks the reference implementation against RFC 5649 section 6.
func TestRFC5649Vectors(t *testing.T) {
	kek := unhex(t, "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8")
	for _, v := range []struct{ key, wrapped string }{
		{"c37b7e6492584340bed12207808941155068f738", "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a"},
		{"466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"},
	} {
		if got := hex.EncodeToString(rfc5649Wrap(t, kek, unhex(t, v.key))); got != v.wrapped {
			t.Errorf("RFC 5649 vector %s: got %s, want %s", v.key, got, v.wrapped)
		}
	}
}

// TestWrapEqualsRFC5649 is the property that ties Wrap to the RFC: for random AES-256 KEKs and payloads
// of every length a CA key can have, Wrap equals the vector-checked reference and Unwrap inverts it.
func TestWrapEqualsRFC5649(t *testing.T) {
	r := mrand.New(mrand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		kek := make([]byte, KEKSize)
		rand.Read(kek)
		p := make([]byte, 16+r.IntN(2600))
		rand.Read(p)
		w, err := Wrap(kek, p)
		if err != nil {
			t.Fatal(err)
		}
		if want := rfc5649Wrap(t, kek, p); !bytes.Equal(w, want) {
			t.Fatalf("len %d: Wrap differs from RFC 5649", len(p))
		}
		u, err := Unwrap(kek, w)
		if err != nil || !bytes.Equal(u, p) {
			t.Fatalf("len %d: round trip: %v", len(p), err)
		}
		// Any flipped bit, or another KEK, fails the integrity check.
		w[r.IntN(len(w))] ^= 1 << r.IntN(8)
		if _, err := Unwrap(kek, w); !errors.Is(err, ErrUnwrap) {
			t.Fatalf("len %d: corrupted blob: %v, want ErrUnwrap", len(p), err)
		}
	}
}

func TestUnwrapRefusesBadSizes(t *testing.T) {
	kek := make([]byte, KEKSize)
	for _, n := range []int{0, 8, 16, 25, 31} {
		if _, err := Unwrap(kek, make([]byte, n)); err == nil {
			t.Errorf("Unwrap of %d bytes accepted", n)
		}
	}
	if _, err := Wrap(make([]byte, 24), make([]byte, 32)); err == nil {
		t.Error("Wrap with an AES-192 KEK accepted; custos KEKs are AES-256 (tink-go takes 128 or 256)")
	}
}
