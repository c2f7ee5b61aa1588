package wrap

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"

	tinkmac "github.com/tink-crypto/tink-go/v2/mac/subtle"
)

// Check value algorithms. A check value is always written with its label, never as bare hex.
const (
	// KCVCMAC is the primary check value: the first 5 bytes of AES-CMAC under the key of a zero block.
	KCVCMAC = "cmac"
	// KCVECB is the legacy check value: the first 3 bytes of AES-ECB under the key of a zero block.
	// It is accepted where a legacy procedure recorded one; custos never relies on it alone.
	KCVECB = "ecb"
)

// CheckValue is a labelled key check value.
type CheckValue struct {
	Alg   string
	Value []byte
}

// String returns the labelled form, "cmac:0a1b2c3d4e" or "ecb:0a1b2c".
func (c CheckValue) String() string { return c.Alg + ":" + hex.EncodeToString(c.Value) }

// KCV returns the primary (CMAC) check value of an AES key.
func KCV(key []byte) (CheckValue, error) {
	m, err := tinkmac.NewAESCMAC(key, 16)
	if err != nil {
		return CheckValue{}, fmt.Errorf("check value: %w", err)
	}
	tag, err := m.ComputeMAC(make([]byte, aes.BlockSize))
	if err != nil {
		return CheckValue{}, fmt.Errorf("check value: %w", err)
	}
	return CheckValue{Alg: KCVCMAC, Value: tag[:5]}, nil
}

// LegacyKCV returns the legacy (ECB) check value of an AES key.
func LegacyKCV(key []byte) (CheckValue, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return CheckValue{}, fmt.Errorf("check value: %w", err)
	}
	var out [aes.BlockSize]byte
	b.Encrypt(out[:], out[:])
	return CheckValue{Alg: KCVECB, Value: out[:3]}, nil
}

// ParseCheckValue parses a labelled check value. Bare hex is refused: the label says how it was made.
func ParseCheckValue(s string) (CheckValue, error) {
	alg, h, ok := strings.Cut(s, ":")
	if !ok {
		return CheckValue{}, fmt.Errorf("check value %q has no label; write cmac:HEX or ecb:HEX", s)
	}
	want := map[string]int{KCVCMAC: 5, KCVECB: 3}[alg]
	if want == 0 {
		return CheckValue{}, fmt.Errorf("check value %q: unknown label %q; use cmac or ecb", s, alg)
	}
	v, err := hex.DecodeString(h)
	if err != nil || len(v) != want || strings.ToLower(h) != h {
		return CheckValue{}, fmt.Errorf("check value %q: want %s: followed by %d bytes of lowercase hex", s, alg, want)
	}
	return CheckValue{Alg: alg, Value: v}, nil
}

// Matches reports whether key has this check value, in constant time.
func (c CheckValue) Matches(key []byte) bool {
	var got CheckValue
	var err error
	switch c.Alg {
	case KCVCMAC:
		got, err = KCV(key)
	case KCVECB:
		got, err = LegacyKCV(key)
	default:
		return false
	}
	return err == nil && len(c.Value) == len(got.Value) && subtle.ConstantTimeCompare(c.Value, got.Value) == 1
}
