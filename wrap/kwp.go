package wrap

import (
	"errors"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

// KEKSize is the size of every custos key-encryption key: AES-256.
const KEKSize = 32

// ErrUnwrap is returned when a wrapped key fails RFC 5649's integrity check: the wrong KEK, or a
// corrupted blob.
var ErrUnwrap = errors.New("RFC 5649 integrity check failed (wrong KEK or corrupted blob)")

// Wrap wraps plaintext under kek with AES key wrap with padding (RFC 5649). kek must be an AES-128 or
// AES-256 key and plaintext at least 16 bytes long.
func Wrap(kek, plaintext []byte) ([]byte, error) {
	k, err := subtle.NewKWP(kek)
	if err != nil {
		return nil, fmt.Errorf("wrap: %w", err)
	}
	out, err := k.Wrap(plaintext)
	if err != nil {
		return nil, fmt.Errorf("wrap: %w", err)
	}
	return out, nil
}

// Unwrap reverses Wrap. A wrong key or a changed blob gives ErrUnwrap.
func Unwrap(kek, wrapped []byte) ([]byte, error) {
	k, err := subtle.NewKWP(kek)
	if err != nil {
		return nil, fmt.Errorf("unwrap: %w", err)
	}
	if len(wrapped) < 24 || len(wrapped)%8 != 0 {
		return nil, fmt.Errorf("unwrap: wrapped key of %d bytes is not an RFC 5649 output (a multiple of 8, at least 24)", len(wrapped))
	}
	out, err := k.Unwrap(wrapped)
	if err != nil {
		return nil, fmt.Errorf("unwrap: %w", ErrUnwrap)
	}
	return out, nil
}
