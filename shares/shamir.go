package shares

import (
	"errors"
	"fmt"

	"github.com/hashicorp/vault/shamir"
)

// Secret sizes custos splits: AES-128, AES-192 and AES-256 keys. A KEK is always 32 bytes.
var SecretSizes = []int{16, 24, 32}

// MaxShares is the largest n: x-coordinates are the non-zero elements of GF(2^8).
const MaxShares = 255

// ErrTooFewShares is returned when fewer than the threshold of valid shares are available.
var ErrTooFewShares = errors.New("too few shares")

// Share is one point (X, Y) of the sharing polynomials, Y holding one byte per byte of the secret.
type Share struct {
	X byte
	Y []byte
}

// Wipe zeroes the share's bytes.
func (s *Share) Wipe() { clear(s.Y) }

// ValidSecretSize reports whether n is a secret size custos splits.
func ValidSecretSize(n int) bool { return n == 16 || n == 24 || n == 32 }

// Split divides secret into n shares, any k of which rebuild it.
func Split(secret []byte, n, k int) ([]Share, error) {
	if !ValidSecretSize(len(secret)) {
		return nil, fmt.Errorf("split: the secret is %d bytes; it must be an AES key of 16, 24 or 32 bytes", len(secret))
	}
	if err := CheckThreshold(n, k); err != nil {
		return nil, fmt.Errorf("split: %w", err)
	}
	parts, err := shamir.Split(secret, n, k)
	if err != nil {
		return nil, fmt.Errorf("split: %w", err)
	}
	out := make([]Share, n)
	for i, p := range parts {
		// vault's encoding is y_1 … y_m ‖ x.
		out[i] = Share{X: p[len(p)-1], Y: p[:len(p)-1]}
	}
	return out, nil
}

// CheckThreshold validates a k-of-n scheme: 2 ≤ k ≤ n ≤ 255.
func CheckThreshold(n, k int) error {
	switch {
	case k < 2:
		return fmt.Errorf("threshold %d is below 2; a single share would be the secret", k)
	case k > n:
		return fmt.Errorf("threshold %d is more than the %d custodians", k, n)
	case n > MaxShares:
		return fmt.Errorf("%d custodians is more than the %d a GF(2^8) sharing allows", n, MaxShares)
	}
	return nil
}

// Combine rebuilds a secret from at least k shares. It validates what vault's shamir does not: x ≠ 0,
// distinct x, equal lengths, a valid secret size and at least k shares. It does not know whether the
// shares belong together; callers check commitments first (see Manifest.CheckEnvelope) and the result
// against a check value after.
func Combine(shares []Share, k int) ([]byte, error) {
	if len(shares) < k {
		return nil, fmt.Errorf("combine: %w: have %d of %d", ErrTooFewShares, len(shares), k)
	}
	seen := map[byte]bool{}
	parts := make([][]byte, len(shares))
	defer func() {
		for _, p := range parts {
			clear(p)
		}
	}()
	for i, s := range shares {
		switch {
		case s.X == 0:
			return nil, fmt.Errorf("combine: share %d has x = 0, which would be the secret itself", i+1)
		case seen[s.X]:
			return nil, fmt.Errorf("combine: two shares have x = %d; the same share was given twice", s.X)
		case len(s.Y) != len(shares[0].Y):
			return nil, fmt.Errorf("combine: share %d is %d bytes, share 1 is %d", i+1, len(s.Y), len(shares[0].Y))
		case !ValidSecretSize(len(s.Y)):
			return nil, fmt.Errorf("combine: share %d is %d bytes; shares of an AES key are 16, 24 or 32", i+1, len(s.Y))
		}
		seen[s.X] = true
		parts[i] = append(append(make([]byte, 0, len(s.Y)+1), s.Y...), s.X)
	}
	secret, err := shamir.Combine(parts)
	if err != nil {
		return nil, fmt.Errorf("combine: %w", err)
	}
	return secret, nil
}
