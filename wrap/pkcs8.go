package wrap

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
)

// Quirk records a known, accepted deviation of a blob from exact RFC 5649 output.
type Quirk string

const (
	// QuirkNone: the blob unwraps to exactly the PKCS#8 DER.
	QuirkNone Quirk = ""
	// QuirkSoftHSMZeroPad: SoftHSM 2.6.1 zero-pads the PKCS#8 DER to a multiple of 8 before RFC 5649, so
	// the unwrapped plaintext is the DER followed by 1 to 7 zero bytes, exactly enough to reach a
	// multiple of 8. See docs/format.md.
	QuirkSoftHSMZeroPad Quirk = "softhsm-2.6.1-zero-pad"
)

// ErrPKCS8 is returned when an unwrapped blob is not a PKCS#8 private key, or carries trailing bytes
// other than SoftHSM 2.6.1's zero padding.
var ErrPKCS8 = errors.New("unwrapped blob is not a PKCS#8 private key")

// ErrWrongKey is returned when a blob unwraps to a key other than the one its file names.
var ErrWrongKey = errors.New("the unwrapped key is not the CA key the file names")

// UnwrapPKCS8 unwraps f's blob with kek and parses the PKCS#8 private key inside, which must be the key
// whose fingerprint f names. The only trailing data accepted is QuirkSoftHSMZeroPad, which is reported.
// The KEK check value in f is checked first, so a wrong KEK is named as such. The plaintext buffer is wiped before returning; the returned key is the
// caller's to drop.
func UnwrapPKCS8(kek []byte, f *File) (crypto.Signer, Quirk, error) {
	if !f.KEKCheck.Matches(kek) {
		return nil, QuirkNone, fmt.Errorf("unwrap CA key: the KEK does not match the file's check value %s", f.KEKCheck)
	}
	plain, err := Unwrap(kek, f.Blob)
	if err != nil {
		return nil, QuirkNone, fmt.Errorf("unwrap CA key: %w", err)
	}
	defer clear(plain)
	der, quirk, err := SplitQuirk(plain)
	if err != nil {
		return nil, QuirkNone, fmt.Errorf("unwrap CA key: %w", err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, QuirkNone, fmt.Errorf("unwrap CA key: %w: %v", ErrPKCS8, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, QuirkNone, fmt.Errorf("unwrap CA key: %w: %T is not a signing key", ErrPKCS8, key)
	}
	fp, err := Fingerprint(signer.Public())
	if err != nil {
		return nil, QuirkNone, fmt.Errorf("unwrap CA key: %w", err)
	}
	if fp != f.Fingerprint {
		return nil, QuirkNone, fmt.Errorf("unwrap CA key: %w: its public key is %s, the file names %s", ErrWrongKey, fp, f.Fingerprint)
	}
	return signer, quirk, nil
}

// SplitQuirk returns the DER element at the start of plain and which quirk, if any, the rest is. Anything
// after the element other than the exact zero padding of QuirkSoftHSMZeroPad is refused.
func SplitQuirk(plain []byte) (der []byte, quirk Quirk, err error) {
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(plain, &raw)
	if err != nil {
		return nil, QuirkNone, fmt.Errorf("%w: %v", ErrPKCS8, err)
	}
	der = plain[:len(plain)-len(rest)]
	if len(rest) == 0 {
		return der, QuirkNone, nil
	}
	if len(rest) != (8-len(der)%8)%8 {
		return nil, QuirkNone, fmt.Errorf("%w: %d trailing bytes after a %d-byte DER (only SoftHSM 2.6.1's zero padding to a multiple of 8 is accepted)", ErrPKCS8, len(rest), len(der))
	}
	for _, b := range rest {
		if b != 0 {
			return nil, QuirkNone, fmt.Errorf("%w: non-zero trailing bytes after the DER", ErrPKCS8)
		}
	}
	return der, QuirkSoftHSMZeroPad, nil
}
